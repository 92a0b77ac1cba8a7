"""A model's fallback chain: which of its targets answers a call.

Targets are tried in order, skipping those cooling down (gateway.health); a connection error, timeout,
408/409/429 or 5xx (an UpstreamFailure) moves on, after one retry per target with exponential backoff
and jitter, inside the call's deadline; a client error (a GatewayError, such as a 400 passed on) stops
the walk, since the next target would refuse it too. Every attempt is recorded on the call.
"""

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from django.conf import settings

from gateway.call import Call
from gateway.catalog import Target
from gateway.errors import GatewayError
from gateway.health import health
from gateway.upstream import UpstreamFailure

T = TypeVar("T")


async def targets_walk(call: Call, targets: tuple[Target, ...], attempt: Callable[[Target], Awaitable[T]], *,
                       deadline: float) -> T:
    """The first answer ``attempt`` gets from a target, in chain order; ``deadline`` is a perf_counter time."""
    usable = await health.usable(targets)
    if not usable:
        wait = max(1, int(health.cooling_until(targets) - time.time()))
        raise GatewayError(503, "upstream_unavailable", "Every upstream for this model is cooling down after "
                           f"repeated failures; retry in {wait} s.", headers={"retry-after": str(wait)})
    failure = UpstreamFailure("unavailable")
    backoff = settings.HYPEREAL["RETRY_BACKOFF_MS"] / 1000
    for target in usable:
        for retry in range(2):  # one retry per target
            if retry:
                pause = backoff * random.uniform(0.5, 1.5)
                if time.perf_counter() + pause >= deadline:
                    break
                await asyncio.sleep(pause)
            started = time.perf_counter()
            try:
                answer = await attempt(target)
            except UpstreamFailure as exc:
                _attempted(call, target, exc.status, started, exc.kind)
                await health.failed(target)
                failure = exc
                continue
            except GatewayError as err:  # a client error: the upstream is healthy, the request is not
                _attempted(call, target, err.status, started, err.type)
                await health.succeeded(target)
                raise
            _attempted(call, target, 200, started)
            await health.succeeded(target)
            return answer
        backoff *= 2
    raise failure.to_gateway_error()


def _attempted(call: Call, target: Target, status: int | None, started: float, error: str = "") -> None:
    call.attempts.append({"provider": target.provider, "upstream_model": target.upstream_model, "status": status,
                          "latency_ms": int((time.perf_counter() - started) * 1000), **({"error": error} if error else {})})
