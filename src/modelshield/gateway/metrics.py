"""Prometheus metrics, one registry per app (no module globals)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram


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

    def observe_request(
        self, model: str, outcome: str, status: int, rows: int, seconds: float
    ) -> None:
        """Count one request (label children are cached: ``labels()`` is slow per call)."""
        key = (model, outcome, str(status))
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(*key),
                self.rows.labels(model),
                self.latency.labels(model),
            )
            self._children[key] = children
        children[0].inc()
        if outcome == "answered":
            children[1].inc(rows)
            children[2].observe(seconds)
