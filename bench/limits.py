"""Limiter decisions per second and decision latency, per store backend, next to `limits`.

A decision is one ``check_and_charge`` with the checks the gateway builds for a plan with
two rate limits (per account and per API key) and day + month budgets with grant (bonus)
keys: 4 checks over 6 keys, one row each. Backends are opened with
``modelshield.storage.registry.open_store(uri)``: memory, SQLite (``synchronous=full``,
the default, and ``normal``) and Redis. On the same Redis, in the same run, the `limits`
library's async moving-window and sliding-window-counter limiters make one ``hit()`` per
decision with a single limit (with its default coredis client and with redis-py), and
modelshield Redis with a single RateCheck gives the apples-to-apples row.

Each case runs with one client (sequential: latency alone) and with ``--concurrency``
coroutines in this one process (throughput; latency then includes waiting behind the
other in-flight calls), on the event loop `modelshield serve` gets (uvloop when
installed). A memory decision never suspends (its critical section has no await), so
with the memory store one coroutine runs until the deadline and the others find it
passed: both memory rows measure the same thing, what one request's decision costs the
event loop (the gateway pays the same for it whatever its concurrency). The harness
itself costs about 0.4 µs per decision (measured with a call that returns at once).

Decisions/s and latency are wall-clock and so depend on what share of a core the
machine leaves this process; the "CPU µs per decision" column (this process's user +
system time over the measured window, divided by the decisions) does not, and is the
figure to compare across runs on a shared machine. For Redis it excludes the server's
own CPU (on a one-machine setup both share the cores).

The Redis cases of modelshield and `limits` are interleaved so that the compared rows
run close in time; ``--rounds N`` repeats everything and reports medians (use it on a
busy machine). Accounts are drawn from ``--accounts`` distinct ones so no key is hot;
limits and budgets are sized so nearly all decisions are admitted (the admitted share is
reported). The check lists are built before timing, as the gateway builds them before it
calls the store (building them, and the response headers from the decision, is the
gate's own cost, a few µs per request, not counted here).

Usage::

    .venv/bin/python bench/limits.py [--duration 3] [--concurrency 32] [--rounds 1]

Redis: ``redis://127.0.0.1:6379/15`` with a random ``prefix=bench-<random>:``;
``MODELSHIELD_BENCH_REDIS_URL`` (or ``--redis-url``) overrides it. Every key the run
wrote is deleted at the end. Results also go to ``bench/results/limits.json``. The exit
code is 0 whether or not the targets are met (≥ 100k decisions/s in memory, ≥ 10k/s on
Redis, modelshield within 1.5x of `limits` moving-window throughput on Redis); Redis rows
are skipped with a note when no Redis answers.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import os
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import orjson

from modelshield.controls.limits import LimitsGate, Subject
from modelshield.errors import StoreUnavailable
from modelshield.policy import DEMO_POLICY
from modelshield.policy.schema import Plan, Policy
from modelshield.storage.base import Store
from modelshield.storage.limiter import Check, Decision, RateCheck
from modelshield.storage.registry import open_store

BENCH_DIR = Path(__file__).resolve().parent
# This file shares its name with the `limits` library it measures: keep its directory off
# the import path, or `import limits` would import this script again.
from machine import machine_info as common_machine_info  # noqa: E402 (before the path change)

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH_DIR]
DEFAULT_OUTPUT = BENCH_DIR / "results" / "limits.json"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
REDIS_ENV = "MODELSHIELD_BENCH_REDIS_URL"
MODEL = "digits"

TARGET_MEMORY_PER_S = 100_000.0
TARGET_REDIS_PER_S = 10_000.0
TARGET_LIMITS_RATIO = 1.5
"""limits' moving-window throughput / modelshield's (full checks) may be at most this."""

# The benchmark plan: the shape of a demo plan (2 rate limits + day and month budgets),
# sized so that ~35 decisions per account and run are all admitted.
BENCH_PLAN: dict[str, Any] = {
    "rate_limits": [
        {"name": "burst", "scope": "account", "rate": 50, "per": "1s", "burst": 2_000},
        {"name": "per-key", "scope": "key", "rate": 100, "per": "1s", "burst": 4_000},
    ],
    "budgets": {"day": 1_000_000, "month": 10_000_000},
}
# `limits` gets the account limit of the plan: 2000 rows per 40 s
LIMITS_AMOUNT, LIMITS_SECONDS = 2_000, 40

Call = Callable[[int], Awaitable[Any]]


@dataclass(frozen=True)
class Settings:
    duration: float
    warmup: float
    concurrency: int
    rounds: int
    accounts: int
    rows: int
    redis_url: str
    redis_prefix_generated: bool
    skip_redis: bool
    skip_sqlite: bool
    skip_limits: bool
    loop: str
    output: Path


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per case")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds per case")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent coroutines")
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs per case; the table shows their median"
    )
    parser.add_argument("--accounts", type=int, default=10_000, help="distinct accounts")
    parser.add_argument("--rows", type=int, default=1, help="rows (cost) per decision")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get(REDIS_ENV) or DEFAULT_REDIS_URL,
        help=f"Redis for the Redis rows (default: ${REDIS_ENV} or {DEFAULT_REDIS_URL}); "
        "a random prefix=bench-<hex>: is added unless the URL has a prefix",
    )
    parser.add_argument("--skip-redis", action="store_true", help="memory and SQLite only")
    parser.add_argument("--skip-sqlite", action="store_true", help="no SQLite rows")
    parser.add_argument("--skip-limits", action="store_true", help="no `limits` library rows")
    parser.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="event loop (auto: uvloop when installed, as `modelshield serve` gets from uvicorn)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be > 0 and --warmup >= 0")
    if not 1 <= args.concurrency <= 1024:
        parser.error("--concurrency must be between 1 and 1024")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be between 1 and 20")
    if not 1 <= args.accounts <= 1_000_000:
        parser.error("--accounts must be between 1 and 1000000")
    if not 1 <= args.rows <= 64:
        parser.error("--rows must be between 1 and 64 (the plan's batch limit)")
    url, generated = with_prefix(args.redis_url)
    return Settings(
        duration=args.duration,
        warmup=args.warmup,
        concurrency=args.concurrency,
        rounds=args.rounds,
        accounts=args.accounts,
        rows=args.rows,
        redis_url=url,
        redis_prefix_generated=generated,
        skip_redis=args.skip_redis,
        skip_sqlite=args.skip_sqlite,
        skip_limits=args.skip_limits,
        loop=resolve_loop(args.loop, parser),
        output=args.output,
    )


def resolve_loop(choice: str, parser: argparse.ArgumentParser) -> str:
    if choice == "asyncio":
        return choice
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if choice == "uvloop":
            parser.error("--loop uvloop: uvloop is not installed")
        return "asyncio"
    return "uvloop"


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def with_prefix(url: str) -> tuple[str, bool]:
    """``url`` with a random ``prefix=bench-<hex>:`` unless it names one; (url, added)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if "prefix" in query:
        return url, False
    query["prefix"] = [f"bench-{secrets.token_hex(4)}:"]
    return urlunsplit(parts._replace(query=urlencode(query, doseq=True, safe=":"))), True


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urlunsplit(parts._replace(netloc=netloc))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- workload ---------------------------------------------------------------------------


def bench_policy() -> Policy:
    document = {**DEMO_POLICY, "plans": {"bench": {"max_batch_rows": 64, **BENCH_PLAN}}}
    document.pop("default_plan", None)
    document["storage"] = {"uri": "memory://"}
    return Policy.model_validate(document)


@dataclass
class Workload:
    """Prebuilt checks per account (the gateway builds them per request; not timed here)."""

    full: list[list[Check]]
    single: list[list[Check]]
    account_ids: list[str]
    keys: set[str] = field(default_factory=set)

    @property
    def checks_per_decision(self) -> int:
        return len(self.full[0])


def build_workload(accounts: int, rows: int, tag: str) -> Workload:
    policy = bench_policy()
    plan: Plan = policy.plans["bench"]
    gate = LimitsGate(policy, open_store("memory://"))
    now = time.time()
    full: list[list[Check]] = []
    single: list[list[Check]] = []
    ids: list[str] = []
    keys: set[str] = set()
    for n in range(accounts):
        account_id = f"acct-{tag}-{n:06d}"
        subject = Subject(
            account_id, f"key-{tag}-{n:06d}", f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", MODEL
        )
        checks = [
            *gate.rate_checks(plan, subject, rows),
            *gate.budget_checks(plan, account_id, now, rows),
        ]
        first = checks[0]
        assert isinstance(first, RateCheck)
        one: list[Check] = [
            RateCheck(first.key + ":single", first.name, rows, first.interval, first.burst)
        ]
        full.append(checks)
        single.append(one)
        ids.append(account_id)
        for check in [*checks, *one]:
            keys.add(check.key)
            bonus = getattr(check, "bonus_key", None)
            if bonus:
                keys.add(bonus)
    return Workload(full, single, ids, keys)


# --- measuring --------------------------------------------------------------------------


@dataclass
class Case:
    backend: str
    uri: str
    checks_per_decision: int
    clients: int
    round: int = 1
    rounds: int = 1
    decisions: int = 0
    admitted: int = 0
    errors: int = 0
    error_sample: str | None = None
    elapsed_s: float = 0.0
    decisions_per_s: float = 0.0
    p50_us: float = float("nan")
    p99_us: float = float("nan")
    mean_us: float = float("nan")
    max_us: float = float("nan")
    cpu_us: float = float("nan")
    """This process's CPU time (user + system) per decision: what the decisions cost the
    gateway process, whatever share of a core a busy machine left it (the Redis server's
    own CPU is not included)."""

    @property
    def admitted_share(self) -> float:
        return self.admitted / self.decisions if self.decisions else float("nan")


def summarize(runs: list[Case]) -> list[Case]:
    """One row per (backend, clients), grouped by backend: medians over the rounds."""
    groups: dict[tuple[str, int], list[Case]] = {}
    backends: dict[str, int] = {}
    for run in runs:
        groups.setdefault((run.backend, run.clients), []).append(run)
        backends.setdefault(run.backend, len(backends))
    rows = []
    for _, group in sorted(groups.items(), key=lambda kv: (backends[kv[0][0]], kv[0][1])):
        first = group[0]
        errors = [c.error_sample for c in group if c.error_sample]
        rows.append(
            Case(
                first.backend,
                first.uri,
                first.checks_per_decision,
                first.clients,
                round=0,
                rounds=len(group),
                decisions=sum(c.decisions for c in group),
                admitted=sum(c.admitted for c in group),
                errors=sum(c.errors for c in group),
                error_sample=errors[0] if errors else None,
                elapsed_s=sum(c.elapsed_s for c in group),
                decisions_per_s=statistics.median(c.decisions_per_s for c in group),
                p50_us=statistics.median(c.p50_us for c in group),
                p99_us=statistics.median(c.p99_us for c in group),
                mean_us=statistics.median(c.mean_us for c in group),
                max_us=max(c.max_us for c in group),
                cpu_us=statistics.median(c.cpu_us for c in group),
            )
        )
    return rows


def percentile(ordered: list[int], q: float) -> float:
    """Nearest-rank percentile of sorted nanoseconds, in microseconds."""
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank] / 1000.0


async def drive(
    call: Call, allowed: Callable[[Any], bool], clients: int, seconds: float, order: Iterator[int]
) -> tuple[list[int], int, int, str | None, float]:
    """``clients`` coroutines calling ``call`` until ``seconds`` have passed.

    Returns (latencies ns, admitted, errors, an error sample, elapsed s).
    """
    latencies: list[list[int]] = [[] for _ in range(clients)]
    admitted = [0] * clients
    errors = [0] * clients
    sample: list[str] = []
    clock = time.perf_counter_ns
    start = clock()
    deadline = start + int(seconds * 1e9)

    async def worker(n: int) -> None:
        mine = latencies[n]
        ok = 0
        t1 = clock()
        while t1 < deadline:
            account = next(order)
            t0 = clock()
            try:
                result = await call(account)
            except Exception as exc:  # a failing backend is reported, not fatal
                errors[n] += 1
                if not sample:
                    sample.append(f"{type(exc).__name__}: {exc}")
                t1 = clock()
                continue
            t1 = clock()
            mine.append(t1 - t0)
            if allowed(result):
                ok += 1
        admitted[n] = ok

    await asyncio.gather(*(worker(n) for n in range(clients)))
    elapsed = (clock() - start) / 1e9
    flat = [v for part in latencies for v in part]
    return flat, sum(admitted), sum(errors), sample[0] if sample else None, elapsed


async def run_case(
    case: Case, call: Call, allowed: Callable[[Any], bool], settings: Settings, accounts: int
) -> Case:
    shuffled = list(range(accounts))
    random.Random(f"{case.backend}/{case.clients}").shuffle(shuffled)
    order = itertools.cycle(shuffled)
    if settings.warmup:
        await drive(call, allowed, case.clients, settings.warmup, order)
    cpu_start = time.process_time()
    latencies, admitted, errors, sample, elapsed = await drive(
        call, allowed, case.clients, settings.duration, order
    )
    cpu = time.process_time() - cpu_start
    latencies.sort()
    case.decisions = len(latencies)
    case.admitted = admitted
    case.errors = errors
    case.error_sample = sample
    case.elapsed_s = elapsed
    case.decisions_per_s = len(latencies) / elapsed if elapsed else 0.0
    case.p50_us = percentile(latencies, 0.50)
    case.p99_us = percentile(latencies, 0.99)
    case.mean_us = sum(latencies) / len(latencies) / 1000.0 if latencies else float("nan")
    case.max_us = latencies[-1] / 1000.0 if latencies else float("nan")
    case.cpu_us = cpu / len(latencies) * 1e6 if latencies else float("nan")
    share = f"{case.admitted_share:.1%}" if case.decisions else "-"
    log(
        f"  {case.backend} x{case.clients} (round {case.round}): {case.decisions_per_s:,.0f}/s, "
        f"p50 {case.p50_us:.1f} µs, p99 {case.p99_us:.1f} µs, CPU {case.cpu_us:.1f} µs, "
        f"admitted {share}" + (f", {errors} errors ({sample})" if errors else "")
    )
    return case


def client_counts(settings: Settings) -> list[int]:
    return sorted({1, settings.concurrency})


def decision_allowed(result: Any) -> bool:
    decision: Decision = result
    return decision.allowed


def hit_allowed(result: Any) -> bool:
    return result is True


@dataclass(frozen=True)
class Target:
    """One thing to measure: a decision function over account indexes."""

    backend: str
    uri: str
    checks_per_decision: int
    call: Call
    allowed: Callable[[Any], bool]
    accounts: int


def store_targets(
    store: Store, label: str, shown_uri: str, plans: list[tuple[str, list[list[Check]]]]
) -> list[Target]:
    """One target per (label suffix, checks per account) plan on ``store``."""
    targets = []
    for suffix, per_account in plans:

        def call(n: int, per_account: list[list[Check]] = per_account) -> Awaitable[Decision]:
            return store.check_and_charge(per_account[n], time.time_ns() // 1000)

        targets.append(
            Target(
                label + suffix,
                shown_uri,
                len(per_account[0]),
                call,
                decision_allowed,
                len(per_account),
            )
        )
    return targets


async def run_targets(targets: list[Target], settings: Settings, cases: list[Case]) -> None:
    """Every target with 1 and N clients, interleaved (targets compared run close in time)."""
    for round_no in range(1, settings.rounds + 1):
        for clients in client_counts(settings):
            for t in targets:
                case = Case(t.backend, t.uri, t.checks_per_decision, clients, round_no)
                cases.append(await run_case(case, t.call, t.allowed, settings, t.accounts))


async def bench_uri(
    label: str,
    uri: str,
    shown_uri: str,
    plans: list[tuple[str, list[list[Check]]]],
    settings: Settings,
    cases: list[Case],
) -> None:
    store = open_store(uri)
    await store.open()
    try:
        await run_targets(store_targets(store, label, shown_uri, plans), settings, cases)
    finally:
        await store.close()


def limits_targets(
    redis_url: str, key_prefix: str, ids: list[str]
) -> tuple[list[Target], list[str]]:
    """The `limits` targets on the same Redis, and notes (e.g. a missing client library)."""
    from limits.aio.strategies import (
        MovingWindowRateLimiter,
        RateLimiter,
        SlidingWindowCounterRateLimiter,
    )
    from limits.limits import RateLimitItemPerSecond
    from limits.storage import storage_from_string

    parts = urlsplit(redis_url)
    uri = "async+" + urlunsplit(parts._replace(query=""))
    item = RateLimitItemPerSecond(LIMITS_AMOUNT, LIMITS_SECONDS)
    notes: list[str] = []
    targets: list[Target] = []
    strategies: list[tuple[str, type[RateLimiter]]] = [
        ("moving-window", MovingWindowRateLimiter),
        ("sliding-window-counter", SlidingWindowCounterRateLimiter),
    ]
    for implementation in ("coredis", "redispy"):
        try:
            storage = storage_from_string(uri, implementation=implementation, key_prefix=key_prefix)
        except Exception as exc:  # e.g. the client library is not installed
            notes.append(f"limits with {implementation}: skipped ({type(exc).__name__}: {exc})")
            continue
        for strategy_name, strategy in strategies:
            limiter = strategy(storage)

            def call(n: int, limiter: RateLimiter = limiter) -> Awaitable[bool]:
                return limiter.hit(item, ids[n])

            label = f"limits {strategy_name} ({implementation})"
            targets.append(Target(label, redacted(uri), 1, call, hit_allowed, len(ids)))
    return targets, notes


async def redis_reachable(url: str) -> str | None:
    """None when Redis answers at ``url``; the reason otherwise."""
    store = open_store(url)
    try:
        await store.open()
    except StoreUnavailable as exc:
        return str(exc)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await store.close()
    return None


async def clean_redis(
    store: Store, prefix: str, keys: set[str], generated: bool, limits_prefix: str, url: str
) -> int:
    """Delete what the run wrote; returns how many bench keys remain (should be 0)."""
    ordered = sorted(keys)
    for i in range(0, len(ordered), 1000):
        await store.reset_counters(ordered[i : i + 1000])
    from redis import asyncio as aioredis

    client = aioredis.Redis.from_url(urlunsplit(urlsplit(url)._replace(query="")))
    try:
        patterns = [limits_prefix + ":*"] + ([prefix + "*"] if generated else [])
        for pattern in patterns:
            batch: list[Any] = []
            async for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await client.delete(*batch)
                    batch = []
            if batch:
                await client.delete(*batch)
        remaining = 0
        for pattern in patterns:
            async for _ in client.scan_iter(match=pattern, count=1000):
                remaining += 1
        return remaining
    finally:
        await client.aclose()


async def redis_info(url: str) -> dict[str, Any]:
    from redis import asyncio as aioredis

    client = aioredis.Redis.from_url(urlunsplit(urlsplit(url)._replace(query="")))
    try:
        info = await client.info("server")
        return {"redis_version": info.get("redis_version"), "redis_mode": info.get("redis_mode")}
    finally:
        await client.aclose()


async def measure(settings: Settings) -> tuple[list[Case], list[str], dict[str, Any]]:
    cases: list[Case] = []
    notes: list[str] = []
    extra: dict[str, Any] = {}
    tag = secrets.token_hex(3)
    log(f"building checks for {settings.accounts} accounts ...")
    work = build_workload(settings.accounts, settings.rows, tag)
    full = [("", work.full)]
    sample = work.full[0]
    extra["checks_per_decision"] = work.checks_per_decision
    extra["sample_checks"] = [{"kind": type(c).__name__, **asdict(c)} for c in sample]

    log("memory ...")
    await bench_uri("memory", "memory://", "memory://", full, settings, cases)

    with tempfile.TemporaryDirectory(prefix="modelshield-bench-limits-") as tmp:
        sqlite_cases = [("sqlite", ""), ("sqlite synchronous=normal", "?synchronous=normal")]
        if settings.skip_sqlite:
            notes.append("SQLite rows skipped (--skip-sqlite)")
            sqlite_cases = []
        for label, query in sqlite_cases:
            path = Path(tmp) / f"bench-{len(cases)}.db"
            uri = f"sqlite:///{path}{query}"
            log(f"{label} ({uri}) ...")
            shown = f"sqlite:///<tmp>/bench.db{query}"
            await bench_uri(label, uri, shown, full, settings, cases)

    if settings.skip_redis:
        notes.append("Redis rows skipped (--skip-redis)")
        return cases, notes, extra
    problem = await redis_reachable(settings.redis_url)
    if problem is not None:
        notes.append(f"Redis rows skipped: {redacted(settings.redis_url)} unreachable ({problem})")
        return cases, notes, extra
    extra.update(await redis_info(settings.redis_url))
    prefix = parse_qs(urlsplit(settings.redis_url).query)["prefix"][0]
    limits_prefix = f"bench-limits-{tag}"
    store = open_store(settings.redis_url)
    await store.open()
    try:
        plans = [("", work.full), (" (1 RateCheck)", work.single)]
        targets = store_targets(store, "redis", redacted(settings.redis_url), plans)
        if settings.skip_limits:
            notes.append("`limits` rows skipped (--skip-limits)")
        else:
            theirs, more = limits_targets(settings.redis_url, limits_prefix, work.account_ids)
            targets += theirs
            notes += more
        log("redis: modelshield and `limits` on the same Redis, interleaved ...")
        await run_targets(targets, settings, cases)
    finally:
        remaining = await clean_redis(
            store,
            prefix,
            work.keys,
            settings.redis_prefix_generated,
            limits_prefix,
            settings.redis_url,
        )
        await store.close()
        extra["redis_keys_left_after_cleanup"] = remaining
        if remaining:
            notes.append(f"WARNING: {remaining} bench keys remained in Redis after cleanup")
    return cases, notes, extra


# --- reporting --------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def find(cases: list[Case], backend: str, clients: int) -> Case | None:
    return next((c for c in cases if c.backend == backend and c.clients == clients), None)


def compare(cases: list[Case], settings: Settings) -> dict[str, Any]:
    n = settings.concurrency
    memory = find(cases, "memory", n)
    redis = find(cases, "redis", n)
    redis_one = find(cases, "redis (1 RateCheck)", n)
    moving = find(cases, "limits moving-window (coredis)", n)
    moving_redispy = find(cases, "limits moving-window (redispy)", n)

    def ratio(theirs: Case | None, ours: Case | None) -> float | None:
        if theirs is None or ours is None or not ours.decisions_per_s:
            return None
        return theirs.decisions_per_s / ours.decisions_per_s

    result: dict[str, Any] = {
        "clients": n,
        "target_memory_per_s": TARGET_MEMORY_PER_S,
        "target_redis_per_s": TARGET_REDIS_PER_S,
        "target_limits_ratio": TARGET_LIMITS_RATIO,
        "memory_per_s": memory.decisions_per_s if memory else None,
        "memory_cpu_us": memory.cpu_us if memory else None,
        "redis_per_s": redis.decisions_per_s if redis else None,
        "redis_cpu_us": redis.cpu_us if redis else None,
        "limits_moving_window_per_s": moving.decisions_per_s if moving else None,
        "limits_ratio": ratio(moving, redis),
        "limits_ratio_single_check": ratio(moving, redis_one),
        "limits_redispy_ratio": ratio(moving_redispy, redis),
    }
    result["memory_pass"] = memory is not None and memory.decisions_per_s >= TARGET_MEMORY_PER_S
    result["redis_pass"] = redis is not None and redis.decisions_per_s >= TARGET_REDIS_PER_S
    result["limits_pass"] = (
        result["limits_ratio"] is not None and result["limits_ratio"] <= TARGET_LIMITS_RATIO
    )
    return result


def render(cases: list[Case], comparison: dict[str, Any], notes: list[str], s: Settings) -> str:
    lines = [
        f"Limiter decisions — {s.duration:g} s per case after {s.warmup:g} s warmup"
        + (f", median of {s.rounds} rounds" if s.rounds > 1 else "")
        + ", "
        f"{s.accounts} accounts, {s.rows} row(s) per decision, {s.loop} loop, "
        f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}",
        "",
        "| backend | clients | checks per decision | decisions/s | p50 µs | p99 µs "
        "| CPU µs per decision | admitted |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cases:
        admitted = f"{c.admitted_share:.1%}" if c.decisions else "-"
        lines.append(
            f"| {c.backend} | {c.clients} | {c.checks_per_decision} | {c.decisions_per_s:,.0f} "
            f"| {c.p50_us:.1f} | {c.p99_us:.1f} | {c.cpu_us:.1f} | {admitted} |"
        )
    n = comparison["clients"]
    lines.append("")
    memory = comparison["memory_per_s"]
    lines.append(
        f"memory: {memory or 0:,.0f} decisions/s with {n} clients "
        f"(target: ≥ {TARGET_MEMORY_PER_S:,.0f}/s) {verdict(comparison['memory_pass'])}"
    )
    cpu = comparison["memory_cpu_us"]
    if cpu:
        lines.append(
            f"  memory CPU: {cpu:.2f} µs per decision = {1e6 / cpu:,.0f} decisions per "
            "CPU-second (what one whole core would do)"
        )
    redis = comparison["redis_per_s"]
    if redis is None:
        lines.append("redis: not measured (see notes) FAIL")
    else:
        lines.append(
            f"redis: {redis:,.0f} decisions/s with {n} clients from one process "
            f"(target: ≥ {TARGET_REDIS_PER_S:,.0f}/s) {verdict(comparison['redis_pass'])}"
        )
    ratio = comparison["limits_ratio"]
    if ratio is None:
        lines.append("vs limits moving-window: not measured (see notes) FAIL")
    else:
        lines.append(
            f"vs limits moving-window (coredis): limits does {ratio:.2f}x modelshield's "
            f"decisions/s, modelshield charging {cases_checks(cases)} checks atomically "
            f"(target: ≤ {TARGET_LIMITS_RATIO:g}x) {verdict(comparison['limits_pass'])}"
        )
        single = comparison["limits_ratio_single_check"]
        redispy = comparison["limits_redispy_ratio"]
        if single is not None:
            lines.append(f"  same with 1 RateCheck (apples to apples): {single:.2f}x")
        if redispy is not None:
            lines.append(
                f"  limits moving-window on redis-py (modelshield's client): {redispy:.2f}x"
            )
    for c in cases:
        if c.errors:
            lines.append(f"ERRORS in {c.backend} x{c.clients}: {c.errors} ({c.error_sample})")
    lines += [f"note: {note}" for note in notes]
    return "\n".join(lines)


def cases_checks(cases: list[Case]) -> int:
    found = find_any(cases, "redis")
    return found.checks_per_decision if found else 0


def find_any(cases: list[Case], backend: str) -> Case | None:
    return next((c for c in cases if c.backend == backend), None)


def package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def python_speed_ns() -> float:
    """A fixed pure-Python loop, ns per iteration (best of 5): compare machines with it."""
    table: dict[int, int] = {}
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter_ns()
        for i in range(100_000):
            table[i & 1023] = max(i, 3)
        best = min(best, (time.perf_counter_ns() - start) / 100_000)
    return best


def machine_info() -> dict[str, Any]:
    import sysconfig

    return common_machine_info(
        python_optimized_build="--enable-optimizations"
        in str(sysconfig.get_config_var("CONFIG_ARGS") or ""),
        python_loop_ns=python_speed_ns(),
        sqlite=sqlite3.sqlite_version,
        tmp_dir=tempfile.gettempdir(),
        redis_py=package_version("redis"),
        limits=package_version("limits"),
        coredis=package_version("coredis"),
        hiredis=package_version("hiredis"),
        uvloop=package_version("uvloop"),
    )


def write_results(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    option = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    path.write_bytes(orjson.dumps(document, option=option, default=str) + b"\n")


# --- main -------------------------------------------------------------------------------


def run(settings: Settings, argv: Sequence[str]) -> int:
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    with asyncio.Runner(loop_factory=loop_factory(settings.loop)) as runner:
        runs, notes, extra = runner.run(measure(settings))
    extra["load_average_before"] = load_before
    extra["load_average_after"] = os.getloadavg()
    cases = summarize(runs)
    comparison = compare(cases, settings)
    print(render(cases, comparison, notes, settings), flush=True)
    rows = [{**asdict(c), "admitted_share": c.admitted_share} for c in cases]  # NaN -> null
    write_results(
        settings.output,
        {
            "benchmark": "limits",
            "started_at": started.isoformat(),
            "parameters": {
                "argv": list(argv),
                "duration_s": settings.duration,
                "warmup_s": settings.warmup,
                "concurrency": settings.concurrency,
                "rounds": settings.rounds,
                "accounts": settings.accounts,
                "rows_per_decision": settings.rows,
                "redis_url": redacted(settings.redis_url),
                "event_loop": settings.loop,
                "plan": BENCH_PLAN,
                "limits_item": f"{LIMITS_AMOUNT} per {LIMITS_SECONDS} seconds",
                **extra,
            },
            "machine": machine_info(),
            "cases": rows,
            "runs": [asdict(c) for c in runs],
            "comparison": comparison,
            "notes": notes,
        },
    )
    log(f"results written to {settings.output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    return run(parse_args(arguments), arguments)


if __name__ == "__main__":
    sys.exit(main())
