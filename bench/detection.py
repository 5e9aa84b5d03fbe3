"""Detection benchmark: per-row monitor cost vs history, memory cap, detection and FPR.

Run: ``.venv/bin/python bench/detection.py`` (about a minute). Compares the bounded
monitor state with a straightforward PRADA (exact minimum distance to every earlier
query, unbounded) in the same run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "monitor"))

import streams

from modelshield.models.demo import digits_split, train_digits_model
from modelshield.monitor.calibration import baseline, replay
from modelshield.monitor.detectors import RiskScorer
from modelshield.monitor.features import AccountState, compute_features
from modelshield.monitor.sketch import project


def cost_per_row(history: int, ref: object, rng: np.random.Generator) -> dict[str, float]:
    rows = np.round(project(rng.uniform(0, 16, (history + 1000, 64))), 3)
    state = AccountState("bench")
    ones = [1.0] * 8
    for i in range(0, history, 8):
        state.add_rows(
            rows[i : i + 8],
            ones,
            ones,
            [0] * 8,
            float(i),
            "e",
            ref,  # type: ignore[arg-type]
            window=1000,
            reservoir_cap=2000,
        )
    start = time.perf_counter()
    for i in range(history, history + 1000, 8):
        state.add_rows(
            rows[i : i + 8],
            ones,
            ones,
            [0] * 8,
            float(i),
            "e",
            ref,  # type: ignore[arg-type]
            window=1000,
            reservoir_cap=2000,
        )
    bounded = (time.perf_counter() - start) / 1000 * 1e6
    kept = state.recent.nbytes + state.reservoir.nbytes
    # straightforward PRADA: exact min distance to every earlier query
    earlier = rows[:history]
    start = time.perf_counter()
    for i in range(history, history + 200):
        np.sqrt(((earlier - rows[i]) ** 2).sum(1)).min()
        earlier = np.concatenate([earlier, rows[i : i + 1]])
    exact = (time.perf_counter() - start) / 200 * 1e6
    return {
        "history": history,
        "bounded_us_per_row": round(bounded, 1),
        "bounded_state_kib": round(kept / 1024, 1),
        "exact_prada_us_per_row": round(exact, 1),
        "exact_prada_state_kib": round(earlier.nbytes / 1024, 1),
    }


def main() -> None:
    tr, te, _, yte = digits_split()
    model = train_digits_model()
    ref, benign = baseline(tr, model.predict_proba(tr))
    scorer = RiskScorer(target_fpr=0.01).fit(benign)
    rng = np.random.default_rng(0)
    results: dict[str, object] = {}
    verdicts = []
    for _ in range(200):
        rows = streams.benign(te, np.asarray(yte), rng, int(rng.integers(60, 500)))
        state = replay(AccountState("b"), rows, model.predict_proba(rows), ref)
        verdicts.append(scorer.score(compute_features(state.view(), ref, 0.0)).severity)
    results["benign_200_accounts"] = {s or "none": verdicts.count(s) for s in set(verdicts)}
    attacks = {
        "uniform_random": lambda: streams.uniform(rng, 1000),
        "boundary_walk": lambda: streams.boundary_walk(te, rng, 50, 20),
        "near_duplicate_flood": lambda: streams.near_duplicate_flood(te, rng, 50, 20),
        "knockoff_natural": lambda: streams.knockoff(te, rng, 450),
    }
    for name, make in attacks.items():
        rows = make()
        probs = model.predict_proba(rows)
        state = AccountState(name)
        first: dict[str, int] = {}
        for i in range(0, len(rows), 10):
            replay(state, rows[i : i + 10], probs[i : i + 10], ref, start=i)
            if state.rows_seen < 50:
                continue
            sev = scorer.score(compute_features(state.view(), ref, 0.0)).severity
            for level in ("medium", "high", "critical"):
                order = ("low", "medium", "high", "critical")
                if sev is not None and order.index(sev) >= order.index(level):
                    first.setdefault(level, state.rows_seen)
        results[name] = {"rows_until": first, "rows": len(rows)}
    results["cost"] = [cost_per_row(h, ref, rng) for h in (1_000, 10_000, 100_000)]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
