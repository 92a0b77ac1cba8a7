"""A raw-ASGI server imitating upstream LLM providers, with failure injection through directives.

Routes (each also under a directive prefix): POST /v1/chat/completions, POST /v1/responses,
POST /v1/messages, POST /v1beta/models/{model}:generateContent and :streamGenerateContent?alt=sse
(also under /v1/), GET /v1/models, POST /v1/images/generations. Outside them: GET /health,
GET /_sim/requests?limit=N (the last 500 requests, newest first, keys redacted to their last 4
characters), GET /_sim/image.png. Any non-empty key passes (Authorization: Bearer, x-api-key,
x-goog-api-key or ?key=); without one the answer is a 401. Errors take the route's own shape.

Directives (see ``sim.http.Directives``) come from a path prefix (``/x/fail=500,latency_ms=20/v1/...``,
so a catalog provider's base URL can carry behaviour) and/or a top-level ``"sim"`` body object, which
wins and is removed before the request is answered (a client can pass it through the gateway with
``extra_body``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode

from sim import anthropic, gemini, images, openai_chat, responses
from sim.http import Context, Directives, Json, SimError, Sse

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handle: Callable[[dict, Context], Json | Sse]
    error: Callable[[int, str], dict]  # the route's error body shape


# google-genai uses /v1/ when given a base_url, Google's own examples /v1beta/.
GEMINI_PATH = re.compile(
    r"/v1(?:beta)?/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)"
)
ROUTES = (
    Route("POST", re.compile(r"/v1/chat/completions"), openai_chat.handle, openai_chat.error),
    Route("POST", re.compile(r"/v1/responses"), responses.handle, openai_chat.error),
    Route("POST", re.compile(r"/v1/messages"), anthropic.handle, anthropic.error),
    Route("POST", GEMINI_PATH, gemini.handle, gemini.error),
    Route("GET", re.compile(r"/v1/models"), openai_chat.list_models, openai_chat.error),
    Route("POST", re.compile(r"/v1/images/generations"), images.handle, openai_chat.error),
)
DIRECTIVE_PREFIX = re.compile(r"/x/([^/]*)(/.*)")
SECRET_HEADERS = {b"authorization", b"x-api-key", b"x-goog-api-key"}
RECENT: deque[dict[str, Any]] = deque(maxlen=500)  # newest first, for GET /_sim/requests


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    if scope["type"] != "http":
        return  # no websockets: uvicorn refuses the handshake
    path, query = scope["path"], dict(parse_qsl(scope["query_string"].decode()))
    if path == "/health":
        return await _send_json(send, Json({"ok": True}))
    if path == "/_sim/requests":
        return await _send_json(send, Json(list(RECENT)[: int(query.get("limit", len(RECENT)))]))
    if path == "/_sim/image.png":
        return await _send(send, 200, images.PNG, ((b"content-type", b"image/png"),))
    raw = await _read_body(receive)
    await _unless_disconnected(_api(scope, query, raw, send), receive)


async def _api(scope: Scope, query: dict[str, str], raw: bytes, send: Send) -> None:
    spec, path = _split_directives(scope["path"])
    body = _decode(raw)
    RECENT.appendleft(
        {
            "path": scope["path"],
            "query": _redacted_query(query),
            "body": body,
            "headers": _redacted_headers(scope["headers"]),
        }
    )
    route, match = next(((r, m) for r in ROUTES if (m := r.pattern.fullmatch(path))), (None, None))
    error = route.error if route else gemini.error if path.startswith("/v1beta/") else openai_chat.error
    directives = Directives()
    try:
        if route is None or match is None:
            raise SimError(404, f"No route for {path}.")
        if scope["method"] != route.method:
            raise SimError(405, f"{path} takes {route.method}.")
        if not _authenticated(scope["headers"], query):
            raise SimError(401, "Missing API key.")
        if not isinstance(body, dict):
            raise SimError(400, "The body is not a JSON object.")
        overrides = body.get("sim") or {}
        if not isinstance(overrides, dict):
            raise SimError(400, '"sim" must be an object of directives.')
        directives = Directives.parse({**spec, **overrides})
        body = {k: v for k, v in body.items() if k != "sim"}  # a copy: the recorded body keeps "sim"
        await asyncio.sleep(directives.latency_ms / 1000)
        if directives.hang:
            await asyncio.Future()  # never answers: the disconnect watcher ends the request
        if directives.drop:
            await _close_connection(send)
        if directives.fail:
            raise SimError(directives.fail, f"Simulated failure {directives.fail}.")
        ctx = Context(directives, match.groupdict(), query, _origin(scope))
        try:
            response = route.handle(body, ctx)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            raise SimError(400, f"Malformed request: {exc!r}.") from None
    except SimError as exc:
        headers = ((b"retry-after", b"1"),) if exc.status == 429 else ()
        response = Json(error(exc.status, exc.message), exc.status, headers)
    if isinstance(response, Json):
        await _send_json(send, response)
    else:
        await _stream(send, response, directives)


async def _stream(send: Send, stream: Sse, directives: Directives) -> None:
    headers = ((b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"))
    await send({"type": "http.response.start", "status": 200, "headers": [*headers, *stream.headers]})
    delivered = 0
    for number, event in enumerate(stream.events):
        if event.content:
            if delivered == directives.cut_after:
                await _close_connection(send)
            delivered += 1
        if number and directives.chunk_delay_ms:
            await asyncio.sleep(directives.chunk_delay_ms / 1000)
        await send({"type": "http.response.body", "body": event.data, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _close_connection(send: Send) -> NoReturn:
    """Close the TCP connection with no clean end, as a crashing upstream would.

    ASGI cannot express this, and uvicorn answers an exception raised before the response with a 500,
    so reach the transport through uvicorn's ``send``, a method of the request cycle that owns it.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise RuntimeError("drop and cut_after need uvicorn")
    transport.close()
    await asyncio.Future()  # the disconnect watcher ends the request once uvicorn notices


async def _unless_disconnected(work: Coroutine[Any, Any, None], receive: Receive) -> None:
    """Run ``work``, abandoning it when the client goes away: hung or slow answers must not linger."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    tasks = {asyncio.ensure_future(work), asyncio.ensure_future(disconnected())}
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    for task in done:
        task.result()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            return await send({"type": "lifespan.shutdown.complete"})


async def _read_body(receive: Receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _send(send: Send, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, response: Json) -> None:
    await _send(
        send,
        response.status,
        json.dumps(response.payload).encode(),
        ((b"content-type", b"application/json"), *response.headers),
    )


def _split_directives(path: str) -> tuple[dict[str, str], str]:
    """``/x/fail=500,words=3/v1/...`` → ({"fail": "500", "words": "3"}, "/v1/..."); a bare key means 1."""
    match = DIRECTIVE_PREFIX.fullmatch(path)
    if not match:
        return {}, path
    pairs = (part.partition("=") for part in match[1].split(",") if part)
    return {key: value or "1" for key, _, value in pairs}, match[2]


def _decode(raw: bytes) -> Any:
    """The JSON body ({} when empty), or its text when it is not JSON (recorded, then answered 400)."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _authenticated(headers: list[tuple[bytes, bytes]], query: dict[str, str]) -> bool:
    """Any non-empty key passes, in any provider's place for it."""
    values = dict(headers)
    scheme, _, token = values.get(b"authorization", b"").partition(b" ")
    return bool(
        (scheme.lower() == b"bearer" and token.strip())
        or values.get(b"x-api-key")
        or values.get(b"x-goog-api-key")
        or query.get("key")
    )


def _redact(secret: str) -> str:
    return "***" + secret[-4:]


def _redacted_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode(): _redact(v.decode()) if k in SECRET_HEADERS else v.decode() for k, v in headers}


def _redacted_query(query: dict[str, str]) -> str:
    return urlencode({k: _redact(v) if k == "key" else v for k, v in query.items()})


def _origin(scope: Scope) -> str:
    host = dict(scope["headers"]).get(b"host", b"127.0.0.1").decode()
    return f"{scope.get('scheme', 'http')}://{host}"
