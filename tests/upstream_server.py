"""A real Open Inference Protocol V2 model server for tests.

A small Starlette app served by uvicorn in a background thread on 127.0.0.1, on a
port the OS picks. It serves one fixed model — a softmax over a seeded random linear
map, digits-like by default (64 features in, 10 probabilities out) — and can be told
to misbehave: fail with an HTTP status, answer too slowly, answer with broken JSON, or
report itself not ready. ``server.behaviour`` may be replaced while it runs.

Example:
    >>> with run_upstream(Behaviour(infer="fail", status=500)) as server:
    ...     server.url  # doctest: +SKIP
    'http://127.0.0.1:54321'
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MODEL_NAME = "digits"
FEATURES = 64
CLASSES = 10
STARTUP_TIMEOUT_S = 10.0


class SoftmaxModel:
    """The upstream's model: ``softmax(rows @ weights + bias)`` with seeded weights.

    Example:
        >>> SoftmaxModel(features=4, classes=3).predict_proba(np.zeros((2, 4))).shape
        (2, 3)
    """

    def __init__(self, features: int = FEATURES, classes: int = CLASSES, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.features = features
        self.classes = classes
        # small weights keep logits moderate for features in [0, 16]
        self.weights = rng.normal(0.0, 0.02, size=(features, classes))
        self.bias = rng.normal(0.0, 0.1, size=classes)

    def predict_proba(self, rows: npt.ArrayLike) -> npt.NDArray[np.float64]:
        logits = np.asarray(rows, dtype=np.float64) @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probabilities: npt.NDArray[np.float64] = exp / exp.sum(axis=1, keepdims=True)
        return probabilities


@dataclass
class Behaviour:
    """How the server answers.

    Attributes:
        infer: ``answer`` normally; ``fail`` with ``status``; answer only after
            ``delay_s`` (``slow``); or send a truncated JSON body (``malformed``).
        ready: Whether ``/v2/health/ready`` answers 200 (else 503).
        status: HTTP status for ``fail``.
        delay_s: Delay for ``slow``; cut short when the server stops.
        nested: Send output data as nested lists instead of flat ones.
        output_name: Name of the probabilities output.
    """

    infer: Literal["answer", "fail", "slow", "malformed"] = "answer"
    ready: bool = True
    status: int = 500
    delay_s: float = 5.0
    nested: bool = False
    output_name: str = "probabilities"


@dataclass
class UpstreamServer:
    """A running server: its ``url``, its ``model``, and the inference bodies it received."""

    model: SoftmaxModel
    model_name: str
    behaviour: Behaviour
    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class _Stopper:
    """Lets the test thread wake handlers sleeping on the server's event loop."""

    loop: asyncio.AbstractEventLoop | None = None
    event: asyncio.Event | None = None

    def set(self) -> None:
        if self.loop is not None and self.event is not None:
            self.loop.call_soon_threadsafe(self.event.set)

    async def wait(self, timeout: float) -> bool:
        assert self.event is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)
        return self.event.is_set()


def build_app(server: UpstreamServer, stopper: _Stopper) -> Starlette:
    """The Starlette app answering for ``server``."""

    def unknown(name: str) -> JSONResponse:
        return JSONResponse({"error": f"model {name!r} not found"}, status_code=404)

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        if server.behaviour.ready:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False}, status_code=503)

    async def metadata(request: Request) -> Response:
        name = request.path_params["model"]
        if name != server.model_name:
            return unknown(name)
        return JSONResponse(
            {
                "name": name,
                "platform": "modelshield-test",
                "inputs": [
                    {"name": "input-0", "datatype": "FP32", "shape": [-1, server.model.features]}
                ],
                "outputs": [
                    {"name": "label", "datatype": "INT64", "shape": [-1]},
                    {
                        "name": server.behaviour.output_name,
                        "datatype": "FP32",
                        "shape": [-1, server.model.classes],
                    },
                ],
            }
        )

    async def infer(request: Request) -> Response:
        name = request.path_params["model"]
        if name != server.model_name:
            return unknown(name)
        behaviour = server.behaviour
        try:
            body = await request.json()
            tensor = body["inputs"][0]
            rows = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
        except (ValueError, KeyError, IndexError, TypeError):
            return JSONResponse({"error": "malformed inference request"}, status_code=400)
        if rows.ndim != 2 or rows.shape[1] != server.model.features:
            return JSONResponse({"error": f"bad input shape {list(rows.shape)}"}, status_code=400)
        server.requests.append(body)
        if behaviour.infer == "fail":
            return JSONResponse({"error": "upstream exploded"}, status_code=behaviour.status)
        if behaviour.infer == "malformed":
            return Response('{"outputs": [{"name": "probab', media_type="application/json")
        if behaviour.infer == "slow" and await stopper.wait(behaviour.delay_s):
            return JSONResponse({"error": "shutting down"}, status_code=503)
        probabilities = server.model.predict_proba(rows).astype(np.float32)
        data = probabilities.tolist() if behaviour.nested else probabilities.ravel().tolist()
        return JSONResponse(
            {
                "model_name": name,
                "outputs": [
                    {
                        "name": "label",
                        "datatype": "INT64",
                        "shape": [len(rows)],
                        "data": probabilities.argmax(axis=1).tolist(),
                    },
                    {
                        "name": behaviour.output_name,
                        "datatype": "FP32",
                        "shape": list(probabilities.shape),
                        "data": data,
                    },
                ],
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stopper.loop = asyncio.get_running_loop()
        stopper.event = asyncio.Event()
        yield

    return Starlette(
        routes=[
            Route("/v2/health/live", live),
            Route("/v2/health/ready", ready),
            Route("/v2/models/{model}", metadata),
            Route("/v2/models/{model}/infer", infer, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


@contextlib.contextmanager
def run_upstream(
    behaviour: Behaviour | None = None,
    *,
    model_name: str = MODEL_NAME,
    features: int = FEATURES,
    classes: int = CLASSES,
    seed: int = 0,
) -> Iterator[UpstreamServer]:
    """Run an upstream model server for the duration of the ``with`` block."""
    server = UpstreamServer(
        model=SoftmaxModel(features, classes, seed),
        model_name=model_name,
        behaviour=behaviour or Behaviour(),
    )
    stopper = _Stopper()
    config = uvicorn.Config(
        build_app(server, stopper),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        ws="none",
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, name="upstream-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not uvicorn_server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test upstream server did not start")
            time.sleep(0.01)
        server.port = uvicorn_server.servers[0].sockets[0].getsockname()[1]
        yield server
    finally:
        stopper.set()
        uvicorn_server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_S)


def closed_port() -> int:
    """A loopback port nothing listens on (bound by the OS, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
