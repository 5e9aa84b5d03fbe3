"""Fixtures for the model-backend tests: a real upstream server and clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from modelshield.models.upstream import UpstreamOipModel
from upstream_server import Behaviour, UpstreamServer, run_upstream

CLIENT_TIMEOUT_S = 0.2

MakeClient = Callable[..., Awaitable[UpstreamOipModel]]


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    """A running upstream that answers normally; tests may change ``upstream.behaviour``."""
    with run_upstream(Behaviour()) as server:
        yield server


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """Build upstream backends with short timeouts; all are closed after the test."""
    made: list[UpstreamOipModel] = []

    async def make(
        url: str, *, model: str = "digits", output: str | None = None, load: bool = True
    ) -> UpstreamOipModel:
        backend = UpstreamOipModel(
            url,
            model=model,
            output=output,
            input_name="input-0",
            datatype="FP32",
            timeout_s=CLIENT_TIMEOUT_S,
            connect_timeout_s=CLIENT_TIMEOUT_S,
            max_connections=4,
        )
        made.append(backend)
        if load:
            await backend.load()
        return backend

    yield make
    for backend in made:
        await backend.close()


@pytest.fixture
async def client(upstream: UpstreamServer, make_client: MakeClient) -> UpstreamOipModel:
    """A loaded upstream backend pointed at ``upstream``."""
    return await make_client(upstream.url)
