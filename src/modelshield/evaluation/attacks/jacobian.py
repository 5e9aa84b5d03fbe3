"""Jacobian-based dataset augmentation with a local substitute.

Papernot et al., "Practical Black-Box Attacks against Machine Learning" (AsiaCCS
2017), section 4. The attacker holds a small seed set of public data of the task's
kind (here: ``seed_rows`` digits of the training split, balanced over classes) and
trains a substitute on the victim's labels for them. Each substitute epoch ``rho``
doubles the set by stepping every point along the sign of the substitute's Jacobian
for the label the victim gave it,

    S[rho + 1] = S[rho] + { x + step[rho] * sign(dF_O(x)(x) / dx) : x in S[rho] },

and asks the victim to label the new points, which land near the substitute's
decision boundaries, where labels teach it most. The step
``step[rho] = lambda * (-1) ** (rho // tau)`` changes sign every ``tau = flip_every``
rounds (the paper's periodic step size), and with ``reservoir = kappa`` only
``kappa`` random points of the previous rounds are stepped (the paper's reservoir
sampling), so later rounds cost ``kappa`` queries, not ``|S[rho]|``.

The substitute is a logistic model or a small MLP; both input gradients are computed
in closed form in NumPy (inputs scaled to [0, 1], as the clone sees them, so ``lambda``
is in units of the input range: the paper's ``lambda = 0.1``).

Example:
    >>> attack = JacobianAugmentation(queries=3200, seed_rows=100, seed=0)
    >>> attack.schedule()
    [100, 100, 200, 400, 800, 1600]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from modelshield.evaluation.attacks.base import (
    AttackResult,
    Clone,
    CloneKind,
    InputSpace,
    Transcript,
    fit_clone,
)
from modelshield.evaluation.attacks.public_data import digits_pool
from modelshield.evaluation.targets import Answer, FloatArray, QueryTarget


class JacobianAugmentation:
    """Seed set, then rounds of substitute training and Jacobian steps, within ``queries``.

    Args:
        queries: the query budget (the last round is cut to fit it).
        seed: seeds the seed-set draw and the reservoir samples.
        space: the victim's input space.
        seed_rows: size of the initial public seed set.
        step: ``lambda``, the step along the Jacobian sign, in units of the input range.
        flip_every: ``tau``: the step changes sign every ``tau`` rounds (0: never).
        reservoir: ``kappa``: step only ``kappa`` random points per round (``None``: all).
        substitute: the substitute's (and the clone's) kind, trained on labels.
        seed_set: the seed rows to start from (default: digits of the training split).
    """

    name = "jacobian"

    def __init__(
        self,
        queries: int = 3200,
        seed: int = 0,
        space: InputSpace | None = None,
        *,
        seed_rows: int = 100,
        step: float = 0.1,
        flip_every: int = 3,
        reservoir: int | None = None,
        substitute: CloneKind = "logistic",
        seed_set: FloatArray | None = None,
    ) -> None:
        self.queries = queries
        self.seed = seed
        self.space = space or InputSpace()
        self.seed_rows = seed_rows
        self.step = step
        self.flip_every = flip_every
        self.reservoir = reservoir
        self.substitute = substitute
        self.seed_set = seed_set

    def check_params(self) -> None:
        if self.queries < 1 or self.seed_rows < 1:
            raise ValueError("queries and seed_rows must be at least 1")
        if self.step <= 0 or self.flip_every < 0:
            raise ValueError("step must be positive and flip_every non-negative")
        if self.reservoir is not None and self.reservoir < 1:
            raise ValueError("reservoir must be at least 1 (or null for every point)")
        if self.substitute not in ("logistic", "mlp"):
            raise ValueError(f"substitute must be 'logistic' or 'mlp', not {self.substitute!r}")

    def schedule(self) -> list[int]:
        """Rows queried per round: the seed set, then each round's new points."""
        sizes = [min(self.seed_rows, self.queries)]
        total, held = sizes[0], sizes[0]
        while total < self.queries:
            new = held if self.reservoir is None else min(held, self.reservoir)
            new = min(new, self.queries - total)
            sizes.append(new)
            total += new
            held += new
        return sizes

    async def run(self, target: QueryTarget) -> AttackResult:
        self.check_params()
        rng = np.random.default_rng(self.seed)
        transcript = Transcript(target)
        sizes = self.schedule()
        points = self._seed_points(rng, sizes[0])
        await transcript.ask(points)
        for round_index, size in enumerate(sizes[1:]):
            held = transcript.x
            if transcript.stopped is not None or held.shape[0] == 0:
                break
            substitute = self.train(held, transcript.answer)
            if size < held.shape[0]:
                chosen = np.sort(rng.choice(held.shape[0], size=size, replace=False))
            else:
                chosen = np.arange(held.shape[0])
            sign = -1.0 if self.flip_every and (round_index // self.flip_every) % 2 else 1.0
            direction = np.sign(jacobian_rows(substitute, held[chosen], transcript.labels[chosen]))
            span = self.space.high - self.space.low
            await transcript.ask(
                self.space.clip(held[chosen] + sign * self.step * span * direction)
            )
        return transcript.result(self.name, self.train(transcript.x, transcript.answer))

    def train(self, rows: FloatArray, answer: Answer) -> Clone:
        return fit_clone(rows, answer.labels, self.space, kind=self.substitute, seed=self.seed)

    def _seed_points(self, rng: np.random.Generator, n: int) -> FloatArray:
        if self.seed_set is not None:
            pool = np.asarray(self.seed_set, dtype=np.float64)
            return pool[np.sort(rng.choice(len(pool), size=min(n, len(pool)), replace=False))]
        rows, labels = digits_pool()
        # balanced over the public labels, as a small hand-collected seed set would be
        order = rng.permutation(len(rows))
        rank = np.empty(len(rows), dtype=np.int64)
        for label in np.unique(labels):
            members = order[labels[order] == label]
            rank[members] = np.arange(len(members))
        picked = order[np.argsort(rank[order], kind="stable")][:n]
        out: FloatArray = rows[np.sort(picked)]
        return out


def jacobian_rows(clone: Clone, rows: FloatArray, labels: npt.NDArray[np.int64]) -> FloatArray:
    """``∂p_{label}/∂x`` of the clone at each row, in the clone's [0, 1] input units.

    A label the clone never saw uses its own top class instead; a clone with no
    gradient (one class seen) gives zeros.
    """
    estimator: Any = clone.estimator
    x = clone._scale(rows)
    classes = np.asarray(getattr(estimator, "classes_", []), dtype=np.int64)
    if len(classes) < 2 or not (hasattr(estimator, "coef_") or hasattr(estimator, "coefs_")):
        return np.zeros_like(x)
    p = estimator.predict_proba(x)
    column = np.searchsorted(classes, labels)
    column = np.clip(column, 0, len(classes) - 1)
    unseen = classes[column] != labels
    column[unseen] = p[unseen].argmax(axis=1)
    # dp_c/dz = p_c (e_c - p): the softmax Jacobian's row for class c
    dz = -p * p[np.arange(len(x)), column][:, None]
    dz[np.arange(len(x)), column] += p[np.arange(len(x)), column]
    if hasattr(estimator, "coefs_"):
        return _mlp_input_gradient(estimator, x, dz)
    coef = np.asarray(estimator.coef_)
    if coef.shape[0] == 1:  # binary logistic: z = [0, w·x]
        coef = np.vstack([np.zeros_like(coef), coef])
    grad: FloatArray = dz @ coef
    return grad


def _mlp_input_gradient(estimator: Any, x: FloatArray, dz: FloatArray) -> FloatArray:
    """Back-propagate ``dz`` (gradient at the logits) through a ReLU MLP to its input."""
    activations = [x]
    for weights, bias in zip(estimator.coefs_[:-1], estimator.intercepts_[:-1], strict=True):
        activations.append(np.maximum(activations[-1] @ weights + bias, 0.0))
    if len(estimator.classes_) == 2:  # one logistic output unit: z = [0, o]
        dz = dz[:, 1:]
    grad = dz
    for layer in range(len(estimator.coefs_) - 1, -1, -1):
        grad = grad @ estimator.coefs_[layer].T
        if layer > 0:
            grad = grad * (activations[layer] > 0)
    out: FloatArray = grad
    return out
