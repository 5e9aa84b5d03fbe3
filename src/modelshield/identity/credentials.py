"""A short-lived cache of verified credentials, and the store wrapper that keeps it honest.

Every inference request authenticates its API key: an HMAC of the presented key and a
store lookup of the key and its account. :class:`CredentialCache` remembers, for
``ttl`` seconds, the key and account a *verified* key resolved to, keyed by
:meth:`CredentialCache.lookup_digest` of the presented key: a keyed BLAKE2b under a
random per-process key, which an attacker can neither compute nor choose collisions
for, and a third of an HMAC-SHA256's cost (a hit skips the HMAC altogether). Unknown,
revoked and malformed keys are never cached: they always take the full, constant-time
path (HMAC-SHA256 under the server secret, compared with the stored digest) and get the
same 401.

Freshness (DESIGN: suspended accounts get 403 on their next request):

- Every change to an account or key made by this process — the admin API, the CLI's
  :class:`~modelshield.identity.service.AccountService`, the monitor's responder — goes
  through :class:`AccountChangeNotifier`, which empties the cache once the store has
  the change. The next request reads the store again.
- A change made by another process (the CLI against the same SQLite file, another
  replica, a scale-out worker) is seen within ``ttl`` seconds.

Example:
    >>> from modelshield.clock import FakeClock
    >>> from modelshield.identity.records import Account, AccountStatus, ApiKey
    >>> clock = FakeClock()
    >>> cache = CredentialCache(ttl=1.0, clock=clock)
    >>> pair = (ApiKey("k1", "acc_1", "d" * 64, 0.0), Account("acc_1", "acme", "free", 0.0))
    >>> lookup = cache.lookup_digest("msk_k1_secret")
    >>> cache.put(lookup, pair, cache.generation)
    >>> cache.get(lookup) == pair
    True
    >>> clock.advance(1.5)
    >>> cache.get(lookup) is None
    True
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from modelshield.clock import Clock
from modelshield.identity.records import Account, AccountStatus, ApiKey

T = TypeVar("T")

Credential = tuple[ApiKey, Account]


class CredentialCache:
    """Verified ``(key, account)`` pairs by key digest, for ``ttl`` seconds at most.

    ``generation`` changes whenever the cache is emptied; a lookup that started before
    an invalidation cannot store what it read (it may predate the change).
    """

    def __init__(self, ttl: float, clock: Clock, *, max_entries: int = 10_000) -> None:
        if ttl < 0:
            raise ValueError("ttl must be >= 0")
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self.generation = 0
        self._entries: dict[bytes, tuple[float, Credential]] = {}
        self._lookup_key = secrets.token_bytes(32)  # never leaves this process

    def lookup_digest(self, plaintext: str) -> bytes:
        """What the cache knows a presented key by (a keyed hash, never the key)."""
        return hashlib.blake2b(
            plaintext.encode("utf-8"), key=self._lookup_key, digest_size=32
        ).digest()

    def get(self, digest: bytes) -> Credential | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if self.clock.now() >= entry[0]:
            self._entries.pop(digest, None)
            return None
        return entry[1]

    def put(self, digest: bytes, credential: Credential, generation: int) -> None:
        """Remember ``credential`` unless the cache was emptied since ``generation``."""
        if self.ttl <= 0 or generation != self.generation:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))  # the oldest entry
        self._entries[digest] = (self.clock.now() + self.ttl, credential)

    def invalidate(self) -> None:
        self.generation += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class AccountChangeNotifier:
    """A store that calls ``on_change`` after every account or key change (even a failed one).

    Everything else goes straight to the wrapped store, whose attributes it shows.

    Example:
        >>> import asyncio
        >>> from modelshield.storage.memory import MemoryStore
        >>> changes = []
        >>> store = AccountChangeNotifier(MemoryStore(), lambda: changes.append(1))
        >>> asyncio.run(store.count_events()), changes
        (0, [])
    """

    def __init__(self, store: Any, on_change: Callable[[], None]) -> None:
        self.wrapped = store
        self._on_change = on_change

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.wrapped, name)
        if callable(value):
            # bound once: later calls skip __getattr__ (the hot path uses this store)
            object.__setattr__(self, name, value)
        return value

    async def _changing(self, write: Awaitable[T]) -> T:
        try:
            return await write
        finally:
            self._on_change()

    async def set_account_status(
        self, account_id: str, status: AccountStatus, reason: str | None, at: float
    ) -> Account:
        return await self._changing(self.wrapped.set_account_status(account_id, status, reason, at))

    async def set_account_shaping(self, account_id: str, level: str | None) -> Account:
        return await self._changing(self.wrapped.set_account_shaping(account_id, level))

    async def set_account_throttle(self, account_id: str, throttle: float | None) -> Account:
        return await self._changing(self.wrapped.set_account_throttle(account_id, throttle))

    async def rotate_key(self, account_id: str, new_key: ApiKey, at: float) -> list[str]:
        return await self._changing(self.wrapped.rotate_key(account_id, new_key, at))

    async def revoke_key(self, key_id: str, at: float) -> ApiKey:
        return await self._changing(self.wrapped.revoke_key(key_id, at))
