"""What every gateway call shares: request id, timing, headers, error responses, and its one record, which
settles its reservation."""

import asyncio
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from billing.tokens import TokenUsage
from gateway import quota
from gateway.auth import KeyContext
from gateway.errors import GatewayError, openai_error_body
from gateway.http import Receive, Send, send_json
from usage.services import CallRecord


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


@dataclass(slots=True)
class Call:
    endpoint: str
    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.perf_counter)
    created_at: datetime = field(default_factory=timezone.now)
    ttft_ms: int | None = None
    headers: dict[str, str] = field(default_factory=dict)  # sent with every response of this call
    attempts: list[dict] = field(default_factory=list)
    reservation: quota.Reservation | None = None  # settled by ``record``
    output_cap: int | None = None  # the max output its reservation pays for, sent upstream
    recorded: bool = False
    journaled: asyncio.Future | None = None  # done once the record would survive this process

    def __post_init__(self) -> None:
        self.headers["x-request-id"] = self.request_id

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def first_token(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = self.elapsed_ms()

    def record(self, ctx: KeyContext, *, model: str, status: int, usage: TokenUsage = TokenUsage(), cost: int = 0,
               provider: str = "", upstream_model: str = "", stream: bool = False, error_type: str = "",
               unit: str = "", units: int = 0) -> None:
        """Settle this call's reservation and queue its charge and log (with Redis, journaling them first: see
        ``durable``); a call is recorded once whatever path it ended on."""
        if self.recorded:
            return
        self.recorded = True
        self.journaled = quota.settle(self.reservation, cost=cost, tokens=usage.total, record=CallRecord(
            request_id=self.request_id, organization_id=ctx.org_id, api_key_id=ctx.key_id,
            api_key_name=ctx.name, endpoint=self.endpoint,
            model=model, provider=provider, upstream_model=upstream_model, status=status,
            latency_ms=self.elapsed_ms(), usage=usage, cost=cost, created_at=self.created_at, stream=stream,
            ttft_ms=self.ttft_ms, error_type=error_type, attempts=self.attempts, unit=unit, units=units,
        ))

    async def journal_sent(self) -> None:
        """Give the settler the event loop's next turn, in which it sends the record's journal write (unless
        one is already on its way: this one follows it), so that what the caller does before ``durable``
        runs during the round trip, not after it."""
        if self.journaled is not None:
            await asyncio.sleep(0)

    async def durable(self) -> None:
        """Wait until the record would survive a crash of this process (its journal entry is in Redis), so
        that an answer the client holds is a charge: the last byte of any answer waits for this. Nothing to
        wait for on the embedded default, whose queue is in process."""
        if self.journaled is not None:
            await asyncio.shield(self.journaled)  # a client leaving now must not cancel the shared write

    async def send_openai_error(self, send: Send, err: GatewayError) -> None:
        await send_json(send, err.status, openai_error_body(err), {**self.headers, **err.headers})


async def cancel_on_disconnect(receive: Receive, work: Coroutine, answered: Callable[[], bool]) -> None:
    """Run ``work`` in this task; if the client goes away first, cancel it (which cancels the upstream request).

    The server also says ``http.disconnect`` once the response is complete, so that only counts as the
    client leaving while ``answered()`` is false.
    """
    task = asyncio.current_task()
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        if not answered():
            gone = True
            task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        await work
    except asyncio.CancelledError:
        if not gone:
            raise
        task.uncancel()
        raise GatewayError(499, "client_disconnected", "The client went away.") from None
    finally:
        watcher.cancel()
