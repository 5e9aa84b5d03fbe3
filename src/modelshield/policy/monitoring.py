"""Policy schema of query monitoring, alerts, the responder and self-service sign-up.

::

    monitoring:
      enabled: true
      reservoir_cap: 2000        # sketches kept per account (bounded memory and cost)
      min_rows: 50               # rows before an account is scored
      target_fpr: 0.01           # per-feature thresholds: this share of benign accounts
      actions: {low: notify, medium: notify, high: throttle, critical: suspend}
      throttle_fraction: 0.25
      degrade_level: degraded    # a shaping level (policy.shaping_levels)
      webhook: {url: https://hooks.example.com/modelshield, retries: 3}
      signup:
        enabled: true
        tos_version: "2024-06"
        rate_limit: {rate: 5, per: 1h, burst: 5}   # sign-ups per client address

Example:
    >>> MonitoringSettings().actions["critical"]
    'suspend'
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from modelshield.policy.limits import Duration

Action = Literal["notify", "throttle", "degrade", "suspend"]
SeverityName = Literal["low", "medium", "high", "critical"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _default_actions() -> dict[SeverityName, Action]:
    return {"low": "notify", "medium": "notify", "high": "throttle", "critical": "suspend"}


def _default_cutoffs() -> dict[SeverityName, float]:
    return {"low": 40.0, "medium": 60.0, "high": 75.0, "critical": 90.0}


class WebhookSettings(_Strict):
    url: HttpUrl = Field(description="Alerts are POSTed here as JSON.")
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    retries: int = Field(default=3, ge=0, le=20, description="Retries after the first try.")
    backoff_s: float = Field(default=0.5, gt=0, le=60, description="First retry delay; doubles.")


class SignupRateLimit(_Strict):
    rate: float = Field(default=5, gt=0, description="Sign-ups per `per` per client address.")
    per: Duration = Field(default=3600.0)
    burst: int = Field(default=5, gt=0, le=100_000)


class SignupSettings(_Strict):
    """``POST /v1/signup``: self-service accounts, so creation patterns are observed."""

    enabled: bool = False
    tos_version: str = Field(default="1", min_length=1, max_length=64)
    plan: str | None = Field(default=None, description="Plan of new accounts (default plan).")
    require_email: bool = True
    rate_limit: SignupRateLimit = Field(default_factory=SignupRateLimit)
    burst_window_s: Duration = Field(
        default=600.0, description="Sign-ups this close together count as one burst."
    )
    burst_size: int = Field(
        default=5, ge=2, le=10_000, description="Accounts in one burst that raise an alert."
    )


class SybilSettings(_Strict):
    """Linking accounts that extract together."""

    enabled: bool = True
    near_duplicate_links: int = Field(
        default=5, ge=1, description="Cross-account near-duplicate rows that link two accounts."
    )
    complementary_jaccard: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Coverage overlap (Jaccard of LSH cells) below which two spread-out "
        "accounts from one sign-up cluster are linked as complementary.",
    )
    global_reservoir: int = Field(
        default=5000, ge=100, le=1_000_000, description="Recent sketches kept across accounts."
    )


class MonitoringSettings(_Strict):
    """Per-account features, detectors, alerts, the responder (DESIGN.md monitor)."""

    enabled: bool = False
    reservoir_cap: int = Field(default=2000, ge=50, le=1_000_000)
    window: int = Field(
        default=1000, ge=50, le=100_000, description="Recent rows the window features use."
    )
    min_rows: int = Field(default=50, ge=10, description="Rows before an account is scored.")
    target_fpr: float = Field(
        default=0.01, gt=0, lt=0.5, description="Benign accounts a feature rule may flag."
    )
    lsh_bits: int = Field(default=12, ge=4, le=24, description="Hyperplanes of the LSH cells.")
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="Fixed rule thresholds overriding calibration."
    )
    severity_cutoffs: dict[SeverityName, float] = Field(default_factory=_default_cutoffs)
    actions: dict[SeverityName, Action] = Field(default_factory=_default_actions)
    responder: bool = Field(default=True, description="Apply actions (false: alerts only).")
    throttle_fraction: float = Field(default=0.25, gt=0, le=1)
    degrade_level: str | None = Field(
        default=None, description="Shaping level for 'degrade' (a key of shaping_levels)."
    )
    alert_dedup_s: Duration = Field(
        default=3600.0, description="An alert repeats at most this often per account."
    )
    persist_interval_s: Duration = Field(default=5.0, description="How often state is saved.")
    webhook: WebhookSettings | None = None
    sybil: SybilSettings = Field(default_factory=SybilSettings)
    signup: SignupSettings = Field(default_factory=SignupSettings)

    @model_validator(mode="after")
    def _ordered_cutoffs(self) -> MonitoringSettings:
        cut = {**_default_cutoffs(), **self.severity_cutoffs}
        values = [cut["low"], cut["medium"], cut["high"], cut["critical"]]
        if values != sorted(values) or not (values[0] > 0 and values[-1] <= 100):
            raise ValueError("severity_cutoffs: low <= medium <= high <= critical in (0, 100]")
        object.__setattr__(self, "severity_cutoffs", cut)
        object.__setattr__(self, "actions", {**_default_actions(), **self.actions})
        return self
