"""The objects that flow through the pipeline: a Query in, a Prediction out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from modelshield.identity.records import Account
from modelshield.models.base import FloatArray
from modelshield.policy.schema import ModelSpec, Plan
from modelshield.storage.limiter import Check

IntArray = npt.NDArray[np.int64]


@dataclass(slots=True)
class Query:
    """One authenticated inference request on its way through the gates.

    ``controls`` collects the name of every gate or shaper that acted, ``flags``
    anything alert-worthy; both end up in the QueryEvent.
    """

    account: Account
    key_id: str
    plan: Plan
    model: str
    spec: ModelSpec
    rows: FloatArray
    time: float
    client: str | None = None
    user_agent: str | None = None
    requested_outputs: list[str] | None = None
    controls: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    charges: list[Check] = field(default_factory=list)
    """What the limits gate charged (refunded if the model call fails)."""
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def row_count(self) -> int:
        return int(self.rows.shape[0])


@dataclass(slots=True)
class Prediction:
    """What the model said, and what the caller will be shown.

    ``raw`` is the backend's answer and is never modified; shapers replace
    ``probabilities`` (what may be revealed) and narrow ``outputs``. After minimization
    to a subset of classes, ``columns[i, j]`` is the class column whose probability is
    ``probabilities[i, j]`` (-1 pads rows that reveal fewer classes); ``decimals`` is
    the rounding applied, so codecs can write exactly that many digits.
    """

    raw: FloatArray
    probabilities: FloatArray
    labels: IntArray
    outputs: list[str]
    columns: IntArray | None = None
    decimals: int | None = None

    @classmethod
    def from_probabilities(
        cls, raw: FloatArray, class_labels: list[int] | None, outputs: list[str]
    ) -> Prediction:
        top = np.argmax(raw, axis=1)
        labels = np.asarray(class_labels, dtype=np.int64)[top] if class_labels else top
        return cls(
            raw=raw,
            probabilities=raw.copy(),
            labels=labels.astype(np.int64, copy=False),
            outputs=outputs,
        )


class Gate(Protocol):
    """Admits a query or raises the ModelShieldError that explains why not."""

    name: str

    async def check(self, query: Query) -> None: ...


class Shaper(Protocol):
    """Transforms a prediction after the model ran (never the top-1 label, DESIGN inv. 3)."""

    name: str

    def shape(self, query: Query, prediction: Prediction) -> Prediction: ...
