"""``POST /v1/signup``: self-service accounts, where account creation patterns are seen.

Enabled by ``monitoring.signup.enabled`` (404 otherwise), rate-limited per client
address with the limiter store's atomic check-and-charge, and records the client
address, user agent, e-mail, time and the accepted terms-of-service version. The API
key is in the response once and never again.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from modelshield.errors import InvalidInput, NotFound, QuotaExceeded
from modelshield.gateway.client_routes import client_address
from modelshield.gateway.runtime import Gateway
from modelshield.storage.limiter import US, RateCheck, seconds_header


class Signup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, examples=["acme-research"])
    email: str | None = Field(default=None, max_length=320, examples=["ml@acme.example"])
    organisation: str | None = Field(default=None, max_length=200)
    accept_tos: str = Field(
        min_length=1, max_length=64, description="The terms-of-service version accepted."
    )


def signup_router() -> APIRouter:
    router = APIRouter()

    @router.post(
        "/v1/signup",
        tags=["accounts"],
        status_code=201,
        summary="Create an account and its first API key (shown once)",
        responses={404: {"description": "Sign-up is disabled"}, 429: {"description": "Too many"}},
    )
    async def signup(body: Signup, request: Request) -> JSONResponse:
        gateway: Gateway = request.app.state.gateway
        settings = gateway.policy.monitoring.signup
        if not settings.enabled:
            raise NotFound("sign-up is not enabled on this gateway")
        if body.accept_tos != settings.tos_version:
            raise InvalidInput(
                f"accept_tos: accept the current terms of service, version {settings.tos_version}"
            )
        if settings.require_email and not body.email:
            raise InvalidInput("email: required")
        client = client_address(request, gateway.policy.server.trust_forwarded_for) or "unknown"
        limit = settings.rate_limit
        check = RateCheck(
            key=f"signup:client:{client}",
            name="signup",
            cost=1,
            interval=max(1, round(limit.per * US / limit.rate)),
            burst=limit.burst,
        )
        decision = await gateway.limits_store.check_and_charge(
            [check], int(gateway.clock.now() * US)
        )
        if not decision.allowed:
            err = QuotaExceeded("too many sign-ups from this address; try again later")
            retry = decision.retry_after
            if retry is not None:
                err.headers = {"Retry-After": str(seconds_header(retry))}
            raise err
        account, issued = await gateway.accounts.create(
            body.name,
            plan=settings.plan,
            email=body.email,
            organisation=body.organisation,
            signup_address=client,
            signup_user_agent=(request.headers.get("user-agent") or "")[:256] or None,
            tos_version=body.accept_tos,
        )
        await gateway.monitor.observe_signup(account.id)
        payload: dict[str, Any] = {
            "account_id": account.id,
            "api_key": issued.plaintext,
            "key_id": issued.record.key_id,
            "plan": account.plan,
            "tos_version": account.tos_version,
        }
        return JSONResponse(payload, status_code=201, headers={"Cache-Control": "no-store"})

    return router
