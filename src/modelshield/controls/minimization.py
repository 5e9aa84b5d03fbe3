"""Output minimization: reveal only the top classes, only above a floor, only d decimals.

The result is a :class:`Minimized` answer. A dense one holds every class (``columns``
is None); a sparse one holds, per row, the revealed columns in descending order of
probability, the top-1 first, padded with column ``-1`` / probability 0 where rows
reveal different numbers of classes (a confidence floor) — padding only ever reaches
the widest row of the batch, never the model's class count.

Rounding uses the largest-remainder method on integer units of ``10**-decimals``: each
row keeps its sum rounded to the nearest unit (a full distribution still sums to exactly
1, a top-k answer never more than 1), every value moves by less than one unit, and the
top-1 is kept strictly largest (a tie costs a competitor one unit).

Example:
    >>> p = np.array([[0.60004, 0.29996, 0.07, 0.03]])
    >>> answer = Minimization(top_k=2, decimals=2)(p)
    >>> answer.columns.tolist(), answer.values.tolist()
    ([[0, 1]], [[0.6, 0.3]])
    >>> Minimization(decimals=1)(np.array([[0.34, 0.33, 0.33]])).values.tolist()
    [[0.4, 0.3, 0.3]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelshield.controls.top1 import IndexArray, keep_top1, top1
from modelshield.models.base import FloatArray


@dataclass(frozen=True, slots=True)
class Minimized:
    """What may be revealed: ``values[i, j]`` is the probability of column ``columns[i, j]``.

    ``columns`` is None for a dense answer (``values`` holds every class in order).
    ``decimals`` is the rounding applied, so the codecs write e.g. ``0.302`` rather than
    the FP32 neighbour ``0.30199998617172241``.
    """

    values: FloatArray
    columns: IndexArray | None = None
    decimals: int | None = None


class Minimization:
    """Top-k, confidence floor, renormalization and rounding, in that order.

    Args:
        top_k: reveal at most this many classes (None: all).
        floor: drop classes below this probability (the top-1 always stays).
        renormalize: rescale the revealed probabilities to sum to 1.
        decimals: round to this many decimals (None: no rounding).
    """

    name = "minimization"

    def __init__(
        self,
        top_k: int | None = None,
        floor: float | None = None,
        renormalize: bool = False,
        decimals: int | None = None,
    ) -> None:
        self.top_k = top_k
        self.floor = floor
        self.renormalize = renormalize
        self.decimals = decimals

    def __call__(self, probabilities: FloatArray) -> Minimized:
        p = np.asarray(probabilities, dtype=np.float64)
        n, classes = p.shape
        columns: IndexArray | None = None
        values = p
        if self.top_k is not None or self.floor is not None:
            width = min(self.top_k or classes, classes)
            # the stable sort puts the top-1 (first of equal maxima) in front
            columns = np.argsort(-p, axis=1, kind="stable")[:, :width]
            values = p[np.arange(n)[:, None], columns]
            if self.floor is not None:
                revealed = values >= self.floor
                revealed[:, 0] = True
                width = int(revealed.sum(axis=1).max())
                revealed = revealed[:, :width]
                columns = np.where(revealed, columns[:, :width], -1)
                values = np.where(revealed, values[:, :width], 0.0)
        if self.renormalize:
            values = values / values.sum(axis=1, keepdims=True)
        top = np.zeros(n, dtype=np.intp) if columns is not None else top1(p)
        if self.decimals is not None:
            revealed_mask = None if columns is None else columns >= 0
            values = round_keeping_top1(values, self.decimals, top, revealed_mask)
        else:  # the top-1 stays strictly largest on the wire, ties included
            values = keep_top1(values.copy(), top)
        return Minimized(values=values, columns=columns, decimals=self.decimals)


def round_keeping_top1(
    values: FloatArray,
    decimals: int,
    top: IndexArray,
    revealed: np.ndarray | None = None,
) -> FloatArray:
    """Round rows to ``decimals`` with a strict top-1, preserving their (rounded) sums.

    Example:
        >>> round_keeping_top1(np.array([[0.5, 0.5]]), 0, np.array([0])).tolist()
        [[1.0, 0.0]]
    """
    unit = 10**decimals
    scaled = values * unit
    units = np.floor(scaled)
    deficit = np.rint(scaled.sum(axis=1)) - units.sum(axis=1)
    if deficit.any():
        # hand the missing units to the largest remainders (the top-1 first on ties)
        remainder = scaled - units
        if revealed is not None:
            remainder[~revealed] = -1.0
        order = np.argsort(-remainder, axis=1, kind="stable")
        rank = np.argsort(order, axis=1)
        units += rank < deficit[:, None]
    # The top-1 holds the largest value, so it has at least the units of any other
    # entry except on a tie (equal floors, and both took a unit or neither did). A tie
    # costs the last tied competitor one unit, which keeps sparse rows in descending
    # order. A row rounded to nothing (a partial sum under half a unit) reveals one unit.
    rows = np.arange(values.shape[0])
    best = units[rows, top]
    if ((units >= best[:, None]).sum(axis=1) > 1).any() or (best <= 0.0).any():
        units[rows, top] = -1.0
        width = units.shape[1]
        runner = width - 1 - units[:, ::-1].argmax(axis=1)
        runner_units = units[rows, runner]
        units[rows, top] = best
        empty = best <= 0.0
        units[rows[empty], top[empty]] = 1.0
        tied = (runner_units >= best) & ~empty
        units[rows[tied], top[tied]] += 1.0
        units[rows[tied], runner[tied]] -= 1.0
    rounded: FloatArray = units / unit
    return rounded
