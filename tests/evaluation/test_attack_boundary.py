"""ActiveThief-style boundary attacks (Pal et al. 2020): querying where the clone is
unsure beats querying the same pool at random, for the same budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from attack_helpers import attack_secrets, held_out, open_policy, victim
from modelshield.clock import FakeClock
from modelshield.evaluation.attacks.base import AttackResult
from modelshield.evaluation.attacks.boundary import BoundaryAttack, Strategy
from modelshield.evaluation.metrics import fidelity
from modelshield.evaluation.targets import gateway_target
from modelshield.policy.schema import Policy


async def _run(policy: Policy, strategy: Strategy, seed: int = 0) -> AttackResult:
    attack = BoundaryAttack(
        queries=400, initial=100, batch=100, pool=2000, strategy=strategy, seed=seed
    )
    async with gateway_target(policy, secrets=attack_secrets(), clock=FakeClock(1e9)) as targets:
        result = await attack.run(targets[0])
    assert result.queries == 400 and result.stopped is None
    return result


def _rows(result: AttackResult) -> np.ndarray:
    assert result.rows is not None
    return result.rows


def _victim_margin(model: Any, rows: np.ndarray) -> float:
    """Mean top-1 minus top-2 probability of the victim (small: near its boundary)."""
    top = np.sort(model.predict_proba(rows), axis=1)
    return float((top[:, -1] - top[:, -2]).mean())


async def test_uncertainty_sampling_beats_random_rows_from_the_same_pool(
    tmp_path: Path, demo_cache: Path
) -> None:
    rows, _ = held_out()
    model = victim(demo_cache)
    expected = model.predict(rows)
    policy = open_policy(tmp_path, demo_cache, outputs=["label"])
    results = {s: await _run(policy, s) for s in ("uncertainty", "random", "walk")}
    score = {s: fidelity(r.clone.predict(rows), expected) for s, r in results.items()}
    # measured at seed 0: uncertainty 0.956, random 0.933, walk 0.829 (400 labels)
    assert score["uncertainty"] >= 0.94
    assert score["uncertainty"] > score["random"]
    # the same random initial set, then rows near the boundary: the victim is far less
    # sure about the rows the uncertainty and walk strategies chose (measured 0.26 and
    # 0.27 mean top-1/top-2 margin against 0.47 for random picks)
    queried = {s: _rows(r) for s, r in results.items()}
    np.testing.assert_array_equal(queried["uncertainty"][:100], queried["random"][:100])
    chosen = {s: _victim_margin(model, q[100:]) for s, q in queried.items()}
    assert chosen["uncertainty"] < 0.7 * chosen["random"]
    assert chosen["walk"] < 0.7 * chosen["random"]


async def test_same_seed_same_queries_and_clone(tmp_path: Path, demo_cache: Path) -> None:
    rows, _ = held_out()
    policy = open_policy(tmp_path, demo_cache, outputs=["label"])
    first, again, other = [await _run(policy, "uncertainty", seed) for seed in (5, 5, 6)]
    np.testing.assert_array_equal(_rows(first), _rows(again))
    np.testing.assert_array_equal(first.clone.predict(rows), again.clone.predict(rows))
    assert not np.array_equal(_rows(first), _rows(other))
