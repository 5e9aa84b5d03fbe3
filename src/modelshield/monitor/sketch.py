"""The compact feature sketch every QueryEvent carries instead of its raw input.

For a row ``x`` with ``F`` features, the sketch is

    s(x) = round(R^T x, 3),  R: F rows, k columns,  R_ij ~ N(0, 1/k) from ``SKETCH_SEED``

— a fixed Gaussian random projection to ``k = SKETCH_DIMS`` (16) dimensions. By the
Johnson-Lindenstrauss lemma ``|s(x) - s(y)| ~ |x - y|`` (within a few tens of percent
at k = 16), which is all the monitor's distance-based features need (nearest
neighbours, near-duplicates, PRADA, LSH cells, distance to the training data). The
projection loses F - k dimensions, so the input cannot be reconstructed from it: raw
inputs are never stored (DESIGN invariant 6). Every replica draws the same R because
the seed is fixed; identical rows get identical sketches.

Example:
    >>> import numpy as np
    >>> s = sketch_rows(np.ones((2, 64)))
    >>> len(s), len(s[0]), s[0] == s[1]
    (2, 16, True)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from modelshield.models.base import FloatArray

SKETCH_DIMS = 16
SKETCH_SEED = 20_190_606  # fixed: every replica and every restart projects alike
SKETCH_DECIMALS = 3
MAX_SKETCH_ROWS = 256
"""Rows sketched per event at most (a bigger batch keeps its first rows' sketches)."""


@lru_cache(maxsize=16)
def projection(features: int, dims: int = SKETCH_DIMS, seed: int = SKETCH_SEED) -> FloatArray:
    """The ``features`` by ``dims`` projection matrix (cached; read-only)."""
    rng = np.random.default_rng(seed)
    matrix: FloatArray = rng.standard_normal((features, dims)) / np.sqrt(dims)
    matrix.setflags(write=False)
    return matrix


def project(rows: FloatArray) -> FloatArray:
    """The unrounded projection of ``rows`` ([N, F] → [N, k])."""
    data = np.asarray(rows, dtype=np.float64)
    out: FloatArray = data @ projection(data.shape[1])
    return out


def sketch_rows(rows: FloatArray) -> list[list[float]]:
    """The sketch of each row (at most :data:`MAX_SKETCH_ROWS`), rounded for the event."""
    if rows.ndim != 2 or rows.size == 0:
        return []
    projected = np.round(project(rows[:MAX_SKETCH_ROWS]), SKETCH_DECIMALS)
    result: list[list[float]] = projected.tolist()
    return result
