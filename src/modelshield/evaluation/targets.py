"""What an attacker queries: a model behind the Open Inference Protocol V2.

A :class:`QueryTarget` answers rows with an :class:`Answer` — what the caller actually
learns: always a label per row and, when the plan reveals them, probabilities (all
classes, or the top-k with the classes they belong to). Two implementations share one
client (:class:`OipTarget`):

- :func:`gateway_target`: a modelshield gateway built in-process from a policy, reached
  through ``httpx.ASGITransport`` (the fast path for tests and local evaluation);
- :func:`http_target`: any deployed modelshield, or an unprotected OIP server, at a
  base URL with an API key.

Both behave as a patient attacker would: a 429 is answered by waiting ``Retry-After``
seconds (through an injected ``sleep``, so tests never really sleep) and asking again.
Any other refusal (401, 403 suspended, 5xx) ends the attack with :class:`TargetRefused`.

Example:
    >>> answer = Answer(labels=np.array([3]), probabilities=np.array([[0.9, 0.1]]),
    ...                 classes=np.array([[3, 5]]))
    >>> answer.dense(10).round(2)[0, [3, 5, 0]].tolist()
    [0.9, 0.1, nan]
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import numpy as np
import numpy.typing as npt

from modelshield.clock import Clock
from modelshield.identity.secret import Secrets
from modelshield.policy.schema import Policy
from modelshield.storage.base import Store

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Sleep = Callable[[float], Awaitable[None]]
AfterBatch = Callable[[int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Answer:
    """What the caller learned about ``N`` rows.

    ``probabilities`` is ``[N, k]``: all classes in class order when ``classes`` is
    ``None``, else the revealed columns, whose class labels are in ``classes``
    (``-1`` marks padding).
    """

    labels: IntArray
    probabilities: FloatArray | None = None
    classes: IntArray | None = None

    @property
    def full(self) -> bool:
        """Every class's probability was revealed."""
        return self.probabilities is not None and self.classes is None

    def dense(self, n_classes: int) -> FloatArray:
        """``[N, n_classes]`` probabilities, ``nan`` where not revealed."""
        n = self.labels.shape[0]
        out = np.full((n, n_classes), np.nan)
        if self.probabilities is None:
            return out
        if self.classes is None:
            out[:, : self.probabilities.shape[1]] = self.probabilities
            return out
        rows, cols = np.nonzero((self.classes >= 0) & (self.classes < n_classes))
        out[rows, self.classes[rows, cols]] = self.probabilities[rows, cols]
        return out

    def head(self, n: int) -> Answer:
        """The answers to the first ``n`` rows."""
        return Answer(
            labels=self.labels[:n],
            probabilities=None if self.probabilities is None else self.probabilities[:n],
            classes=None if self.classes is None else self.classes[:n],
        )


class TargetRefused(Exception):
    """The target refused a query for a reason waiting does not fix."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        """For a 429 not waited out: the ``Retry-After`` the target asked for."""
        self.partial: Answer | None = None
        """The answers to the leading rows of the refused call, if any came back."""


class QueryTarget(Protocol):
    """A black-box model an attack queries.

    ``queries`` counts rows answered, ``throttled`` the 429s met, ``waited`` the
    seconds spent waiting them out.
    """

    queries: int
    throttled: int
    waited: float

    async def query(self, rows: FloatArray) -> Answer: ...


async def _asyncio_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def retry_after_seconds(value: str | None, default: float = 1.0) -> float:
    """``Retry-After`` as seconds (delta-seconds form; anything else: ``default``)."""
    try:
        seconds = float(value) if value is not None else default
    except ValueError:
        return default
    return seconds if math.isfinite(seconds) and seconds >= 0 else default


def decode_answer(body: dict[str, Any], rows: int) -> Answer:
    """The :class:`Answer` in an OIP V2 response body."""
    outputs = {o.get("name"): o for o in body.get("outputs", []) if isinstance(o, dict)}
    probabilities = classes = None
    if "probabilities" in outputs:
        probabilities = np.asarray(outputs["probabilities"]["data"], dtype=np.float64)
        probabilities = probabilities.reshape(rows, -1)
    if "classes" in outputs:
        classes = np.asarray(outputs["classes"]["data"], dtype=np.int64).reshape(rows, -1)
    if "label" in outputs:
        labels = np.asarray(outputs["label"]["data"], dtype=np.int64).reshape(rows)
    elif probabilities is not None:
        top = probabilities.argmax(axis=1)
        labels = top if classes is None else classes[np.arange(rows), top]
    else:
        raise TargetRefused(200, "the answer holds neither a label nor probabilities")
    return Answer(labels=labels, probabilities=probabilities, classes=classes)


class OipTarget:
    """Query ``POST /v2/models/{model}/infer`` with an API key, in batches.

    Example:
        >>> client = httpx.AsyncClient(base_url="http://gateway.test")
        >>> target = OipTarget(client, "digits", "ms_key", batch_rows=32)
        >>> target.queries, target.throttled
        (0, 0)
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        model: str,
        api_key: str | None,
        *,
        input_name: str = "input-0",
        batch_rows: int = 64,
        sleep: Sleep | None = None,
        max_wait: float = 86_400.0,
        after_batch: AfterBatch | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.api_key = api_key
        self.input_name = input_name
        self.batch_rows = batch_rows
        self.sleep = sleep or _asyncio_sleep
        self.max_wait = max_wait
        self.after_batch = after_batch
        """Awaited with the row count after every answered batch (the evaluation
        harness moves its clock and looks for alerts there)."""
        self.queries = 0
        self.throttled = 0
        self.waited = 0.0

    async def query(self, rows: FloatArray) -> Answer:
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        parts: list[Answer] = []
        start = 0
        while start < rows.shape[0]:
            batch = rows[start : start + self.batch_rows]
            try:
                parts.append(await self._batch(batch))
            except TargetRefused as refused:
                if refused.status != 413 or self.batch_rows == 1:
                    refused.partial = concat_answers(parts) if parts else None
                    raise
                # the body was too large: a patient attacker sends smaller batches
                self.batch_rows = max(1, self.batch_rows // 2)
                continue
            start += batch.shape[0]
        return concat_answers(parts)

    async def _batch(self, rows: FloatArray) -> Answer:
        body = {
            "inputs": [
                {
                    "name": self.input_name,
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "data": rows.ravel().tolist(),
                }
            ]
        }
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        while True:
            response = await self.client.post(
                f"/v2/models/{self.model}/infer", json=body, headers=headers
            )
            if response.status_code == 429:
                self.throttled += 1
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                if self.waited + wait > self.max_wait:
                    raise TargetRefused(
                        429, f"waiting would pass max_wait={self.max_wait}s", retry_after=wait
                    )
                self.waited += wait
                await self.sleep(wait)
                continue
            if response.status_code != 200:
                raise TargetRefused(response.status_code, _detail(response))
            answer = decode_answer(response.json(), rows.shape[0])
            self.queries += rows.shape[0]
            if self.after_batch is not None:
                await self.after_batch(rows.shape[0])
            return answer


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(data, dict):
        return str(data.get("detail") or data.get("error") or data)[:200]
    return str(data)[:200]


def concat_answers(parts: list[Answer]) -> Answer:
    """One :class:`Answer` for the rows of ``parts`` in order.

    Probabilities survive only if every part has them; top-k parts of different widths
    are padded with class ``-1``.
    """
    if not parts:
        return Answer(labels=np.zeros(0, dtype=np.int64))
    if len(parts) == 1:
        return parts[0]
    labels = np.concatenate([p.labels for p in parts])
    if any(p.probabilities is None for p in parts):
        return Answer(labels=labels)
    width = max(p.probabilities.shape[1] for p in parts if p.probabilities is not None)
    probs = [_pad(p.probabilities, width, 0.0) for p in parts if p.probabilities is not None]
    if all(p.classes is None for p in parts):
        return Answer(labels=labels, probabilities=np.concatenate(probs))
    classes = [
        _pad(p.classes, width, -1)
        if p.classes is not None
        else np.broadcast_to(np.arange(width), (p.labels.shape[0], width))
        for p in parts
    ]
    return Answer(labels, np.concatenate(probs), np.concatenate(classes).astype(np.int64))


def _pad(values: npt.NDArray[Any], width: int, fill: float) -> npt.NDArray[Any]:
    missing = width - values.shape[1]
    if missing <= 0:
        return values
    return np.pad(values, ((0, 0), (0, missing)), constant_values=fill)


@asynccontextmanager
async def http_target(
    base_url: str,
    api_key: str | None,
    *,
    model: str = "digits",
    batch_rows: int = 64,
    sleep: Sleep | None = None,
    timeout: float = 30.0,
) -> AsyncIterator[OipTarget]:
    """A target at ``base_url`` (a deployed modelshield or a plain OIP server)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as client:
        yield OipTarget(client, model, api_key, batch_rows=batch_rows, sleep=sleep)


@asynccontextmanager
async def gateway_target(
    policy: Policy,
    *,
    accounts: int = 1,
    plan: str | None = None,
    model: str | None = None,
    clock: Clock | None = None,
    secrets: Secrets | None = None,
    store: Store | None = None,
    sleep: Sleep | None = None,
) -> AsyncIterator[list[OipTarget]]:
    """A gateway built in-process from ``policy``; one target per new account.

    Each account is created on ``plan`` (default: the policy's default plan) and
    queries with its own API key, as an attacker with ``accounts`` sign-ups would.
    """
    from modelshield.gateway.app import create_app

    app = create_app(policy, clock=clock, secrets=secrets, store=store)
    gateway = app.state.gateway
    await gateway.start()
    name = model or next(iter(policy.models))
    spec = policy.models[name]
    plan_spec = policy.plans[plan or policy.default_plan_name]
    batch = min(policy.server.max_batch_rows, plan_spec.max_batch_rows or 1 << 30)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("198.51.100.9", 4242)),
        base_url="http://gateway.evaluation",
    )
    try:
        targets = []
        for i in range(accounts):
            _, issued = await gateway.accounts.create(f"attacker-{i}", plan=plan)
            targets.append(
                OipTarget(
                    client,
                    name,
                    issued.plaintext,
                    input_name=spec.input.name,
                    batch_rows=batch,
                    sleep=sleep,
                )
            )
        yield targets
    finally:
        await client.aclose()
        await gateway.stop()
