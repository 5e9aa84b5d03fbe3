"""Prometheus metrics, one registry per app (no module globals)."""

from __future__ import annotations

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
        self.events_written = Counter(
            "modelshield_events_written",
            "Query events committed to the store.",
            registry=self.registry,
        )
