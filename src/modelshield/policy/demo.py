"""The built-in demo policy: the ``digits`` model, SQLite under ``./.modelshield/``."""

from __future__ import annotations

from typing import Any

from modelshield.policy.schema import Policy

# rows: 100 at once, then 2 per second per account; 200 then 4/s per client address;
# the whole model 5000 then 200/s
DEMO_RATE_LIMITS: list[dict[str, Any]] = [
    {"name": "burst", "scope": "account", "rate": 2, "per": "1s", "burst": 100},
    {"name": "per-address", "scope": "client", "rate": 4, "per": "1s", "burst": 200},
    {"name": "model-wide", "scope": "model", "rate": 200, "per": "1s", "burst": 5000},
]
DEMO_BUDGETS: dict[str, Any] = {"day": 20_000, "month": 200_000, "soft_threshold": 0.8}

DEMO_POLICY: dict[str, Any] = {
    "version": 1,
    "server": {"state_dir": ".modelshield", "max_body_bytes": 1_048_576, "max_batch_rows": 256},
    "storage": {"uri": "sqlite:///.modelshield/modelshield.db"},
    "models": {
        "digits": {
            "backend": {"kind": "demo", "name": "digits"},
            "version": "1",
            "input": {
                "name": "input-0",
                "datatype": "FP32",
                "features": 64,
                "min": 0,
                "max": 16,
                # pixel intensities are whole numbers: a row moved by under 0.5 per pixel
                # is the same image, and gets the same answer
                "resolution": 1.0,
                "snap": True,
            },
        }
    },
    "plans": {
        "free": {
            "description": "Default demo plan: top-3 perturbed probabilities (3 decimals, "
            "misinformation for low-confidence queries, 2% keyed noise) and the label.",
            "outputs": ["probabilities", "label"],
            "max_batch_rows": 64,
            "shaping": {
                # misinformation is what lowers a clone's fidelity (bench/shaping.py);
                # the keyed noise makes averaging copies useless
                "perturb": [
                    {"kind": "misinformation", "threshold": 0.5},
                    {"kind": "noise", "level": 0.02},
                ],
                "minimize": {"top_k": 3, "decimals": 3},
            },
            # A person with curl never meets these; a script hammering the demo meets a
            # 429 within a second or two.
            "rate_limits": DEMO_RATE_LIMITS,
            "budgets": DEMO_BUDGETS,
        },
        "labels": {
            "description": "Label-only answers.",
            "outputs": ["label"],
            "max_batch_rows": 64,
            "rate_limits": DEMO_RATE_LIMITS,
            "budgets": DEMO_BUDGETS,
        },
    },
    "default_plan": "free",
    "shaping_levels": {
        # an account's shaping level adds one of these on top of its plan's shaping
        "degraded": {
            "perturb": [{"kind": "noise", "level": 0.05}],
            "minimize": {"top_k": 1, "decimals": 2},
        },
        "labels-only": {"label_only": True},
    },
    # query monitoring: notify on medium risk, degrade to label-only answers on high,
    # suspend on critical; every action is recorded and can be undone
    "monitoring": {
        "enabled": True,
        "degrade_level": "labels-only",
        "actions": {"low": "notify", "medium": "notify", "high": "degrade", "critical": "suspend"},
        "signup": {"enabled": True, "tos_version": "1", "rate_limit": {"rate": 5, "per": "1h"}},
    },
}


def demo_policy() -> Policy:
    """A fresh copy of the built-in demo policy."""
    return Policy.model_validate(DEMO_POLICY)
