"""Hypothesis strategies and checks shared by the shaping tests."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from modelshield.controls.canonical import CanonicalInput

SECRET = b"shaping-test-secret-0123456789"
KINDS = ["dirichlet", "near-tie", "low-confidence-tie", "near-uniform", "confident", "sparse"]


def make_rows(kind: str, rng: np.random.Generator, rows: int, classes: int) -> np.ndarray:
    """Probability rows of one adversarial kind (each row sums to 1)."""
    if kind == "near-uniform":
        eps = rng.choice([0.0, 1e-12, 1e-9, 1e-6, 1e-3])
        p = (1.0 + eps * rng.standard_normal((rows, classes))) / classes
    elif kind == "confident":
        delta = rng.choice([0.0, 1e-12, 1e-6, 1e-3, 0.05])
        p = rng.dirichlet(np.full(classes, 0.3), size=rows) * delta
        p[:, rng.integers(classes)] += 1.0 - delta
    else:
        alpha = rng.choice([0.05, 0.3, 1.0, 5.0])
        p = rng.dirichlet(np.full(classes, alpha), size=rows)
        if kind == "sparse":
            p = p * (rng.random((rows, classes)) < 0.5)
            p[:, rng.integers(classes)] += 1e-3
        if kind in ("near-tie", "low-confidence-tie"):
            if kind == "low-confidence-tie":
                p = 0.3 * p + 0.7 / classes
            gap = rng.choice([0.0, 1e-15, 1e-12, 1e-9, 1e-6, 1e-3])
            for row in p:
                order = np.argsort(-row)
                rival = order[1] if rng.random() < 0.5 else order[rng.integers(1, classes)]
                row[rival] = row[order[0]] * (1.0 - gap)
    p = np.clip(p, 0.0, None)
    return p / p.sum(axis=1, keepdims=True)


@st.composite
def probability_rows(draw: Any, max_classes: int = 1000) -> np.ndarray:
    """1-3 rows of 2..max_classes class probabilities, of an adversarial kind."""
    classes = draw(st.integers(2, max_classes))
    rows = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(KINDS))
    seed = draw(st.integers(0, 2**32 - 1))
    return make_rows(kind, np.random.default_rng(seed), rows, classes)


def keys_for(rows: int, salt: int = 0) -> list[bytes]:
    """One key per row, as the gateway would derive them for distinct inputs."""
    inputs = np.arange(rows * 4, dtype=np.float64).reshape(rows, 4) + salt * 1000
    return CanonicalInput(SECRET, 1.0, context="test")(inputs)


def assert_top1_distribution(shaped: np.ndarray, original: np.ndarray) -> None:
    """A valid distribution whose strictly largest entry (also in FP32) is the original top-1."""
    assert shaped.shape == original.shape
    assert np.isfinite(shaped).all()
    assert (shaped >= 0.0).all()
    np.testing.assert_allclose(shaped.sum(axis=1), 1.0, atol=1e-9)
    assert_strict_top1(shaped, original.argmax(axis=1))


def assert_strict_top1(values: np.ndarray, top: np.ndarray) -> None:
    rows = np.arange(values.shape[0])
    sent = values.astype(np.float32)
    best = sent[rows, top].copy()
    sent[rows, top] = -np.inf
    assert (sent.max(axis=1) < best).all(), "the top-1 is not strictly largest in FP32"


DIGITS_INPUT = {"name": "input-0", "features": 64, "min": 0, "max": 16, "resolution": 1.0}
SHAPING_PLANS: dict[str, Any] = {
    "free": {
        "outputs": ["probabilities", "label"],
        "shaping": {
            "perturb": [{"kind": "noise", "level": 0.02}],
            "minimize": {"top_k": 3, "decimals": 3},
        },
    },
    "labels": {"outputs": ["label"]},
    "raw": {"outputs": ["probabilities", "label"]},
}
SHAPING_LEVELS: dict[str, Any] = {
    "degraded": {"perturb": [{"kind": "noise", "level": 0.05}], "minimize": {"top_k": 1}},
    "labels-only": {"label_only": True},
}


def shaping_policy_data(**overrides: Any) -> dict[str, Any]:
    """A policy document: the digits model (resolution 1, snapped) and the shaping plans."""
    data: dict[str, Any] = {
        "storage": {"uri": "memory://"},
        "models": {
            "digits": {"backend": {"kind": "demo"}, "input": {**DIGITS_INPUT, "snap": True}}
        },
        "plans": SHAPING_PLANS,
        "shaping_levels": SHAPING_LEVELS,
    }
    data.update(overrides)
    return data
