"""Evaluation: what the protection costs legitimate users, and what it denies attackers.

The notebook entry points are importable from here; each is loaded on first use, so
importing one evaluation module does not pull in the gateway::

    from modelshield.evaluation import load_scenario, run_scenario, write_report
    results = await run_scenario(load_scenario("quick"))
    write_report(results, Path("out"))

Example:
    >>> import modelshield.evaluation as evaluation
    >>> evaluation.load_scenario("quick").name
    'quick'
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelshield.evaluation.report import write_report
    from modelshield.evaluation.results import EvaluationResults
    from modelshield.evaluation.runner import Evaluation, run_scenario
    from modelshield.evaluation.scenario import (
        Scenario,
        builtin_scenarios,
        load_scenario,
        scenario_from_text,
    )
    from modelshield.evaluation.site import InProcessSite, RemoteSite

__all__ = [
    "Evaluation",
    "EvaluationResults",
    "InProcessSite",
    "RemoteSite",
    "Scenario",
    "builtin_scenarios",
    "load_scenario",
    "run_scenario",
    "scenario_from_text",
    "write_report",
]

_HOMES = {
    "Evaluation": "runner",
    "run_scenario": "runner",
    "EvaluationResults": "results",
    "InProcessSite": "site",
    "RemoteSite": "site",
    "Scenario": "scenario",
    "builtin_scenarios": "scenario",
    "load_scenario": "scenario",
    "scenario_from_text": "scenario",
    "write_report": "report",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
