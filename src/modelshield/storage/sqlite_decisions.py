"""Check-and-charge on SQLite: the decisions waiting at once in ONE transaction, on a
connection and a thread of their own.

Every decision stays all or nothing and exact across processes (DESIGN invariant 1): a
group runs inside one ``BEGIN IMMEDIATE`` transaction, which holds the database's write
lock, so no other connection (this process's or another's) changes a counter between
the group's read and its write. The decisions of a group are decided in arrival order
with :func:`~.limiter.decide`, each seeing what the earlier ones charged; every decision
is durable (committed, fsynced at ``synchronous=full``) before its future resolves, so
no response is sent on an uncommitted charge (invariant 5).

What grouping saves is the per-decision overhead around the deciding: one thread hop
(a put on a queue, one wake-up of the event loop with every result of the group), one
``SELECT`` for all the group's counters, one multi-row upsert and one commit per group
instead of per decision. Decisions arriving while a group commits form the next group.

The connection is not the store's main one: a decision never waits behind event
batches, account changes or reads queued for the store's other thread, only, for the
time of a write transaction, behind that thread's writes (an in-process lock, so no
busy-wait sleep) and, through ``busy_timeout``, other processes' writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from queue import Empty, SimpleQueue

import orjson

from modelshield.errors import StoreUnavailable
from modelshield.storage.limiter import Check, Decision, decide, live_values

MAX_GROUP = 256
"""Decisions per transaction at most (a transaction holds the file's write lock)."""

SWEEP_EVERY = 10_000
"""Expired counters are deleted after every this many decisions."""

_KEYS_PER_SELECT = 500  # bound variables per statement stay far below SQLite's limit
_ROWS_PER_UPSERT = 300

_Waiter = tuple[Sequence[Check], int, "asyncio.Future[Decision]"]
_Outcome = Decision | BaseException


@lru_cache(maxsize=64)
def _select_sql(count: int) -> str:
    # one row holding every counter as JSON: the rows of a plain SELECT would each cost a
    # step, and each step a hand-over of the GIL to the busy event-loop thread and back
    return (
        "SELECT json_group_array(json_array(key, value, expires_at)) FROM counters "
        f"WHERE key IN ({','.join('?' * count)})"
    )


@lru_cache(maxsize=64)
def _upsert_sql(count: int) -> str:
    rows = ",".join(["(?,?,?)"] * count)
    return (
        f"INSERT INTO counters (key, value, expires_at) VALUES {rows} "
        "ON CONFLICT(key) DO UPDATE SET value=excluded.value, expires_at=excluded.expires_at"
    )


def decide_group(
    conn: sqlite3.Connection, batch: Sequence[tuple[Sequence[Check], int]]
) -> list[Decision]:
    """Decide and charge ``batch`` in order, inside the caller's write transaction.

    Counters are read once for the whole group and written once (their last values); in
    between, each decision reads what the earlier ones wrote, exactly as if each had run
    alone. Missing or expired (at that decision's ``now``) counters read as absent.
    """
    wanted: dict[str, None] = {}
    for checks, _ in batch:
        for check in checks:
            wanted[check.key] = None
            bonus = check.bonus_key
            if bonus is not None:
                wanted[bonus] = None
    keys = list(wanted)
    stored: dict[str, tuple[int, int | None]] = {}
    for start in range(0, len(keys), _KEYS_PER_SELECT):
        chunk = keys[start : start + _KEYS_PER_SELECT]
        (found,) = conn.execute(_select_sql(len(chunk)), chunk).fetchone()
        for key, value, expires_at in orjson.loads(found):
            stored[key] = (int(value), expires_at)
    decisions: list[Decision] = []
    dirty: dict[str, tuple[int, int | None]] = {}
    for checks, now in batch:
        decision, writes = decide(checks, live_values(checks, stored, now), now)
        if writes:
            stored.update(writes)
            dirty.update(writes)
        decisions.append(decision)
    if dirty:
        rows = [(key, value, expires) for key, (value, expires) in dirty.items()]
        for start in range(0, len(rows), _ROWS_PER_UPSERT):
            part = rows[start : start + _ROWS_PER_UPSERT]
            conn.execute(_upsert_sql(len(part)), [v for row in part for v in row])
    return decisions


class DecisionWriter:
    """A thread with its own connection that decides queued check-and-charges in groups.

    ``connect`` opens the connection (on the thread); ``write_lock`` is held for each
    write transaction, shared with the store's other writer so that the two never meet
    SQLite's busy handler (which sleeps in steps of milliseconds).

    Example:
        >>> writer = DecisionWriter(lambda: sqlite3.connect(":memory:"), threading.Lock(),
        ...                         "demo.db")
        >>> writer.groups
        0
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        write_lock: threading.Lock,
        name: str,
        *,
        max_group: int = MAX_GROUP,
    ) -> None:
        self._connect = connect
        self._write_lock = write_lock
        self._name = name
        self.max_group = max_group
        self._queue: SimpleQueue[_Waiter | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.decisions = 0
        """Decisions committed so far."""
        self.groups = 0
        """Transactions committed so far."""

    def submit(self, checks: Sequence[Check], now: int) -> asyncio.Future[Decision]:
        """Queue a decision; the future resolves once it is committed."""
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._queue.put((checks, now, future))
        if self._thread is None:
            self._start()
        return future

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="sqlite-decisions", daemon=True
                )
                self._thread.start()

    async def close(self) -> None:
        """Finish the queued decisions, stop the thread, close its connection."""
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(thread.join)
        self._thread = None
        # decisions queued after the stop request: nothing will decide them now
        leftovers: list[_Waiter] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except Empty:
                break
            if item is not None:
                leftovers.append(item)
        closed = StoreUnavailable(f"SQLite store {self._name}: closed")
        _resolve(leftovers, [closed] * len(leftovers))

    # the thread ------------------------------------------------------------------
    def _serve(self) -> None:
        conn: sqlite3.Connection | None = None
        queue = self._queue
        try:
            stopping = False
            while not stopping:
                item = queue.get()
                if item is None:
                    break
                batch = [item]
                while len(batch) < self.max_group:
                    try:
                        item = queue.get_nowait()
                    except Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                try:
                    if conn is None:
                        conn = self._connect()
                    outcomes: Sequence[_Outcome] = self._commit(conn, batch)
                except sqlite3.Error as exc:
                    outcomes = [StoreUnavailable(f"SQLite store {self._name}: {exc}")] * len(batch)
                except OSError as exc:
                    failure = StoreUnavailable(f"SQLite store {self._name}: {exc.strerror}")
                    outcomes = [failure] * len(batch)
                except Exception as exc:  # never leave a request waiting
                    outcomes = [exc] * len(batch)
                _deliver(batch, outcomes)
                if conn is not None and self.decisions % SWEEP_EVERY < len(batch):
                    self._sweep(conn, max(now for _, now, _ in batch))
        finally:
            if conn is not None:
                conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Waiter]) -> list[Decision]:
        requests = [(checks, now) for checks, now, _ in batch]
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                decisions = decide_group(conn, requests)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        self.decisions += len(batch)
        self.groups += 1
        return decisions

    def _sweep(self, conn: sqlite3.Connection, now: int) -> None:
        """Delete expired counters (housekeeping; a failure waits for the next sweep)."""
        with contextlib.suppress(sqlite3.Error), self._write_lock:
            conn.execute("DELETE FROM counters WHERE expires_at <= ?", (now,))


def _deliver(batch: list[_Waiter], outcomes: Sequence[_Outcome]) -> None:
    """Hand a group's outcomes to the event loop(s) its futures belong to, in one call
    per loop (normally one)."""
    loops: dict[asyncio.AbstractEventLoop, tuple[list[_Waiter], list[_Outcome]]] = {}
    for waiter, outcome in zip(batch, outcomes, strict=True):
        loop = waiter[2].get_loop()
        mine = loops.get(loop)
        if mine is None:
            mine = loops[loop] = ([], [])
        mine[0].append(waiter)
        mine[1].append(outcome)
    for loop, (waiters, results) in loops.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_resolve, waiters, results)


def _resolve(waiters: Sequence[_Waiter], outcomes: Sequence[_Outcome]) -> None:
    for (_, _, future), outcome in zip(waiters, outcomes, strict=True):
        if future.done():  # the request was cancelled meanwhile
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
