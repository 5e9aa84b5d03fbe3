"""The top-1 guard every perturbation ends with (DESIGN invariant 3).

Example:
    >>> p = np.array([[0.5, 0.3, 0.2]])
    >>> keep_top1(np.array([[0.3, 0.5, 0.2]]), np.array([0])).tolist()
    [[0.5, 0.3, 0.2]]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from modelshield.models.base import FloatArray

IndexArray = npt.NDArray[np.intp]

# A relative gap the FP32 wire format still shows (FP32 epsilon is 1.2e-7): a client
# that takes the argmax of the answer it received finds the same label.
_GAP = 1e-6


def keep_top1(shaped: FloatArray, top: IndexArray) -> FloatArray:
    """Make ``top[i]`` the strictly largest entry of row ``i`` again (in place, returned).

    A row whose largest entry moved elsewhere gets the two values swapped (the row
    stays a distribution with the same values). A tie with the top-1 (in FP32, as sent)
    is broken by moving a relative 1e-6 of the top-1's value to it from all the other
    entries in proportion, which keeps their order and the row's sum.
    """
    rows = np.arange(shaped.shape[0])
    as_sent = shaped.astype(np.float32)
    # FP32 rounding is monotone: strictly largest in FP32 implies strictly largest
    if ((as_sent >= as_sent[rows, top][:, None]).sum(axis=1) == 1).all():
        return shaped  # the usual case, in a handful of vector operations
    moved = shaped.argmax(axis=1) != top
    if moved.any():
        where = rows[moved]
        usurper = shaped[where].argmax(axis=1)
        held = shaped[where, top[where]].copy()
        shaped[where, top[where]] = shaped[where, usurper]
        shaped[where, usurper] = held
    as_sent = shaped.astype(np.float32)
    best = as_sent[rows, top].copy()
    as_sent[rows, top] = -np.inf
    tied = as_sent.max(axis=1) >= best
    if tied.any():
        where = rows[tied]
        value = shaped[where, top[where]]
        delta = value * _GAP
        rest = shaped[where].sum(axis=1) - value  # >= the tied competitor > 0
        shaped[where] *= (1.0 - delta / rest)[:, None]
        shaped[where, top[where]] = value + delta
    return shaped


def top1(probabilities: FloatArray) -> IndexArray:
    """Each row's top-1 column (the first of equal maxima, as ``argmax`` picks)."""
    index: IndexArray = probabilities.argmax(axis=1)
    return index
