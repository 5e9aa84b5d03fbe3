"""Reports of an evaluation: JSON results, Markdown, HTML and PNG plots.

:func:`write_report` writes into one folder:

- ``results.json`` — everything measured (:meth:`EvaluationResults.to_dict`);
- ``report.md`` and ``report.html`` — the efficacy table (attack x undefended and
  defended fidelity, flagged?, queries to flag, detector, action), the benign table
  (false positives, actions, 429s, utility) and the plots;
- ``fidelity.png`` — clone fidelity against queries spent, with and without protection,
  one panel per attack;
- ``detection.png`` — per attack, the queries at which it was first flagged and at which
  each responder action was taken, against the queries it spent;
- ``tradeoff.png`` (with a sweep) — benign mean L1 change against clone fidelity, one
  line per attack, one point per policy variant.

Plots need matplotlib (``pip install 'modelshield[evaluate]'``); without it the
reports are written without them and :func:`write_report` says so.

Example:
    >>> from modelshield.evaluation.results import EvaluationResults
    >>> empty = EvaluationResults(scenario="s", seed=0, site="x", model="digits", test_rows=0)
    >>> "| attack |" in markdown_report(empty, [])
    True
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from modelshield.evaluation.results import (
    BENIGN_HEADER,
    EFFICACY_HEADER,
    EvaluationResults,
    benign_rows,
    efficacy_rows,
    markdown_table,
    variant_label,
)

PLOTS_EXTRA = "pip install 'modelshield[evaluate]'"


def write_report(results: EvaluationResults, out: Path) -> list[str]:
    """Write the JSON, Markdown, HTML and plots into ``out``; returns notes for the user."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps(results.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    notes: list[str] = []
    try:
        plots = write_plots(results, out)
    except ImportError:
        plots = []
        notes.append(f"plots skipped: matplotlib is not installed ({PLOTS_EXTRA})")
    (out / "report.md").write_text(markdown_report(results, plots), encoding="utf-8")
    (out / "report.html").write_text(html_report(results, plots), encoding="utf-8")
    return notes


def _summary(results: EvaluationResults) -> str:
    return (
        f"Scenario **{results.scenario}** (seed {results.seed}) on {results.site}, model "
        f"`{results.model}`; clones scored on {results.test_rows} held-out rows; "
        f"{results.elapsed_s:.0f} s."
    )


def markdown_report(results: EvaluationResults, plots: list[str]) -> str:
    parts = [
        f"# modelshield evaluation: {results.scenario}",
        "",
        _summary(results),
        "",
        "## Attacks",
        "",
        "Fidelity is the clone's top-1 agreement with the unprotected model; queries to "
        "flag count the attacker's answered rows when the first alert was seen.",
        "",
        markdown_table(EFFICACY_HEADER, efficacy_rows(results)),
        "",
        "## Legitimate accounts",
        "",
        "The same simulated customers run beside every attack of a policy; flagged and "
        "acted-on count the distinct customers concerned beside any of them.",
        "",
        markdown_table(BENIGN_HEADER, benign_rows(results)),
        "",
    ]
    for plot in plots:
        parts += [f"![{plot}]({plot})", ""]
    return "\n".join(parts)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%}"
)


def html_report(results: EvaluationResults, plots: list[str]) -> str:
    summary = html.escape(_summary(results)).replace("**", "")
    images = "".join(f'<p><img src="{html.escape(p)}" alt="{html.escape(p)}"></p>' for p in plots)
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        f"<title>modelshield evaluation: {html.escape(results.scenario)}</title>"
        f"<style>{_STYLE}</style><body>"
        f"<h1>modelshield evaluation: {html.escape(results.scenario)}</h1><p>{summary}</p>"
        "<h2>Attacks</h2>" + _html_table(EFFICACY_HEADER, efficacy_rows(results)) + ""
        "<h2>Legitimate accounts</h2>"
        + _html_table(BENIGN_HEADER, benign_rows(results))
        + images
        + "</body></html>\n"
    )


def write_plots(results: EvaluationResults, out: Path) -> list[str]:
    """The PNG plots (raises ImportError without matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = [_fidelity_plot(plt, results, out), _detection_plot(plt, results, out)]
    if len(results.variants) > 1:
        written.append(_tradeoff_plot(plt, results, out))
    plt.close("all")
    return [w for w in written if w]


def _fidelity_plot(plt: Any, results: EvaluationResults, out: Path) -> str:
    variant = results.variants[0] if results.variants else None
    if variant is None or not variant.attacks:
        return ""
    attacks = variant.attacks
    cols = min(4, len(attacks))
    rows = (len(attacks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, attack in zip(axes.ravel(), attacks, strict=False):
        for protected, style, name in ((False, "--", "unprotected"), (True, "-", "protected")):
            run = variant.run(attack, protected)
            if run is None or not run.curve:
                continue
            ax.plot(
                [p.queries for p in run.curve],
                [p.fidelity for p in run.curve],
                style,
                marker="o",
                markersize=3,
                label=name,
            )
            det = run.detection
            if det is not None and det.queries is not None:
                ax.axvline(det.queries, color="red", alpha=0.5, linewidth=1)
        ax.set_title(attack, fontsize=9)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("queries", fontsize=8)
        ax.set_ylabel("fidelity", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes.ravel()[len(attacks) :]:
        ax.axis("off")
    fig.suptitle("Clone fidelity vs queries (red line: first alert)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "fidelity.png", dpi=110)
    return "fidelity.png"


def _detection_plot(plt: Any, results: EvaluationResults, out: Path) -> str:
    variant = results.variants[0] if results.variants else None
    runs = [r for r in (variant.runs if variant else []) if r.protected]
    if not runs:
        return ""
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(runs) + 1.2))
    colors = {"notify": "#888", "throttle": "#e0a000", "degrade": "#e06000", "suspend": "#c00"}
    for y, run in enumerate(runs):
        ax.barh(y, run.queries, color="#cfe0f5", height=0.5)
        det = run.detection
        if det is None:
            continue
        if det.queries is not None:
            ax.plot(det.queries, y, "k|", markersize=16)
        for action in det.actions:
            ax.plot(action.queries, y, "o", color=colors.get(action.kind, "k"), markersize=6)
    ax.set_yticks(range(len(runs)), [r.attack for r in runs], fontsize=8)
    ax.set_xlabel("attacker queries (bar: spent, |: first alert, dots: actions)", fontsize=8)
    handles = [
        plt.Line2D([], [], marker="o", linestyle="", color=c, label=k) for k, c in colors.items()
    ]
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    ax.set_title("Detection timeline (protected runs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "detection.png", dpi=110)
    return "detection.png"


def _tradeoff_plot(plt: Any, results: EvaluationResults, out: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 4))
    attacks = results.variants[0].attacks
    for attack in attacks:
        xs, ys, labels = [], [], []
        for variant in results.variants:
            run = variant.run(attack, protected=True)
            if run is None:
                continue
            xs.append(variant.benign_totals()["mean_l1"])
            ys.append(run.fidelity)
            labels.append(variant_label(variant.variant).rsplit("=", 1)[-1])
        ax.plot(xs, ys, marker="o", label=attack)
        for x, y, label in zip(xs, ys, labels, strict=True):
            ax.annotate(label, (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("benign mean L1 change (what users lose)")
    ax.set_ylabel("clone fidelity (what attackers get)")
    ax.set_title("Utility vs protection across the sweep", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "tradeoff.png", dpi=110)
    return "tradeoff.png"
