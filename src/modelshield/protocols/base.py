"""Wire codecs: bytes of a client request in, a JSON-ready answer out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from modelshield.controls.query import Prediction
from modelshield.errors import InvalidInput, MalformedRequest
from modelshield.models.base import FloatArray
from modelshield.policy.schema import ModelSpec

FLOAT_DATATYPES = {"FP16", "FP32", "FP64"}


@dataclass(frozen=True, slots=True)
class DecodedRequest:
    rows: FloatArray
    request_id: str | None = None
    requested_outputs: list[str] | None = None


class Codec(Protocol):
    """One serving protocol's request and response format."""

    name: str

    def decode(self, body: bytes, spec: ModelSpec) -> DecodedRequest: ...

    def encode(
        self, model: str, spec: ModelSpec, prediction: Prediction, request_id: str | None
    ) -> dict[str, Any]: ...


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object (NaN/Infinity literals are rejected).

    Example:
        >>> parse_json_object(b'{"a": 1}')
        {'a': 1}
    """
    if not body.strip():
        raise MalformedRequest("request body is empty; expected a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"request body is not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise MalformedRequest("request body must be a JSON object")
    return data


def numeric_array(data: Any, where: str) -> FloatArray:
    """``data`` (nested lists of numbers) as a float64 array, or InvalidInput."""
    try:
        array = np.asarray(data)
    except (ValueError, TypeError):
        raise InvalidInput(f"{where}: ragged or non-numeric data") from None
    if array.dtype.kind not in "iuf" or array.dtype == np.bool_:
        raise InvalidInput(f"{where}: data must be numbers")
    result: FloatArray = array.astype(np.float64, copy=False)
    return result
