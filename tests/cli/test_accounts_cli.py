"""`modelshield accounts …` against a real SQLite store, as an operator would use it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from modelshield.cli.main import _register, cli


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELSHIELD_SECRET", "cli-test-secret-0123456789")
    monkeypatch.delenv("MODELSHIELD_CONFIG", raising=False)
    path = tmp_path / "policy.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "server": {"state_dir": str(tmp_path / "state")},
                "storage": {"uri": f"sqlite:///{tmp_path}/ms.db"},
                "models": {"digits": {"backend": {"kind": "demo"}}},
                "plans": {"free": {}, "labels": {"outputs": ["label"]}},
            }
        )
    )
    return path


def run(config: Path, *args: str) -> Result:
    _register()
    return CliRunner().invoke(cli, [*args, "--config", str(config)], catch_exceptions=False)


def test_create_json_then_manage_the_account(config: Path) -> None:
    created = run(config, "accounts", "create", "acme", "--email", "ops@acme.test", "--json")
    assert created.exit_code == 0, created.output
    data = json.loads(created.output)
    assert data["account_id"].startswith("acc_") and data["api_key"].startswith("msk_")
    assert data["plan"] == "free"

    listed = run(config, "accounts", "list")
    assert "acme" in listed.output and data["account_id"] in listed.output

    shown = json.loads(run(config, "accounts", "show", "acme", "--json").output)
    assert shown["account"]["email"] == "ops@acme.test"
    assert shown["keys"][0]["key_id"] == data["key_id"]
    assert data["api_key"] not in run(config, "accounts", "show", "acme").output

    assert (
        run(config, "accounts", "suspend", data["account_id"], "--reason", "scraping").exit_code
        == 0
    )
    shown = json.loads(run(config, "accounts", "show", "acme", "--json").output)
    assert shown["account"]["status"] == "suspended"
    assert shown["account"]["status_reason"] == "scraping"
    assert run(config, "accounts", "unsuspend", "acme").exit_code == 0

    rotated = json.loads(run(config, "accounts", "rotate-key", "acme", "--json").output)
    assert rotated["revoked"] == [data["key_id"]]
    assert run(config, "accounts", "revoke-key", rotated["key_id"]).exit_code == 0
    keys = json.loads(run(config, "accounts", "show", "acme", "--json").output)["keys"]
    assert [k["active"] for k in keys] == [False, False]


def test_plain_create_prints_id_and_key(config: Path) -> None:
    result = run(config, "accounts", "create", "bob", "--plan", "labels")
    assert result.exit_code == 0
    assert "account_id: acc_" in result.output and "api_key:    msk_" in result.output
    assert "plan:       labels" in result.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("accounts", "show", "nobody"), 3, "no account with id or name 'nobody'"),
        (("accounts", "create", "x", "--plan", "gold"), 2, "unknown plan 'gold'"),
        (("accounts", "create", "bad name"), 2, "name:"),
        (("accounts", "suspend", "nobody", "--reason", "r"), 3, "no account"),
        (("accounts", "revoke-key", "ffffffffffff"), 3, "no key"),
    ],
)
def test_errors_are_one_line_and_a_nonzero_exit(
    config: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    result = run(config, *args)
    assert result.exit_code == code
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")
    assert message in result.output and "Traceback" not in result.output


def test_duplicate_name_is_refused(config: Path) -> None:
    assert run(config, "accounts", "create", "dup").exit_code == 0
    result = run(config, "accounts", "create", "dup")
    assert result.exit_code == 2 and "already exists" in result.output


def test_bad_config_file_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: {}\nplans: {free: {}}\n")
    result = run(bad, "accounts", "list")
    assert result.exit_code == 2
    assert f"error: {bad}: models: must have at least 1 entry" in result.output
    missing = run(tmp_path / "nope.yaml", "accounts", "list")
    assert missing.exit_code == 2 and "policy file not found" in missing.output


def test_usage_grant_reset_and_throttle_commands(tmp_path: Path, config: Path) -> None:
    data = yaml.safe_load(config.read_text())
    data["plans"]["free"] = {
        "max_batch_rows": 4,
        "budgets": {"day": 50, "month": 500},
        "rate_limits": [{"name": "burst", "rate": 1, "burst": 10}],
    }
    config.write_text(yaml.safe_dump(data))
    assert run(config, "accounts", "create", "meter").exit_code == 0
    usage = json.loads(run(config, "accounts", "usage", "meter", "--json").output)
    assert {(u["name"], u["kind"], u["limit"]) for u in usage} == {
        ("burst", "rate", 10),
        ("day", "budget", 50),
        ("month", "budget", 500),
    }
    table = run(config, "accounts", "usage", "meter").output
    assert "burst" in table and "RESETS IN" in table
    granted = run(config, "accounts", "grant", "meter", "--window", "day", "--rows", "25")
    assert granted.exit_code == 0 and "+25 rows" in granted.output
    usage = json.loads(run(config, "accounts", "usage", "meter", "--json").output)
    assert next(u for u in usage if u["name"] == "day")["limit"] == 75
    reset = run(config, "accounts", "reset-usage", "meter", "--limit", "day")
    assert reset.exit_code == 0 and "reset: day" in reset.output
    no_budget = run(config, "accounts", "grant", "meter", "--window", "lifetime", "--rows", "5")
    assert no_budget.exit_code == 2 and "no lifetime budget" in no_budget.output
    assert "0.5 of the plan" in run(config, "accounts", "throttle", "meter", "0.5").output
    assert "cleared" in run(config, "accounts", "throttle", "meter", "--clear").output
    assert run(config, "accounts", "throttle", "meter").exit_code == 2
