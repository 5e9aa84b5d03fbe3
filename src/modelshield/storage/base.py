"""Store protocols: what controls and services may ask of persistent state.

Algorithms talk to these protocols only (STYLE.md #3); backends are chosen by URI in
:mod:`modelshield.storage.registry`. Every backend runs the same contract suite
(``tests/storage/test_contract.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from modelshield.events.record import QueryEvent
from modelshield.identity.records import Account, AccountStatus, ApiKey
from modelshield.monitor.records import Alert, ResponseAction
from modelshield.storage.limiter import Check, Decision


@runtime_checkable
class LimiterStore(Protocol):
    """Counters for rate limits and budgets; times are integer microseconds.

    ``check_and_charge`` is ONE atomic backend operation (DESIGN invariant 1): it decides
    every check of a request and charges all of them or none, following
    :func:`modelshield.storage.limiter.decide`. N replicas on one backend admit exactly
    what one would.
    """

    async def check_and_charge(self, checks: Sequence[Check], now: int) -> Decision: ...

    async def peek(self, checks: Sequence[Check], now: int) -> Decision:
        """The decision ``checks`` would get, charging nothing (usage reports)."""
        ...

    async def refund(self, checks: Sequence[Check], now: int) -> None:
        """Atomically give back what an admitted request charged."""
        ...

    async def add_to_counter(self, key: str, amount: int, expires_at: int | None, now: int) -> int:
        """Add ``amount`` to a counter (0 when missing or expired at ``now``); its new value."""
        ...

    async def reset_counters(self, keys: Sequence[str]) -> None: ...


@runtime_checkable
class Store(LimiterStore, Protocol):
    """Accounts, API keys, query events and limiter counters.

    Methods raise :class:`~modelshield.errors.StoreUnavailable` when the backend cannot
    be reached, :class:`~modelshield.errors.AccountNotFound` /
    :class:`~modelshield.errors.KeyNotFound` for missing records and
    :class:`~modelshield.errors.Conflict` for duplicates.
    """

    uri: str

    async def open(self) -> None:
        """Connect and create the schema if needed. Idempotent."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the backend answers."""
        ...

    # accounts -------------------------------------------------------------
    async def create_account(self, account: Account, key: ApiKey) -> None:
        """Insert an account together with its first key (both or neither)."""
        ...

    async def get_account(self, account_id: str) -> Account | None: ...

    async def find_account_by_name(self, name: str) -> Account | None: ...

    async def list_accounts(self, *, limit: int = 100, offset: int = 0) -> list[Account]: ...

    async def set_account_status(
        self, account_id: str, status: AccountStatus, reason: str | None, at: float
    ) -> Account: ...

    async def set_account_shaping(self, account_id: str, level: str | None) -> Account:
        """Set (or clear with None) the account's shaping level; effective on its next request."""
        ...

    async def set_account_throttle(self, account_id: str, throttle: float | None) -> Account:
        """Scale the account's rate limits by ``throttle`` (None: back to the plan's)."""
        ...

    # keys -----------------------------------------------------------------
    async def get_key(self, key_id: str) -> ApiKey | None: ...

    async def find_credential(self, key_id: str) -> tuple[ApiKey, Account] | None:
        """The key and its account in one round trip (the per-request lookup)."""
        ...

    async def list_keys(self, account_id: str) -> list[ApiKey]: ...

    async def rotate_key(self, account_id: str, new_key: ApiKey, at: float) -> list[str]:
        """Add ``new_key`` and revoke every other active key of the account, atomically.

        Returns the ids of the keys it revoked.
        """
        ...

    async def revoke_key(self, key_id: str, at: float) -> ApiKey:
        """Revoke one key (idempotent: a revoked key keeps its first revocation time)."""
        ...

    # events ---------------------------------------------------------------
    async def append_events(self, events: Sequence[QueryEvent]) -> None:
        """Durably append a batch (one transaction); idempotent by ``event_id``."""
        ...

    async def recent_events(self, account_id: str, limit: int = 50) -> list[QueryEvent]:
        """The account's newest events, newest first."""
        ...

    async def count_events(self, account_id: str | None = None) -> int: ...

    # monitor ----------------------------------------------------------------
    async def save_monitor_state(self, key: str, blob: bytes) -> None:
        """Replace the monitor's persisted state under ``key`` (an account id or a name)."""
        ...

    async def load_monitor_state(self, key: str) -> bytes | None: ...

    async def append_alert(self, alert: Alert) -> None:
        """Store an alert; idempotent by ``alert_id``."""
        ...

    async def list_alerts(self, account_id: str | None = None, limit: int = 100) -> list[Alert]:
        """Alerts (of one account, or all), newest first."""
        ...

    async def append_action(self, action: ResponseAction) -> None:
        """Record a responder or operator action; idempotent by ``action_id``."""
        ...

    async def list_actions(
        self, account_id: str | None = None, limit: int = 100
    ) -> list[ResponseAction]:
        """Recorded actions (of one account, or all), newest first."""
        ...

    async def mark_action_undone(self, action_id: str, at: float, by: str) -> ResponseAction:
        """Mark an action undone (idempotent: keeps the first undo); NotFound if unknown."""
        ...
