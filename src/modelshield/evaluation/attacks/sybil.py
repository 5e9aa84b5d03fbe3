"""Sybil: one attack spread over many accounts.

Per-account controls (rate limits, query budgets, per-account monitoring) see only
each account's share of an attack run through ``N`` accounts (Juuti et al., "PRADA",
EuroS&P 2019, discuss this evasion; it is why the monitor links accounts). Any attack
becomes a Sybil attack by querying a :class:`SybilTarget` instead of one account:

- :class:`SybilTarget` is itself a
  :class:`~modelshield.evaluation.targets.QueryTarget` over a list of per-account
  targets. Each ``query`` is cut into batches of ``batch_rows`` and the batches go
  to the accounts round-robin, so the rows split evenly. ``queries``, ``throttled``
  and ``waited`` are the sums over the accounts (``per_account`` has each account's
  rows). An account that is refused (403 suspended, 401 revoked, 429 past its
  ``max_wait``) is dropped — the rest of its batch goes to the next account — and the
  others go on; when every account has been refused, :class:`TargetRefused` ends the
  attack as it would for one account.
- :class:`Sybil` wraps an attack: ``run`` accepts a :class:`SybilTarget` or a plain
  list of per-account targets, runs the inner attack through it and returns a
  :class:`SybilResult` (the inner result with the per-account counts and who was
  dropped). ``train`` is the inner attack's.

The accounts themselves are created by the caller (the evaluation harness signs them
up, through self-service sign-up where the policy enables it)::

    async with gateway_target(policy, accounts=10) as targets:
        result = await Sybil(Knockoff(queries=2000, seed=1)).run(targets)
        result.per_account        # [200, 200, ..., 200]

Example:
    >>> from modelshield.evaluation.attacks.uniform import UniformQueries
    >>> sybil = Sybil(UniformQueries(queries=100, seed=3))
    >>> sybil.name, sybil.seed
    ('uniform-sybil', 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from modelshield.evaluation.attacks.base import Attack, AttackResult, Clone, InputSpace
from modelshield.evaluation.targets import (
    Answer,
    FloatArray,
    QueryTarget,
    TargetRefused,
    concat_answers,
)


class SybilTarget:
    """Round-robin over per-account targets, dropping each one that is refused.

    Example:
        >>> SybilTarget([], batch_rows=32).per_account
        []
    """

    def __init__(self, targets: Sequence[QueryTarget], *, batch_rows: int | None = None) -> None:
        self.targets = list(targets)
        self.batch_rows = batch_rows or min(
            (int(getattr(t, "batch_rows", 64)) for t in self.targets), default=64
        )
        """Rows per batch (default: the smallest batch any account sends)."""
        self.queries = 0
        self.throttled = 0
        self.waited = 0.0
        self.per_account = [0 for _ in self.targets]
        """Rows answered per account (in the order given)."""
        self.dropped: dict[int, str] = {}
        """Account index → the refusal that dropped it."""
        self._next = 0

    @property
    def active(self) -> list[int]:
        """Indexes of the accounts still querying."""
        return [i for i in range(len(self.targets)) if i not in self.dropped]

    async def query(self, rows: FloatArray) -> Answer:
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        parts: list[Answer] = []
        start = 0
        while start < rows.shape[0]:
            batch = rows[start : start + self.batch_rows]
            try:
                answer = await self._send(batch)
            except TargetRefused as refused:
                done = [*parts, *([refused.partial] if refused.partial is not None else [])]
                refused.partial = concat_answers(done) if done else None
                raise
            parts.append(answer)
            start += batch.shape[0]
        return concat_answers(parts)

    async def _send(self, batch: FloatArray) -> Answer:
        """``batch`` answered by the next account(s); the remainder moves on after a refusal."""
        parts: list[Answer] = []
        last: TargetRefused | None = None
        while batch.shape[0] and self.active:
            index = self._take()
            target = self.targets[index]
            before = target.queries
            try:
                answer = await target.query(batch)
            except TargetRefused as refused:
                self.dropped[index] = str(refused)
                last = refused
                if refused.partial is not None:
                    parts.append(refused.partial)
                    batch = batch[refused.partial.labels.shape[0] :]
                continue
            finally:
                self._count(index, target.queries - before)
            parts.append(answer)
            batch = batch[batch.shape[0] :]
        if batch.shape[0]:
            ended = TargetRefused(
                last.status if last else 403, f"every account was refused (last: {last})"
            )
            ended.partial = concat_answers(parts) if parts else None
            raise ended
        return concat_answers(parts)

    def _take(self) -> int:
        active = self.active
        index = next((i for i in active if i >= self._next), active[0])
        self._next = index + 1
        return index

    def _count(self, index: int, rows: int) -> None:
        self.per_account[index] += rows
        self.queries = sum(t.queries for t in self.targets)
        self.throttled = sum(t.throttled for t in self.targets)
        self.waited = sum(t.waited for t in self.targets)


@dataclass(slots=True)
class SybilResult(AttackResult):
    """An :class:`AttackResult` with how the accounts shared the work."""

    per_account: list[int] = field(default_factory=list)
    """Rows answered per account."""
    dropped: dict[int, str] = field(default_factory=dict)
    """Account index → the refusal that dropped it."""


class Sybil:
    """Run ``attack`` through several accounts (see the module docstring)."""

    def __init__(self, attack: Attack, *, batch_rows: int | None = None) -> None:
        self.attack = attack
        self.batch_rows = batch_rows
        self.name = f"{attack.name}-sybil"
        self.seed = attack.seed
        self.space: InputSpace = attack.space

    async def run(self, target: QueryTarget | Sequence[QueryTarget]) -> SybilResult:
        if isinstance(target, SybilTarget):
            sybil = target
        elif isinstance(target, Sequence):
            sybil = SybilTarget(target, batch_rows=self.batch_rows)
        else:
            sybil = SybilTarget([target], batch_rows=self.batch_rows)
        result = await self.attack.run(sybil)
        values = {f.name: getattr(result, f.name) for f in fields(AttackResult)}
        values["attack"] = self.name
        return SybilResult(
            **values, per_account=list(sybil.per_account), dropped=dict(sybil.dropped)
        )

    def train(self, rows: FloatArray, answer: Answer) -> Clone:
        return self.attack.train(rows, answer)
