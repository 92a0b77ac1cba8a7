"""Completion webhooks, sent with httpx when a watched job reaches its end on the sim clock.

Job state is derived from the clock, so nothing happens at the moment a job ends: a ticker (started with the
server) checks every TICK_S, and ``settle`` checks at once and waits for what it sent, which is how
``POST /_sim/clock`` answers only after the webhooks it made due have been delivered. A delivery that gets
no 2xx is retried after the protocol's intervals (``retries``, on the sim clock: each tick sends at most one
attempt of a delivery). The job's ``webhook`` directive changes this: ``duplicate`` sends it twice, ``early``
when the run starts (before status polls report the end), ``fail`` once with no retries, ``lost`` never.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import httpx

from sim import clock
from sim.jobs import EXPIRED, Job

TICK_S = 0.05
TIMEOUT_S = 15  # fal's delivery timeout; RunPod and OpenAI give about as long


@dataclass(frozen=True)
class Hook:
    url: str
    body: Callable[[], bytes]  # the job rendered as it ends, built when the hook fires
    retries: tuple[int, ...] = ()  # ms before each retry of an unanswered delivery
    sign: Callable[[bytes], dict[str, str]] = lambda body: {}  # per-attempt headers (signatures)


@dataclass(frozen=True)
class Delivery:
    hook: Hook
    body: bytes
    due_ms: int
    retries: tuple[int, ...]


_watched: list[tuple[Job, Hook]] = []
_pending: list[Delivery] = []
_in_flight: set[asyncio.Task[None]] = set()
_client: httpx.AsyncClient | None = None
_ticker: asyncio.Task[None] | None = None


def watch(job: Job, hook: Hook) -> None:
    """Send ``hook`` when ``job`` is due (again, after a retry re-queues it)."""
    _watched.append((job, hook))


def forget(job: Job) -> None:
    _watched[:] = [(j, h) for j, h in _watched if j is not job]


async def start() -> None:
    global _client, _ticker
    _client = httpx.AsyncClient(timeout=TIMEOUT_S)
    _ticker = asyncio.create_task(_tick_forever())


async def stop() -> None:
    if _ticker:
        _ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await _ticker
    for task in list(_in_flight):
        task.cancel()
    if _client:
        await _client.aclose()


async def settle() -> None:
    """Send whatever is due now and wait until those deliveries are answered."""
    _tick()
    while _in_flight:
        await asyncio.gather(*_in_flight, return_exceptions=True)


async def _tick_forever() -> None:
    while True:
        _tick()
        await asyncio.sleep(TICK_S)


def _tick() -> None:
    now = clock.now_ms()
    for job, hook in list(_watched):
        due = job.webhook_due()
        if due is None or now < due:
            if job.state(now) == EXPIRED:
                _watched.remove((job, hook))
            continue
        _watched.remove((job, hook))
        mode = job.script.webhook
        if mode == "lost":
            continue
        body = hook.body()
        retries = () if mode == "fail" else hook.retries
        _pending.extend(Delivery(hook, body, now, retries) for _ in range(2 if mode == "duplicate" else 1))
    for delivery in [d for d in _pending if d.due_ms <= now]:
        _pending.remove(delivery)
        task = asyncio.create_task(_deliver(delivery))
        _in_flight.add(task)
        task.add_done_callback(_in_flight.discard)


async def _deliver(delivery: Delivery) -> None:
    assert _client is not None, "webhooks.start() runs in the server's lifespan"
    headers = {"content-type": "application/json", **delivery.hook.sign(delivery.body)}
    try:
        response = await _client.post(delivery.hook.url, content=delivery.body, headers=headers)
        delivered = response.is_success
    except (httpx.HTTPError, httpx.InvalidURL):  # unreachable or unusable: the receiver's problem
        delivered = False
    if not delivered and delivery.retries:
        wait, *rest = delivery.retries
        _pending.append(replace(delivery, due_ms=clock.now_ms() + wait, retries=tuple(rest)))
