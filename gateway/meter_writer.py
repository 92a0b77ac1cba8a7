"""The metering writer: a child process of each gateway process that writes its batches to the database.

Writing a batch is a few milliseconds of Python (building rows, driving psycopg). In the gateway's own
process that work holds the GIL and stalls the calls in flight — bench/ showed it as the tail of the
latency at concurrency 1 — while in a child process it runs beside them. The gateway sends a batch and
waits for the child's answer, so a flush still ends only once its batch is committed; a child that dies
is replaced and the batch sent again (the write is idempotent per request id). A batch crosses as the
records' journal bytes (gateway.metering.record_dumps), which the gateway already holds: pickling the
records themselves cost the gateway's thread ~7 µs each, with the GIL held.

Once a batch is committed the child also publishes its rows to the live request log, from the records
it holds, when the channel layer is shared between processes (Redis); on the embedded default the
gateway process does that itself, since only it can reach its in-memory layer.
"""

import asyncio
import logging
import multiprocessing
import os
import threading
from multiprocessing.connection import Connection

log = logging.getLogger(__name__)
STOP_SECONDS = 10


class MeterWriteError(Exception):
    """The batch was not written (the database refused it, or no writer process would take it)."""


def _serve(conn: Connection) -> None:
    """The child: say it is ready, then write each batch it receives, answer ("ok", None) or ("error", why)."""
    import django

    django.setup()  # at the gateway's priority: a starved start-up would hold up the first flush
    os.nice(10)  # then, on a shared core, the gateway's calls go first; batches just get larger meanwhile
    from django.conf import settings
    from django.db import close_old_connections

    from gateway.metering import record_loads
    from usage.consumers import live_rows_render, live_rows_send
    from usage.services import call_records_save

    loop = asyncio.new_event_loop()  # one for the child's life: the channel layer keeps its connections
    conn.send(("ready", None))
    while True:
        try:
            batch = conn.recv()
        except EOFError:  # the gateway process is gone
            return
        if batch is None:
            return
        data, touched = batch
        records = [record_loads(raw) for raw in data]
        close_old_connections()  # drop a connection that died or outlived CONN_MAX_AGE
        try:
            call_records_save(records=records, touched_keys=touched)
        except Exception as exc:
            log.exception("metering batch of %d calls not written", len(records))
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            continue
        conn.send(("ok", None))
        if settings.REDIS_URL:
            try:  # the live log is a nicety: it never fails the metering
                loop.run_until_complete(live_rows_send(live_rows_render(records)))
            except Exception:
                log.exception("live request-log rows not published")


class MeterWriter:
    """The parent's side: ``write`` blocks until the child has committed the batch (call it in a thread)."""

    def __init__(self) -> None:
        self._process: multiprocessing.Process | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the child and wait until Django is set up in it, so that no flush waits for that."""
        with self._lock:
            self._running()

    def write(self, records: list[bytes], touched: dict) -> None:
        """Return once the batch (records as gateway.metering.record_dumps wrote them) is written."""
        with self._lock:
            for _ in range(2):  # a writer that died gets one replacement per batch
                conn = self._running()
                try:
                    conn.send((records, touched))
                    status, detail = conn.recv()
                except (EOFError, OSError):
                    log.warning("the metering writer process died; starting another")
                    self._discard()
                    continue
                if status == "error":
                    raise MeterWriteError(detail)
                return
            raise MeterWriteError("no metering writer process would take the batch")

    def stop(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.send(None)
                except OSError:
                    pass
            if self._process is not None:
                self._process.join(STOP_SECONDS)
            self._discard()

    def _running(self) -> Connection:
        if self._process is None or not self._process.is_alive():
            self._discard()
            context = multiprocessing.get_context("spawn")  # a fork would copy the event loop and threads
            self._conn, child = context.Pipe()
            self._process = context.Process(target=_serve, args=(child,), name="hypereal-meter-writer",
                                            daemon=True)
            self._process.start()
            child.close()
            try:
                self._conn.recv()  # ("ready", None) once Django is set up in the child
            except EOFError:
                raise MeterWriteError("the metering writer process did not start") from None
        return self._conn

    def _discard(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.terminate()
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None
