"""Uniform random queries: a clone trained on the labels; reproducible per seed."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np

from attack_helpers import held_out, open_policy, victim
from helpers import ADMIN_TOKEN, SERVER_SECRET
from modelshield.clock import FakeClock
from modelshield.evaluation.attacks.uniform import UniformQueries
from modelshield.evaluation.metrics import fidelity
from modelshield.evaluation.targets import OipTarget, gateway_target
from modelshield.identity.secret import Secrets


def _secrets() -> Secrets:
    return Secrets(SERVER_SECRET, "test", ADMIN_TOKEN, "test")


async def test_uniform_queries_clone_the_linear_victim(tmp_path: Path, demo_cache: Path) -> None:
    rows, _ = held_out()
    expected = victim(demo_cache).predict(rows)
    policy = open_policy(tmp_path, demo_cache, outputs=["label"])
    predictions = []
    for _ in range(2):
        async with gateway_target(policy, secrets=_secrets(), clock=FakeClock(1e9)) as targets:
            result = await UniformQueries(queries=1000, seed=5).run(targets[0])
        predictions.append(result.clone.predict(rows))
    assert result.queries == 1000 and result.stopped is None
    assert fidelity(predictions[0], expected) >= 0.85
    np.testing.assert_array_equal(predictions[0], predictions[1])


async def test_a_refusal_ends_querying_and_the_clone_uses_what_came_back() -> None:
    answered = {"rows": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if answered["rows"] >= 64:
            return httpx.Response(403, json={"detail": "account suspended"})
        answered["rows"] += 32
        labels = [i % 10 for i in range(32)]
        out = {"name": "label", "shape": [32], "datatype": "INT64", "data": labels}
        return httpx.Response(200, json={"outputs": [out]})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), base_url="http://x"
    ) as client:
        target = OipTarget(client, "digits", "k", batch_rows=32)
        result = await UniformQueries(queries=200, seed=0).run(target)
    assert result.queries == 64 and result.stopped is not None and "403" in result.stopped
    assert set(result.clone.predict(np.zeros((3, 64)))) <= set(range(10))
