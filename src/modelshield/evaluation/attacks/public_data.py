"""Public-style data an attacker can get without the victim's help.

An extraction attacker rarely has the victim's training data, but usually has data of
a similar kind (Papernot et al. 2017 use a small sample of the task's public data;
Orekondy et al. 2019 a large natural dataset of a *different* distribution). For the
demo ``digits`` model this module provides both, in the victim's input space (64
features in [0, 16]):

- :func:`digits_pool`: the *training* split of sklearn's digits, with its labels. The
  held-out split is never used: it is the evaluation set fidelity is measured on.
- :func:`augment_digits`: public-style queries made from such images: one-pixel
  shifts, intensity scaling, pixel noise and (optionally) small rotations — inputs of
  the victim's kind but mostly off its training distribution.
- :func:`tabular_pool`: another dataset bundled with scikit-learn (``iris``,
  ``wine``, ``breast_cancer``; no download) mapped into the input space: each
  feature min-max scaled to the input range, the features repeated to fill every
  input column.

Example:
    >>> images, labels = digits_pool()
    >>> rows = augment_digits(images, 5, np.random.default_rng(0))
    >>> rows.shape, bool(rows.min() >= 0 and rows.max() <= 16)
    ((5, 64), True)
    >>> tabular_pool("iris").shape
    (150, 64)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from modelshield.evaluation.targets import FloatArray

TABULAR_SOURCES = ("iris", "wine", "breast_cancer")


def digits_pool() -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """The digits training split (rows in [0, 16]) and its labels."""
    from modelshield.models.demo import digits_split

    rows, _, labels, _ = digits_split()
    return np.asarray(rows, dtype=np.float64), np.asarray(labels, dtype=np.int64)


def augment_digits(
    images: FloatArray,
    n: int,
    rng: np.random.Generator,
    *,
    max_rotation_deg: float = 0.0,
) -> FloatArray:
    """``n`` public-style queries made from 8x8 ``images``: shifted, rescaled, noisy digits.

    Each query is a random image of ``images`` rolled by up to one pixel each way,
    scaled in intensity by 0.7-1.2, with Gaussian pixel noise (sd 2), optionally
    rotated by up to ``max_rotation_deg`` either way, rounded and clipped to [0, 16].
    """
    base = images[rng.integers(len(images), size=n)].reshape(n, 8, 8)
    shifts = rng.integers(-1, 2, size=(n, 2))
    moved = (
        np.stack(
            [
                np.roll(np.roll(b, dx, axis=1), dy, axis=0)
                for b, (dx, dy) in zip(base, shifts, strict=True)
            ]
        )
        if n
        else base
    )
    moved = moved * rng.uniform(0.7, 1.2, size=(n, 1, 1)) + rng.normal(0.0, 2.0, moved.shape)
    if max_rotation_deg > 0 and n:
        # drawn after the rest, so max_rotation_deg=0 keeps earlier results reproducible
        angles = rng.uniform(-max_rotation_deg, max_rotation_deg, size=n)
        moved = np.stack(
            [_rotate(image, angle) for image, angle in zip(moved, angles, strict=True)]
        )
    queries: FloatArray = np.clip(np.rint(moved), 0, 16).reshape(n, 64)
    return queries


def _rotate(image: FloatArray, degrees: float) -> FloatArray:
    from scipy.ndimage import rotate

    rotated: FloatArray = rotate(image, degrees, reshape=False, order=1, mode="constant")
    return rotated


def tabular_pool(name: str, features: int = 64, low: float = 0.0, high: float = 16.0) -> FloatArray:
    """Dataset ``name`` (one of :data:`TABULAR_SOURCES`) mapped into ``features`` columns.

    Each of its features is min-max scaled to ``[low, high]`` and the features repeat
    cyclically to fill the columns: natural-looking correlated values of the right
    range, from a distribution that has nothing to do with the victim's.
    """
    from sklearn import datasets

    loaders = {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
    }
    if name not in loaders:
        raise ValueError(f"unknown tabular source {name!r}; expected one of {TABULAR_SOURCES}")
    data = np.asarray(loaders[name]().data, dtype=np.float64)
    lo, hi = data.min(axis=0), data.max(axis=0)
    scaled = (data - lo) / np.where(hi > lo, hi - lo, 1.0)
    columns = np.arange(features) % data.shape[1]
    out: FloatArray = low + (high - low) * scaled[:, columns]
    return out
