"""Shared fixtures: secrets, policies, stores over every backend, an app client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from helpers import (
    ADMIN_TOKEN,
    REDIS_URL,
    SERVER_SECRET,
    GatewayClient,
    demo_state,
    flush_redis_prefix,
    make_policy,
    require_service,
)
from modelshield.clock import FakeClock
from modelshield.gateway.app import create_app
from modelshield.identity.secret import Secrets
from modelshield.policy.schema import Policy
from modelshield.storage.base import Store
from modelshield.storage.registry import open_store


@pytest.fixture
def secrets() -> Secrets:
    return Secrets(SERVER_SECRET, "test", ADMIN_TOKEN, "test")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train the demo model once per session; tests copy it into their state dir."""
    from modelshield.models.demo import load_or_train_digits

    cache = tmp_path_factory.mktemp("demo-models")
    load_or_train_digits(cache)
    return cache


@pytest.fixture
def policy(tmp_path: Path, demo_cache: Path) -> Policy:
    demo_state(tmp_path / "state", demo_cache)
    return make_policy(tmp_path)


@pytest.fixture
def digits_rows() -> np.ndarray:
    from modelshield.models.demo import digits_split

    return digits_split()[1][:20]


StoreFactory = Callable[[], Store]

STORE_BACKENDS = ["memory", "sqlite", "redis"]


@pytest.fixture(params=STORE_BACKENDS)
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store URI per test for every backend (Redis: a unique key prefix)."""
    kind = request.param
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
    elif kind == "redis":
        require_service(REDIS_URL, "Redis")
        prefix = f"mstest-{uuid.uuid4().hex[:12]}:"
        yield f"{REDIS_URL}?prefix={prefix}"
        flush_redis_prefix(prefix)
    else:
        raise AssertionError(kind)


@pytest.fixture
async def store(store_uri: str) -> AsyncIterator[Store]:
    instance = open_store(store_uri)
    await instance.open()
    try:
        yield instance
    finally:
        await instance.close()


@pytest.fixture
async def app_client_factory(
    secrets: Secrets, clock: FakeClock
) -> AsyncIterator[Callable[..., Awaitable[GatewayClient]]]:
    """Build started gateways on ASGI transports; all are stopped at teardown."""
    started: list[GatewayClient] = []

    async def build(policy: Policy, **kwargs: Any) -> GatewayClient:
        kwargs.setdefault("secrets", secrets)
        kwargs.setdefault("clock", clock)
        app = create_app(policy, **kwargs)
        await app.state.gateway.start()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 4242)),
            base_url="http://gateway.test",
        )
        started.append(GatewayClient(app, client))
        return started[-1]

    yield build
    for gateway_client in reversed(started):
        await gateway_client.http.aclose()
        await gateway_client.gateway.stop()


@pytest.fixture
async def gw(
    app_client_factory: Callable[..., Awaitable[GatewayClient]], policy: Policy
) -> GatewayClient:
    return await app_client_factory(policy)
