"""Event drafts: finished in groups off the request path, exactly as one at a time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from modelshield.errors import StoreUnavailable
from modelshield.events.draft import EventBuilder, EventDraft, input_digest, row_statistics
from modelshield.events.record import QueryEvent
from modelshield.events.sink import GroupCommitSink
from modelshield.monitor.sketch import sketch_rows
from modelshield.storage.memory import MemoryStore

SECRET = b"0123456789abcdef"


def draft(n: int, rows: int = 1, *, answered: bool = True, features: int = 64) -> EventDraft:
    rng = np.random.default_rng(n)
    inputs = rng.uniform(0, 16, size=(rows, features))
    answer = rng.dirichlet(np.ones(10), size=rows) if answered else None
    return EventDraft(
        time=float(n),
        model="digits",
        outcome="answered" if answered else "denied",
        status=200 if answered else 429,
        account_id="acc",
        key_id="k",
        rows=rows,
        charged_rows=rows if answered else 0,
        controls=[] if answered else ["limits"],
        inputs=inputs,
        answer=answer,
    )


def expected(d: EventDraft) -> tuple[object, ...]:
    """What the gateway stored before drafts: each event computed on its own."""
    assert d.inputs is not None
    digest = input_digest(SECRET, d.inputs)
    if d.answer is None:
        return digest, [], [], [], []
    top1, margin, entropy = row_statistics(d.answer)
    return digest, top1, margin, entropy, sketch_rows(d.inputs)


def stats(e: QueryEvent) -> tuple[object, ...]:
    return e.input_digest, e.top1, e.margin, e.entropy, e.sketch


def assert_finished(e: QueryEvent, d: EventDraft) -> None:
    digest, top1, margin, entropy, sketch = expected(d)
    assert e.input_digest == digest and e.top1 == top1
    assert e.margin == pytest.approx(margin) and e.entropy == pytest.approx(entropy)
    assert np.allclose(np.asarray(e.sketch).reshape(-1), np.asarray(sketch).reshape(-1))


def test_a_group_is_finished_as_each_draft_alone_in_order() -> None:
    drafts = [draft(n, rows=1 + n % 3, answered=n % 4 != 3) for n in range(12)]
    drafts.append(draft(99, rows=2, features=8))  # another model's shape in the group
    events = EventBuilder(SECRET).build(drafts)
    assert [e.time for e in events] == [d.time for d in drafts]
    for d, e in zip(drafts, events, strict=True):
        assert_finished(e, d)
        assert (e.outcome, e.status, e.rows, e.charged_rows, e.controls) == (
            d.outcome,
            d.status,
            d.rows,
            d.charged_rows,
            d.controls,
        )
    assert len({e.event_id for e in events}) == len(events)


def test_event_ids_are_time_ordered() -> None:
    first, second = EventDraft(0.0, "m", "denied", 401), EventDraft(0.0, "m", "denied", 401)
    a, b = EventBuilder(SECRET).build([first, second])
    assert second.created_ns >= first.created_ns and a.event_id[:16] <= b.event_id[:16]


def test_drafts_without_rows_have_no_digest_or_statistics() -> None:
    unauthenticated = EventDraft(time=1.0, model="(unknown)", outcome="denied", status=401)
    malformed = EventDraft(
        time=2.0, model="digits", outcome="denied", status=422, inputs=np.zeros((0, 64))
    )
    events = EventBuilder(SECRET).build([unauthenticated, malformed])
    assert [stats(e) for e in events] == [(None, [], [], [], [])] * 2


def test_a_draft_that_cannot_be_finished_is_stored_without_statistics_not_lost() -> None:
    broken = draft(1)
    broken.answer = np.ones(10)  # not a matrix: the group computation fails
    good = draft(2)
    events = EventBuilder(SECRET).build([good, broken])
    assert [e.time for e in events] == [2.0, 1.0]
    assert_finished(events[0], good)
    assert events[1].top1 == [] and events[1].sketch == []


class FlakyStore(MemoryStore):
    def __init__(self, fail_times: int) -> None:
        super().__init__()
        self.fail_times = fail_times
        self.attempts: list[list[str]] = []

    async def append_events(self, events: Sequence[QueryEvent]) -> None:
        self.attempts.append([e.event_id for e in events])
        if self.fail_times:
            self.fail_times -= 1
            raise StoreUnavailable("down")
        await super().append_events(events)


async def test_the_sink_finishes_drafts_once_and_retries_the_same_events() -> None:
    store = FlakyStore(fail_times=2)
    sink = GroupCommitSink(store, flush_interval=0.01, builder=EventBuilder(SECRET))
    await sink.start()
    drafts = [draft(n) for n in range(5)]
    for d in drafts:
        await sink.emit(d)
    await sink.emit(QueryEvent(event_id="plain", time=9.0, model="m", outcome="denied", status=401))
    await sink.close()
    assert len(store.attempts) == 3 and store.attempts[0] == store.attempts[2]
    stored = await store.recent_events("acc", limit=10)
    assert sorted(e.time for e in stored) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert await store.count_events() == 6
    by_time = {e.time: e for e in stored}
    for d in drafts:
        assert_finished(by_time[d.time], d)


async def test_sync_sink_finishes_a_draft_before_emit_returns() -> None:
    store = MemoryStore()
    sink = GroupCommitSink(store, sync=True, builder=EventBuilder(SECRET))
    await sink.start()
    await sink.emit(draft(1))
    [event] = await store.recent_events("acc")
    assert_finished(event, draft(1))
    await sink.close()


async def test_a_sink_without_builder_refuses_drafts() -> None:
    sink = GroupCommitSink(MemoryStore())
    with pytest.raises(TypeError, match="EventBuilder"):
        await sink.emit(draft(1))
