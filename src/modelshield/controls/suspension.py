"""Suspension gate: suspended accounts get 403 on their next request."""

from __future__ import annotations

from modelshield.controls.query import Query
from modelshield.errors import AccountSuspended


class SuspensionGate:
    """Deny every query of a suspended account.

    The account comes from the store on every request (with the key lookup), so a
    suspension by any replica or by the CLI takes effect on the next request.

    Example:
        >>> SuspensionGate().name
        'suspension'
    """

    name = "suspension"

    async def check(self, query: Query) -> None:
        if query.account.status == "suspended":
            query.controls.append(self.name)
            raise AccountSuspended("This account is suspended. Contact the API provider.")
