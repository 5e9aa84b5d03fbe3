"""``modelshield accounts …`` — create, list, show, suspend, unsuspend, rotate-key, revoke-key."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from modelshield.cli.common import config_option, echo_json, with_accounts
from modelshield.identity.records import Account
from modelshield.identity.service import AccountService
from modelshield.policy.schema import Policy


def _when(value: float | None) -> str:
    if value is None:
        return "-"
    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@click.group()
def accounts() -> None:
    """Manage customer accounts and their API keys."""


@accounts.command("create")
@click.argument("name")
@click.option("--plan", default=None, help="Plan name (default: the policy's default plan).")
@click.option("--email", default=None)
@click.option("--organisation", "--org", "organisation", default=None)
@click.option("--json", "as_json", is_flag=True, help='Print {"account_id": ..., "api_key": ...}.')
@config_option
def create(
    name: str,
    plan: str | None,
    email: str | None,
    organisation: str | None,
    as_json: bool,
    config: str | None,
) -> None:
    """Create account NAME and print its API key (shown only once)."""

    async def body(service: AccountService, policy: Policy) -> tuple[Account, str, str]:
        account, issued = await service.create(
            name, plan=plan, email=email, organisation=organisation
        )
        return account, issued.plaintext, issued.record.key_id

    account, api_key, key_id = with_accounts(config, body)
    if as_json:
        echo_json(
            {"account_id": account.id, "api_key": api_key, "key_id": key_id, "plan": account.plan}
        )
        return
    click.echo(f"account_id: {account.id}")
    click.echo(f"plan:       {account.plan}")
    click.echo(f"key_id:     {key_id}")
    click.echo(f"api_key:    {api_key}")
    click.echo("Store the key now: it is not shown again.", err=True)


@accounts.command("list")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True)
@config_option
def list_(limit: int, as_json: bool, config: str | None) -> None:
    """List accounts."""

    async def body(service: AccountService, policy: Policy) -> list[Account]:
        return await service.store.list_accounts(limit=limit)

    found = with_accounts(config, body)
    if as_json:
        echo_json([a.to_dict() for a in found])
        return
    click.echo(f"{'ID':<21}  {'NAME':<24}  {'PLAN':<10}  {'STATUS':<9}  CREATED")
    for a in found:
        click.echo(f"{a.id:<21}  {a.name:<24}  {a.plan:<10}  {a.status:<9}  {_when(a.created_at)}")


@accounts.command("show")
@click.argument("ref")
@click.option(
    "--events",
    default=10,
    show_default=True,
    type=click.IntRange(0, 1000),
    help="How many recent query events to show.",
)
@click.option("--json", "as_json", is_flag=True)
@config_option
def show(ref: str, events: int, as_json: bool, config: str | None) -> None:
    """Show account REF (id or name), its keys and recent query events."""

    async def body(service: AccountService, policy: Policy) -> dict[str, Any]:
        account = await service.resolve(ref)
        keys = await service.store.list_keys(account.id)
        recent = await service.store.recent_events(account.id, events) if events else []
        total = await service.store.count_events(account.id)
        return {
            "account": account.to_dict(),
            "keys": [k.to_public_dict() for k in keys],
            "events_total": total,
            "recent_events": [e.to_dict() for e in recent],
        }

    data = with_accounts(config, body)
    if as_json:
        echo_json(data)
        return
    account = data["account"]
    for field in ("id", "name", "plan", "status", "status_reason", "email", "organisation"):
        if account.get(field) is not None:
            click.echo(f"{field + ':':<15}{account[field]}")
    click.echo(f"{'created:':<15}{_when(account['created_at'])}")
    click.echo("keys:")
    for key in data["keys"]:
        state = "active" if key["active"] else f"revoked {_when(key['revoked_at'])}"
        click.echo(f"  {key['key_id']}  created {_when(key['created_at'])}  {state}")
    click.echo(f"query events:  {data['events_total']} in total")
    for event in data["recent_events"]:
        click.echo(
            f"  {_when(event['time'])}  {event['model']:<10} {event['outcome']:<8} "
            f"{event['status']}  rows={event['rows']}"
            + (f"  {event['problem']}" if event.get("problem") else "")
        )


@accounts.command("suspend")
@click.argument("ref")
@click.option("--reason", required=True, help="Why (recorded with the account).")
@config_option
def suspend(ref: str, reason: str, config: str | None) -> None:
    """Suspend account REF: its next request gets 403."""

    async def body(service: AccountService, policy: Policy) -> Account:
        return await service.suspend(ref, reason)

    account = with_accounts(config, body)
    click.echo(f"{account.id} suspended: {reason}")


@accounts.command("unsuspend")
@click.argument("ref")
@click.option("--reason", default=None)
@config_option
def unsuspend(ref: str, reason: str | None, config: str | None) -> None:
    """Lift the suspension of account REF."""

    async def body(service: AccountService, policy: Policy) -> Account:
        return await service.unsuspend(ref, reason)

    account = with_accounts(config, body)
    click.echo(f"{account.id} active")


@accounts.command("rotate-key")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@config_option
def rotate_key(ref: str, as_json: bool, config: str | None) -> None:
    """Issue a new key for account REF and revoke its other keys."""

    async def body(service: AccountService, policy: Policy) -> tuple[str, str, str, list[str]]:
        account, issued, revoked = await service.rotate_key(ref)
        return account.id, issued.plaintext, issued.record.key_id, revoked

    account_id, api_key, key_id, revoked = with_accounts(config, body)
    if as_json:
        echo_json(
            {"account_id": account_id, "api_key": api_key, "key_id": key_id, "revoked": revoked}
        )
        return
    click.echo(f"key_id:  {key_id}")
    click.echo(f"api_key: {api_key}")
    click.echo(f"revoked: {', '.join(revoked) or '-'}")


@accounts.command("revoke-key")
@click.argument("key_id")
@config_option
def revoke_key(key_id: str, config: str | None) -> None:
    """Revoke the key KEY_ID (the public id shown by `accounts show`)."""

    async def body(service: AccountService, policy: Policy) -> str:
        key = await service.revoke_key(key_id)
        return key.key_id

    click.echo(f"{with_accounts(config, body)} revoked")
