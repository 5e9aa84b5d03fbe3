"""The inference fast lane: inference POSTs go straight to their handler.

The inference routes read and validate their bodies themselves (the protocol codecs),
so FastAPI's routing and dependency machinery only costs time on the hot path. This
plain ASGI middleware (STYLE.md #7) matches the two inference paths and calls
:func:`~modelshield.gateway.client_routes.handle_inference` directly; everything else,
and the OpenAPI description of these same routes, stays with FastAPI.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from modelshield.errors import ModelShieldError
from modelshield.gateway.client_routes import handle_inference
from modelshield.gateway.problems import problem_response
from modelshield.protocols.base import Codec
from modelshield.protocols.oip_v2 import OipV2Codec
from modelshield.protocols.v1 import V1Codec


class InferenceFastLane:
    """Serve ``POST /v2/models/{model}/infer`` and ``POST /v1/models/{model}:predict``.

    Example:
        >>> async def app(scope, receive, send): ...
        >>> InferenceFastLane(app).routes[0][0].pattern
        '^/v2/models/([^/]+)/infer$'
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes: list[tuple[re.Pattern[str], Codec]] = [
            (re.compile(r"^/v2/models/([^/]+)/infer$"), OipV2Codec()),
            (re.compile(r"^/v1/models/([^/:]+):predict$"), V1Codec()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            for pattern, codec in self.routes:
                match = pattern.match(path)
                if match is not None:
                    request = Request(scope, receive)
                    try:
                        response = await handle_inference(request, match.group(1), codec)
                    except ModelShieldError as err:
                        response = problem_response(err, path)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
