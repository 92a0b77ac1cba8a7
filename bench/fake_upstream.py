"""A fake OpenAI-compatible upstream that is never the bottleneck of the benchmark.

A raw asyncio protocol (on uvloop when installed) serving precomputed bytes: no framework, no JSON
encoding per request, HTTP/1.1 keep-alive, 0 ms latency. It answers

- ``POST /v1/chat/completions`` non-stream: a fixed small completion with a ``usage`` block;
- ``POST /v1/chat/completions`` with ``"stream": true``: exactly 20 content chunks, a finish chunk, a
  usage chunk when ``stream_options.include_usage`` is true, then ``data: [DONE]`` -- as chunked
  transfer encoding, one HTTP chunk per SSE event like a real upstream. By default each event is its
  own socket write (``--stream-writes event``), yielding to the event loop between them; ``single``
  sends the whole stream in one write;
- ``GET /health``: 200; ``GET /stats``: how many chat completions it answered (``{"chat": N}``).

Run: ``python bench/fake_upstream.py --port 9200``.
"""

import argparse
import asyncio
import json
import socket

CONTENT_CHUNKS = 20
PROMPT_TOKENS, COMPLETION_TOKENS = 12, 20
MODEL = "bench-upstream"
CREATED = 1_700_000_000


def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _response(status: str, content_type: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\ncontent-type: "
        + content_type
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


COMPLETION = _json(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the fake upstream."},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        },
    }
)
NONSTREAM_RESPONSE = _response("200 OK", b"application/json", COMPLETION)
HEALTH_RESPONSE = _response("200 OK", b"application/json", b'{"status":"ok"}')
NOT_FOUND_RESPONSE = _response("404 Not Found", b"application/json", b'{"error":{"message":"not found"}}')
BAD_REQUEST_RESPONSE = _response(
    "400 Bad Request",
    b"application/json",
    b'{"error":{"message":"invalid JSON","type":"invalid_request_error"}}',
)
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def _chunk(payload: bytes) -> bytes:
    """One SSE event framed as one HTTP/1.1 chunk."""
    event = b"data: " + payload + b"\n\n"
    return format(len(event), "x").encode() + b"\r\n" + event + b"\r\n"


def _stream_chunk(delta: dict, finish_reason=None) -> bytes:
    return _chunk(
        _json(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": MODEL,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
        )
    )


CONTENT_EVENTS = [
    _stream_chunk({"role": "assistant", "content": "tok00 "} if i == 0 else {"content": f"tok{i:02d} "})
    for i in range(CONTENT_CHUNKS)
]
FINISH_EVENT = _stream_chunk({}, "stop")
USAGE_EVENT = _chunk(
    _json(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "choices": [],
            "usage": {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": COMPLETION_TOKENS,
                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            },
        }
    )
)
DONE_EVENT = _chunk(b"[DONE]")
LAST_CHUNK = b"0\r\n\r\n"
STREAM_WITH_USAGE = [STREAM_HEAD, *CONTENT_EVENTS, FINISH_EVENT, USAGE_EVENT, DONE_EVENT + LAST_CHUNK]
STREAM_WITHOUT_USAGE = [STREAM_HEAD, *CONTENT_EVENTS, FINISH_EVENT, DONE_EVENT + LAST_CHUNK]

MAX_HEAD = 64 * 1024


class UpstreamProtocol(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; requests are answered in order (pipelining-safe)."""

    split_writes = True
    answered = 0  # chat completions answered by this process, for GET /stats

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False  # a stream is being written; later requests wait their turn

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._process()

    def _process(self) -> None:
        buf = self.buffer
        while self.transport is not None and not self.busy:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self.transport.close()
                return
            head = bytes(buf[:end]).split(b"\r\n")
            try:
                method, path, _ = head[0].split(b" ", 2)
            except ValueError:
                self.transport.close()
                return
            length, close = 0, False
            for line in head[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            if len(buf) < end + 4 + length:
                return
            body = bytes(buf[end + 4 : end + 4 + length])
            del buf[: end + 4 + length]
            self._answer(method, path.split(b"?", 1)[0], body, close)

    def _answer(self, method: bytes, path: bytes, body: bytes, close: bool) -> None:
        transport = self.transport
        if method == b"POST" and path.endswith(b"/chat/completions"):
            UpstreamProtocol.answered += 1
            if b'"stream"' in body:  # the cheap test first: only streams say "stream"
                try:
                    request = json.loads(body)
                except ValueError:
                    request = None
                if not isinstance(request, dict):
                    transport.write(BAD_REQUEST_RESPONSE)
                elif request.get("stream"):
                    usage = bool((request.get("stream_options") or {}).get("include_usage"))
                    parts = STREAM_WITH_USAGE if usage else STREAM_WITHOUT_USAGE
                    if self.split_writes:
                        self.busy = True
                        asyncio.ensure_future(self._stream(parts, close))
                        return
                    transport.write(b"".join(parts))
                else:
                    transport.write(NONSTREAM_RESPONSE)
            else:
                transport.write(NONSTREAM_RESPONSE)
        elif method == b"GET" and path == b"/health":
            transport.write(HEALTH_RESPONSE)
        elif method == b"GET" and path == b"/stats":
            transport.write(
                _response("200 OK", b"application/json", _json({"chat": UpstreamProtocol.answered}))
            )
        else:
            transport.write(NOT_FOUND_RESPONSE)
        if close:
            transport.close()

    async def _stream(self, parts: list[bytes], close: bool) -> None:
        try:
            for part in parts:
                if self.transport is None:
                    return
                self.transport.write(part)
                await asyncio.sleep(0)  # 0 ms latency, but each event leaves as its own write
        finally:
            self.busy = False
        if self.transport is not None:
            if close:
                self.transport.close()
            elif self.buffer:
                self._process()


async def serve(host: str, port: int, ready=None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamProtocol, host, port, backlog=4096, reuse_address=True)
    if ready is not None:
        ready()
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument(
        "--stream-writes",
        choices=("event", "single"),
        default="event",
        help="one socket write per SSE event (default) or the whole stream in one write",
    )
    args = parser.parse_args()
    UpstreamProtocol.split_writes = args.stream_writes == "event"
    try:
        import uvloop
    except ImportError:
        uvloop = None
    if uvloop is not None:
        uvloop.run(serve(args.host, args.port))
    else:
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
