"""Uniform random queries over the input space, a clone trained on the labels.

The baseline of Tramèr et al. 2016 (section 5, "retraining with uniform queries") and
of most later work: the attacker knows only the input range.

Example:
    >>> UniformQueries(queries=500, seed=1).queries
    500
"""

from __future__ import annotations

import numpy as np

from modelshield.evaluation.attacks.base import (
    AttackResult,
    Clone,
    CloneKind,
    InputSpace,
    Transcript,
    fit_clone,
)
from modelshield.evaluation.targets import Answer, FloatArray, QueryTarget


class UniformQueries:
    """Query ``queries`` rows drawn uniformly from the input box; fit a clone."""

    name = "uniform"

    def __init__(
        self,
        queries: int = 2000,
        seed: int = 0,
        space: InputSpace | None = None,
        clone: CloneKind = "logistic",
    ) -> None:
        self.queries = queries
        self.seed = seed
        self.space = space or InputSpace()
        self.clone = clone

    async def run(self, target: QueryTarget) -> AttackResult:
        rng = np.random.default_rng(self.seed)
        transcript = Transcript(target)
        await transcript.ask(self.space.uniform(rng, self.queries))
        return transcript.result(self.name, self.train(transcript.x, transcript.answer))

    def train(self, rows: FloatArray, answer: Answer) -> Clone:
        return fit_clone(rows, answer.labels, self.space, kind=self.clone, seed=self.seed)
