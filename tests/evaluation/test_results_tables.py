"""Result tables on hand-computed cases: benign totals, efficacy rows, benign utility."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelshield.evaluation.attacks.base import InputSpace
from modelshield.evaluation.results import (
    ActionSeen,
    AttackRun,
    BenignOutcome,
    Detection,
    EvaluationResults,
    VariantResult,
    benign_rows,
    efficacy_rows,
)
from modelshield.evaluation.runner import Reference, benign_utility
from modelshield.evaluation.targets import Answer


def _outcome(attack: str, **fields: Any) -> BenignOutcome:
    values: dict[str, Any] = {
        "attack": attack,
        "accounts": 4,
        "requests": 10,
        "rows_answered": 30,
        "refused_429": 1,
        "refused_403": 0,
        "flagged": 0,
        "actioned": {},
        "top1_agreement": 1.0,
        "mean_l1": 0.1,
    }
    return BenignOutcome(**{**values, **fields})


def test_benign_totals_count_each_customer_once_over_the_runs() -> None:
    variant = VariantResult(
        variant={},
        benign=[
            _outcome(
                "a",
                flagged=2,
                flagged_accounts=[1, 2],
                actioned={"throttle": 1},
                acted_accounts=[2],
                severities={"1": "low", "2": "medium"},
            ),
            _outcome(
                "b",
                rows_answered=10,
                refused_429=2,
                flagged=2,
                flagged_accounts=[2, 3],
                actioned={"suspend": 1},
                acted_accounts=[2],
                severities={"2": "high", "3": "medium"},
                top1_agreement=0.5,
                mean_l1=0.3,
            ),
        ],
    )
    totals = variant.benign_totals()
    assert totals == {
        "accounts": 4,  # the population, not 4 per run
        "runs": 2,
        "flagged": 3,  # customers 1, 2 and 3
        "acted_on": 1,  # customer 2, beside both attacks
        "false_positive_rate": 0.75,
        # each customer at the strongest severity it reached beside any attack
        "by_severity": {"low": 1, "medium": 1, "high": 1, "critical": 0},
        "medium_or_higher": 2,
        "refused_429": 3,
        "refused_403": 0,
        "rows_answered": 40,
        "top1_agreement": pytest.approx((30 * 1.0 + 10 * 0.5) / 40),
        "mean_l1": pytest.approx((30 * 0.1 + 10 * 0.3) / 40),
    }
    results = EvaluationResults("s", 0, "site", "digits", 450, variants=[variant])
    assert benign_rows(results) == [
        ["as configured", "4", "3 (75.0%)", "2 (50.0%)", "1", "3", "87.50%", "0.1500"]
    ]
    # results saved before the indexes were recorded: at least the largest run's count
    legacy = VariantResult(variant={}, benign=[_outcome("a", flagged=1), _outcome("b", flagged=2)])
    assert legacy.benign_totals()["flagged"] == 2


def test_efficacy_rows_show_what_was_and_was_not_measured() -> None:
    def run(
        attack: str, protected: bool, fidelity: float, detection: Detection | None
    ) -> AttackRun:
        return AttackRun(
            attack=attack,
            kind="uniform",
            accounts=1,
            protected=protected,
            queries=200,
            throttled=0,
            waited_s=0.0,
            accuracy=fidelity,
            fidelity=fidelity,
            detection=detection,
        )

    caught = Detection(
        flagged=True,
        queries=120,
        seconds=6.0,
        detector="account:ood_fraction",
        actions=[ActionSeen("notify", 120, 6.0), ActionSeen("degrade", 150, 7.5)],
    )
    variant = VariantResult(
        variant={"plans.free.shaping.perturb.1.level": 0.05},
        runs=[
            run("caught", True, 0.4, caught),
            run("caught", False, 0.9, None),
            run("missed", True, 0.85, Detection()),
            run("baseline-only", False, 0.7, None),
        ],
    )
    results = EvaluationResults("s", 0, "site", "digits", 450, variants=[variant])
    label = "plans.free.shaping.perturb.1.level=0.05"
    assert efficacy_rows(results) == [
        ["caught", label, "200", "90.0%", "40.0%", "yes", "120", "account:ood_fraction", "degrade"],
        ["missed", label, "200", "-", "85.0%", "no", "-", "-", "-"],
        ["baseline-only", label, "200", "70.0%", "-", "-", "-", "-", "-"],
    ]


class _Backend:
    async def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])[: len(rows)]


async def test_benign_utility_by_hand() -> None:
    reference = Reference(
        backend=_Backend(),  # type: ignore[arg-type]
        space=InputSpace(features=1, classes=2),
        test_rows=np.zeros((0, 1)),
        test_labels=np.zeros(0, dtype=np.int64),
        victim_labels=np.zeros(0, dtype=np.int64),
    )
    rows = [np.zeros((2, 1)), np.zeros((1, 1)), np.zeros((0, 1))]
    answers = [
        # probabilities: L1 |0.6-0.7|+|0.4-0.3| = 0.2 and 0.6; the second label is wrong
        Answer(labels=np.array([0, 0]), probabilities=np.array([[0.6, 0.4], [0.5, 0.5]])),
        # a label only counts as one-hot: L1 0.8, and it is right
        Answer(labels=np.array([0])),
        Answer(labels=np.zeros(0, dtype=np.int64)),  # nothing answered: not counted
    ]
    agreement, l1, answered = await benign_utility(rows, answers, reference)
    assert answered == 3
    assert agreement == pytest.approx(2 / 3)
    assert l1 == pytest.approx((0.2 + 0.6 + 0.8) / 3)
