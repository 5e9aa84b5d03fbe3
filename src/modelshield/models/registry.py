"""Build a model backend from its policy entry; optional backends import lazily."""

from __future__ import annotations

from pathlib import Path

from modelshield.models.base import ModelBackend
from modelshield.policy.schema import (
    CallableBackend,
    DemoBackend,
    ModelSpec,
    OnnxBackend,
    SklearnBackend,
    UpstreamBackend,
)


def build_backend(name: str, spec: ModelSpec, state_dir: Path) -> ModelBackend:
    """The backend for model ``name`` (not yet loaded)."""
    backend = spec.backend
    if isinstance(backend, DemoBackend):
        from modelshield.models.demo import DigitsModel

        return DigitsModel(state_dir / "models")
    if isinstance(backend, SklearnBackend):
        from modelshield.models.sklearn_file import SklearnFileModel

        return SklearnFileModel(Path(backend.path), trusted_types=backend.trusted_types)
    if isinstance(backend, CallableBackend):
        from modelshield.models.python_callable import CallableModel

        return CallableModel(backend.target, classes=backend.classes)
    if isinstance(backend, OnnxBackend):
        from modelshield.models.onnx import OnnxModel

        return OnnxModel(Path(backend.path), output=backend.output)
    if isinstance(backend, UpstreamBackend):
        from modelshield.models.upstream import UpstreamOipModel

        return UpstreamOipModel(
            str(backend.url),
            model=backend.model or name,
            output=backend.output,
            input_name=spec.input.name,
            datatype=spec.input.datatype,
            timeout_s=backend.timeout_s,
            connect_timeout_s=backend.connect_timeout_s,
            max_connections=backend.max_connections,
        )
    raise AssertionError(f"unhandled backend {backend!r}")  # pragma: no cover - schema is closed
