"""Policy schema for rate limits and query budgets (control #1 of the brief).

::

    plans:
      free:
        rate_limits:
          - {name: burst, scope: account, rate: 2, per: 1s, burst: 100}
          - {name: per-address, scope: client, rate: 4, per: 1s, burst: 200}
          - {name: model-wide, scope: model, rate: 500, per: 1s, burst: 5000}
        budgets: {day: 20000, month: 200000, lifetime: null, soft_threshold: 0.8}
        limit_headers: true
    limits_timezone: Europe/Berlin   # calendar day/month windows

Every quantity is in input rows: a batch of 50 rows costs 50.

Example:
    >>> RateLimit(name="burst", rate=2, per="1m", burst=10).interval_us
    30000000
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as ``"500ms"``, ``"1s"``, ``"5m"``, ``"1h"``.

    Example:
        >>> parse_duration("5m"), parse_duration(2)
        (300.0, 2.0)
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '1m'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT[match.group(2)]
    raise ValueError("a duration is a number of seconds or a string like '500ms', '1s', '1m'")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0, le=366 * 86400)]
Scope = Literal["account", "key", "client", "model"]


class RateLimit(BaseModel):
    """A sustained rate with a burst allowance (GCRA), in rows.

    ``scope`` says whose rows share the bucket: the account, one API key, one client
    address, or every caller of the model (a global limit per model).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,31}$", description="Shown in headers.")
    scope: Scope = "account"
    rate: float = Field(gt=0, description="Rows admitted per `per` once the burst is used.")
    per: Duration = Field(default=1.0, description="Period of `rate` (seconds or '1m').")
    burst: int | None = Field(
        default=None, gt=0, le=10_000_000, description="Bucket size in rows (default: rate)."
    )

    @property
    def interval_us(self) -> int:
        """Microseconds per row."""
        return max(1, round(self.per * 1_000_000 / self.rate))

    @property
    def burst_rows(self) -> int:
        return self.burst if self.burst is not None else max(1, int(self.rate))

    @property
    def window_s(self) -> float:
        """Time for an empty bucket to refill (the ``w`` of the RateLimit-Policy field)."""
        return self.burst_rows * self.interval_us / 1_000_000


class Budgets(BaseModel):
    """Row budgets per account for calendar windows in ``limits_timezone``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    day: int | None = Field(default=None, gt=0)
    month: int | None = Field(default=None, gt=0)
    lifetime: int | None = Field(default=None, gt=0)
    soft_threshold: float = Field(
        default=0.8, gt=0, le=1, description="Fraction of a budget that raises a flag."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Budgets:
        if self.day and self.month and self.day > self.month:
            raise ValueError("budgets.day must be <= budgets.month")
        if self.month and self.lifetime and self.month > self.lifetime:
            raise ValueError("budgets.month must be <= budgets.lifetime")
        return self

    def windows(self) -> list[tuple[Literal["day", "month", "lifetime"], int]]:
        found: list[tuple[Literal["day", "month", "lifetime"], int]] = []
        if self.day:
            found.append(("day", self.day))
        if self.month:
            found.append(("month", self.month))
        if self.lifetime:
            found.append(("lifetime", self.lifetime))
        return found
