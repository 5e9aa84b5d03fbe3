"""Detectors over account feature vectors, and the 0-100 risk score with its reasons.

Both detectors follow the estimator rules (STYLE.md #6): ``__init__`` stores
parameters, ``fit(X)`` on benign reference accounts returns ``self``, learned state ends
in ``_``, ``score_samples`` is lower for more abnormal accounts and
``decision_function`` is negative for flagged ones.

* :class:`RuleDetector` — one threshold per feature, at the ``1 - target_fpr / rules``
  quantile of benign accounts (the ``target_fpr / rules`` quantile where low is
  abnormal) moved out by 25% of the spread, so that all rules together flag about
  ``target_fpr`` of benign accounts. A feature's
  excess is ``(value - threshold) / spread`` (sign flipped for low-is-abnormal
  features), ``spread`` being the benign distance from median to threshold.
* :class:`PopulationDetector` — scikit-learn's IsolationForest over the same vectors,
  its offset set at the ``target_fpr`` quantile of benign scores.

:class:`RiskScorer` turns them into ``risk = 60 + 40 * (1 - exp(-excess))`` for the
largest rule excess (a rule just crossed: 60, "medium"; two spreads beyond: ~95),
plus 5 per further rule that fired; an IsolationForest outlier alone scores 45
("low": notify only). Reasons name each fired rule with value and threshold.
Three refinements keep legitimate customers below "high" (the demo degrades there):

* a window statistic's excess is weighted by ``sqrt(min(1, rows / 200))``: over a
  60-row window chance alone crosses a threshold now and then (its standard error is
  twice that of 200 rows), which may notify but not act;
* ``class_uniformity`` is a log likelihood ratio, so its threshold comes from the
  bound ``P(benign > log(1/p)) <= p`` for its share ``p`` of the FPR budget rather than
  from the sample's extreme;
* a verdict resting on the class mix alone is capped at 89 ("high"): even coverage is
  what an extraction looks like, but a customer may have it too, so it never suspends.

Example:
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 2))
    >>> rules = RuleDetector(("a", "b"), {"a": "high", "b": "low"}, target_fpr=0.01).fit(X)
    >>> rules.decision_function(np.array([[0.0, 0.0], [9.0, 0.0]])) < 0
    array([False,  True])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from modelshield.models.base import FloatArray
from modelshield.monitor.records import SEVERITIES, Severity

Direction = Literal["high", "low"]

RULE_DIRECTIONS: dict[str, Direction] = {
    "cell_diversity": "high",
    "class_balance": "high",
    "low_margin_fraction": "high",
    "margin_median": "low",
    "entropy_mean": "high",
    "entropy_trend": "high",
    "prada_w": "low",
    "near_duplicate_fraction": "high",
    "knn_distance": "low",
    "ood_fraction": "high",
    "class_uniformity": "high",
}
"""Features the calibrated rules watch, and which side of them is abnormal. Volume
features get rules only from explicit ``monitoring.thresholds`` (benign volume depends
on the customer, not on the model)."""

VOLUME_FEATURES = ("rows_per_minute", "rows_per_hour", "rows_per_day")
MIN_SPREAD = 1e-3
SAFETY = 0.25
FULL_EVIDENCE_ROWS = 200
"""Window rows at which a window statistic's excess counts in full (see RiskScorer)."""
COUNT_EVIDENCE = ("class_uniformity",)
"""Rules whose feature already weighs its own sample size (a log Bayes factor)."""
CLASS_MIX_RULES = ("class_balance", "class_uniformity")
CLASS_MIX_MAX_RISK = 89.0
"""A verdict resting on the class mix alone stops at "high": a customer may legitimately
ask about every class evenly, so it degrades answers but never suspends."""
MIN_SPREADS: dict[str, float] = {
    "class_balance": 0.05,
    "cell_diversity": 0.05,
    "prada_w": 0.02,
    # benign windows hold (almost) no near-duplicates: one pair of similar customer
    # inputs must not count as many spreads
    "near_duplicate_fraction": 0.05,
    "class_uniformity": 5.0,
}


class RuleDetector:
    """Per-feature thresholds calibrated to a target false-positive rate."""

    def __init__(
        self,
        names: Sequence[str],
        directions: Mapping[str, Direction],
        *,
        target_fpr: float = 0.01,
        fixed: Mapping[str, float] | None = None,
        min_spread: Mapping[str, float] | None = None,
    ) -> None:
        self.names = tuple(names)
        self.directions = dict(directions)
        self.target_fpr = target_fpr
        self.fixed = dict(fixed or {})
        self.min_spread = dict(min_spread or {})

    def fit(self, X: FloatArray) -> RuleDetector:
        X = np.asarray(X, dtype=np.float64)
        thresholds = np.full(len(self.names), np.nan)
        spreads = np.ones(len(self.names))
        # the budget is shared: any of the rules firing is one false positive
        per_rule = self.target_fpr / max(1, sum(1 for n in self.names if n in self.directions))
        for j, name in enumerate(self.names):
            direction = self.directions.get(name)
            column = X[:, j] if len(X) else np.zeros(1)
            median = float(np.median(column))
            if name in self.fixed:
                thresholds[j] = self.fixed[name]
            elif direction == "high":
                thresholds[j] = float(np.quantile(column, 1.0 - per_rule))
            elif direction == "low":
                thresholds[j] = float(np.quantile(column, per_rule))
            else:
                continue
            floor = self.min_spread.get(name, MIN_SPREAD)
            spreads[j] = max(abs(thresholds[j] - median), floor)
            if name not in self.fixed:  # a margin for accounts the sample did not contain
                sign = -1.0 if direction == "low" else 1.0
                thresholds[j] += sign * SAFETY * spreads[j]
        self.thresholds_ = thresholds
        self.spreads_ = spreads
        return self

    def _signs(self) -> FloatArray:
        return np.array(
            [-1.0 if self.directions.get(n, "high") == "low" else 1.0 for n in self.names]
        )

    def excess(self, X: FloatArray) -> FloatArray:
        """Per feature: spreads beyond the threshold (> 0 means the rule fires)."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        out: FloatArray = (X - self.thresholds_) * self._signs() / self.spreads_
        return np.where(np.isnan(self.thresholds_), -np.inf, out)

    def score_samples(self, X: FloatArray) -> FloatArray:
        out: FloatArray = -self.excess(X).max(axis=1)
        return out

    def decision_function(self, X: FloatArray) -> FloatArray:
        return self.score_samples(X)

    def thresholds(self) -> dict[str, float]:
        return {
            n: float(t) for n, t in zip(self.names, self.thresholds_, strict=True) if np.isfinite(t)
        }


class PopulationDetector:
    """IsolationForest over account feature vectors, offset at the target FPR."""

    def __init__(
        self, *, target_fpr: float = 0.01, n_estimators: int = 100, random_state: int = 0
    ) -> None:
        self.target_fpr = target_fpr
        self.n_estimators = n_estimators
        self.random_state = random_state

    def fit(self, X: FloatArray) -> PopulationDetector:
        from sklearn.ensemble import IsolationForest

        X = np.asarray(X, dtype=np.float64)
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators, random_state=self.random_state
        ).fit(X)
        scores = self.forest_.score_samples(X)
        # a little below the benign quantile: the forest scored its own training data
        self.offset_ = float(np.quantile(scores, self.target_fpr)) - 0.02
        return self

    def score_samples(self, X: FloatArray) -> FloatArray:
        out: FloatArray = self.forest_.score_samples(np.atleast_2d(X))
        return out

    def decision_function(self, X: FloatArray) -> FloatArray:
        return self.score_samples(X) - self.offset_


@dataclass(frozen=True)
class Verdict:
    """An account's (or group's) risk: 0-100, its severity, the reasons and rules fired."""

    risk: float
    severity: Severity | None
    reasons: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)
    features: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "risk": round(self.risk, 1),
            "severity": self.severity,
            "reasons": self.reasons,
            "fired": self.fired,
            "features": {k: round(v, 4) for k, v in self.features.items()},
        }


def severity_of(risk: float, cutoffs: Mapping[str, float]) -> Severity | None:
    found: Severity | None = None
    for name in SEVERITIES:
        if risk >= cutoffs[name]:
            found = name
    return found


class RiskScorer:
    """Rules plus population model -> :class:`Verdict` (see the module docstring)."""

    def __init__(
        self,
        *,
        target_fpr: float = 0.01,
        fixed: Mapping[str, float] | None = None,
        cutoffs: Mapping[str, float] | None = None,
        random_state: int = 0,
    ) -> None:
        self.target_fpr = target_fpr
        self.fixed = dict(fixed or {})
        self.cutoffs = dict(cutoffs or {"low": 40, "medium": 60, "high": 75, "critical": 90})
        self.random_state = random_state

    def fit(self, benign: Sequence[Mapping[str, float]]) -> RiskScorer:
        """Calibrate on the feature dicts of benign reference accounts."""
        directions: dict[str, Direction] = dict(RULE_DIRECTIONS)
        for name in self.fixed:
            directions.setdefault(name, "high")
        fixed = dict(self.fixed)
        for name in COUNT_EVIDENCE:
            # a log likelihood ratio exceeds log(1/p) with probability <= p under the
            # benign model: the rule's share of the budget fixes its threshold exactly
            fixed.setdefault(name, math.log(len(directions) / self.target_fpr))
        self.rule_names_ = tuple(directions)
        self.model_names_ = tuple(RULE_DIRECTIONS)
        X = np.array([[b.get(n, 0.0) for n in self.rule_names_] for b in benign])
        self.rules_ = RuleDetector(
            self.rule_names_,
            directions,
            target_fpr=self.target_fpr,
            fixed=fixed,
            min_spread=MIN_SPREADS,
        ).fit(X)
        M = np.array([[b.get(n, 0.0) for n in self.model_names_] for b in benign])
        self.population_ = PopulationDetector(
            target_fpr=self.target_fpr, random_state=self.random_state
        ).fit(M)
        return self

    def score(self, features: Mapping[str, float]) -> Verdict:
        x = np.array([[features.get(n, 0.0) for n in self.rule_names_]])
        excess = self.rules_.excess(x)[0]
        # a window statistic over few rows is noisy (standard error ~ 1/sqrt(rows)): its
        # excess counts in proportion until FULL_EVIDENCE_ROWS, so a small benign
        # account's chance tail crosses a threshold ("medium") without reaching "high"
        rows = features.get("window_rows", float(FULL_EVIDENCE_ROWS))
        weight = math.sqrt(min(1.0, max(rows, 1.0) / FULL_EVIDENCE_ROWS))
        scaled = np.array([n not in COUNT_EVIDENCE for n in self.rule_names_])
        excess = np.where(scaled & (excess > 0), excess * weight, excess)
        fired = [(float(e), n) for e, n in zip(excess, self.rule_names_, strict=True) if e > 0]
        fired.sort(reverse=True)
        thresholds = self.rules_.thresholds()
        reasons = [
            f"{n}={features.get(n, 0.0):.3g} {'>' if self.rules_.directions[n] == 'high' else '<'}"
            f" {thresholds[n]:.3g}"
            for _, n in fired
        ]
        m = np.array([[features.get(n, 0.0) for n in self.model_names_]])
        outlier = float(self.population_.decision_function(m)[0]) < 0
        risk = 0.0
        if fired:
            risk = 60.0 + 40.0 * (1.0 - math.exp(-fired[0][0])) + 5.0 * (len(fired) - 1)
        if outlier:
            reasons.append("isolation forest: unlike benign accounts")
            risk = max(risk, 45.0) + (5.0 if fired else 0.0)
        if fired and all(n in CLASS_MIX_RULES for _, n in fired):
            risk = min(risk, CLASS_MIX_MAX_RISK)
        risk = min(100.0, risk)
        return Verdict(
            risk=risk,
            severity=severity_of(risk, self.cutoffs),
            reasons=reasons,
            fired=[n for _, n in fired] + (["isolation_forest"] if outlier else []),
            features=dict(features),
        )
