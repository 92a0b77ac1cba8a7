"""ASGI entry point: the gateway's hot-path routes first, Django (and Channels) for everything else."""

import logging
import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hypereal.settings")
django_app = get_asgi_application()
if settings.SERVE_STATIC:  # self-hosted default; behind a CDN or proxy, serve collected static there
    django_app = ASGIStaticFilesHandler(django_app)

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from gateway.app import Lifecycle, dispatch, route_for  # noqa: E402
from usage.consumers import UsageLogConsumer  # noqa: E402

log = logging.getLogger(__name__)
channels_app = ProtocolTypeRouter({
    "http": django_app,
    "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter([
        path("ws/usage", UsageLogConsumer.as_asgi()),
    ]))),
})


async def _lifespan(receive, send) -> None:
    lifecycle = Lifecycle()
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await lifecycle.startup()
            except Exception as exc:
                log.exception("gateway startup failed")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await lifecycle.shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send):
    if scope["type"] == "http" and (route := route_for(scope["path"])):
        return await dispatch(scope, receive, send, route)
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    return await channels_app(scope, receive, send)
