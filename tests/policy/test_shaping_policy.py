"""The shaping section of a policy: validation, level stacking, failing closed, metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelshield.controls.shaping import PolicyShaper, check_level, effective_spec, output_metadata
from modelshield.errors import ConfigError, InvalidInput, PolicyError
from modelshield.policy import demo_policy, load_policy, policy_from_mapping
from modelshield.policy.schema import Policy
from modelshield.policy.shaping import LABEL_ONLY, MinimizationSpec, ShapingSpec
from shaping_helpers import SECRET, shaping_policy_data

YAML = """
models:
  digits:
    backend: {kind: demo}
    input: {features: 64, min: 0, max: 16, resolution: 1.0, snap: true}
plans:
  free:
    outputs: [probabilities, label]
    shaping:
      perturb:
        - {kind: misinformation, threshold: 0.6}
        - {kind: noise, level: 0.02}
        - {kind: reverse_sigmoid, beta: 0.5, gamma: 0.2}
      minimize: {top_k: 3, decimals: 3, floor: 0.001}
shaping_levels:
  degraded: {perturb: [{kind: noise, level: 0.05}], minimize: {top_k: 1, decimals: 2}}
  labels-only: {label_only: true}
"""


def errors_of(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(PolicyError) as info:
        policy_from_mapping(data, "p.yaml")
    return dict(info.value.errors)


def test_a_policy_with_shaping_loads(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(YAML)
    policy = load_policy(path)
    shaping = policy.plans["free"].shaping
    assert [p.kind for p in shaping.perturb] == ["misinformation", "noise", "reverse_sigmoid"]
    assert shaping.minimize.top_k == 3 and shaping.minimize.sparse
    assert policy.models["digits"].input.resolution == 1.0
    assert set(policy.shaping_levels) == {"degraded", "labels-only"}


def test_the_demo_policy_shapes_its_default_plan() -> None:
    policy = demo_policy()
    free = policy.plans["free"].shaping
    assert free.minimize == MinimizationSpec(top_k=3, decimals=3)
    assert [(p.kind, getattr(p, "level", None)) for p in free.perturb] == [
        ("misinformation", None),
        ("noise", 0.02),
    ]
    assert policy.plans["labels"].outputs == ["label"]
    assert policy.shaping_levels["labels-only"].label_only


@pytest.mark.parametrize(
    ("shaping", "path", "message"),
    [
        ({"perturb": [{"kind": "noise", "level": 2}]}, "perturb.0.level", "must be <= 1"),
        ({"perturb": [{"kind": "noise"}]}, "perturb.0.level", "required"),
        ({"perturb": [{"kind": "blur"}]}, "perturb.0", "does not match any of the expected tags"),
        ({"perturb": [{"kind": "reverse_sigmoid", "beta": 0}]}, "perturb.0.beta", "must be > 0"),
        ({"minimize": {"top_k": 0}}, "minimize.top_k", "must be >= 1"),
        ({"minimize": {"decimals": 12}}, "minimize.decimals", "must be <= 8"),
        ({"minimize": {"round": 3}}, "minimize.round", "unknown key"),
        ({"noise": 0.02}, "noise", "unknown key"),
    ],
)
def test_shaping_errors_are_reported_with_their_path(
    shaping: dict[str, Any], path: str, message: str
) -> None:
    errors = errors_of(shaping_policy_data(plans={"free": {"shaping": shaping}}, shaping_levels={}))
    full = f"plans.free.shaping.{path}"
    assert full in errors, errors
    assert message in errors[full]


def test_level_names_and_resolution_are_validated() -> None:
    errors = errors_of(shaping_policy_data(shaping_levels={"bad name!": {}}))
    assert any(path.startswith("shaping_levels") for path in errors)
    data = shaping_policy_data()
    data["models"]["digits"]["input"]["resolution"] = 0
    assert errors_of(data)["models.digits.input.resolution"] == "must be > 0.0"


def test_a_level_stacks_on_the_plan_and_never_weakens_it() -> None:
    plan = ShapingSpec.model_validate(
        {
            "perturb": [{"kind": "noise", "level": 0.01}],
            "minimize": {"top_k": 3, "decimals": 2, "floor": 0.05},
        }
    )
    level = ShapingSpec.model_validate(
        {
            "perturb": [{"kind": "reverse_sigmoid"}],
            "minimize": {"top_k": 5, "decimals": 4, "floor": 0.01, "renormalize": True},
        }
    )
    stacked = plan.stacked(level)
    assert [p.kind for p in stacked.perturb] == ["noise", "reverse_sigmoid"]
    assert stacked.minimize == MinimizationSpec(top_k=3, decimals=2, floor=0.05, renormalize=True)
    assert plan.stacked(LABEL_ONLY).label_only and not stacked.label_only
    assert ShapingSpec().is_identity and not stacked.is_identity


def test_unknown_levels_fail_closed_to_label_only() -> None:
    policy = Policy.model_validate(shaping_policy_data())
    spec, known = effective_spec(policy, "raw", "no-such-level")
    assert not known and spec.label_only
    shaper = PolicyShaper(policy, SECRET)
    chain, known = shaper.chain("free", "no-such-level")
    assert not known and chain.label_only and chain.names == ["label-only"]
    assert shaper.chain("free", "degraded")[1]
    assert output_metadata(policy, "raw", "no-such-level", 10) == [
        {"name": "label", "datatype": "INT64", "shape": [-1]}
    ]


def test_check_level_lists_the_known_levels() -> None:
    policy = Policy.model_validate(shaping_policy_data())
    assert check_level(policy, None) is None
    assert check_level(policy, "degraded") == "degraded"
    with pytest.raises(InvalidInput, match="levels: degraded, labels-only"):
        check_level(policy, "gold")


def test_keyed_shaping_needs_the_server_secret() -> None:
    policy = Policy.model_validate(shaping_policy_data())
    with pytest.raises(ConfigError, match="server secret"):
        PolicyShaper(policy, None)
    unkeyed = shaping_policy_data(
        plans={"free": {"shaping": {"perturb": [{"kind": "reverse_sigmoid"}]}}}, shaping_levels={}
    )
    PolicyShaper(Policy.model_validate(unkeyed), None)


def test_output_metadata_follows_minimization() -> None:
    floor = shaping_policy_data(
        plans={"free": {"shaping": {"minimize": {"floor": 0.01, "top_k": 4}}}}, shaping_levels={}
    )
    meta = output_metadata(Policy.model_validate(floor), "free", None, 10)
    assert [o["shape"] for o in meta] == [[-1, -1], [-1, -1], [-1]]
    big_k = shaping_policy_data(
        plans={"free": {"shaping": {"minimize": {"top_k": 50}}}}, shaping_levels={}
    )
    meta = output_metadata(Policy.model_validate(big_k), "free", None, 10)
    assert meta[0]["shape"] == [-1, 10]
    no_label = shaping_policy_data(
        plans={"free": {"outputs": ["probabilities"], "shaping": {"label_only": True}}},
        shaping_levels={},
    )
    # label-only answers carry the label even where the plan lists only probabilities
    meta = output_metadata(Policy.model_validate(no_label), "free", None, 10)
    assert [o["name"] for o in meta] == ["label"]
