"""The model-backend protocol: rows in, class probabilities out.

Every backend — in-process or upstream — answers ``predict(rows)`` with an
``[N, C]`` float64 array of class probabilities (rows sum to 1). Labels, shaping and
wire formats are the gateway's business, not the backend's.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@runtime_checkable
class ModelBackend(Protocol):
    """A model the gateway can query.

    Example:
        >>> class Constant:
        ...     classes = 2
        ...     async def load(self): pass
        ...     async def close(self): pass
        ...     async def ready(self): return True
        ...     async def predict(self, rows): return np.full((len(rows), 2), 0.5)
        >>> isinstance(Constant(), ModelBackend)
        True
    """

    classes: int | None
    """Number of classes, when known before the first prediction."""

    async def load(self) -> None:
        """Load weights / open connections. Called once before serving."""
        ...

    async def close(self) -> None: ...

    async def ready(self) -> bool:
        """Whether the backend can answer now (used by /v2/health/ready)."""
        ...

    async def predict(self, rows: FloatArray) -> FloatArray:
        """Probabilities ``[N, C]`` for ``rows`` ``[N, F]``.

        Raises :class:`~modelshield.errors.UpstreamError` /
        :class:`~modelshield.errors.UpstreamTimeout` when the model cannot answer.
        """
        ...


def as_probabilities(values: object, rows: int) -> FloatArray:
    """Check that ``values`` is an ``[rows, C]`` probability matrix and return it as float64.

    Example:
        >>> as_probabilities([[0.25, 0.75]], 1).tolist()
        [[0.25, 0.75]]
    """
    from modelshield.errors import UpstreamError

    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1 and rows == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[0] != rows or array.shape[1] < 2:
        raise UpstreamError(f"model returned shape {list(array.shape)}, expected [{rows}, C>=2]")
    # few reductions cover it all (this runs on every request): NaN fails every
    # comparison, inf breaks the sums
    smallest = float(array.min())
    if not smallest >= -1e-6:
        raise UpstreamError("model returned non-finite or negative probabilities")
    if smallest < 0.0:
        array = np.clip(array, 0.0, None)
    sums = array.sum(axis=1, keepdims=True)
    if rows == 1:
        lowest = highest = float(sums[0, 0])
    else:
        lowest, highest = float(sums.min()), float(sums.max())
    if not (abs(lowest - 1.0) <= 1e-3 and abs(highest - 1.0) <= 1e-3):
        raise UpstreamError("model returned rows that do not sum to 1")
    normalized: FloatArray = array / sums
    return normalized
