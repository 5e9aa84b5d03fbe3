"""Check-and-charge on Redis: the decisions of one event-loop turn in ONE script run.

Every decision is still all or nothing and exact across processes (DESIGN invariant 1):
the batch runs as one Lua script (``redis_scripts.CHECK_AND_CHARGE``), which Redis
executes atomically, deciding the decisions in order so that each sees what the earlier
ones charged. What batching saves is the client's work: one command to encode, one reply
to parse, one round trip and one script call per batch instead of per decision. The
script returns only the admission flag and the counter values each decision read; the
details (remaining, reset, retry) are rebuilt here with :func:`~.limiter.decide`, the same
rule every backend uses.

The batches go over a connection of their own, one batch at a time: requests arriving
while a batch is in flight form the next one. A connection failure or timeout fails
every decision of the batch with :class:`~modelshield.errors.StoreUnavailable` (the
gate then denies, or admits with ``fail_open``); the connection reconnects on the next
batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import Callable, Sequence
from typing import Any

from modelshield.errors import StoreUnavailable
from modelshield.storage.limiter import Check, Decision, QuotaCheck, RateCheck, decide

MAX_BATCH = 256
"""Decisions per script run at most (a script blocks Redis while it runs)."""

EXACT = 2**53
"""Lua numbers are doubles, exact up to here: larger budgets and row intervals (a policy
may write any) are sent as this -- no window counts that many rows, no client waits 285
years for one -- which keeps every number inside the packed int64s."""


class _Batch:
    """Decisions waiting for one script run, already encoded.

    ``numbers`` are the script's integers (see ``redis_scripts.CHECK_AND_CHARGE``), sent
    packed as int64s: formatting them as text here and parsing them in Lua cost more
    than the deciding itself.

    ``keys`` holds each key name once as a RESP bulk string (``$<bytes>\\r\\n<name>\\r\\n``):
    the command is packed here, in one join, rather than argument by argument by the
    client library (which costs more than everything else a decision does).
    """

    __slots__ = ("index", "keys", "numbers", "waiters")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self.numbers: list[int] = []
        self.waiters: list[tuple[Sequence[Check], int, asyncio.Future[Decision]]] = []

    def add_key(self, key: str, prefix: str) -> int:
        """Add ``key`` to KEYS; returns its 1-based index."""
        name = prefix + key
        size = len(name) if name.isascii() else len(name.encode())
        self.keys.append(f"${size}\r\n{name}\r\n")
        slot = self.index[key] = len(self.keys)
        return slot

    def command(self, sha: str) -> bytes:
        """``EVALSHA sha numkeys key… numbers`` in the Redis protocol (RESP)."""
        count = str(len(self.keys))
        numbers = struct.pack(f"<{len(self.numbers)}q", *self.numbers)
        text = "".join(
            [
                f"*{len(self.keys) + 4}\r\n$7\r\nEVALSHA\r\n$40\r\n{sha}\r\n",
                f"${len(count)}\r\n{count}\r\n",
                *self.keys,
                f"${len(numbers)}\r\n",
            ]
        )
        return b"".join([text.encode(), numbers, b"\r\n"])


class DecisionBatcher:
    """Sends the pending decisions as one ``EVALSHA`` per batch over its own connection.

    ``make_connection`` returns an unconnected redis-py asyncio connection (the store's
    pool settings: address, credentials, timeouts).
    """

    def __init__(self, make_connection: Callable[[], Any], script: str, prefix: str) -> None:
        self._make_connection = make_connection
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()
        self._prefix = prefix
        self._connection: Any = None
        self._queue: list[_Batch] = []
        self._running = False
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps tasks weakly
        self._timeout: float | None = None
        """Seconds a script run may take, send to reply (the store's socket timeout)."""

    def decide(self, checks: Sequence[Check], now: int, charge: bool) -> asyncio.Future[Decision]:
        """Queue a decision for the next script run; await the returned future."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        if not queue or len(queue[-1].waiters) >= MAX_BATCH:
            queue.append(_Batch())
        batch = queue[-1]
        index, prefix = batch.index, self._prefix
        numbers = batch.numbers
        numbers += (now, 1 if charge else 0, len(checks))
        for check in checks:
            # the KEYS slot of each key (added on first use; inlined: this runs per key)
            slot = index.get(check.key) or batch.add_key(check.key, prefix)
            if check.__class__ is RateCheck:
                interval = check.interval if check.interval < EXACT else EXACT
                numbers += (0, slot, check.cost, interval, check.burst, 0)
                continue
            quota: QuotaCheck = check  # type: ignore[assignment]
            bonus_key = quota.bonus_key
            bonus = (index.get(bonus_key) or batch.add_key(bonus_key, prefix)) if bonus_key else 0
            expires = -1 if quota.expires_at is None else quota.expires_at
            limit = quota.limit if quota.limit < EXACT else EXACT
            numbers += (1, slot, quota.cost, limit, expires, bonus)
        future: asyncio.Future[Decision] = loop.create_future()
        batch.waiters.append((checks, now, future))
        if not self._running:
            self._running = True
            # after the other requests of this loop turn have joined the batch
            loop.call_soon(self._start, loop)
        return future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._queue:
                await self._send(self._queue.pop(0))
        finally:
            self._running = False

    async def _send(self, batch: _Batch) -> None:
        try:
            reply = await self._evalsha(batch)
        except BaseException as exc:
            error = _unavailable(exc) or exc
            for _, _, future in batch.waiters:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        at = 0
        for checks, now, future in batch.waiters:
            allowed = reply[at]
            at += 1
            values: dict[str, int] = {}
            for check in checks:
                values[check.key] = reply[at]
                bonus_key = check.bonus_key
                if bonus_key:
                    values[bonus_key] = reply[at + 1]
                at += 2
            if not future.done():
                decision = decide(checks, values, now, charge=False)[0]
                decision.allowed = allowed == 1  # the script's verdict is what was charged
                future.set_result(decision)

    async def _evalsha(self, batch: _Batch) -> list[int]:
        from redis.exceptions import NoScriptError, ResponseError

        if self._connection is None:
            self._connection = self._make_connection()
            # one deadline for the whole exchange below instead of the client's own per
            # write (a task each) and per read: a fifth of a batch's client CPU
            self._timeout = self._connection.socket_timeout
            self._connection.socket_timeout = None
        connection = self._connection
        command = batch.command(self._sha)
        try:
            async with asyncio.timeout(self._timeout):
                try:
                    await connection.send_packed_command(command)
                    reply = await connection.read_response()
                except NoScriptError:  # a restarted or flushed Redis: load it, run it again
                    await connection.send_command("SCRIPT", "LOAD", self._script)
                    await connection.read_response()
                    await connection.send_packed_command(command)
                    reply = await connection.read_response()
        except ResponseError:
            raise  # the reply was read whole: the connection is still in step
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        return list(reply)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect()


def _unavailable(exc: BaseException) -> StoreUnavailable | None:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError | TimeoutError):
        return StoreUnavailable(f"Redis store unreachable: {type(exc).__name__}")
    return None
