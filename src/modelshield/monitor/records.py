"""What the monitor writes to the store: alerts and the responder's recorded actions.

Example:
    >>> alert = Alert(alert_id="al_1", account_id="acc_1", time=0.0, severity="high",
    ...               detector="ood_fraction", risk=80.0, reasons=["ood_fraction 0.9"])
    >>> Alert.from_dict(alert.to_dict()) == alert
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")
ActionKind = Literal["notify", "throttle", "degrade", "suspend"]


@dataclass(frozen=True, slots=True)
class Alert:
    """A detector's verdict on an account (or on a linked group, through each member).

    ``evidence`` holds the feature values behind it; ``example_event_ids`` name queries
    that show it; ``group`` lists the linked accounts when the verdict is a group's.
    """

    alert_id: str
    account_id: str
    time: float
    severity: Severity
    detector: str
    risk: float
    reasons: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    example_event_ids: list[str] = field(default_factory=list)
    group: list[str] = field(default_factory=list)
    dedup_key: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, slots=True)
class ResponseAction:
    """An automatic (or operator) action on an account, with what it replaced.

    ``previous`` is the account state the action changed (``status``,
    ``shaping_level``, ``throttle``), so an operator's undo restores exactly it.
    """

    action_id: str
    account_id: str
    time: float
    kind: ActionKind
    reason: str
    alert_id: str | None = None
    previous: dict[str, Any] = field(default_factory=dict)
    applied: dict[str, Any] = field(default_factory=dict)
    undone_at: float | None = None
    undone_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResponseAction:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
