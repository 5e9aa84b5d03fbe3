"""The gateway in front of a real Open Inference Protocol server on loopback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

from helpers import GatewayClient, bearer, make_policy, v2_body
from upstream_server import Behaviour, closed_port, run_upstream


def upstream_policy(tmp_path: Path, url: str):  # type: ignore[no-untyped-def]
    return make_policy(
        tmp_path,
        models={
            "digits": {
                "backend": {
                    "kind": "upstream",
                    "url": url,
                    "timeout_s": 0.3,
                    "connect_timeout_s": 0.3,
                },
                "input": {"name": "input-0", "features": 64, "min": 0, "max": 16},
            }
        },
    )


async def test_answers_pass_through_and_failures_are_502_504_uncharged(
    app_client_factory: Callable[..., Awaitable[GatewayClient]],
    tmp_path: Path,
    digits_rows: np.ndarray,
) -> None:
    with run_upstream(Behaviour()) as server:
        gw = await app_client_factory(upstream_policy(tmp_path, server.url))
        account_id, key = await gw.account()
        ok = await gw.http.post(
            "/v2/models/digits/infer", json=v2_body(digits_rows[:4]), headers=bearer(key)
        )
        assert ok.status_code == 200, ok.text
        probs = np.asarray(ok.json()["outputs"][0]["data"]).reshape(4, 10)
        np.testing.assert_allclose(probs, server.model.predict_proba(digits_rows[:4]), atol=1e-6)
        assert server.requests[-1]["inputs"][0]["shape"] == [4, 64]

        server.behaviour = Behaviour(infer="fail", status=500)
        failed = await gw.http.post(
            "/v2/models/digits/infer", json=v2_body(digits_rows[:2]), headers=bearer(key)
        )
        assert failed.status_code == 502
        assert failed.headers["content-type"] == "application/problem+json"
        assert server.url not in failed.text

        server.behaviour = Behaviour(infer="slow", delay_s=2.0)
        slow = await gw.http.post(
            "/v2/models/digits/infer", json=v2_body(digits_rows[:2]), headers=bearer(key)
        )
        assert slow.status_code == 504

        server.behaviour = Behaviour(infer="malformed")
        broken = await gw.http.post(
            "/v2/models/digits/infer", json=v2_body(digits_rows[:2]), headers=bearer(key)
        )
        assert broken.status_code == 502

        server.behaviour = Behaviour(ready=False)
        assert (await gw.http.get("/v2/health/ready")).status_code == 503

        await gw.gateway.sink.flush()
        events = await gw.gateway.store.recent_events(account_id)
        assert [(e.status, e.charged_rows) for e in events] == [
            (502, 0),
            (504, 0),
            (502, 0),
            (200, 4),
        ]
        assert all(e.outcome == "error" for e in events[:3])


async def test_unreachable_upstream_is_502(
    app_client_factory: Callable[..., Awaitable[GatewayClient]],
    tmp_path: Path,
    digits_rows: np.ndarray,
) -> None:
    gw = await app_client_factory(upstream_policy(tmp_path, f"http://127.0.0.1:{closed_port()}"))
    _, key = await gw.account()
    response = await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(digits_rows[:1]), headers=bearer(key)
    )
    assert response.status_code == 502
    assert (await gw.http.get("/v2/health/ready")).json()["models"] == {"digits": False}


async def test_rows_of_failed_upstream_calls_are_refunded(
    app_client_factory: Callable[..., Awaitable[GatewayClient]],
    tmp_path: Path,
    digits_rows: np.ndarray,
) -> None:
    with run_upstream(Behaviour(infer="fail", status=503)) as server:
        policy = upstream_policy(tmp_path, server.url)
        metered = make_policy(
            tmp_path,
            models={k: v.model_dump(mode="json") for k, v in policy.models.items()},
            plans={
                "metered": {
                    "max_batch_rows": 8,
                    "rate_limits": [{"name": "burst", "rate": 1, "per": "1h", "burst": 8}],
                    "budgets": {"day": 100},
                }
            },
        )
        gw = await app_client_factory(metered)
        account_id, key = await gw.account()
        for _ in range(3):
            failed = await gw.http.post(
                "/v2/models/digits/infer", json=v2_body(digits_rows[:8]), headers=bearer(key)
            )
            assert failed.status_code == 502
        usage = {
            u["name"]: u
            for u in (await gw.admin("GET", f"/accounts/{account_id}/usage")).json()["usage"]
        }
        assert usage["day"]["used"] == 0 and usage["burst"]["remaining"] == 8
        server.behaviour = Behaviour()
        ok = await gw.http.post(
            "/v2/models/digits/infer", json=v2_body(digits_rows[:8]), headers=bearer(key)
        )
        assert ok.status_code == 200
