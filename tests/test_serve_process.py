"""A real `modelshield serve` process on loopback, driven like a user would."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from helpers import bearer, free_port, process_env, served_policy_file, v2_body, wait_until_up

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent / "modelshield"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return process_env("process-test-secret-0123456789", "process-admin-token")


def start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN), "serve", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def stop_all() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_configured_serve_answers_and_flushes_events_on_shutdown(
    tmp_path: Path,
    env: dict[str, str],
    digits_rows: np.ndarray,
    demo_cache: Path,
    stop_all: list[subprocess.Popen[str]],
) -> None:
    config = served_policy_file(
        tmp_path,
        demo_cache,
        storage={"uri": f"sqlite:///{tmp_path}/ms.db"},
        # a long interval: only the shutdown drain can have written the events
        events={"flush_interval_ms": 10_000},
        plans={"free": {}},
    )
    created = subprocess.run(
        [str(BIN), "accounts", "create", "alice", "--config", str(config), "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = json.loads(created.stdout)["api_key"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(["--config", str(config), "--port", str(port)], tmp_path, env)
    stop_all.append(proc)
    wait_until_up(url, proc, path="/v2/health/live")
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(5):
            response = client.post(
                "/v2/models/digits/infer", json=v2_body(digits_rows[i : i + 1]), headers=bearer(key)
            )
            assert response.status_code == 200, response.text
        assert (
            client.post(
                "/v2/models/digits/infer", json=v2_body(digits_rows[:1]), headers=bearer("nope")
            ).status_code
            == 401
        )
        admin = client.get("/admin/api/accounts", headers=bearer(env["MODELSHIELD_ADMIN_TOKEN"]))
        assert admin.json()["accounts"][0]["name"] == "alice"
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert key not in output and env["MODELSHIELD_ADMIN_TOKEN"] not in output
    with sqlite3.connect(tmp_path / "ms.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 6


def test_demo_serve_prints_a_working_key(
    tmp_path: Path,
    env: dict[str, str],
    digits_rows: np.ndarray,
    stop_all: list[subprocess.Popen[str]],
) -> None:
    env = {
        k: v for k, v in env.items() if k not in {"MODELSHIELD_ADMIN_TOKEN", "MODELSHIELD_SECRET"}
    }
    port = free_port()
    proc = start(["--port", str(port)], tmp_path, env)
    stop_all.append(proc)
    assert proc.stdout is not None
    banner = []
    for line in proc.stdout:
        banner.append(line)
        if "demo API key" in line:
            break
    key = banner[-1].split()[-1]
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url, proc, path="/v2/health/live")
    body = json.loads((Path(__file__).parents[1] / "examples" / "digits-row.json").read_text())
    response = httpx.post(f"{url}/v2/models/digits/infer", json=body, headers=bearer(key))
    assert response.status_code == 200
    # the demo plan answers the top 3 classes, perturbed and rounded, and the label
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert set(outputs) == {"probabilities", "classes", "label"}
    assert outputs["probabilities"]["shape"] == outputs["classes"]["shape"] == [1, 3]
    assert outputs["classes"]["data"][0] == outputs["label"]["data"][0]
    assert (tmp_path / ".modelshield" / "modelshield.db").exists()
    for secret_file in ("admin-token", "secret", "demo-api-key"):
        assert (tmp_path / ".modelshield" / secret_file).stat().st_mode & 0o777 == 0o600
    assert any("admin token:  from .modelshield/admin-token" in line for line in banner)
    proc.terminate()
    proc.wait(30)
    # a restart prints the same demo key (kept owner-only in the state dir)
    proc2 = start(["--port", str(port)], tmp_path, env)
    stop_all.append(proc2)
    assert proc2.stdout is not None
    for line in proc2.stdout:
        if "demo API key" in line:
            assert line.split()[-1] == key
            break
    proc2.terminate()
    proc2.wait(30)
