"""Detection benchmark: monitor cost vs history, memory cap, detection and benign FPR.

Run: ``.venv/bin/python bench/detection.py [--scenario default] [--no-harness]`` (a few
minutes on 2 cores). Three sections, printed as Markdown and written to
``bench/results/detection.json``:

1. **Cost**: per-row monitor cost and per-account memory at histories of 10^3, 10^4
   and 10^5 rows, beside a straightforward PRADA (exact minimum distance to every
   earlier query, unbounded) in the same run.
2. **Synthetic streams** (``tests/monitor/streams.py``): the monitor's calibration
   (benign reference accounts from the training split, seed 0) against held-out benign
   accounts (the test split, another seed) — severity counts — and rows until each
   attack stream reaches medium / high / critical.
3. **Harness**: every attack of an evaluation scenario (:mod:`modelshield.evaluation`)
   against the demo policy beside its benign population: detected (severity), queries
   until detection, detector, strongest action and that run's benign false positives.
   ``bench/efficacy.py`` reports the same runs' fidelities; this section is about the
   monitor alone, so it skips the unprotected baseline runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "monitor"))

import streams

from machine import BENCH_DIR, machine_info
from modelshield.evaluation.results import EvaluationResults, markdown_table
from modelshield.evaluation.runner import run_scenario
from modelshield.evaluation.scenario import load_scenario
from modelshield.models.demo import digits_split, train_digits_model
from modelshield.monitor.calibration import baseline, replay
from modelshield.monitor.detectors import RiskScorer
from modelshield.monitor.features import AccountState, Reference, compute_features
from modelshield.monitor.records import SEVERITIES
from modelshield.monitor.sketch import project

HISTORIES = (1_000, 10_000, 100_000)
HELD_OUT_ACCOUNTS = 1000
HELD_OUT_SEED = 1  # the calibration's benign accounts use seed 0 on the training split


def cost_per_row(history: int, ref: Reference, rng: np.random.Generator) -> dict[str, float]:
    rows = np.round(project(rng.uniform(0, 16, (history + 1000, 64))), 3)
    state = AccountState("bench")
    ones = [1.0] * 8

    def feed(start: int, stop: int) -> None:
        for i in range(start, stop, 8):
            state.add_rows(
                rows[i : i + 8],
                ones,
                ones,
                [0] * 8,
                float(i),
                "e",
                ref,
                window=1000,
                reservoir_cap=2000,
            )

    feed(0, history)
    start = time.perf_counter()
    feed(history, history + 1000)
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


def synthetic(model: Any, ref: Reference, scorer: RiskScorer) -> dict[str, Any]:
    """Held-out benign severities, and rows until each attack stream reaches a level."""
    _, te, _, yte = digits_split()
    labels = np.asarray(yte)
    rng = np.random.default_rng(HELD_OUT_SEED)
    severities: Counter[str] = Counter()
    for _ in range(HELD_OUT_ACCOUNTS):
        rows = streams.benign(te, labels, rng, int(rng.integers(60, 500)))
        state = replay(
            AccountState("b"), rows, model.predict_proba(rows), ref, batch=int(rng.integers(1, 17))
        )
        verdict = scorer.score(compute_features(state.view(), ref, 0.0))
        severities[verdict.severity or "none"] += 1
    tr = digits_split()[0]
    attacks: dict[str, Callable[[], np.ndarray]] = {
        "uniform_random": lambda: streams.uniform(rng, 1000),
        "boundary_walk": lambda: streams.boundary_walk(te, rng, 50, 20),
        "near_duplicate_flood": lambda: streams.near_duplicate_flood(te, rng, 50, 20),
        "knockoff_in_distribution": lambda: streams.knockoff(te, rng, 450),
        "knockoff_augmented_digits": lambda: streams.augmented_digits(tr, rng, 1000),
        "knockoff_other_dataset": lambda: streams.other_dataset(rng, 1000),
        "knockoff_class_shifted": lambda: streams.class_shifted(te, labels, rng, 450),
    }
    found: dict[str, Any] = {}
    for name, make in attacks.items():
        rows = make()
        probs = model.predict_proba(rows)
        state = AccountState(name)
        first: dict[str, int] = {}
        detector: dict[str, str] = {}
        for i in range(0, len(rows), 10):
            replay(state, rows[i : i + 10], probs[i : i + 10], ref, start=i)
            if state.rows_seen < 50:
                continue
            verdict = scorer.score(compute_features(state.view(), ref, float(i)))
            if verdict.severity is None:
                continue
            for level in ("medium", "high", "critical"):
                reached = SEVERITIES.index(verdict.severity) >= SEVERITIES.index(level)
                if reached and level not in first:
                    first[level] = state.rows_seen
                    detector[level] = verdict.fired[0] if verdict.fired else "-"
        found[name] = {"rows": len(rows), "rows_until": first, "detector": detector}
    return {
        "held_out_benign": {
            "accounts": HELD_OUT_ACCOUNTS,
            "seed": HELD_OUT_SEED,
            "severity": {s: severities.get(s, 0) for s in ("none", *SEVERITIES)},
        },
        "attacks": found,
    }


def harness_rows(results: EvaluationResults) -> list[dict[str, Any]]:
    """Per protected attack run: what the monitor said, and about the benign beside it."""
    out: list[dict[str, Any]] = []
    for variant in results.variants:
        benign = {b.attack: b for b in variant.benign}
        for run in variant.runs:
            if not run.protected:
                continue
            det = run.detection
            b = benign.get(run.attack)
            out.append(
                {
                    "attack": run.attack,
                    "queries": run.queries,
                    "detected": bool(det and det.flagged),
                    "severity": det.severity if det else None,
                    "queries_to_detect": det.queries if det else None,
                    "detector": det.detector if det else None,
                    "action": det.strongest_action if det else None,
                    "benign_accounts": b.accounts if b else 0,
                    "benign_flagged": b.flagged if b else 0,
                    "benign_acted_on": b.acted_on if b else 0,
                }
            )
    return out


def markdown(report: dict[str, Any]) -> str:
    cost = report["cost"]
    parts = [
        "Monitor cost per row (µs) and state per account (KiB), bounded vs exact PRADA:",
        markdown_table(
            ["history", "bounded µs/row", "bounded KiB", "exact PRADA µs/row", "exact PRADA KiB"],
            [
                [
                    f"{c['history']:,}",
                    str(c["bounded_us_per_row"]),
                    str(c["bounded_state_kib"]),
                    str(c["exact_prada_us_per_row"]),
                    str(c["exact_prada_state_kib"]),
                ]
                for c in cost
            ],
        ),
        f"cost at 10^5 / cost at 10^3: bounded {report['cost_ratio']['bounded']:.2f}x, "
        f"exact PRADA {report['cost_ratio']['exact_prada']:.2f}x",
    ]
    held = report["synthetic"]["held_out_benign"]
    total = held["accounts"]
    parts += [
        f"Held-out benign accounts ({total}, test split, seed {held['seed']}):",
        markdown_table(
            ["none", *SEVERITIES],
            [[f"{n} ({n / total:.1%})" for n in held["severity"].values()]],
        ),
        "Synthetic attack streams (rows until the level, first detector):",
        markdown_table(
            ["stream", "rows", "medium", "high", "critical", "detector"],
            [
                [
                    name,
                    str(a["rows"]),
                    *(str(a["rows_until"].get(lvl, "-")) for lvl in ("medium", "high", "critical")),
                    next(iter(a["detector"].values()), "-"),
                ]
                for name, a in report["synthetic"]["attacks"].items()
            ],
        ),
    ]
    if report.get("harness"):
        h = report["harness"]
        parts += [
            f"Harness: scenario {h['scenario']} (seed {h['seed']}), demo policy:",
            markdown_table(
                [
                    "attack",
                    "detected (severity)",
                    "queries to detect",
                    "detector",
                    "action",
                    "benign FPR (flagged / acted on)",
                ],
                [
                    [
                        r["attack"],
                        f"yes ({r['severity']})" if r["detected"] else "no",
                        str(r["queries_to_detect"] or "-"),
                        r["detector"] or "-",
                        r["action"] or "-",
                        f"{r['benign_flagged']}/{r['benign_accounts']} "
                        f"({r['benign_flagged'] / max(r['benign_accounts'], 1):.0%}) / "
                        f"{r['benign_acted_on']}",
                    ]
                    for r in h["attacks"]
                ],
            ),
        ]
    return "\n\n".join(parts)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="default", help="evaluation scenario to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-harness", action="store_true", help="skip the harness section")
    args = parser.parse_args()
    tr, _, _, _ = digits_split()
    model = train_digits_model()
    ref, benign = baseline(tr, model.predict_proba(tr))
    scorer = RiskScorer(target_fpr=0.01).fit(benign)
    rng = np.random.default_rng(0)
    report: dict[str, Any] = {"machine": machine_info()}
    print("cost ...", file=sys.stderr, flush=True)
    report["cost"] = [cost_per_row(h, ref, rng) for h in HISTORIES]
    first, last = report["cost"][0], report["cost"][-1]
    report["cost_ratio"] = {
        "bounded": last["bounded_us_per_row"] / first["bounded_us_per_row"],
        "exact_prada": last["exact_prada_us_per_row"] / first["exact_prada_us_per_row"],
    }
    print("synthetic streams ...", file=sys.stderr, flush=True)
    report["synthetic"] = synthetic(model, ref, scorer)
    if not args.no_harness:
        scenario = load_scenario(args.scenario).model_copy(
            update={"seed": args.seed, "baseline": False}
        )
        print(f"harness: scenario {scenario.name} ...", file=sys.stderr, flush=True)
        results = await run_scenario(scenario)
        report["harness"] = {
            "scenario": scenario.name,
            "seed": args.seed,
            "elapsed_s": results.elapsed_s,
            "attacks": harness_rows(results),
        }
    text = markdown(report)
    print(text)
    report["table"] = text
    out = BENCH_DIR / "results" / "detection.json"
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    asyncio.run(main())
