"""Group commit: bounded delay, batching, retry without loss, drain on close."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from modelshield.errors import StoreUnavailable
from modelshield.events.record import QueryEvent
from modelshield.events.sink import GroupCommitSink
from modelshield.storage.memory import MemoryStore


def ev(n: int) -> QueryEvent:
    return QueryEvent(
        event_id=f"e{n}",
        time=float(n),
        model="m",
        outcome="answered",
        status=200,
        account_id="acc",
    )


class CountingStore(MemoryStore):
    def __init__(self, fail_times: int = 0) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.fail_times = fail_times

    async def append_events(self, events: Sequence[QueryEvent]) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise StoreUnavailable("down")
        self.batches.append(len(events))
        await super().append_events(events)


async def test_events_are_committed_in_groups_within_the_interval() -> None:
    store = CountingStore()
    sink = GroupCommitSink(store, flush_interval=0.02, max_batch=1000)
    await sink.start()
    for n in range(100):
        await sink.emit(ev(n))
    assert await store.count_events() == 0  # nothing written synchronously
    await asyncio.sleep(0.2)
    assert await store.count_events() == 100
    assert len(store.batches) <= 3  # grouped, not one write per event
    await sink.close()


async def test_close_drains_everything() -> None:
    store = CountingStore()
    sink = GroupCommitSink(store, flush_interval=5.0, max_batch=7)
    await sink.start()
    for n in range(50):
        await sink.emit(ev(n))
    await sink.close()
    assert await store.count_events() == 50
    assert max(store.batches) <= 7


async def test_failed_writes_are_retried_without_loss() -> None:
    store = CountingStore(fail_times=3)
    sink = GroupCommitSink(store, flush_interval=0.01)
    await sink.start()
    for n in range(20):
        await sink.emit(ev(n))
    await sink.close()
    assert await store.count_events() == 20
    assert sink.failures == 3


async def test_sync_mode_is_durable_before_emit_returns() -> None:
    store = CountingStore()
    sink = GroupCommitSink(store, sync=True)
    await sink.start()
    await sink.emit(ev(1))
    assert await store.count_events() == 1
    await sink.close()


async def test_listeners_see_durable_batches_and_cannot_break_the_sink() -> None:
    store = CountingStore()
    sink = GroupCommitSink(store, flush_interval=0.01)
    seen: list[str] = []

    def broken(batch: Sequence[QueryEvent]) -> None:
        raise RuntimeError("listener bug")

    sink.subscribe(lambda batch: seen.extend(e.event_id for e in batch))
    sink.subscribe(broken)
    await sink.start()
    await sink.emit(ev(1))
    await sink.close()
    assert seen == ["e1"] and await store.count_events() == 1
