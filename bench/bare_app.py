"""The demo model served bare: the baseline that ``overhead.py`` compares modelshield against.

A minimal Starlette app with no authentication, gates, shaping or event recording. It
parses an Open Inference Protocol V2 body with orjson, calls the same
``DigitsModel.predict`` the gateway calls and answers in the same V2 shape
(``probabilities`` FP32 [N, 10] and ``label`` INT64 [N]).

Run it with uvicorn's factory mode; the model cache directory comes from
``$BENCH_BARE_CACHE_DIR``::

    BENCH_BARE_CACHE_DIR=.modelshield/models \\
        uvicorn bare_app:app_from_env --factory --app-dir bench --port 8001
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelshield.models.demo import DigitsModel

CACHE_DIR_ENV = "BENCH_BARE_CACHE_DIR"
MODEL_NAME = "digits"
MODEL_VERSION = "1"
JSON = "application/json"


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON)


def _error(message: str, status: int) -> Response:
    return _json({"error": message}, status)


def encode_v2(probabilities: np.ndarray[Any, Any], request_id: str | None) -> dict[str, Any]:
    """The V2 answer for a [N, C] probability matrix, shaped like the gateway's."""
    probs = probabilities.astype(np.float32)
    labels = np.argmax(probabilities, axis=1).astype(np.int64)
    n = int(probs.shape[0])
    answer: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": MODEL_VERSION}
    if request_id is not None:
        answer["id"] = request_id
    answer["outputs"] = [
        {
            "name": "probabilities",
            "shape": [n, int(probs.shape[1])],
            "datatype": "FP32",
            "data": probs.ravel().tolist(),
        },
        {"name": "label", "shape": [n], "datatype": "INT64", "data": labels.tolist()},
    ]
    return answer


def create_bare_app(cache_dir: Path) -> Starlette:
    """A V2 server for the demo ``digits`` model cached under ``cache_dir``."""
    model = DigitsModel(cache_dir)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await model.load()  # never train or unpickle on the first request
        yield
        await model.close()

    async def live(request: Request) -> Response:
        return _json({"live": True})

    async def infer(request: Request) -> Response:
        if request.path_params["model"] != MODEL_NAME:
            return _error(f"no model named {request.path_params['model']!r}", 404)
        try:
            data = orjson.loads(await request.body())
            tensor = data["inputs"][0]
            rows = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
            return _error(f"bad V2 request: {exc}", 400)
        if rows.ndim == 1:
            rows = rows.reshape(1, -1)
        probabilities = await model.predict(rows)
        return _json(encode_v2(probabilities, data.get("id")))

    return Starlette(
        routes=[
            Route("/v2/health/live", live, methods=["GET"]),
            Route("/v2/models/{model}/infer", infer, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory``: the cache directory named by $BENCH_BARE_CACHE_DIR."""
    cache_dir = os.environ.get(CACHE_DIR_ENV)
    if not cache_dir:
        raise RuntimeError(f"set ${CACHE_DIR_ENV} to the demo model's cache directory")
    return create_bare_app(Path(cache_dir))
