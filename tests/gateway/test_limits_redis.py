"""Limits on Redis: fail closed when it is down, exact across replicas and processes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from helpers import (
    REDIS_URL,
    GatewayClient,
    bearer,
    flush_redis_prefix,
    free_port,
    make_policy,
    process_env,
    require_service,
    served_policy_file,
    v2_body,
    wait_until_up,
)
from modelshield.clock import FakeClock
from modelshield.gateway.app import create_app

pytestmark = pytest.mark.redis

ONE_ROW_BUDGET = {"max_batch_rows": 4, "budgets": {"day": 100}}


class OwnRedis:
    """A redis-server this test starts on its own port, so it can stop it."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is not installed (CI=true)")
            pytest.skip("redis-server is not installed")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("fail_open", [False, True])
async def test_limits_fail_closed_unless_the_policy_says_fail_open(
    app_client_factory: Callable[..., Awaitable[GatewayClient]],
    policy: Any,
    tmp_path: Path,
    own_redis: OwnRedis,
    digits_rows: np.ndarray,
    fail_open: bool,
) -> None:
    limited = make_policy(
        tmp_path,
        storage={"uri": "memory://", "limits_uri": own_redis.url},
        plans={"limited": ONE_ROW_BUDGET},
        fail_open=fail_open,
    )
    gw = await app_client_factory(limited)
    account_id, key = await gw.account()
    ok = await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(digits_rows[:1]), headers=bearer(key)
    )
    assert ok.status_code == 200 and "ratelimit" in ok.headers
    own_redis.stop()
    down = await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(digits_rows[:1]), headers=bearer(key)
    )
    if fail_open:
        assert down.status_code == 200
        await gw.gateway.sink.flush()
        assert "limits-fail-open" in (await gw.gateway.store.recent_events(account_id))[0].flags
    else:
        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"
        assert down.json()["type"].endswith("#store-unavailable")


async def test_three_in_process_replicas_on_one_redis_admit_exactly_on_a_fake_clock(
    policy: Any, tmp_path: Path, secrets: Any, digits_rows: np.ndarray
) -> None:
    require_service(REDIS_URL, "Redis")
    prefix = f"mstest-{uuid.uuid4().hex[:12]}:"
    uri = f"{REDIS_URL}?prefix={prefix}"
    plan = {
        "max_batch_rows": 4,
        "rate_limits": [{"name": "minute", "rate": 10, "per": "1m", "burst": 10}],
    }
    shared = make_policy(tmp_path, storage={"uri": uri}, plans={"limited": plan})
    clock = FakeClock(1_900_000_000.0)
    apps = [create_app(shared, clock=clock, secrets=secrets) for _ in range(3)]
    clients = []
    try:
        for app in apps:
            await app.state.gateway.start()
            clients.append(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://replica")
            )
        _, issued = await apps[0].state.gateway.accounts.create("shared")
        body = v2_body(digits_rows[:1])

        async def burst() -> list[int]:
            responses = await asyncio.gather(
                *(
                    clients[i % 3].post(
                        "/v2/models/digits/infer", json=body, headers=bearer(issued.plaintext)
                    )
                    for i in range(64)
                )
            )
            return [r.status_code for r in responses]

        first = await burst()
        assert first.count(200) == 10 and first.count(429) == 54
        clock.advance(30.0)  # half a minute refills 5 rows
        assert (await burst()).count(200) == 5
        clock.advance(60.0)
        assert (await burst()).count(200) == 10
    finally:
        for client in clients:
            await client.aclose()
        for app in apps:
            await app.state.gateway.stop()
        flush_redis_prefix(prefix)


@pytest.mark.slow
def test_three_gateway_processes_admit_exactly_the_budget(
    tmp_path: Path, demo_cache: Path, digits_rows: np.ndarray
) -> None:
    require_service(REDIS_URL, "Redis")
    prefix = f"mstest-{uuid.uuid4().hex[:12]}:"
    budget = 100
    config = served_policy_file(
        tmp_path,
        demo_cache,
        storage={"uri": f"{REDIS_URL}?prefix={prefix}"},
        plans={"metered": {"max_batch_rows": 4, "budgets": {"day": budget}}},
    )
    env = process_env("replica-secret-0123456789", "adm")
    binary = str(Path(sys.executable).parent / "modelshield")
    created = subprocess.run(
        [binary, "accounts", "create", "shared", "--config", str(config), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = json.loads(created.stdout)["api_key"]
    ports = [free_port(), free_port()]
    # one process with two workers and one with one: three gateway processes on one Redis
    procs = [
        subprocess.Popen(
            [
                binary,
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port, workers in zip(ports, (2, 1), strict=True)
    ]
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_until_up(f"http://127.0.0.1:{port}", proc)

        async def hammer() -> list[int]:
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                body = v2_body(digits_rows[:1])

                async def one_client(i: int) -> list[int]:
                    codes = []
                    for j in range(4):
                        url = f"http://127.0.0.1:{ports[(i + j) % 2]}/v2/models/digits/infer"
                        response = await client.post(url, json=body, headers=bearer(key))
                        codes.append(response.status_code)
                    return codes

                results = await asyncio.gather(*(one_client(i) for i in range(64)))
            return [code for codes in results for code in codes]

        codes = asyncio.run(hammer())
        assert codes.count(200) == budget, Counter(codes)
        assert codes.count(429) == len(codes) - budget
        usage = subprocess.run(
            [binary, "accounts", "usage", "shared", "--config", str(config), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        day = next(u for u in json.loads(usage.stdout) if u["name"] == "day")
        assert day["used"] == budget
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
        flush_redis_prefix(prefix)
