"""A scenario end to end through the Python API: efficacy and benign results, reports
with tables and PNG plots, a sweep, the same numbers for the same seed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from attack_helpers import tiny_scenario
from helpers import demo_state
from modelshield.evaluation import (
    Evaluation,
    EvaluationResults,
    Scenario,
    run_scenario,
    write_report,
)
from modelshield.evaluation.results import (
    BENIGN_HEADER,
    EFFICACY_HEADER,
    benign_rows,
    efficacy_rows,
    markdown_table,
)

NOISE = "plans.free.shaping.perturb.1.level"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, demo_cache: Path) -> dict[str, Any]:
    """One run of a two-attack, two-variant sweep, shared by the tests of this module."""
    state = demo_state(tmp_path_factory.mktemp("runner") / "state", demo_cache)
    scenario = Scenario.model_validate(
        tiny_scenario(
            state,
            checkpoints=[50, 100],
            benign={"accounts": 3, "horizon_s": 60, "rows_per_account": 20},
            attacks=[
                {"kind": "equation-solving", "queries": 150},
                {"kind": "knockoff", "queries": 150, "accounts": 2, "addresses": "subnet"},
            ],
            sweep={NOISE: [0.0, 0.05]},
        )
    )
    progress: list[str] = []
    evaluation = Evaluation(scenario, progress=progress.append)
    results = asyncio.run(evaluation.run())
    return {"results": results, "progress": progress, "total": evaluation.total_runs}


def test_a_sweep_runs_each_variant_and_the_baseline_once(sweep: dict[str, Any]) -> None:
    results: EvaluationResults = sweep["results"]
    assert [v.variant for v in results.variants] == [{NOISE: 0.0}, {NOISE: 0.05}]
    # 2 attacks x 2 variants protected, and each attack once unprotected
    assert sweep["total"] == 6 and len(sweep["progress"]) == 6
    assert sweep["progress"][:2] == [
        "equation-solving (unprotected)",
        "knockoff-sybil2 (unprotected)",
    ]
    for variant in results.variants:
        assert variant.attacks == ["equation-solving", "knockoff-sybil2"]
        for attack in variant.attacks:
            assert variant.run(attack, protected=True) is not None
        assert variant.run("knockoff-sybil2", False) is results.variants[0].run(
            "knockoff-sybil2", False
        )
    assert results.model == "digits" and results.test_rows == 450
    assert results.site == "in-process gateway (simulated clock)"


def test_efficacy_fields_with_and_without_protection(sweep: dict[str, Any]) -> None:
    results: EvaluationResults = sweep["results"]
    variant = results.variants[0]
    for attack in variant.attacks:
        bare = variant.run(attack, protected=False)
        guarded = variant.run(attack, protected=True)
        assert bare is not None and guarded is not None
        # unprotected: every query answered, scored at each checkpoint and at the end
        assert bare.detection is None and bare.stopped is None and bare.queries == 150
        assert [p.queries for p in bare.curve] == [50, 100, 150]
        assert bare.curve[-1].fidelity == bare.fidelity
        # the demo policy flags both attacks (measured: after 64 and 50 queries) and
        # suspends them, so the protected clone is worse
        det = guarded.detection
        assert det is not None and det.flagged and det.detector
        assert det.queries is not None and 0 < det.queries <= guarded.queries <= 150
        assert det.seconds is not None and det.seconds >= 0
        assert det.strongest_action == "suspend" and guarded.stopped is not None
        assert guarded.fidelity < bare.fidelity
    # the published results at small scale: equation solving recovers the model from
    # full probabilities (measured 0.996), knockoff clones it (measured 0.971)
    solved = variant.run("equation-solving", protected=False)
    assert solved is not None and solved.fidelity >= 0.99
    sybil = variant.run("knockoff-sybil2", protected=False)
    assert sybil is not None and sybil.accounts == 2 and sybil.fidelity >= 0.9

    rows = efficacy_rows(results)
    assert len(rows) == 4 and all(len(r) == len(EFFICACY_HEADER) for r in rows)
    first = rows[0]
    guarded = variant.run("equation-solving", protected=True)
    assert guarded is not None and guarded.detection is not None
    assert first[:3] == ["equation-solving", f"{NOISE}=0.0", str(guarded.queries)]
    assert first[3:5] == [f"{solved.fidelity:.1%}", f"{guarded.fidelity:.1%}"]
    assert first[5:] == [
        "yes",
        str(guarded.detection.queries),
        guarded.detection.detector,
        "suspend",
    ]


def test_benign_rows_count_the_population_once(sweep: dict[str, Any]) -> None:
    results: EvaluationResults = sweep["results"]
    l1 = []
    for variant in results.variants:
        # the three customers ran beside each of the two attacks: still three customers
        assert [b.accounts for b in variant.benign] == [3, 3]
        totals = variant.benign_totals()
        assert totals["accounts"] == 3 and totals["runs"] == 2
        assert totals["rows_answered"] == sum(b.rows_answered for b in variant.benign) > 0
        # shaping never changes a legitimate user's top-1 (DESIGN invariant 3)
        assert totals["top1_agreement"] == 1.0
        assert totals["false_positive_rate"] == totals["flagged"] / 3
        l1.append(totals["mean_l1"])
    # more noise costs legitimate users more (measured mean L1 0.026 -> 0.068)
    assert 0 < l1[0] < l1[1]
    assert [r[1] for r in benign_rows(results)] == ["3", "3"]


def test_report_files_hold_the_tables_and_plots(sweep: dict[str, Any], tmp_path: Path) -> None:
    results: EvaluationResults = sweep["results"]
    notes = write_report(results, tmp_path / "out")
    assert notes == []
    out = tmp_path / "out"
    for plot in ("fidelity.png", "detection.png", "tradeoff.png"):
        assert (out / plot).read_bytes()[:8] == PNG, plot
    saved = json.loads((out / "results.json").read_text())
    assert saved["variants"][1]["benign_totals"]["accounts"] == 3
    assert EvaluationResults.from_dict(saved).to_dict() == results.to_dict()

    markdown = (out / "report.md").read_text()
    assert markdown_table(EFFICACY_HEADER, efficacy_rows(results)) in markdown
    assert markdown_table(BENIGN_HEADER, benign_rows(results)) in markdown
    assert "![fidelity.png](fidelity.png)" in markdown
    page = (out / "report.html").read_text()
    assert page.count("<table>") == 2 and page.count("<img ") == 3
    assert "knockoff-sybil2" in page


async def test_the_same_seed_gives_the_same_numbers(tmp_path: Path, demo_cache: Path) -> None:
    state = demo_state(tmp_path / "state", demo_cache)
    runs = []
    for seed in (5, 5, 6):
        scenario = Scenario.model_validate(tiny_scenario(state, seed=seed))
        data = (await run_scenario(scenario)).to_dict()
        data.pop("elapsed_s")
        runs.append(data)
    assert runs[0] == runs[1]
    assert runs[0]["variants"][0]["runs"] != runs[2]["variants"][0]["runs"]
