"""Helpers shared by the test modules (import as ``from helpers import ...``)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import yaml

from modelshield.policy.loader import policy_from_mapping
from modelshield.policy.schema import Policy

ADMIN_TOKEN = "test-admin-token-0123456789"
SERVER_SECRET = b"test-server-secret-0123456789abcdef"
REDIS_URL = os.environ.get("MODELSHIELD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get(
    "MODELSHIELD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 1.0):
            return True
    except OSError:
        return False


def require_service(url: str, what: str) -> None:
    """Skip (outside CI) or fail (CI=true) when a service the test needs is unreachable."""
    if reachable(url):
        return
    message = f"{what} at {url} is unreachable"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(f"{message}; set MODELSHIELD_TEST_* to point at one")


def flush_redis_prefix(prefix: str, url: str = REDIS_URL) -> None:
    """Delete every key a test wrote under ``prefix``."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def make_policy(tmp_path: Path, **overrides: Any) -> Policy:
    """The demo model with two plans, state under ``tmp_path``.

    ``overrides`` merge into the top-level sections; ``plans`` replaces the plans.
    """
    data: dict[str, Any] = {
        "server": {
            "state_dir": str(tmp_path / "state"),
            "max_body_bytes": 65_536,
            "max_batch_rows": 32,
        },
        "storage": {"uri": "memory://"},
        "events": {"flush_interval_ms": 10},
        "models": {
            "digits": {
                "backend": {"kind": "demo"},
                "input": {"name": "input-0", "features": 64, "min": 0, "max": 16},
            }
        },
        "plans": {
            "free": {"outputs": ["probabilities", "label"], "max_batch_rows": 16},
            "labels": {"outputs": ["label"]},
        },
    }
    for key, value in overrides.items():
        if key == "plans":
            data[key] = value
        elif isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return policy_from_mapping(data, "test")


class GatewayClient:
    """An httpx client on the ASGI app, plus helpers to make accounts."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.http = client
        self.gateway = app.state.gateway

    async def account(self, name: str = "alice", plan: str | None = None) -> tuple[str, str]:
        account, issued = await self.gateway.accounts.create(name, plan=plan)
        return account.id, issued.plaintext

    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", **kwargs.pop("headers", {})}
        return await self.http.request(method, f"/admin/api{path}", headers=headers, **kwargs)


def v2_body(rows: np.ndarray, **extra: Any) -> dict[str, Any]:
    rows = np.atleast_2d(rows)
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(rows.shape),
                "datatype": "FP32",
                "data": rows.ravel().tolist(),
            }
        ],
        **extra,
    }


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(
    url: str,
    proc: subprocess.Popen[str] | subprocess.Popen[bytes],
    *,
    path: str = "/v2/health/ready",
    timeout: float = 60.0,
) -> None:
    """Poll ``url + path`` until it answers 200; fail if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout is not None else ""
            raise AssertionError(f"serve exited early: {output!r}")
        try:
            if httpx.get(f"{url}{path}", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"serve at {url} did not answer {path}")


def demo_state(state: Path, demo_cache: Path) -> Path:
    """A state directory holding the trained demo model (so nothing is trained again)."""
    models = state / "models"
    models.mkdir(parents=True, exist_ok=True)
    for file in demo_cache.iterdir():
        (models / file.name).write_bytes(file.read_bytes())
    return state


def served_policy_file(tmp_path: Path, demo_cache: Path, **sections: Any) -> Path:
    """``tmp_path/policy.yaml`` for a ``modelshield serve`` process: the demo model, state
    under ``tmp_path/state`` (holding the trained model), plus ``sections``."""
    state = demo_state(tmp_path / "state", demo_cache)
    document = {
        "server": {"state_dir": str(state)},
        "models": {
            "digits": {
                "backend": {"kind": "demo"},
                "input": {"features": 64, "min": 0, "max": 16},
            }
        },
        **sections,
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def process_env(secret: str, admin_token: str) -> dict[str, str]:
    """This environment without MODELSHIELD_* settings, plus a server secret and admin
    token (for a ``modelshield`` child process)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MODELSHIELD_")}
    return environ | {"MODELSHIELD_SECRET": secret, "MODELSHIELD_ADMIN_TOKEN": admin_token}
