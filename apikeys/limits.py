"""Each key's month-to-date spend as every gateway process sees it: one Redis counter per key and month.

spend = what the key's written calls cost this month + what its served calls not yet written cost +
its reservations in flight. The counter is seeded from ``KeyMonthSpend``; apikeys owns its key and the
Lua that reads and moves it, which the gateway's admission script includes.
"""

from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

SPEND_TTL = 40 * 24 * 3600  # a month's counter outlives its month
# key_spend answers the month-to-date spend, seeding a missing counter from ``seed`` (false when the
# seed is unknown, -1: the caller reads the database and asks again); key_spend_move moves it.
KEY_SPEND_LUA = """
local function key_spend(key, seed, ttl)
  if redis.call('EXISTS', key) == 0 then
    if tonumber(seed) < 0 then return false end
    redis.call('SET', key, seed, 'EX', ttl)
  end
  return tonumber(redis.call('GET', key))
end
local function key_spend_move(key, delta)
  if redis.call('EXISTS', key) == 1 then return redis.call('INCRBY', key, delta) end
  return false
end
"""


def spend_month(when: datetime | None = None) -> str:
    """Spending limits run per calendar month in UTC: "YYYY-MM"."""
    return (when or timezone.now()).astimezone(UTC).strftime("%Y-%m")


def spend_key(org_id: int, key_id: int, month: str) -> str:
    return f"hypereal:spend:{{{org_id}}}:{key_id}:{month}"


_MOVE = KEY_SPEND_LUA + "return key_spend_move(KEYS[1], ARGV[1])"


def _move(key: str, delta: int) -> None:
    import redis

    with redis.Redis.from_url(settings.REDIS_URL) as client:
        client.eval(_MOVE, 1, key, delta)


def key_spend_adjust_on_commit(*, org_id: int, key_id: int, month: str, delta: int) -> None:
    """Move a key's counter once the caller's transaction commits (a job's hold, settled for less)."""
    if delta and settings.REDIS_URL:  # the embedded gateway keeps its own view, re-read on restart
        transaction.on_commit(lambda: _move(spend_key(org_id, key_id, month), delta))
