"""Reverse sigmoid (Lee et al. 2019, "Defending against NN model stealing attacks
using deceptive perturbations"), with the top-1 label kept.

Each probability is pushed against the sigmoid of its own scaled logit::

    q_i ~ max(0, p_i - beta (sigmoid(gamma * log(p_i / (1 - p_i))) - 1/2))

which inflates small probabilities and deflates large ones non-monotonically, so a
student fitting the answers' log-probabilities learns the wrong logits. Published
implementations (ART's ``ReverseSigmoid``) flip the argmax of most low-confidence
many-class answers; here the original top-1 takes back the largest value by swapping
(:func:`~modelshield.controls.top1.keep_top1`), so it never changes.

Example:
    >>> q = ReverseSigmoid(beta=0.7, gamma=0.4)(np.array([[0.7, 0.2, 0.1]]))
    >>> int(q.argmax()), bool(np.isclose(q.sum(), 1.0))
    (0, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelshield.controls.top1 import keep_top1, top1
from modelshield.models.base import FloatArray

_CLIP = 1e-9


class ReverseSigmoid:
    """Reverse-sigmoid perturbation with magnitude ``beta`` and slope ``gamma``."""

    name = "reverse-sigmoid"
    keyed = False

    def __init__(self, beta: float = 0.7, gamma: float = 0.4) -> None:
        self.beta = beta
        self.gamma = gamma

    def __call__(
        self, probabilities: FloatArray, keys: Sequence[bytes] | None = None
    ) -> FloatArray:
        p = np.asarray(probabilities, dtype=np.float64)
        top = top1(p)
        clipped = np.clip(p, _CLIP, 1.0 - _CLIP)
        logit = np.log(clipped / (1.0 - clipped))
        perturbation = self.beta * (1.0 / (1.0 + np.exp(-self.gamma * logit)) - 0.5)
        pushed = np.clip(p - perturbation, 0.0, 1.0)
        # at least one class has p <= 1/2, where the push is >= 0: the sum is positive
        shaped: FloatArray = pushed / pushed.sum(axis=1, keepdims=True)
        return keep_top1(shaped, top)
