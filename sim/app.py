"""A raw-ASGI server imitating upstream providers, with failure injection and job scripting through directives.

Routes (each also under a directive prefix), by the provider whose base URL they stand in for:
- OpenAI (``/v1``): POST /v1/chat/completions, POST /v1/responses, GET /v1/models,
  POST /v1/images/generations, POST /v1/images/edits (multipart), POST /v1/audio/speech,
  POST /v1/audio/transcriptions (multipart), POST /v1/videos (JSON or multipart), GET /v1/videos,
  GET and DELETE /v1/videos/{id}, GET /v1/videos/{id}/content?variant=video|thumbnail|spritesheet,
  POST /v1/videos/{id}/remix.
- Anthropic: POST /v1/messages, POST /v1/messages/count_tokens.
- Gemini: POST /v1beta/models/{model}:generateContent and :streamGenerateContent?alt=sse (also under /v1/);
  image models (an id containing "image" or "t2i") answer inline PNGs.
- fal's queue (``/fal`` for https://queue.fal.run): POST /fal/{owner}/{app}[/{path}][?fal_webhook=URL],
  GET /fal/{owner}/{app}/requests/{id}/status[?logs=1], GET /fal/{owner}/{app}/requests/{id},
  PUT /fal/{owner}/{app}/requests/{id}/cancel.
- RunPod (``/runpod/v2`` for https://api.runpod.ai/v2): POST /runpod/v2/{endpoint}/run,
  /runsync[?wait=ms], /cancel/{id}, /retry/{id}, /purge-queue; GET /runpod/v2/{endpoint}/status/{id},
  /stream/{id}, /health. REST (``/runpod/rest/v1`` for https://rest.runpod.io/v1): POST and GET
  /runpod/rest/v1/endpoints, GET, PATCH and DELETE /runpod/rest/v1/endpoints/{endpoint}; POST
  /runpod/rest/v1/templates, GET and DELETE /runpod/rest/v1/templates/{template}.
- Fish Audio (``/fish`` for https://api.fish.audio): POST /fish/v1/tts, POST /fish/v1/asr (multipart),
  POST /fish/model (multipart), GET and DELETE /fish/model/{id}.
Outside them: GET /health; GET /_sim/requests?limit=N (the last 500 requests, newest first, keys redacted to
their last 4 characters, uploaded files summarised); GET /_sim/clock and POST /_sim/clock {"advance_ms": N}
(``sim.clock``: moves every job on, answering once the webhooks that made due are delivered);
GET /_sim/media/{image.png|image.jpeg|image.webp|video.mp4}?width=&height=&seed=[&seconds=] (the media
that image URLs and fal results point at, regenerated from the URL).

Keys: OpenAI, Anthropic and Gemini routes take any non-empty key (Authorization: Bearer, x-api-key,
x-goog-api-key or ?key=); fal only ``Authorization: Key k``; RunPod ``Authorization: Bearer k`` or a bare
``Authorization: k``; Fish only Bearer. Without one the answer is a 401. Errors take the route's own shape.

Directives (see ``sim.http.Directives``) come from a path prefix (``/x/fail=500,latency_ms=20/v1/...``,
so a catalog provider's base URL can carry behaviour) and/or a top-level ``"sim"`` body object (in a
multipart body a ``sim`` JSON field or ``sim[name]`` fields, as the SDKs send ``extra_body``), which wins
and is removed before the request is answered; RunPod jobs also read ``input.__sim``. Job directives script
the job a request submits (``sim.jobs``, ``sim.webhooks``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode

from sim import (
    anthropic,
    audio,
    bodies,
    clock,
    fal,
    fish,
    gemini,
    images,
    media,
    openai_chat,
    responses,
    runpod,
    videos,
    webhooks,
)
from sim.http import Context, Directives, Json, Raw, SimError, Sse, sim_object

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Response = Json | Sse | Raw
# Where a request may carry its key: "bearer" (Authorization: Bearer k), "key" (Authorization: Key k, fal),
# "bare" (Authorization: k, RunPod's examples), the x-api-key and x-goog-api-key headers, ?key=.
ANY_KEY = frozenset({"bearer", "x-api-key", "x-goog-api-key", "query"})


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handle: Callable[[dict, Context], Response | Awaitable[Response]]
    error: Callable[..., dict]  # (status, message, **details): the route's error body shape
    form: bool = False  # also takes multipart/form-data (read by sim.bodies), not only JSON
    auth: frozenset[str] = ANY_KEY
    directives: Callable[[dict], tuple[dict, dict]] = sim_object  # where the body carries directives


# google-genai uses /v1/ when given a base_url, Google's own examples /v1beta/.
GEMINI_PATH = re.compile(
    r"/v1(?:beta)?/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)"
)
VIDEO = r"/v1/videos/(?P<id>[^/]+)"
FAL_APP = r"/fal/(?P<owner>[^/]+)/(?P<app>[^/]+)"
FAL_REQUEST = FAL_APP + r"/requests/(?P<id>[^/]+)"
FAL_KEY = frozenset({"key"})
RUNPOD = r"/runpod/v2/(?P<endpoint>[^/]+)"
RUNPOD_JOB = r"/(?P<id>[^/]+)"
RUNPOD_REST = r"/runpod/rest/v1/endpoints"
RUNPOD_ENDPOINT = RUNPOD_REST + r"/(?P<endpoint>[^/]+)"
RUNPOD_TEMPLATES = r"/runpod/rest/v1/templates"
BEARER = frozenset({"bearer"})


def _runpod(
    method: str, path: str, handle: Callable[[dict, Context], Response | Awaitable[Response]]
) -> Route:
    auth = frozenset({"bearer", "bare"})
    return Route(method, re.compile(path), handle, runpod.error, auth=auth, directives=runpod.directives)


ROUTES = (
    Route("POST", re.compile(r"/v1/chat/completions"), openai_chat.handle, openai_chat.error),
    Route("POST", re.compile(r"/v1/responses"), responses.handle, openai_chat.error),
    Route("POST", re.compile(r"/v1/messages"), anthropic.handle, anthropic.error),
    Route("POST", re.compile(r"/v1/messages/count_tokens"), anthropic.count, anthropic.error),
    Route("POST", GEMINI_PATH, gemini.handle, gemini.error),
    Route("GET", re.compile(r"/v1/models"), openai_chat.list_models, openai_chat.error),
    Route("POST", re.compile(r"/v1/images/generations"), images.handle, openai_chat.error),
    Route("POST", re.compile(r"/v1/images/edits"), images.edit, openai_chat.error, form=True),
    Route("POST", re.compile(r"/v1/audio/speech"), audio.speech, openai_chat.error),
    Route("POST", re.compile(r"/v1/audio/transcriptions"), audio.transcription, openai_chat.error, form=True),
    Route("POST", re.compile(r"/v1/videos"), videos.create, openai_chat.error, form=True),
    Route("GET", re.compile(r"/v1/videos"), videos.list_videos, openai_chat.error),
    Route("GET", re.compile(VIDEO), videos.retrieve, openai_chat.error),
    Route("DELETE", re.compile(VIDEO), videos.delete, openai_chat.error),
    Route("GET", re.compile(VIDEO + "/content"), videos.content, openai_chat.error),
    Route("POST", re.compile(VIDEO + "/remix"), videos.remix, openai_chat.error),
    Route("POST", re.compile(FAL_APP + r"(?:/(?P<path>.+))?"), fal.submit, fal.error, auth=FAL_KEY),
    Route("GET", re.compile(FAL_REQUEST + "/status"), fal.status, fal.error, auth=FAL_KEY),
    Route("GET", re.compile(FAL_REQUEST), fal.result, fal.error, auth=FAL_KEY),
    Route("PUT", re.compile(FAL_REQUEST + "/cancel"), fal.cancel, fal.error, auth=FAL_KEY),
    _runpod("POST", RUNPOD + "/run", runpod.run),
    _runpod("POST", RUNPOD + "/runsync", runpod.runsync),
    _runpod("GET", RUNPOD + "/status" + RUNPOD_JOB, runpod.status),
    _runpod("GET", RUNPOD + "/stream" + RUNPOD_JOB, runpod.stream),
    _runpod("POST", RUNPOD + "/cancel" + RUNPOD_JOB, runpod.cancel),
    _runpod("POST", RUNPOD + "/retry" + RUNPOD_JOB, runpod.retry),
    _runpod("POST", RUNPOD + "/purge-queue", runpod.purge_queue),
    _runpod("GET", RUNPOD + "/health", runpod.health),
    _runpod("POST", RUNPOD_REST, runpod.create_endpoint),
    _runpod("GET", RUNPOD_REST, runpod.list_endpoints),
    _runpod("GET", RUNPOD_ENDPOINT, runpod.get_endpoint),
    _runpod("PATCH", RUNPOD_ENDPOINT, runpod.update_endpoint),
    _runpod("DELETE", RUNPOD_ENDPOINT, runpod.delete_endpoint),
    _runpod("POST", RUNPOD_TEMPLATES, runpod.create_template),
    _runpod("GET", RUNPOD_TEMPLATES + r"/(?P<template>[^/]+)", runpod.get_template),
    _runpod("DELETE", RUNPOD_TEMPLATES + r"/(?P<template>[^/]+)", runpod.delete_template),
    Route("POST", re.compile(r"/fish/v1/tts"), fish.tts, fish.error, auth=BEARER),
    Route("POST", re.compile(r"/fish/v1/asr"), fish.asr, fish.error, form=True, auth=BEARER),
    Route("POST", re.compile(r"/fish/model"), fish.create_model, fish.error, form=True, auth=BEARER),
    Route("GET", re.compile(r"/fish/model/(?P<id>[^/]+)"), fish.get_model, fish.error, auth=BEARER),
    Route("DELETE", re.compile(r"/fish/model/(?P<id>[^/]+)"), fish.delete_model, fish.error, auth=BEARER),
)
DIRECTIVE_PREFIX = re.compile(r"/x/([^/]*)(/.*)")
SECRET_HEADERS = {b"authorization", b"x-api-key", b"x-goog-api-key"}
RECENT: deque[dict[str, Any]] = deque(maxlen=500)  # newest first, for GET /_sim/requests
CHUNK = 16384  # bytes per piece of a chunked (streamed) media answer


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
    if path.startswith("/_sim/media/"):
        return await _send_raw(send, _media(path.removeprefix("/_sim/media/"), query))
    raw = await _read_body(receive)
    if path == "/_sim/clock":
        return await _send_json(send, await _clock(scope["method"], raw))
    await _unless_disconnected(_api(scope, query, raw, send), receive)


async def _clock(method: str, raw: bytes) -> Json:
    """GET: the sim time; POST {"advance_ms": N}: move it on, answering once the webhooks due are sent."""
    if method == "POST":
        body = bodies.decode_json(raw)
        advance = body.get("advance_ms") if isinstance(body, dict) else None
        if not isinstance(advance, int) or advance < 0:
            return Json({"error": '"advance_ms" must be a non-negative integer.'}, 400)
        clock.advance(advance)
        await webhooks.settle()
    return Json({"now_ms": clock.now_ms()})


def _media(name: str, query: dict[str, str]) -> Raw:
    try:
        return media.serve(name, query)
    except (KeyError, ValueError) as exc:
        return Raw(f"No such media: {exc}".encode(), "text/plain", 404)


async def _api(scope: Scope, query: dict[str, str], raw: bytes, send: Send) -> None:
    spec, path = _split_directives(scope["path"])
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    content_type = headers.get("content-type", "")
    unreadable: SimError | None = None
    try:
        body = (
            bodies.decode_form(raw, content_type) if bodies.is_form(content_type) else bodies.decode_json(raw)
        )
    except SimError as exc:
        body, unreadable = raw.decode(errors="replace"), exc
    RECENT.appendleft(
        {
            "path": scope["path"],
            "query": _redacted_query(query),
            "body": bodies.summary(body),
            "headers": _redacted_headers(scope["headers"]),
        }
    )
    matches = [(r, m) for r in ROUTES if (m := r.pattern.fullmatch(path))]
    route, match = next(((r, m) for r, m in matches if r.method == scope["method"]), (None, None))
    fallback = matches[0][0].error if matches else None
    error = (
        route.error
        if route
        else fallback or (gemini.error if path.startswith("/v1beta/") else openai_chat.error)
    )
    directives = Directives()
    try:
        if not matches:
            raise SimError(404, f"No route for {path}.")
        if route is None or match is None:
            raise SimError(405, f"{path} takes {', '.join(sorted({r.method for r, _ in matches}))}.")
        if not _credentials(scope["headers"], query) & route.auth:
            raise SimError(401, "Missing API key.")
        if unreadable:
            raise unreadable
        if bodies.is_form(content_type) and not route.form:
            raise SimError(400, f"{path} takes a JSON body, not a form.")
        if not isinstance(body, dict):
            raise SimError(400, "The body is not a JSON object.")
        overrides, body = route.directives(body)
        directives = Directives.parse({**spec, **overrides})
        await asyncio.sleep(directives.latency_ms / 1000)
        if directives.hang:
            await asyncio.Future()  # never answers: the disconnect watcher ends the request
        if directives.drop:
            await _close_connection(send)
        if directives.fail:
            raise SimError(directives.fail, f"Simulated failure {directives.fail}.")
        prefix = scope["path"][: len(scope["path"]) - len(path)]
        ctx = Context(directives, match.groupdict(), query, _origin(scope), headers, prefix)
        try:
            response = route.handle(body, ctx)
            if inspect.isawaitable(response):
                response = await response
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            raise SimError(400, f"Malformed request: {exc!r}.") from None
    except SimError as exc:
        retry = ((b"retry-after", str(directives.retry_after).encode()),) if exc.status == 429 else ()
        response = Json(error(exc.status, exc.message, **exc.details), exc.status, retry)
    if isinstance(response, Json):
        await _send_json(send, response)
    elif isinstance(response, Raw):
        await _send_raw(send, response)
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
    if directives.cut_at_end:
        await _close_connection(send)
    await send({"type": "http.response.body", "body": b""})


async def _close_connection(send: Send) -> NoReturn:
    """Close the TCP connection with no clean end, as a crashing upstream would.

    ASGI cannot express this, and uvicorn answers an exception raised before the response with a 500,
    so reach the transport through uvicorn's ``send``, a method of the request cycle that owns it.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise RuntimeError("drop, cut_after and cut_at_end need uvicorn")
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
            await webhooks.start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await webhooks.stop()
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


async def _send_raw(send: Send, response: Raw) -> None:
    headers = [(b"content-type", response.content_type.encode()), *response.headers]
    if not response.chunked:
        return await _send(
            send,
            response.status,
            response.data,
            (*headers, (b"content-length", str(len(response.data)).encode())),
        )
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    for start in range(0, len(response.data), CHUNK):
        await send(
            {"type": "http.response.body", "body": response.data[start : start + CHUNK], "more_body": True}
        )
    await send({"type": "http.response.body", "body": b""})


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


def _credentials(headers: list[tuple[bytes, bytes]], query: dict[str, str]) -> set[str]:
    """Where this request carries a non-empty key (the kinds ANY_KEY names)."""
    values = dict(headers)
    scheme, _, token = values.get(b"authorization", b"").strip().partition(b" ")
    found = {"x-api-key"} if values.get(b"x-api-key") else set()
    found |= {"x-goog-api-key"} if values.get(b"x-goog-api-key") else set()
    found |= {"query"} if query.get("key") else set()
    if token.strip():
        found.add(scheme.decode("latin-1").lower())
    elif scheme:
        found.add("bare")
    return found


def _redact(secret: str) -> str:
    return "***" + secret[-4:]


def _redacted_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode(): _redact(v.decode()) if k in SECRET_HEADERS else v.decode() for k, v in headers}


def _redacted_query(query: dict[str, str]) -> str:
    return urlencode({k: _redact(v) if k == "key" else v for k, v in query.items()})


def _origin(scope: Scope) -> str:
    host = dict(scope["headers"]).get(b"host", b"127.0.0.1").decode()
    return f"{scope.get('scheme', 'http')}://{host}"
