"""Equation-solving extraction of a softmax (multinomial logistic) model.

Tramèr et al., "Stealing Machine Learning Models via Prediction APIs" (USENIX
Security 2016), section 4.1. For a softmax model ``p_i(x) ∝ exp(w_i·x + b_i)``, every
pair of revealed probabilities gives one linear equation in the parameters:

    log p_i(x) - log p_r(x) = (w_i - w_r)·x + (b_i - b_r)

With class 0's parameters fixed at zero (softmax is shift-invariant) there are
``(C-1)(d+1)`` unknowns and each fully answered query gives ``C-1`` equations, so
``d + 1`` random queries (one per parameter of a class) determine the model; the
least-squares solution of the stacked system is the clone. Top-k answers give
``k-1`` equations per query (rows reveal different classes, so more queries are
needed); label-only answers give none, and the attack falls back to training a
logistic clone on the labels.

Example:
    >>> attack = EquationSolving(seed=0)
    >>> attack.queries is None
    True
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from modelshield.evaluation.attacks.base import (
    AttackResult,
    Clone,
    InputSpace,
    Transcript,
    fit_clone,
    one_blas_thread,
)
from modelshield.evaluation.targets import Answer, FloatArray, QueryTarget

_FLOOR = 1e-30


class EquationSolving:
    """Solve for the logistic parameters from log-probability differences.

    ``queries`` defaults to ``features + 1``: one per parameter of a class.
    """

    name = "equation-solving"

    def __init__(
        self, queries: int | None = None, seed: int = 0, space: InputSpace | None = None
    ) -> None:
        self.queries = queries
        self.seed = seed
        self.space = space or InputSpace()

    async def run(self, target: QueryTarget) -> AttackResult:
        space = self.space
        rng = np.random.default_rng(self.seed)
        n = self.queries if self.queries is not None else space.features + 1
        transcript = Transcript(target)
        await transcript.ask(space.uniform(rng, n))
        return transcript.result(self.name, self.train(transcript.x, transcript.answer))

    def train(self, rows: FloatArray, answer: Answer) -> Clone:
        """Solve from the probabilities; with labels only, fit a logistic clone."""
        if answer.probabilities is None:
            return fit_clone(rows, answer.labels, self.space, seed=self.seed)
        coef, intercept = solve_softmax(rows, answer.dense(self.space.classes))
        return softmax_clone(coef, intercept, self.space)


def solve_softmax(x: FloatArray, probabilities: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Least-squares softmax parameters from (possibly partly ``nan``) probabilities.

    Returns ``coef`` ``[C, d]`` and ``intercept`` ``[C]`` with class 0 at zero.

    Example:
        >>> w = np.array([[0.0, 0.0], [1.0, -2.0], [0.5, 0.5]])
        >>> x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> z = x @ w.T + np.array([0.0, 0.3, -0.1])
        >>> p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        >>> coef, b = solve_softmax(x, p)
        >>> bool(np.allclose(coef, w) and np.allclose(b, [0.0, 0.3, -0.1]))
        True
    """
    n, d = x.shape
    classes = probabilities.shape[1]
    width = d + 1
    design = np.hstack([x, np.ones((n, 1))])
    logp = np.log(np.clip(probabilities, _FLOOR, None))
    revealed = np.isfinite(probabilities) & (probabilities > 0)
    blocks: list[FloatArray] = []
    targets: list[float] = []
    for row in range(n):
        seen = np.flatnonzero(revealed[row])
        if len(seen) < 2:
            continue
        ref = int(seen[0])
        for i in seen[1:]:
            equation = np.zeros((classes - 1) * width)
            if i > 0:
                equation[(i - 1) * width : i * width] += design[row]
            if ref > 0:
                equation[(ref - 1) * width : ref * width] -= design[row]
            blocks.append(equation)
            targets.append(float(logp[row, i] - logp[row, ref]))
    theta = np.zeros((classes - 1) * width)
    if blocks:
        with one_blas_thread():
            theta = np.linalg.lstsq(np.vstack(blocks), np.asarray(targets), rcond=None)[0]
    params = np.vstack([np.zeros(width), theta.reshape(classes - 1, width)])
    return params[:, :d], params[:, d]


def softmax_clone(coef: FloatArray, intercept: FloatArray, space: InputSpace) -> Clone:
    """A scikit-learn ``LogisticRegression`` holding the solved parameters."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression()
    scale = space.high - space.low
    # the clone sees inputs scaled to [0, 1]: fold the scaling into the parameters
    model.coef_ = coef * scale
    model.intercept_ = intercept + coef @ np.full(coef.shape[1], space.low)
    classes: npt.NDArray[np.int64] = np.arange(coef.shape[0], dtype=np.int64)
    model.classes_ = classes
    return Clone(model, space)
