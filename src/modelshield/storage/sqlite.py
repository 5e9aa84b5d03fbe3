"""Embedded SQLite store (``sqlite:///relative.db``, ``sqlite:////absolute.db``).

WAL mode, ``synchronous=FULL`` by default (every commit is fsynced before it returns);
``?synchronous=normal`` in the URI trades power-loss durability for speed (an
application crash still loses nothing). Four connections per store: the main one,
owned by one worker thread, for accounts, keys, events and the monitor; a read-only one
for the per-request credential lookup (WAL readers never wait for a writer); and two for
check-and-charge (:mod:`.sqlite_decisions`), one used on the event loop while the
database is free and one owned by a thread for when it is not, so that limiter
decisions never queue behind event batches. The writers take turns through an
in-process lock; the main and thread connections wait for other processes on the same
file with ``busy_timeout``, the loop one never waits. Every multi-row change is one
transaction.

Example:
    >>> SQLiteStore("sqlite:///.modelshield/modelshield.db").path.name
    'modelshield.db'
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

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
from modelshield.storage.limiter import Check, Decision, Writes, decide, refund_writes
from modelshield.storage.sqlite_decisions import DecisionWriter

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    plan TEXT NOT NULL,
    created_at REAL NOT NULL,
    email TEXT,
    organisation TEXT,
    signup_address TEXT,
    signup_user_agent TEXT,
    tos_version TEXT,
    status TEXT NOT NULL DEFAULT 'active',
    status_reason TEXT,
    status_changed_at REAL,
    metadata TEXT NOT NULL DEFAULT '{}',
    shaping_level TEXT,
    throttle REAL
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    digest TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL,
    label TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_account ON api_keys(account_id);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    time REAL NOT NULL,
    account_id TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_account ON events(account_id, seq);
CREATE TABLE IF NOT EXISTS counters (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL,
    expires_at INTEGER
);
CREATE TABLE IF NOT EXISTS monitor_state (
    key TEXT PRIMARY KEY,
    blob BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL,
    time REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_account ON alerts(account_id, seq);
CREATE TABLE IF NOT EXISTS actions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    action_id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL,
    time REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS actions_account ON actions(account_id, seq);
"""

_ACCOUNT_COLUMNS = (
    "id, name, plan, created_at, email, organisation, signup_address, signup_user_agent, "
    "tos_version, status, status_reason, status_changed_at, metadata, shaping_level, throttle"
)
# columns added after the first release: (table, column, declaration)
_MIGRATIONS = [("accounts", "shaping_level", "TEXT"), ("accounts", "throttle", "REAL")]
_KEY_COLUMNS = "key_id, account_id, digest, created_at, revoked_at, label"


_CREDENTIAL_SQL = (
    "SELECT "
    + ", ".join(f"k.{c.strip()}" for c in _KEY_COLUMNS.split(","))
    + ", "
    + ", ".join(f"a.{c.strip()}" for c in _ACCOUNT_COLUMNS.split(","))
    + " FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.key_id=?"
)


_EVENTS_PER_INSERT = 200


@lru_cache(maxsize=32)
def _insert_events_sql(count: int) -> str:
    rows = ",".join(["(?,?,?,?)"] * count)
    return f"INSERT OR IGNORE INTO events (event_id, time, account_id, data) VALUES {rows}"


def _account(row: Sequence[Any]) -> Account:
    values = list(row)
    metadata = values[12]
    values[12] = {} if metadata in (None, "{}") else json.loads(metadata)
    return Account(*values)


def _key(row: Sequence[Any]) -> ApiKey:
    return ApiKey(*row)


def sqlite_path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.scheme != "sqlite" or parts.netloc:
        raise ConfigError(f"storage.uri: expected sqlite:///path/to.db, got {uri!r}")
    raw = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not raw:
        raise ConfigError(f"storage.uri: {uri!r} names no database file")
    return Path(raw)


class SQLiteStore:
    """Accounts, keys and events in one SQLite file."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.path = sqlite_path(uri)
        query = parse_qs(urlsplit(uri).query)
        sync = query.get("synchronous", ["full"])[0].upper()
        if sync not in {"FULL", "NORMAL", "EXTRA"}:
            raise ConfigError(f"storage.uri: synchronous must be full, normal or extra, not {sync}")
        self._synchronous = sync
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        # held for every write transaction of this store's two writing connections
        self._write_lock = threading.Lock()
        self._decision_writer: DecisionWriter | None = None

    # plumbing ---------------------------------------------------------------
    def _open_connection(self) -> sqlite3.Connection:
        """A writing connection with this store's settings (journal mode, durability and
        busy timeout), the schema created if missing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # per connection, not stored in the file: every writing connection sets it
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=10000")
        with self._write_lock:
            conn.executescript(SCHEMA)
        return conn

    def _open_loop_connection(self) -> sqlite3.Connection:
        """The check-and-charge connection used on the event loop: it never waits (a
        busy database is an error that sends the group to the decision thread) and never
        checkpoints on commit (the decision writer checkpoints now and then, the other
        connections as they commit)."""
        if not self.path.is_file():
            raise sqlite3.OperationalError(f"{self.path} does not exist yet")
        conn = sqlite3.connect(self.path, timeout=0.0, isolation_level=None)  # no busy wait
        try:
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA wal_autocheckpoint=0")
            ready = conn.execute(
                "SELECT (SELECT journal_mode FROM pragma_journal_mode) = 'wal' AND EXISTS "
                "(SELECT 1 FROM sqlite_master WHERE type='table' AND name='counters')"
            ).fetchone()[0]
            if not ready:
                raise sqlite3.OperationalError(f"{self.path} has no WAL-mode schema yet")
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect(self) -> None:
        if self._conn is not None:
            return
        conn = self._open_connection()
        for table, column, declaration in _MIGRATIONS:
            existing = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column not in existing:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        self._conn = conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")

        def call() -> T:
            self._connect()
            assert self._conn is not None
            return fn(self._conn)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"already exists ({exc})") from None
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from None
        except OSError as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {exc.strerror}") from None

    def _transaction(self, conn: sqlite3.Connection, body: Callable[[], T]) -> T:
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body()
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    async def open(self) -> None:
        await self._run(lambda conn: None)
        if self._reader is None:
            # WAL readers never wait for the writer: the per-request credential lookup
            # runs on the caller's thread, without a hop to the writer thread.
            reader = sqlite3.connect(
                self.path, timeout=1.0, isolation_level=None, check_same_thread=False
            )
            reader.execute("PRAGMA query_only=1")
            self._reader = reader

    async def close(self) -> None:
        writer, self._decision_writer = self._decision_writer, None
        if writer is not None:
            await writer.close()
        executor, self._executor = self._executor, None
        if executor is None:
            return

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(executor, shut)
        executor.shutdown(wait=True)
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    # accounts ---------------------------------------------------------------
    async def create_account(self, account: Account, key: ApiKey) -> None:
        def work(conn: sqlite3.Connection) -> None:
            def body() -> None:
                if conn.execute("SELECT 1 FROM accounts WHERE name=?", (account.name,)).fetchone():
                    raise Conflict(f"an account named {account.name!r} already exists")
                row = list(dataclasses.astuple(account))
                row[12] = json.dumps(account.metadata)
                marks = ",".join("?" * len(row))
                conn.execute(f"INSERT INTO accounts ({_ACCOUNT_COLUMNS}) VALUES ({marks})", row)
                conn.execute(
                    f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?,?,?,?,?,?)",
                    dataclasses.astuple(key),
                )

            self._transaction(conn, body)

        await self._run(work)

    async def get_account(self, account_id: str) -> Account | None:
        row = await self._run(
            lambda conn: conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id=?", (account_id,)
            ).fetchone()
        )
        return _account(row) if row else None

    async def find_account_by_name(self, name: str) -> Account | None:
        row = await self._run(
            lambda conn: conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE name=?", (name,)
            ).fetchone()
        )
        return _account(row) if row else None

    async def list_accounts(self, *, limit: int = 100, offset: int = 0) -> list[Account]:
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY created_at, id LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
        )
        return [_account(r) for r in rows]

    async def set_account_status(
        self, account_id: str, status: AccountStatus, reason: str | None, at: float
    ) -> Account:
        return await self._update_account(
            account_id, {"status": status, "status_reason": reason, "status_changed_at": at}
        )

    async def set_account_shaping(self, account_id: str, level: str | None) -> Account:
        return await self._update_account(account_id, {"shaping_level": level})

    async def set_account_throttle(self, account_id: str, throttle: float | None) -> Account:
        return await self._update_account(account_id, {"throttle": throttle})

    async def _update_account(
        self, account_id: str, changes: dict[str, str | float | None]
    ) -> Account:
        """Set columns (names from this module, never from callers) and return the row."""
        assignments = ", ".join(f"{column}=?" for column in changes)

        def work(conn: sqlite3.Connection) -> Any:
            def body() -> Any:
                cur = conn.execute(
                    f"UPDATE accounts SET {assignments} WHERE id=?",
                    (*changes.values(), account_id),
                )
                if cur.rowcount == 0:
                    return None
                return conn.execute(
                    f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id=?", (account_id,)
                ).fetchone()

            return self._transaction(conn, body)

        row = await self._run(work)
        if row is None:
            raise AccountNotFound(f"no account {account_id}")
        return _account(row)

    # keys -------------------------------------------------------------------
    async def get_key(self, key_id: str) -> ApiKey | None:
        row = await self._run(
            lambda conn: conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id=?", (key_id,)
            ).fetchone()
        )
        return _key(row) if row else None

    async def find_credential(self, key_id: str) -> tuple[ApiKey, Account] | None:
        sql = _CREDENTIAL_SQL
        if self._reader is None:
            row = await self._run(lambda conn: conn.execute(sql, (key_id,)).fetchone())
        else:
            try:
                row = self._reader.execute(sql, (key_id,)).fetchone()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from None
        if row is None:
            return None
        return _key(row[:6]), _account(row[6:])

    async def list_keys(self, account_id: str) -> list[ApiKey]:
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE account_id=? "
                "ORDER BY created_at, key_id",
                (account_id,),
            ).fetchall()
        )
        return [_key(r) for r in rows]

    async def rotate_key(self, account_id: str, new_key: ApiKey, at: float) -> list[str]:
        def work(conn: sqlite3.Connection) -> list[str] | None:
            def body() -> list[str] | None:
                if not conn.execute("SELECT 1 FROM accounts WHERE id=?", (account_id,)).fetchone():
                    return None
                revoked = [
                    r[0]
                    for r in conn.execute(
                        "SELECT key_id FROM api_keys WHERE account_id=? AND revoked_at IS NULL",
                        (account_id,),
                    )
                ]
                conn.execute(
                    "UPDATE api_keys SET revoked_at=? WHERE account_id=? AND revoked_at IS NULL",
                    (at, account_id),
                )
                conn.execute(
                    f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?,?,?,?,?,?)",
                    dataclasses.astuple(new_key),
                )
                return sorted(revoked)

            return self._transaction(conn, body)

        revoked = await self._run(work)
        if revoked is None:
            raise AccountNotFound(f"no account {account_id}")
        return revoked

    async def revoke_key(self, key_id: str, at: float) -> ApiKey:
        def work(conn: sqlite3.Connection) -> Any:
            def body() -> Any:
                conn.execute(
                    "UPDATE api_keys SET revoked_at=? WHERE key_id=? AND revoked_at IS NULL",
                    (at, key_id),
                )
                return conn.execute(
                    f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id=?", (key_id,)
                ).fetchone()

            return self._transaction(conn, body)

        row = await self._run(work)
        if row is None:
            raise KeyNotFound(f"no key {key_id}")
        return _key(row)

    # limiter ----------------------------------------------------------------
    @staticmethod
    def _read_counters(
        conn: sqlite3.Connection, keys: Sequence[str | None], now: int
    ) -> dict[str, int]:
        wanted = sorted({k for k in keys if k is not None})
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        rows = conn.execute(
            f"SELECT key, value FROM counters WHERE key IN ({marks}) "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (*wanted, now),
        ).fetchall()
        return {key: int(value) for key, value in rows}

    @staticmethod
    def _write_counters(conn: sqlite3.Connection, writes: Writes) -> None:
        conn.executemany(
            "INSERT OR REPLACE INTO counters (key, value, expires_at) VALUES (?,?,?)",
            [(key, value, expires) for key, (value, expires) in writes.items()],
        )

    @staticmethod
    def _check_keys(checks: Sequence[Check]) -> list[str | None]:
        return [k for c in checks for k in (c.key, getattr(c, "bonus_key", None))]

    async def check_and_charge(self, checks: Sequence[Check], now: int) -> Decision:
        """Decide and charge in a transaction shared with concurrent decisions.

        The decisions requested during two event-loop turns form a group, decided one
        after the other inside one transaction (:class:`~.sqlite_decisions.DecisionWriter`):
        each is exact and atomic, the group pays for one commit (one fsync), and every
        decision is durable before it returns.
        """
        writer = self._decision_writer
        if writer is None:
            writer = self._decision_writer = DecisionWriter(
                self._open_connection,
                self._write_lock,
                str(self.path),
                connect_loop=self._open_loop_connection,
            )
        return await writer.submit(checks, now)

    async def peek(self, checks: Sequence[Check], now: int) -> Decision:
        keys = self._check_keys(checks)
        values = await self._run(lambda conn: self._read_counters(conn, keys, now))
        return decide(checks, values, now, charge=False)[0]

    async def refund(self, checks: Sequence[Check], now: int) -> None:
        keys = [c.key for c in checks]

        def work(conn: sqlite3.Connection) -> None:
            def body() -> None:
                values = self._read_counters(conn, keys, now)
                self._write_counters(conn, refund_writes(checks, values, now))

            self._transaction(conn, body)

        await self._run(work)

    async def add_to_counter(self, key: str, amount: int, expires_at: int | None, now: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            def body() -> int:
                value = self._read_counters(conn, [key], now).get(key, 0) + amount
                self._write_counters(conn, {key: (value, expires_at)})
                return value

            return self._transaction(conn, body)

        return await self._run(work)

    async def reset_counters(self, keys: Sequence[str]) -> None:
        def work(conn: sqlite3.Connection) -> None:
            self._transaction(
                conn,
                lambda: conn.executemany("DELETE FROM counters WHERE key=?", [(k,) for k in keys]),
            )

        await self._run(work)

    # events -----------------------------------------------------------------
    async def append_events(self, events: Sequence[QueryEvent]) -> None:
        if not events:
            return
        # multi-row INSERTs rather than executemany: each statement step hands the GIL to
        # the busy event-loop thread and back, so one step per 200 events, not per event
        values = [v for e in events for v in (e.event_id, e.time, e.account_id, e.to_json())]
        per = _EVENTS_PER_INSERT * 4

        def body(conn: sqlite3.Connection) -> None:
            for start in range(0, len(values), per):
                part = values[start : start + per]
                conn.execute(_insert_events_sql(len(part) // 4), part)

        def work(conn: sqlite3.Connection) -> None:
            self._transaction(conn, lambda: body(conn))

        await self._run(work)

    async def recent_events(self, account_id: str, limit: int = 50) -> list[QueryEvent]:
        rows = await self._run(
            lambda conn: conn.execute(
                "SELECT data FROM events WHERE account_id=? ORDER BY seq DESC LIMIT ?",
                (account_id, limit),
            ).fetchall()
        )
        return [QueryEvent.from_json(r[0]) for r in rows]

    async def count_events(self, account_id: str | None = None) -> int:
        if account_id is None:
            row = await self._run(
                lambda conn: conn.execute("SELECT COUNT(*) FROM events").fetchone()
            )
        else:
            row = await self._run(
                lambda conn: conn.execute(
                    "SELECT COUNT(*) FROM events WHERE account_id=?", (account_id,)
                ).fetchone()
            )
        return int(row[0])

    # monitor ----------------------------------------------------------------
    async def save_monitor_state(self, key: str, blob: bytes) -> None:
        await self._run(
            lambda conn: self._transaction(
                conn,
                lambda: conn.execute(
                    "INSERT OR REPLACE INTO monitor_state (key, blob) VALUES (?,?)", (key, blob)
                ),
            )
        )

    async def load_monitor_state(self, key: str) -> bytes | None:
        row = await self._run(
            lambda conn: conn.execute(
                "SELECT blob FROM monitor_state WHERE key=?", (key,)
            ).fetchone()
        )
        return bytes(row[0]) if row else None

    async def _append_record(
        self, table: str, id_column: str, record_id: str, account_id: str, at: float, data: str
    ) -> None:
        await self._run(
            lambda conn: self._transaction(
                conn,
                lambda: conn.execute(
                    f"INSERT OR IGNORE INTO {table} ({id_column}, account_id, time, data) "
                    "VALUES (?,?,?,?)",
                    (record_id, account_id, at, data),
                ),
            )
        )

    async def _list_records(self, table: str, account_id: str | None, limit: int) -> list[str]:
        if account_id is None:
            sql, args = f"SELECT data FROM {table} ORDER BY seq DESC LIMIT ?", (limit,)
        else:
            sql = f"SELECT data FROM {table} WHERE account_id=? ORDER BY seq DESC LIMIT ?"
            args = (account_id, limit)  # type: ignore[assignment]
        rows = await self._run(lambda conn: conn.execute(sql, args).fetchall())
        return [str(r[0]) for r in rows]

    async def append_alert(self, alert: Alert) -> None:
        await self._append_record(
            "alerts",
            "alert_id",
            alert.alert_id,
            alert.account_id,
            alert.time,
            json.dumps(alert.to_dict()),
        )

    async def list_alerts(self, account_id: str | None = None, limit: int = 100) -> list[Alert]:
        rows = await self._list_records("alerts", account_id, limit)
        return [Alert.from_dict(json.loads(r)) for r in rows]

    async def append_action(self, action: ResponseAction) -> None:
        await self._append_record(
            "actions",
            "action_id",
            action.action_id,
            action.account_id,
            action.time,
            json.dumps(action.to_dict()),
        )

    async def list_actions(
        self, account_id: str | None = None, limit: int = 100
    ) -> list[ResponseAction]:
        rows = await self._list_records("actions", account_id, limit)
        return [ResponseAction.from_dict(json.loads(r)) for r in rows]

    async def mark_action_undone(self, action_id: str, at: float, by: str) -> ResponseAction:
        def work(conn: sqlite3.Connection) -> str | None:
            def body() -> str | None:
                row = conn.execute(
                    "SELECT data FROM actions WHERE action_id=?", (action_id,)
                ).fetchone()
                if row is None:
                    return None
                data = json.loads(row[0])
                if data.get("undone_at") is None:
                    data["undone_at"], data["undone_by"] = at, by
                    conn.execute(
                        "UPDATE actions SET data=? WHERE action_id=?", (json.dumps(data), action_id)
                    )
                return json.dumps(data)

            return self._transaction(conn, body)

        found = await self._run(work)
        if found is None:
            raise NotFound(f"no action {action_id}")
        return ResponseAction.from_dict(json.loads(found))
