"""The unprotected victim the attack tests run against (import as ``from attack_helpers``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from helpers import ADMIN_TOKEN, SERVER_SECRET, make_policy
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
    models = tmp_path / "state" / "models"
    models.mkdir(parents=True, exist_ok=True)
    for file in demo_cache.iterdir():
        (models / file.name).write_bytes(file.read_bytes())
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
