"""Account and key operations shared by the admin API and the CLI.

Example:
    >>> import asyncio
    >>> from modelshield.clock import FakeClock
    >>> from modelshield.storage.memory import MemoryStore
    >>> service = AccountService(MemoryStore(), b"0123456789abcdef", FakeClock(), plans=["free"])
    >>> account, key = asyncio.run(service.create("acme"))
    >>> asyncio.run(service.authenticate(key.plaintext))[0].name
    'acme'
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from typing import cast

from modelshield.clock import Clock
from modelshield.errors import AccountNotFound, AuthenticationFailed, InvalidInput
from modelshield.identity.credentials import AccountChangeNotifier, CredentialCache
from modelshield.identity.keys import (
    IssuedKey,
    digest_matches,
    issue_key,
    key_digest,
    parse_key_id,
)
from modelshield.identity.records import Account, ApiKey
from modelshield.storage.base import LimiterStore, Store

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}$")
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


def new_account_id() -> str:
    return "acc_" + secrets.token_hex(8)


class AccountService:
    """Creates accounts, issues and checks keys, changes account status.

    With ``credential_ttl`` > 0, verified keys are remembered for that many seconds
    (:class:`~modelshield.identity.credentials.CredentialCache`) and :attr:`store` is the
    given store wrapped so that every account or key change written through it -- by
    this service, the admin API or the monitor's responder -- empties the cache before
    it returns (:class:`~modelshield.identity.credentials.AccountChangeNotifier`).
    """

    def __init__(
        self,
        store: Store,
        secret: bytes,
        clock: Clock,
        *,
        plans: Sequence[str],
        credential_ttl: float = 0.0,
    ) -> None:
        self.credentials = CredentialCache(credential_ttl, clock)
        if credential_ttl > 0:
            store = cast(Store, AccountChangeNotifier(store, self.credentials.invalidate))
        self.store = store
        self.counters: LimiterStore = store
        """Where rate-limit and budget counters live (``storage.limits_uri``)."""
        self._secret = secret
        self.clock = clock
        self.plans = list(plans)

    async def create(
        self,
        name: str,
        *,
        plan: str | None = None,
        email: str | None = None,
        organisation: str | None = None,
        signup_address: str | None = None,
        signup_user_agent: str | None = None,
        tos_version: str | None = None,
    ) -> tuple[Account, IssuedKey]:
        if not _NAME_RE.match(name):
            raise InvalidInput(
                "name: 1-64 characters, letters, digits and _ . @ - (starting with a letter "
                "or digit)"
            )
        chosen = plan or self.plans[0]
        if chosen not in self.plans:
            raise InvalidInput(f"plan: unknown plan {chosen!r}; plans: {', '.join(self.plans)}")
        if email is not None and not _EMAIL_RE.match(email):
            raise InvalidInput("email: not an e-mail address")
        now = self.clock.now()
        account = Account(
            id=new_account_id(),
            name=name,
            plan=chosen,
            created_at=now,
            email=email,
            organisation=organisation,
            signup_address=signup_address,
            signup_user_agent=signup_user_agent,
            tos_version=tos_version,
        )
        issued = issue_key(self._secret, account.id, now=now)
        await self.store.create_account(account, issued.record)
        return account, issued

    async def resolve(self, ref: str) -> Account:
        """An account by id, or by name."""
        account = await self.store.get_account(ref)
        if account is None:
            account = await self.store.find_account_by_name(ref)
        if account is None:
            raise AccountNotFound(f"no account with id or name {ref!r}")
        return account

    async def authenticate(self, plaintext: str | None) -> tuple[Account, ApiKey]:
        """The account and key for a presented API key, or AuthenticationFailed.

        A key verified within the credential cache's lifetime is found by its lookup
        digest. Any other key is checked in full: its HMAC digest is computed and
        compared in constant time against the stored one (or a dummy), so unknown,
        revoked and malformed keys take the same path, are never cached and get the same
        error.
        """
        presented = plaintext or ""
        # (with the cache off, nothing is stored under any digest: skip computing one)
        lookup = self.credentials.lookup_digest(presented) if self.credentials.ttl > 0 else b""
        cached = self.credentials.get(lookup)
        if cached is not None:
            return cached[1], cached[0]
        generation = self.credentials.generation
        digest = key_digest(self._secret, presented)
        key_id = parse_key_id(plaintext) if plaintext else None
        found = await self.store.find_credential(key_id) if key_id else None
        if not digest_matches(digest, found[0] if found else None) or found is None:
            raise AuthenticationFailed()
        self.credentials.put(lookup, found, generation)
        key, account = found
        return account, key

    async def suspend(self, ref: str, reason: str) -> Account:
        account = await self.resolve(ref)
        now = self.clock.now()
        return await self.store.set_account_status(account.id, "suspended", reason, now)

    async def unsuspend(self, ref: str, reason: str | None = None) -> Account:
        account = await self.resolve(ref)
        return await self.store.set_account_status(account.id, "active", reason, self.clock.now())

    async def throttle(self, ref: str, fraction: float | None) -> Account:
        """Give account ``ref`` only ``fraction`` of its plan's rate limits (None: lift)."""
        if fraction is not None and not 0.0 < fraction <= 1.0:
            raise InvalidInput("throttle: must be > 0 and <= 1 (a fraction of the plan's rates)")
        account = await self.resolve(ref)
        return await self.store.set_account_throttle(account.id, fraction)

    async def rotate_key(self, ref: str) -> tuple[Account, IssuedKey, list[str]]:
        """Issue a new key and revoke the account's other keys in one store operation."""
        account = await self.resolve(ref)
        issued = issue_key(self._secret, account.id, now=self.clock.now())
        revoked = await self.store.rotate_key(account.id, issued.record, self.clock.now())
        return account, issued, revoked

    async def revoke_key(self, key_id: str) -> ApiKey:
        return await self.store.revoke_key(key_id, self.clock.now())
