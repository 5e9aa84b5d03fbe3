"""The averaging attack: ask the same thing many times, average the perturbation away.

Output perturbation that draws fresh noise per call is undone by repetition: the mean
of ``K`` answers to one row has ``1/√K`` of the noise (Orekondy et al. 2020,
"Prediction Poisoning", discuss this; Lee et al. 2019's deceptive perturbation is
deterministic for this reason). Each base query is sent as ``copies`` exact repeats
and ``copies`` jittered copies (every feature moved by up to ``±jitter``), and the
answers are averaged; the clone is trained on the averages (soft labels when
probabilities are revealed, a majority vote of labels otherwise).

Against modelshield's keyed noise (DESIGN invariant 2) exact repeats and jitter
below half the input resolution get the very same answer, so the averages equal a
single answer; jitter above the resolution gets fresh noise, but on a different
input. :class:`AveragingResult` keeps the spread of the answers among each base row's
copies, so a report can tell whether averaging had anything to work with (zero
spread: it recovered nothing). The base rows are public-style digits (integer
pixels, so rows lie on the canonical grid of any resolution dividing 1).

Example:
    >>> attack = AveragingAttack(queries=800, copies=4, jitter=1e-4)
    >>> attack.group, attack.base_queries()
    (8, 100)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from modelshield.evaluation.attacks.base import (
    AttackResult,
    Clone,
    InputSpace,
    Transcript,
    fit_clone,
)
from modelshield.evaluation.attacks.public_data import augment_digits, digits_pool
from modelshield.evaluation.attacks.soft_labels import fit_soft_clone
from modelshield.evaluation.targets import Answer, FloatArray, QueryTarget


@dataclass(slots=True)
class AveragingResult(AttackResult):
    """An :class:`AttackResult` with what averaging had to work with."""

    base_rows: FloatArray | None = None
    """The distinct rows asked about, one per group of copies."""
    averaged: Answer | None = None
    """The averaged answer to each base row (what the clone trained on)."""
    repeat_spread: FloatArray | None = None
    """Per base row: mean over revealed classes of the standard deviation of the
    probabilities among the exact repeats (0: every repeat got the same answer)."""
    jitter_spread: FloatArray | None = None
    """The same among the jittered copies."""


class AveragingAttack:
    """Send every base row ``2 * copies`` times, average the answers, fit a clone.

    Args:
        queries: the query budget; ``queries // (2 * copies)`` base rows are asked about.
        seed: seeds the base rows and the jitter.
        space: the victim's input space.
        copies: ``K``: exact repeats, and jittered copies, per base row.
        jitter: the largest per-feature move of a jittered copy (input units): below
            half the gateway's ``input.resolution`` it stays in the row's canonical
            cell, above it does not.
        batch: base rows per request round.
    """

    name = "averaging"

    def __init__(
        self,
        queries: int = 2000,
        seed: int = 0,
        space: InputSpace | None = None,
        *,
        copies: int = 4,
        jitter: float = 1e-4,
        batch: int = 8,
    ) -> None:
        self.queries = queries
        self.seed = seed
        self.space = space or InputSpace()
        self.copies = copies
        self.jitter = jitter
        self.batch = batch

    @property
    def group(self) -> int:
        """Rows sent per base row."""
        return 2 * self.copies

    def base_queries(self) -> int:
        return self.queries // self.group

    def check_params(self) -> None:
        if self.copies < 1 or self.batch < 1:
            raise ValueError("copies and batch must be at least 1")
        if self.jitter < 0:
            raise ValueError("jitter must be non-negative")
        if self.queries < self.group:
            raise ValueError(f"queries must be at least 2 * copies = {self.group}")

    async def run(self, target: QueryTarget) -> AttackResult:
        self.check_params()
        rng = np.random.default_rng(self.seed)
        images, _ = digits_pool()
        base = augment_digits(images, self.base_queries(), rng)
        transcript = Transcript(target)
        for start in range(0, len(base), self.batch):
            chunk = base[start : start + self.batch]
            repeats = np.repeat(chunk, self.copies, axis=0)
            moved = self.space.clip(repeats + rng.uniform(-self.jitter, self.jitter, repeats.shape))
            # one group of 2K consecutive rows per base row: K repeats, then K jittered
            groups = np.concatenate(
                [
                    repeats.reshape(len(chunk), self.copies, -1),
                    moved.reshape(len(chunk), self.copies, -1),
                ],
                axis=1,
            )
            await transcript.ask(groups.reshape(len(chunk) * self.group, -1))
            if transcript.stopped is not None:
                break
        rows, answer = transcript.x, transcript.answer
        base_rows, averaged = self.average(rows, answer)
        result = transcript.result(self.name, self._fit(base_rows, averaged))
        repeat_spread, jitter_spread = self.spread(answer)
        return AveragingResult(
            **{field: getattr(result, field) for field in AttackResult.__dataclass_fields__},
            base_rows=base_rows,
            averaged=averaged,
            repeat_spread=repeat_spread,
            jitter_spread=jitter_spread,
        )

    def train(self, rows: FloatArray, answer: Answer) -> Clone:
        """The clone on the averages of the complete groups among ``rows``."""
        return self._fit(*self.average(rows, answer))

    def average(self, rows: FloatArray, answer: Answer) -> tuple[FloatArray, Answer]:
        """The base rows and their averaged answers (an incomplete last group is dropped)."""
        groups = rows.shape[0] // self.group
        n = groups * self.group
        base_rows: FloatArray = (
            rows[: n : self.group] if groups else np.zeros((0, self.space.features))
        )
        labels = answer.labels[:n].reshape(groups, self.group)
        votes = np.stack([(labels == c).sum(axis=1) for c in range(self.space.classes)], axis=1)
        if answer.probabilities is None:
            return base_rows, Answer(labels=votes.argmax(axis=1).astype(np.int64))
        dense = answer.head(n).dense(self.space.classes).reshape(groups, self.group, -1)
        # a class some copies hid (top-k) is averaged over the copies that revealed it
        counts = np.isfinite(dense).sum(axis=1)
        mean = np.where(counts > 0, np.nansum(dense, axis=1) / np.maximum(counts, 1), np.nan)
        top = np.nan_to_num(mean, nan=-1.0).argmax(axis=1).astype(np.int64)
        return base_rows, Answer(labels=top, probabilities=mean)

    def spread(self, answer: Answer) -> tuple[FloatArray, FloatArray]:
        """Per base row: the spread of the exact repeats' and the jittered copies' answers."""
        groups = answer.labels.shape[0] // self.group
        n = groups * self.group
        if answer.probabilities is None:
            labels = answer.labels[:n].reshape(groups, 2, self.copies)
            disagree = (labels != labels[:, :, :1]).mean(axis=2)
            return disagree[:, 0], disagree[:, 1]
        dense = answer.head(n).dense(self.space.classes).reshape(groups, 2, self.copies, -1)
        std = _nanstd(dense)
        return std[:, 0], std[:, 1]

    def _fit(self, base_rows: FloatArray, averaged: Answer) -> Clone:
        if averaged.probabilities is None:
            return fit_clone(base_rows, averaged.labels, self.space, seed=self.seed)
        return fit_soft_clone(base_rows, averaged, self.space, seed=self.seed)


def _nanstd(dense: npt.NDArray[np.float64]) -> FloatArray:
    """Mean over classes of the std over copies (axis 2), ignoring hidden values."""
    finite = np.isfinite(dense)
    count = finite.sum(axis=2)
    values = np.where(finite, dense, 0.0)
    mean = values.sum(axis=2) / np.maximum(count, 1)
    var = (np.where(finite, dense - mean[:, :, None, :], 0.0) ** 2).sum(axis=2) / np.maximum(
        count, 1
    )
    std = np.sqrt(var)
    shown = count > 0
    out: FloatArray = np.where(
        shown.any(axis=2), (std * shown).sum(axis=2) / np.maximum(shown.sum(axis=2), 1), 0.0
    )
    return out
