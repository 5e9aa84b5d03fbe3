"""Each synthetic attack is flagged by the detector that should see it; benign passes."""

from __future__ import annotations

import numpy as np
import pytest
import streams
from streams import Digits

from modelshield.monitor.calibration import replay
from modelshield.monitor.detectors import Verdict
from modelshield.monitor.features import AccountState, compute_features, merge_views
from modelshield.monitor.sybil import SybilLinker


def score(digits: Digits, rows: np.ndarray, name: str = "acc") -> Verdict:
    state = replay(AccountState(name), rows, digits.probs(rows), digits.reference)
    return digits.scorer.score(compute_features(state.view(), digits.reference, now=0.0))


def test_benign_streams_are_not_acted_on(digits: Digits) -> None:
    rng = np.random.default_rng(1)
    verdicts = [
        score(
            digits, streams.benign(digits.test, digits.test_labels, rng, int(rng.integers(60, 500)))
        )
        for _ in range(60)
    ]
    acted = [v for v in verdicts if v.severity in ("high", "critical")]
    flagged = [v for v in verdicts if v.severity is not None]
    assert len(acted) <= 1, [v.reasons for v in acted]
    assert len(flagged) <= 6, [v.reasons for v in flagged]


@pytest.mark.parametrize(
    ("attack", "expected"),
    [
        ("uniform", "ood_fraction"),
        ("walk", "near_duplicate_fraction"),
        ("flood", "near_duplicate_fraction"),
    ],
)
def test_synthetic_attacks_are_flagged_critical(digits: Digits, attack: str, expected: str) -> None:
    rng = np.random.default_rng(2)
    rows = {
        "uniform": lambda: streams.uniform(rng, 200),
        "walk": lambda: streams.boundary_walk(digits.test, rng, walks=10, steps=20),
        "flood": lambda: streams.near_duplicate_flood(digits.test, rng, seeds=10, copies=20),
    }[attack]()
    verdict = score(digits, rows)
    assert verdict.severity == "critical", verdict.reasons
    assert expected in verdict.fired
    assert "isolation_forest" in verdict.fired


def test_prada_statistic_separates_walks_from_natural_queries(digits: Digits) -> None:
    rng = np.random.default_rng(3)
    natural = score(digits, streams.knockoff(digits.test, rng, 300)).features["prada_w"]
    walk = score(digits, streams.boundary_walk(digits.test, rng, 10, 20)).features["prada_w"]
    assert natural > 0.8 > 0.5 > walk


def test_knockoff_with_natural_data_is_caught_by_class_coverage(digits: Digits) -> None:
    verdict = score(digits, streams.knockoff(digits.test, np.random.default_rng(4), 400))
    assert verdict.severity == "high" and "class_uniformity" in verdict.fired


def test_state_is_bounded_whatever_the_history(digits: Digits) -> None:
    rng = np.random.default_rng(5)
    rows = streams.knockoff(digits.test, rng, 450)
    state = AccountState("big")
    for i in range(6):
        replay(
            state,
            rows,
            digits.probs(rows),
            digits.reference,
            start=i * 1000.0,
            window=200,
            reservoir_cap=300,
            batch=32,
        )
    assert state.rows_seen == 2700
    assert len(state.recent) == 200 and len(state.reservoir) == 300
    assert len(state.cell_counts) <= state.max_cells


def test_state_round_trips_through_its_persisted_form(digits: Digits) -> None:
    rng = np.random.default_rng(6)
    rows = streams.near_duplicate_flood(digits.test, rng, 5, 30)
    state = replay(AccountState("acc"), rows, digits.probs(rows), digits.reference, window=100)
    import orjson

    again = AccountState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    before = compute_features(state.view(), digits.reference, now=0.0)
    after = compute_features(again.view(), digits.reference, now=0.0)
    assert before == pytest.approx(after)
    assert again.rows_seen == state.rows_seen and len(again.reservoir) == len(state.reservoir)


def test_sybil_split_across_ten_accounts_is_linked_and_flagged_as_a_group(
    digits: Digits,
) -> None:
    """Each account sends 30 rows (below min_rows); together they are one flood."""
    rng = np.random.default_rng(7)
    seeds = digits.test[rng.integers(len(digits.test), size=6)]
    linker = SybilLinker(capacity=5000, eps=digits.reference.near_duplicate_eps, min_links=5)
    states = []
    for n in range(10):
        rows = np.clip(np.repeat(seeds, 5, axis=0) + rng.uniform(-1, 1, (30, 64)), 0, 16)
        state = replay(AccountState(f"sybil{n}"), rows, digits.probs(rows), digits.reference)
        for row, distance, other in linker.add(state.account_id, state.recent[-30:]):
            state.note_cross(len(state.x_min) - 30 + row, distance, other)
        states.append(state)
    # benign accounts sharing the service are not pulled into the group
    for n in range(3):
        rows = streams.benign(digits.test, digits.test_labels, rng, 30)
        linker.add(
            f"benign{n}",
            replay(AccountState("b"), rows, digits.probs(rows), digits.reference).recent,
        )
    (group,) = linker.groups()
    assert group == sorted(f"sybil{n}" for n in range(10))
    merged = merge_views([s.view(set(group)) for s in states])
    verdict = digits.scorer.score(compute_features(merged, digits.reference, now=0.0))
    assert merged.rows_seen == 300
    assert verdict.severity == "critical" and "near_duplicate_fraction" in verdict.fired
