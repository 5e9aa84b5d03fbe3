"""The SQLite decision thread: groups stay exact and durable, across connections and
processes on one file."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modelshield.errors import StoreUnavailable
from modelshield.events.record import QueryEvent
from modelshield.storage.limiter import US, QuotaCheck, RateCheck
from modelshield.storage.sqlite import SQLiteStore

NOW = 1_800_000_000 * US


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """An opened SQLite store in ``store.db`` (closed after the test)."""
    opened = SQLiteStore(f"sqlite:///{tmp_path}/store.db")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def budget(limit: int, cost: int = 1, key: str = "budget:a:day") -> QuotaCheck:
    return QuotaCheck(key, "day", cost, limit, NOW + 3600 * US, "grant:a:day")


async def test_two_stores_on_one_file_admit_exactly_the_budget(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/shared.db"
    first, second = SQLiteStore(uri), SQLiteStore(uri)
    await first.open()
    await second.open()
    try:
        decisions = await asyncio.gather(
            *((first if i % 2 else second).check_and_charge([budget(150)], NOW) for i in range(400))
        )
        assert sum(d.allowed for d in decisions) == 150
        used = sorted(d.results[0].used for d in decisions if d.allowed)
        assert used == list(range(1, 151))  # every charge saw every earlier one
    finally:
        await first.close()
        await second.close()


_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from modelshield.storage.limiter import US, QuotaCheck
    from modelshield.storage.sqlite import SQLiteStore

    NOW = 1_800_000_000 * US

    async def main() -> None:
        store = SQLiteStore(sys.argv[1])
        await store.open()
        check = QuotaCheck("budget:a:day", "day", 1, int(sys.argv[2]), NOW + 3600 * US)
        decisions = await asyncio.gather(
            *(store.check_and_charge([check], NOW) for _ in range(int(sys.argv[3])))
        )
        await store.close()
        print(sum(d.allowed for d in decisions))

    asyncio.run(main())
    """
)


def test_two_processes_on_one_file_admit_exactly_the_budget(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/shared.db"
    sqlite3.connect(tmp_path / "shared.db").execute("PRAGMA journal_mode=WAL").close()
    argv = [sys.executable, "-c", _WORKER, uri, "250", "300"]
    workers = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    admitted = [int(w.communicate(timeout=120)[0]) for w in workers]
    assert all(w.returncode == 0 for w in workers)
    assert sum(admitted) == 250


async def test_concurrent_decisions_share_transactions_and_are_durable_on_return(
    store: SQLiteStore, tmp_path: Path
) -> None:
    rate = RateCheck("rate:acct:a:burst", "burst", 1, US, 1000)
    decisions = await asyncio.gather(
        *(store.check_and_charge([rate, budget(10**6)], NOW) for _ in range(200))
    )
    assert all(d.allowed for d in decisions)
    writer = store._decision_writer
    assert writer is not None and writer.decisions == 200
    assert writer.groups < 200  # decisions queued together commit together
    # committed before the decision returned: a separate connection sees every charge
    with sqlite3.connect(tmp_path / "store.db") as other:
        row = other.execute("SELECT value FROM counters WHERE key='budget:a:day'").fetchone()
    assert row == (200,)


async def test_expired_counters_read_as_absent_within_a_group(store: SQLiteStore) -> None:
    short = QuotaCheck("budget:a:hour", "day", 2, 2, NOW + US)
    assert (await store.check_and_charge([short], NOW)).allowed
    later = QuotaCheck("budget:a:hour", "day", 2, 2, NOW + 10 * US)
    first, second = await asyncio.gather(
        store.check_and_charge([later], NOW + 2 * US),  # the old window has ended
        store.check_and_charge([later], NOW + 3 * US),  # sees the one just charged
    )
    assert first.allowed and first.results[0].used == 2
    assert not second.allowed


async def test_a_failing_database_fails_every_decision_of_the_group(tmp_path: Path) -> None:
    (tmp_path / "taken.db").mkdir()  # a directory where the database file should be
    store = SQLiteStore(f"sqlite:///{tmp_path}/taken.db")
    try:
        results = await asyncio.gather(
            *(store.check_and_charge([budget(5)], NOW) for _ in range(5)),
            return_exceptions=True,
        )
        assert all(isinstance(r, StoreUnavailable) for r in results)
    finally:
        await store.close()


async def test_closing_decides_what_was_queued_and_a_later_decision_reopens(
    store: SQLiteStore,
) -> None:
    pending = [asyncio.ensure_future(store.check_and_charge([budget(3)], NOW)) for _ in range(5)]
    await asyncio.sleep(0)  # queued
    await store.close()
    outcomes = await asyncio.gather(*pending, return_exceptions=True)
    assert all(not isinstance(o, BaseException) for o in outcomes)
    assert [o.allowed for o in outcomes if not isinstance(o, BaseException)].count(True) == 3
    await store.open()
    assert not (await store.check_and_charge([budget(3)], NOW)).allowed


@pytest.mark.parametrize("count", [1, 450])
async def test_event_batches_beyond_one_insert_statement_are_written_once(
    store: SQLiteStore, count: int
) -> None:
    events = [
        QueryEvent(event_id=f"e{i}", time=float(i), model="m", outcome="ok", status=200)
        for i in range(count)
    ]
    await store.append_events(events + events[:3])  # duplicates are ignored
    await store.append_events(events)
    assert await store.count_events() == count


async def test_uncontended_groups_are_decided_on_the_event_loop(
    store: SQLiteStore, tmp_path: Path
) -> None:
    await asyncio.gather(*(store.check_and_charge([budget(10**6)], NOW) for _ in range(50)))
    writer = store._decision_writer
    assert writer is not None
    assert writer.loop_groups == writer.groups == 1  # requested at once, one transaction
    with sqlite3.connect(tmp_path / "store.db") as other:
        row = other.execute("SELECT value FROM counters WHERE key='budget:a:day'").fetchone()
    assert row == (50,)  # committed before the decisions returned


async def test_a_database_another_connection_writes_to_never_blocks_the_loop(
    store: SQLiteStore, tmp_path: Path
) -> None:
    holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    try:
        await store.check_and_charge([budget(100)], NOW)  # the loop path is set up
        holder.execute("BEGIN IMMEDIATE")  # as another process's write transaction would
        holder.execute("UPDATE counters SET value = 40 WHERE key = 'budget:a:day'")
        pending = [
            asyncio.ensure_future(store.check_and_charge([budget(100)], NOW)) for _ in range(80)
        ]
        started = asyncio.get_running_loop().time()
        await asyncio.sleep(0.2)
        # the loop kept running on time while the decisions waited for the database
        assert asyncio.get_running_loop().time() - started < 0.5
        assert not any(p.done() for p in pending)
        holder.execute("COMMIT")
        decisions = await asyncio.gather(*pending)
        # the holder's write counted: 40 + 60 admitted = the budget of 100
        assert sum(d.allowed for d in decisions) == 60
        writer = store._decision_writer
        assert writer is not None and writer.groups > writer.loop_groups  # the thread path
        before = writer.loop_groups
        assert not (await store.check_and_charge([budget(100)], NOW)).allowed
        assert writer.loop_groups == before + 1  # and back on the loop once it is free
    finally:
        holder.close()


async def test_a_failure_on_the_loop_path_hands_the_group_to_the_thread_path(
    store: SQLiteStore,
) -> None:
    assert (await store.check_and_charge([budget(3)], NOW)).allowed
    writer = store._decision_writer
    assert writer is not None and writer._loop_conn is not None
    writer._loop_conn.close()  # the loop path's connection breaks
    decisions = await asyncio.gather(*(store.check_and_charge([budget(3)], NOW) for _ in range(4)))
    assert [d.allowed for d in decisions].count(True) == 2  # nothing lost, nothing doubled
    assert writer.groups == writer.loop_groups + 1
