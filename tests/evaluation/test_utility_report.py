"""`evaluate utility`: per-plan cost on held-out digits, and averaging recovers nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from helpers import demo_state
from modelshield.cli.main import _register, cli
from modelshield.evaluation.utility import (
    UtilityReport,
    as_distribution,
    evaluate_utility,
    expected_calibration_error,
)
from modelshield.models.demo import DigitsModel, digits_split
from modelshield.policy.schema import Policy
from shaping_helpers import SECRET, shaping_policy_data


@pytest.fixture
async def report(demo_cache: Path) -> UtilityReport:
    policy = Policy.model_validate(shaping_policy_data())
    model = DigitsModel(demo_cache)
    await model.load()
    _, rows, _, labels = digits_split()
    return await evaluate_utility(
        policy,
        model,
        model="digits",
        secret=SECRET,
        rows=rows[:120],
        labels=np.asarray(labels[:120], dtype=np.int64),
        copies=6,
    )


async def test_every_plan_and_level_keeps_the_top1(report: UtilityReport) -> None:
    cases = [(r.plan, r.level) for r in report.results]
    assert cases == [
        ("free", None),
        ("labels", None),
        ("raw", None),
        ("free", "degraded"),
        ("free", "labels-only"),
    ]
    assert all(r.top1_agreement == 1.0 for r in report.results)
    by_case = {(r.plan, r.level): r for r in report.results}
    raw = by_case["raw", None]
    assert raw.mean_l1 < 1e-9 and raw.ece_after == pytest.approx(raw.ece_before)
    free = by_case["free", None]
    assert free.answer == "top-3, 3 dp, noise 2% + label"
    assert 0.02 <= free.mean_l1 < 0.08 and free.mean_kl > 0
    labels = by_case["labels", None]
    assert labels.answer == "label only" and labels.mean_l1 > free.mean_l1


async def test_averaging_repeated_or_jittered_queries_recovers_nothing(
    report: UtilityReport,
) -> None:
    for result in report.results:
        check = result.averaging
        assert check.repeats_identical == 1.0
        assert check.repeated_l1 == pytest.approx(check.single_l1, abs=1e-12)
        # the model answers the snapped row: jitter below the resolution changes nothing
        assert check.jitter_identical == 1.0
        assert check.jittered_l1 == pytest.approx(check.single_l1, abs=1e-12)


async def test_the_report_renders_as_markdown_and_json(report: UtilityReport) -> None:
    table = report.to_markdown()
    assert table.count("\n") == 1 + len(report.results)
    assert "| free | degraded |" in table
    assert json.loads(json.dumps(report.to_dict()))["results"][0]["plan"] == "free"


def test_calibration_error_and_rebuilt_distributions() -> None:
    p = np.array([[0.9, 0.1], [0.6, 0.4]])
    assert expected_calibration_error(p, np.array([0, 0])) == pytest.approx(0.25)
    onehot = as_distribution(None, np.array([1, 0]), 3)
    assert onehot.tolist() == [[0, 1, 0], [1, 0, 0]]


def test_the_cli_prints_a_table_per_plan(
    tmp_path: Path, demo_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSHIELD_SECRET", "evaluate-test-secret-0123456789")
    demo_state(tmp_path / "state", demo_cache)
    config = tmp_path / "policy.yaml"
    data = shaping_policy_data(server={"state_dir": str(tmp_path / "state")})
    config.write_text(yaml.safe_dump(data))
    _register()
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["evaluate", "utility", "--config", str(config), "--copies", "2"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "| free | - | top-3, 3 dp, noise 2% + label | 100.00% |" in result.output
    as_json = runner.invoke(
        cli, ["evaluate", "utility", "--config", str(config), "--copies", "2", "--json"]
    )
    assert json.loads(as_json.output)["rows"] == 450
    wrong = runner.invoke(cli, ["evaluate", "utility", "--config", str(config), "--model", "x"])
    assert wrong.exit_code == 2 and "no model named 'x'" in wrong.output
