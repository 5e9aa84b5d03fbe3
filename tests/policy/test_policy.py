"""Policy files: validation with paths, unknown keys, the demo policy, `policy check`."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from modelshield.cli.main import _register, cli
from modelshield.errors import ConfigError, PolicyError
from modelshield.policy import demo_policy, load_policy, resolve_policy

GOOD = """
server:
  max_batch_rows: 100
storage:
  uri: sqlite:///state/ms.db
models:
  digits:
    backend: {kind: demo}
    input: {features: 64, min: 0, max: 16}
  scorer:
    backend: {kind: upstream, url: "http://127.0.0.1:9000", timeout_s: 2}
plans:
  free: {outputs: [label]}
  pro: {outputs: [probabilities, label], max_batch_rows: 50}
default_plan: pro
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def errors_of(tmp_path: Path, text: str) -> dict[str, str]:
    with pytest.raises(PolicyError) as info:
        load_policy(write(tmp_path, text))
    return dict(info.value.errors)


def test_demo_policy_is_valid_and_round_trips() -> None:
    policy = demo_policy()
    assert policy.default_plan_name == "free"
    assert list(policy.models) == ["digits"]
    assert policy.plan_names[0] == "free"


def test_good_policy_loads(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, GOOD))
    assert policy.default_plan_name == "pro"
    assert policy.plan_names == ["pro", "free"]
    assert policy.models["scorer"].backend.kind == "upstream"
    assert policy.server.max_batch_rows == 100


def test_every_error_is_reported_with_its_path(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """
server: {max_batch_rows: 0, colour: blue}
models:
  digits:
    backend: {kind: sklearn}
    input: {features: -3}
plans:
  free: {max_batch_rows: 0, outputs: [logits]}
""",
    )
    assert errors["server.max_batch_rows"] == "must be > 0"
    assert errors["server.colour"] == "unknown key"
    assert errors["models.digits.backend.path"] == "required"
    assert errors["models.digits.input.features"] == "must be > 0"
    assert errors["plans.free.max_batch_rows"] == "must be > 0"
    assert "plans.free.outputs.0" in errors


def test_cross_reference_errors_name_their_path(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, GOOD.replace("default_plan: pro", "default_plan: gold"))
    assert "gold" in errors["(root)"]
    errors = errors_of(tmp_path, GOOD.replace("{outputs: [label]}", "{models: [nope]}"))
    assert "plans.free.models" in errors


def test_unknown_backend_kind_and_bad_storage_uri(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        GOOD.replace("kind: demo", "kind: tensorflow").replace(
            "sqlite:///state/ms.db", "not a uri"
        ),
    )
    assert any(path.startswith("models.digits.backend") for path in errors)
    assert "storage.uri" in errors


def test_yaml_and_file_errors(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, "models: [unclosed")
    assert "line" in errors["(yaml)"]
    errors = errors_of(tmp_path, "- just a list")
    assert errors["(root)"] == "the policy must be a YAML mapping"
    with pytest.raises(ConfigError, match="not found"):
        load_policy(tmp_path / "missing.yaml")


def test_resolve_prefers_argument_then_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, GOOD)
    monkeypatch.delenv("MODELSHIELD_CONFIG", raising=False)
    assert list(resolve_policy(None).models) == ["digits"]
    monkeypatch.setenv("MODELSHIELD_CONFIG", str(path))
    assert "scorer" in resolve_policy(None).models


def test_policy_check_command(tmp_path: Path) -> None:
    _register()
    runner = CliRunner()
    ok = runner.invoke(cli, ["policy", "check", str(write(tmp_path, GOOD))])
    assert ok.exit_code == 0 and "OK" in ok.output and "2 model(s)" in ok.output
    bad = write(tmp_path, GOOD.replace("max_batch_rows: 50", "max_batch_rows: -1, burst: 3"))
    result = runner.invoke(cli, ["policy", "check", str(bad)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert f"error: {bad}: plans.pro.max_batch_rows: must be > 0" in lines
    assert f"error: {bad}: plans.pro.burst: unknown key" in lines
    assert "Traceback" not in result.output
