"""Sybil: one attack split over accounts made through self-service sign-up; each
account stays under per-account limits, and the clone is the one account's clone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from attack_helpers import attack_secrets, held_out, open_policy, victim
from modelshield.clock import FakeClock
from modelshield.evaluation.attacks.knockoff import Knockoff
from modelshield.evaluation.attacks.sybil import Sybil
from modelshield.evaluation.metrics import fidelity
from modelshield.evaluation.site import InProcessSite
from modelshield.evaluation.targets import OipTarget, gateway_target
from modelshield.policy.schema import Policy

ADDRESS = "203.0.113.7"


@pytest.fixture
async def site(tmp_path: Path, demo_cache: Path) -> AsyncIterator[InProcessSite]:
    # unprotected but for a per-account daily budget of 300 rows, sign-up enabled
    # (at most 5 sign-ups per address per hour)
    policy = open_policy(tmp_path, demo_cache, signup=True, budgets={"day": 300})
    site = InProcessSite(policy, seed=0)
    await site.start()
    try:
        yield site
    finally:
        await site.close()


async def _accounts(
    site: InProcessSite, n: int, *, signup: bool = True, max_wait: float = 86_400.0
) -> tuple[list[str], list[OipTarget]]:
    async def wait(seconds: float) -> None:
        await site.wait_until(site.now() + seconds)

    ids, targets = [], []
    for i in range(n):
        account_id, target = await site.new_account(
            f"sybil-{i}",
            plan=None,
            address=ADDRESS,
            user_agent="python-httpx/0.28",
            email=f"user{i}@attacker.example",
            signup=signup,
            sleep=wait,
            max_wait=max_wait,
        )
        ids.append(account_id)
        targets.append(target)
    return ids, targets


async def _one_account_clone(policy: Policy) -> np.ndarray:
    rows, _ = held_out()
    async with gateway_target(policy, secrets=attack_secrets(), clock=FakeClock(1e9)) as targets:
        result = await Knockoff(queries=1000, seed=0).run(targets[0])
    assert result.queries == 1000
    return result.clone.predict(rows)


async def test_six_signed_up_accounts_share_1000_queries_under_a_300_row_budget(
    site: InProcessSite, tmp_path: Path, demo_cache: Path
) -> None:
    ids, targets = await _accounts(site, 6)
    # five sign-ups per hour from one address: the sixth waited out the 429 (12 minutes)
    assert site.now() == pytest.approx(720.0, abs=1.0)
    for account_id in ids:
        account = await site.gateway.store.get_account(account_id)
        assert account is not None and account.status == "active"
        # made through POST /v1/signup: the address and the accepted terms are recorded
        assert account.signup_address == ADDRESS and account.tos_version == "1"
    assert len(set(ids)) == 6

    result = await Sybil(Knockoff(queries=1000, seed=0)).run(targets)
    assert result.queries == 1000 and result.stopped is None and result.dropped == {}
    assert result.throttled == 0
    assert sum(result.per_account) == 1000 and min(result.per_account) > 0
    # round-robin per request of 50 rows: the split is even to one request
    assert max(result.per_account) - min(result.per_account) <= 50
    assert max(result.per_account) <= 300
    # the gateway saw the same split
    await site.settle()
    for account_id, rows in zip(ids, result.per_account, strict=True):
        events = await site.gateway.store.recent_events(account_id, 1000)
        assert sum(e.rows for e in events if e.outcome == "answered") == rows

    # the split costs the attacker nothing: the clone is the unlimited one account's
    rows_, _ = held_out()
    sybil_clone = result.clone.predict(rows_)
    unlimited = await _one_account_clone(open_policy(tmp_path / "one", demo_cache))
    np.testing.assert_array_equal(sybil_clone, unlimited)
    assert fidelity(sybil_clone, victim(demo_cache).predict(rows_)) >= 0.98  # measured 0.991


async def test_one_account_is_stopped_by_the_budget_the_sybil_split_evades(
    site: InProcessSite,
) -> None:
    _, targets = await _accounts(site, 1, signup=False, max_wait=60.0)
    result = await Sybil(Knockoff(queries=1000, seed=0)).run(targets)
    assert result.queries == 300 and result.per_account == [300]
    assert result.stopped is not None and "429" in result.stopped


async def test_without_self_service_sign_up_the_operator_creates_the_accounts(
    tmp_path: Path, demo_cache: Path
) -> None:
    site = InProcessSite(open_policy(tmp_path, demo_cache), seed=0)
    await site.start()
    try:
        ids, targets = await _accounts(site, 3)
        assert site.now() == 0.0
        for account_id in ids:
            account = await site.gateway.store.get_account(account_id)
            assert account is not None and account.tos_version is None
        result = await Sybil(Knockoff(queries=150, seed=0)).run(targets)
        assert result.per_account == [50, 50, 50]
    finally:
        await site.close()
