"""How the codecs write minimized answers: classes, padding, decimals, class labels."""

from __future__ import annotations

import numpy as np

from modelshield.controls.minimization import Minimization
from modelshield.controls.query import Prediction
from modelshield.policy.schema import ModelSpec
from modelshield.protocols.oip_v2 import OipV2Codec
from modelshield.protocols.v1 import V1Codec

SPEC = ModelSpec.model_validate({"backend": {"kind": "demo"}})
LABELLED = ModelSpec.model_validate({"backend": {"kind": "demo"}, "class_labels": [10, 20, 30, 40]})
P = np.array([[0.05, 0.6, 0.25, 0.1], [0.4, 0.1, 0.2, 0.3]])


def prediction(control: Minimization, spec: ModelSpec = SPEC) -> Prediction:
    answer = control(P)
    result = Prediction.from_probabilities(P, spec.class_labels, ["probabilities", "label"])
    result.probabilities = answer.values
    result.columns = None if answer.columns is None else answer.columns.astype(np.int64)
    result.decimals = answer.decimals
    return result


def test_v2_top_k_has_a_classes_output_of_the_same_shape() -> None:
    body = OipV2Codec().encode("m", SPEC, prediction(Minimization(top_k=2, decimals=2)), "r")
    assert body["outputs"] == [
        {
            "name": "probabilities",
            "shape": [2, 2],
            "datatype": "FP32",
            "data": [0.6, 0.25, 0.4, 0.3],
        },
        {"name": "classes", "shape": [2, 2], "datatype": "INT64", "data": [1, 2, 0, 3]},
        {"name": "label", "shape": [2], "datatype": "INT64", "data": [1, 0]},
    ]


def test_v2_floor_pads_to_the_widest_row_with_minus_one() -> None:
    body = OipV2Codec().encode("m", LABELLED, prediction(Minimization(floor=0.15), LABELLED), None)
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["classes"]["shape"] == [2, 3]
    assert outputs["classes"]["data"] == [20, 30, -1, 10, 40, 30]
    assert outputs["probabilities"]["data"][2] == 0.0
    assert outputs["label"]["data"] == [20, 10]


def test_v1_rows_carry_only_their_revealed_classes() -> None:
    floor = Minimization(floor=0.15, decimals=3)
    body = V1Codec().encode("m", LABELLED, prediction(floor, LABELLED), None)
    assert body["predictions"] == [
        {"probabilities": [0.6, 0.25], "classes": [20, 30], "label": 20},
        {"probabilities": [0.4, 0.3, 0.2], "classes": [10, 40, 30], "label": 10},
    ]


def test_rounded_values_are_written_with_their_decimals_only() -> None:
    p = np.array([[0.30199, 0.69801]])
    answer = Minimization(decimals=3)(p)
    result = Prediction.from_probabilities(p, None, ["probabilities"])
    result.probabilities, result.decimals = answer.values, answer.decimals
    assert V1Codec().encode("m", SPEC, result, None) == {
        "predictions": [{"probabilities": [0.302, 0.698]}]
    }
    # unrounded answers stay FP32 values
    result.decimals = None
    written = V1Codec().encode("m", SPEC, result, None)["predictions"][0]["probabilities"]
    assert written == np.float32(answer.values).tolist()[0]
