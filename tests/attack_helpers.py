"""The unprotected victim the attack tests run against (import as ``from attack_helpers``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from helpers import make_policy
from modelshield.policy.schema import Policy


def open_policy(tmp_path: Path, demo_cache: Path, **plan: Any) -> Policy:
    """The demo model answering full probabilities: no shaping, no limits, memory store."""
    models = tmp_path / "state" / "models"
    models.mkdir(parents=True, exist_ok=True)
    for file in demo_cache.iterdir():
        (models / file.name).write_bytes(file.read_bytes())
    spec = {"outputs": ["probabilities", "label"], **plan}
    return make_policy(
        tmp_path, server={"max_batch_rows": 512, "max_body_bytes": 1 << 22}, plans={"open": spec}
    )


def victim(demo_cache: Path) -> Any:
    from modelshield.models.demo import load_or_train_digits

    return load_or_train_digits(demo_cache)


def held_out() -> tuple[np.ndarray, np.ndarray]:
    from modelshield.models.demo import digits_split

    _, rows, _, labels = digits_split()
    return rows, np.asarray(labels, dtype=np.int64)
