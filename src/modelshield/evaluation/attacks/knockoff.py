"""Knockoff Nets: natural queries from a different distribution, a clone on the answers.

Orekondy et al., "Knockoff Nets: Stealing Functionality of Black-Box Models" (CVPR
2019). The attacker queries natural-looking inputs it already has — a large public
dataset unrelated to the victim's training data — and trains a clone on the answers
(soft labels when probabilities are revealed). Two sampling strategies:

- ``random``: rows drawn uniformly from the whole transfer set;
- ``adaptive``: the transfer set is split into *arms* (each digit class of the public
  digits, and each other source) and a gradient bandit (Sutton & Barto 2018, 2.8; the
  paper's policy) picks the arm of each next batch, rewarded by how *uncertain* the
  victim was about it (one minus the top-1/top-2 margin; with labels only, how many
  labels the batch adds that are still rare): the attacker spends its budget where
  answers teach most.

The transfer set for the demo model (see :mod:`.public_data`): the digits *training*
split, augmented (shifts, small rotations, intensity scaling, noise), and the
``iris``, ``wine`` and ``breast_cancer`` datasets bundled with scikit-learn mapped
into the 64-feature [0, 16] input space. The held-out digits split is never used.

Example:
    >>> attack = Knockoff(queries=2000, sampling="adaptive", seed=0)
    >>> attack.arms()[:3], attack.arms()[-1]
    (['digits:0', 'digits:1', 'digits:2'], 'breast_cancer')
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from modelshield.evaluation.attacks.base import (
    AttackResult,
    Clone,
    InputSpace,
    Transcript,
    fit_clone,
)
from modelshield.evaluation.attacks.public_data import (
    TABULAR_SOURCES,
    augment_digits,
    digits_pool,
    tabular_pool,
)
from modelshield.evaluation.attacks.soft_labels import fit_soft_clone
from modelshield.evaluation.targets import Answer, FloatArray, QueryTarget

Sampling = Literal["random", "adaptive"]
KnockoffClone = Literal["softmax", "logistic", "mlp"]
SOURCES = ("digits", *TABULAR_SOURCES)


class Knockoff:
    """Query the transfer set (randomly or by a bandit over its arms); fit a clone.

    Args:
        queries: rows to query.
        seed: seeds every draw (rows, augmentation, the bandit's choices).
        space: the victim's input space.
        sampling: ``random`` or ``adaptive`` (see the module docstring).
        sources: the transfer set's sources: ``digits`` and any of the tabular ones.
        batch: rows per bandit step (and per request in ``random`` mode).
        rotation_deg: the largest rotation applied to public digits.
        noise: standard deviation of the noise added to tabular rows (input units).
        clone: ``softmax`` trains on the probabilities when revealed (soft labels),
            ``logistic`` / ``mlp`` on the labels.
        learning_rate: the bandit's step size.
    """

    name = "knockoff"

    def __init__(
        self,
        queries: int = 2000,
        seed: int = 0,
        space: InputSpace | None = None,
        *,
        sampling: Sampling = "random",
        sources: tuple[str, ...] = SOURCES,
        batch: int = 50,
        rotation_deg: float = 10.0,
        noise: float = 0.5,
        clone: KnockoffClone = "softmax",
        learning_rate: float = 0.5,
    ) -> None:
        self.queries = queries
        self.seed = seed
        self.space = space or InputSpace()
        self.sampling = sampling
        self.sources = sources
        self.batch = batch
        self.rotation_deg = rotation_deg
        self.noise = noise
        self.clone = clone
        self.learning_rate = learning_rate

    def check_params(self) -> None:
        if self.sampling not in ("random", "adaptive"):
            raise ValueError(f"sampling must be 'random' or 'adaptive', not {self.sampling!r}")
        unknown = sorted(set(self.sources) - set(SOURCES))
        if unknown or not self.sources:
            raise ValueError(f"sources must be a non-empty subset of {SOURCES}, got {unknown}")
        if self.clone not in ("softmax", "logistic", "mlp"):
            raise ValueError(f"clone must be softmax, logistic or mlp, not {self.clone!r}")
        if self.queries < 1 or self.batch < 1:
            raise ValueError("queries and batch must be at least 1")

    def arms(self) -> list[str]:
        """The bandit's arms: ``digits:<class>`` for each public digit class, then sources."""
        out: list[str] = []
        for source in self.sources:
            out += [f"digits:{c}" for c in range(10)] if source == "digits" else [source]
        return out

    async def run(self, target: QueryTarget) -> AttackResult:
        self.check_params()
        rng = np.random.default_rng(self.seed)
        pools = self._pools()
        arms = self.arms()
        transcript = Transcript(target)
        preference = np.zeros(len(arms))
        baseline, steps = 0.0, 0
        seen = np.zeros(self.space.classes)
        sent = 0
        while sent < self.queries and transcript.stopped is None:
            n = min(self.batch, self.queries - sent)
            if self.sampling == "random":
                rows = self._draw_random(rng, pools, n)
                await transcript.ask(rows)
                sent += n
                continue
            policy = np.exp(preference - preference.max())
            policy /= policy.sum()
            arm = int(rng.choice(len(arms), p=policy))
            answer = await transcript.ask(self._draw(rng, pools[arms[arm]], arms[arm], n))
            sent += n
            if answer is None:
                break
            reward = self._reward(answer, seen)
            np.add.at(seen, answer.labels[answer.labels < self.space.classes], 1.0)
            steps += 1
            baseline += (reward - baseline) / steps
            # gradient bandit: raise the chosen arm's preference by how much it beat the
            # average reward, lower the others in proportion to their probability
            chosen = np.zeros(len(arms))
            chosen[arm] = 1.0
            preference += self.learning_rate * (reward - baseline) * (chosen - policy)
        return transcript.result(self.name, self.train(transcript.x, transcript.answer))

    def train(self, rows: FloatArray, answer: Answer) -> Clone:
        if self.clone == "softmax":
            return fit_soft_clone(rows, answer, self.space, seed=self.seed)
        return fit_clone(rows, answer.labels, self.space, kind=self.clone, seed=self.seed)

    def _pools(self) -> dict[str, FloatArray]:
        pools: dict[str, FloatArray] = {}
        for source in self.sources:
            if source == "digits":
                rows, labels = digits_pool()
                pools.update({f"digits:{c}": rows[labels == c] for c in range(10)})
            else:
                space = self.space
                pools[source] = tabular_pool(source, space.features, space.low, space.high)
        return pools

    def _draw(self, rng: np.random.Generator, pool: FloatArray, arm: str, n: int) -> FloatArray:
        if arm.startswith("digits"):
            return augment_digits(pool, n, rng, max_rotation_deg=self.rotation_deg)
        rows = pool[rng.integers(len(pool), size=n)]
        return self.space.clip(rows + rng.normal(0.0, self.noise, rows.shape))

    def _draw_random(
        self, rng: np.random.Generator, pools: dict[str, FloatArray], n: int
    ) -> FloatArray:
        """``n`` rows uniformly over the transfer set (each arm as often as it is large)."""
        names = list(pools)
        sizes = np.array([len(pools[name]) for name in names], dtype=np.float64)
        picks = rng.choice(len(names), size=n, p=sizes / sizes.sum())
        out = np.empty((n, self.space.features))
        for index in np.unique(picks):
            where = np.flatnonzero(picks == index)
            out[where] = self._draw(rng, pools[names[index]], names[index], len(where))
        return out

    def _reward(self, answer: Answer, seen: FloatArray) -> float:
        """Victim uncertainty on the batch (labels only: share of still-rare labels)."""
        if answer.probabilities is not None:
            top = np.sort(np.nan_to_num(answer.dense(self.space.classes), nan=0.0), axis=1)
            return float(1.0 - (top[:, -1] - top[:, -2]).mean())
        labels = answer.labels[answer.labels < self.space.classes]
        if len(labels) == 0:
            return 0.0
        share = seen / max(seen.sum(), 1.0)
        return float((share[labels] < 1.0 / self.space.classes).mean())
