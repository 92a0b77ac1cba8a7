"""The gateway's routes and lifecycle, mounted in front of Django by hypereal.asgi."""

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable

from gateway import quota, redis, upstream
from gateway.catalog import catalog, catalog_refresh_forever
from gateway.endpoints import chat_completions, gemini, gemini_generate, messages, responses
from gateway.errors import GatewayError, openai_error_body
from gateway.http import Receive, Scope, Send, send_json
from gateway.info import credits, current_key, list_models
from gateway.metering import meter

log = logging.getLogger(__name__)
Handler = Callable[..., Awaitable[None]]  # (scope, receive, send, **path parameters)
Methods = dict[str, Handler]
API_PREFIXES = ("/api/v1", "/v1")  # every route under /api/v1, mirrored under /v1 for SDKs that expect it

_exact: dict[str, Methods] = {}
_patterns: list[tuple[re.Pattern[str], Methods]] = []
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


def route_for(path: str) -> tuple[Methods, dict[str, str]] | None:
    if methods := _exact.get(path):
        return methods, _NO_PARAMS
    for pattern, methods in _patterns:
        if match := pattern.fullmatch(path):
            return methods, match.groupdict()
    return None


async def dispatch(scope: Scope, receive: Receive, send: Send, route: tuple[Methods, dict[str, str]]) -> None:
    methods, params = route
    if (handler := methods.get(scope["method"])) is None:
        allowed = ", ".join(methods)
        err = GatewayError(405, "invalid_request_error", f"Use {allowed} for this endpoint.", "method_not_allowed")
        return await send_json(send, 405, openai_error_body(err), {"allow": allowed})
    await handler(scope, receive, send, **params)


route_add("/chat/completions", {"POST": chat_completions})
route_add("/messages", {"POST": messages})
route_add("/responses", {"POST": responses})
route_add("/gemini", {"POST": gemini})
route_add("/models", {"GET": list_models})
route_add("/credits", {"GET": credits})
route_add("/key", {"GET": current_key})
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
