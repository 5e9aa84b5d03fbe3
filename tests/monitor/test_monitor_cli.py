"""`modelshield accounts show` prints the monitor's risk, alerts and actions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from modelshield.cli.main import _register, cli
from modelshield.monitor.records import Alert, ResponseAction
from modelshield.storage.sqlite import SQLiteStore


def test_show_prints_risk_alerts_and_actions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSHIELD_SECRET", "cli-test-secret-0123456789")
    monkeypatch.delenv("MODELSHIELD_CONFIG", raising=False)
    config = tmp_path / "policy.yaml"
    db = tmp_path / "ms.db"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"state_dir": str(tmp_path / "state")},
                "storage": {"uri": f"sqlite:///{db}"},
                "models": {"digits": {"backend": {"kind": "demo"}}},
                "plans": {"free": {}},
            }
        )
    )
    _register()
    runner = CliRunner()
    created = runner.invoke(cli, ["accounts", "create", "eve", "--json", "--config", str(config)])
    account_id = json.loads(created.output)["account_id"]

    async def seed() -> None:
        store = SQLiteStore(f"sqlite:///{db}")
        await store.open()
        state = {"rows_seen": 300, "last_risk": 97.0, "last_reasons": ["ood_fraction=0.9 > 0.08"]}
        await store.save_monitor_state(account_id, json.dumps(state).encode())
        await store.append_alert(
            Alert("al_1", account_id, 1.8e9, "critical", "account:ood_fraction", 97.0)
        )
        await store.append_action(ResponseAction("act_1", account_id, 1.8e9, "suspend", "risk"))
        await store.close()

    asyncio.run(seed())
    shown = runner.invoke(cli, ["accounts", "show", account_id, "--config", str(config)])
    assert shown.exit_code == 0, shown.output
    assert "risk:          97/100 over 300 rows" in shown.output
    assert "ood_fraction=0.9 > 0.08" in shown.output
    assert "critical" in shown.output and "account:ood_fraction" in shown.output
    assert "action suspend" in shown.output
