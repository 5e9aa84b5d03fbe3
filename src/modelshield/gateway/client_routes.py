"""Client routes: Open Inference Protocol V2, V1 ``:predict``, health and metadata."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope

from modelshield.controls.query import Prediction, Query
from modelshield.controls.shaping import output_metadata
from modelshield.errors import (
    ModelNotFound,
    ModelShieldError,
    PayloadTooLarge,
    StoreUnavailable,
    UnsupportedMediaType,
    UpstreamError,
)
from modelshield.events.draft import EventDraft
from modelshield.events.record import Outcome
from modelshield.gateway.runtime import Gateway
from modelshield.identity.records import Account
from modelshield.policy.schema import ModelSpec
from modelshield.protocols.base import Codec
from modelshield.protocols.oip_v2 import OipV2Codec
from modelshield.protocols.v1 import V1Codec

# application/x-www-form-urlencoded is what `curl -d @file.json` sends by default; the body
# is still parsed as JSON. Anything else (multipart, XML, the OIP binary extension) is 415.
_ACCEPTED_MEDIA = {"application/json", "application/x-www-form-urlencoded", ""}

_TENSOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string", "example": "input-0"},
        "shape": {"type": "array", "items": {"type": "integer"}, "example": [1, 64]},
        "datatype": {"type": "string", "enum": ["FP16", "FP32", "FP64"]},
        "data": {"type": "array", "items": {}},
    },
}
_INFER_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "inputs": {"type": "array", "items": _TENSOR_SCHEMA, "minItems": 1, "maxItems": 1},
        "outputs": {
            "type": "array",
            "items": {"type": "object", "properties": {"name": {"type": "string"}}},
        },
    },
}
_INFER_RESPONSE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": _TENSOR_SCHEMA},
    },
}
_PREDICT_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["instances"],
    "properties": {"instances": {"type": "array", "items": {"type": "array", "items": {}}}},
}
_PREDICT_RESPONSE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "predictions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "probabilities": {"type": "array", "items": {"type": "number"}},
                    "classes": {
                        "type": "array",
                        "items": {"type": "integer"},
                        "description": "Class of each probability, when the plan reveals "
                        "only some classes",
                    },
                    "label": {"type": "integer"},
                },
            },
        }
    },
}
_PROBLEM = {"content": {"application/problem+json": {"schema": {"type": "object"}}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, **_PROBLEM}
    for code, text in {
        400: "Malformed request",
        401: "Missing, malformed, unknown or revoked API key",
        403: "Account suspended",
        404: "Unknown model",
        413: "Body too large",
        415: "Unsupported media type",
        422: "Invalid input",
        502: "Upstream model error",
        503: "Store unavailable",
        504: "Upstream model timed out",
    }.items()
}


def _openapi(request_schema: dict[str, Any], response_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": request_schema}},
        },
        "responses": {"200": {"content": {"application/json": {"schema": response_schema}}}},
        "security": [{"apiKey": []}],
    }


def client_address(request: Request, trust_forwarded_for: bool) -> str | None:
    return _RequestHead(request.scope).client(trust_forwarded_for)


def presented_key(request: Request) -> str | None:
    return _RequestHead(request.scope).api_key()


class _RequestHead:
    """The header fields and peer of an inference request, read once from the ASGI scope.

    Starlette's ``Headers`` scans the raw header list on every lookup; the inference path
    reads six fields, so it builds one dict (the first occurrence of a field wins, as in
    ``Headers.get``).
    """

    __slots__ = ("fields", "peer")

    def __init__(self, scope: Scope) -> None:
        self.fields: dict[bytes, bytes] = dict(reversed(scope["headers"]))
        client = scope.get("client")
        self.peer: str | None = client[0] if client else None

    def get(self, name: bytes) -> str | None:
        value = self.fields.get(name)
        return None if value is None else value.decode("latin-1")

    def client(self, trust_forwarded_for: bool) -> str | None:
        if trust_forwarded_for:
            forwarded = self.get(b"x-forwarded-for")
            if forwarded:
                return forwarded.split(",")[0].strip() or None
        return self.peer

    def api_key(self) -> str | None:
        """The bearer token, else ``X-API-Key`` (None for another scheme)."""
        authorization = self.get(b"authorization")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
        return self.get(b"x-api-key")


async def _read_body(head: _RequestHead, receive: Receive, limit: int) -> bytes:
    media = (head.get(b"content-type") or "").split(";")[0].strip().lower()
    if media not in _ACCEPTED_MEDIA and not media.endswith("+json"):
        raise UnsupportedMediaType(
            f"content type {media!r} is not supported; send application/json"
        )
    declared = head.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    # straight from the ASGI receive channel (no async generator: most bodies are one
    # message)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        if not message.get("more_body", False):
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


def _model_spec(gateway: Gateway, account: Account, model: str) -> ModelSpec:
    spec = gateway.policy.models.get(model)
    plan = gateway.policy.plans.get(account.plan)
    if spec is None or plan is None or (plan.models is not None and model not in plan.models):
        raise ModelNotFound(f"no model named {model!r}")
    return spec


async def handle_inference(request: Request, model: str, codec: Codec) -> Response:
    """Authenticate, decode, gate, predict, shape, encode — and record a QueryEvent."""
    gateway: Gateway = request.scope["app"].state.gateway
    started = time.perf_counter()
    settings = gateway.policy.server
    head = _RequestHead(request.scope)
    client = head.client(settings.trust_forwarded_for)
    user_agent = head.get(b"user-agent")
    account: Account | None = None
    key_id: str | None = None
    query: Query | None = None
    prediction: Prediction | None = None
    outcome: Outcome = "answered"
    status = 200
    problem: str | None = None
    when = gateway.clock.now()
    try:
        account, key = await gateway.accounts.authenticate(head.api_key())
        key_id = key.key_id
        spec = _model_spec(gateway, account, model)
        body = await _read_body(head, request.receive, settings.max_body_bytes)
        decoded = codec.decode(body, spec)
        query = Query(
            account=account,
            key_id=key.key_id,
            plan=gateway.policy.plans[account.plan],
            model=model,
            spec=spec,
            rows=decoded.rows,
            time=when,
            client=client,
            user_agent=user_agent,
            requested_outputs=decoded.requested_outputs,
        )
        await gateway.pipeline.admit(query)
        try:
            prediction = await gateway.pipeline.predict(query)
        except UpstreamError:
            await gateway.pipeline.refund(query)  # failed upstream calls cost nothing
            raise
        prediction = gateway.pipeline.shape(query, prediction)
        payload = codec.encode(model, spec, prediction, decoded.request_id)
        return Response(
            orjson.dumps(payload), media_type="application/json", headers=query.response_headers
        )
    except ModelShieldError as err:
        failed_after_admission = isinstance(err, UpstreamError | StoreUnavailable)
        outcome = "error" if failed_after_admission else "denied"
        status = err.status
        problem = err.slug
        raise
    except Exception:
        outcome, status, problem = "error", 500, "internal-error"
        raise
    finally:
        await _record(
            gateway,
            request,
            model,
            when,
            started,
            account,
            key_id,
            client,
            user_agent,
            query,
            prediction,
            outcome,
            status,
            problem,
        )


async def _record(
    gateway: Gateway,
    request: Request,
    model: str,
    when: float,
    started: float,
    account: Account | None,
    key_id: str | None,
    client: str | None,
    user_agent: str | None,
    query: Query | None,
    prediction: Prediction | None,
    outcome: Outcome,
    status: int,
    problem: str | None,
) -> None:
    elapsed = time.perf_counter() - started
    rows = query.row_count if query is not None else 0
    known = model if model in gateway.policy.models else "(unknown)"
    # the per-row statistics are computed by the sink, for a whole group at once
    draft = EventDraft(
        time=when,
        model=known,
        outcome=outcome,
        status=status,
        account_id=account.id if account else None,
        key_id=key_id,
        client=client,
        user_agent=user_agent[:256] if user_agent else None,
        rows=rows,
        charged_rows=rows if outcome == "answered" else 0,
        controls=list(query.controls) if query else [],
        problem=problem,
        latency_ms=round(elapsed * 1000.0, 3),
        flags=list(query.flags) if query else [],
        inputs=query.rows if query is not None else None,
        answer=prediction.raw if prediction is not None else None,
    )
    await gateway.sink.emit(draft)


class DirectRoute(APIRoute):
    """A route whose endpoint is called as ``endpoint(**path_params, request=request)``.

    The inference routes read and validate their bodies themselves (the codecs), so
    FastAPI's per-request dependency solving is skipped on the hot path; the endpoint's
    signature still documents the route in the OpenAPI schema.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            response: Response = await endpoint(**request.path_params, request=request)
            return response

        return handler


def client_router() -> APIRouter:
    hot = APIRouter(route_class=DirectRoute)
    v2 = OipV2Codec()
    v1 = V1Codec()

    @hot.post(
        "/v2/models/{model}/infer",
        tags=["inference"],
        summary="Open Inference Protocol V2 inference",
        openapi_extra=_openapi(_INFER_REQUEST, _INFER_RESPONSE),
        responses=_ERRORS,
    )
    async def infer_v2(model: str, request: Request) -> Response:
        return await handle_inference(request, model, v2)

    @hot.post(
        "/v1/models/{model}:predict",
        tags=["inference"],
        summary="V1 instances/predictions inference",
        openapi_extra=_openapi(_PREDICT_REQUEST, _PREDICT_RESPONSE),
        responses=_ERRORS,
    )
    async def predict_v1(model: str, request: Request) -> Response:
        return await handle_inference(request, model, v1)

    router = APIRouter()
    router.include_router(hot)

    @router.get("/v2/health/live", tags=["health"], summary="Liveness")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @router.get("/v2/health/ready", tags=["health"], summary="Readiness (store and models)")
    async def ready(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        try:
            await gateway.store.ping()
            store_ok = True
        except ModelShieldError:
            store_ok = False
        models = {name: await b.ready() for name, b in gateway.backends.items()}
        is_ready = store_ok and all(models.values())
        body = {"ready": is_ready, "store": store_ok, "models": models}
        return Response(
            orjson.dumps(body), status_code=200 if is_ready else 503, media_type="application/json"
        )

    @router.get(
        "/v2/models/{model}",
        tags=["inference"],
        summary="Model metadata (outputs as the caller's plan receives them)",
        openapi_extra={"security": [{"apiKey": []}]},
        responses=_ERRORS,
    )
    async def metadata(model: str, request: Request) -> dict[str, Any]:
        gateway: Gateway = request.app.state.gateway
        account, _ = await gateway.accounts.authenticate(presented_key(request))
        spec = _model_spec(gateway, account, model)
        backend = gateway.backends[model]
        outputs = output_metadata(
            gateway.policy, account.plan, account.shaping_level, backend.classes
        )
        return {
            "name": model,
            "versions": [spec.version],
            "platform": "modelshield",
            "inputs": [
                {
                    "name": spec.input.name,
                    "datatype": spec.input.datatype,
                    "shape": [-1, spec.input.features],
                }
            ],
            "outputs": outputs,
        }

    return router
