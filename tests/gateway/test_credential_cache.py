"""The gateway's credential cache never outlives a revocation or suspension it was told of.

Changes made through this gateway (admin API, responder, anything writing to
``gateway.store``) apply on the next request; changes by another process sharing the
store apply within the policy's ``server.credential_cache_s`` (immediately with 0).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

from helpers import SERVER_SECRET, GatewayClient, bearer, make_policy, v2_body
from modelshield.clock import FakeClock
from modelshield.identity.service import AccountService
from modelshield.policy.schema import Policy
from modelshield.storage.sqlite import SQLiteStore


async def infer(gw: GatewayClient, key: str, rows: np.ndarray) -> int:
    response = await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(rows), headers=bearer(key)
    )
    return response.status_code


async def test_admin_revoke_and_suspend_apply_to_the_very_next_request(
    gw: GatewayClient, digits_rows: np.ndarray
) -> None:
    account_id, key = await gw.account()
    assert await infer(gw, key, digits_rows[:1]) == 200  # the key is cached now
    suspended = await gw.admin("POST", f"/accounts/{account_id}/suspend", json={"reason": "x"})
    assert suspended.status_code == 200
    assert await infer(gw, key, digits_rows[:1]) == 403
    await gw.admin("POST", f"/accounts/{account_id}/unsuspend")
    assert await infer(gw, key, digits_rows[:1]) == 200
    revoked = await gw.admin("POST", f"/keys/{key.split('_')[1]}/revoke")
    assert revoked.status_code == 200
    assert await infer(gw, key, digits_rows[:1]) == 401


async def test_a_responder_style_store_write_applies_to_the_next_request(
    gw: GatewayClient, digits_rows: np.ndarray, clock: FakeClock
) -> None:
    account_id, key = await gw.account()
    assert await infer(gw, key, digits_rows[:1]) == 200
    await gw.gateway.store.set_account_status(account_id, "suspended", "monitor", clock.now())
    assert await infer(gw, key, digits_rows[:1]) == 403


async def suspend_from_another_process(uri: str, account_id: str, clock: FakeClock) -> None:
    cli_store = SQLiteStore(uri)  # the command line, in its own process
    await cli_store.open()
    try:
        cli = AccountService(cli_store, SERVER_SECRET, clock, plans=["free"])
        await cli.suspend(account_id, "from the command line")
    finally:
        await cli_store.close()


async def test_another_process_suspending_is_seen_within_the_ttl(
    app_client_factory: Callable[..., Awaitable[GatewayClient]],
    policy: Policy,
    tmp_path: Path,
    clock: FakeClock,
    digits_rows: np.ndarray,
) -> None:
    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    gw = await app_client_factory(policy, store=SQLiteStore(uri))
    account_id, key = await gw.account()
    assert await infer(gw, key, digits_rows[:1]) == 200

    await suspend_from_another_process(uri, account_id, clock)
    assert await infer(gw, key, digits_rows[:1]) == 200  # still cached: the documented lag
    clock.advance(policy.server.credential_cache_s)
    assert await infer(gw, key, digits_rows[:1]) == 403


async def test_credential_cache_off_sees_another_process_at_once(
    app_client_factory: Callable[..., Awaitable[GatewayClient]],
    tmp_path: Path,
    clock: FakeClock,
    digits_rows: np.ndarray,
) -> None:
    policy = make_policy(tmp_path, server={"credential_cache_s": 0})
    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    gw = await app_client_factory(policy, store=SQLiteStore(uri))
    account_id, key = await gw.account()
    assert await infer(gw, key, digits_rows[:1]) == 200
    await suspend_from_another_process(uri, account_id, clock)
    assert await infer(gw, key, digits_rows[:1]) == 403
