"""UpstreamOipModel against a real Open Inference Protocol V2 server on loopback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import numpy as np
import numpy.typing as npt
import pytest

from modelshield.errors import UpstreamError, UpstreamTimeout
from modelshield.models.base import ModelBackend
from modelshield.models.upstream import UpstreamOipModel
from upstream_server import Behaviour, UpstreamServer, closed_port, run_upstream

MakeClient = Callable[..., Awaitable[UpstreamOipModel]]


def random_rows(count: int, seed: int = 1) -> npt.NDArray[np.float64]:
    return np.random.default_rng(seed).integers(0, 17, size=(count, 64)).astype(np.float64)


async def test_is_a_model_backend(make_client: MakeClient) -> None:
    assert isinstance(await make_client("http://127.0.0.1:1", load=False), ModelBackend)


async def test_answer_matches_the_upstream_model(
    upstream: UpstreamServer, client: UpstreamOipModel
) -> None:
    rows = random_rows(5)
    probabilities = await client.predict(rows)
    assert probabilities.shape == (5, 10)
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities, upstream.model.predict_proba(rows), atol=1e-6)
    sent = upstream.requests[-1]["inputs"][0]
    assert sent["name"] == "input-0"
    assert sent["datatype"] == "FP32"
    assert sent["shape"] == [5, 64]
    assert sent["data"] == rows.ravel().tolist()


async def test_classes_come_from_metadata(client: UpstreamOipModel) -> None:
    assert client.classes == 10


@pytest.mark.parametrize("nested", [False, True])
async def test_reads_flat_or_nested_data_and_finds_an_unnamed_output(
    upstream: UpstreamServer, make_client: MakeClient, nested: bool
) -> None:
    upstream.behaviour = Behaviour(nested=nested, output_name="scores")
    backend = await make_client(upstream.url)
    rows = random_rows(3)
    probabilities = await backend.predict(rows)
    np.testing.assert_allclose(probabilities, upstream.model.predict_proba(rows), atol=1e-6)
    assert backend.classes == 10


async def test_named_output_missing_is_an_upstream_error(
    upstream: UpstreamServer, make_client: MakeClient
) -> None:
    backend = await make_client(upstream.url, output="logits")
    with pytest.raises(UpstreamError, match="no output 'logits'"):
        await backend.predict(random_rows(1))


@pytest.mark.parametrize("status", [500, 503, 400, 422])
async def test_error_status_is_an_upstream_error(
    upstream: UpstreamServer, client: UpstreamOipModel, status: int
) -> None:
    upstream.behaviour = Behaviour(infer="fail", status=status)
    with pytest.raises(UpstreamError, match=f"HTTP {status}") as caught:
        await client.predict(random_rows(2))
    assert caught.value.status == 502
    assert "exploded" not in caught.value.detail  # the upstream's words stay upstream


async def test_unknown_model_is_an_upstream_error(
    upstream: UpstreamServer, make_client: MakeClient
) -> None:
    backend = await make_client(upstream.url, model="nope")
    assert backend.classes is None
    with pytest.raises(UpstreamError, match="HTTP 404"):
        await backend.predict(random_rows(1))


async def test_slow_upstream_is_a_timeout(
    upstream: UpstreamServer, client: UpstreamOipModel
) -> None:
    upstream.behaviour = Behaviour(infer="slow", delay_s=5.0)
    with pytest.raises(UpstreamTimeout) as caught:
        await client.predict(random_rows(2))
    assert caught.value.status == 504


async def test_malformed_json_is_an_upstream_error(
    upstream: UpstreamServer, client: UpstreamOipModel
) -> None:
    upstream.behaviour = Behaviour(infer="malformed")
    with pytest.raises(UpstreamError, match="invalid JSON") as caught:
        await client.predict(random_rows(2))
    assert not isinstance(caught.value, UpstreamTimeout)


async def test_ready_follows_the_upstream(
    upstream: UpstreamServer, client: UpstreamOipModel
) -> None:
    assert await client.ready() is True
    upstream.behaviour = Behaviour(ready=False)
    assert await client.ready() is False


async def test_ready_is_false_before_load_and_when_unreachable(make_client: MakeClient) -> None:
    backend = await make_client(f"http://127.0.0.1:{closed_port()}", load=False)
    assert await backend.ready() is False
    await backend.load()  # an unreachable upstream does not fail loading
    assert await backend.ready() is False
    assert backend.classes is None


async def test_connection_refused_is_an_upstream_error(make_client: MakeClient) -> None:
    backend = await make_client(f"http://127.0.0.1:{closed_port()}/")
    with pytest.raises(UpstreamError, match="unreachable") as caught:
        await backend.predict(random_rows(1))
    assert not isinstance(caught.value, UpstreamTimeout)


async def test_stopped_upstream_is_an_upstream_error(make_client: MakeClient) -> None:
    with run_upstream() as server:
        backend = await make_client(server.url)
        await backend.predict(random_rows(1))
    with pytest.raises(UpstreamError):
        await backend.predict(random_rows(1))
