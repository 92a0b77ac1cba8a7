"""The gateway's routes and lifecycle, mounted in front of Django by hypereal.asgi."""

import asyncio
import contextlib
import logging

from gateway import redis, upstream
from gateway.catalog import catalog, catalog_refresh_forever
from gateway.chat import chat_completions
from gateway.errors import GatewayError, openai_error_body
from gateway.http import Receive, Scope, Send, send_json
from gateway.info import credits, current_key, list_models
from gateway.metering import meter

log = logging.getLogger(__name__)

_ROUTES = {
    "/chat/completions": ("POST", chat_completions),
    "/models": ("GET", list_models),
    "/credits": ("GET", credits),
    "/key": ("GET", current_key),
}
# Every route under /api/v1 and mirrored under /v1 for SDKs that expect it.
ROUTES = {prefix + path: route for path, route in _ROUTES.items() for prefix in ("/api/v1", "/v1")}


async def dispatch(scope: Scope, receive: Receive, send: Send, route: tuple) -> None:
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
        self._tasks = [asyncio.create_task(catalog_refresh_forever()), asyncio.create_task(meter.run_forever())]

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await meter.flush()  # nothing served goes unbilled
        await upstream.close()
        await redis.close()
