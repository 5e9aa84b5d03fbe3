"""What every attack shares: the input space, the clone, the result.

An attack is a plain class (no base class to inherit) that satisfies :class:`Attack`:
``__init__`` stores its parameters (``queries``, ``seed`` and its own),
``async run(target) -> AttackResult`` queries a
:class:`~modelshield.evaluation.targets.QueryTarget` and trains a clone on what it
received, and ``train(rows, answer)`` trains the clone the attack would have built
from those rows and answers alone (the evaluation harness calls it on prefixes of the
transcript to draw fidelity against queries spent). A refusal the attacker cannot wait
out (suspension, revoked key, ``max_wait`` passed) ends the querying; the clone is
trained on what was received.

Example:
    >>> space = InputSpace(features=4, low=0.0, high=2.0, classes=3)
    >>> space.uniform(np.random.default_rng(0), 2).shape
    (2, 4)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from modelshield.evaluation.targets import (
    Answer,
    FloatArray,
    QueryTarget,
    TargetRefused,
    concat_answers,
)

CloneKind = Literal["logistic", "mlp"]


@dataclass(frozen=True, slots=True)
class InputSpace:
    """What the attacker knows of the model's interface (the demo model by default)."""

    features: int = 64
    low: float = 0.0
    high: float = 16.0
    classes: int = 10

    def uniform(self, rng: np.random.Generator, n: int) -> FloatArray:
        return rng.uniform(self.low, self.high, (n, self.features))

    def clip(self, rows: FloatArray) -> FloatArray:
        return np.clip(rows, self.low, self.high)


class Clone:
    """A scikit-learn estimator on inputs scaled to [0, 1] by the known input range."""

    def __init__(self, estimator: Any, space: InputSpace) -> None:
        self.estimator = estimator
        self.space = space

    def _scale(self, rows: FloatArray) -> FloatArray:
        return (np.asarray(rows, dtype=np.float64) - self.space.low) / (
            self.space.high - self.space.low
        )

    def predict(self, rows: FloatArray) -> npt.NDArray[np.int64]:
        return np.asarray(self.estimator.predict(self._scale(rows)), dtype=np.int64)

    def predict_proba(self, rows: FloatArray) -> FloatArray:
        """``[N, classes]`` probabilities (classes the clone never saw get 0)."""
        partial = self.estimator.predict_proba(self._scale(rows))
        out = np.zeros((partial.shape[0], self.space.classes))
        out[:, np.asarray(self.estimator.classes_, dtype=np.int64)] = partial
        return out


class _Constant:
    """The clone of an attacker who only ever saw one label."""

    def __init__(self, label: int) -> None:
        self.classes_ = np.array([label])

    def predict(self, rows: FloatArray) -> npt.NDArray[np.int64]:
        return np.full(rows.shape[0], self.classes_[0], dtype=np.int64)

    def predict_proba(self, rows: FloatArray) -> FloatArray:
        return np.ones((rows.shape[0], 1))


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the linear algebra inside on one BLAS thread.

    Clones are small (tens of parameters per class, at most a few thousand rows): a
    multi-threaded BLAS gains nothing on them and, on a machine with few cores that
    is busy with something else (the gateway, other work), its threads spin against
    each other. Measured on 2 shared cores: the L-BFGS fits of a clone ran 7-40x
    slower with OpenBLAS's default threads.
    """
    # threadpoolctl comes with scikit-learn (it has no type information: Any)
    limits: Any = import_module("threadpoolctl").threadpool_limits
    with limits(limits=1, user_api="blas"):
        yield


def fit_clone(
    rows: FloatArray,
    labels: npt.NDArray[np.int64],
    space: InputSpace,
    *,
    kind: CloneKind = "logistic",
    seed: int = 0,
) -> Clone:
    """Train a clone on the labels received (a logistic model or a small MLP)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    if len(np.unique(labels)) < 2:
        return Clone(_Constant(int(labels[0]) if len(labels) else 0), space)
    estimator: Any
    if kind == "mlp":
        estimator = MLPClassifier((128,), max_iter=400, random_state=seed)
    else:
        estimator = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    clone = Clone(estimator, space)
    with warnings.catch_warnings(), one_blas_thread():
        # an attacker's clone is as converged as its iteration budget makes it
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(clone._scale(rows), labels)
    return clone


@dataclass(slots=True)
class AttackResult:
    """The clone, what it was trained on, and what it cost: rows answered, 429s met,
    seconds waited."""

    attack: str
    clone: Clone
    queries: int
    throttled: int
    waited_s: float
    stopped: str | None = None
    """Why querying ended early (a refusal), or ``None``."""
    rows: FloatArray | None = None
    """Every row the attack had answered, in order."""
    answer: Answer | None = None
    """The answers to ``rows``."""


class Attack(Protocol):
    """What the evaluation harness runs (see the module docstring)."""

    name: str
    seed: int
    space: InputSpace

    async def run(self, target: QueryTarget) -> AttackResult: ...

    def train(self, rows: FloatArray, answer: Answer) -> Clone: ...


class Transcript:
    """Everything an attack asked and learned, stopping at the first refusal."""

    def __init__(self, target: QueryTarget) -> None:
        self.target = target
        self.rows: list[FloatArray] = []
        self.answers: list[Answer] = []
        self.stopped: str | None = None

    async def ask(self, rows: FloatArray) -> Answer | None:
        """The answer, or ``None`` once the target has refused."""
        if self.stopped is not None or len(rows) == 0:
            return None
        try:
            answer = await self.target.query(rows)
        except TargetRefused as refused:
            self.stopped = str(refused)
            if refused.partial is None:
                return None
            answer = refused.partial
            rows = rows[: answer.labels.shape[0]]
        self.rows.append(np.asarray(rows, dtype=np.float64))
        self.answers.append(answer)
        return answer

    @property
    def x(self) -> FloatArray:
        return np.concatenate(self.rows) if self.rows else np.zeros((0, 0))

    @property
    def labels(self) -> npt.NDArray[np.int64]:
        if not self.answers:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([a.labels for a in self.answers])

    @property
    def answer(self) -> Answer:
        return concat_answers(self.answers)

    def result(self, attack: str, clone: Clone) -> AttackResult:
        return AttackResult(
            attack=attack,
            clone=clone,
            queries=self.target.queries,
            throttled=self.target.throttled,
            waited_s=self.target.waited,
            stopped=self.stopped,
            rows=self.x,
            answer=self.answer,
        )
