"""Active learning at the clone's decision boundary (ActiveThief, boundary walking).

Pal et al., "ActiveThief: Model Extraction Using Active Learning and Unannotated
Public Data" (AAAI 2020). The attacker holds a pool of unlabelled public data, queries
a random initial set, and then, round after round, retrains its clone and queries the
pool rows the clone is least certain about (``uncertainty``: the smallest top-1/top-2
margin of the clone's probabilities, the paper's uncertainty strategy) — the rows
near its decision boundary, where the victim's answer corrects it most.

``walk`` is the boundary-walking variant of the same idea (as in Tramèr et al. 2016's
line search and the monitor's boundary-walk stream): each round pairs queried rows the
victim labelled differently (preferring pairs the clone is unsure between) and
bisects the segment between them, querying the midpoints of all pairs in one batch
per step, so the queries converge on the victim's own boundary.

``random`` picks pool rows at random: the ablation that isolates what the choice of
rows, not the pool, is worth.

The pool (see :mod:`.public_data`): augmented digits of the training split.

Example:
    >>> BoundaryAttack(queries=1000, initial=100, batch=100).rounds()
    9
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from modelshield.evaluation.attacks.base import (
    AttackResult,
    Clone,
    CloneKind,
    InputSpace,
    Transcript,
    fit_clone,
)
from modelshield.evaluation.attacks.public_data import augment_digits, digits_pool
from modelshield.evaluation.targets import Answer, FloatArray, QueryTarget

Strategy = Literal["uncertainty", "walk", "random"]


class BoundaryAttack:
    """A random start, then rounds of the rows nearest the clone's decision boundary.

    Args:
        queries: the query budget.
        seed: seeds the pool, the initial set and the walk pairs.
        space: the victim's input space.
        strategy: ``uncertainty``, ``walk`` or ``random`` (see the module docstring).
        initial: rows of the random initial set.
        batch: rows per round.
        pool: size of the unlabelled public pool (``uncertainty`` and ``random``).
        steps: bisection steps per walk (``walk``).
        clone: the clone's kind (trained on the labels).
        pool_rows: the pool to use instead of augmented public digits.
    """

    name = "boundary"

    def __init__(
        self,
        queries: int = 2000,
        seed: int = 0,
        space: InputSpace | None = None,
        *,
        strategy: Strategy = "uncertainty",
        initial: int = 100,
        batch: int = 100,
        pool: int = 20_000,
        steps: int = 4,
        clone: CloneKind = "logistic",
        pool_rows: FloatArray | None = None,
    ) -> None:
        self.queries = queries
        self.seed = seed
        self.space = space or InputSpace()
        self.strategy = strategy
        self.initial = initial
        self.batch = batch
        self.pool = pool
        self.steps = steps
        self.clone = clone
        self.pool_rows = pool_rows

    def check_params(self) -> None:
        if self.strategy not in ("uncertainty", "walk", "random"):
            raise ValueError(f"strategy must be uncertainty, walk or random, not {self.strategy!r}")
        if min(self.queries, self.initial, self.batch, self.pool, self.steps) < 1:
            raise ValueError("queries, initial, batch, pool and steps must be at least 1")
        if self.clone not in ("logistic", "mlp"):
            raise ValueError(f"clone must be 'logistic' or 'mlp', not {self.clone!r}")

    def rounds(self) -> int:
        """Clone retrainings after the initial set."""
        return max(0, -(-(self.queries - self.initial) // self.batch))

    async def run(self, target: QueryTarget) -> AttackResult:
        self.check_params()
        rng = np.random.default_rng(self.seed)
        pool = self._pool(rng)
        transcript = Transcript(target)
        first = rng.choice(
            len(pool), size=min(self.initial, self.queries, len(pool)), replace=False
        )
        unused = np.ones(len(pool), dtype=bool)
        unused[first] = False
        await transcript.ask(pool[np.sort(first)])
        sent = len(first)
        while sent < self.queries and transcript.stopped is None:
            n = min(self.batch, self.queries - sent)
            if self.strategy == "walk":
                sent += await self._walk(transcript, rng, pool, unused, n) or n
                continue
            candidates = np.flatnonzero(unused)
            if len(candidates) == 0:
                break
            if self.strategy == "random":
                picked = rng.choice(candidates, size=min(n, len(candidates)), replace=False)
            else:
                clone = self.train(transcript.x, transcript.answer)
                margin = _margin(clone.predict_proba(pool[candidates]))
                picked = candidates[np.argsort(margin, kind="stable")[:n]]
            unused[picked] = False
            await transcript.ask(pool[np.sort(picked)])
            sent += len(picked)
        return transcript.result(self.name, self.train(transcript.x, transcript.answer))

    def train(self, rows: FloatArray, answer: Answer) -> Clone:
        return fit_clone(rows, answer.labels, self.space, kind=self.clone, seed=self.seed)

    def _pool(self, rng: np.random.Generator) -> FloatArray:
        if self.pool_rows is not None:
            return np.asarray(self.pool_rows, dtype=np.float64)
        images, _ = digits_pool()
        return augment_digits(images, self.pool, rng, max_rotation_deg=10.0)

    async def _walk(
        self,
        transcript: Transcript,
        rng: np.random.Generator,
        pool: FloatArray,
        unused: np.ndarray,
        budget: int,
    ) -> int:
        """Query fresh pool pairs, bisect those labelled differently; returns rows queried."""
        pairs = max(1, budget // (2 + self.steps))
        candidates = np.flatnonzero(unused)
        if len(candidates) < 2:
            return 0
        ends = rng.choice(candidates, size=min(2 * pairs, len(candidates) // 2 * 2), replace=False)
        unused[ends] = False
        answer = await transcript.ask(pool[ends])
        if answer is None or len(answer.labels) < len(ends):
            return 0 if answer is None else len(answer.labels)
        sent = len(ends)
        half = len(ends) // 2
        first, second = ends[:half], ends[half:]
        differ = answer.labels[:half] != answer.labels[half:]
        low, high = pool[first[differ]], pool[second[differ]]
        low_label = answer.labels[:half][differ]
        for _ in range(self.steps):
            if sent >= budget or len(low) == 0:
                break
            mid = ((low + high) / 2)[: budget - sent]
            answer = await transcript.ask(mid)
            if answer is None:
                break
            k = len(answer.labels)
            sent += k
            same = answer.labels == low_label[:k]
            low[:k][same] = mid[:k][same]
            high[:k][~same] = mid[:k][~same]
        return sent


def _margin(probabilities: FloatArray) -> FloatArray:
    """Top-1 minus top-2 probability per row (small: near the decision boundary)."""
    if probabilities.shape[1] < 2:
        return np.ones(probabilities.shape[0])
    top = np.sort(probabilities, axis=1)
    out: FloatArray = top[:, -1] - top[:, -2]
    return out
