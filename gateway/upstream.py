"""Upstream HTTP: kept-alive HTTP/1.1 connections per process, and the failures a fallback chain acts on.

Neither httpx nor aiohttp on this path, measured with bench/: httpx took ~0.5 ms of CPU per call at
concurrency 1 (its pool polls every idle connection before each request). aiohttp took ~0.28 ms for a
20-chunk stream read on its own (its reader resumed the transport and re-entered its parser for each HTTP
chunk it handed out), this protocol ~0.20 ms, with llhttp (through httptools) reading the answer; in the
gateway a stream's CPU fell by 0.14–0.22 ms, 13–21 %. aiohttp still fetches media elsewhere (gpu/), where
a call is not that short.

What it does: one request at a time per connection; idle connections kept per origin for
KEEPALIVE_SECONDS, newest first; TLS with the system's CAs; gzip and deflate answers decoded; a connect
timeout and a read timeout between the answer's bytes; a slow reader pauses the socket. What it does not:
proxies, cookies, redirects (a provider's API answers, it does not redirect).
"""

import asyncio
import json
import ssl
import time
import zlib
from collections import deque
from functools import lru_cache
from urllib.parse import urlsplit

import httptools

from gateway.errors import GatewayError

KEEPALIVE_SECONDS = 30.0  # an idle connection older than this is closed, not reused
MAX_CONNECTIONS = 1000  # open per process, busy or idle: beyond it a call waits (within its connect timeout)
IDLE_PER_ORIGIN = 256  # idle connections kept per origin; a burst's extra ones are closed
HIGH_WATER = 256 * 1024  # answer bytes held unread before the socket stops being read
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "accept-encoding"})


class UpstreamFailure(Exception):
    """A target failed in a way the next target might not: connection, timeout, 408/409/429, 5xx."""

    def __init__(self, kind: str, status: int | None = None, message: str = ""):
        super().__init__(message or kind)
        self.kind, self.status, self.message = kind, status, message

    def to_gateway_error(self) -> GatewayError:
        if self.kind == "timeout":
            return GatewayError(504, "upstream_timeout", "The upstream provider did not answer in time.")
        if self.status == 429:
            return GatewayError(503, "upstream_rate_limited", "Every upstream provider is rate limiting.",
                                headers={"retry-after": "1"})
        return GatewayError(502, "upstream_error", f"The upstream provider failed: {self.message or self.kind}.")


class _Connection(asyncio.Protocol):
    """One connection to an origin, carrying one exchange at a time; llhttp calls the on_* methods."""

    def __init__(self, pool: "_Pool") -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.counted = True  # in the pool's count of open connections
        self.idle_since = 0.0
        self.begin()

    def begin(self) -> None:
        """Ready for the next exchange on this connection."""
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = self.complete = self.reusable = False
        self.error: UpstreamFailure | None = None
        self.body: list[bytes] = []
        self.buffered = 0
        self.paused = False
        self.decoder = None
        self.until_close = False  # the body ends when the connection does
        self.waiter: asyncio.Future | None = None
        self.timer: asyncio.TimerHandle | None = None

    # asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.complete:  # bytes nobody asked for: the connection cannot be trusted with another exchange
            self.reusable = False
            self.transport.abort()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self.complete:  # else what followed a whole answer: it stands, the connection does not
                self._fail(UpstreamFailure("connect", message=f"invalid HTTP answer ({exc})"))
            self.reusable = False
            self.transport.abort()
            return
        if self.buffered > HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> None:
        return None  # the transport closes itself; connection_lost decides what the end meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.reusable = False
        if not self.complete:
            if self.headers_done and self.until_close and exc is None:
                self._finish()
            else:
                self._fail(UpstreamFailure("connect", message=f"connection closed ({type(exc).__name__})"
                                           if exc else "connection closed before the answer was complete"))
        self._wake()
        self.pool.uncount(self)

    # llhttp

    def on_message_begin(self) -> None:
        if self.complete:
            raise ValueError("bytes after the answer")  # stops the parser: see data_received

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self.headers = []
            return
        self.status, self.headers_done = status, True
        names = {name for name, _ in self.headers}
        self.until_close = b"content-length" not in names and b"transfer-encoding" not in names \
            and status not in (204, 304)
        encoding = self.header(b"content-encoding").lower()
        if encoding in (b"gzip", b"x-gzip", b"deflate"):
            self.decoder = zlib.decompressobj(47)  # 32 + 15: a gzip or zlib header, found by zlib
        elif encoding not in (b"", b"identity"):
            self._fail(UpstreamFailure("connect", message=f"answered in encoding {encoding!r}"))

    def on_body(self, data: bytes) -> None:
        if self.error is not None:  # undecodable, or too late: dropped with its connection
            return
        if self.decoder is not None:
            try:
                data = self.decoder.decompress(data)
            except zlib.error:
                self._fail(UpstreamFailure("connect", message="answered with an undecodable body"))
                return
        if data:
            self.body.append(data)
            self.buffered += len(data)

    def on_message_complete(self) -> None:
        if not self.headers_done:  # the end of an interim answer
            return
        self._finish()
        self.reusable = self.parser.should_keep_alive()

    # the exchange's side

    def header(self, name: bytes) -> bytes:
        return next((value for key, value in self.headers if key == name), b"")

    def _finish(self) -> None:
        if self.decoder is not None:
            if tail := self.decoder.flush():
                self.body.append(tail)
        self.complete = True

    def _fail(self, error: UpstreamFailure) -> None:
        if self.error is None:
            self.error = error

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _timed_out(self, deadline: float) -> None:
        if (left := deadline - time.monotonic()) > 0:  # the loop's clock is read once a turn: early
            self.timer = asyncio.get_running_loop().call_later(left, self._timed_out, deadline)
            return
        self._fail(UpstreamFailure("timeout"))
        self._wake()

    async def wait(self, timeout: float) -> None:
        """Until more of the answer arrives (or it fails): UpstreamFailure("timeout") after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.timer = loop.call_later(timeout, self._timed_out, time.monotonic() + timeout)
        try:
            await self.waiter
        finally:
            self.timer.cancel()
            self.waiter = None
        if self.error is not None:
            raise self.error

    def take(self) -> bytes:
        body, self.body, self.buffered = self.body, [], 0
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        return body[0] if len(body) == 1 else b"".join(body)


class _Pool:
    """Idle connections per origin (scheme, host, port), for one event loop, and at most MAX_CONNECTIONS."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self.open = 0
        self.waiting: deque[asyncio.Future] = deque()  # calls waiting for the count to drop
        self._tls: ssl.SSLContext | None = None

    async def connection(self, origin: tuple[str, str, int], timeout: float) -> _Connection:
        deadline = self.loop.time() + timeout
        while True:
            idle, now = self.idle.get(origin), self.loop.time()
            while idle:
                conn = idle.pop()  # the newest: the least likely to have been closed by the other end
                if not conn.lost and now - conn.idle_since < KEEPALIVE_SECONDS:
                    conn.begin()
                    return conn
                self.drop(conn)
            if self.open < MAX_CONNECTIONS:
                break
            if other := next((q for q in self.idle.values() if q), None):
                self.drop(other.popleft())  # another origin's idle connection makes room
            else:
                await self._turn(deadline)
        self.open += 1
        try:
            return await self._connect(origin, deadline - self.loop.time())
        except BaseException:
            self.open -= 1
            self._wake_one()
            raise

    async def _connect(self, origin: tuple[str, str, int], timeout: float) -> _Connection:
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            tls = self._tls = self._tls or ssl.create_default_context()
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: _Connection(self), host, port, ssl=tls), timeout)
        except asyncio.TimeoutError:
            raise UpstreamFailure("timeout") from None
        except OSError as exc:
            raise UpstreamFailure("connect", message=type(exc).__name__) from None
        return conn

    async def _turn(self, deadline: float) -> None:
        """Until a connection closes or turns idle; UpstreamFailure("timeout") at ``deadline``."""
        turn = self.loop.create_future()
        self.waiting.append(turn)
        try:
            await asyncio.wait_for(turn, deadline - self.loop.time())
        except asyncio.TimeoutError:
            raise UpstreamFailure("timeout") from None
        finally:
            if turn in self.waiting:
                self.waiting.remove(turn)

    def _wake_one(self) -> None:
        while self.waiting:
            if not (turn := self.waiting.popleft()).done():
                turn.set_result(None)
                return

    def release(self, origin: tuple[str, str, int], conn: _Connection) -> None:
        idle = self.idle.setdefault(origin, deque())
        conn.idle_since = now = self.loop.time()
        idle.append(conn)
        while idle and (len(idle) > IDLE_PER_ORIGIN or now - idle[0].idle_since >= KEEPALIVE_SECONDS):
            self.drop(idle.popleft())
        self._wake_one()

    def drop(self, conn: _Connection) -> None:
        """Close an idle connection, and count it closed now rather than once the close is done."""
        self.uncount(conn)
        conn.transport.close()

    def uncount(self, conn: _Connection) -> None:
        if conn.counted:
            conn.counted = False
            self.open -= 1
            self._wake_one()

    def close(self) -> None:
        for idle in self.idle.values():
            for conn in idle:
                self.drop(conn)
        self.idle.clear()


_pool: _Pool | None = None


def _pool_get() -> _Pool:
    global _pool
    loop = asyncio.get_running_loop()
    if _pool is None or _pool.loop is not loop:  # a new loop (tests run several): the old sockets are gone
        _pool = _Pool(loop)
    return _pool


@lru_cache(maxsize=1024)
def _parsed(url: str) -> tuple[tuple[str, str, int], bytes]:
    """(origin, the request line and the headers every request to this URL starts with)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamFailure("connect", message="the target's URL is not an http(s) URL")
    default_port = 443 if parts.scheme == "https" else 80
    port = parts.port or default_port
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = host if port == default_port else f"{host}:{port}"
    head = f"POST {target} HTTP/1.1\r\nhost: {authority}\r\naccept-encoding: gzip, deflate\r\n"
    return (parts.scheme, parts.hostname, port), head.encode()


def _head(start: bytes, headers: dict[str, str], length: int) -> bytes:
    lines = [start]
    for name, value in headers.items():
        if name.lower() in _OWN_HEADERS:
            continue
        line = f"{name}: {value}\r\n"
        if line.count("\n") != 1 or "\r" in line[:-2] or "\0" in line:
            raise UpstreamFailure("connect", message=f"the request header {name!r} holds a line break")
        lines.append(line.encode())
    lines.append(b"content-length: %d\r\n\r\n" % length)
    return b"".join(lines)


class UpstreamResponse:
    """An answer whose status and headers arrived; its body is read with ``read`` or ``chunk``."""

    __slots__ = ("status", "content_type", "_conn", "_origin", "_pool", "_read_timeout")

    def __init__(self, conn: _Connection, origin: tuple[str, str, int], pool: _Pool,
                 read_timeout: float) -> None:
        self._conn, self._origin, self._pool, self._read_timeout = conn, origin, pool, read_timeout
        self.status = conn.status
        kind = conn.header(b"content-type").split(b";", 1)[0].strip().lower()
        self.content_type = kind.decode("latin-1") or "application/octet-stream"

    async def read(self) -> bytes:
        parts = []
        while chunk := await self.chunk():
            parts.append(chunk)
        return b"".join(parts)

    async def chunk(self) -> bytes:
        """The next bytes of the body as they arrive; b"" at its end."""
        conn = self._conn
        while True:
            if conn.body:
                return conn.take()
            if conn.error is not None:
                raise conn.error
            if conn.complete:
                return b""
            await conn.wait(self._read_timeout)

    def close(self) -> None:
        """Done with it: a finished body returns its connection to the pool, an unfinished one is dropped."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        if not conn.complete or conn.error is not None:
            conn.transport.abort()  # what is left of the answer would be read as the next one's
        elif conn.reusable:  # a lost connection never is
            self._pool.release(self._origin, conn)
        else:
            conn.transport.close()


async def post(url: str, body: bytes, headers: dict[str, str], *, connect_timeout: float,
               read_timeout: float) -> UpstreamResponse:
    """Send the request and wait for the status line and headers (the body is read by the caller)."""
    origin, start = _parsed(url)
    head = _head(start, headers, len(body))
    pool = _pool_get()
    conn = await pool.connection(origin, connect_timeout)
    try:
        conn.transport.write(head + body)
        while not conn.headers_done and conn.error is None:
            await conn.wait(read_timeout)
        if conn.error is not None:
            raise conn.error
    except BaseException:
        conn.transport.abort()
        raise
    return UpstreamResponse(conn, origin, pool, read_timeout)


async def close() -> None:
    global _pool
    if _pool is not None:
        _pool.close()
        _pool = None


RETRYABLE_STATUS = {408, 409, 429}


def answer_refused(status: int, raw: bytes) -> Exception:
    """What an upstream's error answer means for the call: a failure the next target might not have
    (408/409/429, 5xx), or the client's own error, passed on with its status and message."""
    if status in RETRYABLE_STATUS or status >= 500:
        return UpstreamFailure("status", status, f"answered {status}")
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    upstream = payload.get("error") if isinstance(payload, dict) else None
    message = (upstream.get("message") if isinstance(upstream, dict) else None) or f"Upstream answered {status}."
    err_type = (upstream.get("type") or upstream.get("status") if isinstance(upstream, dict) else None) \
        or "invalid_request_error"
    return GatewayError(status, err_type, message)
