"""One pooled async HTTP client per process for every upstream call."""

import httpx
from django.conf import settings

from gateway.errors import GatewayError

_client: httpx.AsyncClient | None = None


def client() -> httpx.AsyncClient:
    global _client
    if _client is None:
        conf = settings.HYPEREAL
        _client = httpx.AsyncClient(
            timeout=httpx.Timeout(conf["UPSTREAM_READ_TIMEOUT"], connect=conf["UPSTREAM_CONNECT_TIMEOUT"]),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=30),
        )
    return _client


async def close() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None


def status_error(status: int, payload: object) -> GatewayError:
    """An upstream's answer to a bad request, passed on with its status and message."""
    upstream = payload.get("error") if isinstance(payload, dict) else None
    message = (upstream.get("message") if isinstance(upstream, dict) else None) or f"Upstream answered {status}."
    err_type = (upstream.get("type") if isinstance(upstream, dict) else None) or "invalid_request_error"
    return GatewayError(status, err_type, message)
