"""The storage contract: every backend behaves the same (STYLE.md #3)."""

from __future__ import annotations

import asyncio

import pytest

from modelshield.errors import AccountNotFound, Conflict, KeyNotFound
from modelshield.events.record import QueryEvent
from modelshield.identity.keys import issue_key
from modelshield.identity.records import Account
from modelshield.storage.base import Store
from modelshield.storage.registry import open_store

SECRET = b"contract-secret-0123456789"


def account(n: int, name: str | None = None) -> Account:
    return Account(
        id=f"acc_{n:04d}",
        name=name or f"user{n}",
        plan="free",
        created_at=100.0 + n,
        email=f"u{n}@example.com",
        metadata={"n": n},
    )


def event(n: int, account_id: str | None = "acc_0001") -> QueryEvent:
    return QueryEvent(
        event_id=f"ev{n:06d}",
        time=1000.0 + n,
        model="digits",
        outcome="answered",
        status=200,
        account_id=account_id,
        rows=1,
        top1=[n % 10],
        margin=[0.5],
        entropy=[0.1],
        controls=["validation"],
    )


async def test_store_satisfies_protocol(store: Store) -> None:
    assert isinstance(store, Store)
    await store.ping()


async def test_account_and_first_key_round_trip(store: Store) -> None:
    acc = account(1)
    key = issue_key(SECRET, acc.id, now=5.0).record
    await store.create_account(acc, key)
    assert await store.get_account(acc.id) == acc
    assert await store.find_account_by_name("user1") == acc
    assert await store.get_key(key.key_id) == key
    found = await store.find_credential(key.key_id)
    assert found == (key, acc)
    assert await store.find_credential("000000000000") is None
    assert await store.get_account("acc_missing") is None


async def test_duplicate_name_conflicts_and_writes_nothing(store: Store) -> None:
    await store.create_account(account(1), issue_key(SECRET, "acc_0001", now=0).record)
    second_key = issue_key(SECRET, "acc_0002", now=0).record
    with pytest.raises(Conflict):
        await store.create_account(account(2, name="user1"), second_key)
    assert await store.get_account("acc_0002") is None
    assert await store.get_key(second_key.key_id) is None


async def test_list_accounts_is_ordered_and_paged(store: Store) -> None:
    for n in (3, 1, 2):
        await store.create_account(account(n), issue_key(SECRET, f"acc_{n:04d}", now=0).record)
    assert [a.id for a in await store.list_accounts()] == ["acc_0001", "acc_0002", "acc_0003"]
    assert [a.id for a in await store.list_accounts(limit=1, offset=1)] == ["acc_0002"]


async def test_status_changes(store: Store) -> None:
    await store.create_account(account(1), issue_key(SECRET, "acc_0001", now=0).record)
    suspended = await store.set_account_status("acc_0001", "suspended", "scraping", 50.0)
    assert (suspended.status, suspended.status_reason, suspended.status_changed_at) == (
        "suspended",
        "scraping",
        50.0,
    )
    assert (await store.get_account("acc_0001")) == suspended
    with pytest.raises(AccountNotFound):
        await store.set_account_status("acc_nope", "suspended", "x", 1.0)


async def test_rotate_revokes_all_other_keys_atomically(store: Store) -> None:
    first = issue_key(SECRET, "acc_0001", now=1.0).record
    await store.create_account(account(1), first)
    second = issue_key(SECRET, "acc_0001", now=2.0).record
    assert await store.rotate_key("acc_0001", second, 3.0) == [first.key_id]
    keys = {k.key_id: k for k in await store.list_keys("acc_0001")}
    assert keys[first.key_id].revoked_at == 3.0
    assert keys[second.key_id].active
    with pytest.raises(AccountNotFound):
        await store.rotate_key("acc_nope", issue_key(SECRET, "acc_nope", now=0).record, 1.0)


async def test_revoke_is_idempotent(store: Store) -> None:
    key = issue_key(SECRET, "acc_0001", now=1.0).record
    await store.create_account(account(1), key)
    assert (await store.revoke_key(key.key_id, 10.0)).revoked_at == 10.0
    assert (await store.revoke_key(key.key_id, 20.0)).revoked_at == 10.0
    with pytest.raises(KeyNotFound):
        await store.revoke_key("ffffffffffff", 1.0)


async def test_events_append_idempotently_and_read_newest_first(store: Store) -> None:
    await store.append_events([event(n) for n in range(5)])
    await store.append_events([event(3), event(5), event(6, account_id=None)])
    recent = await store.recent_events("acc_0001", limit=3)
    assert [e.event_id for e in recent] == ["ev000005", "ev000004", "ev000003"]
    assert recent[0] == event(5)
    assert await store.count_events("acc_0001") == 6
    assert await store.count_events() == 7
    assert await store.recent_events("acc_other") == []


async def test_concurrent_account_creation_is_safe(store: Store) -> None:
    async def create(n: int) -> None:
        await store.create_account(account(n), issue_key(SECRET, f"acc_{n:04d}", now=0).record)

    await asyncio.gather(*(create(n) for n in range(40)))
    assert len(await store.list_accounts(limit=1000)) == 40


async def test_two_sqlite_stores_on_one_file_share_state(tmp_path: object) -> None:
    uri = f"sqlite:///{tmp_path}/shared.db"
    first, second = open_store(uri), open_store(uri)
    await first.open()
    await second.open()
    try:
        await first.create_account(account(1), issue_key(SECRET, "acc_0001", now=0).record)
        await asyncio.gather(
            first.append_events([event(n) for n in range(0, 200, 2)]),
            second.append_events([event(n) for n in range(1, 200, 2)]),
        )
        await second.set_account_status("acc_0001", "suspended", "shared", 1.0)
        assert (await first.get_account("acc_0001")).status == "suspended"  # type: ignore[union-attr]
        assert await first.count_events() == 200
    finally:
        await first.close()
        await second.close()


def test_unknown_scheme_names_the_supported_ones() -> None:
    from modelshield.errors import ConfigError

    with pytest.raises(ConfigError, match=r"memory://.*sqlite://"):
        open_store("cassandra://x")


async def test_shaping_level_is_stored_and_cleared(store: Store) -> None:
    await store.create_account(account(1), issue_key(SECRET, "acc_0001", now=0).record)
    assert (await store.set_account_shaping("acc_0001", "labels-only")).shaping_level == (
        "labels-only"
    )
    key = (await store.list_keys("acc_0001"))[0]
    found = await store.find_credential(key.key_id)
    assert found is not None and found[1].shaping_level == "labels-only"
    assert (await store.set_account_shaping("acc_0001", None)).shaping_level is None
    with pytest.raises(AccountNotFound):
        await store.set_account_shaping("acc_nope", "x")


async def test_sqlite_migrates_a_database_from_before_shaping_levels(tmp_path: object) -> None:
    import sqlite3

    path = f"{tmp_path}/old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE accounts (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
            "plan TEXT NOT NULL, created_at REAL NOT NULL, email TEXT, organisation TEXT, "
            "signup_address TEXT, signup_user_agent TEXT, tos_version TEXT, "
            "status TEXT NOT NULL DEFAULT 'active', status_reason TEXT, status_changed_at REAL, "
            "metadata TEXT NOT NULL DEFAULT '{}');"
            "INSERT INTO accounts (id, name, plan, created_at) "
            "VALUES ('acc_old', 'old', 'free', 1);"
        )
    store = open_store(f"sqlite:///{path}")
    await store.open()
    try:
        old = await store.get_account("acc_old")
        assert old is not None and old.shaping_level is None and old.metadata == {}
    finally:
        await store.close()


async def test_throttle_is_stored_and_cleared(store: Store) -> None:
    await store.create_account(account(1), issue_key(SECRET, "acc_0001", now=0).record)
    assert (await store.set_account_throttle("acc_0001", 0.25)).throttle == 0.25
    assert (await store.get_account("acc_0001")).throttle == 0.25  # type: ignore[union-attr]
    assert (await store.set_account_throttle("acc_0001", None)).throttle is None
    with pytest.raises(AccountNotFound):
        await store.set_account_throttle("acc_nope", 0.5)
