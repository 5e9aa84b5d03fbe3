"""`modelshield evaluate --target URL` against a real `modelshield serve` on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from attack_helpers import tiny_scenario
from helpers import free_port, process_env, served_policy_file, wait_until_up
from modelshield.cli.main import _register, cli

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent / "modelshield"
TOKEN = "remote-evaluation-admin-token"


@pytest.fixture
def served(tmp_path: Path, demo_cache: Path) -> Iterator[tuple[str, Path]]:
    """A gateway with no protection but monitoring (alerts only), and its policy file."""
    policy = served_policy_file(
        tmp_path,
        demo_cache,
        storage={"uri": f"sqlite:///{tmp_path}/ms.db"},
        events={"flush_interval_ms": 10},
        plans={"free": {"outputs": ["probabilities", "label"]}},
        monitoring={"enabled": True, "responder": False},
    )
    env = process_env("remote-test-secret-0123456789", TOKEN)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(BIN), "serve", "--config", str(policy), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_up(url, proc)
        yield url, policy
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_deployed_gateway_is_attacked_over_http_and_its_alerts_read_back(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, policy = served
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELSHIELD_ADMIN_TOKEN", TOKEN)
    monkeypatch.delenv("MODELSHIELD_CONFIG", raising=False)
    scenario = tmp_path / "remote.yaml"
    # time is real on a deployed gateway: one legitimate account over three seconds
    benign = {"accounts": 1, "horizon_s": 3, "rows_per_account": 6, "mix": {"steady": 1}}
    scenario.write_text(
        yaml.safe_dump(tiny_scenario(tmp_path / "state", policy=str(policy), benign=benign))
    )
    _register()
    result = CliRunner().invoke(
        cli, ["evaluate", "--scenario", str(scenario), "--target", url, "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["site"] == f"remote gateway at {url}"
    variant = data["variants"][0]
    remote, local = variant["runs"]
    assert (remote["protected"], local["protected"]) == (True, False)
    # nothing shapes the answers: over HTTP the attack learns what it learns in-process
    assert remote["queries"] == local["queries"] == 100 and remote["stopped"] is None
    assert remote["fidelity"] == local["fidelity"] >= 0.99
    # the gateway's monitor flagged the uniform rows, read back through the admin API;
    # with the responder off it only notified
    detection = remote["detection"]
    assert detection["flagged"] and detection["detector"]
    assert {a["kind"] for a in detection["actions"]} <= {"notify"}
    assert detection["queries"] <= 100
    assert variant["benign_totals"]["accounts"] == 1
    assert variant["benign"][0]["rows_answered"] > 0

    # the accounts were made on the deployed gateway through its admin API
    listed = httpx.get(
        f"{url}/admin/api/accounts", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()["accounts"]
    names = sorted(a["name"].rsplit("-", 1)[0] for a in listed)
    assert names == ["customer-0", "equation-solving-0"]
