"""Failures outside the request: an unreachable store fails closed; nothing is a 500."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import GatewayClient, bearer, v2_body
from modelshield.errors import StoreUnavailable
from modelshield.policy.schema import Policy
from modelshield.storage.memory import MemoryStore


class SwitchableStore(MemoryStore):
    """A memory store that can be made unreachable, like a stopped server."""

    down = False

    async def find_credential(self, key_id: str) -> Any:
        if self.down:
            raise StoreUnavailable("store unreachable")
        return await super().find_credential(key_id)

    async def ping(self) -> None:
        if self.down:
            raise StoreUnavailable("store unreachable")


async def test_unreachable_store_fails_closed_with_503(
    app_client_factory: Callable[..., Awaitable[GatewayClient]],
    policy: Policy,
    digits_rows: np.ndarray,
) -> None:
    store = SwitchableStore()
    gw = await app_client_factory(policy, store=store)
    _, key = await gw.account()
    store.down = True
    response = await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(digits_rows[:1]), headers=bearer(key)
    )
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert (await gw.http.get("/v2/health/ready")).status_code == 503
    store.down = False
    response = await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(digits_rows[:1]), headers=bearer(key)
    )
    assert response.status_code == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
tensor = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["input-0", "x"]) | st.integers(),
        "shape": st.lists(st.integers(-1, 70), max_size=3) | json_values,
        "datatype": st.sampled_from(["FP32", "FP64", "INT64", "BYTES"]) | json_values,
        "data": st.lists(st.floats(-20, 20) | st.integers(-5, 20), max_size=130) | json_values,
    },
)
bodies = (
    st.fixed_dictionaries(
        {},
        optional={
            "inputs": st.lists(tensor, max_size=2) | json_values,
            "id": json_values,
            "outputs": json_values,
        },
    )
    | json_values
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
async def test_random_bodies_never_cause_a_500(gw: GatewayClient, body: Any) -> None:
    if not hasattr(gw, "_key"):
        gw._key = (await gw.account())[1]  # type: ignore[attr-defined]
    for path in ("/v2/models/digits/infer", "/v1/models/digits:predict"):
        response = await gw.http.post(path, content=json.dumps(body), headers=bearer(gw._key))  # type: ignore[attr-defined]
        assert response.status_code in {200, 400, 404, 413, 422}, response.text
        if response.status_code != 200:
            assert response.json()["error"]
