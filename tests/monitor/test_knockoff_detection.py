"""Knockoff-style extraction with natural data reaches "high" within a few hundred rows.

Rows are fed in requests of 10 on a simulated clock (one request a second), and the
account is scored after each request, as the monitor does.
"""

from __future__ import annotations

import numpy as np
import pytest
import streams
from streams import Digits

from modelshield.monitor.calibration import replay
from modelshield.monitor.detectors import Verdict
from modelshield.monitor.features import (
    UNIFORMITY_FLOOR,
    AccountState,
    class_uniformity,
    compute_features,
)

ORDER = ("low", "medium", "high", "critical")


def first_rows_at(
    digits: Digits, rows: np.ndarray, level: str, *, min_rows: int = 50
) -> tuple[int | None, Verdict]:
    """Rows the account had sent when its severity first reached ``level``."""
    probs = digits.probs(rows)
    state = AccountState("acc")
    verdict = Verdict(risk=0.0, severity=None)
    for i in range(0, len(rows), 10):
        replay(state, rows[i : i + 10], probs[i : i + 10], digits.reference, start=float(i))
        if state.rows_seen < min_rows:
            continue
        verdict = digits.scorer.score(
            compute_features(state.view(), digits.reference, now=float(i))
        )
        if verdict.severity is not None and ORDER.index(verdict.severity) >= ORDER.index(level):
            return state.rows_seen, verdict
    return None, verdict


def test_class_uniformity_grows_with_even_coverage_only() -> None:
    even = [class_uniformity([n] * 10) for n in (10, 30, 100)]
    assert 0 < even[0] < even[1] < even[2]
    skewed = class_uniformity([120, 60, 20, 0, 0, 0, 0, 0, 0, 0])
    assert skewed == UNIFORMITY_FLOOR  # floored: only the abnormal side matters
    # classes never asked about count: an even mix over 3 of 10 classes is not uniform
    assert class_uniformity([40, 40, 40], classes=10) < 0 < class_uniformity([40, 40, 40])


@pytest.mark.parametrize(
    ("stream", "detector"),
    [
        ("augmented", "ood_fraction"),
        ("other_dataset", "ood_fraction"),
        ("in_distribution", "class_uniformity"),
        ("class_shifted", "class_uniformity"),
    ],
)
def test_knockoff_streams_reach_high_within_a_few_hundred_rows(
    digits: Digits, stream: str, detector: str
) -> None:
    rng = np.random.default_rng(10)
    rows = {
        "augmented": lambda: streams.augmented_digits(digits.train, rng, 400),
        "other_dataset": lambda: streams.other_dataset(rng, 400),
        "in_distribution": lambda: streams.knockoff(digits.test, rng, 400),
        "class_shifted": lambda: streams.class_shifted(digits.test, digits.test_labels, rng, 400),
    }[stream]()
    rows_at, verdict = first_rows_at(digits, rows, "high")
    assert rows_at is not None and rows_at <= 400, verdict.reasons
    assert detector in verdict.fired, verdict.reasons


def test_class_mix_evidence_alone_degrades_but_never_suspends(digits: Digits) -> None:
    rows = streams.knockoff(digits.test, np.random.default_rng(11), 440)
    _, verdict = first_rows_at(digits, rows, "critical")
    assert verdict.severity == "high", verdict.reasons
    assert set(verdict.fired) <= {"class_uniformity", "class_balance", "isolation_forest"}


def test_identical_resends_are_not_near_duplicates_or_probes(digits: Digits) -> None:
    """A batch job re-scoring the same rows: repeats, not a PRADA signal."""
    rng = np.random.default_rng(12)
    picks = streams.benign(digits.test, digits.test_labels, rng, 150)
    rows = np.concatenate([picks] * 6)
    state = replay(AccountState("nightly"), rows, digits.probs(rows), digits.reference)
    features = compute_features(state.view(), digits.reference, now=0.0)
    assert features["repeat_fraction"] > 0.8
    assert features["near_duplicate_fraction"] == 0.0
    verdict = digits.scorer.score(features)
    assert verdict.severity not in ("high", "critical"), verdict.reasons


def test_a_small_accounts_chance_tail_stays_below_high(digits: Digits) -> None:
    """A rule just crossed on 60 rows is weaker evidence than on 600."""
    threshold = digits.scorer.rules_.thresholds()["low_margin_fraction"]
    base = {**digits.benign[0], "low_margin_fraction": threshold * 1.6}
    small = digits.scorer.score({**base, "window_rows": 60.0})
    large = digits.scorer.score({**base, "window_rows": 600.0})
    assert "low_margin_fraction" in small.fired and "low_margin_fraction" in large.fired
    assert small.risk < large.risk
