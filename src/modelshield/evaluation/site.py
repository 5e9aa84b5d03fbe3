"""Where a scenario runs: a gateway built in-process on a simulated clock, or a deployed one.

A :class:`Site` gives the harness what it needs around the attacks' query targets:
accounts (created by the operator or through self-service sign-up), time, and what
the monitor concluded (alerts and responder actions per account).

- :class:`InProcessSite` builds the gateway from a policy with a memory store, fixed
  secrets derived from the seed and a :class:`~modelshield.clock.FakeClock`. Time moves
  only when the harness moves it, so a patient attacker's ``Retry-After`` waits and a
  day of benign traffic cost no wall-clock time, and every run is reproducible.
  :meth:`settle` flushes the event sink and lets the monitor process everything
  before the harness looks for alerts, so "queries until flagged" is exact.
- :class:`RemoteSite` talks to a running modelshield over HTTP with the admin token:
  accounts through ``POST /admin/api/accounts`` (or ``/v1/signup``), alerts and actions
  through the admin API, real time. Alerts arrive after the gateway's group commit and
  the monitor's turn, so "queries until flagged" is an upper bound there.

Example:
    >>> from modelshield.policy import demo_policy
    >>> site = InProcessSite(demo_policy(), seed=0)
    >>> site.now()
    0.0
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any, Protocol

import httpx

from modelshield.clock import FakeClock
from modelshield.errors import ConfigError
from modelshield.evaluation.targets import (
    AfterBatch,
    OipTarget,
    Sleep,
    TargetRefused,
    retry_after_seconds,
)
from modelshield.identity.secret import Secrets
from modelshield.monitor.alerts import StoreSink
from modelshield.monitor.records import Alert, ResponseAction
from modelshield.policy.schema import Policy, StorageSettings

# a Monday, 00:00 UTC: simulated days start at midnight so nightly jobs run at night
EPOCH = 1_767_571_200.0


class Site(Protocol):
    """A gateway the harness runs a scenario against."""

    description: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def now(self) -> float:
        """Seconds since the run started."""
        ...

    async def wait_until(self, t: float) -> None: ...

    async def new_account(
        self,
        name: str,
        *,
        plan: str | None,
        address: str,
        user_agent: str,
        email: str,
        signup: bool,
        sleep: Sleep,
        after_batch: AfterBatch | None = None,
        max_wait: float = 86_400.0,
    ) -> tuple[str, OipTarget]:
        """A new account and a query target using its key, from ``address``."""
        ...

    async def observe(self) -> None:
        """Make what was sent so far visible to :meth:`alerts` where that is cheap
        (in-process: flush the events and let the monitor score them)."""
        ...

    async def settle(self) -> None:
        """Wait until everything sent so far has reached the monitor."""
        ...

    async def alerts(self, account_id: str) -> list[Alert]: ...

    async def actions(self, account_id: str) -> list[ResponseAction]: ...


def evaluation_secrets(seed: int) -> Secrets:
    """Fixed secrets for a seeded run (keyed noise is reproducible, never a real key)."""
    digest = hashlib.sha256(f"modelshield-evaluate:{seed}".encode()).digest()
    return Secrets(digest, "evaluation seed", digest.hex(), "evaluation seed")


class InProcessSite:
    """The gateway of ``policy`` in this process, on a memory store and a fake clock."""

    def __init__(self, policy: Policy, *, seed: int = 0, model: str | None = None) -> None:
        # simulated alerts stay in the simulation: no webhook, no log lines
        monitoring = policy.monitoring.model_copy(update={"webhook": None})
        self.policy = policy.model_copy(
            update={"storage": StorageSettings(uri="memory://"), "monitoring": monitoring}
        )
        self.seed = seed
        self.model = model or next(iter(policy.models))
        if self.model not in policy.models:
            raise ConfigError(f"no model named {self.model!r}; models: {', '.join(policy.models)}")
        self.clock = FakeClock(EPOCH)
        self.description = "in-process gateway (simulated clock)"
        self._app: Any = None
        self._clients: dict[str, httpx.AsyncClient] = {}

    @property
    def gateway(self) -> Any:
        return self._app.state.gateway

    async def start(self) -> None:
        from modelshield.gateway.app import create_app

        self._app = create_app(self.policy, clock=self.clock, secrets=evaluation_secrets(self.seed))
        self.gateway.monitor.sinks = [StoreSink(self.gateway.store)]
        await self.gateway.start()

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        if self._app is not None:
            await self.gateway.stop()
            self._app = None

    def now(self) -> float:
        return self.clock.now() - EPOCH

    async def wait_until(self, t: float) -> None:
        if t > self.now():
            self.clock.set(EPOCH + t)

    def _client(self, address: str) -> httpx.AsyncClient:
        client = self._clients.get(address)
        if client is None:
            transport = httpx.ASGITransport(app=self._app, client=(address, 40000))
            client = httpx.AsyncClient(transport=transport, base_url="http://gateway.evaluation")
            self._clients[address] = client
        return client

    async def new_account(
        self,
        name: str,
        *,
        plan: str | None,
        address: str,
        user_agent: str,
        email: str,
        signup: bool,
        sleep: Sleep,
        after_batch: AfterBatch | None = None,
        max_wait: float = 86_400.0,
    ) -> tuple[str, OipTarget]:
        client = self._client(address)
        settings = self.policy.monitoring.signup
        signup_plan = settings.plan or self.policy.default_plan_name
        if signup and settings.enabled and (plan is None or plan == signup_plan):
            account_id, key = await sign_up(
                client, name, email, user_agent, settings.tos_version, sleep
            )
        else:
            account, issued = await self.gateway.accounts.create(
                name, plan=plan, email=email, signup_address=address, signup_user_agent=user_agent
            )
            account_id, key = account.id, issued.plaintext
        return account_id, self._target(client, key, plan, sleep, after_batch, max_wait)

    def _target(
        self,
        client: httpx.AsyncClient,
        key: str,
        plan: str | None,
        sleep: Sleep,
        after_batch: AfterBatch | None,
        max_wait: float,
    ) -> OipTarget:
        spec = self.policy.models[self.model]
        plan_spec = self.policy.plans[plan or self.policy.default_plan_name]
        batch = min(self.policy.server.max_batch_rows, plan_spec.max_batch_rows or 1 << 30)
        return OipTarget(
            client,
            self.model,
            key,
            input_name=spec.input.name,
            batch_rows=batch,
            sleep=sleep,
            max_wait=max_wait,
            after_batch=after_batch,
        )

    async def observe(self) -> None:
        await self.gateway.sink.flush()
        await self.gateway.monitor.drain()

    async def settle(self) -> None:
        await self.observe()

    async def alerts(self, account_id: str) -> list[Alert]:
        found: list[Alert] = await self.gateway.store.list_alerts(account_id, limit=1000)
        return found

    async def actions(self, account_id: str) -> list[ResponseAction]:
        found: list[ResponseAction] = await self.gateway.store.list_actions(account_id)
        return found


async def sign_up(
    client: httpx.AsyncClient, name: str, email: str, user_agent: str, tos: str, sleep: Sleep
) -> tuple[str, str]:
    """Self-service sign-up as a patient client: wait out 429s, then the account and key."""
    body = {"name": name, "email": email, "accept_tos": tos}
    while True:
        response = await client.post("/v1/signup", json=body, headers={"User-Agent": user_agent})
        if response.status_code == 429:
            await sleep(retry_after_seconds(response.headers.get("Retry-After"), 60.0))
            continue
        if response.status_code != 201:
            raise TargetRefused(response.status_code, f"sign-up refused: {response.text[:200]}")
        data = response.json()
        return str(data["account_id"]), str(data["api_key"])


class RemoteSite:
    """A running modelshield at ``base_url``, driven with its admin token."""

    def __init__(
        self,
        base_url: str,
        admin_token: str,
        *,
        model: str = "digits",
        input_name: str = "input-0",
        batch_rows: int = 64,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.input_name = input_name
        self.batch_rows = batch_rows
        self.description = f"remote gateway at {self.base_url}"
        self._admin = {"Authorization": f"Bearer {admin_token}"}
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)
        self._started = time.monotonic()

    async def start(self) -> None:
        try:
            response = await self._client.get("/v2/health/ready")
            probe = await self._client.get("/admin/api/accounts?limit=1", headers=self._admin)
        except httpx.HTTPError as exc:
            raise ConfigError(f"cannot reach {self.base_url}: {exc}") from None
        if response.status_code != 200:
            raise ConfigError(f"{self.base_url} is not ready (HTTP {response.status_code})")
        if probe.status_code in (401, 403):
            raise ConfigError(
                f"{self.base_url} refused the admin token; set MODELSHIELD_ADMIN_TOKEN or "
                "--admin-token-file to the gateway's admin token"
            )
        self._started = time.monotonic()

    async def close(self) -> None:
        await self._client.aclose()

    def now(self) -> float:
        return time.monotonic() - self._started

    async def wait_until(self, t: float) -> None:
        delay = t - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    async def new_account(
        self,
        name: str,
        *,
        plan: str | None,
        address: str,
        user_agent: str,
        email: str,
        signup: bool,
        sleep: Sleep,
        after_batch: AfterBatch | None = None,
        max_wait: float = 86_400.0,
    ) -> tuple[str, OipTarget]:
        # a remote run cannot choose its client address: every account comes from here
        unique = f"{name}-{int(time.time() * 1000) % 10**8}"
        key: str | None = None
        if signup and plan is None:
            try:
                account_id, key = await sign_up(self._client, unique, email, user_agent, "1", sleep)
            except TargetRefused as refused:
                if refused.status not in (404, 422):
                    raise
        if key is None:
            body: dict[str, Any] = {"name": unique, "email": email}
            if plan is not None:
                body["plan"] = plan
            response = await self._client.post(
                "/admin/api/accounts", json=body, headers=self._admin
            )
            if response.status_code != 201:
                raise ConfigError(
                    f"creating an account on {self.base_url} failed: HTTP {response.status_code} "
                    f"{response.text[:200]}"
                )
            data = response.json()
            account_id, key = str(data["account_id"]), str(data["api_key"])
        target = OipTarget(
            self._client,
            self.model,
            key,
            input_name=self.input_name,
            batch_rows=self.batch_rows,
            sleep=sleep,
            max_wait=max_wait,
            after_batch=after_batch,
        )
        return account_id, target

    async def observe(self) -> None:
        """Nothing to do: the remote gateway's monitor runs on its own."""

    async def settle(self) -> None:
        # the gateway commits events within its flush interval (100 ms by default) and the
        # monitor scores them right after
        await asyncio.sleep(0.5)

    async def _admin_list(self, path: str, key: str) -> list[dict[str, Any]]:
        response = await self._client.get(path, headers=self._admin)
        if response.status_code != 200:
            return []
        data = response.json()
        items = data.get(key, []) if isinstance(data, dict) else data
        return [item for item in items if isinstance(item, dict)]

    async def alerts(self, account_id: str) -> list[Alert]:
        items = await self._admin_list(f"/admin/api/accounts/{account_id}/alerts", "alerts")
        return [Alert.from_dict(item) for item in items]

    async def actions(self, account_id: str) -> list[ResponseAction]:
        items = await self._admin_list(f"/admin/api/accounts/{account_id}/actions", "actions")
        return [ResponseAction.from_dict(item) for item in items]
