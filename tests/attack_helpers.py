"""The unprotected victim the attack tests run against (import as ``from attack_helpers``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from helpers import ADMIN_TOKEN, SERVER_SECRET, demo_state, make_policy
from modelshield.identity.secret import Secrets
from modelshield.policy.schema import Policy


def open_policy(
    tmp_path: Path,
    demo_cache: Path,
    *,
    model_input: dict[str, Any] | None = None,
    signup: bool = False,
    **plan: Any,
) -> Policy:
    """The demo model answering full probabilities: no shaping, no limits, memory store.

    ``model_input`` updates the model's ``input`` section (resolution, snap);
    ``signup`` enables ``POST /v1/signup``; ``plan`` updates the one plan, ``open``.
    """
    demo_state(tmp_path / "state", demo_cache)
    spec = {"outputs": ["probabilities", "label"], **plan}
    extra: dict[str, Any] = {}
    if model_input is not None:
        extra["models"] = {
            "digits": {
                "backend": {"kind": "demo"},
                "input": {"name": "input-0", "features": 64, "min": 0, "max": 16, **model_input},
            }
        }
    if signup:
        extra["monitoring"] = {"signup": {"enabled": True}}
    return make_policy(
        tmp_path,
        server={"max_batch_rows": 512, "max_body_bytes": 1 << 22},
        plans={"open": spec},
        **extra,
    )


def attack_secrets() -> Secrets:
    return Secrets(SERVER_SECRET, "test", ADMIN_TOKEN, "test")


def victim(demo_cache: Path) -> Any:
    from modelshield.models.demo import load_or_train_digits

    return load_or_train_digits(demo_cache)


def held_out() -> tuple[np.ndarray, np.ndarray]:
    from modelshield.models.demo import digits_split

    _, rows, _, labels = digits_split()
    return rows, np.asarray(labels, dtype=np.int64)


def tiny_scenario(state: Path, **fields: Any) -> dict[str, Any]:
    """A scenario on the demo policy that runs in seconds: equation solving (cheap to
    train) and two legitimate accounts over a simulated minute; ``fields`` replace its
    keys."""
    scenario: dict[str, Any] = {
        "name": "tiny",
        "seed": 3,
        "policy": "demo",
        "overrides": {"server.state_dir": str(state)},
        "checkpoints": [50],
        "benign": {
            "accounts": 2,
            "horizon_s": 60,
            "rows_per_account": 20,
            "mix": {"steady": 1, "trickle": 1},
        },
        "attacks": [{"kind": "equation-solving", "queries": 100}],
    }
    scenario.update(fields)
    return scenario
