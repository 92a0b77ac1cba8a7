"""Per-key monthly spending limits, enforced before the upstream call.

A key's month-to-date spend (settled costs plus open reservations) is one counter per key and
calendar month (UTC), in Redis so every gateway process shares it. A call reserves its worst-case
cost first (atomically refused when it would pass the limit) and settles to the actual cost after.
The reservation prices every request byte as a prompt token (a token is at least one byte) plus
``max_tokens`` of output, so a call that sets ``max_tokens`` can never take the key past its limit;
a call without it reserves HYPEREAL_OUTPUT_TOKENS_RESERVE tokens, and only output beyond that can
overshoot. Crossing 80 % and reaching 100 % each queue one budget alert per key and month.
"""

import asyncio
from dataclasses import dataclass

from django.utils import timezone

from gateway.auth import KeyContext
from gateway.db import run_db
from gateway.errors import GatewayError
from gateway.redis import redis_client
from usage.selectors import api_key_month_spend

COUNTER_TTL = 40 * 24 * 3600
ALERT_THRESHOLDS = (80, 100)

# KEYS: counter. ARGV: limit, amount, month-to-date spend from the database (-1 = not loaded).
_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if tonumber(ARGV[3]) < 0 then return {-1, 0} end
  redis.call('SET', KEYS[1], ARGV[3], 'EX', 3456000)
end
local spent = tonumber(redis.call('GET', KEYS[1]))
if spent + tonumber(ARGV[2]) > tonumber(ARGV[1]) then return {0, spent} end
return {1, redis.call('INCRBY', KEYS[1], ARGV[2])}
"""


@dataclass(frozen=True, slots=True)
class Reservation:
    key_id: int
    org_id: int
    limit: int
    month: str
    amount: int


def _month() -> str:
    return timezone.now().strftime("%Y-%m")


def _counter(key_id: int, month: str) -> str:
    return f"hypereal:spend:{key_id}:{month}"


class _LocalCounters:
    """The embedded fallback: the same counters in this process."""

    def __init__(self) -> None:
        self.spent: dict[tuple[int, str], int] = {}
        self.alerted: set[tuple[int, str, int]] = set()


_local = _LocalCounters()
_script = None
_background: set[asyncio.Task] = set()


async def reserve(ctx: KeyContext, amount: int) -> Reservation | None:
    """Take ``amount`` micro-credits of the key's monthly limit, or refuse the call with 402."""
    global _script
    limit = ctx.monthly_spend_limit
    if limit is None:
        return None
    month = _month()
    redis = redis_client()
    if redis is None:
        slot = (ctx.key_id, month)
        if slot not in _local.spent:
            _local.spent[slot] = await run_db(api_key_month_spend, api_key_id=ctx.key_id)
        spent = _local.spent[slot]
        ok = spent + amount <= limit
        if ok:
            _local.spent[slot] = spent + amount
    else:
        if _script is None:
            _script = redis.register_script(_RESERVE)
        keys = [_counter(ctx.key_id, month)]
        ok, spent = await _script(keys=keys, args=[limit, amount, -1])
        if ok == -1:  # first call of the month on this Redis: start from what the database knows
            mtd = await run_db(api_key_month_spend, api_key_id=ctx.key_id)
            ok, spent = await _script(keys=keys, args=[limit, amount, mtd])
        ok = bool(ok)
    if not ok:  # the limit is reached: the heads-up is owed too if spend stopped short of 80 %
        for threshold in ALERT_THRESHOLDS:
            _alert_once(ctx.key_id, month, threshold)
        raise GatewayError(402, "spending_limit_exceeded", "This API key has reached its monthly spending "
                           "limit; raise the limit or wait for the next month (UTC).", "spending_limit_exceeded")
    return Reservation(key_id=ctx.key_id, org_id=ctx.org_id, limit=limit, month=month, amount=amount)


async def settle(reservation: Reservation, actual: int) -> None:
    """Replace the reservation with the call's actual cost, and alert at 80 % and 100 % of the limit."""
    delta = actual - reservation.amount
    redis = redis_client()
    slot = (reservation.key_id, reservation.month)
    if redis is None:
        spent = _local.spent[slot] = _local.spent.get(slot, 0) + delta
    else:
        spent = await redis.incrby(_counter(*slot), delta)
    for threshold in ALERT_THRESHOLDS:
        if spent * 100 >= reservation.limit * threshold:
            _alert_once(reservation.key_id, reservation.month, threshold)


def _alert_once(key_id: int, month: str, threshold: int) -> None:
    task = asyncio.ensure_future(_alert(key_id, month, threshold))
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _alert(key_id: int, month: str, threshold: int) -> None:
    """Queue the alert unless some process already did (the task itself is idempotent too)."""
    redis = redis_client()
    if redis is None:
        if (key_id, month, threshold) in _local.alerted:
            return
        _local.alerted.add((key_id, month, threshold))
    elif not await redis.set(f"hypereal:alert:{key_id}:{month}:{threshold}", 1, nx=True, ex=COUNTER_TTL):
        return
    from apikeys.tasks import budget_threshold_reached

    await run_db(budget_threshold_reached.delay, key_id, month, threshold)  # publishing may block: off the loop
