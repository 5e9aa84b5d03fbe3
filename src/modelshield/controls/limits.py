"""Rate-limit and budget gate: one atomic check-and-charge per request (DESIGN inv. 1).

The gate turns the plan's rate limits and budgets into store checks, asks the store to
decide and charge them all at once, and answers a denial with 429
``…#quota-exceeded`` carrying ``violated-policies``, ``Retry-After`` and the IETF
``RateLimit-Policy`` / ``RateLimit`` fields (draft-ietf-httpapi-ratelimit-headers,
-09..-11 syntax: ``"burst";q=100;w=60`` and ``"burst";r=42;t=17``).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import NamedTuple
from zoneinfo import ZoneInfo

from modelshield.controls.query import Query
from modelshield.errors import QuotaExceeded, StoreUnavailable
from modelshield.policy.limits import RateLimit
from modelshield.policy.schema import Plan, Policy
from modelshield.storage.base import LimiterStore
from modelshield.storage.limiter import (
    US,
    Check,
    Decision,
    QuotaCheck,
    RateCheck,
    seconds_header,
)

log = logging.getLogger("modelshield.limits")


def budget_window(kind: str, now: float, zone: ZoneInfo) -> tuple[str, int | None, int | None]:
    """``(window id, start µs, end µs)`` of the calendar window holding ``now``.

    Example:
        >>> budget_window("day", 0.0, ZoneInfo("UTC"))
        ('1970-01-01', 0, 86400000000)
    """
    if kind == "lifetime":
        return "all", None, None
    local = dt.datetime.fromtimestamp(now, zone)
    if kind == "day":
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        following = (start + dt.timedelta(days=1, hours=3)).replace(hour=0)
        label = start.strftime("%Y-%m-%d")
    elif kind == "month":
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        following = (start + dt.timedelta(days=32)).replace(day=1)
        label = start.strftime("%Y-%m")
    else:
        raise ValueError(f"unknown budget window {kind!r}")
    # localize again: the wall-clock midnight may have a different UTC offset (DST)
    start = start.replace(tzinfo=zone)
    following = following.replace(tzinfo=zone)
    return label, int(start.timestamp() * US), int(following.timestamp() * US)


_CHECKS_CACHED = 10_000
"""Subjects whose check lists :meth:`LimitsGate.checks` keeps at most."""
_CHECKS_TTL_US = 3600 * US


class _Limit(NamedTuple):
    name: str
    scope: str
    interval: int
    burst: int


class _PlanLimits(NamedTuple):
    plan: Plan
    limits: list[_Limit]
    windows: list[tuple[str, int]]
    header_windows: dict[str, str]


@dataclass(frozen=True, slots=True)
class Subject:
    """Who and what a request's rows are counted against."""

    account_id: str
    key_id: str
    client: str | None
    model: str

    @classmethod
    def of(cls, query: Query) -> Subject:
        return cls(query.account.id, query.key_id, query.client, query.model)

    def scope_key(self, limit: RateLimit) -> str:
        return self.key_for(limit.scope)

    def key_for(self, scope: str) -> str:
        """What a limit of ``scope`` counts against, as part of a counter key."""
        if scope == "account":
            return f"acct:{self.account_id}"
        if scope == "key":
            return f"key:{self.key_id}"
        if scope == "client":
            return f"ip:{self.client or 'unknown'}"
        return f"model:{self.model}"


class LimitsGate:
    """Admit a query only if every rate limit and budget of its plan has room for its rows.

    Example:
        >>> from modelshield.policy import demo_policy
        >>> from modelshield.storage.memory import MemoryStore
        >>> LimitsGate(demo_policy(), MemoryStore()).name
        'limits'
    """

    name = "limits"

    def __init__(self, policy: Policy, store: LimiterStore) -> None:
        self.store = store
        self.fail_open = policy.fail_open
        self.zone = ZoneInfo(policy.limits_timezone)
        self._windows: dict[str, tuple[str, int, int | None]] = {}
        self._plans: dict[int, _PlanLimits] = {}
        # (valid from, valid until, checks) by subject, plan and cost: see checks()
        self._checks: dict[tuple[object, ...], tuple[float, int, list[Check]]] = {}
        self._policies: dict[tuple[object, ...], str] = {}  # RateLimit-Policy values

    # building checks -----------------------------------------------------------
    def _plan(self, plan: Plan) -> _PlanLimits:
        """The plan's limits as plain values, derived once per plan (every request builds
        its checks and headers from them)."""
        cached = self._plans.get(id(plan))
        if cached is None or cached.plan is not plan:
            cached = self._plans[id(plan)] = _PlanLimits(
                plan,
                [
                    _Limit(limit.name, limit.scope, limit.interval_us, limit.burst_rows)
                    for limit in plan.rate_limits
                ],
                list(plan.budgets.windows()) if plan.budgets else [],
                _header_windows(plan),
            )
        return cached

    def rate_checks(
        self, plan: Plan, subject: Subject, cost: int, throttle: float | None = None
    ) -> list[Check]:
        """One GCRA check per rate limit.

        A throttled account gets ``throttle`` of the rate and burst of its own account and
        key limits, in separate buckets: lifting the throttle returns it to its normal
        buckets rather than leaving it the debt of a slower rate.
        """
        checks: list[Check] = []
        for name, scope, interval, burst in self._plan(plan).limits:
            who = subject.key_for(scope)
            if throttle is not None and scope in {"account", "key"}:
                interval = max(1, round(interval / throttle))
                burst = max(1, int(burst * throttle))
                name_key = f"{name}:throttled-{throttle:g}"
            else:
                name_key = name
            # positional: keyword arguments cost a frozen dataclass noticeably more
            checks.append(RateCheck(f"rate:{who}:{name_key}", name, cost, interval, burst))
        return checks

    def budget_checks(self, plan: Plan, account_id: str, now: float, cost: int) -> list[Check]:
        checks: list[Check] = []
        for kind, limit in self._plan(plan).windows:
            label, end = self._window(kind, now)
            window = f"{account_id}:{kind}:{label}"
            checks.append(QuotaCheck(f"budget:{window}", kind, cost, limit, end, f"grant:{window}"))
        return checks

    def _window(self, kind: str, now: float) -> tuple[str, int | None]:
        """The calendar window holding ``now``, cached until it ends (time-zone maths is
        slow next to everything else a request does)."""
        cached = self._windows.get(kind)
        now_us = now * US
        if cached is not None and cached[1] <= now_us and (cached[2] is None or now_us < cached[2]):
            return cached[0], cached[2]
        label, start, end = budget_window(kind, now, self.zone)
        self._windows[kind] = (label, start if start is not None else 0, end)
        return label, end

    def checks(self, query: Query, cost: int) -> list[Check]:
        """The query's checks: what a subject's requests of one size are checked against
        changes only when a budget window ends, so the list is kept until then (the
        checks are immutable; callers must not modify the list)."""
        plan = query.plan
        account = query.account
        now_us = query.time * US
        # id(plan) is stable: the plan is referenced by self._plans once checks were built
        key = (
            id(plan),
            account.id,
            query.key_id,
            query.client,
            query.model,
            account.throttle,
            cost,
        )
        cached = self._checks.get(key)
        if cached is not None and cached[0] <= now_us < cached[1]:
            return cached[2]
        checks = [
            *self.rate_checks(plan, Subject.of(query), cost, account.throttle),
            *self.budget_checks(plan, account.id, query.time, cost),
        ]
        # valid until the first budget window ends (and, for windows that never end,
        # for an hour: a bound on what an idle subject's entry keeps alive)
        ends = [c.expires_at for c in checks if isinstance(c, QuotaCheck) and c.expires_at]
        until = min([*ends, int(now_us) + _CHECKS_TTL_US])
        if len(self._checks) >= _CHECKS_CACHED:
            self._checks.pop(next(iter(self._checks)))  # the oldest entry
        self._checks[key] = (now_us, until, checks)
        return checks

    # the gate --------------------------------------------------------------------
    async def check(self, query: Query) -> None:
        plan = query.plan
        if not plan.rate_limits and plan.budgets is None:
            return
        if query.account.throttle is not None:
            query.controls.append("throttle")
        checks = self.checks(query, query.row_count)
        now = int(query.time * US)
        try:
            decision = await self.store.check_and_charge(checks, now)
        except StoreUnavailable:
            if not self.fail_open:
                raise
            log.warning("limits store unreachable: admitting (fail_open: true)")
            query.flags.append("limits-fail-open")
            return
        headers = (
            limit_headers(plan, decision, self._plan(plan).header_windows, self._policies)
            if plan.limit_headers
            else {}
        )
        if not decision.allowed:
            query.controls.append(self.name)
            error = QuotaExceeded(
                _denial_detail(plan, decision, query.row_count),
                **{"violated-policies": decision.violated},
            )
            retry = decision.retry_after
            if retry is not None:
                headers["Retry-After"] = str(seconds_header(retry))
            error.headers = headers
            raise error
        query.charges = checks
        query.response_headers.update(headers)
        if plan.budgets is not None:
            threshold = plan.budgets.soft_threshold
            for result in decision.results:
                if result.name in {"day", "month", "lifetime"} and result.limit:
                    before = result.used - query.row_count
                    if before < threshold * result.limit <= result.used:
                        query.flags.append(f"budget-soft:{result.name}")

    async def refund(self, query: Query) -> None:
        """Give back the rows of an admitted query whose model call failed."""
        if query.charges:
            await self.store.refund(query.charges, int(query.time * US))
            query.charges = []


def _header_windows(plan: Plan) -> dict[str, str]:
    """The ``;w=`` parameter of each limit's RateLimit-Policy item, by limit name."""
    windows = {"day": ";w=86400", "month": ";w=2592000"}
    windows.update(
        {limit.name: f";w={seconds_header(limit.window_s)}" for limit in plan.rate_limits}
    )
    return windows


def limit_headers(
    plan: Plan,
    decision: Decision,
    windows: dict[str, str] | None = None,
    policies: dict[tuple[object, ...], str] | None = None,
) -> dict[str, str]:
    """The RateLimit-Policy and RateLimit fields for ``decision`` (``windows``: the plan's
    :func:`_header_windows`, and ``policies``: RateLimit-Policy values already written,
    when the caller keeps them).

    Example:
        >>> from modelshield.storage.limiter import CheckResult
        >>> result = CheckResult("day", True, 100, 58, 3600.4, None, 42)
        >>> limit_headers(Plan(), Decision(True, (result,)))
        {'RateLimit-Policy': '"day";q=100;w=86400', 'RateLimit': '"day";r=58;t=3600'}
    """
    if windows is None:
        windows = _header_windows(plan)
    results = decision.results
    states = []
    for result in results:
        reset = "" if result.reset_after is None else f";t={max(0, round(result.reset_after))}"
        states.append(f'"{result.name}";r={result.remaining}{reset}')
    # per plan (windows differ) and limits (grants change a quota's)
    key = (id(plan), *[(r.name, r.limit) for r in results])
    policy = policies.get(key) if policies is not None else None
    if policy is None:
        # day and month budgets always have an end
        policy = ", ".join(f'"{r.name}";q={r.limit}{windows.get(r.name, "")}' for r in results)
        if policies is not None:
            if len(policies) >= 1000:
                policies.clear()
            policies[key] = policy
    return {"RateLimit-Policy": policy, "RateLimit": ", ".join(states)}


def _denial_detail(plan: Plan, decision: Decision, rows: int) -> str:
    parts = []
    for result in decision.results:
        if result.allowed:
            continue
        if result.name in {"day", "month", "lifetime"}:
            parts.append(
                f"{result.name} budget of {result.limit} rows: {result.used} used, {rows} requested"
            )
        else:
            parts.append(
                f"rate limit {result.name!r} ({result.remaining} of {result.limit} "
                f"rows available, {rows} requested)"
            )
    retry = decision.retry_after
    tail = f"; retry in {seconds_header(retry)} s" if retry is not None else ""
    return "Quota exceeded: " + "; ".join(parts) + tail
