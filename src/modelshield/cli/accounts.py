"""``modelshield accounts …`` — create, list, show, suspend, unsuspend, rotate-key, revoke-key."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from modelshield.cli.common import config_option, echo_json, with_accounts
from modelshield.controls.shaping import check_level
from modelshield.controls.usage import UsageService, Window
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
        alerts = await service.store.list_alerts(account.id, 10)
        actions = await service.store.list_actions(account.id, 10)
        state = await service.store.load_monitor_state(account.id)
        risk = json.loads(state) if state else {}
        return {
            "account": account.to_dict(),
            "keys": [k.to_public_dict() for k in keys],
            "events_total": total,
            "recent_events": [e.to_dict() for e in recent],
            "risk": {
                "risk": risk.get("last_risk", 0.0),
                "reasons": risk.get("last_reasons", []),
                "rows_monitored": risk.get("rows_seen", 0),
            },
            "alerts": [a.to_dict() for a in alerts],
            "actions": [a.to_dict() for a in actions],
        }

    data = with_accounts(config, body)
    if as_json:
        echo_json(data)
        return
    account = data["account"]
    for field in (
        "id",
        "name",
        "plan",
        "status",
        "status_reason",
        "shaping_level",
        "email",
        "organisation",
    ):
        if account.get(field) is not None:
            click.echo(f"{field + ':':<15}{account[field]}")
    click.echo(f"{'created:':<15}{_when(account['created_at'])}")
    click.echo("keys:")
    for key in data["keys"]:
        state = "active" if key["active"] else f"revoked {_when(key['revoked_at'])}"
        click.echo(f"  {key['key_id']}  created {_when(key['created_at'])}  {state}")
    risk = data["risk"]
    click.echo(f"{'risk:':<15}{risk['risk']:.0f}/100 over {risk['rows_monitored']} rows")
    for reason in risk["reasons"]:
        click.echo(f"  - {reason}")
    click.echo(f"alerts:        {len(data['alerts'])} recent")
    for alert in data["alerts"]:
        click.echo(
            f"  {_when(alert['time'])}  {alert['severity']:<8} {alert['detector']}  "
            f"risk={alert['risk']:.0f}  {alert['alert_id']}"
        )
    for action in data["actions"]:
        undone = f"  undone {_when(action['undone_at'])}" if action.get("undone_at") else ""
        click.echo(
            f"  action {action['kind']:<8} {_when(action['time'])}  {action['action_id']}{undone}"
        )
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


@accounts.command("shaping")
@click.argument("ref")
@click.argument("level", required=False)
@click.option("--clear", is_flag=True, help="Back to the plan's own shaping.")
@config_option
def shaping(ref: str, level: str | None, clear: bool, config: str | None) -> None:
    """Raise account REF's output shaping to LEVEL (one of the policy's shaping_levels).

    Takes effect on the account's next request, on every replica, without a reload.
    """
    if clear == (level is not None):
        raise click.UsageError("give either LEVEL or --clear")

    async def body(service: AccountService, policy: Policy) -> Account:
        checked = check_level(policy, level)
        account = await service.resolve(ref)
        return await service.store.set_account_shaping(account.id, checked)

    account = with_accounts(config, body)
    click.echo(f"{account.id} shaping level: {account.shaping_level or '(plan default)'}")


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


def _usage_service(service: AccountService, policy: Policy) -> UsageService:
    return UsageService(policy, service.store, service.counters, service.clock)


@accounts.command("usage")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@config_option
def usage(ref: str, as_json: bool, config: str | None) -> None:
    """Show account REF's usage against each rate limit and budget."""

    async def body(service: AccountService, policy: Policy) -> list[dict[str, Any]]:
        account = await service.resolve(ref)
        return [line.to_dict() for line in await _usage_service(service, policy).usage(account)]

    lines = with_accounts(config, body)
    if as_json:
        echo_json(lines)
        return
    if not lines:
        click.echo("no rate limits or budgets on this account's plan")
        return
    click.echo(
        f"{'LIMIT':<12} {'KIND':<7} {'SCOPE':<22} {'USED':>9} {'REMAINING':>10} "
        f"{'LIMIT':>9}  RESETS IN"
    )
    for line in lines:
        used = "-" if line["used"] is None else str(line["used"])
        reset = "never" if line["reset_after"] is None else f"{line['reset_after']:.0f} s"
        click.echo(
            f"{line['name']:<12} {line['kind']:<7} {line['scope']:<22} {used:>9} "
            f"{line['remaining']:>10} {line['limit']:>9}  {reset}"
        )


@accounts.command("reset-usage")
@click.argument("ref")
@click.option("--limit", "limits", multiple=True, help="Only this limit/budget (repeatable).")
@config_option
def reset_usage(ref: str, limits: tuple[str, ...], config: str | None) -> None:
    """Reset account REF's rate-limit and budget counters."""

    async def body(service: AccountService, policy: Policy) -> list[str]:
        account = await service.resolve(ref)
        return await _usage_service(service, policy).reset(account, list(limits) or None)

    names = with_accounts(config, body)
    click.echo(f"reset: {', '.join(names) or '-'}")


@accounts.command("grant")
@click.argument("ref")
@click.option("--window", type=click.Choice(["day", "month", "lifetime"]), required=True)
@click.option("--rows", type=click.IntRange(1, 1_000_000_000), required=True)
@config_option
def grant(ref: str, window: str, rows: int, config: str | None) -> None:
    """Grant account REF extra rows in its current day/month (or lifetime) budget."""

    async def body(service: AccountService, policy: Policy) -> dict[str, Any]:
        account = await service.resolve(ref)
        windows: dict[str, Window] = {"day": "day", "month": "month", "lifetime": "lifetime"}
        return await _usage_service(service, policy).grant(account, windows[window], rows)

    result = with_accounts(config, body)
    until = (
        "never expires" if result["expires_at"] is None else f"until {_when(result['expires_at'])}"
    )
    click.echo(
        f"{window} budget ({result['period']}): +{result['granted_rows']} rows granted, {until}"
    )


@accounts.command("throttle")
@click.argument("ref")
@click.argument("fraction", type=click.FloatRange(0, 1, min_open=True), required=False)
@click.option("--clear", is_flag=True, help="Give the account its plan's full rates again.")
@config_option
def throttle(ref: str, fraction: float | None, clear: bool, config: str | None) -> None:
    """Give account REF only FRACTION (0-1] of its plan's rate limits."""
    if (fraction is None) == (not clear):
        raise click.UsageError("give a FRACTION or --clear")

    async def body(service: AccountService, policy: Policy) -> Account:
        return await service.throttle(ref, None if clear else fraction)

    account = with_accounts(config, body)
    state = "cleared" if account.throttle is None else f"{account.throttle:g} of the plan's rates"
    click.echo(f"{account.id} throttle {state}")
