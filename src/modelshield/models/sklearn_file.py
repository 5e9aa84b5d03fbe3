"""A scikit-learn classifier loaded from a ``.joblib``/``.pkl`` or ``.skops`` file.

joblib and pickle files run arbitrary code when loaded: serve only files you built or
otherwise trust. ``.skops`` files are loaded with :func:`skops.io.load`, which refuses
every type that is not explicitly trusted; scikit-learn and NumPy classes are trusted
automatically, anything else must be listed in the policy's ``trusted_types``.
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

from modelshield.errors import ConfigError
from modelshield.models.base import FloatArray, as_probabilities

PICKLE_SUFFIXES = frozenset({".joblib", ".pkl", ".pickle"})
SKOPS_SUFFIX = ".skops"
# skops rebuilds classes from these libraries from their saved state; see _is_library_class.
LIBRARY_PREFIXES = ("sklearn.", "numpy.")


class SklearnFileModel:
    """In-process backend for a fitted scikit-learn estimator with ``predict_proba``.

    Args:
        path: A ``.joblib``/``.pkl`` file (trusted files only: loading runs pickle) or a
            ``.skops`` file (needs the ``skops`` extra).
        trusted_types: Extra fully qualified type names skops may load, beyond
            scikit-learn and NumPy classes.

    Example:
        >>> model = SklearnFileModel(Path("model.skops"), trusted_types=[])
        >>> # await model.load(); await model.predict(rows)  -> [N, C] probabilities
    """

    classes: int | None

    def __init__(self, path: Path, *, trusted_types: list[str]) -> None:
        self.path = path
        self.trusted_types = list(trusted_types)
        self.classes = None
        self._estimator: Any = None

    async def load(self) -> None:
        if self._estimator is not None:
            return
        estimator = await asyncio.to_thread(load_estimator, self.path, self.trusted_types)
        self.classes = len(estimator.classes_)
        self._estimator = estimator

    async def close(self) -> None:
        return None

    async def ready(self) -> bool:
        return self._estimator is not None

    async def predict(self, rows: FloatArray) -> FloatArray:
        if self._estimator is None:
            await self.load()
        values = await asyncio.to_thread(self._estimator.predict_proba, rows)
        return as_probabilities(values, len(rows))

    @property
    def estimator(self) -> Any:
        """The loaded scikit-learn estimator (``None`` before :meth:`load`)."""
        return self._estimator


def load_estimator(path: Path, trusted_types: list[str]) -> Any:
    """Load and check the estimator in ``path``; every failure is a :class:`ConfigError`."""
    if not path.is_file():
        raise ConfigError(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        estimator = _load_pickle(path)
    elif suffix == SKOPS_SUFFIX:
        estimator = _load_skops(path, trusted_types)
    else:
        raise ConfigError(
            f"unsupported model file {path}: expected .joblib, .pkl or .skops, got {suffix!r}"
        )
    if not callable(getattr(estimator, "predict_proba", None)):
        raise ConfigError(
            f"{path} holds a {type(estimator).__name__}, which has no predict_proba; "
            "modelshield serves classifiers that output class probabilities"
        )
    if getattr(estimator, "classes_", None) is None:
        raise ConfigError(f"{path} holds a {type(estimator).__name__} that is not fitted")
    return estimator


def _load_pickle(path: Path) -> Any:
    import joblib

    try:
        return joblib.load(path)
    except Exception as exc:
        raise ConfigError(f"cannot load model file {path}: {type(exc).__name__}: {exc}") from exc


def _load_skops(path: Path, trusted_types: list[str]) -> Any:
    try:
        import skops.io as sio
    except ImportError as exc:
        raise ConfigError(
            f"loading {path} needs skops; run `pip install 'modelshield[skops]'`"
        ) from exc

    try:
        untrusted: list[str] = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise ConfigError(f"cannot read skops file {path}: {type(exc).__name__}: {exc}") from exc
    trusted = [name for name in untrusted if _is_library_class(name)]
    trusted += [name for name in trusted_types if name not in trusted]
    refused = sorted(set(untrusted) - set(trusted))
    if refused:
        raise ConfigError(
            f"skops file {path} contains types that are not trusted: {', '.join(refused)}; "
            "add them to trusted_types if you trust this file"
        )
    try:
        return sio.load(path, trusted=trusted)
    except Exception as exc:
        raise ConfigError(f"cannot load skops file {path}: {type(exc).__name__}: {exc}") from exc


def _is_library_class(name: str) -> bool:
    """Whether ``name`` is a class (not a function) defined by scikit-learn or NumPy.

    Functions are excluded on purpose: a function stored in a file (say, inside a
    ``FunctionTransformer``) is later called on request data, and some NumPy helpers
    execute strings.
    """
    if not name.startswith(LIBRARY_PREFIXES):
        return False
    module_name, _, attribute = name.rpartition(".")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        return False
    return isinstance(target, type)
