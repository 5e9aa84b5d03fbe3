"""Check-and-charge on SQLite: the decisions waiting at once in ONE transaction, on the
event loop when the database is free, else on a connection and a thread of their own.

Every decision stays all or nothing and exact across processes (DESIGN invariant 1): a
group runs inside one ``BEGIN IMMEDIATE`` transaction, which holds the database's write
lock, so no other connection (this process's or another's) changes a counter between
the group's read and its write. The decisions of a group are decided in arrival order
with :func:`~.limiter.decide`, each seeing what the earlier ones charged; every decision
is durable (committed, fsynced at ``synchronous=full``) before its future resolves, so
no response is sent on an uncommitted charge (invariant 5).

The decisions requested during two event-loop turns form a group, decided at the start
of the next turn **on the loop's own thread** (the loop path): a transaction on a few
counters takes tens of microseconds plus one fsync, whereas handing it to a thread costs
wake-ups and GIL hand-overs that, on a busy loop, slowed every request of the process by
a third (measured with ``bench/overhead.py``). The loop never waits for a lock on this
path: it takes the in-process write lock only if it is free and its connection has a
zero busy timeout, so when the store's other writer or another process holds the
database, or anything at all fails, the group goes to **the thread path** instead -- a
thread with its own connection that waits (``busy_timeout``) and reports errors. Groups
keep going there while it has work queued, so decisions do not overtake each other.

What grouping saves is the per-decision overhead around the deciding: one ``SELECT``
for all the group's counters, one multi-row upsert and one commit (one fsync) per group
instead of per decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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

CHECKPOINT_EVERY = 1_000
"""The loop path's connection does not checkpoint on commit (that could copy megabytes
while the loop waits); it runs a passive checkpoint after every this many groups."""

_KEYS_PER_SELECT = 500  # bound variables per statement stay far below SQLite's limit
_ROWS_PER_UPSERT = 300

INLINE_RETRY_S = 1.0
"""After the loop path fails other than by finding the database busy, groups take the
thread path for this long."""

log = logging.getLogger("modelshield.storage")

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
    """Decides the check-and-charges requested during two loop turns as one group: on the
    loop when the database is free (the loop path), else on a thread (the thread path).

    ``connect`` opens a writing connection with the store's settings (the thread path's,
    on the thread, the schema created if missing); ``write_lock`` is held for each write
    transaction, shared with the store's other writer so that the two never meet
    SQLite's busy handler (which sleeps in steps of milliseconds).

    Example:
        >>> writer = DecisionWriter(lambda: sqlite3.connect(":memory:"), threading.Lock(),
        ...                         "demo.db")
        >>> writer.groups, writer.loop_groups
        (0, 0)
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        write_lock: threading.Lock,
        name: str,
        *,
        max_group: int = MAX_GROUP,
        connect_loop: Callable[[], sqlite3.Connection] | None = None,
    ) -> None:
        self._connect = connect
        self._connect_loop = connect_loop
        self._write_lock = write_lock
        self._name = name
        self.max_group = max_group
        self._queue: SimpleQueue[_Waiter | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._pending: dict[asyncio.AbstractEventLoop, list[_Waiter]] = {}
        self._loop_conn: sqlite3.Connection | None = None
        self._loop_off_until = 0.0
        self._queued = 0  # decisions handed to the thread path and not yet decided
        self.decisions = 0
        """Decisions committed so far."""
        self.groups = 0
        """Transactions committed so far."""
        self.loop_groups = 0
        """Of those, the ones committed on the loop path."""

    def submit(self, checks: Sequence[Check], now: int) -> asyncio.Future[Decision]:
        """Request a decision; the future resolves once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decision] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            # two turns later: requests whose bytes arrived meanwhile join the group (at
            # saturation twice the group per fsync, and less CPU per request as the loop
            # runs the requests' halves back to back); an idle loop turns in microseconds
            loop.call_soon(loop.call_soon, self._flush, loop)
        pending.append((checks, now, future))
        return future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Decide this turn's requests: each group on the loop path if it can, else queued
        for the thread path."""
        waiting = self._pending.pop(loop, None)
        if not waiting:
            return
        for start in range(0, len(waiting), self.max_group):
            group = waiting[start : start + self.max_group]
            if self._queued or not self._decide_on_loop(group, loop):
                self._enqueue(group)

    def _enqueue(self, group: list[_Waiter]) -> None:
        self._queued += len(group)
        for waiter in group:
            self._queue.put(waiter)
        if self._thread is None:
            self._start()

    # the loop path ---------------------------------------------------------------
    def _decide_on_loop(self, group: list[_Waiter], loop: asyncio.AbstractEventLoop) -> bool:
        """Decide and commit ``group`` here and now; False (nothing charged) when the
        database is busy or anything fails -- the thread path then takes the group."""
        if self._connect_loop is None or loop.time() < self._loop_off_until:
            return False
        conn = self._loop_conn
        if conn is None:
            try:
                conn = self._loop_conn = self._connect_loop()
            except (sqlite3.Error, OSError):  # not created yet, or broken: the thread
                self._loop_off_until = loop.time() + INLINE_RETRY_S  # path tells which
                return False
        if not self._write_lock.acquire(blocking=False):
            return False  # the store's other writer is in a transaction
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                decisions = decide_group(conn, [(checks, now) for checks, now, _ in group])
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:  # the thread path decides the group and reports errors
            busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
            if not busy:  # (busy: another process is writing; try again next turn)
                log.warning("SQLite store %s: deciding on the loop failed: %r", self._name, exc)
                self._close_loop_connection()
                self._loop_off_until = loop.time() + INLINE_RETRY_S
            return False
        finally:
            self._write_lock.release()
        self.decisions += len(group)
        self.groups += 1
        self.loop_groups += 1
        _resolve(group, decisions)
        if self.decisions % SWEEP_EVERY < len(group):  # a table scan: not on the loop
            loop.run_in_executor(None, self._sweep_apart, max(now for _, now, _ in group))
        if self.loop_groups % CHECKPOINT_EVERY == 0:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return True

    def _close_loop_connection(self) -> None:
        conn, self._loop_conn = self._loop_conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="sqlite-decisions", daemon=True
                )
                self._thread.start()

    async def close(self) -> None:
        """Finish the requested and queued decisions, stop the thread, close both
        connections."""
        with contextlib.suppress(RuntimeError):
            self._flush(asyncio.get_running_loop())
        self._close_loop_connection()
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
        self._queued = 0
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
                _deliver(batch, outcomes, self._delivered)
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

    def _delivered(self, waiters: Sequence[_Waiter], outcomes: Sequence[_Outcome]) -> None:
        """On the loop: the thread path decided ``waiters``."""
        self._queued = max(0, self._queued - len(waiters))
        _resolve(waiters, outcomes)

    def _sweep(self, conn: sqlite3.Connection, now: int) -> None:
        """Delete expired counters (housekeeping; a failure waits for the next sweep)."""
        with contextlib.suppress(sqlite3.Error), self._write_lock:
            conn.execute("DELETE FROM counters WHERE expires_at <= ?", (now,))

    def _sweep_apart(self, now: int) -> None:
        """:meth:`_sweep` on a connection of its own (for a thread of the executor)."""
        with contextlib.suppress(sqlite3.Error, OSError):
            conn = self._connect()
            try:
                self._sweep(conn, now)
            finally:
                conn.close()


def _deliver(
    batch: list[_Waiter],
    outcomes: Sequence[_Outcome],
    resolve: Callable[[Sequence[_Waiter], Sequence[_Outcome]], None],
) -> None:
    """Hand a group's outcomes to ``resolve`` on the event loop(s) its futures belong to,
    in one call per loop (normally one)."""
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
            loop.call_soon_threadsafe(resolve, waiters, results)


def _resolve(waiters: Sequence[_Waiter], outcomes: Sequence[_Outcome]) -> None:
    for (_, _, future), outcome in zip(waiters, outcomes, strict=True):
        if future.done():  # the request was cancelled meanwhile
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
