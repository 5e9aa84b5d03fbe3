"""CallableModel: a model given as 'package.module:function'."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from modelshield.errors import ConfigError, UpstreamError
from modelshield.models.base import ModelBackend
from modelshield.models.python_callable import CallableModel

MODULE = """
import asyncio

import numpy as np

calls = []


def softmax(rows):
    calls.append(rows)
    logits = np.stack([rows.sum(axis=1), -rows.sum(axis=1), np.zeros(len(rows))], axis=1)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


async def async_softmax(rows):
    await asyncio.sleep(0)
    return softmax(rows).tolist()


def mutating(rows):
    rows[:] = 99.0
    return softmax(rows)


def explode(rows):
    raise RuntimeError("secret internals: /etc/model-weights")


def wrong_shape(rows):
    return np.full((len(rows) + 1, 3), 1 / 3)


def not_probabilities(rows):
    return np.full((len(rows), 3), 0.9)


NOT_CALLABLE = 42
"""


@pytest.fixture
def module_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # a fresh module per test, so one test's import never leaks into another's
    name = f"scoring_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def reference(rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    logits = np.stack([rows.sum(axis=1), -rows.sum(axis=1), np.zeros(len(rows))], axis=1)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities: npt.NDArray[np.float64] = exp / exp.sum(axis=1, keepdims=True)
    return probabilities


ROWS = np.array([[0.1, 0.2], [-0.3, 0.0], [0.0, 0.0]])


@pytest.mark.parametrize("function", ["softmax", "async_softmax"])
async def test_sync_and_async_functions(module_name: str, function: str) -> None:
    model = CallableModel(f"{module_name}:{function}", classes=None)
    assert isinstance(model, ModelBackend)
    assert await model.ready() is False
    await model.load()
    assert await model.ready() is True
    probabilities = await model.predict(ROWS)
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities, reference(ROWS))
    assert model.classes == 3


async def test_function_gets_a_copy_of_the_rows(module_name: str) -> None:
    model = CallableModel(f"{module_name}:mutating", classes=3)
    rows = ROWS.copy()
    await model.predict(rows)  # loads on first use
    np.testing.assert_array_equal(rows, ROWS)


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        (":absent", "has no attribute 'absent'"),
        (":NOT_CALLABLE", "not callable"),
        ("", "not of the form"),
    ],
)
async def test_bad_target_is_a_config_error(module_name: str, suffix: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        await CallableModel(f"{module_name}{suffix}", classes=None).load()


async def test_missing_module_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"cannot import .*no_such_module_for_modelshield"):
        await CallableModel("no_such_module_for_modelshield:predict", classes=None).load()


async def test_module_that_fails_to_import_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_scoring_module.py").write_text("raise ValueError('bad config')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="ValueError: bad config"):
        await CallableModel("broken_scoring_module:predict", classes=None).load()


async def test_raising_function_is_an_opaque_upstream_error(
    module_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    model = CallableModel(f"{module_name}:explode", classes=3)
    await model.load()
    with pytest.raises(UpstreamError) as caught:
        await model.predict(ROWS)
    assert caught.value.detail == "model callable failed: RuntimeError"
    assert caught.value.status == 502
    assert "secret internals" in caplog.text  # the operator still sees what happened


@pytest.mark.parametrize(
    ("function", "message"),
    [("wrong_shape", "shape"), ("not_probabilities", "sum to 1")],
)
async def test_bad_output_is_an_upstream_error(
    module_name: str, function: str, message: str
) -> None:
    model = CallableModel(f"{module_name}:{function}", classes=None)
    await model.load()
    with pytest.raises(UpstreamError, match=message):
        await model.predict(ROWS)
