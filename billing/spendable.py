"""Each wallet's spendable balance as every gateway process sees it: one Redis counter per wallet.

spendable = balance − charges of answered calls not yet written − reservations of calls in flight.
Billing owns the counter: its key, and the Lua that reads and moves it, which the gateway's scripts
(gateway.quota) include so that one round trip checks it together with the other budgets.
``ledger_post`` moves it after commit whenever credits move outside the gateway (top-ups, refunds,
disputes, holds); a call's own charge is already in it, taken as a reservation and settled.

The gateway rebuilds a missing counter from a snapshot of the ledger, the calls not yet written and the
reservations still open. A movement committing meanwhile could land in that snapshot and be added to
the counter again, or in neither: so each movement raises its organization's fence before its
transaction commits and lowers it once the counter moved, and a rebuild that saw the fence up, or saw
it move, starts over.
"""

import logging

from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

WALLET_PREFIX = "hypereal:wallet:"
FENCE_PREFIX = "hypereal:fence:"
FENCE_MS = 10_000  # a fence raised by a transaction that never committed falls after this

# Lua over the counters, for scripts that include them (KEYS and ARGV are the caller's). A counter that is
# missing is left missing (the gateway rebuilds it whole) rather than recreated wrong.
WALLET_LUA = f"""
local function wallet_key_of(org) return '{WALLET_PREFIX}' .. org end
local function wallet_available(key)
  local value = redis.call('GET', key)
  return value and tonumber(value)
end
local function wallet_move(key, delta)
  if redis.call('EXISTS', key) == 1 then return redis.call('INCRBY', key, delta) end
  return false
end
local function fence_of(org)
  local fence = redis.call('HMGET', '{FENCE_PREFIX}' .. org, 'p', 'v')
  return tonumber(fence[1] or 0), tonumber(fence[2] or 0)
end
"""
# KEYS: the fence, then the counters to move; ARGV: their deltas.
_MOVE = f"""
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], ARGV[i - 1]) end
end
redis.call('HINCRBY', KEYS[1], 'p', -1)
redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('PEXPIRE', KEYS[1], {FENCE_MS})
"""


def spendable_key(org_id: int) -> str:
    return f"{WALLET_PREFIX}{org_id}"


def _fence_key(org_id: int) -> str:
    return f"{FENCE_PREFIX}{org_id}"


_client = None


def _redis():
    global _client
    if _client is None:
        import redis

        _client = redis.Redis.from_url(settings.REDIS_URL)
    return _client


def counters_move_on_commit(moves: dict[int, dict[str, int]]) -> None:
    """Move Redis counters (organization → counter key → delta) once the caller's transaction commits,
    fenced so that a counter being rebuilt meanwhile is rebuilt again rather than counted twice or never."""
    moves = {org_id: deltas for org_id, deltas in moves.items() if any(deltas.values())}
    if not moves or not settings.REDIS_URL:  # the embedded gateway reloads balances on its own
        return
    import redis

    try:
        with _redis().pipeline(transaction=False) as pipe:
            for org_id in moves:
                pipe.hincrby(_fence_key(org_id), "p", 1)
                pipe.pexpire(_fence_key(org_id), FENCE_MS)
            pipe.execute()
    except redis.RedisError:
        log.exception("counters not fenced; the reconciliation will correct them")
        return

    def apply() -> None:
        try:
            with _redis().pipeline(transaction=False) as pipe:
                for org_id, deltas in moves.items():
                    pipe.eval(_MOVE, 1 + len(deltas), _fence_key(org_id), *deltas, *deltas.values())
                pipe.execute()
        except redis.RedisError:
            log.exception("counters not moved after commit; the reconciliation will correct them")

    transaction.on_commit(apply)


def spendable_adjust_on_commit(deltas: dict[int, int]) -> None:
    """Move each organization's counter by its delta once the caller's transaction commits."""
    counters_move_on_commit({org_id: {spendable_key(org_id): delta} for org_id, delta in deltas.items()})
