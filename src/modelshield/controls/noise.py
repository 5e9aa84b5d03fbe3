"""Calibrated keyed noise: every row moves exactly ``level`` of L1 distance.

Each row ``p`` is mixed with a random distribution ``r`` drawn from the row's key::

    q = p + lam (r - p),   lam = level / |r - p|_1   (so |q - p|_1 = level)

``r`` is Dirichlet(1) (normalized exponentials of the keyed uniforms) with its largest
entry placed on the top-1 class, so ``q`` keeps the top-1 by construction: for every
other class ``q_top - q_j = (1-lam)(p_top - p_j) + lam(r_top - r_j) >= 0``. A mixture of two
distributions is a distribution, so nothing needs clipping or renormalizing. The
noise is the same for every copy of a canonical input, so averaging gains nothing;
mostly it buries the small probabilities (the "dark knowledge" a student distills)
under keyed randomness, while the decision-relevant top entries barely move.

Example:
    >>> from modelshield.controls.canonical import CanonicalInput
    >>> keys = CanonicalInput(b"0123456789abcdef", 1.0)(np.zeros((1, 4)))
    >>> p = np.array([[0.7, 0.2, 0.1]])
    >>> q = CalibratedNoise(level=0.02)(p, keys)
    >>> round(float(np.abs(q - p).sum()), 6), int(q.argmax())
    (0.02, 0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelshield.controls.canonical import keyed_uniform
from modelshield.controls.top1 import keep_top1, top1
from modelshield.models.base import FloatArray


class CalibratedNoise:
    """Keyed noise with an L1 change of ``level`` per row (0.02 = 2% L1, 1% of the mass).

    Rows already within ``level`` of their random target move all the way to it (less
    than ``level``); that takes an unusually flat target and is rare past a few classes.
    """

    name = "noise"
    keyed = True

    def __init__(self, level: float = 0.02) -> None:
        self.level = level

    def __call__(self, probabilities: FloatArray, keys: Sequence[bytes]) -> FloatArray:
        p = np.asarray(probabilities, dtype=np.float64)
        top = top1(p)
        if self.level <= 0.0:
            return keep_top1(p.copy(), top)
        rows = np.arange(p.shape[0])
        exponential = -np.log(keyed_uniform(keys, p.shape[1], self.name))
        target = exponential / exponential.sum(axis=1, keepdims=True)
        peak = target.argmax(axis=1)
        held = target[rows, top].copy()
        target[rows, top] = target[rows, peak]
        target[rows, peak] = held
        distance = np.abs(target - p).sum(axis=1, keepdims=True)
        weight = np.minimum(1.0, self.level / np.maximum(distance, 1e-300))
        shaped: FloatArray = (1.0 - weight) * p + weight * target
        return keep_top1(shaped, top)
