"""Scenarios: a policy, the attacks to run against it, a benign population and seeds.

A scenario is one YAML document (unknown keys are errors, like the policy file)::

    name: default
    seed: 0
    policy: demo                 # "demo", a policy file (relative to this file), or a mapping
    overrides:                   # dotted paths into the policy, applied before validation
      plans.free.shaping.perturb.1.level: 0.05
    plan: null                   # attackers' and benign accounts' plan (default: the policy's)
    baseline: true               # also run every attack against the unprotected model
    checkpoints: [100, 250, 500, 1000, 2000]   # queries at which clones are scored
    pace_s: 0.05                 # simulated seconds between one attacker's requests
    benign: {accounts: 20, horizon_s: 7200, rows_per_account: 200, mix: {steady: 1}}
    attacks:
      - {kind: uniform, queries: 2000}
      - {kind: knockoff, queries: 2000, label: knockoff-sybil, accounts: 10,
         addresses: subnet, params: {sampling: adaptive}}
    sweep:                       # optional: run everything once per combination
      plans.free.shaping.perturb.1.level: [0.0, 0.02, 0.05]

The built-in scenarios ship in ``evaluation/scenarios/`` and are named without the
suffix (``modelshield evaluate --scenario quick``).

Example:
    >>> s = Scenario.model_validate({"attacks": [{"kind": "uniform", "queries": 50}]})
    >>> s.attacks[0].label, s.policy
    ('uniform', 'demo')
    >>> apply_overrides({"a": {"b": [1, 2]}}, {"a.b.1": 5})
    {'a': {'b': [1, 5]}}
"""

from __future__ import annotations

import copy
import itertools
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from modelshield.errors import ConfigError, PolicyError
from modelshield.evaluation.benign import BEHAVIOURS
from modelshield.policy.demo import DEMO_POLICY
from modelshield.policy.loader import policy_from_mapping
from modelshield.policy.schema import Policy


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BenignSpec(_Strict):
    accounts: int = Field(default=20, ge=0, le=10_000)
    horizon_s: float = Field(default=7200.0, gt=0)
    rows_per_account: int = Field(default=200, gt=0)
    mix: dict[str, float] | None = None

    @field_validator("mix")
    @classmethod
    def _known_behaviours(cls, mix: dict[str, float] | None) -> dict[str, float] | None:
        # checked here, not when the population is drawn, so the error names its path
        if mix is None:
            return mix
        unknown = sorted(set(mix) - set(BEHAVIOURS))
        if unknown:
            raise ValueError(f"unknown behaviour {unknown[0]!r}; known: {', '.join(BEHAVIOURS)}")
        if any(weight < 0 for weight in mix.values()) or not any(mix.values()):
            raise ValueError("weights must be >= 0 and not all 0")
        return mix


class AttackSpec(_Strict):
    kind: str = Field(min_length=1)
    label: str | None = Field(default=None, description="Name in reports (default: kind).")
    queries: int | None = Field(default=None, gt=0)
    accounts: int = Field(default=1, ge=1, le=1000, description="More than 1: a Sybil split.")
    addresses: Literal["same", "subnet", "distinct"] = Field(
        default="same",
        description="Where a Sybil's accounts come from: one address, one /24, or spread.",
    )
    seed: int | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_label(self) -> AttackSpec:
        if self.label is None:
            suffix = f"-sybil{self.accounts}" if self.accounts > 1 else ""
            object.__setattr__(self, "label", f"{self.kind}{suffix}")
        return self

    @property
    def name(self) -> str:
        assert self.label is not None
        return self.label


class Scenario(_Strict):
    name: str = "scenario"
    description: str = ""
    seed: int = 0
    policy: str | dict[str, Any] = "demo"
    overrides: dict[str, Any] = Field(default_factory=dict)
    plan: str | None = None
    model: str | None = None
    baseline: bool = True
    checkpoints: list[int] = Field(default_factory=lambda: [100, 250, 500, 1000, 2000, 4000])
    pace_s: float = Field(default=0.05, ge=0)
    benign: BenignSpec = Field(default_factory=BenignSpec)
    attacks: list[AttackSpec] = Field(min_length=1)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    source_dir: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _labels_unique(self) -> Scenario:
        names = [a.name for a in self.attacks]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"attacks: label {twice[0]!r} is used twice; give each a label")
        for key, values in self.sweep.items():
            if not values:
                raise ValueError(f"sweep.{key}: give at least one value")
        return self

    def policy_mapping(self) -> dict[str, Any]:
        """The policy document before overrides."""
        if isinstance(self.policy, dict):
            return copy.deepcopy(self.policy)
        if self.policy == "demo":
            return copy.deepcopy(DEMO_POLICY)
        path = Path(self.policy)
        if not path.is_absolute() and self.source_dir is not None:
            path = Path(self.source_dir) / path
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"scenario {self.name!r}: policy file not found: {path}") from None
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"scenario {self.name!r}: cannot read {path}: {exc}") from None
        if not isinstance(data, dict):
            raise PolicyError(str(path), [("(root)", "the policy must be a YAML mapping")])
        return data

    def variants(self) -> list[dict[str, Any]]:
        """One override set per sweep combination (``[{}]`` without a sweep)."""
        keys = list(self.sweep)
        return [
            dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(self.sweep[k] for k in keys))
        ]

    def build_policy(self, variant: dict[str, Any] | None = None) -> Policy:
        """The validated policy with the overrides and one sweep ``variant`` applied."""
        data = apply_overrides(self.policy_mapping(), {**self.overrides, **(variant or {})})
        return policy_from_mapping(data, f"scenario {self.name!r} policy")

    def unprotected_policy(self) -> Policy:
        """The same models with every protection off: the baseline an attack is measured
        against (full probabilities, no shaping, no limits or budgets, no monitoring)."""
        data = apply_overrides(self.policy_mapping(), self.overrides)
        for plan in data.get("plans", {}).values():
            if isinstance(plan, dict):
                for key in ("shaping", "rate_limits", "budgets"):
                    plan.pop(key, None)
                plan["outputs"] = ["probabilities", "label"]
        monitoring = data.setdefault("monitoring", {})
        if isinstance(monitoring, dict):
            monitoring["enabled"] = False
        data["shaping_levels"] = {}
        if isinstance(monitoring, dict):
            monitoring.pop("degrade_level", None)
        return policy_from_mapping(data, f"scenario {self.name!r} unprotected policy")


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set each dotted ``path`` of ``overrides`` in ``data`` (list items by index)."""
    for path, value in overrides.items():
        parts = path.split(".")
        node: Any = data
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"override {path!r}: {where} is not an item of the list")
                if last:
                    node[int(part)] = copy.deepcopy(value)
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = copy.deepcopy(value)
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(f"override {path!r}: {where} is inside a plain value")
    return data


def builtin_scenarios() -> list[str]:
    """Names of the scenarios that ship with modelshield."""
    folder = resources.files("modelshield.evaluation") / "scenarios"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_scenario(ref: str) -> Scenario:
    """A scenario by built-in name or YAML file path."""
    path = Path(ref)
    if ref in builtin_scenarios() and not path.exists():
        folder = resources.files("modelshield.evaluation") / "scenarios"
        text = (folder / f"{ref}.yaml").read_text(encoding="utf-8")
        return scenario_from_text(text, f"scenario {ref!r}", None)
    if not path.exists():
        known = ", ".join(builtin_scenarios())
        raise ConfigError(
            f"no scenario file {ref!r} and no built-in scenario of that name ({known})"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read scenario {path}: {exc.strerror}") from None
    return scenario_from_text(text, str(path), str(path.parent))


def scenario_from_text(text: str, source: str, source_dir: str | None) -> Scenario:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(source, [("(yaml)", str(getattr(exc, "problem", exc)))]) from None
    if not isinstance(data, dict):
        raise PolicyError(source, [("(root)", "a scenario must be a YAML mapping")])
    try:
        return Scenario.model_validate({**data, "source_dir": source_dir})
    except ValidationError as exc:
        errors = [
            (".".join(str(p) for p in e["loc"]) or "(root)", e["msg"].removeprefix("Value error, "))
            for e in exc.errors()
        ]
        raise PolicyError(source, errors) from None
