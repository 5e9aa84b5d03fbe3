"""``modelshield evaluate …`` — attack simulation, and what protection costs and buys.

``modelshield evaluate [--scenario NAME|FILE] [--target URL] [--out DIR]`` runs a
scenario (:mod:`modelshield.evaluation.scenario`) and prints the efficacy and benign
tables; ``modelshield evaluate utility`` measures each plan's cost to legitimate users
on held-out data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

from modelshield.cli.common import config_option, echo_json, run
from modelshield.errors import ConfigError
from modelshield.evaluation.report import write_report
from modelshield.evaluation.runner import Evaluation, SiteFactory
from modelshield.evaluation.scenario import Scenario, load_scenario
from modelshield.evaluation.site import Site
from modelshield.evaluation.utility import UtilityReport, evaluate_utility
from modelshield.identity.secret import load_secrets
from modelshield.models.registry import build_backend
from modelshield.policy.loader import resolve_policy
from modelshield.policy.schema import Policy


@click.group(invoke_without_command=True)
@click.option(
    "--scenario",
    "scenario_ref",
    default="default",
    show_default=True,
    help="A built-in scenario name (default, quick, sweep-noise) or a scenario YAML file.",
)
@click.option(
    "--target",
    default=None,
    metavar="URL",
    help="Evaluate a running modelshield at URL (admin token from $MODELSHIELD_ADMIN_TOKEN "
    "or the policy's state directory) instead of an in-process gateway.",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False),
    help="Write results.json, report.md, report.html and PNG plots into this folder.",
)
@click.option("--seed", default=None, type=int, help="Override the scenario's seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Policy file to evaluate instead of the scenario's own policy.",
)
@click.pass_context
def evaluate(
    ctx: click.Context,
    scenario_ref: str,
    target: str | None,
    out: str | None,
    seed: int | None,
    as_json: bool,
    quiet: bool,
    config: str | None,
) -> None:
    """Run attacks and benign traffic against the gateway and report what each achieved.

    Every attack of the scenario runs against the protected gateway (beside simulated
    legitimate accounts) and against the unprotected model; the tables show clone
    fidelity with and without protection, whether and when each attack was flagged, and
    the legitimate accounts' false positives and utility.
    """
    if ctx.invoked_subcommand is not None:
        return
    from modelshield.evaluation.results import (
        BENIGN_HEADER,
        EFFICACY_HEADER,
        benign_rows,
        efficacy_rows,
        text_table,
    )

    scenario = load_scenario(scenario_ref)
    updates: dict[str, object] = {}
    if config is not None:
        if not Path(config).is_file():
            raise ConfigError(f"policy file not found: {config}")
        updates["policy"] = str(Path(config).resolve())
    if seed is not None:
        updates["seed"] = seed
    if updates:
        scenario = scenario.model_copy(update=updates)
    factory = None
    if target is not None:
        factory = remote_site_factory(scenario, target)
    evaluation = Evaluation(scenario, site_factory=factory)
    if quiet or as_json:
        results = run(evaluation.run())
    else:
        with click.progressbar(
            length=evaluation.total_runs, label=f"scenario {scenario.name}", file=sys.stderr
        ) as bar:

            def advance(label: str) -> None:
                bar.label = f"scenario {scenario.name}: {label}"
                bar.update(1)

            evaluation.progress = advance
            results = run(evaluation.run())
    notes: list[str] = []
    if out is not None:
        notes = write_report(results, Path(out))
    if as_json:
        echo_json(results.to_dict())
        return
    click.echo(
        f"\nscenario {results.scenario} (seed {results.seed}) on {results.site}; "
        f"{results.elapsed_s:.0f} s\n"
    )
    click.echo(text_table(EFFICACY_HEADER, efficacy_rows(results)))
    click.echo("")
    click.echo(text_table(BENIGN_HEADER, benign_rows(results)))
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if out is not None:
        click.echo(f"\nreport: {Path(out) / 'report.html'}")


def remote_site_factory(scenario: Scenario, url: str) -> SiteFactory:
    """Sites on the deployed gateway at ``url``, with the admin token of the policy."""
    from modelshield.evaluation.site import RemoteSite

    policy = scenario.build_policy()
    token = load_secrets(policy).admin_token
    model = scenario.model or next(iter(policy.models))
    spec = policy.models[model]
    plan = policy.plans[scenario.plan or policy.default_plan_name]
    batch = min(policy.server.max_batch_rows, plan.max_batch_rows or 1 << 30)

    def factory(_: Policy) -> Site:
        return RemoteSite(url, token, model=model, input_name=spec.input.name, batch_rows=batch)

    return factory


@evaluate.command("utility")
@click.option("--model", default=None, help="Model to evaluate (default: the policy's first).")
@click.option(
    "--copies",
    default=16,
    show_default=True,
    type=click.IntRange(2, 256),
    help="Copies per row in the averaging-attack check.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the jitter.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@config_option
def utility(model: str | None, copies: int, seed: int, as_json: bool, config: str | None) -> None:
    """Per plan: top-1 agreement, L1/KL change and ECE on the digits held-out split, and
    whether averaging repeated or jittered queries recovers the unprotected answer.

    Every plan is measured as it is configured, then every shaping level on top of the
    default plan. The server secret is the one the gateway uses (noise differs with
    the secret, its statistics do not).
    """
    from modelshield.models.demo import digits_split

    policy = resolve_policy(config)
    name = model or next(iter(policy.models))
    spec = policy.models.get(name)
    if spec is None:
        raise ConfigError(f"no model named {name!r}; models: {', '.join(policy.models)}")
    _, rows, _, targets = digits_split()
    if spec.input.features != rows.shape[1]:
        raise ConfigError(
            f"model {name!r} takes {spec.input.features} features; the evaluation data is "
            f"the digits held-out split ({rows.shape[1]} features)"
        )
    labels = np.asarray(targets, dtype=np.int64)
    if spec.class_labels:
        column = {label: i for i, label in enumerate(spec.class_labels)}
        labels = np.asarray([column.get(int(t), -1) for t in targets], dtype=np.int64)
    secret = load_secrets(policy).server_secret
    backend = build_backend(name, spec, Path(policy.server.state_dir))

    async def session() -> UtilityReport:
        await backend.load()
        try:
            return await evaluate_utility(
                policy,
                backend,
                model=name,
                secret=secret,
                rows=rows,
                labels=labels,
                copies=copies,
                seed=seed,
            )
        finally:
            await backend.close()

    report = run(session())
    if as_json:
        echo_json(report.to_dict())
        return
    click.echo(
        f"model {report.model}: {report.rows} held-out digits rows; "
        f"averaging check with {report.copies} copies per row\n"
    )
    click.echo(report.to_markdown())
