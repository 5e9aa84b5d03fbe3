"""Output shaping end to end: minimized, perturbed, deterministic answers and shaping levels."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import GatewayClient, bearer, make_policy, v2_body
from modelshield.models.demo import load_or_train_digits
from modelshield.policy.schema import Policy
from shaping_helpers import SHAPING_LEVELS, SHAPING_PLANS, shaping_policy_data

INFER = "/v2/models/digits/infer"


@pytest.fixture
async def sgw(
    app_client_factory: Callable[..., Awaitable[GatewayClient]], policy: Policy, tmp_path: Path
) -> GatewayClient:
    """A gateway whose plans shape their answers (the `policy` fixture copied the model)."""
    data = shaping_policy_data()
    shaped = make_policy(
        tmp_path, models=data["models"], plans=SHAPING_PLANS, shaping_levels=SHAPING_LEVELS
    )
    return await app_client_factory(shaped)


def outputs_of(response: Any) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    return {o["name"]: o for o in response.json()["outputs"]}


def model_probabilities(gw: GatewayClient, rows: np.ndarray) -> np.ndarray:
    model = load_or_train_digits(Path(gw.gateway.policy.server.state_dir) / "models")
    probabilities: np.ndarray = model.predict_proba(rows)
    return probabilities


async def test_the_default_plan_answers_top3_rounded_perturbed_and_the_true_label(
    sgw: GatewayClient, digits_rows: np.ndarray
) -> None:
    _, key = await sgw.account()
    rows = digits_rows[:12]
    out = outputs_of(await sgw.http.post(INFER, json=v2_body(rows), headers=bearer(key)))
    assert list(out) == ["probabilities", "classes", "label"]
    assert out["probabilities"]["shape"] == out["classes"]["shape"] == [12, 3]
    assert out["classes"]["datatype"] == "INT64"
    probs = np.asarray(out["probabilities"]["data"]).reshape(12, 3)
    classes = np.asarray(out["classes"]["data"]).reshape(12, 3)
    truth = model_probabilities(sgw, rows)
    assert out["label"]["data"] == truth.argmax(axis=1).tolist()
    assert (classes[:, 0] == truth.argmax(axis=1)).all()
    assert (probs[:, 0] > probs[:, 1]).all() and (np.diff(probs, axis=1) <= 0).all()
    # exactly three decimals on the wire, and close to the model's own numbers
    assert all(len(repr(v).split(".")[-1]) <= 3 for v in out["probabilities"]["data"])
    revealed = np.take_along_axis(truth, classes, axis=1)
    assert np.abs(probs - revealed).max() < 0.03
    assert not np.allclose(probs, np.round(revealed, 3))  # perturbed


async def test_the_same_query_gets_the_identical_answer_from_every_account_and_replica(
    sgw: GatewayClient,
    app_client_factory: Callable[..., Awaitable[GatewayClient]],
    digits_rows: np.ndarray,
) -> None:
    rows = digits_rows[:8]
    _, alice = await sgw.account("alice")
    _, bob = await sgw.account("bob")
    first = (await sgw.http.post(INFER, json=v2_body(rows), headers=bearer(alice))).json()
    again = (await sgw.http.post(INFER, json=v2_body(rows), headers=bearer(alice))).json()
    other = (await sgw.http.post(INFER, json=v2_body(rows), headers=bearer(bob))).json()
    assert first["outputs"] == again["outputs"] == other["outputs"]
    # one row at a time, and jittered below the resolution (1.0): still identical
    rng = np.random.default_rng(5)
    jittered = np.clip(rows + rng.uniform(-0.45, 0.45, rows.shape), 0, 16)
    single = (await sgw.http.post(INFER, json=v2_body(jittered[3:4]), headers=bearer(bob))).json()
    probs = {o["name"]: o["data"] for o in first["outputs"]}
    assert {o["name"]: o["data"] for o in single["outputs"]} == {
        name: data[3 * 3 : 4 * 3] if name != "label" else data[3:4] for name, data in probs.items()
    }
    # another replica with the same secret (a second app on the same policy)
    replica = await app_client_factory(sgw.gateway.policy)
    _, carol = await replica.account("carol")
    third = (await replica.http.post(INFER, json=v2_body(rows), headers=bearer(carol))).json()
    assert third["outputs"] == first["outputs"]


async def test_v1_answers_list_classes_with_their_probabilities(
    sgw: GatewayClient, digits_rows: np.ndarray
) -> None:
    _, key = await sgw.account()
    response = await sgw.http.post(
        "/v1/models/digits:predict",
        json={"instances": digits_rows[:2].tolist()},
        headers=bearer(key),
    )
    predictions = response.json()["predictions"]
    assert [set(p) for p in predictions] == [{"probabilities", "classes", "label"}] * 2
    for p in predictions:
        assert len(p["probabilities"]) == len(p["classes"]) == 3
        assert p["classes"][0] == p["label"]


async def test_the_label_only_plan_reveals_the_label_and_nothing_else(
    sgw: GatewayClient, digits_rows: np.ndarray
) -> None:
    _, key = await sgw.account("labeller", plan="labels")
    response = await sgw.http.post(INFER, json=v2_body(digits_rows[:4]), headers=bearer(key))
    assert response.json()["outputs"] == [
        {
            "name": "label",
            "shape": [4],
            "datatype": "INT64",
            "data": model_probabilities(sgw, digits_rows[:4]).argmax(axis=1).tolist(),
        }
    ]
    meta = (await sgw.http.get("/v2/models/digits", headers=bearer(key))).json()
    assert meta["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [-1]}]
    assert "10" not in json.dumps(meta["outputs"])


async def test_metadata_describes_what_the_plan_receives(sgw: GatewayClient) -> None:
    _, key = await sgw.account()
    meta = (await sgw.http.get("/v2/models/digits", headers=bearer(key))).json()
    assert meta["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "classes", "datatype": "INT64", "shape": [-1, 3]},
        {"name": "label", "datatype": "INT64", "shape": [-1]},
    ]
    _, raw = await sgw.account("raw", plan="raw")
    meta = (await sgw.http.get("/v2/models/digits", headers=bearer(raw))).json()
    assert meta["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}


async def test_raising_the_shaping_level_takes_effect_on_the_next_request(
    sgw: GatewayClient, digits_rows: np.ndarray
) -> None:
    account_id, key = await sgw.account("suspect", plan="raw")
    body = v2_body(digits_rows[:2])

    async def names() -> list[str]:
        response = await sgw.http.post(INFER, json=body, headers=bearer(key))
        return [o["name"] for o in outputs_of(response).values()]

    assert await names() == ["probabilities", "label"]
    raised = await sgw.admin("POST", f"/accounts/{account_id}/shaping", json={"level": "degraded"})
    assert raised.status_code == 200, raised.text
    assert raised.json()["account"]["shaping_level"] == "degraded"
    out = outputs_of(await sgw.http.post(INFER, json=body, headers=bearer(key)))
    assert (
        out["probabilities"]["shape"] == [2, 1] and out["classes"]["data"] == out["label"]["data"]
    )
    await sgw.admin("POST", "/accounts/suspect/shaping", json={"level": "labels-only"})
    assert await names() == ["label"]
    meta = (await sgw.http.get("/v2/models/digits", headers=bearer(key))).json()
    assert [o["name"] for o in meta["outputs"]] == ["label"]
    cleared = await sgw.admin("POST", "/accounts/suspect/shaping", json={"level": None})
    assert cleared.json()["account"]["shaping_level"] is None
    assert await names() == ["probabilities", "label"]


async def test_admin_api_refuses_levels_the_policy_does_not_define(sgw: GatewayClient) -> None:
    await sgw.account("acme")
    response = await sgw.admin("POST", "/accounts/acme/shaping", json={"level": "platinum"})
    assert response.status_code == 422
    assert "unknown shaping level 'platinum'" in response.json()["error"]
    assert (await sgw.admin("POST", "/accounts/acme/shaping", json={})).status_code == 422
    missing = await sgw.admin("POST", "/accounts/nobody/shaping", json={"level": None})
    assert missing.status_code == 404


async def test_an_unknown_level_in_the_store_fails_closed_to_label_only(
    sgw: GatewayClient, digits_rows: np.ndarray
) -> None:
    account_id, key = await sgw.account("renamed")
    # e.g. set by a responder, then the policy was reloaded without that level
    await sgw.gateway.store.set_account_shaping(account_id, "retired-level")
    response = await sgw.http.post(INFER, json=v2_body(digits_rows[:1]), headers=bearer(key))
    assert [o["name"] for o in outputs_of(response).values()] == ["label"]
    await sgw.gateway.sink.flush()
    events = (await sgw.admin("GET", f"/accounts/{account_id}/events")).json()["events"]
    assert "unknown-shaping-level" in events[0]["flags"]
    assert "label-only" in events[0]["controls"]


async def test_events_record_which_shaping_controls_acted(
    sgw: GatewayClient, digits_rows: np.ndarray
) -> None:
    account_id, key = await sgw.account()
    await sgw.http.post(INFER, json=v2_body(digits_rows[:1]), headers=bearer(key))
    await sgw.gateway.sink.flush()
    events = (await sgw.admin("GET", f"/accounts/{account_id}/events")).json()["events"]
    assert events[0]["controls"] == ["noise", "minimization"]
    # the event keeps the model's own top-1 and margin, not the shaped ones
    assert events[0]["top1"] == model_probabilities(sgw, digits_rows[:1]).argmax(axis=1).tolist()


async def test_plans_without_shaping_answer_the_model_untouched(
    gw: GatewayClient, digits_rows: np.ndarray
) -> None:
    _, key = await gw.account()
    out = outputs_of(await gw.http.post(INFER, json=v2_body(digits_rows[:2]), headers=bearer(key)))
    np.testing.assert_allclose(
        np.asarray(out["probabilities"]["data"]).reshape(2, 10),
        model_probabilities(gw, digits_rows[:2]),
        atol=1e-6,
    )


async def test_clients_may_ask_for_the_classes_output_by_name(
    sgw: GatewayClient, digits_rows: np.ndarray
) -> None:
    _, key = await sgw.account()
    for names in (["probabilities", "classes"], ["classes"]):
        body = v2_body(digits_rows[:1], outputs=[{"name": n} for n in names])
        out = outputs_of(await sgw.http.post(INFER, json=body, headers=bearer(key)))
        assert list(out) == ["probabilities", "classes"]
    _, labeller = await sgw.account("labeller", plan="labels")
    body = v2_body(digits_rows[:1], outputs=[{"name": "classes"}])
    refused = await sgw.http.post(INFER, json=body, headers=bearer(labeller))
    assert refused.status_code == 422
    assert "'classes' is not available; available: label" in refused.json()["error"]
