"""Concurrent decisions stay exact when backends group them (Redis: one script run per
event-loop turn; SQLite: one transaction per group; memory: one critical section each)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from helpers import REDIS_URL, flush_redis_prefix, require_service
from modelshield.errors import StoreUnavailable
from modelshield.storage import redis_scripts
from modelshield.storage.base import Store
from modelshield.storage.limiter import US, Check, QuotaCheck, RateCheck
from modelshield.storage.redis import RedisStore
from modelshield.storage.redis_decisions import MAX_BATCH, DecisionBatcher

NOW = 1_800_000_000 * US


def fresh() -> str:
    return uuid.uuid4().hex[:8]


def budget(key: str, limit: int, cost: int = 1) -> QuotaCheck:
    return QuotaCheck(key=key, name="day", cost=cost, limit=limit, expires_at=NOW + 3600 * US)


async def test_many_concurrent_decisions_on_one_budget_admit_exactly_the_budget(
    store: Store,
) -> None:
    key, limit = f"budget:{fresh()}", 300
    # more decisions in one loop turn than one Redis script run takes
    decisions = await asyncio.gather(
        *(store.check_and_charge([budget(key, limit)], NOW) for _ in range(2 * MAX_BATCH + 50))
    )
    assert sum(d.allowed for d in decisions) == limit
    used = [d.results[0].used for d in decisions if d.allowed]
    assert sorted(used) == list(range(1, limit + 1))  # each saw every earlier charge
    assert (await store.peek([budget(key, limit, cost=0)], NOW)).results[0].used == limit


async def test_a_denied_decision_in_a_group_charges_nothing_while_its_neighbours_do(
    store: Store,
) -> None:
    shared = f"rate:{fresh()}"
    full, roomy = f"budget:{fresh()}", f"budget:{fresh()}"
    await store.check_and_charge([budget(full, 5, cost=5)], NOW)  # exhausted

    def checks(i: int) -> list[Check]:
        rate = RateCheck(key=shared, name="burst", cost=1, interval=US, burst=1000)
        return [rate, budget(full if i % 2 else roomy, 5 if i % 2 else 1000)]

    decisions = await asyncio.gather(*(store.check_and_charge(checks(i), NOW) for i in range(40)))
    assert [d.allowed for d in decisions] == [i % 2 == 0 for i in range(40)]
    assert all(d.violated == ["day"] for d in decisions[1::2])
    peek = await store.peek(
        [RateCheck(key=shared, name="burst", cost=0, interval=US, burst=1000)], NOW
    )
    assert peek.results[0].remaining == 1000 - 20  # only the admitted ones were charged


async def test_concurrent_decisions_with_grants_and_rates_match_sequential_ones(
    store_uri: str,
) -> None:
    from modelshield.storage.registry import open_store

    prefix = fresh()

    def checks(i: int) -> list[Check]:
        account = i % 3
        return [
            RateCheck(key=f"{prefix}:rate:{account}", name="burst", cost=2, interval=US, burst=9),
            QuotaCheck(
                key=f"{prefix}:budget:{account}",
                name="day",
                cost=1 + i % 2,
                limit=7,
                expires_at=None,
                bonus_key=f"{prefix}:grant:{account}",
            ),
        ]

    concurrent, sequential = open_store(store_uri), open_store(store_uri)
    await concurrent.open()
    await sequential.open()
    try:
        await concurrent.add_to_counter(f"{prefix}:grant:1", 3, None, NOW)
        together = await asyncio.gather(
            *(concurrent.check_and_charge(checks(i), NOW) for i in range(30))
        )
        prefix = fresh()  # the same requests, one at a time, on fresh counters
        await sequential.add_to_counter(f"{prefix}:grant:1", 3, None, NOW)
        one_by_one = [await sequential.check_and_charge(checks(i), NOW) for i in range(30)]
        assert together == one_by_one
    finally:
        await concurrent.close()
        await sequential.close()


# Redis only ---------------------------------------------------------------------------


@pytest.fixture
async def redis_store() -> AsyncIterator[RedisStore]:
    require_service(REDIS_URL, "Redis")
    prefix = f"mstest-{uuid.uuid4().hex[:12]}:"
    store = RedisStore(f"{REDIS_URL}?prefix={prefix}")
    await store.open()
    try:
        yield store
    finally:
        await store.close()
        flush_redis_prefix(prefix)


async def test_redis_sends_the_decisions_of_one_loop_turn_in_one_script_run(
    redis_store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    original = DecisionBatcher._evalsha

    async def counting(self: DecisionBatcher, batch: Any) -> list[int]:
        sizes.append(len(batch.waiters))
        return await original(self, batch)

    monkeypatch.setattr(DecisionBatcher, "_evalsha", counting)
    key = f"budget:{fresh()}"
    decisions = await asyncio.gather(
        *(redis_store.check_and_charge([budget(key, 1000)], NOW) for _ in range(MAX_BATCH + 10))
    )
    assert all(d.allowed for d in decisions)
    assert sizes == [MAX_BATCH, 10]


async def test_redis_key_names_are_sent_with_their_byte_lengths(redis_store: RedisStore) -> None:
    key = f"rate:model:modèle-ü-{fresh()}"
    check = RateCheck(key=key, name="burst", cost=1, interval=US, burst=5)
    assert (await redis_store.check_and_charge([check], NOW)).allowed
    client = redis_store._client
    assert await client.get(redis_store.prefix + key) == str(NOW + US)


async def test_redis_loads_the_script_when_the_server_does_not_know_it(
    redis_store: RedisStore,
) -> None:
    # a script text the server has never seen (as after a restart or SCRIPT FLUSH)
    script = redis_scripts.CHECK_AND_CHARGE + f"\n-- {uuid.uuid4().hex}\n"
    batcher = DecisionBatcher(
        redis_store._client.connection_pool.make_connection, script, redis_store.prefix
    )
    try:
        key = f"budget:{fresh()}"
        first = await batcher.decide([budget(key, 2)], NOW, charge=True)
        second = await batcher.decide([budget(key, 2)], NOW, charge=True)
        third = await batcher.decide([budget(key, 2)], NOW, charge=True)
        assert [first.allowed, second.allowed, third.allowed] == [True, True, False]
    finally:
        await batcher.close()


async def test_redis_unreachable_fails_every_decision_of_the_batch() -> None:
    store = RedisStore("redis://127.0.0.1:1/0?prefix=nowhere:")
    store._decisions = DecisionBatcher(  # what open() builds, without its ping
        lambda: _connection("redis://127.0.0.1:1/0"), redis_scripts.CHECK_AND_CHARGE, "nowhere:"
    )
    results = await asyncio.gather(
        *(store.check_and_charge([budget("b", 5)], NOW) for _ in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(r, StoreUnavailable) for r in results)
    await store._decisions.close()


def _connection(url: str) -> Any:
    from redis import asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_connect_timeout=0.5)
    return client.connection_pool.make_connection()


async def test_numbers_beyond_what_lua_counts_exactly_still_decide(store: Store) -> None:
    key, slow = f"budget:{fresh()}", f"rate:{fresh()}"
    decision = await store.check_and_charge([budget(key, 10**20, cost=3)], NOW)
    assert decision.allowed and decision.results[0].used == 3
    # one row per 3 million years (SQLite stores 64-bit integers: 36 000 years there)
    interval = 2**60 if store.uri.startswith("sqlite") else 10**20
    glacial = RateCheck(key=slow, name="glacial", cost=1, interval=interval, burst=2)
    assert [(await store.check_and_charge([glacial], NOW)).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]


async def test_redis_that_never_answers_fails_the_batch_after_the_socket_timeout() -> None:
    done = asyncio.Event()
    handlers: list[asyncio.Task[Any]] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        await reader.read(1 << 20)  # takes the command, never answers
        await done.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"

    def connection() -> Any:
        from redis import asyncio as aioredis

        client = aioredis.Redis.from_url(url, socket_timeout=0.2, socket_connect_timeout=0.5)
        return client.connection_pool.make_connection()

    batcher = DecisionBatcher(connection, redis_scripts.CHECK_AND_CHARGE, "silent:")
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        results = await asyncio.gather(
            *(batcher.decide([budget("b", 5)], NOW, charge=True) for _ in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        assert loop.time() - started < 2
    finally:
        await batcher.close()
        done.set()
        await asyncio.gather(*handlers)
        server.close()
        await server.wait_closed()
