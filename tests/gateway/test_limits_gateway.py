"""Rate limits and budgets through the gateway, on a fake clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import GatewayClient, bearer, make_policy, v2_body
from modelshield.clock import FakeClock

LIMITED: dict[str, Any] = {
    "outputs": ["probabilities", "label"],
    "max_batch_rows": 8,
    "rate_limits": [
        {"name": "burst", "scope": "account", "rate": 1, "per": "1s", "burst": 10},
        {"name": "per-key", "scope": "key", "rate": 100, "per": "1s", "burst": 100},
    ],
    "budgets": {"day": 30, "month": 100, "soft_threshold": 0.5},
}


@pytest.fixture
def build(
    app_client_factory: Callable[..., Awaitable[GatewayClient]],
    policy: Any,  # copies the trained demo model into tmp_path
    tmp_path: Path,
) -> Callable[..., Awaitable[GatewayClient]]:
    """A gateway whose default plan is ``plan`` (LIMITED by default), plus an open plan."""

    async def make(plan: dict[str, Any] | None = None, **policy_extra: Any) -> GatewayClient:
        limited = make_policy(
            tmp_path,
            plans={"limited": plan or LIMITED, "open": {}},
            default_plan="limited",
            **policy_extra,
        )
        return await app_client_factory(limited)

    return make


async def post(gw: GatewayClient, key: str, rows: np.ndarray) -> Any:
    return await gw.http.post("/v2/models/digits/infer", json=v2_body(rows), headers=bearer(key))


async def test_burst_then_429_with_retry_after_and_ratelimit_fields(
    build: Callable[..., Awaitable[GatewayClient]], digits_rows: np.ndarray, clock: FakeClock
) -> None:
    gw = await build()
    _, key = await gw.account()
    first = await post(gw, key, digits_rows[:4])  # a batch of 4 costs 4 rows
    assert first.status_code == 200
    assert first.headers["ratelimit-policy"] == (
        '"burst";q=10;w=10, "per-key";q=100;w=1, "day";q=30;w=86400, "month";q=100;w=2592000'
    )
    assert first.headers["ratelimit"].startswith('"burst";r=6;t=4, "per-key";r=96;t=0, "day";r=26')
    assert (await post(gw, key, digits_rows[:6])).status_code == 200
    denied = await post(gw, key, digits_rows[:1])
    assert denied.status_code == 429
    assert denied.headers["content-type"] == "application/problem+json"
    body = denied.json()
    assert body["type"].endswith("#quota-exceeded")
    assert body["violated-policies"] == ["burst"]
    assert denied.headers["retry-after"] == "1"
    assert '"burst";r=0' in denied.headers["ratelimit"]
    clock.advance(1.0)
    assert (await post(gw, key, digits_rows[:1])).status_code == 200


async def test_denied_request_charges_nothing_and_budgets_count_rows(
    build: Callable[..., Awaitable[GatewayClient]], digits_rows: np.ndarray, clock: FakeClock
) -> None:
    gw = await build()
    account_id, key = await gw.account()
    for _ in range(3):
        assert (await post(gw, key, digits_rows[:8])).status_code == 200
        clock.advance(8.0)
    # 24 rows used of the day's 30: a batch of 8 is over the budget and charges nothing
    over = await post(gw, key, digits_rows[:8])
    assert over.status_code == 429 and over.json()["violated-policies"] == ["day"]
    usage = {
        u["name"]: u
        for u in (await gw.admin("GET", f"/accounts/{account_id}/usage")).json()["usage"]
    }
    assert usage["day"]["used"] == 24 and usage["month"]["used"] == 24
    assert usage["burst"]["remaining"] == 10  # the denied 8 rows were not charged here either
    assert (await post(gw, key, digits_rows[:6])).status_code == 200
    await gw.gateway.sink.flush()
    events = await gw.gateway.store.recent_events(account_id)
    assert [e.charged_rows for e in events] == [6, 0, 8, 8, 8]
    assert "budget-soft:day" in events[3].flags  # 16 of 30 crossed the 50% threshold
    assert "limits" in events[1].controls


async def test_day_budget_rolls_over_at_local_midnight(
    build: Callable[..., Awaitable[GatewayClient]], digits_rows: np.ndarray, clock: FakeClock
) -> None:
    zone = "America/New_York"
    gw = await build(limits_timezone=zone)
    _, key = await gw.account()
    from zoneinfo import ZoneInfo

    late = dt.datetime(2027, 3, 10, 23, 59, 0, tzinfo=ZoneInfo(zone))
    clock.set(late.timestamp())
    for _ in range(3):
        assert (await post(gw, key, digits_rows[:8])).status_code == 200
        clock.advance(8.0)
    clock.set(late.timestamp() + 30)
    clock.advance(1)
    used_today = await post(gw, key, digits_rows[:8])
    assert used_today.status_code == 429 and used_today.json()["violated-policies"] == ["day"]
    clock.set((late + dt.timedelta(days=1)).timestamp())
    assert (await post(gw, key, digits_rows[:8])).status_code == 200


async def test_grants_usage_and_reset_over_the_admin_api(
    build: Callable[..., Awaitable[GatewayClient]], digits_rows: np.ndarray, clock: FakeClock
) -> None:
    gw = await build({**LIMITED, "rate_limits": []})
    account_id, key = await gw.account()
    for _ in range(3):
        await post(gw, key, digits_rows[:8])
    assert (await post(gw, key, digits_rows[:8])).status_code == 429
    granted = await gw.admin(
        "POST", f"/accounts/{account_id}/budget-grants", json={"window": "day", "rows": 10}
    )
    assert granted.status_code == 200 and granted.json()["granted_rows"] == 10
    answered = await post(gw, key, digits_rows[:8])
    assert answered.status_code == 200
    # the advertised day quota includes the grant (RateLimit-Policy values are reused
    # only for the same limits)
    assert '"day";q=40;w=86400' in answered.headers["RateLimit-Policy"]
    assert '"day";r=8' in answered.headers["RateLimit"]
    day = next(
        u
        for u in (await gw.admin("GET", f"/accounts/{account_id}/usage")).json()["usage"]
        if u["name"] == "day"
    )
    assert (day["used"], day["limit"], day["remaining"]) == (32, 40, 8)
    bad = await gw.admin(
        "POST", f"/accounts/{account_id}/budget-grants", json={"window": "lifetime", "rows": 5}
    )
    assert bad.status_code == 422 and "no lifetime budget" in bad.json()["error"]
    reset = await gw.admin("POST", f"/accounts/{account_id}/usage/reset", json={"limits": ["day"]})
    assert reset.json()["reset"] == ["day"]
    month = next(
        u
        for u in (await gw.admin("GET", f"/accounts/{account_id}/usage")).json()["usage"]
        if u["name"] == "month"
    )
    assert month["used"] == 32
    unknown = await gw.admin(
        "POST", f"/accounts/{account_id}/usage/reset", json={"limits": ["nope"]}
    )
    assert unknown.status_code == 422


async def test_plan_can_hide_capacity_headers(
    build: Callable[..., Awaitable[GatewayClient]], digits_rows: np.ndarray
) -> None:
    gw = await build({**LIMITED, "limit_headers": False})
    _, key = await gw.account()
    answer = await post(gw, key, digits_rows[:8])
    assert "ratelimit" not in answer.headers and "ratelimit-policy" not in answer.headers
    await post(gw, key, digits_rows[:2])
    denied = await post(gw, key, digits_rows[:8])
    assert denied.status_code == 429 and "retry-after" in denied.headers
    assert "ratelimit" not in denied.headers


async def test_plans_without_limits_are_unlimited(
    build: Callable[..., Awaitable[GatewayClient]], digits_rows: np.ndarray
) -> None:
    gw = await build()
    _, key = await gw.account("free-rider", plan="open")
    for _ in range(20):
        response = await post(gw, key, digits_rows[:8])
        assert response.status_code == 200 and "ratelimit" not in response.headers


async def test_client_address_and_model_scopes_span_accounts(
    build: Callable[..., Awaitable[GatewayClient]], digits_rows: np.ndarray
) -> None:
    plan = {
        "max_batch_rows": 8,
        "rate_limits": [
            {"name": "address", "scope": "client", "rate": 1, "per": "1h", "burst": 12},
            {"name": "global", "scope": "model", "rate": 1, "per": "1h", "burst": 20},
        ],
    }
    gw = await build(plan)
    _, first = await gw.account("one")
    _, second = await gw.account("two")
    assert (await post(gw, first, digits_rows[:8])).status_code == 200
    shared = await post(gw, second, digits_rows[:8])  # same client address as the first
    assert shared.status_code == 429 and shared.json()["violated-policies"] == ["address"]


def test_budget_windows_follow_the_local_calendar_across_dst() -> None:
    from zoneinfo import ZoneInfo

    from modelshield.controls.limits import budget_window

    zone = ZoneInfo("America/New_York")
    # clocks spring forward on 2027-03-14: that local day has 23 hours
    noon = dt.datetime(2027, 3, 14, 12, tzinfo=zone).timestamp()
    label, start, end = budget_window("day", noon, zone)
    assert label == "2027-03-14" and start is not None and end is not None
    assert (end - start) / 1e6 == 23 * 3600
    assert dt.datetime.fromtimestamp(end / 1e6, zone).hour == 0
    label, start, end = budget_window("month", noon, zone)
    assert label == "2027-03" and dt.datetime.fromtimestamp(end / 1e6, zone).month == 4
    assert budget_window("lifetime", noon, zone) == ("all", None, None)


def test_policy_refuses_a_burst_smaller_than_a_batch(tmp_path: Path) -> None:
    from modelshield.errors import PolicyError

    with pytest.raises(PolicyError) as info:
        make_policy(
            tmp_path,
            plans={
                "p": {
                    "max_batch_rows": 20,
                    "rate_limits": [{"name": "tiny", "rate": 1, "burst": 5}],
                }
            },
        )
    assert "plans.p.rate_limits.0.burst" in str(info.value)


async def test_demo_policy_stops_a_hammering_client_but_never_a_person(
    app_client_factory: Callable[..., Awaitable[GatewayClient]],
    policy: Any,
    tmp_path: Path,
    digits_rows: np.ndarray,
    clock: FakeClock,
) -> None:
    from modelshield.policy import DEMO_POLICY, policy_from_mapping

    demo = policy_from_mapping(
        {
            **DEMO_POLICY,
            "server": {**DEMO_POLICY["server"], "state_dir": str(tmp_path / "state")},
            "storage": {"uri": "memory://"},
        }
    )
    gw = await app_client_factory(demo)
    _, person = await gw.account("person")
    for _ in range(60):  # a request by hand every few seconds, some with a few rows
        assert (await post(gw, person, digits_rows[:3])).status_code == 200
        clock.advance(3.0)
    _, script = await gw.account("script")
    started = clock.now()
    while True:  # a tight loop: one request every 5 ms
        response = await post(gw, script, digits_rows[:1])
        # stopped by the burst limit (429) or, if the monitor has seen enough of its
        # events by then (the event sink commits every 100 ms of real time), suspended
        if response.status_code in {429, 403}:
            break
        assert response.status_code == 200
        clock.advance(0.005)
        assert clock.now() - started < 5.0, "the hammering client was never limited"
    assert clock.now() - started < 2.0


async def test_throttled_account_gets_a_fraction_of_its_rates(
    build: Callable[..., Awaitable[GatewayClient]], digits_rows: np.ndarray, clock: FakeClock
) -> None:
    gw = await build(
        {
            "max_batch_rows": 4,
            "rate_limits": [{"name": "burst", "rate": 1, "per": "1s", "burst": 40}],
        }
    )
    account_id, key = await gw.account()
    throttled = await gw.admin("POST", f"/accounts/{account_id}/throttle", json={"throttle": 0.1})
    assert throttled.json()["account"]["throttle"] == 0.1
    assert (await post(gw, key, digits_rows[:4])).status_code == 200
    denied = await post(gw, key, digits_rows[:1])  # 4 of 40 * 0.1 rows used up
    assert denied.status_code == 429 and denied.headers["retry-after"] == "10"
    bad = await gw.admin("POST", f"/accounts/{account_id}/throttle", json={"throttle": 2})
    assert bad.status_code == 422
    await gw.admin("POST", f"/accounts/{account_id}/throttle", json={"throttle": None})
    clock.advance(1.0)
    assert (await post(gw, key, digits_rows[:4])).status_code == 200
