"""The benign population: behaviours, timing, class mix and repeats, reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from modelshield.evaluation.benign import BenignPopulation


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(10), 30)
    return rng.uniform(0, 16, (300, 64)), labels


def test_same_seed_same_schedule_and_a_new_seed_changes_it() -> None:
    rows, labels = _data()
    a = BenignPopulation(accounts=12, horizon_s=7200, seed=3).schedule(rows, labels)
    b = BenignPopulation(accounts=12, horizon_s=7200, seed=3).schedule(rows, labels)
    c = BenignPopulation(accounts=12, horizon_s=7200, seed=4).schedule(rows, labels)
    assert [(r.time, r.account, r.rows.tobytes()) for r in a.requests] == [
        (r.time, r.account, r.rows.tobytes()) for r in b.requests
    ]
    assert [r.time for r in a.requests] != [r.time for r in c.requests]


def test_every_behaviour_does_what_it_says() -> None:
    rows, labels = _data()
    mix = {"steady": 1, "bursty": 1, "nightly": 1, "trickle": 1, "newcomer": 1}
    plan = BenignPopulation(accounts=10, horizon_s=86_400, mix=mix, max_batch=64, seed=0).schedule(
        rows, labels
    )
    by = {a.index: a for a in plan.accounts}
    assert sorted(a.behaviour for a in plan.accounts) == sorted(list(mix) * 2)
    times = np.array([r.time for r in plan.requests])
    assert (np.diff(times) >= 0).all() and times.max() < 86_400 + 700
    for account in plan.accounts:
        mine = [r for r in plan.requests if r.account == account.index]
        sizes = [len(r.rows) for r in mine]
        if account.behaviour == "trickle":
            assert set(sizes) == {1} and np.diff([r.time for r in mine]).min() >= 60
        if account.behaviour == "nightly":
            # one job, in the largest batches, starting at about 02:00
            assert max(sizes) == 64 and 500 <= sum(sizes) <= 2000
            assert 7200 <= mine[0].time <= 7200 + 600
        if account.behaviour == "newcomer":
            assert account.joins_at > 0 and mine[0].time >= account.joins_at
        else:
            assert account.joins_at == 0
        if account.behaviour == "bursty":
            gaps = np.diff([r.time for r in mine])
            assert (gaps < 1).sum() >= 10  # back-to-back requests
    # each customer comes from its own network
    assert len({a.address.rsplit(".", 2)[0] for a in by.values()}) == len(by)


def test_rows_come_from_the_data_with_skewed_classes_and_retries() -> None:
    rows, labels = _data()
    plan = BenignPopulation(
        accounts=6, horizon_s=7200, mix={"steady": 1}, rows_per_account=300, seed=1
    ).schedule(rows, labels)
    known = {r.tobytes() for r in rows}
    sent = [row for r in plan.requests for row in r.rows]
    assert all(row.tobytes() in known for row in sent)
    for account in plan.accounts:
        got = np.concatenate([r.labels for r in plan.requests if r.account == account.index])
        shares = np.bincount(got, minlength=10) / len(got)
        assert shares.max() > 0.2  # Dirichlet(0.5): a few classes dominate
    # some rows are sent twice in a row (retries)
    repeats = sum(
        int((r.rows[1:] == r.rows[:-1]).all(axis=1).sum()) for r in plan.requests if len(r.rows) > 1
    )
    assert repeats > 0


def test_bad_mixes_are_refused() -> None:
    rows, labels = _data()
    with pytest.raises(ValueError, match="unknown benign behaviour 'crawler'"):
        BenignPopulation(accounts=2, mix={"crawler": 1}).schedule(rows, labels)
    with pytest.raises(ValueError, match="not all 0"):
        BenignPopulation(accounts=2, mix={"steady": 0}).schedule(rows, labels)
