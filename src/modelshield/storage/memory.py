"""In-process store for tests and single-process experiments (``memory://``).

Example:
    >>> MemoryStore("memory://").uri
    'memory://'
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from collections.abc import Sequence

from modelshield.errors import AccountNotFound, Conflict, KeyNotFound, NotFound
from modelshield.events.record import QueryEvent
from modelshield.identity.records import Account, AccountStatus, ApiKey
from modelshield.monitor.records import Alert, ResponseAction
from modelshield.storage.limiter import Check, Decision, decide, live_values, refund_writes


class MemoryStore:
    """Dictionaries behind one lock; nothing survives the process."""

    def __init__(self, uri: str = "memory://", *, max_events_per_account: int = 10_000) -> None:
        self.uri = uri
        self._lock = threading.Lock()
        self._accounts: dict[str, Account] = {}
        self._names: dict[str, str] = {}
        self._keys: dict[str, ApiKey] = {}
        self._events: dict[str | None, deque[QueryEvent]] = {}
        self._max_events = max_events_per_account
        self._event_count = 0
        self._event_ids: set[str] = set()
        self._counters: dict[str, tuple[int, int | None]] = {}
        self._monitor_state: dict[str, bytes] = {}
        self._alerts: dict[str, Alert] = {}
        self._actions: dict[str, ResponseAction] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def create_account(self, account: Account, key: ApiKey) -> None:
        with self._lock:
            if account.id in self._accounts:
                raise Conflict(f"account {account.id} already exists")
            if account.name in self._names:
                raise Conflict(f"an account named {account.name!r} already exists")
            if key.key_id in self._keys:
                raise Conflict(f"key {key.key_id} already exists")
            self._accounts[account.id] = account
            self._names[account.name] = account.id
            self._keys[key.key_id] = key

    async def get_account(self, account_id: str) -> Account | None:
        return self._accounts.get(account_id)

    async def find_account_by_name(self, name: str) -> Account | None:
        account_id = self._names.get(name)
        return self._accounts.get(account_id) if account_id else None

    async def list_accounts(self, *, limit: int = 100, offset: int = 0) -> list[Account]:
        with self._lock:
            ordered = sorted(self._accounts.values(), key=lambda a: (a.created_at, a.id))
        return ordered[offset : offset + limit]

    async def set_account_status(
        self, account_id: str, status: AccountStatus, reason: str | None, at: float
    ) -> Account:
        with self._lock:
            account = self._accounts.get(account_id)
            if account is None:
                raise AccountNotFound(f"no account {account_id}")
            updated = dataclasses.replace(
                account, status=status, status_reason=reason, status_changed_at=at
            )
            self._accounts[account_id] = updated
            return updated

    async def set_account_shaping(self, account_id: str, level: str | None) -> Account:
        with self._lock:
            account = self._accounts.get(account_id)
            if account is None:
                raise AccountNotFound(f"no account {account_id}")
            updated = dataclasses.replace(account, shaping_level=level)
            self._accounts[account_id] = updated
            return updated

    async def set_account_throttle(self, account_id: str, throttle: float | None) -> Account:
        with self._lock:
            account = self._accounts.get(account_id)
            if account is None:
                raise AccountNotFound(f"no account {account_id}")
            updated = dataclasses.replace(account, throttle=throttle)
            self._accounts[account_id] = updated
            return updated

    async def get_key(self, key_id: str) -> ApiKey | None:
        return self._keys.get(key_id)

    async def find_credential(self, key_id: str) -> tuple[ApiKey, Account] | None:
        key = self._keys.get(key_id)
        if key is None:
            return None
        account = self._accounts.get(key.account_id)
        return (key, account) if account is not None else None

    async def list_keys(self, account_id: str) -> list[ApiKey]:
        with self._lock:
            keys = [k for k in self._keys.values() if k.account_id == account_id]
        return sorted(keys, key=lambda k: (k.created_at, k.key_id))

    async def rotate_key(self, account_id: str, new_key: ApiKey, at: float) -> list[str]:
        with self._lock:
            if account_id not in self._accounts:
                raise AccountNotFound(f"no account {account_id}")
            if new_key.key_id in self._keys:
                raise Conflict(f"key {new_key.key_id} already exists")
            revoked = []
            for key_id, key in list(self._keys.items()):
                if key.account_id == account_id and key.active:
                    self._keys[key_id] = dataclasses.replace(key, revoked_at=at)
                    revoked.append(key_id)
            self._keys[new_key.key_id] = new_key
            return sorted(revoked)

    async def revoke_key(self, key_id: str, at: float) -> ApiKey:
        with self._lock:
            key = self._keys.get(key_id)
            if key is None:
                raise KeyNotFound(f"no key {key_id}")
            if key.active:
                key = dataclasses.replace(key, revoked_at=at)
                self._keys[key_id] = key
            return key

    # limiter ------------------------------------------------------------------
    def _values(self, keys: Sequence[str | None], now: int) -> dict[str, int]:
        values: dict[str, int] = {}
        for key in keys:
            if key is None:
                continue
            found = self._counters.get(key)
            if found is not None and (found[1] is None or found[1] > now):
                values[key] = found[0]
        return values

    async def check_and_charge(self, checks: Sequence[Check], now: int) -> Decision:
        # The threading lock guards against other threads; among coroutines this block is
        # atomic anyway (no await inside).
        with self._lock:
            decision, writes = decide(checks, live_values(checks, self._counters, now), now)
            if writes:
                self._counters.update(writes)
        return decision

    async def peek(self, checks: Sequence[Check], now: int) -> Decision:
        with self._lock:
            values = live_values(checks, self._counters, now)
        return decide(checks, values, now, charge=False)[0]

    async def refund(self, checks: Sequence[Check], now: int) -> None:
        with self._lock:
            values = self._values([c.key for c in checks], now)
            self._counters.update(refund_writes(checks, values, now))

    async def add_to_counter(self, key: str, amount: int, expires_at: int | None, now: int) -> int:
        with self._lock:
            value = self._values([key], now).get(key, 0) + amount
            self._counters[key] = (value, expires_at)
            return value

    async def reset_counters(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._counters.pop(key, None)

    async def append_events(self, events: Sequence[QueryEvent]) -> None:
        with self._lock:
            for event in events:
                if event.event_id in self._event_ids:
                    continue  # appends are idempotent by event id
                self._event_ids.add(event.event_id)
                queue = self._events.get(event.account_id)
                if queue is None:
                    queue = self._events[event.account_id] = deque(maxlen=self._max_events)
                queue.append(event)
                self._event_count += 1

    async def recent_events(self, account_id: str, limit: int = 50) -> list[QueryEvent]:
        with self._lock:
            queue = list(self._events.get(account_id, ()))
        return list(reversed(queue[-limit:])) if limit > 0 else []

    async def count_events(self, account_id: str | None = None) -> int:
        with self._lock:
            if account_id is None:
                return self._event_count
            return len(self._events.get(account_id, ()))

    # monitor ------------------------------------------------------------------
    async def save_monitor_state(self, key: str, blob: bytes) -> None:
        with self._lock:
            self._monitor_state[key] = bytes(blob)

    async def load_monitor_state(self, key: str) -> bytes | None:
        return self._monitor_state.get(key)

    async def append_alert(self, alert: Alert) -> None:
        with self._lock:
            self._alerts.setdefault(alert.alert_id, alert)  # dicts keep insertion order

    async def list_alerts(self, account_id: str | None = None, limit: int = 100) -> list[Alert]:
        with self._lock:
            found = [a for a in self._alerts.values() if account_id in (None, a.account_id)]
        return list(reversed(found))[:limit]

    async def append_action(self, action: ResponseAction) -> None:
        with self._lock:
            self._actions.setdefault(action.action_id, action)

    async def list_actions(
        self, account_id: str | None = None, limit: int = 100
    ) -> list[ResponseAction]:
        with self._lock:
            found = [a for a in self._actions.values() if account_id in (None, a.account_id)]
        return list(reversed(found))[:limit]

    async def mark_action_undone(self, action_id: str, at: float, by: str) -> ResponseAction:
        with self._lock:
            action = self._actions.get(action_id)
            if action is None:
                raise NotFound(f"no action {action_id}")
            if action.undone_at is None:
                action = dataclasses.replace(action, undone_at=at, undone_by=by)
                self._actions[action_id] = action
            return action
