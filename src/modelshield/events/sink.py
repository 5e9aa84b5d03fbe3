"""Group commit of query events (DESIGN invariant 5: nothing is lost).

Events are queued in memory and written to the store in batches, at most
``flush_interval`` seconds after they were emitted. A failed write keeps the batch
and retries with backoff; :meth:`GroupCommitSink.close` drains everything. With
``sync=True`` every ``emit`` waits until its event is durable.

The request path may emit an :class:`~modelshield.events.draft.EventDraft` instead of a
finished event; the sink's builder finishes each group of drafts just before the group
is committed (once: a retried write stores the same events).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from modelshield.events.draft import EventBuilder, EventDraft
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
        builder: EventBuilder | None = None,
    ) -> None:
        self.store = store
        self.builder = builder
        """Finishes emitted drafts (required once a draft is emitted)."""
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.sync = sync
        self.retry_max = retry_max
        self._max_queue = max_queue
        self._task: asyncio.Task[None] | None = None
        self._buffer: list[QueryEvent | EventDraft] = []
        self._pending: list[QueryEvent] = []
        self._deadline: float | None = None
        self._has_data = asyncio.Event()
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._listeners: list[EventListener] = []
        self._finished_listeners: list[EventListener] = []
        self.written = 0
        self.failures = 0

    def subscribe(self, listener: EventListener) -> None:
        """Call ``listener`` with every batch once it is durable (the monitor)."""
        self._listeners.append(listener)

    def subscribe_finished(self, listener: EventListener) -> None:
        """Call ``listener`` with every group of events once finished, before it is
        written (and whether or not the store takes it): request metrics, counted a group
        at a time rather than on each request's path."""
        self._finished_listeners.append(listener)

    def finish_buffered(self) -> None:
        """Finish the events emitted so far now (their finished-listeners run); they are
        written with the next group commit. For readers that must see every request,
        such as ``/metrics``, without waiting for the store."""
        buffered, self._buffer = self._buffer, []
        if buffered:
            self._pending.extend(self._finish(buffered))

    async def start(self) -> None:
        if self._task is None:
            self._has_data = asyncio.Event()
            self._stop = asyncio.Event()
            self._lock = asyncio.Lock()
            self._task = asyncio.create_task(self._run(), name="modelshield-event-sink")

    async def emit(self, event: QueryEvent | EventDraft) -> None:
        if isinstance(event, EventDraft) and self.builder is None:
            raise TypeError("this sink has no EventBuilder to finish drafts with")
        if self.sync or self._task is None:
            await self._write(self._finish([event]))
            return
        if len(self._buffer) >= self._max_queue:
            await self.flush()  # backpressure rather than dropping events
        self._buffer.append(event)
        self._has_data.set()

    def _finish(self, items: Sequence[QueryEvent | EventDraft]) -> list[QueryEvent]:
        """The events of ``items``, in order, drafts finished as one group."""
        drafts = [item for item in items if isinstance(item, EventDraft)]
        if not drafts:
            events = [item for item in items if isinstance(item, QueryEvent)]
        else:
            assert self.builder is not None  # emit() refuses drafts without a builder
            finished = iter(self.builder.build(drafts))
            events = [next(finished) if isinstance(item, EventDraft) else item for item in items]
        for listener in self._finished_listeners:
            try:
                listener(events)
            except Exception:  # a broken listener must not lose events
                log.exception("event listener failed")
        return events

    async def _write(self, batch: list[QueryEvent]) -> None:
        await self.store.append_events(batch)
        self.written += len(batch)
        for listener in self._listeners:
            try:
                listener(batch)
            except Exception:  # a broken listener must not lose events
                log.exception("event listener failed")

    async def _commit(self) -> None:
        """Write everything buffered so far, retrying with backoff; one commit at a time."""
        async with self._lock:
            self.finish_buffered()
            self._has_data.clear()
            delay = 0.05
            loop = asyncio.get_running_loop()
            while self._pending:
                if self._deadline is not None and loop.time() > self._deadline:
                    log.error("giving up: %d query events could not be written", len(self._pending))
                    self._pending.clear()
                    return
                batch = self._pending[: self.max_batch]
                try:
                    await self._write(batch)
                except Exception as exc:
                    self.failures += 1
                    log.warning(
                        "event commit failed (%d events kept, retrying): %s",
                        len(self._pending),
                        exc,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry_max)
                    continue
                del self._pending[: len(batch)]

    async def _run(self) -> None:
        # No cancellation: a task cancelled inside a driver call (redis-py, for one) may
        # swallow the CancelledError. close() sets _stop and the loop ends by itself.
        while not self._stop.is_set():
            await self._has_data.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.flush_interval)
            await self._commit()

    async def flush(self) -> None:
        """Write everything emitted so far."""
        if self._task is not None:
            await self._commit()

    async def close(self, timeout: float = 30.0) -> None:
        """Stop the background task and write every buffered event.

        If the store stays unreachable for ``timeout`` seconds the remaining events are
        reported in the log as lost.
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._deadline = asyncio.get_running_loop().time() + timeout
        self._stop.set()
        self._has_data.set()
        await task
        await self._commit()
        self._deadline = None
