"""Equation solving (Tramèr et al. 2016) recovers the logistic demo model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attack_helpers import held_out, open_policy, victim
from helpers import ADMIN_TOKEN, SERVER_SECRET
from modelshield.clock import FakeClock
from modelshield.evaluation.attacks.equation_solving import EquationSolving, solve_softmax
from modelshield.evaluation.metrics import fidelity
from modelshield.evaluation.targets import gateway_target
from modelshield.identity.secret import Secrets


def _secrets() -> Secrets:
    return Secrets(SERVER_SECRET, "test", ADMIN_TOKEN, "test")


async def test_one_query_per_parameter_reaches_99_percent_fidelity(
    tmp_path: Path, demo_cache: Path
) -> None:
    rows, _ = held_out()
    model = victim(demo_cache)
    policy = open_policy(tmp_path, demo_cache)
    async with gateway_target(policy, secrets=_secrets(), clock=FakeClock(1e9)) as targets:
        result = await EquationSolving(seed=3).run(targets[0])
    assert result.queries == 65 and result.stopped is None
    assert fidelity(result.clone.predict(rows), model.predict(rows)) >= 0.99
    # the parameters themselves are recovered (up to softmax's shift)
    estimator = result.clone.estimator
    recovered = estimator.coef_ / 16.0
    expected = model.coef_ - model.coef_[0]
    np.testing.assert_allclose(recovered, expected, atol=1e-3)
    proba = result.clone.predict_proba(rows)
    np.testing.assert_allclose(proba, model.predict_proba(rows), atol=1e-4)


async def test_top_k_answers_need_more_queries_but_still_leak(
    tmp_path: Path, demo_cache: Path
) -> None:
    rows, _ = held_out()
    model = victim(demo_cache)
    policy = open_policy(tmp_path, demo_cache, shaping={"minimize": {"top_k": 3}})
    async with gateway_target(policy, secrets=_secrets(), clock=FakeClock(1e9)) as targets:
        result = await EquationSolving(queries=400, seed=0).run(targets[0])
    assert (
        fidelity(result.clone.predict(rows), model.predict(rows)) >= 0.85
    )  # classes rarely in a top-3 stay underdetermined


async def test_label_only_answers_fall_back_to_a_trained_clone(
    tmp_path: Path, demo_cache: Path
) -> None:
    policy = open_policy(tmp_path, demo_cache, outputs=["label"])
    async with gateway_target(policy, secrets=_secrets(), clock=FakeClock(1e9)) as targets:
        result = await EquationSolving(seed=0).run(targets[0])
    assert result.queries == 65
    assert result.clone.estimator.__class__.__name__ == "LogisticRegression"


async def test_same_seed_same_clone(tmp_path: Path, demo_cache: Path) -> None:
    policy = open_policy(tmp_path, demo_cache)
    coefs = []
    for _ in range(2):
        async with gateway_target(policy, secrets=_secrets(), clock=FakeClock(1e9)) as targets:
            result = await EquationSolving(seed=7).run(targets[0])
        coefs.append(result.clone.estimator.coef_)
    np.testing.assert_array_equal(coefs[0], coefs[1])


def test_solver_on_a_hand_built_softmax_with_hidden_classes() -> None:
    w = np.array([[0.0, 0.0], [1.0, -2.0], [0.5, 0.5]])
    b = np.array([0.0, 0.3, -0.1])
    x = np.random.default_rng(0).uniform(-1, 1, (12, 2))
    z = x @ w.T + b
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    p[::2, 0] = np.nan  # class 0 hidden on every other row
    coef, intercept = solve_softmax(x, p)
    np.testing.assert_allclose(coef, w, atol=1e-9)
    np.testing.assert_allclose(intercept, b, atol=1e-9)
    assert solve_softmax(x[:1], np.full((1, 3), np.nan))[0] == pytest.approx(np.zeros((3, 2)))
