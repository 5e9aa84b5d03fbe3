"""The responder: per severity, the policy's action — notify, throttle, degrade, suspend.

Actions change account state in the store (status, shaping level, throttle), which the
gateway reads on every request, so they take effect on the account's next request on
every replica. Every action is recorded with its reason and what it replaced, and an
operator can undo it. The responder only escalates: it does nothing when an active
action at least as strong is in place, or when an operator undid one at least as
strong (the operator's call stands until the risk calls for more).

Example:
    >>> ACTION_RANK["suspend"] > ACTION_RANK["degrade"] > ACTION_RANK["throttle"]
    True
"""

from __future__ import annotations

import os

from modelshield.clock import Clock
from modelshield.monitor.records import ActionKind, Alert, ResponseAction
from modelshield.policy.monitoring import MonitoringSettings
from modelshield.storage.base import Store

ACTION_RANK: dict[str, int] = {"notify": 0, "throttle": 1, "degrade": 2, "suspend": 3}


class Responder:
    def __init__(
        self,
        settings: MonitoringSettings,
        store: Store,
        clock: Clock,
        *,
        shaping_levels: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        levels = shaping_levels or []
        self.degrade_level = settings.degrade_level or (levels[0] if levels else None)

    def action_for(self, alert: Alert) -> ActionKind:
        kind: ActionKind = self.settings.actions[alert.severity]
        if kind == "degrade" and self.degrade_level is None:
            kind = "throttle"  # no shaping level to degrade to
        return kind

    async def respond(self, alert: Alert) -> ResponseAction | None:
        """Apply (and record) the action ``alert`` calls for; None when nothing changes."""
        kind = self.action_for(alert)
        if not self.settings.responder:
            kind = "notify"
        rank = ACTION_RANK[kind]
        if kind != "notify":
            past = await self.store.list_actions(alert.account_id, limit=100)
            if any(ACTION_RANK[p.kind] >= rank for p in past):  # active, or undone by an operator
                return None
        account = await self.store.get_account(alert.account_id)
        if account is None:
            return None
        reason = f"risk {alert.risk:.0f} ({alert.severity}) by {alert.detector}: " + "; ".join(
            alert.reasons[:3]
        )
        now = self.clock.now()
        previous: dict[str, object] = {}
        applied: dict[str, object] = {}
        if kind == "throttle":
            fraction = self.settings.throttle_fraction
            if account.throttle is not None and account.throttle <= fraction:
                return None
            previous, applied = {"throttle": account.throttle}, {"throttle": fraction}
            await self.store.set_account_throttle(account.id, fraction)
        elif kind == "degrade":
            previous = {"shaping_level": account.shaping_level}
            applied = {"shaping_level": self.degrade_level}
            await self.store.set_account_shaping(account.id, self.degrade_level)
        elif kind == "suspend":
            if account.status == "suspended":
                return None
            previous = {"status": account.status, "status_reason": account.status_reason}
            applied = {"status": "suspended"}
            await self.store.set_account_status(account.id, "suspended", reason[:1000], now)
        action = ResponseAction(
            action_id="act_" + os.urandom(8).hex(),
            account_id=account.id,
            time=now,
            kind=kind,
            reason=reason,
            alert_id=alert.alert_id,
            previous=previous,
            applied=applied,
        )
        await self.store.append_action(action)
        return action

    async def undo(self, action_id: str, by: str = "operator") -> ResponseAction:
        """Restore what an action replaced and mark it undone (idempotent)."""
        found = [
            a
            for a in await self.store.list_actions(None, limit=100_000)
            if a.action_id == action_id
        ]
        if found and found[0].undone_at is None:
            action = found[0]
            if action.kind == "throttle":
                await self.store.set_account_throttle(
                    action.account_id,
                    action.previous.get("throttle"),
                )
            elif action.kind == "degrade":
                await self.store.set_account_shaping(
                    action.account_id,
                    action.previous.get("shaping_level"),
                )
            elif action.kind == "suspend":
                await self.store.set_account_status(
                    action.account_id, "active", f"undone by {by}", self.clock.now()
                )
        return await self.store.mark_action_undone(action_id, self.clock.now(), by)
