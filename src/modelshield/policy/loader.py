"""Reading a policy file and reporting every problem with its path.

Example:
    >>> try:
    ...     policy_from_mapping({"models": {}, "plans": {"free": {"max_batch_rows": 0}}}, "p.yaml")
    ... except PolicyError as err:
    ...     print(err.errors[0])
    ('models', 'must have at least 1 entry')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from modelshield.errors import ConfigError, PolicyError
from modelshield.policy.demo import demo_policy
from modelshield.policy.schema import Policy

CONFIG_ENV = "MODELSHIELD_CONFIG"
_BACKEND_TAGS = {"demo", "sklearn", "callable", "onnx", "upstream"}
_PERTURBATION_TAGS = {"noise", "reverse_sigmoid", "misinformation"}


def _message(error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        ops = {
            "greater_than": (">", "gt"),
            "greater_than_equal": (">=", "ge"),
            "less_than": ("<", "lt"),
            "less_than_equal": ("<=", "le"),
        }
        op, key = ops[kind]
        return f"must be {op} {ctx.get(key)}"
    if kind == "too_short" and ctx.get("min_length") is not None:
        return f"must have at least {ctx['min_length']} entry"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for i, part in enumerate(loc):
        # pydantic adds the discriminator value to the path of a tagged union member
        if i > 0 and loc[i - 1] == "backend" and part in _BACKEND_TAGS:
            continue
        if i > 1 and loc[i - 2] == "perturb" and part in _PERTURBATION_TAGS:
            continue
        parts.append(str(part))
    return ".".join(parts)


def policy_from_mapping(data: Any, source: str = "<policy>") -> Policy:
    """Validate an already-parsed policy document."""
    if not isinstance(data, dict):
        raise PolicyError(source, [("(root)", "the policy must be a YAML mapping")])
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        errors: list[tuple[str, str]] = []
        for error in exc.errors():
            path = _path(tuple(error["loc"]))
            message = _message(error)
            if not path and ": " in message:
                path, message = message.split(": ", 1)
            errors.append((path or "(root)", message))
        raise PolicyError(source, errors) from None


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Load and validate the policy file at ``path``."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"policy file not found: {file}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {file}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise PolicyError(str(file), [("(yaml)", f"{problem}{where}")]) from None
    return policy_from_mapping(data, str(file))


def resolve_policy(config: str | os.PathLike[str] | None) -> Policy:
    """The policy named by ``config``, else by ``$MODELSHIELD_CONFIG``, else the demo policy."""
    chosen = config if config is not None else os.environ.get(CONFIG_ENV) or None
    if chosen is None:
        return demo_policy()
    return load_policy(chosen)
