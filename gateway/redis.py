"""The gateway's async Redis client (one pool per process), or None on the embedded default."""

from django.conf import settings
from redis.asyncio import Redis

_client: Redis | None = None


def redis_client() -> Redis | None:
    global _client
    if _client is None and settings.REDIS_URL:
        _client = Redis.from_url(settings.REDIS_URL, max_connections=200, health_check_interval=30)
    return _client


async def close() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None
