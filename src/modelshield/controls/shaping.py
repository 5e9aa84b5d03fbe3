"""The shaping shaper: each plan's perturbations and minimization, raised by account level.

:class:`ShapingChain` compiles one :class:`~modelshield.policy.shaping.ShapingSpec`
into controls; :class:`PolicyShaper` holds a chain for every plan and every
(plan, shaping level) pair, picks one per request from the account as the store
returned it (so a level set by an operator or the responder applies to the very next
request, on every replica, without a reload) and keys the randomness on the
canonical input (:mod:`~modelshield.controls.canonical`).

Example:
    >>> from modelshield.policy.shaping import ShapingSpec
    >>> chain = ShapingChain(ShapingSpec.model_validate(
    ...     {"perturb": [{"kind": "reverse_sigmoid"}], "minimize": {"top_k": 2, "decimals": 2}}))
    >>> chain.names
    ['reverse-sigmoid', 'minimization']
    >>> chain(np.array([[0.7, 0.2, 0.1]]), []).columns.tolist()
    [[0, 1]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from modelshield.controls.canonical import CanonicalInput
from modelshield.controls.minimization import Minimization, Minimized
from modelshield.controls.misinformation import Misinformation
from modelshield.controls.noise import CalibratedNoise
from modelshield.controls.query import Prediction, Query
from modelshield.controls.reverse_sigmoid import ReverseSigmoid
from modelshield.errors import ConfigError, InvalidInput
from modelshield.models.base import FloatArray
from modelshield.policy.schema import Policy
from modelshield.policy.shaping import (
    LABEL_ONLY,
    MinimizationSpec,
    MisinformationSpec,
    NoiseSpec,
    Perturbation,
    ReverseSigmoidSpec,
    ShapingSpec,
)

UNKNOWN_LEVEL_FLAG = "unknown-shaping-level"


class PerturbationControl(Protocol):
    """A perturbation: probabilities (and one key per row) in, probabilities out."""

    name: str
    keyed: bool

    def __call__(self, probabilities: FloatArray, keys: Sequence[bytes]) -> FloatArray: ...


def build_perturbation(spec: Perturbation) -> PerturbationControl:
    """The control for one ``perturb`` entry of a policy."""
    if isinstance(spec, NoiseSpec):
        return CalibratedNoise(level=spec.level)
    if isinstance(spec, ReverseSigmoidSpec):
        return ReverseSigmoid(beta=spec.beta, gamma=spec.gamma)
    if isinstance(spec, MisinformationSpec):
        return Misinformation(
            threshold=spec.threshold, sharpness=spec.sharpness, strength=spec.strength
        )
    raise AssertionError(f"unhandled perturbation {spec!r}")  # pragma: no cover - closed union


class ShapingChain:
    """The perturbations of a spec, in order, then its minimization.

    A label-only spec is not applied here: :class:`PolicyShaper` answers it by dropping
    the probabilities output altogether.
    """

    def __init__(self, spec: ShapingSpec) -> None:
        self.spec = spec
        self.perturbations = [build_perturbation(p) for p in spec.perturb]
        m = spec.minimize
        self.minimization = Minimization(
            top_k=m.top_k, floor=m.floor, renormalize=m.renormalize, decimals=m.decimals
        )
        # what every request asks, answered once (the spec is immutable)
        self.label_only: bool = spec.label_only
        self.is_identity: bool = spec.is_identity
        """Whether answers pass unchanged (nothing to compute per request)."""
        self.keyed: bool = any(p.keyed for p in self.perturbations)
        """Whether any control draws keyed randomness (so keys must be computed)."""
        names = [p.name for p in self.perturbations]
        if spec.minimize != MinimizationSpec():
            names.append(self.minimization.name)
        self._names = ["label-only"] if spec.label_only else names

    @property
    def names(self) -> list[str]:
        """The controls that act, for the QueryEvent (a fresh list)."""
        return list(self._names)

    def perturb(self, probabilities: FloatArray, keys: Sequence[bytes]) -> FloatArray:
        """The perturbations alone (full distributions, before minimization)."""
        shaped = np.asarray(probabilities, dtype=np.float64)
        for perturbation in self.perturbations:
            shaped = perturbation(shaped, keys)
        return shaped

    def __call__(self, probabilities: FloatArray, keys: Sequence[bytes]) -> Minimized:
        return self.minimization(self.perturb(probabilities, keys))


def effective_spec(policy: Policy, plan: str, level: str | None) -> tuple[ShapingSpec, bool]:
    """The shaping of ``plan`` raised by ``level``, and whether the level is known.

    An unknown level fails closed: the plan's shaping stacked with label-only.
    """
    base = policy.plans[plan].shaping
    if level is None:
        return base, True
    raised = policy.shaping_levels.get(level)
    if raised is None:
        return base.stacked(LABEL_ONLY), False
    return base.stacked(raised), True


def check_level(policy: Policy, level: str | None) -> str | None:
    """``level`` if the policy defines it (or None, to clear), else InvalidInput.

    Example:
        >>> from modelshield.policy import demo_policy
        >>> check_level(demo_policy(), "labels-only")
        'labels-only'
    """
    if level is not None and level not in policy.shaping_levels:
        known = ", ".join(policy.shaping_levels) or "none defined"
        raise InvalidInput(f"level: unknown shaping level {level!r}; levels: {known}")
    return level


class PolicyShaper:
    """Shape every answer as its account's plan and shaping level say.

    Args:
        policy: the policy (plans, their shaping, the shaping levels, each model's
            input resolution).
        secret: the server secret keying the noise; required when any plan or level
            uses noise or misinformation.
    """

    name = "shaping"

    def __init__(self, policy: Policy, secret: bytes | None) -> None:
        self.policy = policy
        self.secret = secret
        self._chains: dict[tuple[str, str | None], ShapingChain] = {}
        self._unknown: dict[str, ShapingChain] = {}
        for plan in policy.plans:
            for level in [None, *policy.shaping_levels]:
                spec, _ = effective_spec(policy, plan, level)
                self._chains[plan, level] = ShapingChain(spec)
            self._unknown[plan] = ShapingChain(policy.plans[plan].shaping.stacked(LABEL_ONLY))
        if secret is None and any(c.keyed for c in self._chains.values()):
            raise ConfigError("shaping with noise or misinformation needs the server secret")
        self._canonical = {
            name: CanonicalInput(secret or b"", spec.input.resolution, context=name)
            for name, spec in policy.models.items()
        }

    def chain(self, plan: str, level: str | None) -> tuple[ShapingChain, bool]:
        """The chain for an account on ``plan`` at ``level``, and whether the level is known."""
        found = self._chains.get((plan, level))
        if found is not None:
            return found, True
        return self._unknown[plan], False

    def keys(self, model: str, rows: FloatArray) -> list[bytes]:
        """The per-row keys of ``rows`` sent to ``model``."""
        return self._canonical[model](rows)

    def shape(self, query: Query, prediction: Prediction) -> Prediction:
        chain, known = self.chain(query.account.plan, query.account.shaping_level)
        if not known:
            query.flags.append(UNKNOWN_LEVEL_FLAG)
        if "probabilities" not in prediction.outputs:
            return prediction
        if chain.label_only:
            prediction.outputs = ["label"]
            query.controls.append("label-only")
            return prediction
        if chain.is_identity:
            return prediction
        keys = self.keys(query.model, query.rows) if chain.keyed else []
        answer = chain(prediction.probabilities, keys)
        prediction.probabilities = answer.values
        prediction.columns = None if answer.columns is None else answer.columns.astype(np.int64)
        prediction.decimals = answer.decimals
        query.controls.extend(chain.names)
        return prediction


def output_metadata(
    policy: Policy, plan: str, level: str | None, classes: int | None
) -> list[dict[str, Any]]:
    """The outputs an account on ``plan`` at ``level`` receives, for ``GET /v2/models/{m}``.

    Example:
        >>> from modelshield.policy import demo_policy
        >>> [o["name"] for o in output_metadata(demo_policy(), "free", None, 10)]
        ['probabilities', 'classes', 'label']
    """
    spec, _ = effective_spec(policy, plan, level)
    allowed = policy.plans[plan].outputs
    outputs: list[dict[str, Any]] = []
    if "probabilities" in allowed and not spec.label_only:
        minimize = spec.minimize
        if minimize.sparse:
            width = minimize.top_k if minimize.floor is None else None
            if width is not None and classes is not None:
                width = min(width, classes)
            shape = [-1, width or -1]
            outputs.append({"name": "probabilities", "datatype": "FP32", "shape": shape})
            outputs.append({"name": "classes", "datatype": "INT64", "shape": shape})
        else:
            outputs.append(
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, classes or -1]}
            )
    if "label" in allowed or spec.label_only:
        outputs.append({"name": "label", "datatype": "INT64", "shape": [-1]})
    return outputs
