"""Hypothesis: every control and every composition keeps the top-1 and a valid answer.

Probability vectors of 2-1000 classes, including adversarial ones: low-confidence
near-ties down to a 1e-15 relative gap, exact ties, near-uniform rows, one-hot rows
and rows with exact zeros (DESIGN invariant 3).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelshield.controls.minimization import Minimization, Minimized
from modelshield.controls.misinformation import Misinformation
from modelshield.controls.noise import CalibratedNoise
from modelshield.controls.reverse_sigmoid import ReverseSigmoid
from modelshield.controls.shaping import ShapingChain
from modelshield.policy.shaping import ShapingSpec
from shaping_helpers import (
    assert_strict_top1,
    assert_top1_distribution,
    keys_for,
    probability_rows,
)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(probability_rows(), st.floats(0.0, 1.0))
def test_noise_keeps_the_top1_and_a_distribution(p: np.ndarray, level: float) -> None:
    shaped = CalibratedNoise(level=level)(p, keys_for(len(p)))
    assert_top1_distribution(shaped, p)
    # at most the level, plus the 1e-6 relative nudge that breaks an exact tie
    assert (np.abs(shaped - p).sum(axis=1) <= level + 2e-6).all()


@PROPERTY
@given(probability_rows(), st.floats(0.01, 10.0), st.floats(0.01, 10.0))
def test_reverse_sigmoid_keeps_the_top1_and_a_distribution(
    p: np.ndarray, beta: float, gamma: float
) -> None:
    assert_top1_distribution(ReverseSigmoid(beta=beta, gamma=gamma)(p), p)


@PROPERTY
@given(
    probability_rows(),
    st.floats(0.01, 0.99),
    st.floats(0.1, 200.0),
    st.floats(0.01, 1.0),
)
def test_misinformation_keeps_the_top1_and_a_distribution(
    p: np.ndarray, threshold: float, sharpness: float, strength: float
) -> None:
    control = Misinformation(threshold=threshold, sharpness=sharpness, strength=strength)
    assert_top1_distribution(control(p, keys_for(len(p))), p)


def assert_valid_minimized(answer: Minimized, p: np.ndarray, control: Minimization) -> None:
    top = p.argmax(axis=1)
    values = answer.values
    assert np.isfinite(values).all() and (values >= 0.0).all()
    if answer.columns is None:
        assert values.shape == p.shape
        assert_strict_top1(values, top)
        np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-9)
    else:
        columns = answer.columns
        assert columns.shape == values.shape
        assert (columns[:, 0] == top).all()
        assert_strict_top1(values, np.zeros(len(p), dtype=np.intp))
        revealed = columns >= 0
        # padding only at the end of a row, with probability 0
        assert (np.diff(revealed.astype(int), axis=1) <= 0).all()
        assert (values[~revealed] == 0.0).all()
        # revealed classes are distinct real columns, in descending order
        for row, mask in zip(columns, revealed, strict=True):
            assert len(set(row[mask])) == mask.sum()
        assert (np.diff(values, axis=1)[revealed[:, 1:]] <= 1e-12).all()
        if control.top_k is not None:
            assert values.shape[1] <= control.top_k
        if control.floor is not None and control.decimals is None:
            assert (values[:, 1:][revealed[:, 1:]] >= control.floor).all()
        total = values.sum(axis=1)
        if control.renormalize:
            np.testing.assert_allclose(total, 1.0, atol=1e-9)
        else:
            assert (total <= 1.0 + 1e-9).all()
    if control.decimals is not None:
        scaled = values * 10**control.decimals
        np.testing.assert_allclose(scaled, np.round(scaled), atol=1e-6)
        assert answer.decimals == control.decimals


minimizations = st.builds(
    Minimization,
    top_k=st.none() | st.integers(1, 20),
    floor=st.none() | st.floats(1e-4, 0.9),
    renormalize=st.booleans(),
    decimals=st.none() | st.integers(0, 6),
)


@PROPERTY
@given(probability_rows(), minimizations)
def test_minimization_keeps_the_top1_first_and_reveals_only_what_it_may(
    p: np.ndarray, control: Minimization
) -> None:
    assert_valid_minimized(control(p), p, control)


noise_specs = st.fixed_dictionaries({"kind": st.just("noise"), "level": st.floats(0.0, 0.3)})
reverse_sigmoid_specs = st.fixed_dictionaries(
    {"kind": st.just("reverse_sigmoid"), "beta": st.floats(0.05, 5), "gamma": st.floats(0.05, 5)}
)
misinformation_specs = st.fixed_dictionaries(
    {
        "kind": st.just("misinformation"),
        "threshold": st.floats(0.05, 0.95),
        "strength": st.floats(0.05, 1.0),
    }
)
minimize_specs = st.fixed_dictionaries(
    {},
    optional={
        "top_k": st.integers(1, 20),
        "floor": st.floats(1e-4, 0.9),
        "renormalize": st.booleans(),
        "decimals": st.integers(0, 6),
    },
)
shaping_specs = st.builds(
    lambda perturb, minimize: ShapingSpec.model_validate(
        {"perturb": perturb, "minimize": minimize}
    ),
    st.lists(noise_specs | reverse_sigmoid_specs | misinformation_specs, max_size=4),
    minimize_specs,
)


@PROPERTY
@given(probability_rows(), shaping_specs, shaping_specs)
def test_every_composition_and_level_stacking_keeps_the_top1(
    p: np.ndarray, plan: ShapingSpec, level: ShapingSpec
) -> None:
    for spec in (plan, plan.stacked(level)):
        if spec.is_identity:  # the gateway passes the model's answer through untouched
            continue
        chain = ShapingChain(spec)
        keys = keys_for(len(p))
        if spec.perturb:
            assert_top1_distribution(chain.perturb(p, keys), p)
        m = spec.minimize
        control = Minimization(m.top_k, m.floor, m.renormalize, m.decimals)
        answer = chain(p, keys)
        assert_valid_minimized(answer, p, control)
        # the same inputs, asked again: the identical answer
        again = chain(p, keys_for(len(p)))
        np.testing.assert_array_equal(again.values, answer.values)


def test_published_reverse_sigmoid_flips_low_confidence_answers_and_ours_does_not() -> None:
    """ART's formula (no top-1 guard) flips most low-confidence 100-class argmaxes."""
    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.full(100, 5.0), size=500)
    beta, gamma = 1.0, 0.1
    clipped = np.clip(p, 1e-9, 1 - 1e-9)
    # ART 1.20 ReverseSigmoid.__call__, verbatim but for names
    r = beta * (1 / (1 + np.exp(gamma * np.log((1 - clipped) / clipped))) - 0.5)
    art = np.clip(p - r, 0, 1)
    art /= art.sum(axis=1, keepdims=True)
    flipped = (art.argmax(axis=1) != p.argmax(axis=1)).mean()
    assert flipped > 0.5
    ours = ReverseSigmoid(beta=beta, gamma=gamma)(p)
    assert (ours.argmax(axis=1) == p.argmax(axis=1)).all()
    # where the published version kept the top-1, ours is the published version
    kept = art.argmax(axis=1) == p.argmax(axis=1)
    np.testing.assert_allclose(ours[kept], art[kept], rtol=1e-6, atol=1e-12)
