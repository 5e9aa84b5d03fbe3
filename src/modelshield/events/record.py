"""QueryEvent: what every answered or denied query leaves behind (DESIGN.md, data flow)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

Outcome = Literal["answered", "denied", "error"]


@dataclass(frozen=True, slots=True)
class QueryEvent:
    """One query, as seen by monitoring, audit, metrics and the dashboard.

    Per-row statistics (``top1``, ``margin``, ``entropy``) describe the model's
    prediction before shaping; ``controls`` names every gate or shaper that acted.
    ``sketch`` replaces the raw input for monitoring: raw inputs are never stored.

    Example:
        >>> QueryEvent(event_id="e1", time=0.0, model="digits", outcome="denied",
        ...            status=401).account_id is None
        True
    """

    event_id: str
    time: float
    model: str
    outcome: Outcome
    status: int
    account_id: str | None = None
    key_id: str | None = None
    client: str | None = None
    user_agent: str | None = None
    input_digest: str | None = None
    rows: int = 0
    charged_rows: int = 0
    top1: list[int] = field(default_factory=list)
    margin: list[float] = field(default_factory=list)
    entropy: list[float] = field(default_factory=list)
    sketch: list[list[float]] = field(default_factory=list)
    """Per-row 16-dim random projection of the input (:mod:`modelshield.monitor.sketch`)."""
    controls: list[str] = field(default_factory=list)
    problem: str | None = None
    latency_ms: float | None = None
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Compact JSON (orjson serializes the dataclass directly: the hot path)."""
        return orjson.dumps(self).decode("utf-8")

    @classmethod
    def from_json(cls, text: str | bytes) -> QueryEvent:
        return cls.from_dict(orjson.loads(text))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueryEvent:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
