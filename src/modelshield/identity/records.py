"""Account and API-key records as the stores keep them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

AccountStatus = Literal["active", "suspended"]


@dataclass(frozen=True, slots=True)
class Account:
    """A customer account.

    Example:
        >>> Account(id="acc_1", name="acme", plan="free", created_at=0.0).status
        'active'
    """

    id: str
    name: str
    plan: str
    created_at: float
    email: str | None = None
    organisation: str | None = None
    signup_address: str | None = None
    signup_user_agent: str | None = None
    tos_version: str | None = None
    status: AccountStatus = "active"
    status_reason: str | None = None
    status_changed_at: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    shaping_level: str | None = None
    """A stronger shaping level set by an operator or the responder (None: the plan's)."""
    throttle: float | None = None
    """Fraction (0, 1] of the plan's rate limits this account gets (None: all of them)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as stored: its public id and the HMAC digest of the whole key."""

    key_id: str
    account_id: str
    digest: str
    created_at: float
    revoked_at: float | None = None
    label: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_public_dict(self) -> dict[str, Any]:
        """Everything but the digest."""
        return {
            "key_id": self.key_id,
            "account_id": self.account_id,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "active": self.active,
            "label": self.label,
        }
