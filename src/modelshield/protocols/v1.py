"""TF-Serving / KServe V1 style ``{"instances": [...]}`` → ``{"predictions": [...]}``.

Each instance is a row of numbers or an object ``{"<input name>": [...]}``; each
prediction is an object holding the outputs the caller's plan allows, e.g.
``{"probabilities": [...], "label": 3}``.

When the plan reveals only some classes (``minimize: {top_k: k}`` or a ``floor``),
``probabilities`` lists the revealed ones in descending order (top-1 first) and
``classes`` their class labels, e.g. ``{"probabilities": [0.953, 0.021, 0.011],
"classes": [3, 5, 8], "label": 3}``; with a floor, each prediction has its own length
(no padding). Rounded probabilities are written with exactly their decimals.
"""

from __future__ import annotations

from typing import Any

from modelshield.controls.query import Prediction
from modelshield.errors import MalformedRequest
from modelshield.policy.schema import ModelSpec
from modelshield.protocols.base import (
    DecodedRequest,
    numeric_array,
    parse_json_object,
    revealed_answer,
)


class V1Codec:
    """Decode ``/v1/models/{model}:predict`` bodies and encode their answers.

    Example:
        >>> from modelshield.policy import demo_policy
        >>> spec = demo_policy().models["digits"]
        >>> V1Codec().decode(b'{"instances": [[' + b",".join([b"1"] * 64) + b']]}', spec).rows.shape
        (1, 64)
    """

    name = "v1"

    def decode(self, body: bytes, spec: ModelSpec) -> DecodedRequest:
        data = parse_json_object(body)
        instances = data.get("instances")
        if not isinstance(instances, list):
            raise MalformedRequest("'instances' must be a list of rows")
        if instances and all(isinstance(i, dict) for i in instances):
            try:
                instances = [i[spec.input.name] for i in instances]
            except KeyError:
                raise MalformedRequest(
                    f"each instance object must hold {spec.input.name!r}"
                ) from None
        rows = numeric_array(instances, "instances")
        if rows.ndim == 1 and rows.size == 0:
            rows = rows.reshape(0, spec.input.features)
        return DecodedRequest(rows=rows)

    def encode(
        self, model: str, spec: ModelSpec, prediction: Prediction, request_id: str | None
    ) -> dict[str, Any]:
        probabilities, classes = revealed_answer(prediction, spec)
        revealed = None if prediction.columns is None else (prediction.columns >= 0).sum(axis=1)
        labels = prediction.labels.tolist()
        predictions: list[dict[str, Any]] = []
        for i, label in enumerate(labels):
            item: dict[str, Any] = {}
            if "probabilities" in prediction.outputs:
                if classes is None or revealed is None:
                    item["probabilities"] = probabilities[i]
                else:  # padding is at the end of a row: drop it
                    width = int(revealed[i])
                    item["probabilities"] = probabilities[i][:width]
                    item["classes"] = classes[i][:width]
            if "label" in prediction.outputs:
                item["label"] = label
            predictions.append(item)
        return {"predictions": predictions}
