"""OnnxModel: a scikit-learn classifier exported with skl2onnx, run with onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from modelshield.errors import ConfigError
from modelshield.models.base import ModelBackend
from modelshield.models.onnx import OnnxModel


@pytest.fixture(scope="module")
def iris() -> tuple[Any, Any]:
    data = load_iris()
    return data.data.astype(np.float64), data.target


@pytest.fixture(scope="module")
def classifier(iris: tuple[Any, Any]) -> LogisticRegression:
    x, y = iris
    return LogisticRegression(max_iter=1000, random_state=0).fit(x, y)


def export(classifier: LogisticRegression, path: Path, *, zipmap: bool = False) -> Path:
    exported = to_onnx(
        classifier,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(classifier): {"zipmap": zipmap}},
    )
    path.write_bytes(exported.SerializeToString())
    return path


@pytest.mark.parametrize("output", [None, "probabilities"])
async def test_matches_scikit_learn(
    tmp_path: Path, iris: tuple[Any, Any], classifier: LogisticRegression, output: str | None
) -> None:
    model = OnnxModel(export(classifier, tmp_path / "iris.onnx"), output=output)
    assert isinstance(model, ModelBackend)
    assert await model.ready() is False
    await model.load()
    assert await model.ready() is True
    assert model.classes == 3
    probabilities = await model.predict(iris[0])
    assert probabilities.dtype == np.float64
    assert probabilities.shape == (150, 3)
    np.testing.assert_allclose(probabilities, classifier.predict_proba(iris[0]), atol=1e-5)
    await model.close()


async def test_unknown_output_is_a_config_error(
    tmp_path: Path, classifier: LogisticRegression
) -> None:
    model = OnnxModel(export(classifier, tmp_path / "iris.onnx"), output="scores")
    with pytest.raises(ConfigError, match=r"no output 'scores' \(outputs: label, probabilities\)"):
        await model.load()


async def test_zipmap_export_is_a_config_error_naming_the_fix(
    tmp_path: Path, classifier: LogisticRegression
) -> None:
    model = OnnxModel(export(classifier, tmp_path / "zipmap.onnx", zipmap=True), output=None)
    with pytest.raises(ConfigError, match="zipmap"):
        await model.load()


@pytest.mark.parametrize("content", [None, b"not an onnx graph"])
async def test_missing_or_broken_file_is_a_config_error(
    tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "model.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match="not found" if content is None else "cannot load"):
        await OnnxModel(path, output=None).load()
