"""Concurrent requests make their model calls back to back, then are shaped."""

from __future__ import annotations

import asyncio

import numpy as np

from modelshield.controls.pipeline import Pipeline
from modelshield.controls.query import Prediction, Query
from modelshield.identity.records import Account
from modelshield.policy import demo_policy


class RecordingBackend:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def predict(self, rows: np.ndarray) -> np.ndarray:
        self.log.append("model")
        return np.tile([0.25, 0.75], (rows.shape[0], 1))


class RecordingShaper:
    name = "recording"

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def shape(self, query: Query, prediction: Prediction) -> Prediction:
        self.log.append("shape")
        return prediction


def query(policy_plan: str = "free") -> Query:
    policy = demo_policy()
    return Query(
        account=Account("a1", "acme", policy_plan, 0.0),
        key_id="k1",
        plan=policy.plans[policy_plan],
        model="digits",
        spec=policy.models["digits"],
        rows=np.zeros((1, 64)),
        time=0.0,
    )


async def test_model_calls_of_concurrent_requests_run_before_any_is_shaped() -> None:
    log: list[str] = []
    pipeline = Pipeline([], {"digits": RecordingBackend(log)}, [RecordingShaper(log)])
    answers = await asyncio.gather(*(pipeline.run(query()) for _ in range(3)))
    assert log == ["model", "model", "model", "shape", "shape", "shape"]
    assert [a.labels.tolist() for a in answers] == [[1], [1], [1]]
