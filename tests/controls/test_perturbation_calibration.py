"""What each perturbation does to the numbers: noise level, misinformation ramp, reverse sigmoid."""

from __future__ import annotations

import numpy as np
import pytest

from modelshield.controls.misinformation import Misinformation
from modelshield.controls.noise import CalibratedNoise
from modelshield.controls.reverse_sigmoid import ReverseSigmoid
from shaping_helpers import keys_for, make_rows


def realistic_rows(n: int, classes: int, seed: int = 0) -> np.ndarray:
    """A mix of confident and unsure answers, like a classifier's."""
    rng = np.random.default_rng(seed)
    kinds = ["confident", "dirichlet", "low-confidence-tie", "near-tie"]
    parts = [make_rows(kind, rng, n // len(kinds), classes) for kind in kinds]
    return np.concatenate(parts)


@pytest.mark.parametrize("classes", [10, 100, 1000])
@pytest.mark.parametrize("level", [0.01, 0.02, 0.05])
def test_noise_level_is_the_mean_l1_change(classes: int, level: float) -> None:
    p = realistic_rows(2000, classes)
    shaped = CalibratedNoise(level=level)(p, keys_for(len(p)))
    l1 = np.abs(shaped - p).sum(axis=1)
    assert l1.mean() == pytest.approx(level, rel=0.02)
    # the top-1 probability barely moves: at most the level
    top = p.argmax(axis=1)
    rows = np.arange(len(p))
    assert np.abs(shaped[rows, top] - p[rows, top]).max() <= level + 1e-9


def test_noise_buries_the_small_probabilities_under_keyed_randomness() -> None:
    p = np.tile([0.9, 0.09, 0.009, 0.0009, 0.00009, 0.00001], (500, 1))
    p /= p.sum(axis=1, keepdims=True)
    shaped = CalibratedNoise(level=0.02)(p, keys_for(len(p)))
    # the order of the smallest probabilities is about as random as chance (1 in 6)
    tail_in_order = (np.diff(shaped[:, 3:], axis=1) < 0).all(axis=1)
    assert tail_in_order.mean() < 0.3
    assert (np.diff(p[:, 3:], axis=1) < 0).all()
    assert (shaped.argmax(axis=1) == 0).all()


def test_misinformation_spares_confident_answers_and_rewrites_unsure_ones() -> None:
    control = Misinformation(threshold=0.5, sharpness=20.0, strength=1.0)
    confident = np.tile([0.97, 0.02, 0.005, 0.005], (200, 1))
    unsure = np.tile([0.34, 0.33, 0.2, 0.13], (200, 1))
    keys = keys_for(200)
    assert np.abs(control(confident, keys) - confident).sum(axis=1).max() < 1e-4
    moved = control(unsure, keys)
    assert (moved.argmax(axis=1) == 0).all()
    # the runner-up (the boundary information) is usually somewhere else
    assert (moved[:, 1:].argmax(axis=1) != 0).mean() > 0.5
    np.testing.assert_allclose(control.share(unsure), 1 / (1 + np.exp(-20 * 0.16)))
    # the top-1 probability is kept as is
    np.testing.assert_allclose(moved[:, 0], 0.34, atol=1e-5)


def test_misinformation_depends_on_the_key_only() -> None:
    control = Misinformation(threshold=0.9)
    p = np.tile([0.4, 0.3, 0.2, 0.1], (50, 1))
    np.testing.assert_array_equal(control(p, keys_for(50)), control(p, keys_for(50)))
    assert not np.array_equal(control(p, keys_for(50)), control(p, keys_for(50, salt=1)))


def test_reverse_sigmoid_flattens_confident_answers_and_keeps_the_order_of_others() -> None:
    p = np.array([[0.95, 0.04, 0.01], [0.6, 0.3, 0.1]])
    shaped = ReverseSigmoid(beta=0.7, gamma=0.4)(p)
    assert (shaped.argmax(axis=1) == 0).all()
    assert shaped[0, 0] < p[0, 0]  # confident answers lose confidence
    np.testing.assert_allclose(shaped.sum(axis=1), 1.0)
    assert ReverseSigmoid(beta=0.7, gamma=0.4)(p).tolist() == shaped.tolist()
