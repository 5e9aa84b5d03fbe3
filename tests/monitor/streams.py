"""Synthetic query streams: benign mixes and the attacks the monitor must catch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelshield.monitor.calibration import benign_stream
from modelshield.monitor.detectors import RiskScorer
from modelshield.monitor.features import Reference


@dataclass
class Digits:
    model: Any
    train: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray
    reference: Reference
    benign: list[dict[str, float]]
    scorer: RiskScorer

    def probs(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_proba(rows), dtype=np.float64)


def benign(rows: np.ndarray, labels: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Natural digits, skewed class mix, some unchanged re-sends."""
    return benign_stream(rows, labels, rng, size)


def uniform(rng: np.random.Generator, size: int) -> np.ndarray:
    """Uniform random pixels: synthetic, far from the training data (Tramer et al.)."""
    return rng.uniform(0, 16, (size, 64))


def boundary_walk(rows: np.ndarray, rng: np.random.Generator, walks: int, steps: int) -> np.ndarray:
    """Interpolations between two digits across the region of the decision boundary."""
    out = []
    for _ in range(walks):
        a, b = rows[rng.integers(len(rows))], rows[rng.integers(len(rows))]
        out += [(1 - t) * a + t * b for t in np.linspace(0.3, 0.7, steps)]
    return np.asarray(out)


def near_duplicate_flood(
    rows: np.ndarray, rng: np.random.Generator, seeds: int, copies: int, noise: float = 1.0
) -> np.ndarray:
    """Small perturbations of a few seed digits (Jacobian-augmentation style)."""
    base = rows[rng.integers(len(rows), size=seeds)]
    jitter = rng.uniform(-noise, noise, (seeds * copies, 64))
    return np.clip(np.repeat(base, copies, axis=0) + jitter, 0, 16)


def knockoff(rows: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Natural data of every class, evenly (Knockoff Nets with in-distribution data)."""
    return rows[rng.permutation(len(rows))[:size]]
