"""Extraction attacks, one module each; see ``base`` for what they share.

:data:`ATTACKS` names every attack a scenario can run and :func:`build_attack` makes
one from a scenario's parameters. A Sybil split is not an attack of its own: any
attack runs through several accounts by querying a
:class:`~modelshield.evaluation.attacks.sybil.SybilTarget` (see ``sybil``).

Example:
    >>> build_attack("knockoff", queries=500, sampling="adaptive").sampling
    'adaptive'
    >>> try:
    ...     build_attack("knockof")
    ... except ConfigError as exc:
    ...     print(str(exc)[:45])
    unknown attack 'knockof'; known attacks: aver
"""

from __future__ import annotations

import inspect
from typing import Any

from modelshield.errors import ConfigError
from modelshield.evaluation.attacks.averaging import AveragingAttack, AveragingResult
from modelshield.evaluation.attacks.base import Attack, AttackResult, Clone, InputSpace
from modelshield.evaluation.attacks.boundary import BoundaryAttack
from modelshield.evaluation.attacks.equation_solving import EquationSolving
from modelshield.evaluation.attacks.jacobian import JacobianAugmentation
from modelshield.evaluation.attacks.knockoff import Knockoff
from modelshield.evaluation.attacks.sybil import Sybil, SybilResult, SybilTarget
from modelshield.evaluation.attacks.uniform import UniformQueries

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackResult",
    "AveragingAttack",
    "AveragingResult",
    "BoundaryAttack",
    "Clone",
    "EquationSolving",
    "InputSpace",
    "JacobianAugmentation",
    "Knockoff",
    "Sybil",
    "SybilResult",
    "SybilTarget",
    "UniformQueries",
    "build_attack",
]

ATTACKS: dict[str, type] = {
    cls.name: cls
    for cls in (
        EquationSolving,
        UniformQueries,
        JacobianAugmentation,
        Knockoff,
        BoundaryAttack,
        AveragingAttack,
    )
}
"""Attack name (as a scenario's ``kind`` spells it) → class."""


def build_attack(name: str, **params: Any) -> Attack:
    """The attack ``name`` with ``params`` (its constructor's keywords).

    Raises:
        ConfigError: ``name`` is unknown, a parameter is unknown, or a value is invalid.
    """
    cls = ATTACKS.get(name)
    if cls is None:
        raise ConfigError(f"unknown attack {name!r}; known attacks: {', '.join(sorted(ATTACKS))}")
    signature = inspect.signature(cls)
    try:
        signature.bind(**params)
    except TypeError as exc:
        accepted = ", ".join(signature.parameters)
        raise ConfigError(f"attack {name!r}: {exc} (parameters: {accepted})") from None
    attack: Attack = cls(**params)
    check = getattr(attack, "check_params", None)
    if check is not None:
        try:
            check()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"attack {name!r}: {exc}") from None
    return attack
