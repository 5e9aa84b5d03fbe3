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


def revealed_answer(
    prediction: Prediction, spec: ModelSpec
) -> tuple[list[list[float]], list[list[int]] | None]:
    """Per row: the probabilities to send and, after top-k/floor minimization, their classes.

    Rounded answers are written with exactly their decimals (``0.302``, not the FP32
    neighbour ``0.30199998617172241``); others as FP32 values. Classes are class labels
    (``spec.class_labels``, default the column index); ``-1`` with probability 0 pads
    rows that reveal fewer classes than the widest row of the batch.

    Example:
        >>> import numpy as np
        >>> from modelshield.policy import demo_policy
        >>> p = Prediction.from_probabilities(np.array([[0.75, 0.25]]), None, ["probabilities"])
        >>> revealed_answer(p, demo_policy().models["digits"])
        ([[0.75, 0.25]], None)
    """
    values = prediction.probabilities
    if prediction.decimals is not None:
        probabilities: list[list[float]] = np.round(values, prediction.decimals).tolist()
    else:
        probabilities = values.astype(np.float32).tolist()
    if prediction.columns is None:
        return probabilities, None
    columns = prediction.columns
    if spec.class_labels:
        table = np.asarray(spec.class_labels, dtype=np.int64)
        columns = np.where(columns >= 0, table[np.maximum(columns, 0)], -1)
    classes: list[list[int]] = columns.tolist()
    return probabilities, classes
