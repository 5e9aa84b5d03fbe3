"""`modelshield accounts shaping REF LEVEL|--clear` against a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from modelshield.cli.main import _register, cli
from shaping_helpers import shaping_policy_data


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELSHIELD_SECRET", "cli-test-secret-0123456789")
    monkeypatch.delenv("MODELSHIELD_CONFIG", raising=False)
    path = tmp_path / "policy.yaml"
    data = shaping_policy_data(
        server={"state_dir": str(tmp_path / "state")},
        storage={"uri": f"sqlite:///{tmp_path}/ms.db"},
    )
    path.write_text(yaml.safe_dump(data))
    return path


def run(config: Path, *args: str) -> Result:
    _register()
    return CliRunner().invoke(cli, [*args, "--config", str(config)])


def level_of(config: Path, ref: str) -> str | None:
    shown = json.loads(run(config, "accounts", "show", ref, "--json").output)
    level: str | None = shown["account"]["shaping_level"]
    return level


def test_raise_and_clear_an_accounts_shaping_level(config: Path) -> None:
    assert run(config, "accounts", "create", "acme").exit_code == 0
    raised = run(config, "accounts", "shaping", "acme", "labels-only")
    assert raised.exit_code == 0, raised.output
    assert "shaping level: labels-only" in raised.output
    assert level_of(config, "acme") == "labels-only"
    assert "shaping_level: labels-only" in run(config, "accounts", "show", "acme").output
    cleared = run(config, "accounts", "shaping", "acme", "--clear")
    assert cleared.exit_code == 0 and "(plan default)" in cleared.output
    assert level_of(config, "acme") is None


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("acme", "gold"), 2, "unknown shaping level 'gold'; levels: degraded, labels-only"),
        (("acme",), 2, "give either LEVEL or --clear"),
        (("acme", "degraded", "--clear"), 2, "give either LEVEL or --clear"),
        (("nobody", "degraded"), 3, "no account with id or name 'nobody'"),
    ],
)
def test_shaping_command_errors(
    config: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    assert run(config, "accounts", "create", "acme").exit_code == 0
    result = run(config, "accounts", "shaping", *args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert level_of(config, "acme") is None
