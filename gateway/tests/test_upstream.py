"""The upstream HTTP client, against real servers on loopback that write exactly the bytes under test."""

import asyncio
import gzip
import ssl
import time
from collections.abc import Awaitable, Callable

import pytest
import trustme
from aiohttp import web

from gateway import upstream
from gateway.upstream import UpstreamFailure

pytestmark = pytest.mark.no_services

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """Reads each request (head and Content-Length body) and lets ``answer`` write what goes back."""

    def __init__(self, answer: Answer, tls: ssl.SSLContext | None = None) -> None:
        self.answer, self.tls = answer, tls
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> "Server":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await upstream.close()

    def url(self, path: str = "/v1/chat/completions", host: str = "127.0.0.1") -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                await self.answer(request, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def ok(body: bytes, *extra: bytes) -> Answer:
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\n"
                     + b"".join(extra) + b"content-length: %d\r\n\r\n" % len(body) + body)
    return answer


async def post(server: Server, body: bytes = b"{}", timeout: float = 5,
               **headers: str) -> upstream.UpstreamResponse:
    return await upstream.post(server.url(), body, {"content-type": "application/json", **headers},
                               connect_timeout=timeout, read_timeout=timeout)


async def read(server: Server, **kwargs) -> bytes:
    response = await post(server, **kwargs)
    try:
        return await response.read()
    finally:
        response.close()


async def fails_after(response: upstream.UpstreamResponse, first: bytes) -> str:
    """The kind of failure a body ends in once ``first`` (its only bytes) arrived; the response is closed."""
    try:
        assert await response.chunk() == first
        with pytest.raises(UpstreamFailure) as failure:
            await response.chunk()
        return failure.value.kind
    finally:
        response.close()


def test_a_finished_answer_leaves_its_connection_for_the_next_call():
    async def calls() -> None:
        async with Server(ok(b'{"ok":true}')) as server:
            for _ in range(3):
                response = await post(server, b'{"model":"m"}', authorization="Bearer sk-1")
                assert (response.status, response.content_type) == (200, "application/json")
                assert await response.read() == b'{"ok":true}'
                response.close()
            assert server.connections == 1
            head, _, body = server.requests[0].partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            assert lines[0] == b"POST /v1/chat/completions HTTP/1.1" and body == b'{"model":"m"}'
            assert {b"host: 127.0.0.1:%d" % server.port, b"content-length: 13", b"authorization: Bearer sk-1",
                    b"accept-encoding: gzip, deflate"} <= set(lines)

    asyncio.run(calls())


def test_a_chunked_stream_arrives_as_it_is_written_and_ends_with_its_last_chunk():
    async def calls() -> None:
        more = asyncio.Event()

        async def answer(request: bytes, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                         b"transfer-encoding: chunked\r\n\r\n7\r\ndata: 1\r\n")
            await more.wait()
            writer.write(b"7\r\ndata: 2\r\n7\r\ndata: 3\r\n0\r\n\r\n")

        async with Server(answer) as server:
            response = await post(server)
            assert response.content_type == "text/event-stream"
            assert await response.chunk() == b"data: 1"  # before the rest was even written
            more.set()
            rest = b""
            while chunk := await response.chunk():
                rest += chunk
            assert rest == b"data: 2data: 3"
            response.close()
            more.clear()
            response = await post(server)
            assert await response.chunk() == b"data: 1" and server.connections == 1
            response.close()  # unfinished: dropped, not pooled

    asyncio.run(calls())


def test_an_answer_that_ends_with_its_connection_is_read_whole_and_the_connection_not_reused():
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: application/json\r\n\r\n{\"a\":")
        await writer.drain()
        writer.write(b"1}")
        writer.close()

    async def calls() -> None:
        async with Server(answer) as server:
            assert await read(server) == b'{"a":1}'
            assert await read(server) == b'{"a":1}'
            assert server.connections == 2

    asyncio.run(calls())


def test_bytes_after_an_answer_leave_the_answer_whole_and_its_connection_unused():
    async def answer_and_more(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\none"
                     b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\ntwo")

    async def calls() -> None:
        async with Server(answer_and_more) as server:
            assert await read(server) == b"one"
            assert await read(server) == b"one"  # not "two", the stray answer left on the first connection
            assert server.connections == 2

    asyncio.run(calls())


def test_a_gzip_answer_is_decoded():
    body = b'{"text":"' + b"hello " * 500 + b'"}'

    async def calls() -> None:
        async with Server(ok(gzip.compress(body), b"content-encoding: gzip\r\n")) as server:
            assert await read(server) == body

    asyncio.run(calls())


def test_an_interim_100_continue_is_not_taken_for_the_answer():
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok")

    async def calls() -> None:
        async with Server(answer) as server:
            response = await post(server)
            assert (response.status, await response.read()) == (201, b"ok")
            response.close()

    asyncio.run(calls())


def test_a_connection_the_upstream_closed_while_idle_is_not_used_again():
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # a keep-alive timeout on the upstream's side, right after its answer

    async def calls() -> None:
        async with Server(answer) as server:
            assert await read(server) == b"ok"
            conn = upstream._pool_get().idle[("http", "127.0.0.1", server.port)][-1]
            closed, lost = asyncio.Event(), conn.connection_lost
            conn.connection_lost = lambda exc: (lost(exc), closed.set())
            if not conn.lost:
                await asyncio.wait_for(closed.wait(), 5)
            assert await read(server) == b"ok"
            assert server.connections == 2

    asyncio.run(calls())


def test_past_the_connection_cap_a_call_waits_for_a_connection_to_come_free(monkeypatch):
    monkeypatch.setattr(upstream, "MAX_CONNECTIONS", 1)

    async def calls() -> None:
        more = asyncio.Event()

        async def answer(request: bytes, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            await more.wait()
            writer.write(b"4\r\nlast\r\n0\r\n\r\n")

        async with Server(answer) as server, Server(ok(b"other")) as other:
            held = await post(server)
            assert await held.chunk() == b"first"
            with pytest.raises(UpstreamFailure) as failure:  # none comes free within its connect timeout
                await post(other, timeout=0.2)
            assert failure.value.kind == "timeout" and other.connections == 0
            waiting = asyncio.ensure_future(read(other))
            more.set()
            assert await held.chunk() == b"last" and await held.chunk() == b""
            held.close()  # idle now: closed to make room for the other origin
            assert await waiting == b"other"
            assert (server.connections, other.connections) == (1, 1)

    asyncio.run(calls())


def test_an_upstream_that_stops_answering_fails_the_call_as_a_timeout():
    async def headers_then_nothing(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await asyncio.sleep(30)

    async def nothing(request: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async def calls() -> None:
        async with Server(nothing) as server:
            started = time.monotonic()
            with pytest.raises(UpstreamFailure) as failure:
                await post(server, timeout=0.2)
            assert failure.value.kind == "timeout" and time.monotonic() - started >= 0.2  # never early
        async with Server(headers_then_nothing) as server:
            assert await fails_after(await post(server, timeout=0.2), b"first") == "timeout"

    asyncio.run(calls())


def test_a_body_cut_short_is_a_failure_after_what_did_arrive():
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    async def calls() -> None:
        async with Server(answer) as server:
            assert await fails_after(await post(server), b"partial") == "connect"

    asyncio.run(calls())


def test_no_server_is_a_connect_failure():
    async def calls() -> None:
        async with Server(ok(b"")) as server:
            server.server.close()
            await server.server.wait_closed()
            with pytest.raises(UpstreamFailure) as failure:
                await post(server)
            assert failure.value.kind == "connect"

    asyncio.run(calls())


def test_a_header_value_with_a_line_break_is_never_written():
    async def calls() -> None:
        async with Server(ok(b"{}")) as server:
            with pytest.raises(UpstreamFailure):
                await post(server, authorization="Bearer sk-1\r\nx-injected: 1")
            assert server.requests == []

    asyncio.run(calls())


def test_tls_upstreams_are_verified_against_the_system_authorities(tmp_path, monkeypatch):
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_tls)

    async def calls() -> None:
        async with Server(ok(b'{"tls":true}'), tls=server_tls) as server:
            with pytest.raises(UpstreamFailure) as failure:  # an authority this machine does not trust
                await upstream.post(server.url(host="localhost"), b"{}", {}, connect_timeout=5,
                                    read_timeout=5)
            assert failure.value.kind == "connect"
            await upstream.close()
            ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
            monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
            response = await upstream.post(server.url(host="localhost"), b"{}", {}, connect_timeout=5,
                                           read_timeout=5)
            assert await response.read() == b'{"tls":true}'
            response.close()

    asyncio.run(calls())


def test_a_cookie_an_upstream_sets_is_never_sent_back():
    """One client carries every organization's calls: a cookie one answer sets (a load balancer's, a bot
    check's) must not ride on the next call, whoever makes it."""
    seen = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("affinity", "organization-a")
        return response

    async def calls() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "localhost", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            for _ in range(2):
                response = await upstream.post(f"http://localhost:{port}/v1/chat/completions", b"{}",
                                               {"content-type": "application/json"}, connect_timeout=5,
                                               read_timeout=5)
                assert response.status == 200 and await response.read()
                response.close()
        finally:
            await upstream.close()
            await runner.cleanup()

    asyncio.run(calls())
    assert seen == [None, None]
