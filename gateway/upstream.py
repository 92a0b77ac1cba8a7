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


def transport_error(exc: httpx.HTTPError) -> GatewayError:
    """A failure to get an answer at all, as the client should see it."""
    if isinstance(exc, httpx.TimeoutException):
        return GatewayError(504, "upstream_timeout", "The upstream provider did not answer in time.")
    return GatewayError(502, "upstream_error", "The upstream provider could not be reached.")


def status_error(status: int, payload: object) -> GatewayError:
    """An upstream error answer: client errors pass through as they are, server errors become 502."""
    upstream = payload.get("error") if isinstance(payload, dict) else None
    message = (upstream.get("message") if isinstance(upstream, dict) else None) or f"Upstream answered {status}."
    if 400 <= status < 500 and status != 429:
        err_type = upstream.get("type") if isinstance(upstream, dict) else None
        return GatewayError(status, err_type or "invalid_request_error", message)
    if status == 429:
        return GatewayError(429, "upstream_rate_limited", f"The upstream provider is rate limiting: {message}")
    return GatewayError(502, "upstream_error", f"The upstream provider failed ({status}): {message}")
