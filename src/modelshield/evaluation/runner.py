"""Run a scenario: every attack against the protected gateway (beside a benign population)
and against the unprotected model, and measure what each achieved and what was caught.

For each policy variant and each attack of the scenario:

1. **Protected run** — a fresh :class:`~modelshield.evaluation.site.Site` (an in-process
   gateway on a simulated clock, or a remote one). The benign population's existing
   customers are provisioned, newcomers sign up when their time comes, and their
   requests are replayed in time order *while* the attack runs: every time the attacker
   waits (its pace between requests, a ``Retry-After``) the benign requests due in that
   interval are sent. After every answered attacker batch the harness looks at the
   monitor's alerts and responder actions for the attacker's accounts, so it knows after
   how many queries, and how many seconds, the attack was flagged and what followed. A
   suspension ends the attack (a Sybil goes on with its other accounts); a degrade
   changes what it receives from then on. When the attack ends the rest of the benign
   traffic is replayed and the benign accounts' alerts and actions are counted.
2. **Baseline run** — the same attack, seed and queries against the same model with every
   protection off (:meth:`Scenario.unprotected_policy`), in-process, once per attack.

Clones are scored on the digits held-out split: **accuracy** against the true labels
and **fidelity** against the unprotected model, at each of the scenario's
``checkpoints`` (the attack's own ``train`` on the first N rows it received) and at the
end. Benign utility compares what legitimate accounts received with the unprotected
model's answers to the same rows.

Example:
    >>> attacker_address("subnet", 3), attacker_address("same", 3)
    ('203.0.113.13', '203.0.113.7')
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modelshield.controls.minimization import Minimized
from modelshield.errors import ConfigError
from modelshield.evaluation.attacks import build_attack
from modelshield.evaluation.attacks.base import Attack, AttackResult, InputSpace
from modelshield.evaluation.attacks.sybil import SybilTarget
from modelshield.evaluation.benign import BenignAccount, BenignPlan, BenignPopulation, BenignRequest
from modelshield.evaluation.metrics import accuracy, fidelity
from modelshield.evaluation.results import (
    ActionSeen,
    AttackRun,
    BenignOutcome,
    CurvePoint,
    Detection,
    EvaluationResults,
    VariantResult,
)
from modelshield.evaluation.scenario import AttackSpec, Scenario
from modelshield.evaluation.site import InProcessSite, Site
from modelshield.evaluation.targets import Answer, FloatArray, OipTarget, QueryTarget, TargetRefused
from modelshield.evaluation.utility import as_distribution
from modelshield.models.base import ModelBackend
from modelshield.models.registry import build_backend
from modelshield.monitor.records import SEVERITIES, Alert
from modelshield.policy.schema import Policy

Progress = Callable[[str], None]
SiteFactory = Callable[[Policy], Site]
_ACTION_ORDER = ("throttle", "degrade", "suspend")


def attacker_address(kind: str, index: int) -> str:
    """The client address of a Sybil's ``index``-th account."""
    if kind == "subnet":
        return f"203.0.113.{10 + index % 240}"
    if kind == "distinct":
        a, b, c = 11 + index % 200, (index * 37) % 250 + 1, (index * 11) % 250 + 1
        return f"{a}.{b}.{c}.{20 + index % 200}"
    return "203.0.113.7"


@dataclass(slots=True)
class Reference:
    """The unprotected model and the held-out data clones are scored on."""

    backend: ModelBackend
    space: InputSpace
    test_rows: FloatArray
    test_labels: npt.NDArray[np.int64]
    victim_labels: npt.NDArray[np.int64]

    async def probabilities(self, rows: FloatArray) -> FloatArray:
        out = await self.backend.predict(np.asarray(rows, dtype=np.float32))
        return np.asarray(out, dtype=np.float64)

    def score(self, clone: Any) -> tuple[float, float]:
        predicted = clone.predict(self.test_rows)
        return accuracy(predicted, self.test_labels), fidelity(predicted, self.victim_labels)


async def load_reference(policy: Policy, model: str) -> Reference:
    """The policy's model, unprotected, and the digits held-out split."""
    from modelshield.models.demo import digits_split

    spec = policy.models[model]
    _, rows, _, labels = digits_split()
    if spec.input.features != rows.shape[1]:
        raise ConfigError(
            f"model {model!r} takes {spec.input.features} features; the evaluation data is "
            f"the digits held-out split ({rows.shape[1]} features)"
        )
    backend = build_backend(model, spec, Path(policy.server.state_dir))
    await backend.load()
    probs = np.asarray(await backend.predict(rows.astype(np.float32)), dtype=np.float64)
    classes = probs.shape[1]
    column_labels = np.asarray(spec.class_labels or range(classes), dtype=np.int64)
    space = InputSpace(
        features=spec.input.features,
        low=float(spec.input.min if spec.input.min is not None else rows.min()),
        high=float(spec.input.max if spec.input.max is not None else rows.max()),
        classes=classes,
    )
    return Reference(
        backend=backend,
        space=space,
        test_rows=rows,
        test_labels=np.asarray(labels, dtype=np.int64),
        victim_labels=column_labels[probs.argmax(axis=1)],
    )


class DetectionWatch:
    """What the monitor said about the attacker's accounts, and when."""

    def __init__(self, site: Site, targets: list[OipTarget]) -> None:
        self.site = site
        self.targets = targets
        self.accounts: list[str] = []
        self.started = 0.0
        self.first: Alert | None = None
        self.first_queries: int | None = None
        self.first_seconds: float | None = None
        self.alert_ids: set[str] = set()
        self.actions: dict[str, ActionSeen] = {}
        self.strongest: Alert | None = None

    @property
    def queries(self) -> int:
        return sum(t.queries for t in self.targets)

    async def check(self) -> None:
        await self.site.observe()
        now = self.site.now() - self.started
        for account in self.accounts:
            for alert in await self.site.alerts(account):
                if alert.alert_id in self.alert_ids:
                    continue
                self.alert_ids.add(alert.alert_id)
                if self.first is None:
                    self.first, self.first_queries, self.first_seconds = alert, self.queries, now
                if self.strongest is None or alert.risk > self.strongest.risk:
                    self.strongest = alert
            for action in await self.site.actions(account):
                if action.action_id not in self.actions:
                    self.actions[action.action_id] = ActionSeen(
                        action.kind, self.queries, round(now, 3)
                    )

    def detection(self) -> Detection:
        if self.first is None:
            return Detection()
        return Detection(
            flagged=True,
            queries=self.first_queries,
            seconds=None if self.first_seconds is None else round(self.first_seconds, 3),
            detector=self.first.detector,
            severity=(self.strongest or self.first).severity,
            risk=(self.strongest or self.first).risk,
            alerts=len(self.alert_ids),
            actions=sorted(self.actions.values(), key=lambda a: (a.queries, a.seconds)),
        )


@dataclass(slots=True)
class _BenignAccountState:
    account: BenignAccount
    account_id: str | None = None
    target: OipTarget | None = None
    suspended: bool = False
    rows: list[FloatArray] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)


class BenignDriver:
    """Replays a :class:`BenignPlan` against a site as simulated time passes."""

    def __init__(self, site: Site, plan: BenignPlan, *, plan_name: str | None, horizon: float):
        self.site = site
        self.plan_name = plan_name
        self.horizon = horizon
        self.states = {a.index: _BenignAccountState(a) for a in plan.accounts}
        self._heap: list[tuple[float, int, BenignRequest]] = [
            (r.time, i, r) for i, r in enumerate(plan.requests)
        ]
        heapq.heapify(self._heap)
        self._seq = len(self._heap)
        self.requests = 0
        self.refused_429 = 0
        self.refused_403 = 0
        self.errors = 0
        self._busy = False

    async def start(self) -> None:
        """Provision the existing customers (newcomers sign up when they first ask)."""
        for state in self.states.values():
            if state.account.joins_at <= 0:
                await self._join(state, signup=False)

    async def _join(self, state: _BenignAccountState, *, signup: bool) -> None:
        account = state.account

        async def wait(seconds: float) -> None:
            await self.site.wait_until(self.site.now() + seconds)

        state.account_id, state.target = await self.site.new_account(
            f"customer-{account.index}",
            plan=self.plan_name,
            address=account.address,
            user_agent=account.user_agent,
            email=account.email,
            signup=signup,
            sleep=wait,
            max_wait=0.0,  # a 429 comes back to the driver, which retries later
        )

    async def advance_to(self, t: float) -> None:
        """Send every benign request due up to ``t``, then move the clock to ``t``."""
        if self._busy:  # a wait inside a benign request (a sign-up's Retry-After)
            await self.site.wait_until(t)
            return
        self._busy = True
        try:
            while self._heap and self._heap[0][0] <= t:
                when, _, request = heapq.heappop(self._heap)
                await self.site.wait_until(when)
                await self._send(request)
            await self.site.wait_until(t)
        finally:
            self._busy = False

    async def finish(self) -> None:
        await self.advance_to(max(self.horizon, self.site.now()))

    async def _send(self, request: BenignRequest) -> None:
        state = self.states[request.account]
        if state.suspended:
            self.refused_403 += 1
            return
        if state.target is None:
            await self._join(state, signup=True)
        assert state.target is not None
        self.requests += 1
        try:
            answer = await state.target.query(request.rows)
        except TargetRefused as refused:
            partial = refused.partial
            if partial is not None:
                state.rows.append(request.rows[: len(partial.labels)])
                state.answers.append(partial)
            if refused.status == 429:
                self.refused_429 += 1
                rest = request.rows[0 if partial is None else len(partial.labels) :]
                retry = self.site.now() + max(refused.retry_after or 1.0, 0.001)
                heapq.heappush(
                    self._heap,
                    (retry, self._seq, BenignRequest(retry, request.account, rest, request.labels)),
                )
                self._seq += 1
            elif refused.status == 403:
                self.refused_403 += 1
                state.suspended = True
            else:
                self.errors += 1
            return
        state.rows.append(request.rows)
        state.answers.append(answer)

    async def outcome(self, attack: str, reference: Reference) -> BenignOutcome:
        flagged: list[str] = []
        flagged_accounts: list[int] = []
        acted_accounts: list[int] = []
        severities: dict[str, str] = {}
        actioned: dict[str, int] = {}
        rows: list[FloatArray] = []
        answers: list[Answer] = []
        for state in self.states.values():
            rows += state.rows
            answers += state.answers
            if state.account_id is None:
                continue
            alerts = await self.site.alerts(state.account_id)
            if alerts:
                flagged.append(state.account.behaviour)
                flagged_accounts.append(state.account.index)
                ranks = [SEVERITIES.index(a.severity) for a in alerts]
                severities[str(state.account.index)] = SEVERITIES[max(ranks)]
            kinds = [a.kind for a in await self.site.actions(state.account_id)]
            strongest = [k for k in _ACTION_ORDER if k in kinds]
            if strongest:
                actioned[strongest[-1]] = actioned.get(strongest[-1], 0) + 1
                acted_accounts.append(state.account.index)
        agreement, l1, answered = await benign_utility(rows, answers, reference)
        return BenignOutcome(
            attack=attack,
            accounts=sum(1 for s in self.states.values() if s.account_id is not None),
            requests=self.requests,
            rows_answered=answered,
            refused_429=self.refused_429,
            refused_403=self.refused_403,
            flagged=len(flagged),
            actioned=actioned,
            top1_agreement=agreement,
            mean_l1=l1,
            flagged_behaviours=sorted(flagged),
            flagged_accounts=sorted(flagged_accounts),
            acted_accounts=sorted(acted_accounts),
            severities=severities,
        )


async def benign_utility(
    rows: list[FloatArray], answers: list[Answer], reference: Reference
) -> tuple[float, float, int]:
    """Top-1 agreement and mean L1 change of what benign accounts received."""
    answered = [(r, a) for r, a in zip(rows, answers, strict=True) if len(a.labels)]
    if not answered:
        return 0.0, 0.0, 0
    x = np.concatenate([r for r, _ in answered])
    p = await reference.probabilities(x)
    classes = p.shape[1]
    agree: list[npt.NDArray[np.bool_]] = []
    l1: list[FloatArray] = []
    offset = 0
    for r, a in answered:
        truth = p[offset : offset + len(r)]
        offset += len(r)
        agree.append(a.labels == truth.argmax(axis=1))
        shaped = None
        if a.probabilities is not None:
            shaped = Minimized(values=a.probabilities, columns=a.classes)
        q = as_distribution(shaped, a.labels.astype(np.intp), classes)
        l1.append(np.abs(q - truth).sum(axis=1))
    return (
        float(np.concatenate(agree).mean()),
        float(np.concatenate(l1).mean()),
        int(x.shape[0]),
    )


class Evaluation:
    """Runs a :class:`Scenario`; :func:`run_scenario` is the one-call form.

    ``site_factory`` builds the protected site of each run (default: in-process on the
    scenario's policy); pass one returning a :class:`~modelshield.evaluation.site.RemoteSite`
    to evaluate a deployed gateway.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        site_factory: SiteFactory | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.scenario = scenario
        self.site_factory = site_factory
        self.progress = progress or (lambda label: None)
        self.remote = site_factory is not None

    @property
    def total_runs(self) -> int:
        s = self.scenario
        return len(s.variants()) * len(s.attacks) + (len(s.attacks) if s.baseline else 0)

    async def run(self) -> EvaluationResults:
        s = self.scenario
        started = time.perf_counter()
        if self.remote and s.sweep:
            raise ConfigError("a sweep changes the policy: run it in-process (without --target)")
        base_policy = s.build_policy()
        model = s.model or next(iter(base_policy.models))
        if model not in base_policy.models:
            raise ConfigError(f"scenario {s.name!r}: no model named {model!r}")
        for spec in s.attacks:  # fail on a bad attack before running anything
            self._attack(spec, InputSpace())
        reference = await load_reference(s.unprotected_policy(), model)
        results = EvaluationResults(
            scenario=s.name,
            seed=s.seed,
            site="",
            model=model,
            test_rows=len(reference.test_rows),
        )
        try:
            baselines: dict[str, AttackRun] = {}
            if s.baseline:
                unprotected = s.unprotected_policy()
                for spec in s.attacks:
                    bare: Site = InProcessSite(unprotected, seed=s.seed, model=model)
                    baselines[spec.name] = await self._run(bare, spec, reference, None)
                    self.progress(f"{spec.name} (unprotected)")
            for variant in s.variants():
                policy = s.build_policy(variant)
                out = VariantResult(variant=variant)
                for spec in s.attacks:
                    site = self._site(policy, model)
                    results.site = site.description
                    benign = BenignPopulation(
                        accounts=s.benign.accounts,
                        horizon_s=s.benign.horizon_s,
                        mix=s.benign.mix,
                        rows_per_account=s.benign.rows_per_account,
                        max_batch=self._batch(policy),
                        seed=s.seed,
                    ).schedule(reference.test_rows, reference.test_labels)
                    run = await self._run(site, spec, reference, benign, out)
                    out.runs.append(run)
                    if spec.name in baselines:
                        out.runs.append(baselines[spec.name])
                    self.progress(f"{spec.name} (protected)")
                results.variants.append(out)
        finally:
            await reference.backend.close()
        results.elapsed_s = round(time.perf_counter() - started, 2)
        return results

    def _site(self, policy: Policy, model: str) -> Site:
        if self.site_factory is not None:
            return self.site_factory(policy)
        return InProcessSite(policy, seed=self.scenario.seed, model=model)

    def _batch(self, policy: Policy) -> int:
        plan = policy.plans[self.scenario.plan or policy.default_plan_name]
        return min(policy.server.max_batch_rows, plan.max_batch_rows or 1 << 30)

    def _attack(self, spec: AttackSpec, space: InputSpace) -> Attack:
        params: dict[str, Any] = {"seed": self.scenario.seed if spec.seed is None else spec.seed}
        if spec.queries is not None:
            params["queries"] = spec.queries
        attack: Attack = build_attack(spec.kind, space=space, **params, **spec.params)
        return attack

    async def _run(
        self,
        site: Site,
        spec: AttackSpec,
        reference: Reference,
        benign: BenignPlan | None,
        variant: VariantResult | None = None,
    ) -> AttackRun:
        s = self.scenario
        attack = self._attack(spec, reference.space)
        await site.start()
        try:
            driver = BenignDriver(
                site,
                benign or BenignPlan(accounts=[]),
                plan_name=s.plan,
                horizon=s.benign.horizon_s if benign is not None else 0.0,
            )
            await driver.start()
            targets: list[OipTarget] = []
            watch = DetectionWatch(site, targets)
            protected = benign is not None

            async def wait(seconds: float) -> None:
                await driver.advance_to(site.now() + seconds)

            async def after_batch(rows: int) -> None:
                await driver.advance_to(site.now() + s.pace_s)
                if protected:
                    await watch.check()

            spread = spec.addresses == "distinct"
            for i in range(spec.accounts):
                account_id, target = await site.new_account(
                    f"{spec.name}-{i}",
                    plan=s.plan,
                    address=attacker_address(spec.addresses, i),
                    # a careful Sybil varies what a sign-up form and a request reveal
                    user_agent=f"agent/{i}" if spread else "python-httpx/0.28",
                    email=f"user{i}@" + (f"mail{i}.example" if spread else "attacker.example"),
                    signup=spec.accounts > 1,
                    sleep=wait,
                    after_batch=after_batch,
                )
                watch.accounts.append(account_id)
                targets.append(target)
            watch.started = site.now()
            query_target: QueryTarget = targets[0] if len(targets) == 1 else SybilTarget(targets)
            result = await attack.run(query_target)
            await driver.finish()
            if protected:
                await site.settle()
                await watch.check()
                assert variant is not None
                variant.benign.append(await driver.outcome(spec.name, reference))
        finally:
            await site.close()
        return self._score(
            spec, attack, result, reference, watch.detection() if protected else None
        )

    def _score(
        self,
        spec: AttackSpec,
        attack: Attack,
        result: AttackResult,
        reference: Reference,
        detection: Detection | None,
    ) -> AttackRun:
        curve: list[CurvePoint] = []
        received = 0 if result.rows is None else len(result.rows)
        if result.rows is not None and result.answer is not None:
            for n in sorted({c for c in self.scenario.checkpoints if c < received}):
                clone = attack.train(result.rows[:n], result.answer.head(n))
                acc, fid = reference.score(clone)
                curve.append(CurvePoint(n, round(acc, 4), round(fid, 4)))
        acc, fid = reference.score(result.clone)
        if received:
            curve.append(CurvePoint(received, round(acc, 4), round(fid, 4)))
        return AttackRun(
            attack=spec.name,
            kind=spec.kind,
            accounts=spec.accounts,
            protected=detection is not None,
            queries=result.queries,
            throttled=result.throttled,
            waited_s=round(result.waited_s, 3),
            accuracy=round(acc, 4),
            fidelity=round(fid, 4),
            stopped=result.stopped,
            curve=curve,
            detection=detection,
        )


async def run_scenario(
    scenario: Scenario,
    *,
    site_factory: SiteFactory | None = None,
    progress: Progress | None = None,
) -> EvaluationResults:
    """Run ``scenario`` and return what it measured (the notebook entry point).

    Example (in a notebook)::

        from modelshield.evaluation import load_scenario, run_scenario
        results = await run_scenario(load_scenario("quick"))
    """
    return await Evaluation(scenario, site_factory=site_factory, progress=progress).run()
