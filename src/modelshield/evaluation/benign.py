"""A population of legitimate accounts: the false-positive side of every detector.

Each simulated account follows one *behaviour* and asks about natural rows of the
victim's own distribution (the held-out split of the model's data), with a class mix
skewed by a Dirichlet(0.5) draw (a shop that mostly sees some digits), some rows
re-sent unchanged (retries, 0-30 %), over a time horizon:

- ``steady``: small batches (1-16 rows) at exponential gaps all through the horizon;
- ``bursty``: a handful of bursts, each dozens of back-to-back requests;
- ``nightly``: one large batch job per night (500-2,000 rows in the largest batches
  the plan admits), sent as fast as the gateway lets it;
- ``trickle``: one row at a time, minutes apart;
- ``newcomer``: signs up part-way through the horizon, then behaves ``steady``.

:meth:`BenignPopulation.schedule` turns the population into a time-ordered list of
:class:`BenignRequest`; the evaluation harness replays it while the attacks run, so
detectors see attackers and legitimate users side by side, as in production.

Example:
    >>> rng = np.random.default_rng(0)
    >>> rows, labels = rng.uniform(0, 16, (100, 64)), rng.integers(0, 10, 100)
    >>> plan = BenignPopulation(accounts=5, horizon_s=3600, seed=1).schedule(rows, labels)
    >>> len(plan.accounts), all(a.time <= b.time for a, b in zip(plan.requests, plan.requests[1:]))
    (5, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from modelshield.evaluation.targets import FloatArray

BEHAVIOURS = ("steady", "bursty", "nightly", "trickle", "newcomer")
DEFAULT_MIX: dict[str, float] = {
    "steady": 0.4,
    "bursty": 0.15,
    "nightly": 0.1,
    "trickle": 0.2,
    "newcomer": 0.15,
}


@dataclass(frozen=True, slots=True)
class BenignAccount:
    """One simulated customer: its behaviour, when it signs up, where it comes from."""

    index: int
    behaviour: str
    joins_at: float
    address: str
    user_agent: str
    email: str


@dataclass(frozen=True, slots=True)
class BenignRequest:
    """``rows`` sent by account ``account`` at ``time`` (seconds into the run)."""

    time: float
    account: int
    rows: FloatArray
    labels: npt.NDArray[np.int64]


@dataclass(slots=True)
class BenignPlan:
    accounts: list[BenignAccount]
    requests: list[BenignRequest] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(len(r.rows) for r in self.requests)


_AGENTS = (
    "python-requests/2.32",
    "okhttp/4.12",
    "Go-http-client/2.0",
    "curl/8.5",
    "axios/1.7",
    "Java-http-client/21",
)
_DOMAINS = ("acme.example", "globex.example", "initech.example", "umbrella.example")


class BenignPopulation:
    """``accounts`` legitimate customers over ``horizon_s`` seconds.

    Args:
        accounts: how many.
        horizon_s: the simulated time they are active (a nightly job runs at about
            02:00 of each simulated day that the horizon covers, or at its middle if it
            covers less than a day).
        mix: behaviour name → weight (default :data:`DEFAULT_MIX`).
        rows_per_account: mean rows of a ``steady`` account over the horizon.
        max_batch: the largest batch a client sends (the plan's limit).
        seed: everything is drawn from it.
    """

    def __init__(
        self,
        accounts: int = 20,
        horizon_s: float = 7200.0,
        *,
        mix: dict[str, float] | None = None,
        rows_per_account: int = 200,
        max_batch: int = 64,
        seed: int = 0,
    ) -> None:
        self.accounts = accounts
        self.horizon_s = horizon_s
        self.mix = dict(mix) if mix is not None else dict(DEFAULT_MIX)
        self.rows_per_account = rows_per_account
        self.max_batch = max_batch
        self.seed = seed

    def schedule(self, rows: FloatArray, labels: npt.ArrayLike) -> BenignPlan:
        """Every account's requests over the horizon, in time order."""
        unknown = sorted(set(self.mix) - set(BEHAVIOURS))
        if unknown:
            raise ValueError(f"unknown benign behaviour {unknown[0]!r}; known: {BEHAVIOURS}")
        weights = np.asarray([self.mix.get(b, 0.0) for b in BEHAVIOURS], dtype=np.float64)
        if weights.sum() <= 0 or (weights < 0).any():
            raise ValueError("benign mix: weights must be >= 0 and not all 0")
        rng = np.random.default_rng(self.seed)
        y = np.asarray(labels, dtype=np.int64)
        classes = np.unique(y)
        by_class = {int(c): np.flatnonzero(y == c) for c in classes}
        # spread the behaviours by their weights, then shuffle who gets which
        counts = np.floor(weights / weights.sum() * self.accounts).astype(int)
        for i in np.argsort(-weights)[: self.accounts - counts.sum()]:
            counts[i] += 1
        behaviours = [b for b, n in zip(BEHAVIOURS, counts, strict=True) for _ in range(n)]
        rng.shuffle(behaviours)
        plan = BenignPlan(accounts=[])
        for index, behaviour in enumerate(behaviours):
            joins = rng.uniform(0.2, 0.7) * self.horizon_s if behaviour == "newcomer" else 0.0
            plan.accounts.append(
                BenignAccount(
                    index=index,
                    behaviour=behaviour,
                    joins_at=float(joins),
                    # customers come from everywhere: one /16 each
                    address=f"{10 + index // 250}.{index % 250}."
                    f"{int(rng.integers(0, 250))}.{int(rng.integers(2, 250))}",
                    user_agent=str(_AGENTS[int(rng.integers(len(_AGENTS)))]),
                    email=f"ml-team-{index}@{_DOMAINS[int(rng.integers(len(_DOMAINS)))]}",
                )
            )
            mix = rng.dirichlet(np.full(len(classes), 0.5))
            repeat = rng.uniform(0.0, 0.3)
            for time, size in self._times(behaviour, joins, rng):
                picks = _draw(rng, by_class, classes, mix, size, repeat)
                plan.requests.append(BenignRequest(time, index, rows[picks], y[picks]))
        plan.requests.sort(key=lambda r: (r.time, r.account))
        return plan

    def _times(
        self, behaviour: str, joins: float, rng: np.random.Generator
    ) -> list[tuple[float, int]]:
        horizon, mean_rows = self.horizon_s, self.rows_per_account
        out: list[tuple[float, int]] = []
        if behaviour in ("steady", "newcomer"):
            active = horizon - joins
            total = max(8, int(rng.poisson(mean_rows * active / horizon)))
            t, sent = joins, 0
            mean_batch = 6.0
            gap = active / max(1.0, total / mean_batch)
            while sent < total:
                t += float(rng.exponential(gap))
                if t >= horizon:
                    break
                size = min(self.max_batch, total - sent, int(rng.integers(1, 17)))
                out.append((t, size))
                sent += size
        elif behaviour == "bursty":
            for _ in range(int(rng.integers(2, 6))):
                t = float(rng.uniform(0.0, horizon * 0.95))
                for _ in range(int(rng.integers(10, 40))):
                    t += float(rng.uniform(0.05, 0.5))
                    out.append((t, int(rng.integers(1, 9))))
        elif behaviour == "nightly":
            day = 86_400.0
            starts = [d * day + 2 * 3600.0 for d in range(int(horizon // day) + 1)]
            starts = [s for s in starts if s < horizon] or [horizon / 2]
            for start in starts:
                job = int(rng.integers(500, 2001))
                t = start + float(rng.uniform(0, 600))
                while job > 0:
                    size = min(self.max_batch, job)
                    out.append((t, size))
                    job -= size
                    t += 0.02
        else:  # trickle
            t = float(rng.uniform(0, 300))
            while t < horizon:
                out.append((t, 1))
                t += float(rng.uniform(60, 600))
        return out


def _draw(
    rng: np.random.Generator,
    by_class: dict[int, npt.NDArray[np.intp]],
    classes: npt.NDArray[np.int64],
    mix: FloatArray,
    size: int,
    repeat: float,
) -> npt.NDArray[np.intp]:
    chosen = rng.choice(classes, size=size, p=mix)
    picks = np.asarray([rng.choice(by_class[int(c)]) for c in chosen], dtype=np.intp)
    # a retry sends the row before it again, unchanged
    again = np.flatnonzero(rng.random(size) < repeat)
    again = again[again > 0]
    picks[again] = picks[again - 1]
    return picks
