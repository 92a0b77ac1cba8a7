"""The gateway's routes and lifecycle, mounted in front of Django by hypereal.asgi."""

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable

from gateway import quota, redis, upstream
from gateway.call import new_request_id
from gateway.catalog import catalog, catalog_refresh_forever
from gateway.endpoints import chat_completions, count_tokens, gemini, gemini_generate, messages, responses
from gateway.errors import GatewayError
from gateway.formats.anthropic import ANTHROPIC
from gateway.formats.base import WireFormat
from gateway.formats.chat import CHAT
from gateway.formats.gemini import GEMINI
from gateway.http import JSON_HEADERS, Receive, Scope, Send, TrackedSend, send_json
from gateway.info import credits, current_key, list_models
from gateway.metering import meter

log = logging.getLogger(__name__)
Handler = Callable[..., Awaitable[None]]  # (scope, receive, send, **path parameters)
Methods = dict[str, Handler]
API_PREFIXES = ("/api/v1", "/v1")  # every route under /api/v1, mirrored under /v1 for SDKs that expect it

_exact: dict[str, Methods] = {}
_patterns: list[tuple[re.Pattern[str], Methods]] = []
_django_served: list[str] = []  # API paths (with their subpaths) that Django's views answer, not the gateway
_NO_PARAMS: dict[str, str] = {}  # shared, never mutated: dispatch unpacks it into keyword arguments


def route_add(path: str, handlers: Methods) -> None:
    """Serve ``path`` (under each of API_PREFIXES) ahead of Django. Apps above the gateway (gpu) register
    their model-API routes here, from their AppConfig.ready()."""
    for prefix in API_PREFIXES:
        _exact.setdefault(prefix + path, {}).update(handlers)


def route_add_pattern(pattern: str, handlers: Methods) -> None:
    """A route with parameters: a regular expression over the whole path, whose named groups are passed
    to the handler as keyword arguments (tried only when no exact path matches)."""
    _patterns.append((re.compile(pattern), handlers))


def route_to_django(path: str) -> None:
    """Leave ``path`` and everything under it (under each of API_PREFIXES) to Django: apps above the
    gateway serve management endpoints there (gpu's /v1/deployments), which the API's JSON 404 must not
    swallow."""
    _django_served.extend(prefix + path for prefix in API_PREFIXES)


def route_for(path: str) -> tuple[Methods, dict[str, str]] | None:
    if methods := _exact.get(path):
        return methods, _NO_PARAMS
    for pattern, methods in _patterns:
        if match := pattern.fullmatch(path):
            return methods, match.groupdict()
    if path.startswith(NOT_FOUND_PREFIXES) and not _served_by_django(path) or _moved(path):
        return _NOT_FOUND, {"path": path}
    return None  # Django's


# Every path under these is the model API's: one it does not serve is a JSON 404, never Django's HTML page.
NOT_FOUND_PREFIXES = tuple(prefix + "/" for prefix in (*API_PREFIXES, "/v1beta"))
GEMINI_MARKERS = ("/v1beta/", "/gemini", ":generateContent", ":streamGenerateContent")


def _served_by_django(path: str) -> bool:
    return any(path == served or path.startswith(served + "/") for served in _django_served)


def _moved(path: str) -> str | None:
    """The model API path a client meant when its base URL lacks the /v1 or has it twice (the Anthropic SDK
    and Claude Code append /v1/messages to theirs; AI SDK's createAnthropic appends only /messages)."""
    if path.startswith("/api/") and not path.startswith("/api/v1/"):
        candidate = "/api/v1" + path.removeprefix("/api")
    elif "/v1/v1/" in path:
        candidate = path.replace("/v1/v1/", "/v1/", 1)
    else:
        return None
    return candidate if candidate in _exact or any(p.fullmatch(candidate) for p, _ in _patterns) else None


def _api_of(path: str) -> WireFormat:
    """The API a path falls under, whose clients read errors in its shape."""
    if "/messages" in path:
        return ANTHROPIC
    return GEMINI if any(marker in path for marker in GEMINI_MARKERS) else CHAT


async def not_found(scope: Scope, receive: Receive, send: Send, path: str) -> None:
    meant = _moved(path)
    hint = f" Did you mean {meant}? Check the base URL your client is given (README, Clients)." if meant else \
        " The endpoints are listed in the README; models at GET /v1/models."
    err = GatewayError(404, "not_found_error", f"No endpoint {scope['method']} {path}.{hint}", "not_found")
    await send_json(send, 404, _api_of(path).error_body(err))


async def api_root(scope: Scope, receive: Receive, send: Send) -> None:
    """What clients probe before they call (Claude Code sends HEAD /api): 200, and where the models are."""
    body = b'{"object":"api","name":"Hypereal","models":"/v1/models"}'
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


_NOT_FOUND: Methods = dict.fromkeys(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"), not_found)


async def dispatch(scope: Scope, receive: Receive, send: Send, route: tuple[Methods, dict[str, str]]) -> None:
    methods, params = route
    if (handler := methods.get(scope["method"])) is None:
        allowed = ", ".join(methods)
        err = GatewayError(405, "invalid_request_error", f"Use {allowed} for this endpoint.", "method_not_allowed")
        return await send_json(send, 405, _api_of(scope["path"]).error_body(err), {"allow": allowed})
    tracked = TrackedSend(send)
    try:
        await handler(scope, receive, tracked, **params)
    except Exception as exc:  # the last resort: a bug or an outage the handler did not expect
        if tracked.started:
            raise  # the answer is under way: the server can only end the connection
        await _unexpected(scope, send, exc)


async def _unexpected(scope: Scope, send: Send, exc: Exception) -> None:
    """A 500 (503 for an unavailable database) in the API's shape, whose request id finds the traceback."""
    request_id = new_request_id()
    if isinstance(exc, GatewayError):
        err = exc
        log.warning("%s %s answered %s outside its handler (%s)", scope["method"], scope["path"], err.status,
                    request_id)
    else:
        err = GatewayError(500, "api_error", f"Hypereal failed to handle this request (request id {request_id}); "
                           "it has been logged.", "internal_error")
        log.exception("unexpected error on %s %s (%s)", scope["method"], scope["path"], request_id)
    await send_json(send, err.status, _api_of(scope["path"]).error_body(err),
                    {**err.headers, "x-request-id": request_id})


route_add("/chat/completions", {"POST": chat_completions})
route_add("/messages", {"POST": messages})
route_add("/messages/count_tokens", {"POST": count_tokens})
route_add("/responses", {"POST": responses})
route_add("/gemini", {"POST": gemini})
route_add("/models", {"GET": list_models})
route_add("/credits", {"GET": credits})
route_add("/key", {"GET": current_key})
for root in ("/api", "/api/v1", "/v1", "/v1beta"):
    _exact[root] = _exact[root + "/"] = {"GET": api_root, "HEAD": api_root}
# google-genai's own paths (it appends /v1beta/models/… to its base URL; /v1/… with api_version="v1").
route_add_pattern(r"(?:/api)?/v1(?:beta)?/models/(?P<model>[^/:]+):(?P<method>generateContent|"
                  r"streamGenerateContent)", {"POST": gemini_generate})


class Lifecycle:
    """Background work of one gateway process: catalog refresh and metering flush."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task] = []

    async def startup(self) -> None:
        await catalog()
        await meter.start()
        self._tasks = [asyncio.create_task(catalog_refresh_forever()), asyncio.create_task(meter.run_forever())]

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await quota.flush()
        await meter.stop()  # nothing served goes unbilled
        await upstream.close()
        await redis.close()
