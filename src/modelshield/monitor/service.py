"""The in-process monitor: consumes durable event batches off the request path.

The event sink calls :meth:`Monitor.listener` with every committed batch; the listener
only queues it. A background task folds the rows into per-account state (bounded, see
:mod:`modelshield.monitor.features`) and the Sybil linker, scores the accounts and
linked groups it touched, emits de-duplicated alerts to the sinks and lets the
responder act. State is saved to the store every ``persist_interval_s`` and on stop,
and loaded on first use, so a restart loses nothing that was persisted.

Example:
    >>> from modelshield.policy import demo_policy
    >>> from modelshield.storage.memory import MemoryStore
    >>> from modelshield.clock import FakeClock
    >>> Monitor(demo_policy(), MemoryStore(), FakeClock()).enabled
    True
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from modelshield.clock import Clock
from modelshield.events.record import QueryEvent
from modelshield.models.base import ModelBackend
from modelshield.monitor.alerts import AlertDeduper, AlertSink, LogSink, StoreSink, WebhookSink
from modelshield.monitor.calibration import baseline, training_rows
from modelshield.monitor.detectors import RiskScorer, Verdict
from modelshield.monitor.features import (
    LOW_MARGIN,
    AccountState,
    Reference,
    WindowView,
    compute_features,
    examples,
    merge_views,
)
from modelshield.monitor.records import Alert
from modelshield.monitor.responder import Responder
from modelshield.monitor.signups import SignupWatcher
from modelshield.monitor.sybil import SybilLinker
from modelshield.policy.schema import Policy
from modelshield.storage.base import Store

log = logging.getLogger("modelshield.monitor")

GLOBAL_KEY = "__global__"
BASELINE_VERSION = 2


class Monitor:
    """Features, detectors, Sybil links, alerts and responses for one gateway."""

    def __init__(
        self,
        policy: Policy,
        store: Store,
        clock: Clock,
        *,
        backends: dict[str, ModelBackend] | None = None,
        sinks: Sequence[AlertSink] | None = None,
        max_cached_accounts: int = 10_000,
    ) -> None:
        self.policy = policy
        self.settings = policy.monitoring
        self.store = store
        self.clock = clock
        self.backends = backends or {}
        self.max_cached = max_cached_accounts
        self.enabled = self.settings.enabled
        self.responder = Responder(
            self.settings, store, clock, shaping_levels=list(policy.shaping_levels)
        )
        self.deduper = AlertDeduper(self.settings.alert_dedup_s)
        self.webhook: WebhookSink | None = None
        if sinks is None:
            built: list[AlertSink] = [StoreSink(store), LogSink()]
            if self.settings.webhook is not None:
                self.webhook = WebhookSink(self.settings.webhook)
                built.append(self.webhook)
            sinks = built
        self.sinks = list(sinks)
        self.model: str | None = None
        self.reference: Reference | None = None
        self.scorer: RiskScorer | None = None
        self.states: OrderedDict[str, AccountState] = OrderedDict()
        self.dirty: set[str] = set()
        self.signups = SignupWatcher(
            window_s=self.settings.signup.burst_window_s,
            burst_size=self.settings.signup.burst_size,
        )
        self.linker = SybilLinker(
            capacity=self.settings.sybil.global_reservoir,
            min_links=self.settings.sybil.near_duplicate_links,
        )
        self.global_alerted: dict[str, list[float]] = {}
        self.processed = 0
        self._queue: asyncio.Queue[Sequence[QueryEvent]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_persist = 0.0

    # lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        if not self.enabled or self._task is not None:
            return
        await self._load_baseline()
        raw = await self.store.load_monitor_state(GLOBAL_KEY)
        if raw:
            data = orjson.loads(raw)
            self.linker.load(data.get("linker", {}))
            self.signups.signups = data.get("signups", [])
            self.global_alerted = data.get("alerted", {})
        self._queue = asyncio.Queue()
        self._last_persist = self.clock.now()
        self._task = asyncio.create_task(self._run(), name="modelshield-monitor")

    def listener(self, batch: Sequence[QueryEvent]) -> None:
        """The sink's hook: queue the batch, never work on the request path."""
        if self._queue is not None:
            self._queue.put_nowait(list(batch))

    async def drain(self) -> None:
        """Wait until every queued batch is processed (tests, shutdown)."""
        if self._queue is not None:
            await self._queue.join()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        await self.drain()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self.persist(all_cached=True)
        if self.webhook is not None:
            await self.webhook.close()
        self._queue = None

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = await self._queue.get()
            try:
                await self.process(batch)
            except Exception:  # a bad batch must not stop monitoring
                log.exception("monitor failed on a batch of %d events", len(batch))
            finally:
                self._queue.task_done()

    # baseline -------------------------------------------------------------------
    async def _load_baseline(self) -> None:
        for name, spec in self.policy.models.items():
            rows = training_rows(spec, Path(self.policy.server.state_dir))
            backend = self.backends.get(name)
            if rows is None or backend is None:
                continue
            await backend.load()
            probs = np.asarray(await backend.predict(rows.astype(np.float32)), dtype=np.float64)
            self.model = name
            reference, benign = await asyncio.to_thread(self._cached_baseline, rows, probs)
            self.reference = reference
            self.scorer = RiskScorer(
                target_fpr=self.settings.target_fpr,
                fixed=self.settings.thresholds,
                cutoffs={str(k): v for k, v in self.settings.severity_cutoffs.items()},
            ).fit(benign)
            self.linker.eps = reference.near_duplicate_eps
            return
        log.warning("monitoring: no model with known training data; accounts are not scored")

    def _cached_baseline(
        self, rows: np.ndarray, probs: np.ndarray
    ) -> tuple[Reference, list[dict[str, float]]]:
        import joblib

        s = self.settings
        key = hashlib.sha256(
            orjson.dumps([BASELINE_VERSION, s.lsh_bits, s.window, s.reservoir_cap])
            + probs.tobytes()
        ).hexdigest()[:16]
        path = Path(self.policy.server.state_dir) / "models" / f"monitor-baseline-{key}.joblib"
        if path.exists():
            try:
                found: tuple[Reference, list[dict[str, float]]] = joblib.load(path)
                return found
            except Exception:
                path.unlink(missing_ok=True)
        built = baseline(
            rows, probs, lsh_bits=s.lsh_bits, window=s.window, reservoir_cap=s.reservoir_cap
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        joblib.dump(built, tmp)
        os.replace(tmp, path)
        return built

    # state ----------------------------------------------------------------------
    async def state(self, account_id: str) -> AccountState:
        found = self.states.get(account_id)
        if found is None:
            raw = await self.store.load_monitor_state(account_id)
            found = AccountState.from_dict(orjson.loads(raw)) if raw else AccountState(account_id)
            self.states[account_id] = found
            if raw is None:
                account = await self.store.get_account(account_id)
                if account is not None:
                    self.signups.observe(account)
                    self.linker.set_clusters(c.members for c in self.signups.clusters())
        self.states.move_to_end(account_id)
        while len(self.states) > self.max_cached:
            old_id, old = self.states.popitem(last=False)
            await self.store.save_monitor_state(old_id, orjson.dumps(old.to_dict(), option=_NP))
            self.dirty.discard(old_id)
        return found

    async def persist(self, *, all_cached: bool = False) -> None:
        names = list(self.states) if all_cached else sorted(self.dirty)
        for account_id in names:
            state = self.states.get(account_id)
            if state is not None:
                blob = orjson.dumps(state.to_dict(), option=_NP)
                await self.store.save_monitor_state(account_id, blob)
        self.dirty.clear()
        blob = orjson.dumps(
            {
                "linker": self.linker.to_dict(),
                "signups": self.signups.signups,
                "alerted": self.global_alerted,
            },
            option=_NP,
        )
        await self.store.save_monitor_state(GLOBAL_KEY, blob)
        self._last_persist = self.clock.now()

    async def observe_signup(self, account_id: str) -> None:
        """Called by the sign-up route; clusters are checked right away."""
        account = await self.store.get_account(account_id)
        if account is None or not self.enabled:
            return
        self.signups.observe(account)
        clusters = self.signups.clusters()
        self.linker.set_clusters(c.members for c in clusters)
        now = self.clock.now()
        for cluster in clusters:
            if account_id not in cluster.members:
                continue
            key = f"signup:{cluster.kind}:{cluster.value}"
            if not self.deduper.should_emit(self.global_alerted, key, "low", now):
                continue
            alert = Alert(
                alert_id="al_" + os.urandom(8).hex(),
                account_id=account_id,
                time=now,
                severity="low",
                detector="signup-burst",
                risk=40.0,
                reasons=[
                    f"{len(cluster.members)} sign-ups sharing {cluster.kind} {cluster.value} "
                    f"within {cluster.last - cluster.first:.0f} s"
                ],
                evidence=cluster.to_dict(),
                group=cluster.members,
                dedup_key=key,
            )
            await self._emit(alert)

    # processing -----------------------------------------------------------------
    async def process(self, batch: Sequence[QueryEvent]) -> None:
        if self.reference is None or self.scorer is None:
            return
        touched: list[str] = []
        for event in batch:
            if event.account_id is None or not event.sketch or event.outcome != "answered":
                continue
            state = await self.state(event.account_id)
            self._fold(state, event)
            if event.account_id not in touched:
                touched.append(event.account_id)
        self.processed += len(batch)
        scored: set[str] = set()
        for account_id in touched:
            group = self.linker.group_of(account_id)
            if len(group) > 1 and account_id not in scored:
                await self._score_group(group)
                scored.update(group)
            await self._score_account(account_id)
        if self.clock.now() - self._last_persist >= self.settings.persist_interval_s:
            await self.persist()

    def _fold(self, state: AccountState, event: QueryEvent) -> None:
        assert self.reference is not None
        sketches = np.asarray(event.sketch, dtype=np.float64)
        state.add_rows(
            sketches,
            event.margin,
            event.entropy,
            event.top1,
            event.time,
            event.event_id,
            self.reference,
            window=self.settings.window,
            reservoir_cap=self.settings.reservoir_cap,
        )
        if self.settings.sybil.enabled:
            offset = len(state.x_min) - len(sketches)
            for row, distance, other in self.linker.add(state.account_id, sketches):
                state.note_cross(offset + row, distance, other)
        self.dirty.add(state.account_id)

    def verdict(self, view: WindowView, now: float) -> Verdict:
        assert self.reference is not None and self.scorer is not None
        features = compute_features(view, self.reference, now)
        features["rows"] = float(view.rows_seen)
        return self.scorer.score(features)

    async def _score_account(self, account_id: str) -> None:
        state = await self.state(account_id)
        if state.rows_seen < self.settings.min_rows:
            return
        view = state.view()
        result = self.verdict(view, self.clock.now())
        state.last_risk, state.last_reasons = result.risk, result.reasons
        if result.severity is not None:
            await self._alert(state, result, view, [account_id])

    async def _score_group(self, group: list[str]) -> None:
        members = set(group)
        states = [await self.state(m) for m in group]
        view = merge_views([s.view(members) for s in states])
        if view.rows_seen < self.settings.min_rows:
            return
        result = self.verdict(view, self.clock.now())
        if result.severity is None:
            return
        for state in states:
            await self._alert(state, result, view, group)

    async def _alert(
        self, state: AccountState, result: Verdict, view: WindowView, group: list[str]
    ) -> None:
        assert result.severity is not None and self.reference is not None
        prefix = "group" if len(group) > 1 else "account"
        top = result.fired[0] if result.fired else "risk"
        detector = f"{prefix}:{top}"
        key = f"{state.account_id}:{prefix}"
        now = self.clock.now()
        if not self.deduper.should_emit(state.alerted, key, result.severity, now):
            return
        eps = self.reference.near_duplicate_eps
        masks = {
            "ood_fraction": view.ood,
            "near_duplicate_fraction": (view.d_min > 0) & (view.d_min < eps),
            "low_margin_fraction": view.margin < LOW_MARGIN,
            "margin_median": view.margin < LOW_MARGIN,
        }
        mask = masks.get(top, np.ones(len(view.margin), dtype=bool))
        evidence = {k: round(v, 4) for k, v in result.features.items()}
        alert = Alert(
            alert_id="al_" + os.urandom(8).hex(),
            account_id=state.account_id,
            time=now,
            severity=result.severity,
            detector=detector,
            risk=round(result.risk, 1),
            reasons=result.reasons,
            evidence=evidence,
            example_event_ids=examples(view, np.asarray(mask, dtype=bool)),
            group=group if len(group) > 1 else [],
            dedup_key=key,
        )
        self.dirty.add(state.account_id)
        await self._emit(alert)

    async def _emit(self, alert: Alert) -> None:
        for sink in self.sinks:
            try:
                await sink.send(alert)
            except Exception:
                log.exception("alert sink %s failed", type(sink).__name__)
        try:
            await self.responder.respond(alert)
        except Exception:
            log.exception("responder failed on alert %s", alert.alert_id)

    # reports ----------------------------------------------------------------------
    async def report(self, account_id: str) -> dict[str, Any]:
        """Features, risk with reasons, and linked group of one account (admin API)."""
        body: dict[str, Any] = {"account_id": account_id, "enabled": self.enabled}
        if self.reference is None or self.scorer is None:
            return body
        state = await self.state(account_id)
        result = self.verdict(state.view(), self.clock.now())
        group = self.linker.group_of(account_id)
        body.update(
            rows=state.rows_seen,
            scored=state.rows_seen >= self.settings.min_rows,
            **result.to_dict(),
            group=group if len(group) > 1 else [],
        )
        if len(group) > 1:
            states = [await self.state(m) for m in group]
            merged = merge_views([s.view(set(group)) for s in states])
            body["group_verdict"] = self.verdict(merged, self.clock.now()).to_dict()
        return body

    def groups(self) -> list[list[str]]:
        return self.linker.groups()


_NP = orjson.OPT_SERIALIZE_NUMPY
