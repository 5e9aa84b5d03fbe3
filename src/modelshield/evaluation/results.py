"""What an evaluation measured, as plain data (JSON in, JSON out) and a terminal table.

Per attack and protection setting, an :class:`AttackRun`: queries spent, 429s met,
the clone's accuracy and fidelity at each checkpoint, and — against the protected
gateway — a :class:`Detection`: whether and when (queries, simulated seconds) the
monitor flagged the attacker, by which detector, and which responder actions followed.
Per protected run a :class:`BenignOutcome`: how many legitimate accounts were flagged or
acted on, how many of their requests were refused, and what their answers lost (top-1
agreement and mean L1 change against the unprotected model).

Example:
    >>> run = AttackRun(attack="uniform", kind="uniform", accounts=1, protected=False,
    ...                 queries=10, throttled=0, waited_s=0.0, accuracy=0.5, fidelity=0.6)
    >>> AttackRun.from_dict(run.to_dict()) == run
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from modelshield.monitor.records import SEVERITIES


@dataclass(frozen=True, slots=True)
class CurvePoint:
    queries: int
    accuracy: float
    fidelity: float


@dataclass(frozen=True, slots=True)
class ActionSeen:
    kind: str
    queries: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Detection:
    flagged: bool = False
    queries: int | None = None
    """Attacker rows answered when the first alert was seen."""
    seconds: float | None = None
    """Simulated (in-process) or real seconds from the attack's start to that alert."""
    detector: str | None = None
    severity: str | None = None
    risk: float | None = None
    alerts: int = 0
    actions: list[ActionSeen] = field(default_factory=list)

    @property
    def strongest_action(self) -> str | None:
        order = ["notify", "throttle", "degrade", "suspend"]
        kinds = [a.kind for a in self.actions if a.kind in order]
        return max(kinds, key=order.index) if kinds else None


@dataclass(frozen=True, slots=True)
class AttackRun:
    attack: str
    kind: str
    accounts: int
    protected: bool
    queries: int
    throttled: int
    waited_s: float
    accuracy: float
    fidelity: float
    stopped: str | None = None
    curve: list[CurvePoint] = field(default_factory=list)
    detection: Detection | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttackRun:
        detection = data.get("detection")
        if detection is not None:
            actions = [ActionSeen(**a) for a in detection.get("actions", [])]
            detection = Detection(**{**detection, "actions": actions})
        curve = [CurvePoint(**p) for p in data.get("curve", [])]
        return cls(**{**data, "curve": curve, "detection": detection})


@dataclass(frozen=True, slots=True)
class BenignOutcome:
    attack: str
    """The protected run this benign traffic ran beside."""
    accounts: int
    requests: int
    rows_answered: int
    refused_429: int
    refused_403: int
    flagged: int
    """Accounts with at least one alert."""
    actioned: dict[str, int]
    """Accounts per strongest action taken against them (notify excluded)."""
    top1_agreement: float
    mean_l1: float
    flagged_behaviours: list[str] = field(default_factory=list)
    flagged_accounts: list[int] = field(default_factory=list)
    """Population indexes of the flagged accounts (the same customers are replayed
    beside every attack of a variant, so these identify them across runs)."""
    acted_accounts: list[int] = field(default_factory=list)
    """Population indexes of the accounts counted in ``actioned``."""
    severities: dict[str, str] = field(default_factory=dict)
    """Strongest alert severity per flagged account (population index, as a string)."""

    @property
    def false_positive_rate(self) -> float:
        return self.flagged / self.accounts if self.accounts else 0.0

    @property
    def acted_on(self) -> int:
        return sum(self.actioned.values())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class VariantResult:
    """One policy variant (the scenario's policy, or one point of its sweep)."""

    variant: dict[str, Any]
    runs: list[AttackRun] = field(default_factory=list)
    benign: list[BenignOutcome] = field(default_factory=list)

    def run(self, attack: str, protected: bool) -> AttackRun | None:
        return next((r for r in self.runs if r.attack == attack and r.protected == protected), None)

    @property
    def attacks(self) -> list[str]:
        return list(dict.fromkeys(r.attack for r in self.runs))

    def benign_totals(self) -> dict[str, Any]:
        """The benign population over the protected runs of this variant.

        The same population is replayed beside every attack, so ``accounts`` is its
        size (not one count per run), ``flagged`` and ``acted_on`` count the distinct
        customers flagged or acted on beside any attack, and ``runs`` says how many
        times the population was replayed; requests, refusals and rows are summed
        over the runs.
        """
        accounts = max((b.accounts for b in self.benign), default=0)
        flagged = _distinct(self.benign, "flagged_accounts", "flagged")
        acted = _distinct(self.benign, "acted_accounts", "acted_on")
        strongest: dict[str, str] = {}
        for outcome in self.benign:
            for account, severity in outcome.severities.items():
                if _rank(severity) > _rank(strongest.get(account)):
                    strongest[account] = severity
        by_severity: dict[str, int] = {name: 0 for name in SEVERITIES}
        for severity in strongest.values():
            by_severity[severity] = by_severity.get(severity, 0) + 1
        serious = sum(by_severity[name] for name in SEVERITIES[1:])
        rows = sum(b.rows_answered for b in self.benign)
        agreement = (
            sum(b.top1_agreement * b.rows_answered for b in self.benign) / rows if rows else 0.0
        )
        l1 = sum(b.mean_l1 * b.rows_answered for b in self.benign) / rows if rows else 0.0
        return {
            "accounts": accounts,
            "runs": len(self.benign),
            "flagged": flagged,
            "acted_on": acted,
            "false_positive_rate": flagged / accounts if accounts else 0.0,
            "by_severity": by_severity,
            "medium_or_higher": serious,
            "refused_429": sum(b.refused_429 for b in self.benign),
            "refused_403": sum(b.refused_403 for b in self.benign),
            "rows_answered": rows,
            "top1_agreement": agreement,
            "mean_l1": l1,
        }


def _rank(severity: str | None) -> int:
    return -1 if severity not in SEVERITIES else SEVERITIES.index(severity)


def _distinct(outcomes: list[BenignOutcome], indexes: str, count: str) -> int:
    """Distinct accounts over the runs (at least the largest per-run count, which is all
    results written before the indexes were recorded have)."""
    union = {i for b in outcomes for i in getattr(b, indexes)}
    return max(len(union), max((int(getattr(b, count)) for b in outcomes), default=0))


@dataclass(slots=True)
class EvaluationResults:
    scenario: str
    seed: int
    site: str
    model: str
    test_rows: int
    variants: list[VariantResult] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for variant, raw in zip(self.variants, out["variants"], strict=True):
            raw["benign_totals"] = variant.benign_totals()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationResults:
        variants = [
            VariantResult(
                variant=v["variant"],
                runs=[AttackRun.from_dict(r) for r in v["runs"]],
                benign=[BenignOutcome(**b) for b in v["benign"]],
            )
            for v in data["variants"]
        ]
        fields = {f.name for f in dataclasses.fields(cls)} - {"variants"}
        return cls(**{k: data[k] for k in fields if k in data}, variants=variants)


def variant_label(variant: dict[str, Any]) -> str:
    if not variant:
        return "as configured"
    return ", ".join(f"{key}={value}" for key, value in variant.items())


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def efficacy_rows(results: EvaluationResults) -> list[list[str]]:
    """attack x (undefended fidelity, defended fidelity, flagged?, queries to flag, …)."""
    rows: list[list[str]] = []
    for variant in results.variants:
        label = variant_label(variant.variant)
        for attack in variant.attacks:
            base = variant.run(attack, protected=False)
            prot = variant.run(attack, protected=True)
            det = prot.detection if prot is not None else None
            rows.append(
                [
                    attack,
                    label,
                    str(prot.queries if prot else base.queries if base else "-"),
                    _pct(base.fidelity if base else None),
                    _pct(prot.fidelity if prot else None),
                    "-" if det is None else ("yes" if det.flagged else "no"),
                    "-" if det is None or det.queries is None else str(det.queries),
                    "-" if det is None or det.detector is None else det.detector,
                    "-" if det is None else (det.strongest_action or "-"),
                ]
            )
    return rows


EFFICACY_HEADER = [
    "attack",
    "policy",
    "queries",
    "undefended fidelity",
    "defended fidelity",
    "flagged",
    "queries to flag",
    "detector",
    "action",
]


def benign_rows(results: EvaluationResults) -> list[list[str]]:
    out = []
    for variant in results.variants:
        t = variant.benign_totals()
        out.append(
            [
                variant_label(variant.variant),
                str(t["accounts"]),
                f"{t['flagged']} ({t['false_positive_rate']:.1%})",
                _count_of(t["medium_or_higher"], t["accounts"]),
                str(t["acted_on"]),
                str(t["refused_429"]),
                f"{t['top1_agreement']:.2%}",
                f"{t['mean_l1']:.4f}",
            ]
        )
    return out


def _count_of(count: int, total: int) -> str:
    return f"{count} ({count / total:.1%})" if total else str(count)


BENIGN_HEADER = [
    "policy",
    "benign accounts",
    "flagged (any alert)",
    "medium or higher",
    "throttled/degraded/suspended",
    "429s",
    "top-1 agreement",
    "mean L1",
]


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain aligned table for the terminal."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, rule, *body])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
