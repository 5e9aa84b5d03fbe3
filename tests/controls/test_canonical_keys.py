"""Shaping is a deterministic function of HMAC(secret, canonical input) (DESIGN invariant 2)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from modelshield.controls.canonical import CanonicalInput, keyed_uniform, snap_rows
from modelshield.controls.query import Prediction, Query
from modelshield.controls.shaping import PolicyShaper, ShapingChain
from modelshield.identity.records import Account
from modelshield.policy.schema import InputSpec, Policy
from modelshield.policy.shaping import ShapingSpec
from shaping_helpers import SECRET, make_rows, shaping_policy_data

KEYED = ShapingSpec.model_validate(
    {
        "perturb": [{"kind": "misinformation", "threshold": 0.9}, {"kind": "noise", "level": 0.05}],
        "minimize": {"top_k": 3, "decimals": 4},
    }
)


def answer(chain: ShapingChain, keys: list[bytes], p: np.ndarray) -> np.ndarray:
    result = chain(p, keys)
    assert result.columns is not None
    return np.concatenate([result.values, result.columns], axis=1)


grid_rows = st.integers(0, 2**32 - 1).map(
    lambda seed: np.random.default_rng(seed).integers(-50, 50, size=(3, 8)).astype(np.float64)
)


@settings(max_examples=60, deadline=None)
@given(
    grid_rows,
    st.sampled_from([0.25, 0.5, 1.0, 0.1, 1e-3]),
    st.integers(0, 2**32 - 1),
)
def test_jitter_below_the_resolution_gets_the_identical_answer(
    cells: np.ndarray, resolution: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    rows = cells * resolution
    jitter = rng.uniform(-0.45, 0.45, size=rows.shape) * resolution
    canonical = CanonicalInput(SECRET, resolution, context="digits")
    assert canonical(rows) == canonical(rows + jitter)
    p = make_rows("low-confidence-tie", rng, 3, 10)
    chain = ShapingChain(KEYED)
    np.testing.assert_array_equal(
        answer(chain, canonical(rows), p), answer(chain, canonical(rows + jitter), p)
    )
    # a whole step away is another canonical input, with other noise
    moved = rows.copy()
    moved[:, 0] += resolution
    assert all(a != b for a, b in zip(canonical(rows), canonical(moved), strict=True))


def test_repeats_replicas_and_accounts_share_the_key_secrets_and_models_do_not() -> None:
    rows = np.arange(16, dtype=np.float64).reshape(2, 8)
    first = CanonicalInput(SECRET, 1.0, context="digits")(rows)
    replica = CanonicalInput(bytes(SECRET), 1.0, context="digits")  # another process
    assert replica(rows) == first == replica(rows.copy())
    assert CanonicalInput(b"another-secret-0123456789", 1.0, "digits")(rows) != first
    assert CanonicalInput(SECRET, 1.0, context="scorer")(rows) != first
    assert CanonicalInput(SECRET, 0.5, context="digits")(rows) != first
    assert first[0] != first[1] and all(len(k) == 32 for k in first)
    # -0.0 and 0.0 are the same input
    assert CanonicalInput(SECRET, 1.0)(np.array([[-0.0, 1.0]])) == CanonicalInput(SECRET, 1.0)(
        np.array([[0.0, 1.0]])
    )


def test_a_different_secret_gives_different_noise_with_the_same_statistics() -> None:
    rng = np.random.default_rng(3)
    rows = rng.integers(0, 17, size=(400, 64)).astype(np.float64)
    p = make_rows("dirichlet", rng, 400, 10)
    chain = ShapingChain(
        ShapingSpec.model_validate({"perturb": [{"kind": "noise", "level": 0.05}]})
    )
    ours = chain.perturb(p, CanonicalInput(SECRET, 1.0, "digits")(rows))
    theirs = chain.perturb(p, CanonicalInput(b"other-secret-0123456789", 1.0, "digits")(rows))
    assert (np.abs(ours - theirs).sum(axis=1) > 1e-6).all()
    for shaped in (ours, theirs):
        np.testing.assert_allclose(np.abs(shaped - p).sum(axis=1).mean(), 0.05, rtol=0.02)


def test_keyed_uniforms_are_in_the_open_unit_interval_and_separate_by_purpose() -> None:
    keys = CanonicalInput(SECRET, 1.0)(np.arange(20, dtype=np.float64).reshape(10, 2))
    u = keyed_uniform(keys, 1000, "noise")
    assert u.shape == (10, 1000) and (u > 0).all() and (u < 1).all()
    assert abs(u.mean() - 0.5) < 0.02
    np.testing.assert_array_equal(u, keyed_uniform(keys, 1000, "noise"))
    np.testing.assert_array_equal(u[:, :10], keyed_uniform(keys, 10, "noise"))
    assert not np.allclose(u, keyed_uniform(keys, 1000, "misinformation"))


def test_policy_shapers_on_two_replicas_answer_identically() -> None:
    policy = Policy.model_validate(shaping_policy_data())
    rows = np.random.default_rng(0).integers(0, 17, size=(4, 64)).astype(np.float64)
    p = make_rows("low-confidence-tie", np.random.default_rng(1), 4, 10)
    answers = []
    for replica, account in enumerate(["acc_a", "acc_b"]):
        shaper = PolicyShaper(policy, SECRET)
        query = Query(
            account=Account(id=account, name=f"n{replica}", plan="free", created_at=0.0),
            key_id="k",
            plan=policy.plans["free"],
            model="digits",
            spec=policy.models["digits"],
            rows=rows,
            time=0.0,
        )
        prediction = Prediction.from_probabilities(p, None, ["probabilities", "label"])
        answers.append(shaper.shape(query, prediction))
        assert query.controls == ["noise", "minimization"]
    np.testing.assert_array_equal(answers[0].probabilities, answers[1].probabilities)
    np.testing.assert_array_equal(answers[0].columns, answers[1].columns)


def test_snapped_rows_are_the_canonical_rows_within_range() -> None:
    spec = InputSpec(min=0, max=16, resolution=1.0)
    rows = np.array([[0.49, 0.51, -0.0, 15.6, 16.0]])
    np.testing.assert_array_equal(snap_rows(rows, spec), [[0.0, 1.0, 0.0, 16.0, 16.0]])
    odd = InputSpec(min=0, max=1.19, resolution=0.3)
    assert snap_rows(np.array([[1.19]]), odd)[0, 0] == 1.19  # nearest step 1.2 is out of range
