"""The canonical input and the keyed randomness derived from it (DESIGN invariant 2).

Each row is quantized to multiples of a resolution (a row ``x`` becomes
``round(x / resolution)``), and its key is ``HMAC-SHA256(server secret, model name,
resolution, quantized row)``. Every random number a shaper uses is drawn from a
SHAKE-256 stream seeded with that key, so the answer to a row is a pure function of
(secret, model, canonical row): repeating a query, sending it from another account or
another replica, or moving it by less than half the resolution in every feature (for a
row on the grid) gets the identical noise — averaging copies recovers nothing. SHAKE
rather than a NumPy generator keeps the streams identical across NumPy versions, so
mixed-version replicas still agree.

Example:
    >>> keys = CanonicalInput(b"0123456789abcdef", resolution=0.5, context="digits")
    >>> a, b, c = keys(np.array([[1.0, 2.0], [1.2, 1.9], [1.0, 3.0]]))
    >>> a == b, a == c
    (True, False)
    >>> keyed_uniform([a], 3, "demo").shape
    (1, 3)
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Sequence

import numpy as np

from modelshield.models.base import FloatArray
from modelshield.policy.schema import InputSpec

_DOMAIN = b"modelshield/shaping/v1"


class CanonicalInput:
    """Rows in, one 32-byte key per row out.

    Args:
        secret: the server secret (never logged, never sent).
        resolution: quantization step; rows equal after rounding share a key.
        context: what else the key depends on (the model name): the same row sent to
            two models gets independent noise.
    """

    def __init__(self, secret: bytes, resolution: float, context: str = "") -> None:
        self.secret = secret
        self.resolution = resolution
        self.context = context

    def quantize(self, rows: FloatArray) -> FloatArray:
        """The canonical rows: multiples of the resolution (as counts, ``-0.0`` folded to 0)."""
        quantized: FloatArray = np.floor(np.asarray(rows, dtype=np.float64) / self.resolution + 0.5)
        return quantized + 0.0

    def __call__(self, rows: FloatArray) -> list[bytes]:
        canonical = np.ascontiguousarray(self.quantize(rows), dtype="<f8")
        prefix = b"".join(
            [_DOMAIN, _framed(self.context.encode("utf-8")), struct.pack("<d", self.resolution)]
        )
        base = hmac.new(self.secret, prefix, hashlib.sha256)
        keys: list[bytes] = []
        for row in canonical:
            mac = base.copy()
            mac.update(row.tobytes())
            keys.append(mac.digest())
        return keys


def snap_rows(rows: FloatArray, spec: InputSpec) -> FloatArray:
    """The canonical rows themselves: features rounded to the resolution, within min/max.

    With ``input.snap`` the model answers these, so every row of a canonical cell gets
    the very same answer, not only the same noise.

    Example:
        >>> from modelshield.policy.schema import InputSpec
        >>> snap_rows(np.array([[0.2, 3.6, 15.9]]), InputSpec(min=0, max=16, resolution=1.0))
        array([[ 0.,  4., 16.]])
    """
    snapped = np.floor(np.asarray(rows, dtype=np.float64) / spec.resolution + 0.5)
    snapped = snapped * spec.resolution + 0.0
    low = -np.inf if spec.min is None else spec.min
    high = np.inf if spec.max is None else spec.max
    clipped: FloatArray = np.clip(snapped, low, high)
    return clipped


def keyed_uniform(keys: Sequence[bytes], size: int, purpose: str) -> FloatArray:
    """``[len(keys), size]`` uniforms in (0, 1), one independent stream per key and purpose.

    ``purpose`` separates the streams of different controls fed by the same key.
    """
    tag = _framed(purpose.encode("utf-8"))
    raw = b"".join(hashlib.shake_256(key + tag).digest(8 * size) for key in keys)
    words = np.frombuffer(raw, dtype="<u8").reshape(len(keys), size)
    # 53 random bits, shifted half a step off zero: never exactly 0 or 1
    uniform: FloatArray = ((words >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    return uniform


def _framed(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data
