"""Clone accuracy and fidelity on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from modelshield.evaluation.metrics import accuracy, fidelity, score_clone


def test_accuracy_and_fidelity_by_hand() -> None:
    clone = np.array([0, 1, 2, 2, 1])
    truth = np.array([0, 1, 1, 2, 0])  # 3 of 5 right
    victim = np.array([0, 1, 2, 1, 1])  # agrees on 4 of 5
    assert accuracy(clone, truth) == pytest.approx(0.6)
    assert fidelity(clone, victim) == pytest.approx(0.8)
    score = score_clone("uniform", clone, victim, truth, queries=50, throttled=2, waited_s=3.5)
    assert score.to_dict() == {
        "attack": "uniform",
        "queries": 50,
        "accuracy": pytest.approx(0.6),
        "fidelity": pytest.approx(0.8),
        "throttled": 2,
        "waited_s": 3.5,
        "stopped": None,
    }


def test_edge_cases() -> None:
    assert accuracy(np.array([], dtype=int), np.array([], dtype=int)) == 0.0
    assert fidelity([3, 3], [3, 3]) == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        accuracy([1, 2], [1])
