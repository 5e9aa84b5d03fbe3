"""Output minimization on worked examples: top-k, floor, renormalization, rounding."""

from __future__ import annotations

import numpy as np
import pytest

from modelshield.controls.minimization import Minimization, round_keeping_top1

P = np.array([[0.05, 0.6, 0.25, 0.1], [0.4, 0.1, 0.2, 0.3]])


def test_top_k_lists_classes_in_descending_order() -> None:
    answer = Minimization(top_k=2)(P)
    assert answer.columns is not None
    assert answer.columns.tolist() == [[1, 2], [0, 3]]
    np.testing.assert_allclose(answer.values, [[0.6, 0.25], [0.4, 0.3]])
    renormalized = Minimization(top_k=2, renormalize=True)(P).values
    np.testing.assert_allclose(renormalized, [[0.6 / 0.85, 0.25 / 0.85], [0.4 / 0.7, 0.3 / 0.7]])


def test_top_k_larger_than_the_class_count_reveals_every_class_once() -> None:
    answer = Minimization(top_k=10)(P)
    assert answer.columns is not None and answer.columns.shape == (2, 4)


def test_floor_pads_short_rows_to_the_widest_row_only() -> None:
    answer = Minimization(floor=0.22)(P)
    assert answer.columns is not None
    assert answer.columns.tolist() == [[1, 2], [0, 3]]
    single = Minimization(floor=0.5)(P)
    assert single.columns is not None
    # the top-1 always stays, even below the floor; the batch is one column wide
    assert single.columns.tolist() == [[1], [0]]
    padded = Minimization(floor=0.35)(P)
    assert padded.columns is not None
    assert padded.columns.tolist() == [[1], [0]]
    mixed = Minimization(floor=0.15)(P)
    assert mixed.columns is not None
    assert mixed.columns.tolist() == [[1, 2, -1], [0, 3, 2]]
    assert mixed.values[0, 2] == 0.0


def test_rounding_keeps_sums_and_a_strict_top1() -> None:
    third = np.array([[1 / 3, 1 / 3, 1 / 3]])
    assert Minimization(decimals=2)(third).values.tolist() == [[0.34, 0.33, 0.33]]
    assert Minimization(decimals=0)(third).values.tolist() == [[1.0, 0.0, 0.0]]
    tie = np.array([[0.1, 0.45, 0.45]])
    assert Minimization(decimals=1)(tie).values.tolist() == [[0.1, 0.5, 0.4]]
    near_uniform = np.full((1, 1000), 1e-3)
    near_uniform[0, 500] += 1e-9
    near_uniform /= near_uniform.sum()
    rounded = Minimization(decimals=2)(near_uniform).values
    assert rounded.argmax() == 500 and rounded.sum() == pytest.approx(1.0)
    assert (rounded[0, np.arange(1000) != 500] < rounded[0, 500]).all()


def test_rounding_a_partial_sum_never_empties_the_top1() -> None:
    values = np.array([[0.3, 0.1]])
    rounded = round_keeping_top1(values, 0, np.array([0]))
    assert rounded.tolist() == [[1.0, 0.0]]


def test_rounded_top_k_of_the_demo_plan() -> None:
    p = np.array(
        [[0.11286, 0.0022, 0.63476, 0.22975, 0.0002, 0.001, 0.0005, 0.0081, 0.0008, 0.0097]]
    )
    answer = Minimization(top_k=3, decimals=3)(p / p.sum())
    assert answer.columns is not None
    assert answer.columns.tolist() == [[2, 3, 0]]
    # the three sum to 0.9775: 0.977 in units, so 0.22978 gives way (each within a unit)
    assert answer.values.tolist() == [[0.635, 0.229, 0.113]]
    assert answer.decimals == 3
    whole = Minimization(top_k=3, decimals=3, renormalize=True)(p / p.sum())
    assert whole.values.sum() == pytest.approx(1.0)


def test_rounded_dense_answers_sum_to_one() -> None:
    p = np.array(
        [[0.11286, 0.0022, 0.63476, 0.22975, 0.0002, 0.001, 0.0005, 0.0081, 0.0008, 0.0097]]
    )
    rounded = Minimization(decimals=2)(p / p.sum()).values
    assert round(float(rounded.sum()), 12) == 1.0
    assert np.abs(rounded - p / p.sum()).max() < 0.01
