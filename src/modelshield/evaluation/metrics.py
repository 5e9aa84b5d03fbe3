"""How good a clone is: accuracy on held-out data and fidelity to the victim.

- **accuracy**: share of held-out rows the clone labels correctly;
- **fidelity**: share of rows on which the clone's top-1 agrees with the unprotected
  victim's (Tramèr et al. 2016 call ``1 - fidelity`` the extraction error ``R_test``).

Example:
    >>> accuracy(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4]))
    0.75
    >>> fidelity(np.array([1, 2, 3, 4]), np.array([1, 0, 0, 4]))
    0.5
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


def accuracy(predicted: npt.ArrayLike, truth: npt.ArrayLike) -> float:
    """Share of rows where ``predicted`` equals ``truth`` (0.0 for no rows)."""
    p, t = np.asarray(predicted), np.asarray(truth)
    if p.shape != t.shape:
        raise ValueError(f"shapes differ: {p.shape} and {t.shape}")
    return float((p == t).mean()) if p.size else 0.0


def fidelity(clone_labels: npt.ArrayLike, victim_labels: npt.ArrayLike) -> float:
    """Top-1 agreement of the clone with the unprotected victim."""
    return accuracy(clone_labels, victim_labels)


@dataclass(frozen=True, slots=True)
class CloneScore:
    """One attack's outcome, as the ``evaluate attack`` table prints it."""

    attack: str
    queries: int
    accuracy: float
    fidelity: float
    throttled: int
    waited_s: float
    stopped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_clone(
    attack: str,
    clone_labels: npt.ArrayLike,
    victim_labels: npt.ArrayLike,
    truth: npt.ArrayLike,
    *,
    queries: int,
    throttled: int = 0,
    waited_s: float = 0.0,
    stopped: str | None = None,
) -> CloneScore:
    """Accuracy against ``truth`` and fidelity against ``victim_labels``."""
    return CloneScore(
        attack=attack,
        queries=queries,
        accuracy=accuracy(clone_labels, truth),
        fidelity=fidelity(clone_labels, victim_labels),
        throttled=throttled,
        waited_s=waited_s,
        stopped=stopped,
    )
