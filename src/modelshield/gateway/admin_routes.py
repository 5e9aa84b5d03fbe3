"""Admin API under ``/admin/api/``, authenticated with the admin token."""

from __future__ import annotations

import hmac
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from modelshield.controls.shaping import check_level
from modelshield.errors import AuthenticationFailed
from modelshield.gateway.client_routes import presented_key
from modelshield.gateway.runtime import Gateway
from modelshield.identity.records import Account


class CreateAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, examples=["acme"])
    plan: str | None = None
    email: str | None = Field(default=None, max_length=320)
    organisation: str | None = Field(default=None, max_length=200)


class UsageReset(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limits: list[str] | None = Field(
        default=None, description="Names of the limits/budgets to reset (default: all)."
    )


class BudgetGrant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    window: Literal["day", "month", "lifetime"]
    rows: int = Field(gt=0, le=1_000_000_000)


class Throttle(BaseModel):
    model_config = ConfigDict(extra="forbid")
    throttle: float | None = Field(
        description="Fraction (0, 1] of the plan's rate limits; null lifts the throttle."
    )


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=1000)


class ShapingChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: str | None = Field(
        description="A shaping level of the policy (shaping_levels), or null for the plan's.",
        examples=["labels-only"],
    )


class Suspension(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=1000)


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def require_admin(request: Request) -> Gateway:
    gateway = _gateway(request)
    token = presented_key(request) or ""
    expected = gateway.secrets.admin_token
    if not hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")):
        raise AuthenticationFailed("A valid admin token is required.")
    return gateway


def _account_view(account: Account) -> dict[str, Any]:
    return account.to_dict()


def admin_router() -> APIRouter:
    router = APIRouter(
        prefix="/admin/api",
        tags=["admin"],
        dependencies=[Depends(require_admin)],
        responses={401: {"description": "Missing or wrong admin token"}},
    )

    @router.post("/accounts", status_code=201, summary="Create an account and its first key")
    async def create_account(body: CreateAccount, request: Request) -> JSONResponse:
        gateway = _gateway(request)
        account, issued = await gateway.accounts.create(
            body.name, plan=body.plan, email=body.email, organisation=body.organisation
        )
        return JSONResponse(
            {
                "account": _account_view(account),
                "account_id": account.id,
                "api_key": issued.plaintext,
                "key_id": issued.record.key_id,
            },
            status_code=201,
            headers={"Cache-Control": "no-store"},
        )

    @router.get("/accounts", summary="List accounts")
    async def list_accounts(
        request: Request,
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        accounts = await _gateway(request).store.list_accounts(limit=limit, offset=offset)
        return {"accounts": [_account_view(a) for a in accounts]}

    @router.get("/accounts/{ref}", summary="An account (by id or name) and its keys")
    async def show_account(ref: str, request: Request) -> dict[str, Any]:
        gateway = _gateway(request)
        account = await gateway.accounts.resolve(ref)
        keys = await gateway.store.list_keys(account.id)
        return {"account": _account_view(account), "keys": [k.to_public_dict() for k in keys]}

    @router.post("/accounts/{ref}/suspend", summary="Suspend an account")
    async def suspend(ref: str, body: Suspension, request: Request) -> dict[str, Any]:
        account = await _gateway(request).accounts.suspend(ref, body.reason)
        return {"account": _account_view(account)}

    @router.post("/accounts/{ref}/unsuspend", summary="Lift a suspension")
    async def unsuspend(
        ref: str, request: Request, body: StatusChange | None = None
    ) -> dict[str, Any]:
        account = await _gateway(request).accounts.unsuspend(ref, body.reason if body else None)
        return {"account": _account_view(account)}

    @router.post("/accounts/{ref}/shaping", summary="Raise (or clear) an account's shaping")
    async def set_shaping(ref: str, body: ShapingChange, request: Request) -> dict[str, Any]:
        gateway = _gateway(request)
        level = check_level(gateway.policy, body.level)
        account = await gateway.accounts.resolve(ref)
        account = await gateway.store.set_account_shaping(account.id, level)
        return {"account": _account_view(account)}

    @router.post("/accounts/{ref}/keys/rotate", summary="Issue a new key, revoke the others")
    async def rotate(ref: str, request: Request) -> JSONResponse:
        account, issued, revoked = await _gateway(request).accounts.rotate_key(ref)
        return JSONResponse(
            {
                "account_id": account.id,
                "api_key": issued.plaintext,
                "key_id": issued.record.key_id,
                "revoked": revoked,
            },
            headers={"Cache-Control": "no-store"},
        )

    @router.post("/keys/{key_id}/revoke", summary="Revoke one key")
    async def revoke(key_id: str, request: Request) -> dict[str, Any]:
        key = await _gateway(request).accounts.revoke_key(key_id)
        return {"key": key.to_public_dict()}

    @router.get("/accounts/{ref}/events", summary="Recent query events of an account")
    async def events(
        ref: str, request: Request, limit: int = Query(50, ge=1, le=1000)
    ) -> dict[str, Any]:
        gateway = _gateway(request)
        account = await gateway.accounts.resolve(ref)
        recent = await gateway.store.recent_events(account.id, limit)
        return {"events": [e.to_dict() for e in recent]}

    @router.post("/accounts/{ref}/throttle", summary="Tighten (or restore) rate limits")
    async def throttle(ref: str, body: Throttle, request: Request) -> dict[str, Any]:
        account = await _gateway(request).accounts.throttle(ref, body.throttle)
        return {"account": _account_view(account)}

    @router.get("/accounts/{ref}/usage", summary="Usage against each limit and budget")
    async def usage(ref: str, request: Request) -> dict[str, Any]:
        gateway = _gateway(request)
        account = await gateway.accounts.resolve(ref)
        lines = await gateway.usage.usage(account)
        return {
            "account_id": account.id,
            "plan": account.plan,
            "usage": [line.to_dict() for line in lines],
        }

    @router.post("/accounts/{ref}/usage/reset", summary="Reset usage counters")
    async def reset_usage(
        ref: str, request: Request, body: UsageReset | None = None
    ) -> dict[str, Any]:
        gateway = _gateway(request)
        account = await gateway.accounts.resolve(ref)
        names = await gateway.usage.reset(account, body.limits if body else None)
        return {"account_id": account.id, "reset": names}

    @router.post("/accounts/{ref}/budget-grants", summary="Grant extra rows for this window")
    async def grant(ref: str, body: BudgetGrant, request: Request) -> dict[str, Any]:
        gateway = _gateway(request)
        account = await gateway.accounts.resolve(ref)
        return {
            "account_id": account.id,
            **(await gateway.usage.grant(account, body.window, body.rows)),
        }

    @router.get("/accounts/{ref}/monitor", tags=["monitoring"], summary="Features and risk")
    async def monitor_report(ref: str, request: Request) -> dict[str, Any]:
        gateway = _gateway(request)
        account = await gateway.accounts.resolve(ref)
        return await gateway.monitor.report(account.id)

    @router.get("/accounts/{ref}/alerts", tags=["monitoring"], summary="Alerts of an account")
    async def account_alerts(
        ref: str, request: Request, limit: int = Query(100, ge=1, le=1000)
    ) -> dict[str, Any]:
        gateway = _gateway(request)
        account = await gateway.accounts.resolve(ref)
        found = await gateway.store.list_alerts(account.id, limit)
        return {"alerts": [a.to_dict() for a in found]}

    @router.get("/alerts", tags=["monitoring"], summary="Recent alerts of every account")
    async def alerts(request: Request, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        found = await _gateway(request).store.list_alerts(None, limit)
        return {"alerts": [a.to_dict() for a in found]}

    @router.get("/monitor/groups", tags=["monitoring"], summary="Linked (Sybil) groups")
    async def groups(request: Request) -> dict[str, Any]:
        return {"groups": _gateway(request).monitor.groups()}

    @router.get("/accounts/{ref}/actions", tags=["monitoring"], summary="Responder actions")
    async def account_actions(
        ref: str, request: Request, limit: int = Query(100, ge=1, le=1000)
    ) -> dict[str, Any]:
        gateway = _gateway(request)
        account = await gateway.accounts.resolve(ref)
        found = await gateway.store.list_actions(account.id, limit)
        return {"actions": [a.to_dict() for a in found]}

    @router.post("/actions/{action_id}/undo", tags=["monitoring"], summary="Undo an action")
    async def undo_action(action_id: str, request: Request) -> dict[str, Any]:
        action = await _gateway(request).monitor.responder.undo(action_id, "operator")
        return {"action": action.to_dict()}

    return router
