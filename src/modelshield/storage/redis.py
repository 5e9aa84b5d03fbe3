"""Redis store (``redis://host:port/db?prefix=ms:``): shared state for gateway replicas.

Every multi-key change is one Lua script (:mod:`modelshield.storage.redis_scripts`),
so N gateway processes on one Redis behave as one: check-and-charge decides and
charges every limit of a request atomically. Accounts and keys are hashes, query
events go to a capped stream per account and one global stream (``<prefix>events``)
that scale-out monitor workers consume. Single-node Redis (scripts touch keys derived
from other keys, which Redis Cluster does not allow).

Needs the ``redis`` extra: ``pip install 'modelshield[redis]'``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

from modelshield.errors import (
    AccountNotFound,
    ConfigError,
    Conflict,
    KeyNotFound,
    NotFound,
    StoreUnavailable,
)
from modelshield.events.record import QueryEvent
from modelshield.identity.records import Account, AccountStatus, ApiKey
from modelshield.monitor.records import Alert, ResponseAction
from modelshield.storage import redis_scripts as lua
from modelshield.storage.limiter import Check, Decision, RateCheck
from modelshield.storage.redis_decisions import DecisionBatcher

T = TypeVar("T")

_ACCOUNT_FLOATS = {"created_at", "status_changed_at", "throttle"}
_KEY_FLOATS = {"created_at", "revoked_at"}


def _fields(data: dict[str, Any]) -> list[str]:
    flat: list[str] = []
    for name, value in data.items():
        if value is None:
            continue
        flat += [
            name,
            json.dumps(value)
            if isinstance(value, dict)
            else repr(value)
            if isinstance(value, float)
            else str(value),
        ]
    return flat


def _pairs(raw: Sequence[Any]) -> dict[str, str]:
    return {str(raw[i]): str(raw[i + 1]) for i in range(0, len(raw), 2)}


def _account(fields: dict[str, str]) -> Account:
    values: dict[str, Any] = dict(fields)
    for name in _ACCOUNT_FLOATS & values.keys():
        values[name] = float(values[name])
    values["metadata"] = json.loads(values.get("metadata", "{}"))
    return Account(**values)


def _key(fields: dict[str, str]) -> ApiKey:
    values: dict[str, Any] = dict(fields)
    for name in _KEY_FLOATS & values.keys():
        values[name] = float(values[name])
    return ApiKey(**values)


class RedisStore:
    """Accounts, keys, events and limiter counters in one Redis."""

    def __init__(self, uri: str, *, max_events_per_stream: int = 100_000) -> None:
        parts = urlsplit(uri)
        query = parse_qs(parts.query)
        self.uri = uri
        self.prefix = query.pop("prefix", ["ms:"])[0]
        self._url = urlunsplit(parts._replace(query=""))
        self._maxlen = max_events_per_stream
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._decisions: DecisionBatcher | None = None

    # plumbing ---------------------------------------------------------------
    async def open(self) -> None:
        if self._client is not None:
            return
        try:
            from redis import asyncio as aioredis
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise ConfigError(
                "storage.uri redis:// needs the redis extra: pip install 'modelshield[redis]'"
            ) from None
        self._client = aioredis.Redis.from_url(
            self._url,
            decode_responses=True,
            socket_timeout=5.0,
            socket_connect_timeout=2.0,
            health_check_interval=30,
        )
        self._decisions = DecisionBatcher(
            self._client.connection_pool.make_connection, lua.CHECK_AND_CHARGE, self.prefix
        )
        for name in (
            "REFUND",
            "ADD_TO_COUNTER",
            "CREATE_ACCOUNT",
            "UPDATE_HASH",
            "FIND_CREDENTIAL",
            "ROTATE_KEY",
            "REVOKE_KEY",
            "APPEND_EVENTS",
            "APPEND_RECORD",
            "MARK_ACTION_UNDONE",
        ):
            self._scripts[name] = self._client.register_script(getattr(lua, name))
        await self.ping()

    async def close(self) -> None:
        client, self._client = self._client, None
        decisions, self._decisions = self._decisions, None
        if decisions is not None:
            await decisions.close()
        if client is not None:
            await client.aclose()

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        if self._client is None:
            await self.open()
        try:
            return await fn()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(f"Redis store unreachable: {type(exc).__name__}") from None

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._call(lambda: self._scripts[name](keys=keys, args=args))

    async def ping(self) -> None:
        if self._client is None:
            await self.open()
            return
        await self._call(lambda: self._client.ping())

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # accounts ---------------------------------------------------------------
    async def create_account(self, account: Account, key: ApiKey) -> None:
        account_fields = _fields(account.to_dict())
        key_fields = self._key_fields(key)
        result = await self._script(
            "CREATE_ACCOUNT",
            [
                self._k("acct", account.id),
                self._k("acct-name", account.name),
                self._k("key", key.key_id),
                self._k("accts"),
                self._k("acct-keys", account.id),
            ],
            [
                account.id,
                account.name,
                repr(account.created_at),
                key.key_id,
                *account_fields,
                "--",
                *key_fields,
            ],
        )
        if result == "name":
            raise Conflict(f"an account named {account.name!r} already exists")
        if result != "ok":
            raise Conflict(f"account {account.id} or key {key.key_id} already exists")

    async def get_account(self, account_id: str) -> Account | None:
        fields = await self._call(lambda: self._client.hgetall(self._k("acct", account_id)))
        return _account(fields) if fields else None

    async def find_account_by_name(self, name: str) -> Account | None:
        account_id = await self._call(lambda: self._client.get(self._k("acct-name", name)))
        return await self.get_account(account_id) if account_id else None

    async def list_accounts(self, *, limit: int = 100, offset: int = 0) -> list[Account]:
        ids = await self._call(
            lambda: self._client.zrange(self._k("accts"), offset, offset + limit - 1)
        )
        found = [await self.get_account(i) for i in ids]
        return [a for a in found if a is not None]

    async def _update_account(self, account_id: str, changes: list[str]) -> Account:
        raw = await self._script("UPDATE_HASH", [self._k("acct", account_id)], changes)
        if raw is None:
            raise AccountNotFound(f"no account {account_id}")
        return _account(_pairs(raw))

    async def set_account_status(
        self, account_id: str, status: AccountStatus, reason: str | None, at: float
    ) -> Account:
        return await self._update_account(
            account_id,
            ["status", status, "status_reason", reason or "", "status_changed_at", repr(at)],
        )

    async def set_account_shaping(self, account_id: str, level: str | None) -> Account:
        return await self._update_account(account_id, ["shaping_level", level or ""])

    async def set_account_throttle(self, account_id: str, throttle: float | None) -> Account:
        value = "" if throttle is None else repr(float(throttle))
        return await self._update_account(account_id, ["throttle", value])

    # keys -------------------------------------------------------------------
    async def get_key(self, key_id: str) -> ApiKey | None:
        fields = await self._call(lambda: self._client.hgetall(self._k("key", key_id)))
        return _key(fields) if fields else None

    async def find_credential(self, key_id: str) -> tuple[ApiKey, Account] | None:
        raw = await self._script("FIND_CREDENTIAL", [self._k("key", key_id)], [self.prefix])
        if not raw:
            return None
        return _key(_pairs(raw[0])), _account(_pairs(raw[1]))

    async def list_keys(self, account_id: str) -> list[ApiKey]:
        ids = await self._call(lambda: self._client.smembers(self._k("acct-keys", account_id)))
        keys = [k for k in [await self.get_key(i) for i in ids] if k is not None]
        return sorted(keys, key=lambda k: (k.created_at, k.key_id))

    def _key_fields(self, key: ApiKey) -> list[str]:
        return _fields(
            {
                "key_id": key.key_id,
                "account_id": key.account_id,
                "digest": key.digest,
                "created_at": key.created_at,
                "revoked_at": key.revoked_at,
                "label": key.label,
            }
        )

    async def rotate_key(self, account_id: str, new_key: ApiKey, at: float) -> list[str]:
        raw = await self._script(
            "ROTATE_KEY",
            [
                self._k("acct", account_id),
                self._k("acct-keys", account_id),
                self._k("key", new_key.key_id),
            ],
            [self.prefix, repr(at), new_key.key_id, *self._key_fields(new_key)],
        )
        if raw is None:
            raise AccountNotFound(f"no account {account_id}")
        if raw == ["exists"]:
            raise Conflict(f"key {new_key.key_id} already exists")
        return sorted(str(r) for r in raw)

    async def revoke_key(self, key_id: str, at: float) -> ApiKey:
        raw = await self._script("REVOKE_KEY", [self._k("key", key_id)], [repr(at)])
        if raw is None:
            raise KeyNotFound(f"no key {key_id}")
        return _key(_pairs(raw))

    # events -----------------------------------------------------------------
    async def append_events(self, events: Sequence[QueryEvent]) -> None:
        if not events:
            return
        args: list[Any] = [self.prefix, self._maxlen, 7 * 86400]
        for event in events:
            args += [
                event.event_id,
                event.account_id or "",
                event.to_json(),
            ]
        await self._script("APPEND_EVENTS", [self._k("events"), self._k("events-count")], args)

    async def recent_events(self, account_id: str, limit: int = 50) -> list[QueryEvent]:
        entries = await self._call(
            lambda: self._client.xrevrange(self._k("events", account_id), count=limit)
        )
        return [QueryEvent.from_json(fields["event"]) for _, fields in entries]

    async def count_events(self, account_id: str | None = None) -> int:
        key = self._k("events-count") if account_id is None else self._k("events-count", account_id)
        value = await self._call(lambda: self._client.get(key))
        return int(value or 0)

    # monitor ----------------------------------------------------------------
    _RECORD_CAP = 100_000

    async def save_monitor_state(self, key: str, blob: bytes) -> None:
        encoded = base64.b64encode(blob).decode("ascii")  # the client decodes replies as text
        await self._call(lambda: self._client.set(self._k("monitor", key), encoded))

    async def load_monitor_state(self, key: str) -> bytes | None:
        raw = await self._call(lambda: self._client.get(self._k("monitor", key)))
        return base64.b64decode(raw) if raw else None

    async def _append_record(self, kind: str, record_id: str, account_id: str, data: str) -> None:
        await self._script(
            "APPEND_RECORD",
            [self._k(kind, record_id), self._k(kind + "s", account_id), self._k(kind + "s-all")],
            [data, self._RECORD_CAP],
        )

    async def _list_records(self, kind: str, account_id: str | None, limit: int) -> list[str]:
        index = self._k(kind + "s-all") if account_id is None else self._k(kind + "s", account_id)

        async def read() -> list[str]:
            keys = await self._client.lrange(index, 0, limit - 1)
            if not keys:
                return []
            values = await self._client.mget(keys)
            return [str(v) for v in values if v is not None]

        return await self._call(read)

    async def append_alert(self, alert: Alert) -> None:
        await self._append_record(
            "alert", alert.alert_id, alert.account_id, json.dumps(alert.to_dict())
        )

    async def list_alerts(self, account_id: str | None = None, limit: int = 100) -> list[Alert]:
        rows = await self._list_records("alert", account_id, limit)
        return [Alert.from_dict(json.loads(r)) for r in rows]

    async def append_action(self, action: ResponseAction) -> None:
        await self._append_record(
            "action", action.action_id, action.account_id, json.dumps(action.to_dict())
        )

    async def list_actions(
        self, account_id: str | None = None, limit: int = 100
    ) -> list[ResponseAction]:
        rows = await self._list_records("action", account_id, limit)
        return [ResponseAction.from_dict(json.loads(r)) for r in rows]

    async def mark_action_undone(self, action_id: str, at: float, by: str) -> ResponseAction:
        raw = await self._script(
            "MARK_ACTION_UNDONE", [self._k("action", action_id)], [repr(at), by]
        )
        if raw is None:
            raise NotFound(f"no action {action_id}")
        return ResponseAction.from_dict(json.loads(raw))

    # limiter ----------------------------------------------------------------
    async def check_and_charge(self, checks: Sequence[Check], now: int) -> Decision:
        if self._decisions is None:
            await self.open()
        assert self._decisions is not None
        return await self._decisions.decide(checks, now, True)

    async def peek(self, checks: Sequence[Check], now: int) -> Decision:
        if self._decisions is None:
            await self.open()
        assert self._decisions is not None
        return await self._decisions.decide(checks, now, False)

    async def refund(self, checks: Sequence[Check], now: int) -> None:
        args: list[Any] = [now]
        for check in checks:
            if isinstance(check, RateCheck):
                args += ["r", check.cost, check.interval]
            else:
                args += ["q", check.cost, -1 if check.expires_at is None else check.expires_at]
        await self._script("REFUND", [self.prefix + c.key for c in checks], args)

    async def add_to_counter(self, key: str, amount: int, expires_at: int | None, now: int) -> int:
        expires = expires_at if expires_at is not None else -1
        value = await self._script("ADD_TO_COUNTER", [self.prefix + key], [amount, expires, now])
        return int(value)

    async def reset_counters(self, keys: Sequence[str]) -> None:
        if keys:
            await self._call(lambda: self._client.delete(*[self.prefix + k for k in keys]))
