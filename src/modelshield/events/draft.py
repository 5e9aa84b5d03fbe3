"""Event drafts: what the request path records, finished into QueryEvents off the path.

The per-row parts of a :class:`~modelshield.events.record.QueryEvent` (input digest,
sketch, top-1, margin, entropy) cost a dozen small numpy calls per request. A request
hands the sink an :class:`EventDraft` holding references to its input rows and the
model's answer instead, and the sink's :class:`EventBuilder` finishes a whole group of
drafts at once, just before the group is committed: one projection and one set of
reductions for the group, whatever its size. Nothing changes in what is stored.

Example:
    >>> import numpy as np
    >>> draft = EventDraft(time=0.0, model="digits", outcome="answered", status=200,
    ...                    inputs=np.ones((1, 64)), answer=np.array([[0.25, 0.75]]))
    >>> event, = EventBuilder(b"0123456789abcdef").build([draft])
    >>> event.top1, event.margin, len(event.sketch[0]), len(event.input_digest)
    ([1], [0.5], 16, 32)
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time as _time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from modelshield.events.record import Outcome, QueryEvent
from modelshield.models.base import FloatArray
from modelshield.monitor.sketch import MAX_SKETCH_ROWS, SKETCH_DECIMALS, project

log = logging.getLogger("modelshield.events")


@dataclass(slots=True)
class EventDraft:
    """A QueryEvent whose per-row statistics are not computed yet.

    ``inputs`` are the query's rows (digested, and sketched when answered); ``answer`` is
    the model's unshaped probabilities (None unless answered). Neither array is modified
    after the draft is made: the gateway never writes to either once the model ran.
    """

    time: float
    model: str
    outcome: Outcome
    status: int
    account_id: str | None = None
    key_id: str | None = None
    client: str | None = None
    user_agent: str | None = None
    rows: int = 0
    charged_rows: int = 0
    controls: list[str] = field(default_factory=list)
    problem: str | None = None
    latency_ms: float | None = None
    flags: list[str] = field(default_factory=list)
    inputs: FloatArray | None = None
    answer: FloatArray | None = None
    created_ns: int = field(default_factory=_time.time_ns)
    """Wall-clock nanoseconds at the draft's creation: the time-ordered part of the id."""


def row_statistics(raw: FloatArray) -> tuple[list[int], list[float], list[float]]:
    """Per-row top-1 index, top-1/top-2 margin and entropy (nats) of the model's answer.

    Example:
        >>> row_statistics(np.array([[0.25, 0.75]]))[:2]
        ([1], [0.5])
    """
    top1 = np.argmax(raw, axis=1)
    top2 = np.partition(raw, raw.shape[1] - 2, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    entropy = -(raw * np.log(np.maximum(raw, 1e-12))).sum(axis=1)
    return top1.tolist(), margin.tolist(), entropy.tolist()


def input_digest(secret: bytes, rows: FloatArray) -> str:
    """HMAC-SHA256 (server secret) of the rows as little-endian FP32, 32 hex digits."""
    data = np.ascontiguousarray(rows, dtype="<f4").tobytes()
    return hmac.digest(secret, data, hashlib.sha256)[:16].hex()  # the one-shot C HMAC


class EventBuilder:
    """Finish drafts into QueryEvents, a group at a time.

    A group is finished with one numpy call per statistic across all its rows; should
    that fail (it should not), each draft is finished alone, and a draft that still
    fails becomes an event without statistics rather than being lost (DESIGN inv. 5).
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def build(self, drafts: Sequence[EventDraft]) -> list[QueryEvent]:
        try:
            return self._build(drafts)
        except Exception:
            log.exception("finishing %d query events as a group failed", len(drafts))
        events = []
        for draft in drafts:
            try:
                events.extend(self._build([draft]))
            except Exception:
                log.exception("finishing a query event failed; it is stored without statistics")
                events.append(self._event(draft, None, [], [], [], []))
        return events

    def _build(self, drafts: Sequence[EventDraft]) -> list[QueryEvent]:
        answered = [
            d
            for d in drafts
            if d.answer is not None and d.inputs is not None and _is_matrix(d.inputs)
        ]
        stats: dict[int, tuple[list[int], list[float], list[float], list[list[float]]]] = {}
        # group by (features, classes): one stacked computation per group
        groups: dict[tuple[int, int], list[EventDraft]] = {}
        for draft in answered:
            assert draft.inputs is not None and draft.answer is not None
            groups.setdefault((draft.inputs.shape[1], draft.answer.shape[1]), []).append(draft)
        for members in groups.values():
            answers = [d.answer for d in members if d.answer is not None]
            inputs = [d.inputs[:MAX_SKETCH_ROWS] for d in members if d.inputs is not None]
            top1, margin, entropy = row_statistics(np.concatenate(answers))
            sketches: list[list[float]] = np.round(
                project(np.concatenate(inputs)), SKETCH_DECIMALS
            ).tolist()
            at = sketched = 0
            for draft, answer, rows in zip(members, answers, inputs, strict=True):
                n, m = answer.shape[0], rows.shape[0]
                stats[id(draft)] = (
                    top1[at : at + n],
                    margin[at : at + n],
                    entropy[at : at + n],
                    sketches[sketched : sketched + m],
                )
                at += n
                sketched += m
        events = []
        nonces = os.urandom(8 * len(drafts)).hex()  # one system call for the group
        for n, draft in enumerate(drafts):
            digest = None
            if draft.inputs is not None and _is_matrix(draft.inputs):
                digest = input_digest(self._secret, draft.inputs)
            top1, margin, entropy, sketch = stats.get(id(draft), ([], [], [], []))
            nonce = nonces[16 * n : 16 * n + 16]
            events.append(self._event(draft, digest, top1, margin, entropy, sketch, nonce))
        return events

    @staticmethod
    def _event(
        draft: EventDraft,
        digest: str | None,
        top1: list[int],
        margin: list[float],
        entropy: list[float],
        sketch: list[list[float]],
        nonce: str | None = None,
    ) -> QueryEvent:
        return QueryEvent(
            # time-ordered ids: appends land at the end of the store's unique index
            event_id=f"{draft.created_ns:016x}{nonce or os.urandom(8).hex()}",
            time=draft.time,
            model=draft.model,
            outcome=draft.outcome,
            status=draft.status,
            account_id=draft.account_id,
            key_id=draft.key_id,
            client=draft.client,
            user_agent=draft.user_agent,
            input_digest=digest,
            rows=draft.rows,
            charged_rows=draft.charged_rows,
            top1=top1,
            margin=margin,
            entropy=entropy,
            sketch=sketch,
            controls=draft.controls,
            problem=draft.problem,
            latency_ms=draft.latency_ms,
            flags=draft.flags,
        )


def _is_matrix(rows: FloatArray) -> bool:
    return rows.ndim == 2 and rows.size > 0
