"""Usage reports, resets and budget grants for operators (admin API and CLI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from modelshield.clock import Clock
from modelshield.controls.limits import LimitsGate, Subject, budget_window
from modelshield.errors import InvalidInput
from modelshield.identity.records import Account
from modelshield.policy.schema import Policy
from modelshield.storage.base import LimiterStore, Store
from modelshield.storage.limiter import US, Check, QuotaCheck

Window = Literal["day", "month", "lifetime"]


@dataclass(frozen=True, slots=True)
class UsageLine:
    name: str
    kind: Literal["rate", "budget"]
    scope: str
    limit: int
    remaining: int
    used: int | None
    reset_after: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class UsageService:
    """What an account has used of each limit and budget; reset; grant more.

    Client-address limits are not listed per account (they belong to an address, not
    an account).

    Example:
        >>> from modelshield.clock import FakeClock
        >>> from modelshield.policy import demo_policy
        >>> from modelshield.storage.memory import MemoryStore
        >>> store = MemoryStore()
        >>> service = UsageService(demo_policy(), store, store, FakeClock())
    """

    def __init__(
        self, policy: Policy, accounts: Store, counters: LimiterStore, clock: Clock
    ) -> None:
        self.policy = policy
        self.accounts = accounts
        self.counters = counters
        self.clock = clock
        self.gate = LimitsGate(policy, counters)

    def _checks(self, account: Account, key_ids: list[str]) -> list[tuple[str, Check]]:
        plan = self.policy.plans.get(account.plan)
        if plan is None:
            return []
        now = self.clock.now()
        found: list[tuple[str, Check]] = []
        for limit in plan.rate_limits:
            if limit.scope == "client":
                continue
            if limit.scope == "model":
                subjects = [
                    (f"model {m}", Subject(account.id, "-", None, m))
                    for m in plan.models or list(self.policy.models)
                ]
            elif limit.scope == "key":
                subjects = [(f"key {k}", Subject(account.id, k, None, "-")) for k in key_ids]
            else:
                subjects = [("account", Subject(account.id, "-", None, "-"))]
            for scope, subject in subjects:
                checks = self.gate.rate_checks(plan, subject, 0, account.throttle)
                found.append((scope, next(c for c in checks if c.name == limit.name)))
        found += [("account", c) for c in self.gate.budget_checks(plan, account.id, now, 0)]
        return found

    async def _key_ids(self, account: Account) -> list[str]:
        return [k.key_id for k in await self.accounts.list_keys(account.id) if k.active]

    async def usage(self, account: Account) -> list[UsageLine]:
        checks = self._checks(account, await self._key_ids(account))
        if not checks:
            return []
        decision = await self.counters.peek([c for _, c in checks], int(self.clock.now() * US))
        return [
            UsageLine(
                name=result.name,
                kind="budget" if isinstance(check, QuotaCheck) else "rate",
                scope=scope,
                limit=result.limit,
                remaining=result.remaining,
                used=result.used if isinstance(check, QuotaCheck) else None,
                reset_after=result.reset_after,
            )
            for (scope, check), result in zip(checks, decision.results, strict=True)
        ]

    async def reset(self, account: Account, names: list[str] | None = None) -> list[str]:
        """Clear the account's counters (all, or those of the named limits/budgets)."""
        all_checks = self._checks(account, await self._key_ids(account))
        checks = [c for _, c in all_checks if names is None or c.name in names]
        if names:
            unknown = sorted(set(names) - {c.name for c in checks})
            if unknown:
                raise InvalidInput(f"no limit or budget named {unknown[0]!r} on this plan")
        await self.counters.reset_counters([c.key for c in checks])
        return sorted({c.name for c in checks})

    async def grant(self, account: Account, window: Window, rows: int) -> dict[str, Any]:
        """Raise the account's budget for the current ``window`` by ``rows``."""
        if rows <= 0:
            raise InvalidInput("rows: must be > 0")
        plan = self.policy.plans.get(account.plan)
        budgets = plan.budgets if plan else None
        if budgets is None or window not in dict(budgets.windows()):
            raise InvalidInput(f"the account's plan has no {window} budget")
        now = self.clock.now()
        label, _, end = budget_window(window, now, self.gate.zone)
        total = await self.counters.add_to_counter(
            f"grant:{account.id}:{window}:{label}", rows, end, int(now * US)
        )
        return {
            "window": window,
            "period": label,
            "granted_rows": total,
            "expires_at": end / US if end is not None else None,
        }
