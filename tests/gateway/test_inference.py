"""End to end through the ASGI app: answers, events and every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import GatewayClient, bearer, v2_body
from modelshield.models.demo import load_or_train_digits

PROBLEM = "application/problem+json"


def probs_of(body: dict) -> np.ndarray:
    out = {o["name"]: o for o in body["outputs"]}["probabilities"]
    return np.asarray(out["data"], dtype=np.float64).reshape(out["shape"])


async def test_v2_infer_returns_probabilities_and_labels(
    gw: GatewayClient, digits_rows: np.ndarray
) -> None:
    _, key = await gw.account()
    rows = digits_rows[:3]
    response = await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(rows, id="req-1"), headers=bearer(key)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "digits" and body["id"] == "req-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["probabilities"]["shape"] == [3, 10]
    assert outputs["probabilities"]["datatype"] == "FP32"
    assert outputs["label"] == {
        "name": "label",
        "shape": [3],
        "datatype": "INT64",
        "data": outputs["label"]["data"],
    }
    model = load_or_train_digits(
        gw.gateway.policy.server.state_dir
        and __import__("pathlib").Path(gw.gateway.policy.server.state_dir) / "models"
    )
    expected = model.predict_proba(rows)
    np.testing.assert_allclose(probs_of(body), expected, atol=1e-6)
    assert outputs["label"]["data"] == expected.argmax(axis=1).tolist()


async def test_curl_style_form_content_type_is_parsed_as_json(
    gw: GatewayClient, digits_rows: np.ndarray
) -> None:
    _, key = await gw.account()
    response = await gw.http.post(
        "/v2/models/digits/infer",
        content=json.dumps(v2_body(digits_rows[:1])),
        headers={**bearer(key), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200


async def test_nested_data_and_x_api_key_header(gw: GatewayClient, digits_rows: np.ndarray) -> None:
    _, key = await gw.account()
    body = v2_body(digits_rows[:2])
    body["inputs"][0]["data"] = digits_rows[:2].tolist()
    response = await gw.http.post("/v2/models/digits/infer", json=body, headers={"X-API-Key": key})
    assert response.status_code == 200
    assert len(response.json()["outputs"][1]["data"]) == 2


async def test_v1_predict(gw: GatewayClient, digits_rows: np.ndarray) -> None:
    _, key = await gw.account()
    response = await gw.http.post(
        "/v1/models/digits:predict",
        json={"instances": digits_rows[:2].tolist()},
        headers=bearer(key),
    )
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    assert set(predictions[0]) == {"probabilities", "label"}
    assert abs(sum(predictions[0]["probabilities"]) - 1.0) < 1e-5
    by_name = await gw.http.post(
        "/v1/models/digits:predict",
        json={"instances": [{"input-0": digits_rows[0].tolist()}]},
        headers=bearer(key),
    )
    assert by_name.json()["predictions"][0]["label"] == predictions[0]["label"]


async def test_label_only_plan_reveals_no_probabilities(
    gw: GatewayClient, digits_rows: np.ndarray
) -> None:
    _, key = await gw.account("labeller", plan="labels")
    response = await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(digits_rows[:2]), headers=bearer(key)
    )
    assert [o["name"] for o in response.json()["outputs"]] == ["label"]
    assert "10" not in json.dumps(response.json()["outputs"][0]["shape"])
    v1 = await gw.http.post(
        "/v1/models/digits:predict",
        json={"instances": digits_rows[:1].tolist()},
        headers=bearer(key),
    )
    assert set(v1.json()["predictions"][0]) == {"label"}
    meta = await gw.http.get("/v2/models/digits", headers=bearer(key))
    assert [o["name"] for o in meta.json()["outputs"]] == ["label"]
    refused = await gw.http.post(
        "/v2/models/digits/infer",
        json=v2_body(digits_rows[:1], outputs=[{"name": "probabilities"}]),
        headers=bearer(key),
    )
    assert refused.status_code == 422
    assert "not available" in refused.json()["error"]


async def test_requested_outputs_narrow_the_answer(
    gw: GatewayClient, digits_rows: np.ndarray
) -> None:
    _, key = await gw.account()
    response = await gw.http.post(
        "/v2/models/digits/infer",
        json=v2_body(digits_rows[:1], outputs=[{"name": "label"}]),
        headers=bearer(key),
    )
    assert [o["name"] for o in response.json()["outputs"]] == ["label"]


async def test_metadata_and_health(gw: GatewayClient) -> None:
    _, key = await gw.account()
    meta = await gw.http.get("/v2/models/digits", headers=bearer(key))
    assert meta.status_code == 200
    assert meta.json()["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 64]}]
    assert meta.json()["outputs"][0]["shape"] == [-1, 10]
    assert (await gw.http.get("/v2/models/digits")).status_code == 401
    assert (await gw.http.get("/v2/health/live")).json() == {"live": True}
    ready = await gw.http.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def _row(values: list[float] | None = None) -> list[float]:
    return values if values is not None else [1.0] * 64


BAD_REQUESTS = [
    # (name, content, headers, status, message fragment)
    ("malformed json", b'{"inputs": [', {}, 400, "not valid JSON"),
    ("not an object", b"[1, 2]", {}, 400, "JSON object"),
    ("empty body", b"", {}, 400, "empty"),
    ("no inputs", b'{"data": []}', {}, 400, "'inputs'"),
    ("wrong content type", b"{}", {"Content-Type": "text/xml"}, 415, "text/xml"),
    (
        "wrong datatype",
        json.dumps(
            {"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "BYTES", "data": _row()}]}
        ).encode(),
        {},
        422,
        "datatype",
    ),
    (
        "wrong feature count",
        json.dumps(
            {
                "inputs": [
                    {"name": "input-0", "shape": [1, 63], "datatype": "FP32", "data": [1.0] * 63}
                ]
            }
        ).encode(),
        {},
        422,
        "64 features",
    ),
    (
        "shape and data disagree",
        json.dumps(
            {"inputs": [{"name": "input-0", "shape": [2, 64], "datatype": "FP32", "data": _row()}]}
        ).encode(),
        {},
        422,
        "needs 128 values",
    ),
    (
        "wrong rank",
        json.dumps(
            {
                "inputs": [
                    {"name": "input-0", "shape": [1, 8, 8], "datatype": "FP32", "data": _row()}
                ]
            }
        ).encode(),
        {},
        422,
        "expected shape",
    ),
    (
        "strings",
        json.dumps(
            {
                "inputs": [
                    {"name": "input-0", "shape": [1, 64], "datatype": "FP32", "data": ["a"] * 64}
                ]
            }
        ).encode(),
        {},
        422,
        "numbers",
    ),
    (
        "nan literal",
        b'{"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP32", "data": [NaN, 1]}]}',
        {},
        400,
        "not valid JSON",
    ),
    (
        "huge number is infinite",
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [1, 64],
                        "datatype": "FP64",
                        "data": [1e308] * 63 + [0],
                    }
                ]
            }
        )
        .encode()
        .replace(b"1e+308", b"1e999"),
        {},
        4,
        "",
    ),
    (
        "out of range",
        json.dumps(
            {
                "inputs": [
                    {"name": "input-0", "shape": [1, 64], "datatype": "FP32", "data": [17.0] * 64}
                ]
            }
        ).encode(),
        {},
        422,
        "<= 16",
    ),
    (
        "negative",
        json.dumps(
            {
                "inputs": [
                    {"name": "input-0", "shape": [1, 64], "datatype": "FP32", "data": [-1.0] * 64}
                ]
            }
        ).encode(),
        {},
        422,
        ">= 0",
    ),
    (
        "empty batch",
        json.dumps(
            {"inputs": [{"name": "input-0", "shape": [0, 64], "datatype": "FP32", "data": []}]}
        ).encode(),
        {},
        422,
        "empty batch",
    ),
    (
        "batch over plan maximum",
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [17, 64],
                        "datatype": "FP32",
                        "data": [1.0] * 64 * 17,
                    }
                ]
            }
        ).encode(),
        {},
        422,
        "maximum of 16",
    ),
    (
        "unknown input name",
        json.dumps(
            {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": _row()}]}
        ).encode(),
        {},
        422,
        "unknown input",
    ),
    ("body over limit", b'{"inputs": [' + b" " * 70_000 + b"]}", {}, 413, "limit"),
]


@pytest.mark.parametrize(
    ("content", "headers", "status", "fragment"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
async def test_bad_input_is_a_clear_4xx_problem(
    gw: GatewayClient, content: bytes, headers: dict[str, str], status: int, fragment: str
) -> None:
    _, key = await gw.account()
    response = await gw.http.post(
        "/v2/models/digits/infer",
        content=content,
        headers={"Content-Type": "application/json", **bearer(key), **headers},
    )
    if status < 10:  # any 4xx
        assert 400 <= response.status_code < 500, response.text
    else:
        assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == response.status_code
    assert body["error"] == body["detail"] and fragment in body["error"]
    assert body["type"].startswith("https://") and body["title"]


async def test_bad_v1_inputs(gw: GatewayClient) -> None:
    _, key = await gw.account()
    for payload, status in [
        ({"instances": "x"}, 400),
        ({"instances": [[1, 2], [3]]}, 422),
        ({"instances": []}, 422),
        ({"instances": [{"other": [1] * 64}]}, 400),
    ]:
        response = await gw.http.post(
            "/v1/models/digits:predict", json=payload, headers=bearer(key)
        )
        assert response.status_code == status, (payload, response.text)
        assert response.headers["content-type"] == PROBLEM


async def test_unknown_model_is_404(gw: GatewayClient, digits_rows: np.ndarray) -> None:
    _, key = await gw.account()
    response = await gw.http.post(
        "/v2/models/nope/infer", json=v2_body(digits_rows[:1]), headers=bearer(key)
    )
    assert response.status_code == 404
    assert response.json()["type"].endswith("#model-not-found")
    route = await gw.http.get("/no/such/route")
    assert route.status_code == 404 and route.headers["content-type"] == PROBLEM
    method = await gw.http.get("/v2/models/digits/infer")
    assert method.status_code == 405 and method.headers["content-type"] == PROBLEM


async def test_every_bad_key_gets_the_identical_401(
    gw: GatewayClient, digits_rows: np.ndarray
) -> None:
    _account_id, key = await gw.account()
    _, other = await gw.account("bob")
    await gw.gateway.accounts.revoke_key(other.split("_")[1])
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    unknown = "msk_0123456789ab_" + key.split("_", 2)[2]
    cases = {
        "missing": {},
        "malformed": {"Authorization": "Bearer not-a-key"},
        "wrong scheme": {"Authorization": f"Basic {key}"},
        "unknown": bearer(unknown),
        "forged": bearer(forged),
        "revoked": bearer(other),
    }
    bodies = set()
    for headers in cases.values():
        response = await gw.http.post(
            "/v2/models/digits/infer", json=v2_body(digits_rows[:1]), headers=headers
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        bodies.add(response.content)
    assert len(bodies) == 1
    assert key not in bodies.pop().decode()


async def test_suspended_account_gets_403_on_its_next_request(
    gw: GatewayClient, digits_rows: np.ndarray
) -> None:
    account_id, key = await gw.account()
    ok = await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(digits_rows[:1]), headers=bearer(key)
    )
    assert ok.status_code == 200
    await gw.gateway.accounts.suspend(account_id, "extraction pattern")
    denied = await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(digits_rows[:1]), headers=bearer(key)
    )
    assert denied.status_code == 403
    assert denied.json()["type"].endswith("#account-suspended")
    assert "extraction" not in denied.text  # the reason stays with the operator
    await gw.gateway.accounts.unsuspend(account_id)
    again = await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(digits_rows[:1]), headers=bearer(key)
    )
    assert again.status_code == 200


async def test_every_request_leaves_a_query_event(
    gw: GatewayClient, digits_rows: np.ndarray
) -> None:
    account_id, key = await gw.account()
    await gw.http.post(
        "/v2/models/digits/infer",
        json=v2_body(digits_rows[:3]),
        headers={**bearer(key), "User-Agent": "pytest-agent"},
    )
    await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(np.full((1, 64), 99.0)), headers=bearer(key)
    )
    await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(digits_rows[:1]), headers=bearer("msk_bad")
    )
    await gw.gateway.sink.flush()
    events = await gw.gateway.store.recent_events(account_id, 10)
    denied, answered = events
    assert answered.outcome == "answered" and answered.status == 200
    assert answered.rows == 3 and answered.charged_rows == 3
    assert answered.key_id == key.split("_")[1]
    assert answered.client == "203.0.113.7" and answered.user_agent == "pytest-agent"
    assert answered.time == gw.gateway.clock.now()
    raw = load_or_train_digits(
        __import__("pathlib").Path(gw.gateway.policy.server.state_dir) / "models"
    ).predict_proba(digits_rows[:3])
    assert answered.top1 == raw.argmax(axis=1).tolist()
    top2 = np.sort(raw, axis=1)
    np.testing.assert_allclose(answered.margin, top2[:, -1] - top2[:, -2], atol=1e-5)
    np.testing.assert_allclose(answered.entropy, -(raw * np.log(raw)).sum(axis=1), atol=1e-5)
    assert len(answered.input_digest or "") == 32
    assert denied.outcome == "denied" and denied.status == 422
    assert denied.problem == "invalid-input" and denied.charged_rows == 0
    assert "validation" in denied.controls
    assert await gw.gateway.store.count_events() == 3  # the 401 is recorded without an account


async def test_same_input_same_digest_different_input_different_digest(
    gw: GatewayClient, digits_rows: np.ndarray
) -> None:
    account_id, key = await gw.account()
    for rows in (digits_rows[:1], digits_rows[:1], digits_rows[1:2]):
        await gw.http.post("/v2/models/digits/infer", json=v2_body(rows), headers=bearer(key))
    await gw.gateway.sink.flush()
    digests = [e.input_digest for e in await gw.gateway.store.recent_events(account_id)]
    assert digests[1] == digests[2] != digests[0]


async def test_metrics_count_requests(gw: GatewayClient, digits_rows: np.ndarray) -> None:
    _, key = await gw.account()
    await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(digits_rows[:2]), headers=bearer(key)
    )
    await gw.http.post("/v2/models/digits/infer", json=v2_body(digits_rows[:2]))  # no key
    # counted from the requests' query events, which /metrics finishes first
    text = (await gw.http.get("/metrics")).text
    assert 'modelshield_requests_total{model="digits",outcome="answered",status="200"} 1.0' in text
    assert 'modelshield_requests_total{model="digits",outcome="denied",status="401"} 1.0' in text
    assert 'modelshield_rows_total{model="digits"} 2.0' in text
    assert 'modelshield_request_seconds_count{model="digits"} 1.0' in text
    await gw.gateway.sink.flush()  # and the events are still written, once
    assert await gw.gateway.store.count_events() == 2


async def test_openapi_covers_every_route(gw: GatewayClient) -> None:
    spec = (await gw.http.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in [
        "/v2/models/{model}/infer",
        "/v1/models/{model}:predict",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{model}",
        "/admin/api/accounts",
        "/admin/api/accounts/{ref}",
        "/admin/api/accounts/{ref}/suspend",
        "/admin/api/accounts/{ref}/unsuspend",
        "/admin/api/accounts/{ref}/keys/rotate",
        "/admin/api/keys/{key_id}/revoke",
        "/admin/api/accounts/{ref}/events",
        "/metrics",
    ]:
        assert path in paths, path
    infer = paths["/v2/models/{model}/infer"]["post"]
    assert "inputs" in infer["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert set(paths) >= {"/metrics"} and spec["components"]["securitySchemes"]["apiKey"]
