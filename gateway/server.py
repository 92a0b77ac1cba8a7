"""The gateway's HTTP protocol: uvicorn's httptools protocol with the deadlines a public endpoint needs.

uvicorn closes a connection left idle after a response, but not one that never sends a byte, nor one
that trickles its headers or body (slowloris), nor one whose client stopped reading a stream (the send
waits for the socket to drain for ever, holding the upstream and the reservation), and it does not cap
connections per address. Serve with ``uvicorn --http gateway.server:GatewayHttp``; the limits are the
``HYPEREAL`` settings ``*_TIMEOUT_SECONDS`` and ``MAX_CONNECTIONS_PER_CLIENT``.
"""

import asyncio
import json
from collections import Counter

from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Connections this process holds open per peer address.
_open_by_client: Counter[str] = Counter()


def _response(status: str, code: str, message: str, extra: bytes = b"") -> bytes:
    body = json.dumps({"error": {"message": message, "type": code, "code": code}}).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n").encode() + extra + b"\r\n" + body


TOO_MANY = _response("503 Service Unavailable", "too_many_connections",
                     "Too many connections from this address; reuse one or wait for others to close.",
                     b"retry-after: 1\r\n")
TOO_SLOW = _response("408 Request Timeout", "request_timeout", "The request did not arrive in time.")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _HeadWithBody:
    """The transport as one response sees it: its status line and headers wait for its first body bytes,
    until the event loop's next turn at most, so both leave in one write: a syscall and a wake-up of the
    client fewer per response, and never a delay an application could notice."""

    __slots__ = ("transport", "loop", "head", "started")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport, self.loop = transport, loop
        self.head: bytes | None = None
        self.started = False

    def write(self, data: bytes) -> None:
        if self.head is not None:
            data, self.head = self.head + data, None
        elif not self.started and data != CONTINUE:  # the interim 100 is not the response's head
            self.started, self.head = True, data
            self.loop.call_soon(self.flush)
            return
        self.transport.write(data)

    def flush(self) -> None:
        if self.head is not None and not self.transport.is_closing():
            head, self.head = self.head, None
            self.transport.write(head)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


class GatewayHttp(HttpToolsProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        limits = settings.HYPEREAL
        self.timeout_keep_alive = limits["IDLE_TIMEOUT_SECONDS"]
        self.header_timeout = limits["HEADER_TIMEOUT_SECONDS"]
        self.body_timeout = limits["BODY_TIMEOUT_SECONDS"]
        self.send_timeout = limits["SEND_TIMEOUT_SECONDS"]
        self.max_per_client = limits["MAX_CONNECTIONS_PER_CLIENT"]
        self.counted_as: str | None = None
        self.read_deadline: asyncio.TimerHandle | None = None
        self.send_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        host = self.client[0] if self.client else None
        if self.max_per_client and host is not None:
            if _open_by_client[host] >= self.max_per_client:
                transport.write(TOO_MANY)
                transport.close()
                return
            _open_by_client[host] += 1
            self.counted_as = host
        # Until its first byte a new connection is idle like one between requests (data_received disarms).
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read()
        self._disarm_send()
        if self.counted_as is not None:
            _open_by_client[self.counted_as] -= 1
            if not _open_by_client[self.counted_as]:
                del _open_by_client[self.counted_as]
            self.counted_as = None
        super().connection_lost(exc)

    # Reading a request: headers within header_timeout of its first byte, then the body within body_timeout.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_read(self.header_timeout)

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        self._arm_read(self.body_timeout)
        if self.cycle is not previous:  # a new request's (an upgrade has none)
            self.cycle.transport = _HeadWithBody(self.transport, self.loop)

    def on_message_complete(self) -> None:
        self._disarm_read()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm_read()  # the websocket protocol takes the transport over
        super().handle_websocket_upgrade()

    def _arm_read(self, seconds: float) -> None:
        self._disarm_read()
        if seconds:
            self.read_deadline = self.loop.call_later(seconds, self._read_too_slow)

    def _disarm_read(self) -> None:
        if self.read_deadline is not None:
            self.read_deadline.cancel()
            self.read_deadline = None

    def _read_too_slow(self) -> None:
        self.read_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(TOO_SLOW)
        self.transport.close()  # the application, if it was waiting for the body, sees a disconnect

    # Writing a response: the transport pauses us when the client stops reading; give it send_timeout.
    def pause_writing(self) -> None:
        super().pause_writing()
        if self.send_timeout and self.send_deadline is None:
            self.send_deadline = self.loop.call_later(self.send_timeout, self._not_reading)

    def resume_writing(self) -> None:
        self._disarm_send()
        super().resume_writing()

    def _disarm_send(self) -> None:
        if self.send_deadline is not None:
            self.send_deadline.cancel()
            self.send_deadline = None

    def _not_reading(self) -> None:
        self.send_deadline = None
        # Abort drops what is buffered: the pending send returns, the call sees a disconnect and is
        # billed like any client that left mid-stream.
        self.transport.abort()
