"""The demo model ``digits``: logistic regression on scikit-learn's bundled digits data.

Trained at first use (about a second, no download) and cached as a joblib file under
the state directory, keyed by the scikit-learn version that trained it. The held-out
split (``DIGITS_TEST_SIZE``, ``DIGITS_SEED``) is what evaluation code uses as
victim-distribution test data.

Example:
    >>> train_x, test_x, train_y, test_y = digits_split()
    >>> train_x.shape[1], len(test_x) > 300
    (64, True)
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import numpy as np

from modelshield.models.base import FloatArray

DIGITS_SEED = 0
DIGITS_TEST_SIZE = 0.25


def digits_split() -> tuple[FloatArray, FloatArray, Any, Any]:
    """Train/test split of the digits data (features in [0, 16], 64 per row)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = data.data.astype(np.float64)
    parts = train_test_split(
        x, data.target, test_size=DIGITS_TEST_SIZE, random_state=DIGITS_SEED, stratify=data.target
    )
    return parts[0], parts[1], parts[2], parts[3]


def train_digits_model() -> Any:
    """A fresh multinomial logistic regression on the training split."""
    from sklearn.linear_model import LogisticRegression

    train_x, _, train_y, _ = digits_split()
    model = LogisticRegression(C=1.0, max_iter=3000, random_state=DIGITS_SEED)
    model.fit(train_x / 16.0, train_y)
    # fold the /16 scaling into the weights: the served model is logistic in raw features
    model.coef_ = model.coef_ / 16.0
    return model


def load_or_train_digits(cache_dir: Path) -> Any:
    """The cached demo model, training and caching it on first use."""
    import joblib
    import sklearn

    path = cache_dir / f"digits-logreg-sklearn{sklearn.__version__}.joblib"
    if path.exists():
        try:
            return joblib.load(path)
        except Exception:  # a corrupt cache is retrained, never fatal
            path.unlink(missing_ok=True)
    model = train_digits_model()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    joblib.dump(model, tmp)
    os.replace(tmp, path)
    return model


class DigitsModel:
    """In-process backend for the demo model."""

    classes: int | None = 10

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._model: Any = None

    async def load(self) -> None:
        if self._model is None:
            self._model = await asyncio.to_thread(load_or_train_digits, self.cache_dir)

    async def close(self) -> None:
        return None

    async def ready(self) -> bool:
        return self._model is not None

    async def predict(self, rows: FloatArray) -> FloatArray:
        if self._model is None:
            await self.load()
        probabilities: FloatArray = self._model.predict_proba(rows)
        return probabilities

    @property
    def estimator(self) -> Any:
        """The underlying scikit-learn model (for evaluation and tests)."""
        return self._model
