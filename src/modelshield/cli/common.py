"""Shared CLI plumbing: the --config option, the policy, and a store session."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import click

from modelshield.clock import SystemClock
from modelshield.identity.secret import load_secrets
from modelshield.identity.service import AccountService
from modelshield.policy.loader import CONFIG_ENV, resolve_policy
from modelshield.policy.schema import Policy
from modelshield.storage.registry import open_store

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def config_option(fn: F) -> F:
    """``--config FILE`` (or $MODELSHIELD_CONFIG); without either, the demo policy."""
    return click.option(
        "--config",
        "config",
        envvar=CONFIG_ENV,
        type=click.Path(dir_okay=False),
        default=None,
        help=f"Policy file (default: ${CONFIG_ENV}, else the built-in demo policy).",
    )(fn)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def with_accounts(config: str | None, body: Callable[[AccountService, Policy], Awaitable[T]]) -> T:
    """Run ``body`` with an AccountService on the policy's store, closing it afterwards."""
    policy = resolve_policy(config)
    secrets = load_secrets(policy)

    async def session() -> T:
        store = open_store(policy.storage.uri)
        limits_uri = policy.storage.limits_uri
        counters = open_store(limits_uri) if limits_uri else store
        await store.open()
        try:
            if counters is not store:
                await counters.open()
            service = AccountService(
                store, secrets.server_secret, SystemClock(), plans=policy.plan_names
            )
            service.counters = counters
            return await body(service, policy)
        finally:
            await store.close()
            if counters is not store:
                await counters.close()

    return run(session())


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
