"""Each wallet's spendable balance as every gateway process sees it: one Redis counter per wallet.

spendable = balance − charges served but not yet written − reservations of calls in flight.
Billing owns the counter: its key, and the Lua that reads and moves it, which the gateway's admission
script (gateway.quota) includes so that one round trip checks it together with the other budgets.
``ledger_post`` moves it after commit whenever credits move outside the gateway (top-ups, refunds,
disputes, holds); a call's own charge is already in it, taken as a reservation and settled.
"""

from django.conf import settings
from django.db import transaction

# Lua functions over one wallet's counter, for scripts that include them (KEYS and ARGV are the caller's).
# wallet_check answers WALLET_OK, WALLET_SHORT (under the floor, or short of the amount) or WALLET_UNSEEDED
# (no counter yet and no seed given: the caller seeds it from the database and asks again).
WALLET_OK, WALLET_SHORT, WALLET_UNSEEDED = 0, 2, -1
WALLET_LUA = """
local function wallet_check(key, seed, floor, amount)
  if redis.call('EXISTS', key) == 0 then
    if tonumber(seed) < 0 then return -1 end
    redis.call('SET', key, seed)
  end
  local spendable = tonumber(redis.call('GET', key))
  if spendable < floor or spendable < amount then return 2 end
  return 0
end
local function wallet_move(key, delta)
  if redis.call('EXISTS', key) == 1 then return redis.call('INCRBY', key, delta) end
  return false
end
"""
# A counter that is missing (a Redis restart) is left for the next seed rather than recreated wrong.
_ADJUST = WALLET_LUA + "return wallet_move(KEYS[1], ARGV[1])"


def spendable_key(org_id: int) -> str:
    return f"hypereal:wallet:{org_id}"


def _adjust(deltas: dict[int, int]) -> None:
    import redis

    with redis.Redis.from_url(settings.REDIS_URL) as client, client.pipeline(transaction=False) as pipe:
        for org_id, delta in deltas.items():
            pipe.eval(_ADJUST, 1, spendable_key(org_id), delta)
        pipe.execute()


def spendable_adjust_on_commit(deltas: dict[int, int]) -> None:
    """Move each organization's counter by its delta once the caller's transaction commits."""
    deltas = {org_id: delta for org_id, delta in deltas.items() if delta}
    if deltas and settings.REDIS_URL:  # the embedded gateway reloads balances on its own
        transaction.on_commit(lambda: _adjust(deltas))
