"""End to end: an attacker is flagged and stopped on its next request; benign is not."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import numpy as np
import streams

from helpers import GatewayClient, bearer, v2_body
from modelshield.policy.schema import Policy


async def send(gw: GatewayClient, key: str, rows: np.ndarray, batch: int = 16) -> list[int]:
    codes = []
    for i in range(0, len(rows), batch):
        response = await gw.http.post(
            "/v2/models/digits/infer", json=v2_body(rows[i : i + batch]), headers=bearer(key)
        )
        codes.append(response.status_code)
    await gw.gateway.sink.flush()
    await gw.gateway.monitor.drain()
    return codes


async def test_attacker_is_suspended_benign_is_not_and_undo_restores(
    app_client_factory: Callable[..., Awaitable[GatewayClient]], monitored_policy: Policy
) -> None:
    from modelshield.models.demo import digits_split

    _, test, _, labels = digits_split()
    gw = await app_client_factory(monitored_policy)
    rng = np.random.default_rng(11)
    attacker_id, attacker = await gw.account("mallory")
    benign_id, benign = await gw.account("bob")

    assert set(await send(gw, benign, streams.benign(test, np.asarray(labels), rng, 160))) == {200}
    codes = await send(gw, attacker, streams.uniform(rng, 128))
    # answered until the monitor has seen enough (the sink commits every 100 ms of real
    # time, so it may act during the stream), never again once suspended
    answered = codes.count(200)
    assert answered >= 2 and codes == [200] * answered + [403] * (len(codes) - answered)

    # the responder's suspension takes effect on the attacker's next request
    blocked = await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(test[:1]), headers=bearer(attacker)
    )
    assert blocked.status_code == 403
    ok = await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(test[:1]), headers=bearer(benign)
    )
    assert ok.status_code == 200

    alerts = (await gw.admin("GET", f"/accounts/{attacker_id}/alerts")).json()["alerts"]
    assert alerts and alerts[0]["severity"] == "critical"
    assert alerts[0]["evidence"]["ood_fraction"] > 0.5 and alerts[0]["example_event_ids"]
    # benign may earn a "medium" (notify-only) alert at worst, never an action
    benign_alerts = (await gw.admin("GET", f"/accounts/{benign_id}/alerts")).json()["alerts"]
    assert all(a["severity"] in ("low", "medium") for a in benign_alerts), benign_alerts
    benign_actions = (await gw.admin("GET", f"/accounts/{benign_id}/actions")).json()["actions"]
    assert all(a["kind"] == "notify" for a in benign_actions)

    report = (await gw.admin("GET", f"/accounts/{attacker_id}/monitor")).json()
    assert report["risk"] >= 90 and report["reasons"] and report["rows"] == 16 * answered
    benign_report = (await gw.admin("GET", f"/accounts/{benign_id}/monitor")).json()
    assert benign_report["severity"] in (None, "low", "medium")

    (action,) = [
        a
        for a in (await gw.admin("GET", f"/accounts/{attacker_id}/actions")).json()["actions"]
        if a["kind"] == "suspend"
    ]
    undone = await gw.admin("POST", f"/actions/{action['action_id']}/undo")
    assert undone.status_code == 200 and undone.json()["action"]["undone_by"] == "operator"
    again = await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(test[:1]), headers=bearer(attacker)
    )
    assert again.status_code == 200


async def test_high_risk_degrades_to_the_policy_shaping_level(
    app_client_factory: Callable[..., Awaitable[GatewayClient]], monitored_policy: Policy
) -> None:
    from modelshield.models.demo import digits_split

    policy = monitored_policy.model_copy(
        update={
            "monitoring": monitored_policy.monitoring.model_copy(
                update={"actions": {**monitored_policy.monitoring.actions, "critical": "degrade"}}
            )
        }
    )
    gw = await app_client_factory(policy)
    test = digits_split()[1]
    account_id, key = await gw.account("walker")
    await send(gw, key, streams.near_duplicate_flood(test, np.random.default_rng(3), 8, 12))
    account = await gw.gateway.store.get_account(account_id)
    assert account.shaping_level == "degraded" and account.status == "active"


async def test_monitor_state_survives_a_restart(
    app_client_factory: Callable[..., Awaitable[GatewayClient]], monitored_policy: Policy
) -> None:
    from modelshield.models.demo import digits_split
    from modelshield.monitor.service import Monitor

    gw = await app_client_factory(monitored_policy)
    test, labels = digits_split()[1], digits_split()[3]
    account_id, key = await gw.account("carol")
    await send(gw, key, streams.benign(test, np.asarray(labels), np.random.default_rng(5), 40))
    before = await gw.gateway.monitor.report(account_id)
    await gw.gateway.monitor.stop()  # persists

    fresh = Monitor(
        monitored_policy, gw.gateway.store, gw.gateway.clock, backends=gw.gateway.backends
    )
    await fresh.start()
    try:
        after = await fresh.report(account_id)
    finally:
        await fresh.stop()
    assert after["rows"] == before["rows"] == 40
    assert after["features"] == before["features"]
