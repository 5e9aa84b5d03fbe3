"""Closed-loop HTTP load generator: N concurrent keep-alive tasks posting one fixed body.

Runs as its own process (one asyncio loop, uvloop when available) so the servers it
measures never share an interpreter with it. Each task owns one keep-alive connection:
it sends, waits for the answer and sends again.

Two clients: ``raw`` (default) writes pre-encoded HTTP/1.1 requests on asyncio streams
and reads ``Content-Length`` or chunked answers — cheap enough that the servers, not the
client, set the pace on a small machine; ``httpx`` uses ``httpx.AsyncClient``, whose
connection pool costs far more CPU per request and degrades at higher concurrency (on a
2-core machine: 455 req/s at 4 tasks, 178 req/s at 16 against the bare app).

Requests that *start* during the warmup are discarded; requests that start in the
measured window are timed with ``perf_counter`` one by one. Every answer that is
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
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
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


class Send(Protocol):
    """One request on the task's connection: (status, response body)."""

    async def __call__(self) -> tuple[int, bytes]: ...


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 this client understands."""


# everything a failed exchange can raise; each is counted as an error, never fatal
TRANSPORT_ERRORS = (
    OSError,  # refused, reset, broken pipe
    TimeoutError,
    EOFError,  # asyncio.IncompleteReadError: the server closed mid-answer
    asyncio.LimitOverrunError,
    ProtocolError,
    ValueError,
    httpx.HTTPError,
)


class RawConnection:
    """One keep-alive HTTP/1.1 connection sending the same pre-encoded request."""

    def __init__(self, host: str, port: int, request: bytes) -> None:
        self.host = host
        self.port = port
        self.request = request
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __call__(self) -> tuple[int, bytes]:
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        try:
            writer.write(self.request)
            head = await reader.readuntil(b"\r\n\r\n")
            status, headers = _parse_head(head)
            if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                body = await _read_chunked(reader)
            else:
                body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
        except BaseException:
            self.close()  # the connection's state is unknown: never reuse it
            raise
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, body

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def _parse_head(head: bytes) -> tuple[int, dict[bytes, bytes]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {lines[0][:80]!r}")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            await _skip_trailers(reader)
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _skip_trailers(reader: asyncio.StreamReader) -> None:
    while (await reader.readuntil(b"\r\n")) != b"\r\n":
        pass


def raw_request(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The complete HTTP/1.1 POST for ``url``, encoded once."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {target} HTTP/1.1", f"host: {parts.netloc}", "user-agent: modelshield-bench"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"content-length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


async def _worker(send: Send, window: Window, tally: Tally, timeout_s: float) -> None:
    while (start := time.perf_counter()) < window.stop_at:
        measured = start >= window.measure_from
        try:
            async with asyncio.timeout(timeout_s):
                status, body = await send()
        except TRANSPORT_ERRORS as exc:
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
        if status == 200:
            tally.latencies.append(end - start)
        else:
            tally.error(f"http:{status}", body.decode("utf-8", errors="replace"))


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


class HttpxSend:
    """One request through a shared ``httpx.AsyncClient``."""

    def __init__(
        self, client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
    ) -> None:
        self.client = client
        self.url = url
        self.body = body
        self.headers = headers

    async def __call__(self) -> tuple[int, bytes]:
        response = await self.client.post(self.url, content=self.body, headers=self.headers)
        return response.status_code, response.content


async def run_load(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    client: str,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    timeout_s: float,
) -> dict[str, Any]:
    """Drive ``url`` for ``warmup_s + duration_s`` seconds and summarize the measured part."""
    async with AsyncExitStack() as stack:
        if client == "raw":
            parts = urlsplit(url)
            request = raw_request(url, body, headers)
            host, port = parts.hostname or "127.0.0.1", parts.port or 80
            connections = [RawConnection(host, port, request) for _ in range(concurrency)]
            for connection in connections:
                stack.callback(connection.close)
            senders: list[Send] = list(connections)
        else:
            limits = httpx.Limits(
                max_connections=concurrency, max_keepalive_connections=concurrency
            )
            # trust_env=False: never route loopback traffic through a proxy from the env
            shared = await stack.enter_async_context(
                httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout_s), trust_env=False)
            )
            senders = [HttpxSend(shared, url, body, headers) for _ in range(concurrency)]
        start = time.perf_counter()
        window = Window(start + warmup_s, start + warmup_s + duration_s)
        tally = Tally()
        await asyncio.gather(*(_worker(send, window, tally, timeout_s) for send in senders))
    return summarize(tally, window) | {"client": client}


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
    parser.add_argument(
        "--headers-file",
        type=Path,
        help="JSON object of extra headers (keeps secrets such as API keys off the command line)",
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    args = parser.parse_args(argv)
    host = urlsplit(args.url).hostname
    if host not in LOOPBACK:
        parser.error(f"refusing to load {host!r}: loopback addresses only")
    headers = {"content-type": "application/json", **dict(args.header)}
    if args.headers_file is not None:
        headers.update(orjson.loads(args.headers_file.read_bytes()))
    result = _run(
        run_load(
            args.url,
            args.body_file.read_bytes(),
            headers,
            client=args.client,
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
