"""Alert sinks: the webhook retries with backoff; de-duplication holds repeats back."""

from __future__ import annotations

import httpx

from modelshield.monitor.alerts import WebhookSink
from modelshield.monitor.records import Alert
from modelshield.policy.monitoring import WebhookSettings


async def test_webhook_retries_with_exponential_backoff_then_delivers() -> None:
    calls: list[bytes] = []
    waits: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.content)
        return httpx.Response(503 if len(calls) < 3 else 204)

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    settings = WebhookSettings(url="https://hooks.example.test/ms", retries=3, backoff_s=0.5)
    sink = WebhookSink(settings, transport=httpx.MockTransport(handler), sleep=sleep)
    await sink.send(Alert("al_1", "acc_1", 1.0, "high", "account:ood_fraction", 80.0))
    await sink.close()
    assert len(calls) == 3 and waits == [0.5, 1.0]
    assert sink.delivered == 1 and b'"al_1"' in calls[0]


async def test_webhook_gives_up_after_its_retries() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down")

    async def sleep(seconds: float) -> None:
        return None

    settings = WebhookSettings(url="https://hooks.example.test/ms", retries=2)
    sink = WebhookSink(settings, transport=httpx.MockTransport(handler), sleep=sleep)
    await sink.send(Alert("al_2", "acc_1", 1.0, "critical", "group:near_duplicate", 99.0))
    await sink.close()
    assert sink.failed == 1 and sink.delivered == 0
