"""`modelshield evaluate`: a scenario file run as a user would, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from attack_helpers import tiny_scenario
from helpers import demo_state
from modelshield.cli.main import _register, cli

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def scenario_file(tmp_path: Path, demo_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODELSHIELD_CONFIG", raising=False)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_scenario(demo_state(tmp_path / "state", demo_cache))))
    return path


def evaluate(*args: str) -> Result:
    _register()
    return CliRunner().invoke(cli, ["evaluate", *args])


def test_quiet_run_prints_the_tables_and_writes_the_report(
    scenario_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = evaluate("--scenario", str(scenario_file), "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # no progress bar, no notes
    lines = result.stdout.splitlines()
    assert any(line.startswith("scenario tiny (seed 3) on in-process gateway") for line in lines)
    header = next(line for line in lines if line.startswith("attack "))
    assert "undefended fidelity" in header and "queries to flag" in header
    row = lines[lines.index(header) + 2].split()
    assert row[:3] == ["equation-solving", "as", "configured"]
    benign = next(line for line in lines if line.startswith("policy "))
    assert lines[lines.index(benign) + 2].split()[:3] == ["as", "configured", "2"]
    assert lines[-1] == f"report: {out / 'report.html'}"
    for plot in ("fidelity.png", "detection.png"):
        assert (out / plot).read_bytes()[:8] == PNG
    assert "| equation-solving | as configured |" in (out / "report.md").read_text()
    saved = json.loads((out / "results.json").read_text())
    assert saved["scenario"] == "tiny" and len(saved["variants"][0]["runs"]) == 2


def test_json_prints_only_the_results_with_the_seed_given(scenario_file: Path) -> None:
    result = evaluate("--scenario", str(scenario_file), "--json", "--seed", "4")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["seed"] == 4 and data["scenario"] == "tiny"
    runs = data["variants"][0]["runs"]
    assert [(r["attack"], r["protected"]) for r in runs] == [
        ("equation-solving", True),
        ("equation-solving", False),
    ]
    protected = runs[0]
    assert set(protected["detection"]) >= {"flagged", "queries", "seconds", "detector", "actions"}
    assert data["variants"][0]["benign_totals"]["accounts"] == 2


def _one_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("attacks: [\n", "(yaml): "),
        ("attacks: [{kind: uniform, queries: 0}]\n", "attacks.0.queries: Input should be"),
        ("attacks: [{kind: knockof}]\n", "unknown attack 'knockof'; known attacks: averaging"),
        (
            "attacks: [{kind: knockoff, params: {sampling: smart}}]\n",
            "attack 'knockoff': sampling must be 'random' or 'adaptive'",
        ),
        (
            "benign: {mix: {lazy: 1}}\nattacks: [{kind: uniform}]\n",
            "benign.mix: unknown behaviour 'lazy'",
        ),
    ],
)
def test_a_bad_scenario_file_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(text)
    assert message in _one_error(evaluate("--scenario", "bad.yaml", "--quiet"))


def test_an_unknown_scenario_name_lists_the_builtin_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    line = _one_error(evaluate("--scenario", "quik", "--quiet"))
    assert line == (
        "error: no scenario file 'quik' and no built-in scenario of that name "
        "(default, quick, sweep-noise)"
    )
    line = _one_error(evaluate("--scenario", "quick", "--config", "gone.yaml", "--quiet"))
    assert line == "error: policy file not found: gone.yaml"
