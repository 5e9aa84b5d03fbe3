"""Output shaping settings: perturbation and minimization, per plan and per named level.

A plan's ``shaping`` section says what its callers' probabilities go through::

    plans:
      free:
        outputs: [probabilities, label]
        shaping:
          perturb:
            - {kind: misinformation, threshold: 0.5}
            - {kind: noise, level: 0.02}
          minimize: {top_k: 3, decimals: 3}
    shaping_levels:
      degraded: {perturb: [{kind: noise, level: 0.05}], minimize: {top_k: 1, decimals: 2}}
      labels-only: {label_only: true}

Perturbations run in the order listed, on the full distribution; minimization runs
last. None of them ever changes the top-1 label (DESIGN invariant 3).

An account's ``shaping_level`` (set by an operator or the responder) selects one of
the policy's ``shaping_levels``, which is applied *on top of* the plan's shaping
(:meth:`ShapingSpec.stacked`): its perturbations run after the plan's, and each
minimization setting takes the stricter of the two. A level therefore only ever
raises protection — what it adds is post-processing of what the plan would answer.
A level name the policy does not define (a policy reload removed or renamed it)
fails closed to :data:`LABEL_ONLY`: the account was raised for a reason, and the
strongest answer that still serves is the label alone.

Example:
    >>> plan = ShapingSpec.model_validate({"perturb": [{"kind": "noise", "level": 0.02}],
    ...                                    "minimize": {"top_k": 3, "decimals": 3}})
    >>> level = ShapingSpec.model_validate({"minimize": {"top_k": 1}})
    >>> plan.stacked(level).minimize.top_k, len(plan.stacked(level).perturb)
    (1, 1)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

PERTURBATION_KINDS = ("noise", "reverse_sigmoid", "misinformation")


class _Strict(BaseModel):
    # the same settings as policy.schema.Strict (not imported: schema imports this module)
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoiseSpec(_Strict):
    """Keyed noise moving ``level`` of L1 distance (sum of absolute changes) per row."""

    kind: Literal["noise"]
    level: float = Field(
        ge=0,
        le=1,
        description="L1 change per row: 0.02 moves 1% of the probability mass (L1 = 2%).",
    )


class ReverseSigmoidSpec(_Strict):
    """Reverse sigmoid (Lee et al. 2019), with the top-1 label kept."""

    kind: Literal["reverse_sigmoid"]
    beta: float = Field(default=0.7, gt=0, le=100, description="Magnitude.")
    gamma: float = Field(default=0.4, gt=0, le=100, description="Convergence (slope).")


class MisinformationSpec(_Strict):
    """Adaptive misinformation for low-confidence queries (Kariyappa & Qureshi 2020 style)."""

    kind: Literal["misinformation"]
    threshold: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Top-1 probability below which an answer is treated as out of distribution.",
    )
    sharpness: float = Field(
        default=20.0, gt=0, le=1000, description="How fast misinformation ramps up."
    )
    strength: float = Field(
        default=1.0, gt=0, le=1, description="Share of the answer replaced at low confidence."
    )


Perturbation = Annotated[
    NoiseSpec | ReverseSigmoidSpec | MisinformationSpec, Field(discriminator="kind")
]


class MinimizationSpec(_Strict):
    """Reveal less: fewer classes, fewer digits."""

    top_k: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Reveal only the k most probable classes (with a `classes` output).",
    )
    floor: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Drop classes whose probability is below this (the top-1 always stays).",
    )
    renormalize: bool = Field(
        default=False, description="Rescale the revealed probabilities to sum to 1."
    )
    decimals: int | None = Field(
        default=None, ge=0, le=8, description="Round probabilities to this many decimals."
    )

    @property
    def sparse(self) -> bool:
        """Whether answers list (class, probability) pairs instead of every class."""
        return self.top_k is not None or self.floor is not None

    def stricter(self, other: MinimizationSpec) -> MinimizationSpec:
        """The setting-by-setting stricter of ``self`` and ``other``."""
        return MinimizationSpec(
            top_k=_least(self.top_k, other.top_k),
            floor=_most(self.floor, other.floor),
            renormalize=self.renormalize or other.renormalize,
            decimals=_least(self.decimals, other.decimals),
        )


class ShapingSpec(_Strict):
    """What a plan's (or a level's) probabilities go through before they are revealed."""

    perturb: list[Perturbation] = Field(
        default_factory=list, description="Perturbations, applied in order."
    )
    minimize: MinimizationSpec = Field(default_factory=MinimizationSpec)
    label_only: bool = Field(
        default=False, description="Answer with the label only, whatever the plan's outputs."
    )

    @property
    def is_identity(self) -> bool:
        """Whether this shaping leaves answers exactly as the model gave them."""
        return not self.perturb and self.minimize == MinimizationSpec() and not self.label_only

    def stacked(self, level: ShapingSpec) -> ShapingSpec:
        """This shaping with ``level`` applied on top (never weaker than either)."""
        return ShapingSpec(
            perturb=[*self.perturb, *level.perturb],
            minimize=self.minimize.stricter(level.minimize),
            label_only=self.label_only or level.label_only,
        )


LABEL_ONLY = ShapingSpec(label_only=True)
"""What an account with an unknown shaping level receives (fail closed)."""


def _least(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _most(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)
