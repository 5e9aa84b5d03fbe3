"""The counter keys the limits gate builds are a storage format: they must not drift.

Counters already in a store (SQLite file, Redis) are found again only if a new version
builds the same keys for the same plan, subject and window.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from modelshield.controls.limits import LimitsGate, Subject
from modelshield.controls.query import Query
from modelshield.identity.records import Account
from modelshield.policy import DEMO_POLICY
from modelshield.policy.schema import Policy
from modelshield.storage.limiter import US, QuotaCheck, RateCheck
from modelshield.storage.memory import MemoryStore

PLAN = {
    "max_batch_rows": 4,
    "rate_limits": [
        {"name": "burst", "scope": "account", "rate": 2, "per": "1s", "burst": 100},
        {"name": "per-key", "scope": "key", "rate": 4, "per": "1s"},
        {"name": "per-address", "scope": "client", "rate": 4, "per": "2s", "burst": 200},
        {"name": "model-wide", "scope": "model", "rate": 500, "per": "1s", "burst": 5000},
    ],
    "budgets": {"day": 1000, "month": 20000},
}
NOW = dt.datetime(2026, 12, 4, 6, 0, tzinfo=dt.UTC).timestamp()


def gate_and_plan() -> tuple[LimitsGate, Policy]:
    document = {**DEMO_POLICY, "plans": {"p": PLAN}, "storage": {"uri": "memory://"}}
    document.pop("default_plan", None)
    policy = Policy.model_validate(document)
    return LimitsGate(policy, MemoryStore()), policy


def test_rate_and_budget_check_keys_are_stable() -> None:
    gate, policy = gate_and_plan()
    plan = policy.plans["p"]
    subject = Subject("a1", "k1", "10.0.0.1", "digits")
    for _ in range(2):  # built from the per-plan cache the second time
        checks = gate.rate_checks(plan, subject, 3) + gate.budget_checks(plan, "a1", NOW, 3)
        assert checks == [
            RateCheck("rate:acct:a1:burst", "burst", 3, 500_000, 100),
            RateCheck("rate:key:k1:per-key", "per-key", 3, 250_000, 4),
            RateCheck("rate:ip:10.0.0.1:per-address", "per-address", 3, 500_000, 200),
            RateCheck("rate:model:digits:model-wide", "model-wide", 3, 2_000, 5000),
            QuotaCheck(
                "budget:a1:day:2026-12-04",
                "day",
                3,
                1000,
                int(dt.datetime(2026, 12, 5, tzinfo=dt.UTC).timestamp() * US),
                "grant:a1:day:2026-12-04",
            ),
            QuotaCheck(
                "budget:a1:month:2026-12",
                "month",
                3,
                20000,
                int(dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp() * US),
                "grant:a1:month:2026-12",
            ),
        ]


def test_a_throttled_account_uses_separate_slower_buckets_for_account_and_key_limits() -> None:
    gate, policy = gate_and_plan()
    checks = gate.rate_checks(policy.plans["p"], Subject("a1", "k1", None, "digits"), 1, 0.5)
    assert checks == [
        RateCheck("rate:acct:a1:burst:throttled-0.5", "burst", 1, 1_000_000, 50),
        RateCheck("rate:key:k1:per-key:throttled-0.5", "per-key", 1, 500_000, 2),
        RateCheck("rate:ip:unknown:per-address", "per-address", 1, 500_000, 200),
        RateCheck("rate:model:digits:model-wide", "model-wide", 1, 2_000, 5000),
    ]


def test_a_query_gets_the_checks_of_its_own_budget_window_whichever_came_before() -> None:
    gate, policy = gate_and_plan()
    plan = policy.plans["p"]
    account = Account("a1", "acme", "p", 0.0)

    def day_key(when: float, throttle: float | None = None) -> tuple[str, str]:
        query = Query(
            account=account
            if throttle is None
            else Account("a1", "acme", "p", 0.0, throttle=throttle),
            key_id="k1",
            plan=plan,
            model="digits",
            spec=policy.models["digits"],
            rows=np.zeros((1, 64)),
            time=when,
        )
        checks = gate.checks(query, 1)
        return checks[0].key, next(c.key for c in checks if c.name == "day")

    hour = 3600.0
    assert day_key(NOW) == ("rate:acct:a1:burst", "budget:a1:day:2026-12-04")
    assert day_key(NOW + 20 * hour)[1] == "budget:a1:day:2026-12-05"  # the next day
    assert day_key(NOW)[1] == "budget:a1:day:2026-12-04"  # a clock set back
    assert day_key(NOW + 20 * hour)[1] == "budget:a1:day:2026-12-05"
    assert day_key(NOW, throttle=0.5)[0] == "rate:acct:a1:burst:throttled-0.5"
