"""Defense efficacy: the default scenario set of ``modelshield evaluate``.

Run: ``.venv/bin/python bench/efficacy.py [--scenario NAME] [--seeds 0,1,2]`` (a few
minutes per seed on 2 cores; the clock is simulated, so rate limits cost no wall time).
Every attack of the scenario runs against the demo policy beside a benign population
and against the unprotected model; the script prints the README's efficacy table
(attack x undefended fidelity, defended fidelity, detection rate over the seeds, median
queries to flag, strongest action) and the benign false positives, and writes the full
report of the first seed (JSON, Markdown, HTML, plots) to ``bench/results/efficacy/``
and a summary to ``bench/results/efficacy.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from machine import BENCH_DIR, machine_info
from modelshield.evaluation.report import write_report
from modelshield.evaluation.results import (
    EvaluationResults,
    markdown_table,
)
from modelshield.evaluation.runner import run_scenario
from modelshield.evaluation.scenario import load_scenario


def summarize(runs: list[EvaluationResults]) -> dict[str, Any]:
    """Per attack over the seeds: fidelities, detection rate, queries to flag."""
    attacks: dict[str, dict[str, Any]] = {}
    for results in runs:
        variant = results.variants[0]
        for name in variant.attacks:
            row = attacks.setdefault(
                name, {"undefended": [], "defended": [], "flagged": [], "to_flag": [], "action": []}
            )
            base, prot = variant.run(name, False), variant.run(name, True)
            if base is not None:
                row["undefended"].append(base.fidelity)
            if prot is not None and prot.detection is not None:
                row["defended"].append(prot.fidelity)
                row["flagged"].append(prot.detection.flagged)
                if prot.detection.queries is not None:
                    row["to_flag"].append(prot.detection.queries)
                row["action"].append(prot.detection.strongest_action or "-")
    benign = [r.variants[0].benign_totals() for r in runs]
    accounts = sum(b["accounts"] for b in benign)
    flagged = sum(b["flagged"] for b in benign)
    serious = sum(b["medium_or_higher"] for b in benign)
    return {
        "attacks": attacks,
        "benign": {
            "accounts": accounts,
            "flagged": flagged,
            "acted_on": sum(b["acted_on"] for b in benign),
            "false_positive_rate": flagged / accounts if accounts else 0.0,
            "medium_or_higher": serious,
            "top1_agreement": statistics.fmean(b["top1_agreement"] for b in benign),
            "mean_l1": statistics.fmean(b["mean_l1"] for b in benign),
        },
    }


def table(summary: dict[str, Any], seeds: int) -> str:
    rows = []
    for name, row in summary["attacks"].items():
        flagged = row["flagged"]
        to_flag = row["to_flag"]
        actions = sorted(set(row["action"]) - {"-"}) or ["-"]
        rows.append(
            [
                name,
                f"{statistics.fmean(row['undefended']):.1%}" if row["undefended"] else "-",
                f"{statistics.fmean(row['defended']):.1%}" if row["defended"] else "-",
                f"{sum(flagged)}/{len(flagged)}",
                str(int(statistics.median(to_flag))) if to_flag else "-",
                ", ".join(actions),
            ]
        )
    header = [
        "attack",
        "undefended fidelity",
        "defended fidelity",
        f"flagged ({seeds} seed{'s' if seeds > 1 else ''})",
        "median queries to flag",
        "action",
    ]
    b = summary["benign"]
    benign = markdown_table(
        [
            "benign accounts",
            "flagged (any alert, low included)",
            "medium or higher",
            "throttled/degraded/suspended",
            "top-1 agreement",
            "mean L1",
        ],
        [
            [
                str(b["accounts"]),
                f"{b['flagged']} ({b['false_positive_rate']:.1%})",
                f"{b['medium_or_higher']} ({b['medium_or_higher'] / max(b['accounts'], 1):.1%})",
                str(b["acted_on"]),
                f"{b['top1_agreement']:.2%}",
                f"{b['mean_l1']:.4f}",
            ]
        ],
    )
    return markdown_table(header, rows) + "\n\n" + benign


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    base = load_scenario(args.scenario)
    runs = []
    for seed in seeds:
        print(f"scenario {base.name}, seed {seed} ...", file=sys.stderr, flush=True)
        runs.append(await run_scenario(base.model_copy(update={"seed": seed})))
        print(f"  done in {runs[-1].elapsed_s:.0f} s", file=sys.stderr, flush=True)
    out = BENCH_DIR / "results"
    write_report(runs[0], out / "efficacy")
    summary = summarize(runs)
    text = table(summary, len(seeds))
    print(text)
    payload = {
        "machine": machine_info(),
        "scenario": base.name,
        "seeds": seeds,
        "elapsed_s": [r.elapsed_s for r in runs],
        "summary": summary,
        "table": text,
    }
    (out / "efficacy.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten: {Path(out / 'efficacy.json')}, {out / 'efficacy'}/report.html")


if __name__ == "__main__":
    asyncio.run(main())
