"""Open Inference Protocol V2 (KServe, Triton, MLServer) JSON codec.

Request::

    {"id": "r1", "inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP32",
                             "data": [0, 0, 5, ...]}],
     "outputs": [{"name": "label"}]}

Response::

    {"model_name": "digits", "model_version": "1", "id": "r1",
     "outputs": [{"name": "probabilities", "shape": [1, 10], "datatype": "FP32", "data": [...]},
                 {"name": "label", "shape": [1], "datatype": "INT64", "data": [3]}]}

When the plan reveals only some classes (``minimize: {top_k: k}`` or a ``floor``), the
answer says which: ``probabilities`` is ``[N, k]`` FP32, in descending order with the
top-1 first, and a ``classes`` output ``[N, k]`` INT64 holds the class label of each
column::

     "outputs": [{"name": "probabilities", "shape": [1, 3], "datatype": "FP32",
                  "data": [0.953, 0.021, 0.011]},
                 {"name": "classes", "shape": [1, 3], "datatype": "INT64", "data": [3, 5, 8]},
                 {"name": "label", "shape": [1], "datatype": "INT64", "data": [3]}]

With a floor, rows reveal different numbers of classes; shorter rows are padded to the
widest row of the batch with class ``-1`` and probability ``0`` (never to the model's
class count). Rounded probabilities are written with exactly their decimals. A request
may name ``classes`` among its ``outputs``; it comes with ``probabilities``.
"""

from __future__ import annotations

import math
from typing import Any

from modelshield.controls.query import Prediction
from modelshield.errors import InvalidInput, MalformedRequest
from modelshield.models.base import FloatArray
from modelshield.policy.schema import ModelSpec
from modelshield.protocols.base import (
    FLOAT_DATATYPES,
    DecodedRequest,
    numeric_array,
    parse_json_object,
    revealed_answer,
)


class OipV2Codec:
    """Decode ``/v2/models/{model}/infer`` bodies and encode their answers.

    Example:
        >>> from modelshield.policy import demo_policy
        >>> spec = demo_policy().models["digits"]
        >>> body = b'{"inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP32", '
        >>> body += b'"data": [' + b",".join([b"0"] * 64) + b']}]}'
        >>> OipV2Codec().decode(body, spec).rows.shape
        (1, 64)
    """

    name = "oip_v2"

    def decode(self, body: bytes, spec: ModelSpec) -> DecodedRequest:
        data = parse_json_object(body)
        inputs = data.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise MalformedRequest("'inputs' must be a non-empty list of tensors")
        if len(inputs) != 1:
            raise InvalidInput(f"expected exactly one input tensor ({spec.input.name!r})")
        tensor = inputs[0]
        if not isinstance(tensor, dict):
            raise MalformedRequest("each input must be an object with name, shape, datatype, data")
        name = tensor.get("name")
        if name != spec.input.name:
            raise InvalidInput(f"unknown input {name!r}; expected {spec.input.name!r}")
        datatype = tensor.get("datatype")
        if not isinstance(datatype, str) or datatype not in FLOAT_DATATYPES:
            raise InvalidInput(
                f"{name}: datatype {datatype!r} is not accepted; expected {spec.input.datatype}"
            )
        shape = tensor.get("shape")
        if (
            not isinstance(shape, list)
            or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise InvalidInput(f"{name}: shape must be a list of non-negative integers")
        if "data" not in tensor:
            raise MalformedRequest(f"{name}: missing 'data'")
        values = numeric_array(tensor["data"], name)
        expected = math.prod(shape)  # np.prod costs microseconds on a short list
        if values.size != expected:
            raise InvalidInput(
                f"{name}: shape {shape} needs {expected} values, data has {values.size}"
            )
        rows: FloatArray = values.reshape(shape)
        if rows.ndim == 1 and shape[0] == spec.input.features:
            rows = rows.reshape(1, -1)
        request_id = data.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise InvalidInput("'id' must be a string")
        requested = data.get("outputs")
        names: list[str] | None = None
        if requested is not None:
            if not isinstance(requested, list) or not all(
                isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
            ):
                raise MalformedRequest("'outputs' must be a list of objects with a 'name'")
            names = [o["name"] for o in requested]
        return DecodedRequest(rows=rows, request_id=request_id, requested_outputs=names)

    def encode(
        self, model: str, spec: ModelSpec, prediction: Prediction, request_id: str | None
    ) -> dict[str, Any]:
        outputs: list[dict[str, Any]] = []
        n = int(prediction.labels.shape[0])
        for output in prediction.outputs:
            if output == "probabilities":
                probs, classes = revealed_answer(prediction, spec)
                shape = [n, int(prediction.probabilities.shape[1])]
                outputs.append(
                    {
                        "name": "probabilities",
                        "shape": shape,
                        "datatype": "FP32",
                        "data": [v for row in probs for v in row],
                    }
                )
                if classes is not None:
                    outputs.append(
                        {
                            "name": "classes",
                            "shape": shape,
                            "datatype": "INT64",
                            "data": [c for row in classes for c in row],
                        }
                    )
            elif output == "label":
                outputs.append(
                    {
                        "name": "label",
                        "shape": [n],
                        "datatype": "INT64",
                        "data": prediction.labels.tolist(),
                    }
                )
        answer: dict[str, Any] = {"model_name": model, "model_version": spec.version}
        if request_id is not None:
            answer["id"] = request_id
        answer["outputs"] = outputs
        return answer
