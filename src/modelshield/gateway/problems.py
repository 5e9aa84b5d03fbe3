"""The one mapping from errors to ``application/problem+json`` responses (STYLE.md #8)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelshield.errors import (
    InvalidInput,
    MalformedRequest,
    ModelShieldError,
    NotFound,
    RequestError,
    problem_body,
)

log = logging.getLogger("modelshield.gateway")

PROBLEM_JSON = "application/problem+json"


class _MethodNotAllowed(RequestError):
    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed"


def problem_response(error: ModelShieldError, instance: str | None = None) -> Response:
    import orjson

    return Response(
        content=orjson.dumps(problem_body(error, instance)),
        status_code=error.status,
        media_type=PROBLEM_JSON,
        headers=error.headers,
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Every error, including framework ones, leaves as problem+json; never a traceback."""

    async def on_modelshield(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ModelShieldError)
        return problem_response(exc, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for error in exc.errors():
            loc = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            parts.append(f"{loc}: {error.get('msg')}" if loc else str(error.get("msg")))
        kind = InvalidInput if parts else MalformedRequest
        return problem_response(kind("; ".join(parts) or "invalid request"), request.url.path)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        error: ModelShieldError
        if exc.status_code == 404:
            error = NotFound(f"no route {request.method} {request.url.path}")
        elif exc.status_code == 405:
            error = _MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        else:
            error = RequestError(str(exc.detail))
            error.status = exc.status_code  # type: ignore[misc]
        response = problem_response(error, request.url.path)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(ModelShieldError("internal error"), request.url.path)

    app.add_exception_handler(ModelShieldError, on_modelshield)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
