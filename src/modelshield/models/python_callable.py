"""A model given as a Python function ``'package.module:function'``."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from collections.abc import Callable

from modelshield.errors import ConfigError, UpstreamError
from modelshield.models.base import FloatArray, as_probabilities

logger = logging.getLogger(__name__)


class CallableModel:
    """In-process backend wrapping a function from ``[N, F]`` rows to ``[N, C]`` probabilities.

    The function receives a float64 NumPy array (a copy it may modify) and returns
    anything array-like; it may be a plain function (run in a worker thread so it
    does not block the event loop) or an ``async def``.

    Args:
        target: ``'package.module:function'``, imported by :meth:`load`.
        classes: Number of classes, if known before the first prediction.

    Example:
        >>> model = CallableModel("mypkg.scoring:predict_proba", classes=3)
        >>> # await model.load(); await model.predict(rows)  -> [N, 3] probabilities
    """

    classes: int | None

    def __init__(self, target: str, *, classes: int | None) -> None:
        self.target = target
        self.classes = classes
        self._function: Callable[..., object] | None = None

    async def load(self) -> None:
        if self._function is None:
            self._function = resolve_target(self.target)

    async def close(self) -> None:
        return None

    async def ready(self) -> bool:
        return self._function is not None

    async def predict(self, rows: FloatArray) -> FloatArray:
        if self._function is None:
            await self.load()
        function = self._function
        assert function is not None
        try:
            if inspect.iscoroutinefunction(function):
                result = await function(rows.copy())
            else:
                result = await asyncio.to_thread(function, rows.copy())
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            # The operator gets the traceback; the client only learns the exception type.
            logger.warning("model callable %s failed", self.target, exc_info=True)
            raise UpstreamError(f"model callable failed: {type(exc).__name__}") from exc
        probabilities = as_probabilities(result, len(rows))
        if self.classes is None:
            self.classes = probabilities.shape[1]
        return probabilities


def resolve_target(target: str) -> Callable[..., object]:
    """Import ``'package.module:function'``; every failure is a :class:`ConfigError`."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"model callable {target!r} is not of the form 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"cannot import model callable module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    function: object = getattr(module, attribute, None)
    if function is None:
        raise ConfigError(f"module {module_name!r} has no attribute {attribute!r}")
    if not callable(function):
        raise ConfigError(f"model callable {target!r} is a {type(function).__name__}, not callable")
    return function
