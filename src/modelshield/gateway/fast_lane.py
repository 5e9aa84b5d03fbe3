"""The inference fast lane: inference POSTs go straight to their handler.

The inference routes read and validate their bodies themselves (the protocol codecs),
so FastAPI's routing and dependency machinery only costs time on the hot path. This
plain ASGI app (STYLE.md #7) in front of FastAPI matches the two inference paths and calls
:func:`~modelshield.gateway.client_routes.handle_inference` directly; everything else,
and the OpenAPI description of these same routes, stays with FastAPI.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import State
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from modelshield.errors import ModelShieldError
from modelshield.gateway.client_routes import handle_inference
from modelshield.gateway.problems import problem_response
from modelshield.protocols.base import Codec
from modelshield.protocols.oip_v2 import OipV2Codec
from modelshield.protocols.v1 import V1Codec

log = logging.getLogger("modelshield.gateway")


class InferenceFastLane:
    """The outermost ASGI app: inference POSTs to their handler, the rest to FastAPI.

    It stands in for the FastAPI app it wraps (``state``, ``openapi()``, ``title`` …
    are the wrapped app's), so callers keep using it like the FastAPI app.

    Example:
        >>> from fastapi import FastAPI
        >>> lane = InferenceFastLane(FastAPI(title="x"))
        >>> lane.title, lane.routes[0][0].pattern
        ('x', '^/v2/models/([^/]+)/infer$')
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.routes: list[tuple[re.Pattern[str], Codec]] = [
            (re.compile(r"^/v2/models/([^/]+)/infer$"), OipV2Codec()),
            (re.compile(r"^/v1/models/([^/:]+):predict$"), V1Codec()),
        ]

    @property
    def state(self) -> State:
        return self.app.state

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            for pattern, codec in self.routes:
                match = pattern.match(path)
                if match is not None:
                    scope["app"] = self.app
                    request = Request(scope, receive)
                    try:
                        response = await handle_inference(request, match.group(1), codec)
                    except ModelShieldError as err:
                        response = problem_response(err, path)
                    except Exception:
                        log.exception("unhandled error on POST %s", path)
                        response = problem_response(ModelShieldError("internal error"), path)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
