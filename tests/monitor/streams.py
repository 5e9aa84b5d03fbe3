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


def augmented_digits(rows: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Public-style digits (Knockoff's transfer set): shifted a pixel, rescaled, noisy."""
    base = rows[rng.integers(len(rows), size=size)].reshape(size, 8, 8)
    moved = np.stack([np.roll(b, tuple(rng.integers(-1, 2, size=2)), axis=(0, 1)) for b in base])
    moved = moved * rng.uniform(0.7, 1.2, (size, 1, 1)) + rng.normal(0.0, 2.0, moved.shape)
    return np.clip(np.rint(moved), 0, 16).reshape(size, 64)


def other_dataset(rng: np.random.Generator, size: int, name: str = "wine") -> np.ndarray:
    """Another scikit-learn dataset min-max scaled into the 64 pixels (cyclically)."""
    from sklearn import datasets

    data = {"wine": datasets.load_wine, "iris": datasets.load_iris}[name]().data
    scaled = (data - data.min(0)) / (data.max(0) - data.min(0))
    rows = 16.0 * scaled[:, np.arange(64) % data.shape[1]]
    return np.clip(rows[rng.integers(len(rows), size=size)] + rng.normal(0, 0.5, (size, 64)), 0, 16)


def class_shifted(
    rows: np.ndarray, labels: np.ndarray, rng: np.random.Generator, size: int, phases: int = 5
) -> np.ndarray:
    """Natural digits whose class focus moves through every class in turn (a bandit
    over class arms): each phase skews to two classes, together they cover all."""
    classes = np.unique(labels)
    out = []
    for phase in range(phases):
        focus = classes[[(2 * phase) % len(classes), (2 * phase + 1) % len(classes)]]
        pool = np.flatnonzero(np.isin(labels, focus))
        out.append(rows[rng.choice(pool, size // phases)])
    return np.concatenate(out)
