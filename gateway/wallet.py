"""Wallet reservations: a call takes its worst-case cost from the organization's spendable balance first.

Spendable = wallet balance − charges served but not yet written − reservations of calls in flight.
With Redis it is one counter per organization shared by every process: loaded from the database on
first use, moved atomically by reservations and settlements, and by billing.spendable when credits
arrive or leave outside the gateway (top-ups, refunds, holds). Without Redis the single
process knows all three terms exactly and reloads the balance every BALANCE_CACHE_SECONDS, so
credits granted from another process show up that fast.

A call is refused (402 insufficient_credits) when the spendable balance is under the LLM floor or
cannot cover its reservation; so concurrent calls cannot overdraw the wallet, except by output
beyond what a call without ``max_tokens`` reserved.
"""

import time
from dataclasses import dataclass

from django.conf import settings

from billing.money import MICRO
from billing.selectors import wallet_balance
from billing.spendable import spendable_key
from gateway.db import run_db
from gateway.errors import GatewayError
from gateway.metering import meter
from gateway.redis import redis_client

# KEYS: counter. ARGV: floor, amount, balance from the database (-1 = not loaded).
_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if tonumber(ARGV[3]) < 0 then return {-1, 0} end
  redis.call('SET', KEYS[1], ARGV[3])
end
local spendable = tonumber(redis.call('GET', KEYS[1]))
if spendable < tonumber(ARGV[1]) or spendable < tonumber(ARGV[2]) then return {0, spendable} end
return {1, redis.call('DECRBY', KEYS[1], ARGV[2])}
"""


@dataclass(frozen=True, slots=True)
class WalletReservation:
    org_id: int
    amount: int


class _Local:
    """Embedded default: this process's exact view."""

    def __init__(self) -> None:
        self.loaded: dict[int, tuple[float, int]] = {}  # org → (loaded at, balance then)
        self.inflight: dict[int, int] = {}

    async def spendable(self, org_id: int) -> int:
        loaded = self.loaded.get(org_id)
        if loaded is None or time.monotonic() - loaded[0] >= settings.HYPEREAL["BALANCE_CACHE_SECONDS"]:
            loaded = self.loaded[org_id] = (time.monotonic(), await run_db(wallet_balance, organization_id=org_id))
        return loaded[1] - meter.pending_cost(org_id) - self.inflight.get(org_id, 0)


_local = _Local()
_script = None


def _refuse(floor_credits: int) -> GatewayError:
    return GatewayError(402, "insufficient_credits", "Insufficient credits: LLM calls need a balance of at least "
                        f"{floor_credits} credits and enough to cover the call. Top up to continue.",
                        "insufficient_credits")


async def reserve(org_id: int, amount: int) -> WalletReservation:
    global _script
    floor_credits = settings.HYPEREAL["MIN_BALANCE_CREDITS"]
    floor = floor_credits * MICRO
    redis = redis_client()
    if redis is None:
        spendable = await _local.spendable(org_id)
        if spendable < floor or spendable < amount:
            raise _refuse(floor_credits)
        _local.inflight[org_id] = _local.inflight.get(org_id, 0) + amount
    else:
        if _script is None:
            _script = redis.register_script(_RESERVE)
        keys = [spendable_key(org_id)]
        ok, _ = await _script(keys=keys, args=[floor, amount, -1])
        if ok == -1:
            balance = await run_db(wallet_balance, organization_id=org_id)
            ok, _ = await _script(keys=keys, args=[floor, amount, balance - meter.pending_cost(org_id)])
        if not ok:
            raise _refuse(floor_credits)
    return WalletReservation(org_id=org_id, amount=amount)


async def settle(reservation: WalletReservation, actual: int) -> None:
    """The call cost ``actual``: give back the rest of its reservation (the meter now holds the charge)."""
    redis = redis_client()
    if redis is None:
        _local.inflight[reservation.org_id] -= reservation.amount
        return
    await redis.incrby(spendable_key(reservation.org_id), reservation.amount - actual)
