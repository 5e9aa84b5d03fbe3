"""``modelshield serve`` — run the gateway (the built-in demo policy without a config)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from modelshield import __version__
from modelshield.cli.common import config_option, with_accounts
from modelshield.identity.keys import parse_key_id, verify_key
from modelshield.identity.secret import load_secrets, read_or_create_secret_file
from modelshield.identity.service import AccountService
from modelshield.policy.loader import CONFIG_ENV, resolve_policy
from modelshield.policy.schema import DemoBackend, Policy

DEMO_ACCOUNT = "demo"


async def ensure_demo_key(service: AccountService, policy: Policy) -> str:
    """The demo account's key, kept in <state_dir>/demo-api-key (0600) across restarts."""
    path = Path(policy.server.state_dir) / "demo-api-key"
    if path.exists():
        saved = read_or_create_secret_file(path)
        key_id = parse_key_id(saved)
        record = await service.store.get_key(key_id) if key_id else None
        account = await service.store.find_account_by_name(DEMO_ACCOUNT)
        if (
            record is not None
            and account is not None
            and record.account_id == account.id
            and verify_key(service._secret, saved, record)
        ):
            return saved
    account = await service.store.find_account_by_name(DEMO_ACCOUNT)
    if account is None:
        _, issued = await service.create(DEMO_ACCOUNT, organisation="modelshield demo")
    else:
        _, issued, _ = await service.rotate_key(account.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(issued.plaintext + "\n")
    return issued.plaintext


def _prepare_demo_models(policy: Policy) -> None:
    """Train and cache demo models once, before workers start (not once per worker)."""
    if any(isinstance(m.backend, DemoBackend) for m in policy.models.values()):
        from modelshield.models.demo import load_or_train_digits

        load_or_train_digits(Path(policy.server.state_dir) / "models")


@click.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def serve(config: str | None, host: str, port: int, workers: int, log_level: str) -> None:
    """Run the gateway."""
    import uvicorn

    policy = resolve_policy(config)
    secrets = load_secrets(policy)
    demo = config is None
    _prepare_demo_models(policy)
    demo_key = with_accounts(config, ensure_demo_key) if demo else None

    shown_host = f"[{host}]" if ":" in host else host
    base = f"http://{shown_host}:{port}"
    model = next(iter(policy.models))
    source = "the built-in demo policy" if demo else config
    click.echo(f"modelshield {__version__} serving {source}")
    click.echo(f"  base URL:     {base}")
    click.echo(f"  inference:    POST {base}/v2/models/{model}/infer")
    click.echo(f"  admin API:    {base}/admin/api/")
    click.echo(f"  admin token:  from {secrets.admin_token_source}")
    click.echo(f"  OpenAPI:      {base}/openapi.json    metrics: {base}/metrics")
    click.echo(f"  storage:      {policy.storage.uri}")
    if demo_key:
        click.echo(f"  demo API key: {demo_key}")
        click.echo(
            f"  try: curl -H 'Authorization: Bearer {demo_key}' "
            f"-d @examples/digits-row.json {base}/v2/models/{model}/infer"
        )
    if config is not None:
        os.environ[CONFIG_ENV] = str(Path(config).resolve())
    else:
        os.environ.pop(CONFIG_ENV, None)
    uvicorn.run(
        "modelshield.gateway.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=30,
    )
