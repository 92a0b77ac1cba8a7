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
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

_ROUTES = {
    "/chat/completions": ("POST", chat_completions),
    "/messages": ("POST", messages),
    "/responses": ("POST", responses),
    "/gemini": ("POST", gemini),
    "/models": ("GET", list_models),
    "/credits": ("GET", credits),
    "/key": ("GET", current_key),
}
# Every route under /api/v1 and mirrored under /v1 for SDKs that expect it.
ROUTES = {prefix + path: route for path, route in _ROUTES.items() for prefix in ("/api/v1", "/v1")}
# google-genai's own paths (it appends /v1beta/models/… to its base URL; /v1/… with api_version="v1").
GEMINI_PATH = re.compile(r"(?:/api)?/v1(?:beta)?/models/(?P<model>[^/:]+):(?P<method>generateContent|"
                         r"streamGenerateContent)")


def route_for(path: str) -> tuple[str, Handler] | None:
    if route := ROUTES.get(path):
        return route
    if ":" in path and (match := GEMINI_PATH.fullmatch(path)):
        model, method = match["model"], match["method"]

        async def generate(scope: Scope, receive: Receive, send: Send) -> None:
            await gemini_generate(scope, receive, send, model, method)
        return "POST", generate
    return None


async def dispatch(scope: Scope, receive: Receive, send: Send, route: tuple[str, Handler]) -> None:
    method, handler = route
    if scope["method"] != method:
        err = GatewayError(405, "invalid_request_error", f"Use {method} for this endpoint.", "method_not_allowed")
        return await send_json(send, 405, openai_error_body(err), {"allow": method})
    await handler(scope, receive, send)


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
