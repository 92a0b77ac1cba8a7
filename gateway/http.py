"""Minimal raw-ASGI plumbing for the hot path (no framework: every microsecond is per request)."""

from collections.abc import Awaitable, Callable

from gateway import jsoncodec
from gateway.errors import GatewayError, invalid_request

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(receive: Receive, *, limit: int) -> bytes:
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise GatewayError(499, "client_disconnected", "The client went away.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise GatewayError(413, "request_too_large", f"Request body exceeds {limit} bytes.")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


class TrackedSend:
    """``send``, remembering whether the response has started: after that, no error response can follow."""

    __slots__ = ("send", "started")

    def __init__(self, send: Send) -> None:
        self.send, self.started = send, False

    def __call__(self, message: dict) -> Awaitable[None]:
        """The server's own awaitable, not a coroutine around it: a stream sends every event through this."""
        self.started = True
        return self.send(message)


MAX_JSON_DEPTH = 64  # deeper than any API's request needs; translation and logging walk what is accepted


def parse_json_object(raw: bytes) -> dict:
    try:
        body = jsoncodec.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_request(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:  # nested past the parser's own limit
        raise _too_deep() from None
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _depth(body) > MAX_JSON_DEPTH:
        raise _too_deep()
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.", code="invalid_json")
    return body


def _too_deep() -> GatewayError:
    return invalid_request(f"The request body nests deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json")


def _depth(value: object) -> int:
    """How deep ``value``'s arrays and objects nest (iteratively: a deep body must not exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def encode_headers(extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]


async def send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def json_response(payload: dict, extra_headers: dict[str, str] | None = None
                  ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A JSON answer's body and headers for ``send_bytes``: encoded ahead where that overlaps a wait."""
    body = jsoncodec.dumps(payload)
    return body, JSON_HEADERS + encode_headers(extra_headers or {})


async def send_json(send: Send, status: int, payload: dict, extra_headers: dict[str, str] | None = None) -> None:
    await send_bytes(send, status, *json_response(payload, extra_headers))
