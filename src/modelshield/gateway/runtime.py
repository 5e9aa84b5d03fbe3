"""The running gateway: policy, store, account service, backends, pipeline and event sink."""

from __future__ import annotations

import logging
from pathlib import Path

from modelshield.clock import Clock, SystemClock
from modelshield.controls.pipeline import Pipeline
from modelshield.controls.usage import UsageService
from modelshield.events.draft import EventBuilder
from modelshield.events.sink import GroupCommitSink
from modelshield.gateway.metrics import GatewayMetrics
from modelshield.identity.secret import Secrets, load_secrets
from modelshield.identity.service import AccountService
from modelshield.models.base import ModelBackend
from modelshield.models.registry import build_backend
from modelshield.monitor.service import Monitor
from modelshield.policy.schema import Policy
from modelshield.storage.base import Store
from modelshield.storage.registry import open_store

log = logging.getLogger("modelshield.gateway")


class Gateway:
    """Everything a request handler needs, built from a Policy.

    Time, secrets, the store and the backends are inputs (STYLE.md #5): tests pass a
    FakeClock, fixed secrets, a memory store or a backend of their own.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        clock: Clock | None = None,
        secrets: Secrets | None = None,
        store: Store | None = None,
        backends: dict[str, ModelBackend] | None = None,
    ) -> None:
        self.policy = policy
        self.clock = clock or SystemClock()
        self.secrets = secrets or load_secrets(policy)
        self.accounts = AccountService(
            store or open_store(policy.storage.uri),
            self.secrets.server_secret,
            self.clock,
            plans=policy.plan_names,
            credential_ttl=policy.server.credential_cache_s,
        )
        # the service's store: every account or key change made through this gateway
        # (admin API, responder, anything holding gateway.store) empties its key cache
        self.store: Store = self.accounts.store
        limits_uri = policy.storage.limits_uri
        self.limits_store: Store = open_store(limits_uri) if limits_uri else self.store
        state_dir = Path(policy.server.state_dir)
        self.backends: dict[str, ModelBackend] = backends or {
            name: build_backend(name, spec, state_dir) for name, spec in policy.models.items()
        }
        self.pipeline = Pipeline.from_policy(
            policy, self.backends, store=self.limits_store, secret=self.secrets.server_secret
        )
        self.usage = UsageService(policy, self.store, self.limits_store, self.clock)
        self.metrics = GatewayMetrics()
        events = policy.events
        self.sink = GroupCommitSink(
            self.store,
            flush_interval=events.flush_interval_ms / 1000.0,
            max_batch=events.max_batch,
            max_queue=events.max_queue,
            sync=events.sync,
            builder=EventBuilder(self.secrets.server_secret),
        )
        self.sink.subscribe_finished(self.metrics.observe_events)
        self.sink.subscribe(lambda batch: self.metrics.events_written.inc(len(batch)))
        self.monitor = Monitor(policy, self.store, self.clock, backends=self.backends)
        if self.monitor.enabled:
            self.sink.subscribe(self.monitor.listener)

    async def start(self) -> None:
        await self.store.open()
        if self.limits_store is not self.store:
            await self.limits_store.open()
        for backend in self.backends.values():
            await backend.load()
        await self.sink.start()
        await self.monitor.start()

    async def stop(self) -> None:
        try:
            await self.sink.close()
            await self.monitor.stop()
        finally:
            for backend in self.backends.values():
                try:
                    await backend.close()
                except Exception:
                    log.exception("closing a model backend failed")
            await self.store.close()
            if self.limits_store is not self.store:
                await self.limits_store.close()
