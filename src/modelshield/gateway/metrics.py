"""Prometheus metrics, one registry per app (no module globals)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from modelshield.events.record import QueryEvent


class GatewayMetrics:
    """Request, row and latency counters exposed at ``/metrics``.

    Example:
        >>> GatewayMetrics().requests.labels("digits", "answered", "200").inc()
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "modelshield_requests",
            "Inference requests by model, outcome and HTTP status.",
            ["model", "outcome", "status"],
            registry=self.registry,
        )
        self.rows = Counter(
            "modelshield_rows",
            "Input rows answered by the model.",
            ["model"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "modelshield_request_seconds",
            "Gateway latency of inference requests (model call included).",
            ["model"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self._children: dict[tuple[str, ...], tuple[Any, Any, Any]] = {}
        self.events_written = Counter(
            "modelshield_events_written",
            "Query events committed to the store.",
            registry=self.registry,
        )

    def observe_events(self, events: Sequence[QueryEvent]) -> None:
        """Count the requests of a group of query events (one per request): the event
        sink calls this as it finishes each group, so a request's path never touches the
        metrics. Label children are cached (``labels()`` is slow per call)."""
        groups: dict[tuple[str, str, str], list[QueryEvent]] = {}
        for event in events:
            groups.setdefault((event.model, event.outcome, str(event.status)), []).append(event)
        for key, members in groups.items():
            requests, rows, latency = self._child(key)
            requests.inc(len(members))
            if key[1] == "answered":
                rows.inc(sum(event.rows for event in members))
                for event in members:
                    if event.latency_ms is not None:
                        latency.observe(event.latency_ms / 1000.0)

    def _child(self, key: tuple[str, str, str]) -> tuple[Any, Any, Any]:
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(*key),
                self.rows.labels(key[0]),
                self.latency.labels(key[0]),
            )
            self._children[key] = children
        return children
