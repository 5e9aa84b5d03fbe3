"""The decision rule that every store's check-and-charge implements (DESIGN invariant 1).

Two kinds of check, both counted in rows:

* :class:`RateCheck` — GCRA (the generic cell rate algorithm, equivalent to a token
  bucket): the stored value is the *theoretical arrival time* ``tat`` in integer
  microseconds. With ``interval`` = microseconds per row and ``burst`` = bucket size,
  a request of ``cost`` rows is allowed when ``max(tat, now) + cost*interval - burst*interval
  <= now``; admitting it sets ``tat = max(tat, now) + cost*interval``.
* :class:`QuotaCheck` — a counter for a budget window: allowed when
  ``used + cost <= limit + bonus`` (``bonus`` is an operator's grant for the same window,
  read from ``bonus_key``); admitting it adds ``cost``. The counter expires with its window.

A decision is all or nothing: if any check denies, nothing is charged. Memory and
SQLite call :func:`decide` inside their lock / transaction; the Redis backend runs the
same rule as one Lua script (``redis_scripts.CHECK_AND_CHARGE``), and the contract suite checks
that all of them agree with a reference model.

Example:
    >>> check = RateCheck(key="rate:acct:a:burst", name="burst", cost=3, interval=1_000_000,
    ...                   burst=5)
    >>> decision, writes = decide([check], {}, now=0)
    >>> decision.allowed, decision.results[0].remaining, writes
    (True, 2, {'rate:acct:a:burst': (3000000, 3000000)})
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

US = 1_000_000


@dataclass(frozen=True, slots=True)
class RateCheck:
    key: str
    name: str
    cost: int
    interval: int
    """Microseconds per row (the sustained rate's inverse)."""
    burst: int
    """Bucket size in rows."""
    bonus_key: ClassVar[None] = None
    """Rate checks have no grants (uniform with :class:`QuotaCheck` for the readers)."""


@dataclass(frozen=True, slots=True)
class QuotaCheck:
    key: str
    name: str
    cost: int
    limit: int
    expires_at: int | None
    """End of the window in microseconds since the epoch (None: never)."""
    bonus_key: str | None = None


Check = RateCheck | QuotaCheck


# results are built on every decision: plain slotted dataclasses (a frozen one costs
# several times more to construct)
@dataclass(slots=True)
class CheckResult:
    name: str
    allowed: bool
    limit: int
    """Burst (rate) or effective limit including grants (quota), in rows."""
    remaining: int
    reset_after: float | None
    """Seconds until the limit is fully available again (None: never resets)."""
    retry_after: float | None
    """When denied: seconds until this request could be admitted (None: never)."""
    used: int = 0
    """Quota checks: rows counted in the window after this decision."""


@dataclass(slots=True)
class Decision:
    allowed: bool
    results: tuple[CheckResult, ...]

    @property
    def violated(self) -> list[str]:
        return [r.name for r in self.results if not r.allowed]

    @property
    def retry_after(self) -> float | None:
        """Seconds until every violated check would admit the request (None: never)."""
        waits = [r.retry_after for r in self.results if not r.allowed]
        if not waits or any(w is None for w in waits):
            return None
        return max(w for w in waits if w is not None)


# a write: key -> (new value, expire at in microseconds or None)
Writes = dict[str, tuple[int, int | None]]


def decide(
    checks: Sequence[Check], values: Mapping[str, int], now: int, *, charge: bool = True
) -> tuple[Decision, Writes]:
    """Evaluate ``checks`` against current ``values`` at ``now`` (µs).

    Returns the decision and the writes to apply when it is allowed and ``charge`` is
    true (empty otherwise). Missing keys read as 0 (quota) or "idle" (rate).
    """
    # every request of every backend runs this: written for speed (locals, no helper
    # calls, no generator, one pass)
    results: list[CheckResult] = []
    append = results.append
    writes: Writes = {}
    get = values.get
    ok = True
    for check in checks:
        key = check.key
        cost = check.cost
        if check.__class__ is RateCheck:
            interval = check.interval
            burst = check.burst
            tat = get(key, now)
            if tat < now:
                tat = now
            new_tat = tat + cost * interval
            capacity = now + burst * interval
            allow_at = new_tat - burst * interval
            if allow_at <= now:
                writes[key] = (new_tat, new_tat)
                append(
                    CheckResult(
                        check.name,
                        True,
                        burst,
                        (capacity - new_tat) // interval,
                        (new_tat - now) / US,
                        None,
                    )
                )
            else:
                ok = False
                remaining = (capacity - tat) // interval
                append(
                    CheckResult(
                        check.name,
                        False,
                        burst,
                        remaining if remaining > 0 else 0,
                        (tat - now) / US,
                        (allow_at - now) / US if cost <= burst else None,
                    )
                )
        else:
            quota: QuotaCheck = check  # type: ignore[assignment]
            used = get(key, 0)
            bonus_key = quota.bonus_key
            limit = quota.limit + get(bonus_key, 0) if bonus_key else quota.limit
            expires_at = quota.expires_at
            reset_after = (expires_at - now) / US if expires_at is not None else None
            if used + cost <= limit:
                after = used + cost
                if cost:
                    writes[key] = (after, expires_at)
                append(
                    CheckResult(
                        check.name,
                        True,
                        limit,
                        limit - after if limit > after else 0,
                        reset_after,
                        None,
                        after,
                    )
                )
            else:
                ok = False
                append(
                    CheckResult(
                        check.name,
                        False,
                        limit,
                        limit - used if limit > used else 0,
                        reset_after,
                        reset_after,
                        used,
                    )
                )
    if not ok or not charge:
        writes = {}
    return Decision(ok, tuple(results)), writes


def live_values(
    checks: Sequence[Check], counters: Mapping[str, tuple[int, int | None]], now: int
) -> dict[str, int]:
    """The counters ``checks`` read (their keys and grant keys) that are live at ``now``,
    from stored ``(value, expires_at)`` pairs: what :func:`decide` takes as ``values``.

    Example:
        >>> check = QuotaCheck("q:a", "day", cost=1, limit=5, expires_at=None, bonus_key="g:a")
        >>> live_values([check], {"q:a": (3, None), "g:a": (2, 10)}, now=20)
        {'q:a': 3}
    """
    get = counters.get
    values: dict[str, int] = {}
    for check in checks:
        found = get(check.key)
        if found is not None and (found[1] is None or found[1] > now):
            values[check.key] = found[0]
        bonus = check.bonus_key
        if bonus is not None:
            found = get(bonus)
            if found is not None and (found[1] is None or found[1] > now):
                values[bonus] = found[0]
    return values


def refund_writes(checks: Sequence[Check], values: Mapping[str, int], now: int) -> Writes:
    """Give back what an admitted request charged (its model call failed upstream)."""
    writes: Writes = {}
    for check in checks:
        if check.cost <= 0 or check.key not in values:
            continue
        if isinstance(check, RateCheck):
            new_tat = max(now, values[check.key] - check.cost * check.interval)
            writes[check.key] = (new_tat, new_tat)
        else:
            writes[check.key] = (max(0, values[check.key] - check.cost), check.expires_at)
    return writes


def seconds_header(value: float) -> int:
    """Whole seconds for Retry-After / reset fields: rounded up, never below 1."""
    return max(1, math.ceil(value - 1e-9))
