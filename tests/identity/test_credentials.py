"""The verified-credential cache: fewer store lookups, never a revoked key let through."""

from __future__ import annotations

import asyncio

import pytest

from modelshield.clock import FakeClock
from modelshield.errors import AuthenticationFailed
from modelshield.identity.credentials import AccountChangeNotifier, CredentialCache
from modelshield.identity.records import Account, ApiKey
from modelshield.identity.service import AccountService
from modelshield.storage.memory import MemoryStore

SECRET = b"0123456789abcdef0123456789abcdef"
TTL = 60.0  # long: only invalidation, never expiry, may explain a fresh answer below


class CountingStore(MemoryStore):
    """Counts credential lookups; ``hold`` parks the next lookup until released."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        self.hold: asyncio.Event | None = None
        self.parked = asyncio.Event()

    async def find_credential(self, key_id: str) -> tuple[ApiKey, Account] | None:
        self.lookups += 1
        found = await super().find_credential(key_id)
        if self.hold is not None:
            hold, self.hold = self.hold, None
            self.parked.set()
            await hold.wait()
        return found


def service(store: MemoryStore, clock: FakeClock, ttl: float = TTL) -> AccountService:
    return AccountService(store, SECRET, clock, plans=["free"], credential_ttl=ttl)


def pair(n: int) -> tuple[ApiKey, Account]:
    return ApiKey(f"k{n}", "acc", "d" * 64, 0.0), Account("acc", "acme", "free", 0.0)


def test_entries_expire_after_the_ttl() -> None:
    clock = FakeClock()
    cache = CredentialCache(ttl=1.0, clock=clock)
    cache.put("a", pair(1), cache.generation)
    clock.advance(0.999)
    assert cache.get("a") == pair(1)
    clock.advance(0.001)
    assert cache.get("a") is None and len(cache) == 0


def test_a_lookup_older_than_an_invalidation_is_not_remembered() -> None:
    cache = CredentialCache(ttl=1.0, clock=FakeClock())
    started = cache.generation
    cache.invalidate()
    cache.put("a", pair(1), started)
    assert cache.get("a") is None


def test_zero_ttl_caches_nothing_and_size_is_bounded() -> None:
    off = CredentialCache(ttl=0.0, clock=FakeClock())
    off.put("a", pair(1), off.generation)
    assert off.get("a") is None
    small = CredentialCache(ttl=5.0, clock=FakeClock(), max_entries=2)
    for n in range(3):
        small.put(str(n), pair(n), small.generation)
    assert len(small) == 2 and small.get("0") is None and small.get("2") == pair(2)


async def test_a_verified_key_is_looked_up_once_per_ttl() -> None:
    store, clock = CountingStore(), FakeClock()
    accounts = service(store, clock, ttl=1.0)
    account, issued = await accounts.create("acme")
    for _ in range(5):
        assert (await accounts.authenticate(issued.plaintext))[0].id == account.id
    assert store.lookups == 1
    clock.advance(1.0)
    await accounts.authenticate(issued.plaintext)
    assert store.lookups == 2


async def test_bad_keys_are_never_cached_and_all_fail_alike() -> None:
    store, clock = CountingStore(), FakeClock()
    accounts = service(store, clock)
    _, issued = await accounts.create("acme")
    _, other = await accounts.create("other")
    await accounts.revoke_key(other.record.key_id)
    forged = issued.plaintext[:-4] + ("AAAA" if not issued.plaintext.endswith("AAAA") else "BBBB")
    unknown = "msk_0123456789ab_" + issued.plaintext.split("_", 2)[2]
    for bad in [forged, unknown, other.plaintext, "not-a-key", "", None]:
        for _ in range(2):
            with pytest.raises(AuthenticationFailed) as info:
                await accounts.authenticate(bad)
            assert str(info.value) == str(AuthenticationFailed())
    assert len(accounts.credentials) == 0
    assert store.lookups == 2 * 3  # every well-formed bad key went to the store, twice


async def test_revoke_and_rotate_take_effect_as_soon_as_they_return() -> None:
    store, clock = CountingStore(), FakeClock()
    accounts = service(store, clock)
    account, first = await accounts.create("acme")
    await accounts.authenticate(first.plaintext)  # cached now
    await accounts.revoke_key(first.record.key_id)
    with pytest.raises(AuthenticationFailed):
        await accounts.authenticate(first.plaintext)

    _, second, _ = await accounts.rotate_key(account.id)
    await accounts.authenticate(second.plaintext)  # cached
    _, third, revoked = await accounts.rotate_key(account.id)
    assert revoked == [second.record.key_id]
    with pytest.raises(AuthenticationFailed):
        await accounts.authenticate(second.plaintext)
    assert (await accounts.authenticate(third.plaintext))[1].key_id == third.record.key_id


async def test_suspend_throttle_and_unsuspend_are_seen_on_the_next_authentication() -> None:
    store, clock = CountingStore(), FakeClock()
    accounts = service(store, clock)
    account, issued = await accounts.create("acme")
    assert (await accounts.authenticate(issued.plaintext))[0].status == "active"
    await accounts.suspend(account.id, "scraping")
    assert (await accounts.authenticate(issued.plaintext))[0].status == "suspended"
    await accounts.throttle(account.id, 0.5)
    assert (await accounts.authenticate(issued.plaintext))[0].throttle == 0.5
    await accounts.unsuspend(account.id)
    assert (await accounts.authenticate(issued.plaintext))[0].status == "active"


async def test_changes_through_a_notifying_store_empty_the_cache() -> None:
    """The responder and the admin API write to the gateway's (notifying) store directly."""
    clock = FakeClock()
    backing = CountingStore()
    holder: list[AccountService] = []
    store = AccountChangeNotifier(backing, lambda: holder[0].credentials.invalidate())
    accounts = service(store, clock)  # type: ignore[arg-type]
    holder.append(accounts)
    account, issued = await accounts.create("acme")
    await accounts.authenticate(issued.plaintext)
    await store.set_account_status(account.id, "suspended", "responder", clock.now())
    assert (await accounts.authenticate(issued.plaintext))[0].status == "suspended"
    await store.set_account_shaping(account.id, "labels-only")
    assert (await accounts.authenticate(issued.plaintext))[0].shaping_level == "labels-only"
    await store.revoke_key(issued.record.key_id, clock.now())
    with pytest.raises(AuthenticationFailed):
        await accounts.authenticate(issued.plaintext)
    assert await store.count_events() == 0  # everything else passes through


async def test_changes_by_another_process_are_seen_within_the_ttl() -> None:
    store, clock = CountingStore(), FakeClock()
    gateway = service(store, clock, ttl=1.0)
    cli = service(store, clock, ttl=0.0)  # another process: its own service, no shared cache
    account, issued = await gateway.create("acme")
    await gateway.authenticate(issued.plaintext)
    await cli.suspend(account.id, "from the command line")
    clock.advance(1.0)
    assert (await gateway.authenticate(issued.plaintext))[0].status == "suspended"


async def test_a_lookup_racing_a_revocation_is_not_cached() -> None:
    store, clock = CountingStore(), FakeClock()
    accounts = service(store, clock)
    _, issued = await accounts.create("acme")
    release = store.hold = asyncio.Event()
    racing = asyncio.create_task(accounts.authenticate(issued.plaintext))
    await store.parked.wait()  # it has read the key, still active
    await accounts.revoke_key(issued.record.key_id)
    release.set()
    await racing  # began before the revocation returned: may still pass, once
    with pytest.raises(AuthenticationFailed):
        await accounts.authenticate(issued.plaintext)
