"""Group commit of query events (DESIGN invariant 5: nothing is lost).

Events are queued in memory and written to the store in batches, at most
``flush_interval`` seconds after they were emitted. A failed write keeps the batch
and retries with backoff; :meth:`GroupCommitSink.close` drains everything. With
``sync=True`` every ``emit`` waits until its event is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from modelshield.events.record import QueryEvent
from modelshield.storage.base import Store

log = logging.getLogger("modelshield.events")

EventListener = Callable[[Sequence[QueryEvent]], None]


class GroupCommitSink:
    """Buffer events and commit them to ``store`` in groups.

    Example:
        >>> import asyncio
        >>> from modelshield.storage.memory import MemoryStore
        >>> async def demo():
        ...     store = MemoryStore()
        ...     sink = GroupCommitSink(store, flush_interval=0.01)
        ...     await sink.start()
        ...     await sink.emit(QueryEvent(event_id="e1", time=0.0, model="m",
        ...                                outcome="denied", status=401))
        ...     await sink.close()
        ...     return await store.count_events()
        >>> asyncio.run(demo())
        1
    """

    def __init__(
        self,
        store: Store,
        *,
        flush_interval: float = 0.1,
        max_batch: int = 500,
        max_queue: int = 100_000,
        sync: bool = False,
        retry_max: float = 5.0,
    ) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.sync = sync
        self.retry_max = retry_max
        self._queue: asyncio.Queue[QueryEvent] | None = None
        self._max_queue = max_queue
        self._task: asyncio.Task[None] | None = None
        self._pending: list[QueryEvent] = []
        self._listeners: list[EventListener] = []
        self.written = 0
        self.failures = 0

    def subscribe(self, listener: EventListener) -> None:
        """Call ``listener`` with every batch once it is durable (metrics, monitor)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        if self._task is None:
            self._queue = asyncio.Queue(self._max_queue)
            self._task = asyncio.create_task(self._run(), name="modelshield-event-sink")

    async def emit(self, event: QueryEvent) -> None:
        if self.sync or self._queue is None:
            await self._write([event])
            return
        await self._queue.put(event)  # waits (backpressure) rather than drop when full

    async def _write(self, batch: list[QueryEvent]) -> None:
        await self.store.append_events(batch)
        self.written += len(batch)
        for listener in self._listeners:
            try:
                listener(batch)
            except Exception:  # a broken listener must not lose events
                log.exception("event listener failed")

    def _take(self, limit: int) -> None:
        assert self._queue is not None
        while len(self._pending) < limit and not self._queue.empty():
            self._pending.append(self._queue.get_nowait())

    async def _commit_pending(self, deadline: float | None = None) -> None:
        delay = 0.05
        loop = asyncio.get_running_loop()
        while self._pending:
            if deadline is not None and loop.time() > deadline:
                log.error("giving up: %d query events could not be written", len(self._pending))
                return
            batch = self._pending[: self.max_batch]
            try:
                await self._write(batch)
            except Exception as exc:
                self.failures += 1
                log.warning("event commit failed (%d events kept, retrying): %s", len(batch), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            del self._pending[: len(batch)]

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            if not self._pending:
                self._pending.append(await self._queue.get())
                await asyncio.sleep(self.flush_interval)
            self._take(self.max_batch)
            await self._commit_pending()

    async def flush(self) -> None:
        """Write everything emitted so far."""
        if self._queue is None:
            return
        self._take(len(self._pending) + self._queue.qsize())
        await self._commit_pending()

    async def close(self, timeout: float = 30.0) -> None:
        """Stop the background task and drain every queued event.

        Writes are idempotent by event id, so a batch interrupted by the cancellation
        is simply written again. If the store stays unreachable for ``timeout``
        seconds the remaining events are reported in the log as lost.
        """
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._queue is not None:
            self._take(len(self._pending) + self._queue.qsize())
            await self._commit_pending(asyncio.get_running_loop().time() + timeout)
            self._queue = None
