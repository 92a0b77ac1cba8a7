"""Each key's month-to-date spend as every gateway process sees it: one Redis counter per key and month.

spend = what the key's written calls cost this month + what its answered calls not yet written cost +
its reservations in flight. apikeys owns the counter's key and the Lua that reads and moves it, which the
gateway's scripts include; gateway.quota rebuilds a missing counter from ``key_spend_snapshot`` plus the
calls not yet written and the reservations still open.
"""

import time
from datetime import UTC, datetime

from django.utils import timezone

from apikeys.models import KeyMonthSpend
from billing.selectors import charges_written, ledger_snapshot
from billing.spendable import counters_move_on_commit

SPEND_TTL = 40 * 24 * 3600  # a month's counter outlives its month
SPEND_PREFIX = "hypereal:spend:"
# key_spend answers the month-to-date spend, or false when the counter must be rebuilt first.
KEY_SPEND_LUA = f"""
local function spend_key_of(org, slot) return '{SPEND_PREFIX}{{' .. org .. '}}:' .. slot end
local function key_spend(key)
  local value = redis.call('GET', key)
  return value and tonumber(value)
end
local function key_spend_move(key, delta)
  if redis.call('EXISTS', key) == 1 then return redis.call('INCRBY', key, delta) end
  return false
end
"""


_this_month: tuple[float, float, str] = (0.0, 0.0, "")  # [start, end) in epoch seconds, and its name


def spend_month(when: datetime | None = None) -> str:
    """Spending limits run per calendar month in UTC: "YYYY-MM"."""
    global _this_month
    if when is not None:
        return when.astimezone(UTC).strftime("%Y-%m")
    start, end, month = _this_month
    if start <= time.time() < end:  # every call asks: formatting the date was ~13 µs of each one's CPU
        return month
    now = timezone.now().astimezone(UTC)
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (first.replace(year=first.year + 1, month=1) if first.month == 12
                 else first.replace(month=first.month + 1))
    _this_month = (first.timestamp(), following.timestamp(), now.strftime("%Y-%m"))
    return _this_month[2]


def spend_slot(key_id: int, month: str) -> str:
    """A key's month, as reservations and journaled calls name it."""
    return f"{key_id}:{month}"


def spend_key(org_id: int, key_id: int, month: str) -> str:
    return f"{SPEND_PREFIX}{{{org_id}}}:{spend_slot(key_id, month)}"


def key_spend_snapshot(*, slots: list[tuple[int, str]], charge_keys: list[str]) -> tuple[dict, set[str]]:
    """(key, month) → written spend, and which of ``charge_keys`` are in the ledger, as of one moment: a call
    whose charge is written is in its key's spend, one whose charge is not is still to come."""
    with ledger_snapshot():
        spent = {(key_id, month): 0 for key_id, month in slots}
        for key_id, month, amount in KeyMonthSpend.objects.filter(
                key_id__in={key_id for key_id, _ in slots}, month__in={month for _, month in slots}
        ).values_list("key_id", "month", "amount"):
            if (key_id, month) in spent:
                spent[key_id, month] = amount
        return spent, charges_written(charge_keys)


def key_spend_adjust_on_commit(*, org_id: int, key_id: int, month: str, delta: int) -> None:
    """Move a key's counter once the caller's transaction commits (a job's hold, settled for less)."""
    counters_move_on_commit({org_id: {spend_key(org_id, key_id, month): delta}})
