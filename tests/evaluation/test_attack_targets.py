"""Query targets: answers decoded as the attacker sees them, 429s waited out."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from attack_helpers import open_policy, victim
from helpers import ADMIN_TOKEN, SERVER_SECRET
from modelshield.clock import FakeClock
from modelshield.evaluation.targets import (
    Answer,
    OipTarget,
    TargetRefused,
    decode_answer,
    gateway_target,
    retry_after_seconds,
)
from modelshield.identity.secret import Secrets


def _secrets() -> Secrets:
    return Secrets(SERVER_SECRET, "test", ADMIN_TOKEN, "test")


async def test_gateway_target_returns_the_victims_probabilities(
    tmp_path: Path, demo_cache: Path
) -> None:
    rows = np.random.default_rng(0).uniform(0, 16, (40, 64))
    policy = open_policy(tmp_path, demo_cache)
    async with gateway_target(policy, secrets=_secrets(), clock=FakeClock(1e9)) as targets:
        answer = await targets[0].query(rows)
        assert targets[0].queries == 40 and targets[0].throttled == 0
    assert answer.full and answer.probabilities is not None
    expected = victim(demo_cache).predict_proba(rows)
    np.testing.assert_allclose(answer.probabilities, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(answer.labels, expected.argmax(axis=1))


async def test_top_k_and_label_only_answers_reveal_what_they_reveal(
    tmp_path: Path, demo_cache: Path
) -> None:
    rows = np.random.default_rng(1).uniform(0, 16, (5, 64))
    policy = open_policy(tmp_path, demo_cache, shaping={"minimize": {"top_k": 3}})
    async with gateway_target(policy, secrets=_secrets(), clock=FakeClock(1e9)) as targets:
        answer = await targets[0].query(rows)
    assert answer.classes is not None and answer.classes.shape == (5, 3)
    dense = answer.dense(10)
    assert (np.isfinite(dense).sum(axis=1) == 3).all()
    np.testing.assert_array_equal(np.nanargmax(dense, axis=1), answer.labels)

    labels_only = decode_answer(
        {"outputs": [{"name": "label", "shape": [2], "datatype": "INT64", "data": [4, 7]}]}, 2
    )
    assert labels_only.probabilities is None and labels_only.labels.tolist() == [4, 7]
    assert np.isnan(labels_only.dense(10)).all()


def test_answer_dense_ignores_padding() -> None:
    answer = Answer(
        labels=np.array([2, 1]),
        probabilities=np.array([[0.7, 0.3], [0.9, 0.0]]),
        classes=np.array([[2, 0], [1, -1]]),
    )
    dense = answer.dense(3)
    assert dense[0].tolist()[:1] == [0.3] and dense[0, 2] == 0.7
    assert np.isnan(dense[1, [0, 2]]).all() and dense[1, 1] == 0.9


async def test_429s_are_waited_out_with_the_injected_sleep() -> None:
    calls = {"n": 0}
    slept: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] <= 2:
            return httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "slow"})
        return httpx.Response(
            200,
            json={"outputs": [{"name": "label", "shape": [1], "datatype": "INT64", "data": [5]}]},
        )

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), base_url="http://x"
    ) as client:
        target = OipTarget(client, "digits", "k", sleep=sleep)
        answer = await target.query(np.zeros((1, 64)))
        assert answer.labels.tolist() == [5]
        assert (target.throttled, target.waited, slept, target.queries) == (2, 14.0, [7, 7], 1)

        target.max_wait = 20.0
        calls["n"] = 0
        with pytest.raises(TargetRefused, match="max_wait"):
            await target.query(np.zeros((1, 64)))


async def test_other_refusals_end_the_attack() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(403, json={"detail": "account suspended"})
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        with pytest.raises(TargetRefused, match="suspended") as info:
            await OipTarget(client, "digits", "k").query(np.zeros((2, 64)))
    assert info.value.status == 403


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) == 1.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", 2.0) == 2.0
    assert retry_after_seconds("-1") == 1.0


async def test_a_too_large_body_is_resent_in_smaller_batches() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        rows = json.loads(request.content)["inputs"][0]["shape"][0]
        sizes.append(rows)
        if rows > 8:
            return httpx.Response(413, json={"detail": "too large"})
        out = {"name": "label", "shape": [rows], "datatype": "INT64", "data": [1] * rows}
        return httpx.Response(200, json={"outputs": [out]})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), base_url="http://x"
    ) as client:
        target = OipTarget(client, "digits", "k", batch_rows=32)
        answer = await target.query(np.zeros((20, 64)))
    assert answer.labels.shape == (20,) and target.batch_rows == 8
    # halved until a batch passes, then kept at that size
    assert sizes == [20, 16, 8, 8, 4]
