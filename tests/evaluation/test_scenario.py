"""Scenario files: validation with paths, overrides, sweeps, the unprotected baseline."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelshield.errors import ConfigError, PolicyError
from modelshield.evaluation.scenario import (
    apply_overrides,
    builtin_scenarios,
    load_scenario,
    scenario_from_text,
)


def test_every_builtin_scenario_loads_and_builds_its_policies() -> None:
    names = builtin_scenarios()
    assert {"default", "quick", "sweep-noise"} <= set(names)
    for name in names:
        scenario = load_scenario(name)
        for variant in scenario.variants():
            scenario.build_policy(variant)
        unprotected = scenario.unprotected_policy()
        assert not unprotected.monitoring.enabled
        for plan in unprotected.plans.values():
            assert plan.rate_limits == [] and plan.budgets is None
            assert plan.shaping.perturb == [] and plan.outputs == ["probabilities", "label"]


def test_a_sweep_runs_every_combination_and_overrides_reach_the_policy() -> None:
    scenario = load_scenario("sweep-noise")
    levels = [v["plans.free.shaping.perturb.1.level"] for v in scenario.variants()]
    assert levels == [0.0, 0.02, 0.05, 0.1]
    policy = scenario.build_policy(scenario.variants()[2])
    assert policy.plans["free"].shaping.perturb[1].level == 0.05  # type: ignore[union-attr]


def test_unknown_keys_and_bad_values_are_reported_with_their_path() -> None:
    text = "attacks:\n  - {kind: uniform, queries: 0, colour: red}\nbenign: {accounts: -1}\n"
    with pytest.raises(PolicyError) as caught:
        scenario_from_text(text, "bad.yaml", None)
    paths = {path for path, _ in caught.value.errors}
    assert {"attacks.0.queries", "attacks.0.colour", "benign.accounts"} <= paths


def test_two_attacks_need_two_labels() -> None:
    text = "attacks:\n  - {kind: uniform}\n  - {kind: uniform}\n"
    with pytest.raises(PolicyError, match="label 'uniform' is used twice"):
        scenario_from_text(text, "dup.yaml", None)
    ok = scenario_from_text(
        "attacks:\n  - {kind: uniform}\n  - {kind: uniform, accounts: 4}\n", "ok.yaml", None
    )
    assert [a.name for a in ok.attacks] == ["uniform", "uniform-sybil4"]


def test_a_policy_file_is_found_next_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(
        "models: {m: {backend: {kind: demo}}}\nplans: {p: {}}\n", encoding="utf-8"
    )
    (tmp_path / "s.yaml").write_text(
        "policy: policy.yaml\nattacks: [{kind: uniform}]\n", encoding="utf-8"
    )
    scenario = load_scenario(str(tmp_path / "s.yaml"))
    assert list(scenario.build_policy().plans) == ["p"]
    (tmp_path / "t.yaml").write_text("policy: gone.yaml\nattacks: [{kind: uniform}]\n")
    with pytest.raises(ConfigError, match="policy file not found"):
        load_scenario(str(tmp_path / "t.yaml")).build_policy()


def test_an_override_that_breaks_the_policy_names_the_policy_path() -> None:
    scenario = scenario_from_text(
        "overrides: {plans.free.max_batch_rows: 0}\nattacks: [{kind: uniform}]\n", "s", None
    )
    with pytest.raises(PolicyError) as caught:
        scenario.build_policy()
    assert caught.value.errors[0][0] == "plans.free.max_batch_rows"


def test_overrides_walk_lists_and_refuse_paths_that_do_not_exist() -> None:
    data = {"a": {"b": [{"c": 1}, {"c": 2}]}, "x": 3}
    assert apply_overrides(data, {"a.b.1.c": 9, "a.new.k": True}) == {
        "a": {"b": [{"c": 1}, {"c": 9}], "new": {"k": True}},
        "x": 3,
    }
    with pytest.raises(ConfigError, match="not an item of the list"):
        apply_overrides(data, {"a.b.7.c": 1})
    with pytest.raises(ConfigError, match="inside a plain value"):
        apply_overrides(data, {"x.y": 1})


def test_an_unknown_scenario_lists_the_builtin_ones() -> None:
    with pytest.raises(ConfigError, match="default, quick, sweep-noise"):
        load_scenario("no-such-scenario")
