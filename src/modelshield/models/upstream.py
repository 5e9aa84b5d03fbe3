"""A model served by another Open Inference Protocol V2 server (KServe, Triton, MLServer).

One pooled :class:`httpx.AsyncClient` per backend carries every request. What the
upstream says about its failures stays in the gateway: clients see only
"upstream answered HTTP 500", "upstream unreachable: ConnectError" and the like.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
import numpy as np
import orjson

from modelshield.errors import ConfigError, UpstreamError, UpstreamTimeout
from modelshield.models.base import FloatArray, as_probabilities

DEFAULT_OUTPUT = "probabilities"


class UpstreamOipModel:
    """Backend that forwards rows to ``POST {base_url}/v2/models/{model}/infer``.

    Args:
        base_url: Base URL of the upstream server, e.g. ``http://kserve:8080``.
        model: Model name on the upstream.
        output: Output holding the probabilities; else ``probabilities``, else the first
            output shaped ``[N, C>=2]``.
        input_name: Name of the input tensor sent upstream.
        datatype: ``"FP32"`` or ``"FP64"``.
        timeout_s: Total time allowed for one request (504 past it).
        connect_timeout_s: Time allowed to open a connection.
        max_connections: Size of the connection pool.

    Example:
        >>> model = UpstreamOipModel(
        ...     "http://127.0.0.1:8080", model="digits", output=None, input_name="input-0",
        ...     datatype="FP32", timeout_s=10.0, connect_timeout_s=2.0, max_connections=100)
        >>> # await model.load(); await model.predict(rows)  -> [N, C] probabilities
    """

    classes: int | None

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        output: str | None,
        input_name: str,
        datatype: str,
        timeout_s: float,
        connect_timeout_s: float,
        max_connections: int,
    ) -> None:
        if datatype not in ("FP32", "FP64"):
            raise ConfigError(f"upstream datatype must be FP32 or FP64, not {datatype!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.output = output
        self.input_name = input_name
        self.datatype: Literal["FP32", "FP64"] = "FP32" if datatype == "FP32" else "FP64"
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_connections = max_connections
        self.classes = None
        self._client: httpx.AsyncClient | None = None

    @property
    def infer_url(self) -> str:
        return f"{self.base_url}/v2/models/{self.model}/infer"

    async def load(self) -> None:
        """Open the connection pool and, if the upstream says, learn the class count.

        An unreachable upstream does not fail loading: it shows up in :meth:`ready`.
        """
        if self._client is not None:
            return
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
            ),
            timeout=httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s),
        )
        try:
            response = await self._client.get(f"{self.base_url}/v2/models/{self.model}")
            if response.status_code == 200:
                self.classes = _classes_from_metadata(orjson.loads(response.content), self.output)
        except (httpx.HTTPError, orjson.JSONDecodeError):
            pass

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def ready(self) -> bool:
        if self._client is None:
            return False
        try:
            response = await self._client.get(f"{self.base_url}/v2/health/ready")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def predict(self, rows: FloatArray) -> FloatArray:
        if self._client is None:
            await self.load()
        client = self._client
        assert client is not None
        dtype = np.float32 if self.datatype == "FP32" else np.float64
        tensor = {
            "name": self.input_name,
            "shape": list(rows.shape),
            "datatype": self.datatype,
            "data": np.ascontiguousarray(rows, dtype=dtype).reshape(-1),
        }
        body = orjson.dumps({"inputs": [tensor]}, option=orjson.OPT_SERIALIZE_NUMPY)
        try:
            response = await client.post(
                self.infer_url, content=body, headers={"content-type": "application/json"}
            )
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(
                f"upstream model did not answer within {self.timeout_s}s"
            ) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream unreachable: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise UpstreamError(f"upstream answered HTTP {response.status_code}")
        try:
            document = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("upstream answered with invalid JSON") from exc
        probabilities = as_probabilities(_read_output(document, self.output, len(rows)), len(rows))
        self.classes = probabilities.shape[1]
        return probabilities


def _read_output(document: Any, name: str | None, rows: int) -> FloatArray:
    """The probabilities tensor of an inference response, reshaped to its declared shape."""
    outputs = document.get("outputs") if isinstance(document, dict) else None
    if not isinstance(outputs, list) or not all(isinstance(item, dict) for item in outputs):
        raise UpstreamError("upstream response has no outputs list")
    chosen = _choose(outputs, name, rows)
    try:
        array = np.asarray(chosen["data"], dtype=np.float64)
        shape = [int(size) for size in chosen["shape"]]
        reshaped: FloatArray = array.reshape(shape)
    except (KeyError, TypeError, ValueError) as exc:
        raise UpstreamError(f"upstream output {chosen.get('name')!r} is malformed") from exc
    return reshaped


def _choose(outputs: list[dict[str, Any]], name: str | None, rows: int) -> dict[str, Any]:
    if name is not None:
        for item in outputs:
            if item.get("name") == name:
                return item
        raise UpstreamError(f"upstream response has no output {name!r}")
    for item in outputs:
        if item.get("name") == DEFAULT_OUTPUT:
            return item
    for item in outputs:
        shape = item.get("shape")
        if isinstance(shape, list) and len(shape) == 2 and shape[0] == rows and _width(shape) > 1:
            return item
    raise UpstreamError("upstream response has no [N, C] probabilities output")


def _classes_from_metadata(metadata: Any, name: str | None) -> int | None:
    """The class count an OIP model-metadata document declares, if it declares one."""
    outputs = metadata.get("outputs") if isinstance(metadata, dict) else None
    if not isinstance(outputs, list):
        return None
    shapes = {
        item.get("name"): item.get("shape")
        for item in outputs
        if isinstance(item, dict) and isinstance(item.get("shape"), list)
    }
    if name is not None:
        candidates = [shapes.get(name)]
    elif DEFAULT_OUTPUT in shapes:
        candidates = [shapes[DEFAULT_OUTPUT]]
    else:
        candidates = list(shapes.values())
    for shape in candidates:
        if isinstance(shape, list) and len(shape) == 2 and _width(shape) > 1:
            return _width(shape)
    return None


def _width(shape: list[Any]) -> int:
    width = shape[-1]
    return width if isinstance(width, int) and not isinstance(width, bool) else -1
