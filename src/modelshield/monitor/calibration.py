"""Benign reference traffic: what the detectors are calibrated on.

Without labelled traffic of its own, the monitor calibrates on simulated benign
accounts drawn from the model's training data: each account asks about natural rows
with a skewed class mix (Dirichlet(0.5) class weights), re-sends some rows unchanged
(retries, 0-30%), and sends 60 to 500 rows in batches of 1-16; 400 such accounts, so
that the rules' thresholds (near the top 0.1% of benign values) rest on enough of them.
Row statistics (margin, entropy, top-1) come from the model itself, so the benign
baseline of boundary proximity and entropy is the model's own.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> rows = rng.uniform(0, 16, (200, 64))
    >>> probs = rng.dirichlet(np.ones(10), 200)
    >>> ref = Reference.from_rows(rows)
    >>> len(benign_reference_features(rows, probs, ref, n_accounts=3, seed=0))
    3
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from modelshield.events.draft import row_statistics
from modelshield.models.base import FloatArray
from modelshield.monitor.features import AccountState, Reference, compute_features
from modelshield.monitor.sketch import SKETCH_DECIMALS, project


def replay(
    state: AccountState,
    rows: FloatArray,
    probs: FloatArray,
    ref: Reference,
    *,
    start: float = 0.0,
    gap: float = 1.0,
    batch: int = 8,
    window: int = 1000,
    reservoir_cap: int = 2000,
    prefix: str = "e",
) -> AccountState:
    """Feed ``rows`` (with the model's ``probs``) to ``state`` in batches, ``gap`` s apart."""
    top1, margin, entropy = row_statistics(probs)
    sketches = np.round(project(rows), SKETCH_DECIMALS)
    for n, i in enumerate(range(0, len(rows), batch)):
        j = min(i + batch, len(rows))
        state.add_rows(
            sketches[i:j],
            margin[i:j],
            entropy[i:j],
            top1[i:j],
            start + n * gap,
            f"{prefix}{n}",
            ref,
            window=window,
            reservoir_cap=reservoir_cap,
        )
    return state


def benign_stream(
    rows: FloatArray, labels: FloatArray, rng: np.random.Generator, size: int
) -> FloatArray:
    """Natural rows with a skewed class mix and some unchanged re-sends."""
    classes = np.unique(labels)
    weights = rng.dirichlet(np.full(len(classes), 0.5))
    per_row = weights[np.searchsorted(classes, labels)]
    counts = np.bincount(np.searchsorted(classes, labels), minlength=len(classes))
    per_row = per_row / counts[np.searchsorted(classes, labels)]
    picks = rng.choice(len(rows), size=size, p=per_row / per_row.sum())
    repeat = rng.uniform(0.0, 0.3)
    again = np.flatnonzero(rng.uniform(size=size) < repeat)
    for i in again[again > 0]:
        picks[i] = picks[rng.integers(0, i)]
    out: FloatArray = rows[picks]
    return out


def benign_reference_features(
    rows: FloatArray,
    probs: FloatArray,
    ref: Reference,
    *,
    n_accounts: int = 400,
    seed: int = 0,
    window: int = 1000,
    reservoir_cap: int = 2000,
) -> list[dict[str, float]]:
    """Feature dicts of ``n_accounts`` simulated benign accounts (module docstring)."""
    rng = np.random.default_rng(seed)
    labels = np.argmax(probs, axis=1)
    found: list[dict[str, float]] = []
    index = np.arange(len(rows))
    for n in range(n_accounts):
        size = int(rng.integers(60, 500))
        picks = benign_stream(index.astype(np.float64), labels, rng, size).astype(int)
        state = AccountState(f"benign{n}")
        replay(
            state,
            rows[picks],
            probs[picks],
            ref,
            batch=int(rng.integers(1, 17)),
            window=window,
            reservoir_cap=reservoir_cap,
        )
        found.append(compute_features(state.view(), ref, now=0.0))
    return found


def baseline(
    rows: FloatArray,
    probs: FloatArray,
    *,
    lsh_bits: int = 12,
    n_accounts: int = 400,
    seed: int = 0,
    window: int = 1000,
    reservoir_cap: int = 2000,
) -> tuple[Reference, list[dict[str, float]]]:
    """The reference distribution and benign feature dicts, from disjoint halves.

    Benign accounts must not query the reference's own rows (every distance to the
    training data would be 0), so the rows are split: 60% describe the distribution,
    40% are the benign accounts' natural queries.
    """
    order = np.random.default_rng(seed).permutation(len(rows))
    cut = int(len(rows) * 0.6)
    ref = Reference.from_rows(rows[order[:cut]], lsh_bits=lsh_bits, seed=seed)
    ref = dataclasses.replace(ref, classes=int(probs.shape[1]))
    held = order[cut:]
    benign = benign_reference_features(
        rows[held],
        probs[held],
        ref,
        n_accounts=n_accounts,
        seed=seed,
        window=window,
        reservoir_cap=reservoir_cap,
    )
    return ref, benign


def training_rows(spec: Any, state_dir: Path) -> FloatArray | None:
    """The training inputs of a model, when the monitor knows them (the demo model)."""
    backend = getattr(spec, "backend", None)
    if getattr(backend, "kind", None) == "demo":
        from modelshield.models.demo import digits_split

        return digits_split()[0]
    return None
