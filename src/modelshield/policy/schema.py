"""The policy file: one YAML document validated by these pydantic models.

Every model forbids unknown keys, so a typo is an error with its path rather than a
setting silently ignored. Later controls hang their settings off :class:`Plan`.

Example:
    >>> policy = Policy.model_validate({
    ...     "models": {"digits": {"backend": {"kind": "demo"}}},
    ...     "plans": {"free": {}},
    ... })
    >>> policy.default_plan, policy.models["digits"].input.features
    ('free', 64)
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from modelshield.policy.limits import Budgets, RateLimit
from modelshield.policy.monitoring import MonitoringSettings
from modelshield.policy.shaping import ShapingSpec

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
ENV_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]*$"

Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(Strict):
    """Process-level settings."""

    secret_env: str = Field(
        default="MODELSHIELD_SECRET",
        pattern=ENV_NAME_PATTERN,
        description="Environment variable that holds the server secret (keys and shaping).",
    )
    secret_file: str | None = Field(
        default=None,
        description="File holding the server secret when the variable is unset; created "
        "with owner-only permissions if missing. Default: <state_dir>/secret.",
    )
    state_dir: str = Field(default=".modelshield", min_length=1)
    max_body_bytes: int = Field(default=1_048_576, gt=0, le=1 << 30)
    max_batch_rows: int = Field(default=256, gt=0, le=1_000_000)
    trust_forwarded_for: bool = Field(
        default=False,
        description="Take the client address from X-Forwarded-For (only behind a trusted proxy).",
    )
    credential_cache_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="Seconds a verified API key is trusted without a store lookup. Changes "
        "made through this gateway (admin API, responder) apply on the next request; "
        "changes by other processes (the CLI, other replicas) within this time. 0: every "
        "request reads the store.",
    )


class StorageSettings(Strict):
    uri: str = Field(default="sqlite:///.modelshield/modelshield.db", min_length=1)
    limits_uri: str | None = Field(
        default=None,
        description="Separate store for rate-limit and budget counters, e.g. redis:// shared "
        "by replicas while accounts stay in uri (default: uri).",
    )

    @field_validator("uri", "limits_uri")
    @classmethod
    def _has_scheme(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[a-z][a-z0-9+.\-]*://", value):
            raise ValueError("must be a URI such as memory:// or sqlite:///path/to.db")
        return value


class EventSettings(Strict):
    """How query events are committed (DESIGN invariant 5)."""

    flush_interval_ms: int = Field(default=100, gt=0, le=10_000)
    max_batch: int = Field(default=500, gt=0, le=100_000)
    max_queue: int = Field(default=100_000, gt=0)
    sync: bool = Field(default=False, description="Make every event durable before responding.")


class DemoBackend(Strict):
    kind: Literal["demo"]
    name: Literal["digits"] = "digits"


class SklearnBackend(Strict):
    kind: Literal["sklearn"]
    path: str = Field(
        min_length=1, description="A .joblib/.pkl (trusted files only) or .skops file."
    )
    trusted_types: list[str] = Field(
        default_factory=list, description="Extra types skops may load beyond its defaults."
    )


class CallableBackend(Strict):
    kind: Literal["callable"]
    target: str = Field(
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="'package.module:function' taking an [N, F] float array, returning [N, C].",
    )
    classes: int | None = Field(default=None, gt=1)


class OnnxBackend(Strict):
    kind: Literal["onnx"]
    path: str = Field(min_length=1)
    output: str | None = Field(default=None, description="Name of the probability output.")


class UpstreamBackend(Strict):
    kind: Literal["upstream"]
    url: HttpUrl = Field(description="Base URL of an Open Inference Protocol V2 server.")
    model: str | None = Field(default=None, description="Upstream model name (default: ours).")
    output: str | None = Field(default=None, description="Upstream output holding probabilities.")
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    connect_timeout_s: float = Field(default=2.0, gt=0, le=60)
    max_connections: int = Field(default=100, gt=0, le=10_000)


Backend = Annotated[
    DemoBackend | SklearnBackend | CallableBackend | OnnxBackend | UpstreamBackend,
    Field(discriminator="kind"),
]


class InputSpec(Strict):
    name: str = Field(default="input-0", min_length=1)
    datatype: Literal["FP32", "FP64"] = "FP32"
    features: int = Field(default=64, gt=0, le=1_000_000)
    min: float | None = Field(default=None, description="Smallest allowed feature value.")
    max: float | None = Field(default=None, description="Largest allowed feature value.")
    resolution: float = Field(
        default=1e-3,
        gt=0,
        description="Step of the canonical input that keys shaping noise: rows that round to "
        "the same multiples of it get the same noise (DESIGN invariant 2).",
    )
    snap: bool = Field(
        default=False,
        description="Have the model answer the canonical row (each feature rounded to the "
        "resolution, kept within min/max), so jitter below the resolution changes nothing.",
    )

    @model_validator(mode="after")
    def _range(self) -> InputSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("input.min must be <= input.max")
        return self


OutputName = Literal["probabilities", "label"]


def _all_outputs() -> list[OutputName]:
    return ["probabilities", "label"]


class ModelSpec(Strict):
    backend: Backend
    version: str = Field(default="1", min_length=1)
    input: InputSpec = Field(default_factory=InputSpec)
    class_labels: list[int] | None = Field(
        default=None, description="Label reported for each probability column (default 0..C-1)."
    )


class Plan(Strict):
    """What an account on this plan may do and receive."""

    description: str = ""
    outputs: list[OutputName] = Field(
        default_factory=_all_outputs,
        min_length=1,
        description="Output tensors this plan may receive.",
    )
    max_batch_rows: int | None = Field(default=None, gt=0)
    models: list[str] | None = Field(
        default=None, description="Models this plan may query (default: all)."
    )
    shaping: ShapingSpec = Field(
        default_factory=ShapingSpec,
        description="Perturbation and minimization of the probabilities (default: none).",
    )
    rate_limits: list[RateLimit] = Field(
        default_factory=list, description="Rate limits; the most restrictive answers."
    )
    budgets: Budgets | None = Field(default=None, description="Row budgets per account.")
    limit_headers: bool = Field(
        default=True,
        description="Send RateLimit-Policy / RateLimit headers (false hides capacity).",
    )

    @model_validator(mode="after")
    def _limits_consistent(self) -> Plan:
        names = [limit.name for limit in self.rate_limits]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rate_limits: duplicate name {duplicates[0]!r}")
        if self.budgets is not None and set(names) & {"day", "month", "lifetime"}:
            raise ValueError("rate_limits: day, month and lifetime are the budgets' names")
        return self


class Policy(Strict):
    """A whole policy file."""

    version: Literal[1] = 1
    server: ServerSettings = Field(default_factory=ServerSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    fail_open: bool = Field(
        default=False, description="Admit requests when the store is unreachable (default: deny)."
    )
    models: dict[Name, ModelSpec] = Field(min_length=1)
    plans: dict[Name, Plan] = Field(min_length=1)
    default_plan: Name | None = Field(
        default=None, description="Plan for new accounts (default: the first plan)."
    )
    shaping_levels: dict[Name, ShapingSpec] = Field(
        default_factory=dict,
        description="Named shaping an account's shaping level adds on top of its plan's.",
    )
    limits_timezone: str = Field(
        default="UTC", description="IANA time zone of the budgets' calendar days and months."
    )
    monitoring: MonitoringSettings = Field(
        default_factory=MonitoringSettings,
        description="Query monitoring, extraction detection, alerts, responder, sign-up.",
    )

    @field_validator("limits_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> Policy:
        if self.default_plan is None:
            object.__setattr__(self, "default_plan", next(iter(self.plans)))
        elif self.default_plan not in self.plans:
            raise ValueError(f"default_plan {self.default_plan!r} is not one of the plans")
        level = self.monitoring.degrade_level
        if level is not None and level not in self.shaping_levels:
            raise ValueError(f"monitoring.degrade_level {level!r} is not one of shaping_levels")
        signup_plan = self.monitoring.signup.plan
        if signup_plan is not None and signup_plan not in self.plans:
            raise ValueError(f"monitoring.signup.plan {signup_plan!r} is not one of the plans")
        for plan_name, plan in self.plans.items():
            for model in plan.models or []:
                if model not in self.models:
                    raise ValueError(f"plans.{plan_name}.models: unknown model {model!r}")
            batch = min(self.server.max_batch_rows, plan.max_batch_rows or 1 << 62)
            for i, limit in enumerate(plan.rate_limits):
                if limit.burst_rows < batch:
                    raise ValueError(
                        f"plans.{plan_name}.rate_limits.{i}.burst: must be >= the largest "
                        f"batch the plan admits ({batch} rows), or that batch could never pass"
                    )
        return self

    @property
    def default_plan_name(self) -> str:
        assert self.default_plan is not None
        return self.default_plan

    @property
    def plan_names(self) -> list[str]:
        """Plan names, the default plan first."""
        return [self.default_plan_name, *(p for p in self.plans if p != self.default_plan)]
