"""Admin API: accounts, keys, suspension and events, behind the admin token."""

from __future__ import annotations

import numpy as np

from helpers import GatewayClient, bearer, v2_body


async def infer(gw: GatewayClient, key: str, rows: np.ndarray) -> int:
    response = await gw.http.post(
        "/v2/models/digits/infer", json=v2_body(rows), headers=bearer(key)
    )
    return response.status_code


async def test_admin_routes_need_the_admin_token(gw: GatewayClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        response = await gw.http.get("/admin/api/accounts", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
    _, key = await gw.account()
    assert (await gw.http.get("/admin/api/accounts", headers=bearer(key))).status_code == 401


async def test_account_lifecycle_over_the_admin_api(
    gw: GatewayClient, digits_rows: np.ndarray
) -> None:
    created = await gw.admin(
        "POST", "/accounts", json={"name": "acme", "plan": "labels", "email": "ops@acme.test"}
    )
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    body = created.json()
    account_id, key = body["account_id"], body["api_key"]
    assert body["account"]["plan"] == "labels" and body["account"]["status"] == "active"
    assert await infer(gw, key, digits_rows[:1]) == 200

    listed = (await gw.admin("GET", "/accounts")).json()["accounts"]
    assert [a["name"] for a in listed] == ["acme"]
    shown = (await gw.admin("GET", "/accounts/acme")).json()
    assert shown["account"]["id"] == account_id
    assert [k["active"] for k in shown["keys"]] == [True]
    assert "digest" not in shown["keys"][0]

    suspended = await gw.admin(
        "POST", f"/accounts/{account_id}/suspend", json={"reason": "manual review"}
    )
    assert suspended.json()["account"]["status"] == "suspended"
    assert await infer(gw, key, digits_rows[:1]) == 403
    await gw.admin("POST", f"/accounts/{account_id}/unsuspend")
    assert await infer(gw, key, digits_rows[:1]) == 200

    rotated = (await gw.admin("POST", f"/accounts/{account_id}/keys/rotate")).json()
    assert rotated["revoked"] == [body["key_id"]]
    assert await infer(gw, key, digits_rows[:1]) == 401
    assert await infer(gw, rotated["api_key"], digits_rows[:1]) == 200

    revoked = await gw.admin("POST", f"/keys/{rotated['key_id']}/revoke")
    assert revoked.json()["key"]["active"] is False
    assert await infer(gw, rotated["api_key"], digits_rows[:1]) == 401

    await gw.gateway.sink.flush()
    events = (await gw.admin("GET", f"/accounts/{account_id}/events?limit=3")).json()["events"]
    assert [e["status"] for e in events] == [200, 200, 403]  # 401s carry no account
    assert events[0]["account_id"] == account_id


async def test_admin_bad_input_is_problem_json(gw: GatewayClient) -> None:
    cases = [
        ("POST", "/accounts", {"name": ""}, 422),
        ("POST", "/accounts", {"name": "x", "unknown": 1}, 422),
        ("POST", "/accounts", {"name": "bad name!"}, 422),
        ("POST", "/accounts", {"name": "x", "plan": "platinum"}, 422),
        ("POST", "/accounts", {"name": "x", "email": "not-an-email"}, 422),
        ("GET", "/accounts/acc_missing", None, 404),
        ("POST", "/accounts/acc_missing/suspend", {"reason": "r"}, 404),
        ("POST", "/keys/ffffffffffff/revoke", None, 404),
    ]
    for method, path, payload, status in cases:
        response = await gw.admin(method, path, json=payload)
        assert response.status_code == status, (path, payload, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["error"]
    await gw.admin("POST", "/accounts", json={"name": "dup"})
    duplicate = await gw.admin("POST", "/accounts", json={"name": "dup"})
    assert duplicate.status_code == 409
    no_reason = await gw.admin("POST", "/accounts/dup/suspend", json={})
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["error"]
    malformed = await gw.admin(
        "POST", "/accounts", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert 400 <= malformed.status_code < 500
