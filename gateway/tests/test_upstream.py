"""Upstream HTTP, against a real server on loopback."""

import asyncio

import pytest
from aiohttp import web

from gateway import upstream

pytestmark = pytest.mark.no_services


def test_a_cookie_an_upstream_sets_is_never_sent_back():
    """One session carries every organization's calls: a cookie one answer sets (a load balancer's, a bot
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
            for _ in range(2):  # by name, not address: a client's cookie jar keeps cookies only for names
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
