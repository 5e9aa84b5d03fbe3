"""Utility of each plan's answers on held-out data, and the averaging-attack check.

For every plan (and every shaping level, on top of the default plan) the held-out
rows go through the model and the plan's shaping exactly as the gateway would shape
them, and the answer is compared with the unprotected model:

- **top-1 agreement**: the answer's top class (the argmax of what the caller receives,
  or its label) equals the unprotected model's;
- **mean L1** and **mean KL(p ‖ q)** between the unprotected probabilities ``p`` and
  the distribution ``q`` a caller can rebuild from the answer (:func:`as_distribution`:
  revealed probabilities as given, the missing mass spread evenly over the classes not
  revealed; a label-only answer is a one-hot vector);
- **ECE** (expected calibration error, 15 equal-width bins) of ``p`` and of ``q``
  against the true labels;
- **averaging**: each row asked ``copies`` times as is, and ``copies`` times jittered
  by up to 0.45 x the model's input resolution per feature: how many rows got the
  identical answer every time, and the averaged answers' L1 distance to ``p`` against
  a single answer's. Keyed shaping gives repeats the identical answer, so their
  average is the single answer; jittered copies get the same noise, and with
  ``input.snap`` the identical answer too.

The unprotected reference ``p`` is the model's answer to the rows as sent; shaped
answers are computed as the gateway computes them (on the snapped rows with
``input.snap``).

The command line runs it on the digits held-out split: ``modelshield evaluate utility``.

Example:
    >>> from modelshield.controls.minimization import Minimization
    >>> top3 = Minimization(top_k=3)(np.array([[0.5, 0.3, 0.1, 0.06, 0.04]]))
    >>> as_distribution(top3, np.array([0]), 5).round(2).tolist()
    [[0.5, 0.3, 0.1, 0.05, 0.05]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelshield.controls.canonical import snap_rows
from modelshield.controls.minimization import Minimized
from modelshield.controls.shaping import PolicyShaper, ShapingChain
from modelshield.models.base import FloatArray, ModelBackend, as_probabilities
from modelshield.policy.schema import Policy
from modelshield.policy.shaping import NoiseSpec, ReverseSigmoidSpec, ShapingSpec

_SMOOTHING = 1e-6
_BINS = 15


@dataclass(frozen=True, slots=True)
class AveragingCheck:
    """Does averaging copies of a query get closer to the unprotected answer?

    ``*_l1`` are mean L1 distances to the unprotected probabilities.
    """

    copies: int
    single_l1: float
    repeated_l1: float
    """The average of ``copies`` repeats of each row."""
    jittered_l1: float
    """The average of ``copies`` jittered copies of each row (below the resolution)."""
    repeats_identical: float
    """Share of rows whose repeats all got the identical answer."""
    jitter_identical: float
    """Share of rows whose jittered copies all got the same answer as the row itself."""


@dataclass(frozen=True, slots=True)
class PlanUtility:
    plan: str
    level: str | None
    answer: str
    rows: int
    top1_agreement: float
    mean_l1: float
    mean_kl: float
    ece_before: float
    ece_after: float
    averaging: AveragingCheck


@dataclass(frozen=True, slots=True)
class UtilityReport:
    model: str
    rows: int
    copies: int
    results: list[PlanUtility]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        """The report as a Markdown table."""
        k = self.copies
        lines = [
            "| plan | level | answer | top-1 agreement | mean L1 | mean KL | ECE before → after "
            f"| avg of {k} repeats: identical, L1 | avg of {k} jittered: identical, L1 |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.results:
            a = r.averaging
            lines.append(
                f"| {r.plan} | {r.level or '-'} | {r.answer} | {r.top1_agreement:.2%} "
                f"| {r.mean_l1:.4f} | {r.mean_kl:.4f} | {r.ece_before:.4f} → {r.ece_after:.4f} "
                f"| {a.repeats_identical:.0%}, {a.repeated_l1:.4f} "
                f"| {a.jitter_identical:.0%}, {a.jittered_l1:.4f} |"
            )
        return "\n".join(lines)


def describe(spec: ShapingSpec, outputs: Sequence[str]) -> str:
    """A short description of the answer a plan gives, e.g. ``top-3, 3 dp, noise 2% + label``.

    Example:
        >>> describe(ShapingSpec(), ["probabilities", "label"])
        'probabilities + label'
    """
    if spec.label_only or "probabilities" not in outputs:
        return "label only"
    parts: list[str] = []
    m = spec.minimize
    if m.top_k is not None:
        parts.append(f"top-{m.top_k}")
    if m.floor is not None:
        parts.append(f"floor {m.floor:g}")
    if m.renormalize:
        parts.append("renormalized")
    if m.decimals is not None:
        parts.append(f"{m.decimals} dp")
    for p in spec.perturb:
        if isinstance(p, NoiseSpec):
            parts.append(f"noise {p.level:.0%}")
        elif isinstance(p, ReverseSigmoidSpec):
            parts.append(f"reverse sigmoid beta={p.beta:g} gamma={p.gamma:g}")
        else:
            parts.append(f"misinformation below {p.threshold:g}")
    text = ", ".join(parts) if parts else "probabilities"
    return text + (" + label" if "label" in outputs else "")


def as_distribution(
    answer: Minimized | None, top: npt.NDArray[np.intp], classes: int
) -> FloatArray:
    """The full distribution a caller can rebuild from an answer (None: label only)."""
    n = top.shape[0]
    rows = np.arange(n)
    if answer is None:
        onehot = np.zeros((n, classes))
        onehot[rows, top] = 1.0
        return onehot
    if answer.columns is None:
        dense: FloatArray = np.clip(answer.values, 0.0, None)
        normalized: FloatArray = dense / dense.sum(axis=1, keepdims=True)
        return normalized
    revealed = answer.columns >= 0
    counts = revealed.sum(axis=1)
    missing = np.clip(1.0 - np.where(revealed, answer.values, 0.0).sum(axis=1), 0.0, None)
    spread = np.where(counts < classes, missing / np.maximum(classes - counts, 1), 0.0)
    rebuilt = np.repeat(spread[:, None], classes, axis=1)
    r, c = np.nonzero(revealed)
    rebuilt[r, answer.columns[r, c]] = answer.values[r, c]
    rebuilt = np.clip(rebuilt, 0.0, None)
    result: FloatArray = rebuilt / rebuilt.sum(axis=1, keepdims=True)
    return result


def expected_calibration_error(
    probabilities: FloatArray, labels: npt.NDArray[np.int64], bins: int = _BINS
) -> float:
    """ECE: the confidence-weighted gap between confidence and accuracy over ``bins`` bins.

    Example:
        >>> expected_calibration_error(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 1]))
        0.35
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap = abs(float(confidence[members].mean()) - float(correct[members].mean()))
            total += gap * float(members.mean())
    return round(total, 12)


def _l1(a: FloatArray, b: FloatArray) -> FloatArray:
    distance: FloatArray = np.abs(a - b).sum(axis=1)
    return distance


def _kl(p: FloatArray, q: FloatArray) -> FloatArray:
    classes = p.shape[1]
    smooth_p = (p + _SMOOTHING) / (1.0 + classes * _SMOOTHING)
    smooth_q = (q + _SMOOTHING) / (1.0 + classes * _SMOOTHING)
    kl: FloatArray = (smooth_p * np.log(smooth_p / smooth_q)).sum(axis=1)
    return kl


class _Answerer:
    """Shape raw probabilities as one plan at one level answers them."""

    def __init__(self, shaper: PolicyShaper, model: str, chain: ShapingChain, probs: bool):
        self.shaper = shaper
        self.model = model
        self.chain = chain
        self.label_only = chain.label_only or not probs

    def keys(self, rows: FloatArray) -> list[bytes]:
        return self.shaper.keys(self.model, rows) if self.chain.keyed else []

    def __call__(self, raw: FloatArray, rows: FloatArray) -> FloatArray:
        top = raw.argmax(axis=1)
        if self.label_only:
            return as_distribution(None, top, raw.shape[1])
        return as_distribution(self.chain(raw, self.keys(rows)), top, raw.shape[1])


def _all_identical(copies: Sequence[FloatArray], reference: FloatArray) -> float:
    same = np.all([np.all(c == reference, axis=1) for c in copies], axis=0)
    return float(same.mean())


async def evaluate_utility(
    policy: Policy,
    backend: ModelBackend,
    *,
    model: str,
    secret: bytes,
    rows: FloatArray,
    labels: npt.NDArray[np.int64],
    copies: int = 16,
    seed: int = 0,
) -> UtilityReport:
    """Measure every plan (and every shaping level on the default plan) on ``rows``.

    ``backend`` must be loaded. ``labels`` are the true classes (column indices).
    """
    spec = policy.models[model]
    shaper = PolicyShaper(policy, secret)
    rng = np.random.default_rng(seed)
    rows = np.asarray(rows, dtype=np.float64)
    n = rows.shape[0]
    raw = as_probabilities(await backend.predict(rows), n)
    served = raw
    if spec.input.snap:
        served = as_probabilities(await backend.predict(snap_rows(rows, spec.input)), n)
    step = spec.input.resolution * 0.45
    low = -math.inf if spec.input.min is None else spec.input.min
    high = math.inf if spec.input.max is None else spec.input.max
    jittered = np.clip(rows[None] + rng.uniform(-step, step, (copies, *rows.shape)), low, high)
    flat = jittered.reshape(copies * n, rows.shape[1])
    if spec.input.snap:
        flat = snap_rows(flat, spec.input)
    jitter_raw = as_probabilities(await backend.predict(flat), copies * n)
    jitter_raw = jitter_raw.reshape(copies, n, raw.shape[1])
    truth = raw.argmax(axis=1)
    ece_before = expected_calibration_error(raw, labels)
    cases: list[tuple[str, str | None]] = [
        (name, None)
        for name, plan in policy.plans.items()
        if plan.models is None or model in plan.models
    ]
    cases += [(policy.default_plan_name, level) for level in policy.shaping_levels]
    results: list[PlanUtility] = []
    for plan_name, level in cases:
        plan = policy.plans[plan_name]
        chain, _ = shaper.chain(plan_name, level)
        answer = _Answerer(shaper, model, chain, "probabilities" in plan.outputs)
        shown = answer(served, rows)
        repeats = [answer(served, rows) for _ in range(copies)]
        jitter = [answer(jitter_raw[i], jittered[i]) for i in range(copies)]
        results.append(
            PlanUtility(
                plan=plan_name,
                level=level,
                answer=describe(chain.spec, plan.outputs),
                rows=n,
                top1_agreement=float((shown.argmax(axis=1) == truth).mean()),
                mean_l1=float(_l1(shown, raw).mean()),
                mean_kl=float(_kl(raw, shown).mean()),
                ece_before=ece_before,
                ece_after=expected_calibration_error(shown, labels),
                averaging=AveragingCheck(
                    copies=copies,
                    single_l1=float(_l1(shown, raw).mean()),
                    repeated_l1=float(_l1(np.mean(repeats, axis=0), raw).mean()),
                    jittered_l1=float(_l1(np.mean(jitter, axis=0), raw).mean()),
                    repeats_identical=_all_identical(repeats, shown),
                    jitter_identical=_all_identical(jitter, shown),
                ),
            )
        )
    return UtilityReport(model=model, rows=n, copies=copies, results=results)
