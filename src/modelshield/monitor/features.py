"""Per-account query features over bounded state (the DETECT column's raw material).

Each account keeps an :class:`AccountState`: a window of its ``window`` most recent
rows (sketch, margin, entropy, class, LSH cell, nearest-neighbour distances, event id),
a reservoir of at most ``reservoir_cap`` older sketches (uniform reservoir sampling),
per-minute row counts for the last day, class counts and LSH-cell counts. Memory and
per-row cost are therefore capped whatever the account's history: a new row is
compared with at most ``reservoir_cap + window`` earlier rows (numpy brute force).

Features (``s`` is a row's sketch, :mod:`modelshield.monitor.sketch`; "window" is the
recent rows; ``ref`` is the model's training distribution, :class:`Reference`):

* ``rows_per_minute`` = rows in the last 5 minutes / 5; ``rows_per_hour`` = rows in
  the last 60 minutes; ``rows_per_day`` = rows in the last 1440 minutes (minute buckets).
* ``cell_diversity`` = distinct LSH cells in the window / rows in the window, where a
  row's cell is the sign pattern of ``H^T (s - ref.center)`` for ``lsh_bits`` fixed
  Gaussian hyperplanes ``H``. Uniform coverage of the input space approaches 1; natural
  data concentrates in the cells of its classes. ``cells_covered`` = distinct cells ever.
* ``class_balance`` = entropy of the top-1 class histogram / log(classes): 1 when every
  class is asked equally often ("extraction tends toward uniform coverage").
* ``class_uniformity`` = log Bayes factor of the whole history's class histogram: even
  coverage against a customer's Dirichlet-skewed mix (:func:`class_uniformity`). It
  grows with the evidence, so Knockoff-style querying of natural in-distribution data,
  which only ``class_balance`` otherwise sees, is told from benign within a few hundred
  rows.
* ``low_margin_fraction`` = share of window rows whose top-1/top-2 probability margin is
  below 0.2, and ``margin_median``: decision-boundary proximity, compared with the
  benign baseline by the detector's calibrated thresholds.
* ``entropy_mean`` = mean output entropy (nats) over the window; ``entropy_trend`` =
  mean over the window's newer half minus mean over its older half.
* ``prada_w`` = Shapiro-Wilk W of the window's minimum distances to earlier rows
  (PRADA, Juuti et al. 2019): natural queries give roughly normal distances (W near 1),
  synthetic ones (perturbation steps, walks) do not. Identical re-sends (distance 0)
  are left out: a batch job re-scoring the same rows is not probing. 1.0 with fewer
  than 20 distances.
* ``near_duplicate_fraction`` = share of window rows with ``0 < d_min < eps`` and
  ``repeat_fraction`` = share with ``d_min = 0`` (an identical earlier row: benign
  retries), where ``d_min`` is the distance to the nearest earlier row and
  ``eps = 0.35 * ref.scale``.
* ``knn_distance`` = median over the window of the distance to the 5th-nearest earlier
  row, divided by ``ref.scale`` (Chen, Carlini & Wagner 2019; SEAT), over rows that
  are not identical re-sends: small for floods of similar queries.
* ``ood_fraction`` = share of window rows whose nearest training row is farther than
  ``ref.ood_radius`` (the 99th percentile of leave-one-out nearest-neighbour distances
  within the training data).
* ``window_rows`` = rows in the window: how much evidence the window statistics rest on.

Example:
    >>> import numpy as np
    >>> ref = Reference.from_rows(np.random.default_rng(0).uniform(0, 16, (300, 64)))
    >>> state = AccountState("acc_1")
    >>> state.add_rows(np.zeros((3, 16)), [0.9] * 3, [0.1] * 3, [1, 2, 3], 0.0, "e1", ref,
    ...                window=100, reservoir_cap=100).tolist()
    [inf, 0.0, 0.0]
    >>> features = compute_features(state.view(), ref, now=0.0)
    >>> features["repeat_fraction"]
    0.6666666666666666
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from modelshield.models.base import FloatArray
from modelshield.monitor.sketch import SKETCH_DIMS, project

K_NEIGHBOUR = 5
LOW_MARGIN = 0.2
NEAR_DUPLICATE_SCALE = 0.35
PRADA_MIN = 20
LSH_SEED = 7_919
IDENTICAL = 1e-4
"""Sketch distances below this are an identical row (sketches are rounded to 1e-3)."""
CLASS_MIX_ALPHA = 0.5
"""Concentration of the benign class-mix model: each customer's mix ~ Dirichlet(0.5)."""
UNIFORMITY_FLOOR = -5.0

FEATURES: tuple[str, ...] = (
    "rows_per_minute",
    "rows_per_hour",
    "rows_per_day",
    "cell_diversity",
    "cells_covered",
    "class_balance",
    "low_margin_fraction",
    "margin_median",
    "entropy_mean",
    "entropy_trend",
    "prada_w",
    "near_duplicate_fraction",
    "repeat_fraction",
    "knn_distance",
    "ood_fraction",
    "class_uniformity",
    "window_rows",
)
"""Every feature :func:`compute_features` returns, in a fixed order."""


def sketch_distances(a: FloatArray, b: FloatArray) -> FloatArray:
    """Euclidean distances between the rows of ``a`` [m, k] and ``b`` [n, k], exactly 0
    for identical sketches."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    out: FloatArray = np.sqrt(np.maximum(sq, 0.0))
    # the expansion leaves rounding residue (~1e-6) for identical rows; sketches are
    # rounded to 1e-3, so anything below IDENTICAL is the same row
    out[out < IDENTICAL] = 0.0
    return out


@dataclass(frozen=True)
class Reference:
    """The model's training distribution in sketch space (bounded: ``max_rows`` rows).

    ``center`` centres the LSH hyperplanes, ``scale`` (median leave-one-out
    nearest-neighbour distance) normalises distances, ``ood_radius`` (its 99th
    percentile) separates in- from out-of-distribution rows.
    """

    sketches: FloatArray
    center: FloatArray
    scale: float
    ood_radius: float
    hyperplanes: FloatArray
    classes: int = 0
    """The model's output classes (0: unknown, then the classes seen are counted)."""

    @classmethod
    def from_rows(
        cls, rows: FloatArray, *, lsh_bits: int = 12, max_rows: int = 2000, seed: int = 0
    ) -> Reference:
        rng = np.random.default_rng(seed)
        if len(rows) > max_rows:
            rows = rows[rng.choice(len(rows), max_rows, replace=False)]
        sketches = project(rows)
        return cls.from_sketches(sketches, lsh_bits=lsh_bits)

    @classmethod
    def from_sketches(cls, sketches: FloatArray, *, lsh_bits: int = 12) -> Reference:
        d = sketch_distances(sketches, sketches)
        np.fill_diagonal(d, np.inf)
        nearest = d.min(axis=1)
        hyperplanes = np.random.default_rng(LSH_SEED).standard_normal((SKETCH_DIMS, lsh_bits))
        return cls(
            sketches=sketches,
            center=sketches.mean(axis=0),
            scale=float(np.median(nearest)),
            ood_radius=float(np.quantile(nearest, 0.99)),
            hyperplanes=hyperplanes,
        )

    @classmethod
    def unknown(cls, *, lsh_bits: int = 12) -> Reference:
        """For models without training data: no OOD feature, unit scale."""
        hyperplanes = np.random.default_rng(LSH_SEED).standard_normal((SKETCH_DIMS, lsh_bits))
        return cls(np.zeros((0, SKETCH_DIMS)), np.zeros(SKETCH_DIMS), 1.0, np.inf, hyperplanes)

    @property
    def near_duplicate_eps(self) -> float:
        return NEAR_DUPLICATE_SCALE * self.scale

    def cells(self, sketches: FloatArray) -> list[int]:
        bits = ((sketches - self.center) @ self.hyperplanes) > 0
        weights = 1 << np.arange(bits.shape[1], dtype=np.int64)
        cells: list[int] = (bits.astype(np.int64) @ weights).tolist()
        return cells

    def out_of_distribution(self, sketches: FloatArray) -> list[bool]:
        if len(self.sketches) == 0:
            return [False] * len(sketches)
        nearest = sketch_distances(sketches, self.sketches).min(axis=1)
        flags: list[bool] = (nearest > self.ood_radius).tolist()
        return flags


@dataclass
class WindowView:
    """What features are computed from: one account's window, or a linked group's."""

    sketches: FloatArray
    d_min: FloatArray
    d_knn: FloatArray
    margin: FloatArray
    entropy: FloatArray
    ood: npt.NDArray[np.bool_]
    cells: list[int]
    event_ids: list[str]
    class_counts: list[int]
    cells_covered: int
    minute_counts: dict[int, int]
    rows_seen: int


_ARRAYS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "recent": (np.float64, (0, SKETCH_DIMS)),
    "d_min": (np.float64, (0,)),
    "d_knn": (np.float64, (0,)),
    "x_min": (np.float64, (0,)),
    "margin": (np.float64, (0,)),
    "entropy": (np.float64, (0,)),
    "ood": (np.bool_, (0,)),
    "cells": (np.int64, (0,)),
}
_WINDOW_LISTS = ("x_account", "event_ids")


def _empty(name: str) -> Any:
    dtype, shape = _ARRAYS[name]
    return np.zeros(shape, dtype=dtype)


@dataclass
class AccountState:
    """Bounded per-account monitor state; see the module docstring for the bounds."""

    account_id: str
    rows_seen: int = 0
    reservoir: FloatArray = field(default_factory=lambda: np.zeros((0, SKETCH_DIMS)))
    recent: FloatArray = field(default_factory=lambda: _empty("recent"))
    d_min: FloatArray = field(default_factory=lambda: _empty("d_min"))
    d_knn: FloatArray = field(default_factory=lambda: _empty("d_knn"))
    x_min: FloatArray = field(default_factory=lambda: _empty("x_min"))
    """Distance of each window row to the nearest row of another account (Sybil links)."""
    margin: FloatArray = field(default_factory=lambda: _empty("margin"))
    entropy: FloatArray = field(default_factory=lambda: _empty("entropy"))
    ood: npt.NDArray[np.bool_] = field(default_factory=lambda: _empty("ood"))
    cells: npt.NDArray[np.int64] = field(default_factory=lambda: _empty("cells"))
    x_account: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    class_counts: list[int] = field(default_factory=list)
    cell_counts: dict[int, int] = field(default_factory=dict)
    minute_counts: dict[int, int] = field(default_factory=dict)
    first_seen: float | None = None
    last_seen: float | None = None
    alerted: dict[str, list[float]] = field(default_factory=dict)
    """Alert de-duplication: dedup key -> [time, severity rank] of the last alert."""
    last_risk: float = 0.0
    last_reasons: list[str] = field(default_factory=list)
    max_cells: int = 4096

    # updates -------------------------------------------------------------------
    def add_rows(
        self,
        sketches: FloatArray,
        margins: Sequence[float],
        entropies: Sequence[float],
        top1: Sequence[int],
        time: float,
        event_id: str,
        ref: Reference,
        *,
        window: int,
        reservoir_cap: int,
    ) -> FloatArray:
        """Fold one event's rows in; returns their distances to the nearest earlier row."""
        sketches = np.asarray(sketches, dtype=np.float64).reshape(-1, SKETCH_DIMS)
        m = len(sketches)
        if m == 0:
            return np.zeros(0)
        margin_arr = _fit(margins, m, 1.0)
        entropy_arr = _fit(entropies, m, 0.0)
        labels = _fit(top1, m, -1).astype(np.int64)
        d_prev = sketch_distances(sketches, np.concatenate([self.reservoir, self.recent]))
        d_self = sketch_distances(sketches, sketches)
        order = np.arange(m)
        d_self[order[None, :] >= order[:, None]] = np.inf  # only earlier rows of the batch
        d_all = np.concatenate([d_prev, d_self], axis=1)
        d_min = d_all.min(axis=1) if d_all.shape[1] else np.full(m, np.inf)
        if d_all.shape[1] >= K_NEIGHBOUR:
            d_knn = np.partition(d_all, K_NEIGHBOUR - 1, axis=1)[:, K_NEIGHBOUR - 1]
        else:
            d_knn = np.full(m, np.inf)
        cells = ref.cells(sketches)
        minute = int(time // 60)
        self.minute_counts[minute] = self.minute_counts.get(minute, 0) + m
        if len(self.minute_counts) > 1440:
            for old in [k for k in self.minute_counts if k <= minute - 1440]:
                del self.minute_counts[old]
        self.first_seen = time if self.first_seen is None else self.first_seen
        self.last_seen = time
        for label in labels[labels >= 0].tolist():
            if label >= len(self.class_counts):
                self.class_counts.extend([0] * (label + 1 - len(self.class_counts)))
            self.class_counts[label] += 1
        for cell in cells:
            if cell in self.cell_counts or len(self.cell_counts) < self.max_cells:
                self.cell_counts[cell] = self.cell_counts.get(cell, 0) + 1
        new = {
            "recent": np.round(sketches, 3),
            "d_min": d_min,
            "d_knn": d_knn,
            "x_min": np.full(m, np.inf),
            "margin": margin_arr,
            "entropy": entropy_arr,
            "ood": np.asarray(ref.out_of_distribution(sketches), dtype=bool),
            "cells": np.asarray(cells, dtype=np.int64),
        }
        for name, values in new.items():
            setattr(self, name, np.concatenate([getattr(self, name), values]))
        self.x_account.extend([""] * m)
        self.event_ids.extend([event_id] * m)
        overflow = len(self.recent) - window
        if overflow > 0:
            leaving = self.recent[:overflow]
            for name in _ARRAYS:
                setattr(self, name, getattr(self, name)[overflow:])
            for name in _WINDOW_LISTS:
                del getattr(self, name)[:overflow]
            for i, row in enumerate(leaving):
                self._reservoir_add(row, reservoir_cap, self.rows_seen + i - overflow)
        self.rows_seen += m
        return d_min

    def _reservoir_add(self, row: FloatArray, cap: int, seen: int) -> None:
        """Uniform reservoir sampling over the rows that left the window (Algorithm R).

        The slot is derived from a hash of (account, count), so the sample is
        reproducible across restarts and replicas without storing an RNG.
        """
        if len(self.reservoir) < cap:
            self.reservoir = np.concatenate([self.reservoir, row[None, :]])
            return
        digest = hashlib.blake2b(f"{self.account_id}:{seen}".encode(), digest_size=8).digest()
        slot = int.from_bytes(digest, "big") % max(seen, 1)
        if slot < cap:
            self.reservoir[slot] = row

    def note_cross(self, index: int, distance: float, other: str) -> None:
        """Record that window row ``index`` is ``distance`` from a row of account ``other``."""
        if 0 <= index < len(self.x_min) and distance < self.x_min[index]:
            self.x_min[index] = distance
            self.x_account[index] = other

    # reading -------------------------------------------------------------------
    def view(self, group: set[str] | None = None) -> WindowView:
        """The window as arrays; with ``group``, nearest rows of group members count too."""
        d_min = self.d_min
        if group and len(d_min):
            member = np.array([a in group for a in self.x_account], dtype=bool)
            d_min = np.minimum(d_min, np.where(member, self.x_min, np.inf))
        return WindowView(
            sketches=self.recent,
            d_min=d_min,
            d_knn=self.d_knn,
            margin=self.margin,
            entropy=self.entropy,
            ood=self.ood,
            cells=self.cells.tolist(),
            event_ids=list(self.event_ids),
            class_counts=list(self.class_counts),
            cells_covered=len(self.cell_counts),
            minute_counts=dict(self.minute_counts),
            rows_seen=self.rows_seen,
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: getattr(self, name) for name in _PERSISTED}
        for name in (*_ARRAYS, "reservoir"):
            values = getattr(self, name)
            if values.dtype == np.float64:
                values = np.where(np.isfinite(values), values, -1.0)  # -1: no neighbour yet
            data[name] = values.tolist()
        data["cell_counts"] = [[k, v] for k, v in self.cell_counts.items()]
        data["minute_counts"] = [[k, v] for k, v in self.minute_counts.items()]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AccountState:
        values: dict[str, Any] = {k: v for k, v in data.items() if k in _PERSISTED}
        for name in (*_ARRAYS, "reservoir"):
            dtype, shape = _ARRAYS.get(name, (np.float64, (0, SKETCH_DIMS)))
            array = np.asarray(data.get(name, []), dtype=dtype).reshape((-1, *shape[1:]))
            if name in ("d_min", "d_knn", "x_min"):
                array = np.where(array < 0, np.inf, array)
            values[name] = array
        values["cell_counts"] = {int(k): int(v) for k, v in data.get("cell_counts", [])}
        values["minute_counts"] = {int(k): int(v) for k, v in data.get("minute_counts", [])}
        return cls(**values)


def _fit(values: Sequence[float] | Sequence[int], m: int, fill: float) -> FloatArray:
    out = np.full(m, fill, dtype=np.float64)
    given = np.asarray(values, dtype=np.float64)[:m]
    out[: len(given)] = given
    return out


_PERSISTED = (
    "account_id",
    "rows_seen",
    "reservoir",
    *_ARRAYS,
    *_WINDOW_LISTS,
    "class_counts",
    "cell_counts",
    "minute_counts",
    "first_seen",
    "last_seen",
    "alerted",
    "last_risk",
    "last_reasons",
)


def merge_views(views: Sequence[WindowView]) -> WindowView:
    """One view of a linked group: windows concatenated, counts summed."""
    classes = max((len(v.class_counts) for v in views), default=0)
    class_counts = [
        sum(v.class_counts[i] for v in views if i < len(v.class_counts)) for i in range(classes)
    ]
    minutes: dict[int, int] = {}
    for v in views:
        for k, c in v.minute_counts.items():
            minutes[k] = minutes.get(k, 0) + c
    cells: list[int] = [c for v in views for c in v.cells]
    return WindowView(
        sketches=np.concatenate([v.sketches for v in views]),
        d_min=np.concatenate([v.d_min for v in views]),
        d_knn=np.concatenate([v.d_knn for v in views]),
        margin=np.concatenate([v.margin for v in views]),
        entropy=np.concatenate([v.entropy for v in views]),
        ood=np.concatenate([v.ood for v in views]),
        cells=cells,
        event_ids=[e for v in views for e in v.event_ids],
        class_counts=class_counts,
        cells_covered=max((v.cells_covered for v in views), default=0),
        minute_counts=minutes,
        rows_seen=sum(v.rows_seen for v in views),
    )


def class_uniformity(counts: Sequence[int], classes: int | None = None) -> float:
    """Evidence (nats) that a class histogram comes from uniform coverage of the classes.

    The log Bayes factor ``log P(counts | uniform) - log P(counts | benign mix)``, the
    benign mix being a Dirichlet(:data:`CLASS_MIX_ALPHA`)-multinomial: a customer's
    traffic is skewed to the classes its business sees, an extraction attacker covers
    every class evenly. Unlike ``class_balance`` it grows with the evidence: even
    coverage over 300 rows scores ~15, a skewed customer far below 0. Floored at
    :data:`UNIFORMITY_FLOOR` (only the abnormal side matters).

    Example:
        >>> class_uniformity([30] * 10) > 10 > 0 > class_uniformity([150, 100, 50] + [0] * 7)
        True

    Being a likelihood ratio, it exceeds ``t`` for a benign account of that model with
    probability at most ``exp(-t)`` (Markov's inequality), whatever the account's size:
    its rule threshold is set from that bound, not from a sample.
    """
    from scipy.special import gammaln

    c = np.asarray(counts, dtype=np.float64)
    k = max(len(c), classes or 0)
    n = float(c.sum())
    if k < 2 or n == 0:
        return 0.0
    c = np.concatenate([c, np.zeros(k - len(c))])
    a = CLASS_MIX_ALPHA
    mix = gammaln(k * a) - gammaln(n + k * a) + float((gammaln(c + a) - gammaln(a)).sum())
    return max(UNIFORMITY_FLOOR, float(n * np.log(1.0 / k) - mix))


def _shapiro_w(values: FloatArray) -> float:
    # an identical re-send (distance 0) is a retry, not a probe: it teaches nothing
    # (answers are deterministic per input), so PRADA looks at new rows only
    finite = values[np.isfinite(values) & (values > 0)]
    if len(finite) < PRADA_MIN or float(np.ptp(finite)) == 0.0:
        return 1.0
    from scipy.stats import shapiro

    if len(finite) > 5000:  # scipy's p-value is inexact beyond; W itself is fine
        finite = finite[-5000:]
    return float(shapiro(finite).statistic)


def compute_features(view: WindowView, ref: Reference, now: float) -> dict[str, float]:
    """Every feature of :data:`FEATURES` for ``view`` at time ``now`` (seconds)."""
    n = len(view.margin)
    minute = int(now // 60)

    def rows_since(minutes: int) -> float:
        return float(sum(c for k, c in view.minute_counts.items() if k > minute - minutes))

    classes = np.asarray(view.class_counts, dtype=np.float64)
    total = classes.sum()
    k = max(len(classes), ref.classes)
    if total > 0 and k > 1:
        p = classes[classes > 0] / total
        class_balance = float(-(p * np.log(p)).sum() / np.log(k))
    else:
        class_balance = 0.0
    half = n // 2
    entropy_trend = (
        float(view.entropy[half:].mean() - view.entropy[:half].mean()) if half >= 1 else 0.0
    )
    eps = ref.near_duplicate_eps
    knn = view.d_knn[np.isfinite(view.d_knn) & (view.d_min > 0)]
    return {
        "rows_per_minute": rows_since(5) / 5.0,
        "rows_per_hour": rows_since(60),
        "rows_per_day": rows_since(1440),
        "cell_diversity": len(set(view.cells)) / n if n else 0.0,
        "cells_covered": float(view.cells_covered),
        "class_balance": class_balance,
        "low_margin_fraction": float((view.margin < LOW_MARGIN).mean()) if n else 0.0,
        "margin_median": float(np.median(view.margin)) if n else 1.0,
        "entropy_mean": float(view.entropy.mean()) if n else 0.0,
        "entropy_trend": entropy_trend,
        "prada_w": _shapiro_w(view.d_min),
        "near_duplicate_fraction": float(((view.d_min > 0) & (view.d_min < eps)).mean())
        if n
        else 0.0,
        "repeat_fraction": float((view.d_min == 0).mean()) if n else 0.0,
        "knn_distance": float(np.median(knn)) / ref.scale if len(knn) else 10.0,
        "ood_fraction": float(view.ood.mean()) if n else 0.0,
        "class_uniformity": class_uniformity(view.class_counts, ref.classes),
        "window_rows": float(n),
    }


def feature_vector(features: dict[str, float], names: Sequence[str]) -> FloatArray:
    return np.asarray([features[name] for name in names], dtype=np.float64)


def examples(view: WindowView, mask: npt.NDArray[np.bool_], limit: int = 5) -> list[str]:
    """Ids of up to ``limit`` distinct events whose rows match ``mask`` (newest first)."""
    found: list[str] = []
    for i in np.flatnonzero(mask)[::-1]:
        event_id = view.event_ids[int(i)]
        if event_id not in found:
            found.append(event_id)
        if len(found) >= limit:
            break
    return found
