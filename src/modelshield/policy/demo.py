"""The built-in demo policy: the ``digits`` model, SQLite under ``./.modelshield/``."""

from __future__ import annotations

from typing import Any

from modelshield.policy.schema import Policy

DEMO_POLICY: dict[str, Any] = {
    "version": 1,
    "server": {"state_dir": ".modelshield", "max_body_bytes": 1_048_576, "max_batch_rows": 256},
    "storage": {"uri": "sqlite:///.modelshield/modelshield.db"},
    "models": {
        "digits": {
            "backend": {"kind": "demo", "name": "digits"},
            "version": "1",
            "input": {"name": "input-0", "datatype": "FP32", "features": 64, "min": 0, "max": 16},
        }
    },
    "plans": {
        "free": {
            "description": "Default demo plan: probabilities and label.",
            "outputs": ["probabilities", "label"],
            "max_batch_rows": 64,
        },
        "labels": {
            "description": "Label-only answers.",
            "outputs": ["label"],
            "max_batch_rows": 64,
        },
    },
    "default_plan": "free",
}


def demo_policy() -> Policy:
    """A fresh copy of the built-in demo policy."""
    return Policy.model_validate(DEMO_POLICY)
