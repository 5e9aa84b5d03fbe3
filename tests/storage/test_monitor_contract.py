"""The monitor's storage contract (state, alerts, actions) on every backend."""

from __future__ import annotations

import pytest

from modelshield.errors import NotFound
from modelshield.monitor.records import Alert, ResponseAction
from modelshield.storage.base import Store


def alert(n: int, account_id: str = "acc_1") -> Alert:
    return Alert(
        alert_id=f"al_{n:04d}",
        account_id=account_id,
        time=1000.0 + n,
        severity="high",
        detector="ood_fraction",
        risk=81.5,
        reasons=["ood_fraction 0.93 > 0.20"],
        evidence={"ood_fraction": 0.93, "rows": 120},
        example_event_ids=["e1", "e2"],
        group=["acc_1", "acc_2"],
        dedup_key="acc_1:ood_fraction",
    )


def action(n: int, account_id: str = "acc_1") -> ResponseAction:
    return ResponseAction(
        action_id=f"act_{n:04d}",
        account_id=account_id,
        time=2000.5 + n,
        kind="degrade",
        reason="risk 81 (high): ood_fraction",
        alert_id="al_0001",
        previous={"shaping_level": None},
        applied={"shaping_level": "degraded"},
    )


async def test_monitor_state_round_trips_binary_blobs(store: Store) -> None:
    assert await store.load_monitor_state("acc_1") is None
    blob = bytes(range(256)) * 3
    await store.save_monitor_state("acc_1", blob)
    await store.save_monitor_state("global", b"{}")
    assert await store.load_monitor_state("acc_1") == blob
    await store.save_monitor_state("acc_1", b"second")
    assert await store.load_monitor_state("acc_1") == b"second"
    assert await store.load_monitor_state("global") == b"{}"


async def test_alerts_are_idempotent_and_listed_newest_first(store: Store) -> None:
    await store.append_alert(alert(1))
    await store.append_alert(alert(2, "acc_2"))
    await store.append_alert(alert(3))
    await store.append_alert(alert(1))  # a retried write adds nothing
    assert [a.alert_id for a in await store.list_alerts("acc_1")] == ["al_0003", "al_0001"]
    assert [a.alert_id for a in await store.list_alerts()] == ["al_0003", "al_0002", "al_0001"]
    assert [a.alert_id for a in await store.list_alerts(limit=1)] == ["al_0003"]
    assert (await store.list_alerts("acc_1"))[1] == alert(1)
    assert await store.list_alerts("acc_missing") == []


async def test_actions_are_recorded_and_undone_once(store: Store) -> None:
    await store.append_action(action(1))
    await store.append_action(action(2, "acc_2"))
    await store.append_action(action(1))
    assert [a.action_id for a in await store.list_actions()] == ["act_0002", "act_0001"]
    (only,) = await store.list_actions("acc_1")
    assert only == action(1)
    undone = await store.mark_action_undone("act_0001", 3000.25, "operator")
    assert (undone.undone_at, undone.undone_by) == (3000.25, "operator")
    again = await store.mark_action_undone("act_0001", 4000.0, "someone-else")
    assert (again.undone_at, again.undone_by) == (3000.25, "operator")
    assert (await store.list_actions("acc_1"))[0] == undone
    assert undone.previous == {"shaping_level": None}
    with pytest.raises(NotFound):
        await store.mark_action_undone("act_missing", 1.0, "operator")
