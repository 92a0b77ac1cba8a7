"""Slow and idle clients against a real gateway process: deadlines, the per-address cap, slow readers.

Attackers connect from 127.0.0.5 (a loopback address of its own), probes from 127.0.0.2: the cap counts
per address, so the probes show what an honest client meets meanwhile.
"""

import json
import socket
import time

import httpx
import pytest

from tests.live import start_gateway, stop_process
from tests.test_chat_completions import balance
from usage.models import RequestLog

ATTACKER, PROBE = "127.0.0.5", "127.0.0.2"
IDLE, HEADER, BODY, SEND, CAP = 2, 2, 2, 1, 8


@pytest.fixture(scope="module")
def guarded_gateway(demo_catalog, redis_client):
    url, proc = start_gateway(HYPEREAL_IDLE_TIMEOUT_SECONDS=str(IDLE), HYPEREAL_HEADER_TIMEOUT_SECONDS=str(HEADER),
                              HYPEREAL_BODY_TIMEOUT_SECONDS=str(BODY), HYPEREAL_SEND_TIMEOUT_SECONDS=str(SEND),
                              HYPEREAL_MAX_CONNECTIONS_PER_CLIENT=str(CAP))
    yield url
    stop_process(proc)


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def connect(url: str, source: str = ATTACKER, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:  # before connecting, so the advertised window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.connect(address(url))
    return sock


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    sock.settimeout(limit)
    started, received = time.monotonic(), b""
    while chunk := sock.recv(65536):
        received += chunk
    return received, time.monotonic() - started


def probe(url: str) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=PROBE), timeout=5) as http:
        return http.get(f"{url}/health")


def test_connections_left_idle_are_closed(guarded_gateway):
    opened = time.monotonic()
    silent = [connect(guarded_gateway) for _ in range(5)]  # opened, never used
    used = connect(guarded_gateway)
    used.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")
    for sock in [*silent, used]:
        received, _ = read_until_closed(sock, IDLE + 5)
        assert IDLE * 0.8 <= time.monotonic() - opened <= IDLE + 3, "closed after the idle timeout, not before"
        assert received.startswith(b"HTTP/1.1 200") if sock is used else not received
        sock.close()


def test_headers_trickled_byte_by_byte_get_408_in_time(guarded_gateway):
    sock = connect(guarded_gateway)
    sock.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: gw\r\n")
    sock.settimeout(0.3)
    started, received = time.monotonic(), b""
    while time.monotonic() - started < HEADER + 5:  # one more header line every 0.3 s, as slowloris does
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            sock.sendall(b"X-Slow: 1\r\n")
            continue
        received += chunk
        if not chunk:
            break
    took = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert json.loads(received.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "request_timeout"
    assert HEADER * 0.8 <= took <= HEADER + 3
    assert probe(guarded_gateway).status_code == 200


def test_a_body_that_stops_arriving_gets_408(guarded_gateway, account):
    sock = connect(guarded_gateway)
    sock.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + account.key.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"model\":")
    received, took = read_until_closed(sock, BODY + 5)
    assert received.startswith(b"HTTP/1.1 408") and BODY * 0.8 <= took <= BODY + 3


def test_one_address_holds_at_most_the_cap(guarded_gateway):
    held = [connect(guarded_gateway) for _ in range(CAP)]
    extra = connect(guarded_gateway)
    received, _ = read_until_closed(extra, 5)
    assert received.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in received.lower()
    assert json.loads(received.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "too_many_connections"
    assert probe(guarded_gateway).status_code == 200, "another address is not affected"

    held.pop().close()
    deadline = time.monotonic() + 5
    while True:  # the server frees the slot once it sees the close
        again = connect(guarded_gateway)
        again.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        answer, _ = read_until_closed(again, 5)
        again.close()
        if answer.startswith(b"HTTP/1.1 200"):
            break
        assert time.monotonic() < deadline, "a closed connection's slot was never given back"
    for sock in held:
        sock.close()


def test_a_client_that_stops_reading_its_stream_is_dropped_and_billed(guarded_gateway, account):
    words = 60_000  # several megabytes of events: more than the socket buffers hold
    body = json.dumps({"model": "gpt-5.4-mini", "stream": True, "max_completion_tokens": words + 10,
                       "messages": [{"role": "user", "content": "Say a lot"}], "sim": {"words": words}}).encode()
    sock = connect(guarded_gateway, rcvbuf=4096)
    sock.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + account.key.encode() + b"\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\n\r\n" + body)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1024)
    request_id = head.split(b"x-request-id: ")[1].split(b"\r\n")[0].decode()
    # ...and read no more. The server gives up on us after SEND seconds; meanwhile others are served.
    assert probe(guarded_gateway).status_code == 200

    deadline = time.monotonic() + SEND + 15
    while not RequestLog.objects.filter(request_id=request_id).exists():
        assert time.monotonic() < deadline, "the stalled stream was never ended"
        balance(guarded_gateway, account.key)
    sock.close()
    log = RequestLog.objects.get(request_id=request_id)
    assert log.status == 499 and log.error_type == "client_disconnected"
    assert 0 < log.output_tokens < words and log.cost > 0, "what was sent is billed; the rest never produced"
