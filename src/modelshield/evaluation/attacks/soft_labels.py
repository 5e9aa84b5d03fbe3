"""A clone trained on the probabilities an attacker received (soft labels).

Knowledge distillation (Hinton et al. 2015) as extraction attacks use it: a softmax
regression fitted by cross-entropy to the revealed distributions, not to their argmax.
What is revealed is used as a client would rebuild it: a top-k answer's missing mass is
spread evenly over the classes it hides; a row answered with a label only counts as a
one-hot distribution.

Example:
    >>> from modelshield.evaluation.targets import Answer
    >>> answer = Answer(labels=np.array([0]), probabilities=np.array([[0.7, 0.2]]),
    ...                 classes=np.array([[0, 2]]))
    >>> soft_targets(answer, 4).round(2).tolist()
    [[0.7, 0.05, 0.2, 0.05]]
"""

from __future__ import annotations

import numpy as np

from modelshield.evaluation.attacks.base import Clone, InputSpace, fit_clone, one_blas_thread
from modelshield.evaluation.attacks.equation_solving import softmax_clone
from modelshield.evaluation.targets import Answer, FloatArray


def soft_targets(answer: Answer, classes: int) -> FloatArray:
    """``[N, classes]`` distributions: revealed mass, the rest spread over hidden classes."""
    n = answer.labels.shape[0]
    onehot = np.zeros((n, classes))
    known = (answer.labels >= 0) & (answer.labels < classes)
    onehot[np.flatnonzero(known), answer.labels[known]] = 1.0
    if answer.probabilities is None:
        return onehot
    dense = answer.dense(classes)
    hidden = ~np.isfinite(dense)
    revealed = np.where(hidden, 0.0, np.clip(dense, 0.0, 1.0))
    rest = np.clip(1.0 - revealed.sum(axis=1, keepdims=True), 0.0, None)
    spread = rest / np.maximum(hidden.sum(axis=1, keepdims=True), 1)
    out = np.where(hidden, spread, revealed)
    total = out.sum(axis=1, keepdims=True)
    return np.where(total > 0, out / np.where(total > 0, total, 1.0), onehot)


def fit_soft_clone(
    rows: FloatArray, answer: Answer, space: InputSpace, *, l2: float = 1e-4, seed: int = 0
) -> Clone:
    """A softmax regression on the soft targets (labels only: a logistic clone on labels)."""
    if answer.probabilities is None or rows.shape[0] == 0:
        return fit_clone(rows, answer.labels, space, seed=seed)
    targets = soft_targets(answer, space.classes)
    x = (rows - space.low) / (space.high - space.low)
    weights = softmax_regression(x, targets, l2=l2)
    # softmax_clone takes parameters in raw input units; ours are in [0, 1] units
    scale = space.high - space.low
    coef = weights[:-1].T / scale
    intercept = weights[-1] - coef @ np.full(coef.shape[1], space.low)
    return softmax_clone(coef, intercept, space)


def softmax_regression(x: FloatArray, targets: FloatArray, *, l2: float = 1e-4) -> FloatArray:
    """Weights ``[features + 1, classes]`` (the last row the bias) of a multinomial
    logistic regression fitted to soft ``targets`` by cross-entropy with an L2 penalty.

    A deterministic start and solver: the same data always gives the same weights.

    Example:
        >>> x = np.array([[0.0], [1.0]])
        >>> w = softmax_regression(x, np.array([[1.0, 0.0], [0.0, 1.0]]))
        >>> (np.hstack([x, np.ones((2, 1))]) @ w).argmax(axis=1).tolist()
        [0, 1]
    """
    from scipy.optimize import minimize

    x = np.hstack([x, np.ones((x.shape[0], 1))])
    n, d = x.shape
    c = targets.shape[1]

    def loss(w: FloatArray) -> tuple[float, FloatArray]:
        weights = w.reshape(d, c)
        z = x @ weights
        z -= z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        grad = x.T @ (np.exp(log_p) - targets) / n
        grad[:-1] += 2 * l2 * weights[:-1]
        value = -float((targets * log_p).sum()) / n + l2 * float((weights[:-1] ** 2).sum())
        return value, grad.ravel()

    with one_blas_thread():
        fitted = minimize(
            loss, np.zeros(d * c), jac=True, method="L-BFGS-B", options={"maxiter": 500}
        )
    weights: FloatArray = fitted.x.reshape(d, c)
    return weights
