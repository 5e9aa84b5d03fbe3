"""Alert sinks: the store, the structured log, and an HTTP webhook with retries.

De-duplication happens before a sink sees an alert (:class:`AlertDeduper`): one alert
per (subject, detector) per ``alert_dedup_s``, unless its severity rose.

Example:
    >>> deduper = AlertDeduper(window_s=60.0)
    >>> state: dict[str, list[float]] = {}
    >>> deduper.should_emit(state, "acc_1:rules", "high", now=0.0)
    True
    >>> deduper.should_emit(state, "acc_1:rules", "high", now=10.0)
    False
    >>> deduper.should_emit(state, "acc_1:rules", "critical", now=20.0)
    True
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import httpx
import orjson

from modelshield.monitor.records import SEVERITIES, Alert, Severity
from modelshield.policy.monitoring import WebhookSettings
from modelshield.storage.base import Store

log = logging.getLogger("modelshield.monitor.alerts")

Sleep = Callable[[float], Awaitable[None]]


class AlertSink(Protocol):
    async def send(self, alert: Alert) -> None: ...


class AlertDeduper:
    """Emit an alert once per key and window, or again when its severity rises."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s

    def should_emit(
        self, state: dict[str, list[float]], key: str, severity: Severity, now: float
    ) -> bool:
        rank = float(SEVERITIES.index(severity))
        last = state.get(key)
        if last is not None and now - last[0] < self.window_s and rank <= last[1]:
            return False
        state[key] = [now, rank]
        return True


class StoreSink:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def send(self, alert: Alert) -> None:
        await self.store.append_alert(alert)


class LogSink:
    """One structured (JSON) log line per alert, never carrying inputs or keys."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self.logger = logger

    async def send(self, alert: Alert) -> None:
        body = alert.to_dict()
        body["event"] = "modelshield.alert"
        level = logging.WARNING if alert.severity in ("high", "critical") else logging.INFO
        self.logger.log(level, orjson.dumps(body).decode())


class WebhookSink:
    """POST each alert as JSON; retried with exponential backoff, never blocking others.

    ``sleep`` and ``transport`` are inputs so tests neither wait nor open sockets.
    """

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.sleep = sleep
        self._client = httpx.AsyncClient(timeout=settings.timeout_s, transport=transport)
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.failed = 0

    async def send(self, alert: Alert) -> None:
        task = asyncio.create_task(self._deliver(alert))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, alert: Alert) -> None:
        delay = self.settings.backoff_s
        body = orjson.dumps(alert.to_dict())
        for attempt in range(self.settings.retries + 1):
            try:
                response = await self._client.post(
                    str(self.settings.url),
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                if response.status_code < 500 and response.status_code != 429:
                    if response.is_success:
                        self.delivered += 1
                    else:
                        self.failed += 1
                        log.warning(
                            "webhook refused alert %s: %d", alert.alert_id, response.status_code
                        )
                    return
            except httpx.HTTPError as exc:
                log.info("webhook attempt %d failed: %s", attempt + 1, type(exc).__name__)
            if attempt < self.settings.retries:
                await self.sleep(delay)
                delay *= 2
        self.failed += 1
        log.warning("webhook gave up on alert %s", alert.alert_id)

    async def close(self, timeout: float = 10.0) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        await self._client.aclose()
