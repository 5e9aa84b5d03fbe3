"""Account creation patterns: sign-up bursts sharing a network, user agent or e-mail domain.

A *cluster* is at least ``burst_size`` accounts created within ``burst_window_s`` of
each other that share one of: the client network (/24 for IPv4, /64 for IPv6), the
user agent, or the e-mail domain. Clusters raise a ``signup-burst`` alert, and their
members are scored together as one group by the monitor (a Sybil attack splits its
queries across them).

Example:
    >>> network_of("203.0.113.77"), network_of("2001:db8:1:2:3:4:5:6")
    ('203.0.113.0/24', '2001:db8:1:2::/64')
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from modelshield.identity.records import Account

COMMON_MAIL_DOMAINS = frozenset(
    {"gmail.com", "outlook.com", "hotmail.com", "yahoo.com", "icloud.com", "proton.me"}
)


def network_of(address: str | None) -> str | None:
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@dataclass(frozen=True)
class SignupCluster:
    kind: str
    """``network``, ``user_agent`` or ``email_domain``."""
    value: str
    members: list[str]
    first: float
    last: float

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "value": self.value,
            "members": self.members,
            "first": self.first,
            "last": self.last,
        }


@dataclass
class SignupWatcher:
    """Recent sign-ups (bounded) and the clusters among them."""

    window_s: float = 600.0
    burst_size: int = 5
    max_signups: int = 10_000
    signups: list[list[object]] = field(default_factory=list)
    """[account id, created_at, network, user agent, e-mail domain] per sign-up."""

    def observe(self, account: Account) -> None:
        if any(s[0] == account.id for s in self.signups[-1000:]):
            return
        domain = account.email.rsplit("@", 1)[-1].lower() if account.email else None
        self.signups.append(
            [
                account.id,
                account.created_at,
                network_of(account.signup_address),
                account.signup_user_agent,
                None if domain in COMMON_MAIL_DOMAINS else domain,
            ]
        )
        del self.signups[: -self.max_signups]

    def clusters(self) -> list[SignupCluster]:
        found: list[SignupCluster] = []
        for column, kind in ((2, "network"), (3, "user_agent"), (4, "email_domain")):
            groups: dict[str, list[tuple[float, str]]] = {}
            for row in self.signups:
                value = row[column]
                if isinstance(value, str) and value:
                    groups.setdefault(value, []).append((float(row[1]), str(row[0])))  # type: ignore[arg-type]
            for value, entries in groups.items():
                entries.sort()
                start = 0
                best: list[tuple[float, str]] = []
                for end in range(len(entries)):
                    while entries[end][0] - entries[start][0] > self.window_s:
                        start += 1
                    if end - start + 1 > len(best):
                        best = entries[start : end + 1]
                if len(best) >= self.burst_size:
                    found.append(
                        SignupCluster(kind, value, [m for _, m in best], best[0][0], best[-1][0])
                    )
        return found
