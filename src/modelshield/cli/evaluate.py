"""``modelshield evaluate …`` — what the protection costs legitimate users."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from modelshield.cli.common import config_option, echo_json, run
from modelshield.errors import ConfigError
from modelshield.evaluation.utility import UtilityReport, evaluate_utility
from modelshield.identity.secret import load_secrets
from modelshield.models.registry import build_backend
from modelshield.policy.loader import resolve_policy


@click.group()
def evaluate() -> None:
    """Measure protection and its cost on held-out data."""


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
