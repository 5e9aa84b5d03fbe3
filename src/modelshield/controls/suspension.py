"""Suspension gate: suspended accounts get 403 on their next request."""

from __future__ import annotations

from modelshield.controls.query import Query
from modelshield.errors import AccountSuspended


class SuspensionGate:
    """Deny every query of a suspended account.

    The account comes with the key lookup. A suspension made through this gateway (admin
    API, monitor responder) takes effect on the account's next request; one made by
    another process (the CLI, another replica) within the credential cache's lifetime
    (the policy's ``server.credential_cache_s``, 1 s by default; 0 makes every request
    read the store).

    Example:
        >>> SuspensionGate().name
        'suspension'
    """

    name = "suspension"

    async def check(self, query: Query) -> None:
        if query.account.status == "suspended":
            query.controls.append(self.name)
            raise AccountSuspended("This account is suspended. Contact the API provider.")
