"""A raw-ASGI server imitating upstream providers, with failure injection through directives.

Directives come from a path prefix (``/x/fail=500,latency_ms=20/v1/...``, so a catalog provider's
base URL can carry behaviour) or a top-level ``"sim"`` body field (removed before processing).
"""

import asyncio
import json
from collections import deque
from urllib.parse import parse_qs

from sim import openai_chat

RECENT: deque = deque(maxlen=500)
SECRET_HEADERS = {b"authorization", b"x-api-key", b"x-goog-api-key"}


class Abort(Exception):
    """Raised to make the server drop the connection (no clean end of response)."""


def parse_directives(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split(",") if "=" in part)


async def read_body(receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def send_json(send, status: int, payload, headers: list | None = None) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _redacted(headers: list) -> dict[str, str]:
    return {k.decode(): ("…" + v.decode()[-4:] if k in SECRET_HEADERS else v.decode()) for k, v in headers}


def _has_key(scope) -> bool:
    headers = dict(scope["headers"])
    return any(headers.get(h) for h in SECRET_HEADERS) or b"key=" in scope.get("query_string", b"")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path, query = scope["path"], scope.get("query_string", b"").decode()
    if path == "/health":
        return await send_json(send, 200, {"ok": True})
    if path == "/_sim/requests":
        limit = int(parse_qs(query).get("limit", ["50"])[0])
        return await send_json(send, 200, list(RECENT)[:limit])
    directives: dict[str, str] = {}
    if path.startswith("/x/"):
        _, _, spec, rest = path.split("/", 3)
        directives, path = parse_directives(spec), "/" + rest
    raw = await read_body(receive)
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return await send_json(send, 400, openai_chat.error("Invalid JSON body.", "invalid_request_error"))
    if isinstance(body, dict) and isinstance(body.get("sim"), dict):
        directives.update({k: str(v) for k, v in body.pop("sim").items()})
    RECENT.appendleft({"path": path, "query": query, "body": body, "headers": _redacted(scope["headers"])})
    if path == "/v1/chat/completions" and scope["method"] == "POST":
        handler = openai_chat.handle
    else:
        return await send_json(send, 404, openai_chat.error(f"No route {path}.", "not_found_error"))
    if not _has_key(scope):
        return await send_json(send, 401, openai_chat.error("Missing API key.", "authentication_error"))
    if latency := int(directives.get("latency_ms", 0)):
        await asyncio.sleep(latency / 1000)
    if directives.get("hang"):
        await receive()  # returns only when the client goes away
        return
    if directives.get("drop"):
        raise Abort("dropping the connection as directed")
    if status := int(directives.get("fail", 0)):
        headers = [(b"retry-after", b"1")] if status == 429 else []
        return await send_json(send, status, openai_chat.error(f"Simulated failure {status}.", "api_error"), headers)
    await handler(body, directives, send)
