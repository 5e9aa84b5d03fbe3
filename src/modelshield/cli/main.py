"""``modelshield`` — the command line. One module per command group."""

from __future__ import annotations

import sys
from typing import Any

import click

from modelshield import __version__
from modelshield.errors import ModelShieldError, PolicyError


class ModelShieldGroup(click.Group):
    """Turns every modelshield error into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PolicyError as err:
            for path, message in err.errors:
                click.echo(f"error: {err.source}: {path}: {message}", err=True)
            sys.exit(err.exit_code)
        except ModelShieldError as err:
            click.echo(f"error: {err.detail}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=ModelShieldGroup)
@click.version_option(__version__, prog_name="modelshield")
def cli() -> None:
    """Protect machine-learning models served over an API from model extraction."""


def _register() -> None:
    from modelshield.cli.accounts import accounts
    from modelshield.cli.evaluate import evaluate
    from modelshield.cli.policy import policy
    from modelshield.cli.serve import serve

    cli.add_command(serve)
    cli.add_command(accounts)
    cli.add_command(policy)
    cli.add_command(evaluate)


def main() -> None:
    _register()
    cli(prog_name="modelshield")
