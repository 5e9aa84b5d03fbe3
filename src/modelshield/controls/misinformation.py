"""Adaptive misinformation for low-confidence queries (after Kariyappa & Qureshi 2020).

Extraction queries are mostly out of the victim's distribution (synthetic, augmented,
public data), and the model is unsure about them; legitimate traffic mostly is not.
So the lower the model's confidence, the more of the answer is replaced by a
misinformation distribution::

    alpha = strength * sigmoid(sharpness * (threshold - max p))
    q = (1 - alpha) p + alpha m

where ``m`` keeps the top-1 probability on the top-1 class and hands the other
classes' probabilities to the other classes in a keyed random order — the
second-best class, which carries most of the decision-boundary information, is
almost never where the model put it. ``m`` is a permutation of ``p``, so ``q`` is a
distribution, and every entry of ``m`` is at most ``p_top``, so the top-1 stays. The
order comes from the row's key (:mod:`~modelshield.controls.canonical`), so it
cannot be averaged out, and without the server secret it cannot be undone.

Example:
    >>> from modelshield.controls.canonical import CanonicalInput
    >>> keys = CanonicalInput(b"0123456789abcdef", 1.0)(np.zeros((2, 4)) + [[0], [1]])
    >>> p = np.array([[0.98, 0.01, 0.01], [0.4, 0.35, 0.25]])
    >>> q = Misinformation(threshold=0.6)(p, keys)
    >>> bool(np.allclose(q[0], p[0], atol=1e-3)), q.argmax(axis=1).tolist()
    (True, [0, 0])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelshield.controls.canonical import keyed_uniform
from modelshield.controls.top1 import keep_top1, top1
from modelshield.models.base import FloatArray


class Misinformation:
    """Replace up to ``strength`` of low-confidence answers with keyed misinformation.

    Args:
        threshold: top-1 probability at which half of ``strength`` applies.
        sharpness: slope of the ramp; at 20 the share goes from ~12% to ~88% of
            ``strength`` as the top-1 probability drops from threshold + 0.1 to
            threshold - 0.1.
        strength: largest share of the answer replaced.
    """

    name = "misinformation"
    keyed = True

    def __init__(self, threshold: float = 0.5, sharpness: float = 20.0, strength: float = 1.0):
        self.threshold = threshold
        self.sharpness = sharpness
        self.strength = strength

    def share(self, probabilities: FloatArray) -> FloatArray:
        """The share ``alpha`` of each row that is replaced."""
        confidence = np.asarray(probabilities, dtype=np.float64).max(axis=1, keepdims=True)
        alpha: FloatArray = self.strength / (
            1.0 + np.exp(-self.sharpness * (self.threshold - confidence))
        )
        return alpha

    def __call__(self, probabilities: FloatArray, keys: Sequence[bytes]) -> FloatArray:
        p = np.asarray(probabilities, dtype=np.float64)
        n, classes = p.shape
        rows = np.arange(n)[:, None]
        top = top1(p)
        # a keyed random order of the columns, with the top-1 column moved to the front
        order = np.argsort(keyed_uniform(keys, classes, self.name), axis=1)
        order = _front(order, top)
        # the top-1 value stays in front; the rest are handed out in that order
        ranked = _front(np.argsort(-p, axis=1, kind="stable"), top)
        misinformation = np.empty_like(p)
        misinformation[rows, order] = p[rows, ranked]
        alpha = self.share(p)
        shaped: FloatArray = (1.0 - alpha) * p + alpha * misinformation
        return keep_top1(shaped, top)


def _front(order: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Each row of the permutation ``order`` with ``first[i]`` moved to position 0."""
    n, width = order.shape
    position = (order == first[:, None]).argmax(axis=1)
    keep = np.ones((n, width), dtype=bool)
    keep[np.arange(n), position] = False
    rest = order[keep].reshape(n, width - 1)
    result: np.ndarray = np.concatenate([first[:, None], rest], axis=1)
    return result
