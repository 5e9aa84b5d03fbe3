"""Fixtures of the monitor tests: the demo model's baseline, computed once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streams import Digits

from helpers import demo_state, make_policy
from modelshield.monitor.calibration import baseline
from modelshield.monitor.detectors import RiskScorer
from modelshield.policy.schema import Policy


@pytest.fixture(scope="session")
def digits(demo_cache: Path) -> Digits:
    from modelshield.models.demo import digits_split, load_or_train_digits

    model = load_or_train_digits(demo_cache)
    train, test, _, test_labels = digits_split()
    reference, benign = baseline(train, model.predict_proba(train))
    scorer = RiskScorer(target_fpr=0.01).fit(benign)
    return Digits(model, train, test, np.asarray(test_labels), reference, benign, scorer)


MONITORING: dict[str, Any] = {
    "enabled": True,
    "min_rows": 50,
    "persist_interval_s": 1,
    "degrade_level": "degraded",
    "actions": {"low": "notify", "medium": "notify", "high": "degrade", "critical": "suspend"},
    "signup": {"enabled": True, "tos_version": "2024-06", "burst_size": 5},
}


@pytest.fixture(scope="session")
def monitor_cache(demo_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model plus the monitor's cached baseline, built once."""
    import asyncio

    from modelshield.clock import FakeClock
    from modelshield.models.demo import DigitsModel
    from modelshield.monitor.service import Monitor
    from modelshield.storage.memory import MemoryStore

    root = tmp_path_factory.mktemp("monitor-cache")
    models = demo_state(root / "state", demo_cache) / "models"
    policy = monitored_policy_at(root)
    monitor = Monitor(policy, MemoryStore(), FakeClock(), backends={"digits": DigitsModel(models)})
    asyncio.run(monitor._load_baseline())
    return models


def monitored_policy_at(tmp_path: Path, **monitoring: Any) -> Policy:
    return make_policy(
        tmp_path,
        monitoring={**MONITORING, **monitoring},
        shaping_levels={"degraded": {"label_only": True}},
    )


@pytest.fixture
def monitored_policy(tmp_path: Path, monitor_cache: Path) -> Policy:
    models = tmp_path / "state" / "models"
    models.mkdir(parents=True, exist_ok=True)
    for file in monitor_cache.iterdir():
        (models / file.name).write_bytes(file.read_bytes())
    return monitored_policy_at(tmp_path)
