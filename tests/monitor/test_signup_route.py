"""POST /v1/signup: records the sign-up, is rate-limited per address, feeds the monitor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from helpers import GatewayClient, bearer, v2_body
from modelshield.policy.schema import Policy


def form(n: int, **extra: str) -> dict[str, str]:
    return {"name": f"user{n}", "email": f"u{n}@burst.example", "accept_tos": "2024-06", **extra}


async def test_signup_records_who_and_when_and_returns_a_working_key(
    app_client_factory: Callable[..., Awaitable[GatewayClient]], monitored_policy: Policy
) -> None:
    gw = await app_client_factory(monitored_policy)
    response = await gw.http.post("/v1/signup", json=form(1), headers={"User-Agent": "bot/1.0"})
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    account = await gw.gateway.store.get_account(body["account_id"])
    assert account.signup_address == "203.0.113.7" and account.signup_user_agent == "bot/1.0"
    assert account.tos_version == "2024-06" and account.email == "u1@burst.example"
    assert account.created_at == gw.gateway.clock.now()
    infer = await gw.http.post(
        "/v2/models/digits/infer", json=v2_body([[0.0] * 64]), headers=bearer(body["api_key"])
    )
    assert infer.status_code == 200


async def test_signup_rejects_bad_input_with_problem_json(
    app_client_factory: Callable[..., Awaitable[GatewayClient]], monitored_policy: Policy
) -> None:
    gw = await app_client_factory(monitored_policy)
    for payload in (form(1, accept_tos="old"), {"name": "x"}, form(2, email="not-an-address")):
        response = await gw.http.post("/v1/signup", json=payload)
        assert response.status_code in (400, 422), payload
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_signup_is_404_when_disabled(gw: GatewayClient) -> None:
    response = await gw.http.post("/v1/signup", json=form(1))
    assert response.status_code == 404


async def test_signup_burst_is_rate_limited_and_raises_a_cluster_alert(
    app_client_factory: Callable[..., Awaitable[GatewayClient]], monitored_policy: Policy
) -> None:
    gw = await app_client_factory(monitored_policy)
    codes = [(await gw.http.post("/v1/signup", json=form(n))).status_code for n in range(7)]
    assert codes == [201] * 5 + [429] * 2
    limited = await gw.http.post("/v1/signup", json=form(9))
    assert "retry-after" in limited.headers
    alerts = await gw.gateway.store.list_alerts()
    assert any(a.detector == "signup-burst" for a in alerts)
    assert len(gw.gateway.monitor.groups()[0]) == 5  # the cluster is scored as one group
