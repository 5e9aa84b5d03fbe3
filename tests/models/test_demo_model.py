"""The demo model: trained from bundled data, accurate, cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelshield.models.demo import DigitsModel, digits_split, load_or_train_digits


def test_demo_model_is_accurate_and_cached(demo_cache: Path) -> None:
    _, test_x, _, test_y = digits_split()
    model = load_or_train_digits(demo_cache)
    assert (model.predict(test_x) == test_y).mean() > 0.95
    files = list(demo_cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".joblib"
    again = load_or_train_digits(demo_cache)
    np.testing.assert_array_equal(again.coef_, model.coef_)


def test_corrupt_cache_is_retrained(tmp_path: Path, demo_cache: Path) -> None:
    source = next(demo_cache.iterdir())
    (tmp_path / source.name).write_bytes(b"not a joblib file")
    model = load_or_train_digits(tmp_path)
    assert model.predict_proba(np.zeros((1, 64))).shape == (1, 10)


async def test_backend_predicts_probabilities(demo_cache: Path) -> None:
    backend = DigitsModel(demo_cache)
    assert not await backend.ready()
    await backend.load()
    assert await backend.ready()
    probs = await backend.predict(digits_split()[1][:5])
    assert probs.shape == (5, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
