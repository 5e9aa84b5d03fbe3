"""``modelshield policy check FILE``."""

from __future__ import annotations

import click

from modelshield.policy.loader import load_policy


@click.group()
def policy() -> None:
    """Validate policy files."""


@policy.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--config", "config", hidden=True, default=None, help="Ignored; FILE is checked.")
def check(file: str, config: str | None) -> None:
    """Validate FILE, reporting every error with its path in the file."""
    loaded = load_policy(file)
    click.echo(
        f"{file}: OK ({len(loaded.models)} model(s): {', '.join(loaded.models)}; "
        f"{len(loaded.plans)} plan(s): {', '.join(loaded.plans)}; "
        f"default plan: {loaded.default_plan_name})"
    )
