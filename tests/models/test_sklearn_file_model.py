"""SklearnFileModel: joblib and skops files of a real scikit-learn classifier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from modelshield.errors import ConfigError
from modelshield.models.base import ModelBackend
from modelshield.models.sklearn_file import SklearnFileModel


@pytest.fixture(scope="module")
def iris() -> tuple[Any, Any]:
    data = load_iris()
    return data.data.astype(np.float64), data.target


@pytest.fixture(scope="module")
def classifier(iris: tuple[Any, Any]) -> LogisticRegression:
    x, y = iris
    return LogisticRegression(max_iter=1000, random_state=0).fit(x, y)


@pytest.mark.parametrize("suffix", [".joblib", ".pkl", ".skops"])
async def test_loads_and_predicts_like_the_estimator(
    tmp_path: Path, iris: tuple[Any, Any], classifier: LogisticRegression, suffix: str
) -> None:
    path = tmp_path / f"iris{suffix}"
    if suffix == ".skops":
        sio.dump(classifier, path)
    else:
        joblib.dump(classifier, path)
    model = SklearnFileModel(path, trusted_types=[])
    assert isinstance(model, ModelBackend)
    assert await model.ready() is False
    await model.load()
    assert await model.ready() is True
    assert model.classes == 3
    rows = iris[0][::10]
    probabilities = await model.predict(rows)
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities, classifier.predict_proba(rows), atol=1e-12)
    await model.close()


async def test_skops_trusts_library_classes_it_does_not_trust_by_default(
    tmp_path: Path, iris: tuple[Any, Any]
) -> None:
    x, y = iris
    boosted = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(x, y)
    path = tmp_path / "boosted.skops"
    sio.dump(boosted, path)
    assert sio.get_untrusted_types(file=path)  # skops itself would refuse this file
    model = SklearnFileModel(path, trusted_types=[])
    await model.load()
    np.testing.assert_allclose(await model.predict(x[:5]), boosted.predict_proba(x[:5]))


async def test_skops_refuses_unknown_types_unless_trusted(
    tmp_path: Path, iris: tuple[Any, Any], classifier: LogisticRegression
) -> None:
    x = iris[0]
    wrapped = Wrapped(classifier)
    path = tmp_path / "wrapped.skops"
    sio.dump(wrapped, path)
    with pytest.raises(ConfigError, match=r"not trusted: .*Wrapped"):
        await SklearnFileModel(path, trusted_types=[]).load()
    model = SklearnFileModel(path, trusted_types=sio.get_untrusted_types(file=path))
    await model.load()
    np.testing.assert_allclose(await model.predict(x[:3]), classifier.predict_proba(x[:3]))


async def test_skops_never_trusts_library_functions_by_default(
    tmp_path: Path, iris: tuple[Any, Any]
) -> None:
    # a stored function is called on request data later, so it needs explicit trust
    x, y = iris
    pipeline = make_pipeline(FunctionTransformer(np.round), LogisticRegression(max_iter=1000))
    pipeline.fit(x, y)
    path = tmp_path / "rounding.skops"
    sio.dump(pipeline, path)
    with pytest.raises(ConfigError, match=r"not trusted: numpy\.round"):
        await SklearnFileModel(path, trusted_types=[]).load()
    model = SklearnFileModel(path, trusted_types=["numpy.round"])
    await model.load()
    np.testing.assert_allclose(await model.predict(x[:3]), pipeline.predict_proba(x[:3]))


class Wrapped:
    """A classifier type skops does not know."""

    def __init__(self, inner: LogisticRegression) -> None:
        self.inner = inner
        self.classes_ = inner.classes_

    def predict_proba(self, rows: Any) -> Any:
        return self.inner.predict_proba(rows)


async def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        await SklearnFileModel(tmp_path / "absent.joblib", trusted_types=[]).load()


async def test_estimator_without_predict_proba_is_a_config_error(
    tmp_path: Path, iris: tuple[Any, Any]
) -> None:
    path = tmp_path / "scaler.joblib"
    joblib.dump(StandardScaler().fit(iris[0]), path)
    with pytest.raises(ConfigError, match="StandardScaler, which has no predict_proba"):
        await SklearnFileModel(path, trusted_types=[]).load()


async def test_unfitted_estimator_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "unfitted.joblib"
    joblib.dump(LogisticRegression(), path)
    with pytest.raises(ConfigError, match="not fitted"):
        await SklearnFileModel(path, trusted_types=[]).load()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("garbage.joblib", b"not a pickle", "cannot load"),
        ("garbage.skops", b"not a zip file", "cannot read skops file"),
        ("model.txt", b"", "unsupported model file"),
    ],
)
async def test_unloadable_file_is_a_config_error(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        await SklearnFileModel(path, trusted_types=[]).load()
