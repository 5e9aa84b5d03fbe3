"""Closed-loop HTTP load generator: N concurrent keep-alive tasks posting one fixed body.

Runs as its own process (one asyncio loop, uvloop when available) so the servers it
measures never share an interpreter with it. Each task sends, waits for the answer and
sends again. Requests that *start* during the warmup are discarded; requests that start
in the measured window are timed with ``perf_counter`` one by one. Every answer that is
not a 200 (and every transport failure) is counted as an error, by kind, with a sample.

Prints one JSON object on stdout::

    python bench/loadgen.py --url http://127.0.0.1:8000/v2/models/digits/infer \\
        --body-file body.json --header 'Authorization: Bearer msk_...' --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SAMPLE_CHARS = 300
# after a transport failure (server gone), back off briefly instead of spinning the CPU
FAILURE_BACKOFF_S = 0.01


@dataclass
class Tally:
    """What the measured window saw."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    samples: dict[str, str] = field(default_factory=dict)
    last_end: float = 0.0

    def error(self, kind: str, sample: str) -> None:
        self.errors[kind] += 1
        self.samples.setdefault(kind, sample[:SAMPLE_CHARS])


@dataclass(frozen=True)
class Window:
    measure_from: float
    stop_at: float


async def _worker(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    window: Window,
    tally: Tally,
) -> None:
    while (start := time.perf_counter()) < window.stop_at:
        measured = start >= window.measure_from
        try:
            response = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            end = time.perf_counter()
            if measured:
                tally.error(f"exception:{type(exc).__name__}", str(exc) or repr(exc))
                tally.last_end = max(tally.last_end, end)
            await asyncio.sleep(FAILURE_BACKOFF_S)
            continue
        end = time.perf_counter()
        if not measured:
            continue
        tally.last_end = max(tally.last_end, end)
        if response.status_code == 200:
            tally.latencies.append(end - start)
        else:
            tally.error(f"http:{response.status_code}", response.text)


def summarize(tally: Tally, window: Window) -> dict[str, Any]:
    """Throughput and latency percentiles (ms) of the successful measured requests."""
    ok = len(tally.latencies)
    errors = sum(tally.errors.values())
    elapsed = max(tally.last_end, window.stop_at) - window.measure_from
    if ok >= 2:
        cuts = statistics.quantiles(tally.latencies, n=100, method="inclusive")
        p50, p99 = cuts[49] * 1000.0, cuts[98] * 1000.0
    elif ok == 1:
        p50 = p99 = tally.latencies[0] * 1000.0
    else:
        p50 = p99 = float("nan")
    return {
        "requests": ok + errors,
        "ok": ok,
        "errors": errors,
        "error_kinds": dict(tally.errors),
        "error_samples": tally.samples,
        "elapsed_s": round(elapsed, 4),
        "requests_per_s": ok / elapsed if elapsed > 0 else 0.0,
        "p50_ms": p50,
        "p99_ms": p99,
        "mean_ms": statistics.fmean(tally.latencies) * 1000.0 if ok else float("nan"),
        "max_ms": max(tally.latencies) * 1000.0 if ok else float("nan"),
    }


async def run_load(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    timeout_s: float,
) -> dict[str, Any]:
    """Drive ``url`` for ``warmup_s + duration_s`` seconds and summarize the measured part."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    # trust_env=False: never route loopback traffic through a proxy from the environment
    async with httpx.AsyncClient(
        limits=limits, timeout=httpx.Timeout(timeout_s), trust_env=False
    ) as client:
        start = time.perf_counter()
        window = Window(start + warmup_s, start + warmup_s + duration_s)
        tally = Tally()
        await asyncio.gather(
            *(_worker(client, url, body, headers, window, tally) for _ in range(concurrency))
        )
    return summarize(tally, window)


def _run(main: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: dict[str, Any] = uvloop.run(main)
    return result


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", required=True, type=Path)
    parser.add_argument("--header", action="append", default=[], type=_header)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    host = urlsplit(args.url).hostname
    if host not in LOOPBACK:
        parser.error(f"refusing to load {host!r}: loopback addresses only")
    headers = {"content-type": "application/json", **dict(args.header)}
    result = _run(
        run_load(
            args.url,
            args.body_file.read_bytes(),
            headers,
            concurrency=args.concurrency,
            warmup_s=args.warmup,
            duration_s=args.duration,
            timeout_s=args.timeout,
        )
    )
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
