"""Charges and request logs, written in batches off the response path.

Calls are queued in process and flushed every METER_FLUSH_MS (or sooner when the batch is full) in
one transaction per batch, written by a child process (gateway.meter_writer) so that the writing never
holds this process's GIL. Pending amounts count against the balance floor until they are written;
shutdown flushes whatever is queued.
"""

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from gateway.meter_writer import MeterWriter
from usage.consumers import live_rows_render, live_rows_send
from usage.services import CallRecord

log = logging.getLogger(__name__)

BATCH_SIZE = 500
TOUCH_EVERY_SECONDS = 60  # last_used_at is written at most once a minute per key


class Meter:
    def __init__(self) -> None:
        self._queue: list[CallRecord] = []
        self._pending_cost: dict[int, int] = {}
        self._touched: dict[int, datetime] = {}
        self._last_touch: dict[int, float] = {}
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._writer = MeterWriter()
        self._hand_off = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meter")  # waits on the writer

    def record(self, record: CallRecord) -> None:
        self._queue.append(record)
        if record.cost:
            self._pending_cost[record.organization_id] = self._pending_cost.get(record.organization_id, 0) \
                + record.cost
        if (key_id := record.api_key_id) is not None:
            now = time.monotonic()
            if now - self._last_touch.get(key_id, -TOUCH_EVERY_SECONDS) >= TOUCH_EVERY_SECONDS:
                self._last_touch[key_id] = now
                self._touched[key_id] = timezone.now()
        if len(self._queue) >= BATCH_SIZE:
            self._wakeup.set()

    def pending_cost(self, organization_id: int) -> int:
        return self._pending_cost.get(organization_id, 0)

    async def flush(self) -> None:
        """Write everything queued until now (what arrives meanwhile waits for the next flush, so a busy
        gateway writes a few large batches instead of chasing its queue with many small ones)."""
        async with self._lock:
            pending, self._queue = self._queue, []
            touched, self._touched = self._touched, {}
            for start in range(0, len(pending), BATCH_SIZE):
                batch = pending[start:start + BATCH_SIZE]
                try:
                    await asyncio.get_running_loop().run_in_executor(self._hand_off, self._writer.write, batch,
                                                                     touched)
                except Exception:
                    # Keep them for the next attempt; the write is idempotent per request id.
                    self._queue[:0] = pending[start:]
                    self._touched = {**touched, **self._touched}
                    raise
                touched = {}
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

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._hand_off, self._writer.start)

    async def stop(self) -> None:
        """Write what is queued, then let the writer process go."""
        await self.flush()
        await asyncio.get_running_loop().run_in_executor(self._hand_off, self._writer.stop)

    async def run_forever(self) -> None:
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
