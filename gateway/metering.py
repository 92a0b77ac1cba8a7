"""Charges and request logs, written in batches off the response path.

Calls are queued in process and flushed every METER_FLUSH_MS, or as soon as METER_FLUSH_CALLS wait, in
one transaction per batch, written by a child process (gateway.meter_writer) so that the writing never
holds this process's GIL; shutdown flushes whatever is queued. Small batches matter on a machine whose
cores the gateway shares with PostgreSQL and Redis: a batch is a burst of a few milliseconds of database
CPU, and the calls that wait on Redis or the upstream during it are the latency's tail (bench/). Under
load a flush still takes everything queued while the previous one was written, so batches grow with it.

With Redis, a call's record reaches the queue only once gateway.quota has journaled it in Redis (in the
round trip that settles its reservation, before its answer is complete): the queue is this process's copy,
kept until the writer committed it, and the journal entry is what another process replays if this one
dies first (``write``; the write is idempotent per request id). On the embedded default the queue is the
only copy, and the pending amounts count against the balance floor until they are written.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone

from billing.tokens import TokenUsage
from gateway import jsoncodec
from gateway.meter_writer import MeterWriter
from usage.consumers import live_rows_render, live_rows_send
from usage.services import CallRecord

log = logging.getLogger(__name__)

BATCH_SIZE = 500
TOUCH_EVERY_SECONDS = 60  # last_used_at is written at most once a minute per key


@dataclass(slots=True)
class Queued:
    record: CallRecord
    journal_id: str | None  # its entry in this process's Redis journal, if it has one
    data: bytes | None  # the record as record_dumps wrote it for the journal, if it was

    def dumped(self) -> bytes:
        """The record as its journal entry carries it (written now if it never was journaled)."""
        return self.data or record_dumps(self.record)


def journal_order(entry_id: str) -> tuple[int, int]:
    """Redis stream ids ("<ms>-<seq>") in the order Redis gave them."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def record_dumps(record: CallRecord) -> bytes:
    """A record as its journal entry carries it."""
    usage = record.usage
    return jsoncodec.dumps([
        record.request_id, record.organization_id, record.api_key_id, record.endpoint, record.model,
        record.provider, record.upstream_model, record.status, record.latency_ms,
        [usage.input, usage.cached_read, usage.cache_write, usage.output, usage.reasoning], record.cost,
        record.created_at.timestamp(), record.stream, record.ttft_ms, record.error_type, record.attempts,
        record.api_key_name, record.unit, record.units, record.prepaid,
    ])


def record_loads(raw: bytes | str) -> CallRecord:
    (request_id, organization_id, api_key_id, endpoint, model, provider, upstream_model, status, latency_ms,
     usage, cost, created_at, stream, ttft_ms, error_type, attempts, api_key_name, unit, units,
     prepaid) = jsoncodec.loads(raw)
    return CallRecord(request_id=request_id, organization_id=organization_id, api_key_id=api_key_id,
                      endpoint=endpoint, model=model, provider=provider, upstream_model=upstream_model,
                      status=status, latency_ms=latency_ms, usage=TokenUsage(*usage), cost=cost,
                      created_at=datetime.fromtimestamp(created_at, UTC), stream=stream, ttft_ms=ttft_ms,
                      error_type=error_type, attempts=attempts, api_key_name=api_key_name, unit=unit,
                      units=units, prepaid=prepaid)


class Meter:
    def __init__(self) -> None:
        self._queue: list[Queued] = []
        self._writing: list[Queued] = []  # the batches of the flush under way
        self._pending_cost: dict[int, int] = {}
        self._touched: dict[int, datetime] = {}
        self._last_touch: dict[int, float] = {}
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._writer = MeterWriter()
        self._hand_off = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meter")  # waits on the writer
        self._companions: list[Callable[[], Coroutine]] = []
        self._flush_calls = settings.HYPEREAL["METER_FLUSH_CALLS"]  # read once: record() runs on every call

    def record(self, record: CallRecord, journal_id: str | None = None, data: bytes | None = None) -> None:
        self._queue.append(Queued(record, journal_id, data))
        if record.cost:
            self._pending_cost[record.organization_id] = self._pending_cost.get(record.organization_id, 0) \
                + record.cost
        if (key_id := record.api_key_id) is not None:
            now = time.monotonic()
            if now - self._last_touch.get(key_id, -TOUCH_EVERY_SECONDS) >= TOUCH_EVERY_SECONDS:
                self._last_touch[key_id] = now
                self._touched[key_id] = timezone.now()
        if len(self._queue) >= self._flush_calls:
            self._wakeup.set()

    def pending_cost(self, organization_id: int) -> int:
        return self._pending_cost.get(organization_id, 0)

    def uncommitted(self) -> list[Queued]:
        """Every record not yet committed, the flush's own included."""
        return [*self._writing, *self._queue]

    def oldest_journaled(self) -> str | None:
        """The journal id of the oldest record not yet committed (the journal keeps it and what follows)."""
        return min((q.journal_id for q in self.uncommitted() if q.journal_id), key=journal_order, default=None)

    async def flush(self) -> None:
        """Write everything queued until now (what arrives meanwhile waits for the next flush, so a busy
        gateway writes a few large batches instead of chasing its queue with many small ones)."""
        async with self._lock:
            pending, self._queue = self._queue, []
            touched, self._touched = self._touched, {}
            self._writing = pending
            try:
                for start in range(0, len(pending), BATCH_SIZE):
                    queued = pending[start:start + BATCH_SIZE]
                    batch = [q.record for q in queued]
                    data = [q.dumped() for q in queued]
                    try:
                        await asyncio.get_running_loop().run_in_executor(self._hand_off, self._writer.write, data,
                                                                         touched)
                    except Exception:
                        # Keep them for the next attempt; the write is idempotent per request id.
                        self._queue[:0] = pending[start:]
                        self._touched = {**touched, **self._touched}
                        raise
                    touched = {}
                    self._writing = pending[start + BATCH_SIZE:]
                    for record in batch:
                        if record.cost:
                            left = self._pending_cost.get(record.organization_id, 0) - record.cost
                            if left > 0:
                                self._pending_cost[record.organization_id] = left
                            else:
                                self._pending_cost.pop(record.organization_id, None)
                    if not settings.REDIS_URL:  # the writer publishes them itself on a shared channel layer
                        try:  # the live log is a nicety: it never holds up or fails the metering
                            await live_rows_send(await asyncio.get_running_loop().run_in_executor(
                                self._hand_off, live_rows_render, batch))
                        except Exception:
                            log.exception("live request-log update failed")
            finally:
                self._writing = []

    async def write(self, records: list[bytes]) -> None:
        """Write records (as record_dumps wrote them) now: another process's journal, replayed; raises if they
        were not committed."""
        for start in range(0, len(records), BATCH_SIZE):
            await asyncio.get_running_loop().run_in_executor(self._hand_off, self._writer.write,
                                                             records[start:start + BATCH_SIZE], {})

    def run_with(self, companion: Callable[[], Coroutine]) -> None:
        """Run ``companion()`` beside the flush loop for the process's life (gateway.quota's upkeep of this
        process's presence in Redis, which sits above this module)."""
        self._companions.append(companion)

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._hand_off, self._writer.start)

    async def stop(self) -> None:
        """Write what is queued, then let the writer process go."""
        await self.flush()
        await asyncio.get_running_loop().run_in_executor(self._hand_off, self._writer.stop)

    async def run_forever(self) -> None:
        await asyncio.gather(self._flush_forever(), *(companion() for companion in self._companions))

    async def _flush_forever(self) -> None:
        interval = settings.HYPEREAL["METER_FLUSH_MS"] / 1000
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=interval)
            except TimeoutError:
                pass
            self._wakeup.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("metering flush failed; will retry")


meter = Meter()
