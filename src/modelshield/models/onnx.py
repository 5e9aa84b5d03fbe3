"""A classifier exported to ONNX, run with onnxruntime (the ``onnx`` extra)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelshield.errors import ConfigError, UpstreamError
from modelshield.models.base import FloatArray, as_probabilities

FLOAT_TENSORS = frozenset({"tensor(float)", "tensor(double)", "tensor(float16)"})


@dataclass(frozen=True)
class _Session:
    session: Any
    input_name: str
    input_dtype: type[np.floating[Any]]
    output_name: str
    classes: int | None


class OnnxModel:
    """In-process backend for an ONNX classifier that outputs class probabilities.

    Rows are fed as float32 (float64 if the graph asks for doubles) to the model's first
    input. The probabilities are read from ``output``, or else from the first float
    output with two dimensions. Export scikit-learn models with skl2onnx and
    ``options={id(model): {"zipmap": False}}`` so probabilities come out as a tensor
    (named ``probabilities``) instead of a list of maps.

    Args:
        path: The ``.onnx`` file.
        output: Name of the output holding the probabilities, if not the default.

    Example:
        >>> model = OnnxModel(Path("model.onnx"), output="probabilities")
        >>> # await model.load(); await model.predict(rows)  -> [N, C] probabilities
    """

    classes: int | None

    def __init__(self, path: Path, *, output: str | None) -> None:
        self.path = path
        self.output = output
        self.classes = None
        self._session: _Session | None = None

    async def load(self) -> None:
        if self._session is None:
            session = await asyncio.to_thread(_open_session, self.path, self.output)
            self.classes = session.classes
            self._session = session

    async def close(self) -> None:
        self._session = None

    async def ready(self) -> bool:
        return self._session is not None

    async def predict(self, rows: FloatArray) -> FloatArray:
        if self._session is None:
            await self.load()
        session = self._session
        assert session is not None
        feed = {session.input_name: np.ascontiguousarray(rows, dtype=session.input_dtype)}
        try:
            outputs = await asyncio.to_thread(session.session.run, [session.output_name], feed)
        except Exception as exc:
            raise UpstreamError(f"ONNX model failed: {type(exc).__name__}") from exc
        probabilities = as_probabilities(outputs[0], len(rows))
        if self.classes is None:
            self.classes = probabilities.shape[1]
        return probabilities


def _open_session(path: Path, output: str | None) -> _Session:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ConfigError(
            f"loading {path} needs onnxruntime; run `pip install 'modelshield[onnx]'`"
        ) from exc
    if not path.is_file():
        raise ConfigError(f"model file not found: {path}")
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ConfigError(f"cannot load ONNX model {path}: {type(exc).__name__}: {exc}") from exc

    first_input = session.get_inputs()[0]
    outputs = session.get_outputs()
    if output is not None:
        chosen = next((node for node in outputs if node.name == output), None)
        if chosen is None:
            names = ", ".join(node.name for node in outputs)
            raise ConfigError(f"ONNX model {path} has no output {output!r} (outputs: {names})")
    else:
        chosen = next(
            (node for node in outputs if node.type in FLOAT_TENSORS and len(node.shape) == 2),
            None,
        )
        if chosen is None:
            raise ConfigError(
                f"ONNX model {path} has no 2-d float output; name the probabilities output "
                "(skl2onnx: export with options={id(model): {'zipmap': False}})"
            )
    width = chosen.shape[-1] if chosen.shape else None
    return _Session(
        session=session,
        input_name=first_input.name,
        input_dtype=np.float64 if first_input.type == "tensor(double)" else np.float32,
        output_name=chosen.name,
        classes=width if isinstance(width, int) and width > 1 else None,
    )
