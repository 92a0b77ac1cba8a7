"""What a call takes up front, in one atomic step, and gives back when it ends.

Three budgets are checked and taken together, before the upstream call:

- the organization's requests- and tokens-per-minute (``gateway.ratelimit``: a sliding minute of
  per-second buckets, on Redis's clock so processes on different hosts agree);
- the wallet's spendable balance = balance − charges served but not yet written − reservations of
  calls in flight. A call is refused (402 insufficient_credits) when it is under the LLM floor or
  cannot cover the call's worst-case cost, so concurrent calls cannot overdraw the wallet;
- the key's month-to-date spend (settled costs plus open reservations, calendar month UTC), against
  its optional monthly limit (402 spending_limit_exceeded).

With Redis that is one Lua script (one round trip) over counters every gateway process shares; the
wallet and spend counters are seeded from the database on first use, and billing.spendable keeps the
wallet counter equal to the wallet when credits move outside the gateway. ``settle`` gives back the
unused part of the reservation and corrects the token bucket to the real usage; a settlement goes to
Redis at once, and those of calls that end while it is on its way go together in the next round trip,
so under load a call costs one round trip and a share of another. Without Redis the same rules run in
this process, which then knows every term exactly (one gateway process only).

The worst case prices every request byte as a prompt token (a token is at least one byte) plus
``max_tokens`` of output, so a call that sets ``max_tokens`` can never pass the key's limit; a call
without it reserves HYPEREAL_OUTPUT_TOKENS_RESERVE tokens, and only output beyond that can overshoot.
"""

import asyncio
import logging
import time
from dataclasses import dataclass

from django.conf import settings

from apikeys.limits import KEY_SPEND_LUA, SPEND_TTL, spend_key, spend_month
from apikeys.selectors import api_keys_month_spend
from apikeys.tasks import budget_threshold_reached
from billing.money import MICRO
from billing.selectors import wallet_balance
from billing.spendable import WALLET_LUA, WALLET_SHORT, WALLET_UNSEEDED, spendable_key
from gateway.auth import KeyContext
from gateway.db import run_db
from gateway.errors import GatewayError
from gateway.metering import meter
from gateway.ratelimit import WINDOW_LUA, Decision, LocalWindow, ratelimit_keys
from gateway.redis import RedisError, redis_client

log = logging.getLogger(__name__)
ALERT_THRESHOLDS = (80, 100)

# Outcome codes of _TAKE.
TAKEN, RATE_LIMITED, INSUFFICIENT, OVER_LIMIT, SEED_WALLET, SEED_SPEND = 0, 1, 2, 3, -1, -2

# Each budget's owner supplies the Lua over its counters (the window here, the wallet from billing, the
# key's month spend from apikeys); this script runs them together, in one round trip.
# KEYS: wallet counter, requests hash, tokens hash, key month-spend counter.
# ARGV: floor, amount, wallet seed (-1 = unknown), rpm, tpm, tokens, spend limit (-1 = none),
#       spend seed (-1 = unknown), spend ttl.
# Returns {outcome, requests used, tokens used, requests reset, tokens reset, now, month spend}.
_TAKE = WINDOW_LUA + WALLET_LUA + KEY_SPEND_LUA + f"""
local now = tonumber(redis.call('TIME')[1])
local floor, amount = tonumber(ARGV[1]), tonumber(ARGV[2])
local rpm, tpm, want = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local limit = tonumber(ARGV[7])
local req, req_oldest, tok, tok_oldest = 0, now, 0, now
if rpm > 0 or tpm > 0 then
  req, req_oldest = window_used(KEYS[2], now)
  tok, tok_oldest = window_used(KEYS[3], now)
  if (rpm > 0 and req + 1 > rpm) or (tpm > 0 and tok > 0 and tok + want > tpm) then
    return {{{RATE_LIMITED}, req, tok, req_oldest + 60 - now, tok_oldest + 60 - now, now, 0}}
  end
end
local wallet = wallet_check(KEYS[1], ARGV[3], floor, amount)
if wallet == {WALLET_UNSEEDED} then return {{{SEED_WALLET}, 0, 0, 0, 0, now, 0}} end
if wallet == {WALLET_SHORT} then return {{{INSUFFICIENT}, req, tok, 0, 0, now, 0}} end
local spent = 0
if limit >= 0 then
  spent = key_spend(KEYS[4], ARGV[8], ARGV[9])
  if not spent then return {{{SEED_SPEND}, 0, 0, 0, 0, now, 0}} end
  if spent + amount > limit then return {{{OVER_LIMIT}, req, tok, 0, 0, now, spent}} end
  spent = key_spend_move(KEYS[4], amount)
end
wallet_move(KEYS[1], -amount)
if rpm > 0 or tpm > 0 then
  window_add(KEYS[2], now, 1)
  window_add(KEYS[3], now, want)
  req, tok = req + 1, tok + want
end
return {{{TAKEN}, req, tok, req_oldest + 60 - now, tok_oldest + 60 - now, now, spent}}
"""

# Settles many calls: KEYS are (wallet counter, tokens hash, key month-spend counter) per call; ARGV are
# (wallet refund, token bucket, token delta, spend delta or '' when the key has no limit) per call.
# Returns each call's month-to-date spend (false without a limit). Counters that vanished (a Redis
# restart) are left for the next seed rather than recreated wrong.
_SETTLE = WINDOW_LUA + WALLET_LUA + KEY_SPEND_LUA + """
local spent = {}
for i = 0, #KEYS / 3 - 1 do
  local k, a = i * 3, i * 4
  wallet_move(KEYS[k + 1], ARGV[a + 1])
  window_correct(KEYS[k + 2], ARGV[a + 2], tonumber(ARGV[a + 3]))
  spent[i + 1] = false
  if ARGV[a + 4] ~= '' then spent[i + 1] = key_spend_move(KEYS[k + 3], ARGV[a + 4]) end
end
return spent
"""


@dataclass(frozen=True, slots=True)
class Reservation:
    """What one call took: given back by ``settle`` whatever happens to the call."""

    ctx: KeyContext
    amount: int  # micro-credits reserved from the wallet and from the key's monthly limit
    tokens: int  # reserved in the tokens-per-minute budget
    decision: Decision
    month: str


async def _month_spend(ctx: KeyContext, month: str) -> int:
    """What the key's written calls cost this month, to seed its counter."""
    return (await run_db(api_keys_month_spend, key_ids=[ctx.key_id], month=month))[ctx.key_id]


def llm_floor() -> int:
    """The balance (µcr) LLM calls need beyond their own cost; media and jobs need only their price."""
    return settings.HYPEREAL["MIN_BALANCE_CREDITS"] * MICRO


def _insufficient(floor: int) -> GatewayError:
    message = (f"Insufficient credits: LLM calls need a balance of at least {floor // MICRO} credits and enough "
               "to cover the call." if floor else "Insufficient credits: the balance cannot cover this request's "
               "price.")
    return GatewayError(402, "insufficient_credits", f"{message} Top up to continue.", "insufficient_credits")


def _over_limit(ctx: KeyContext, month: str) -> GatewayError:
    for threshold in ALERT_THRESHOLDS:  # the heads-up is owed too if spend stopped short of 80 %
        _alert_once(ctx.key_id, month, threshold)
    return GatewayError(402, "spending_limit_exceeded", "This API key has reached its monthly spending limit; "
                        "raise the limit or wait for the next month (UTC).", "spending_limit_exceeded")


def _rate_limited(decision: Decision) -> GatewayError:
    return GatewayError(429, "rate_limit_exceeded", "Rate limit reached for your organization; retry after "
                        f"{decision.retry_after} s.", "rate_limit_exceeded", headers=decision.headers())


class _Local:
    """The embedded default: this process's exact view of all three budgets."""

    def __init__(self) -> None:
        self.window = LocalWindow()
        self.balances: dict[int, tuple[float, int]] = {}  # org → (loaded at, balance then)
        self.inflight: dict[int, int] = {}
        self.spent: dict[tuple[int, str], int] = {}
        self.alerted: set[tuple[int, str, int]] = set()

    async def take(self, ctx: KeyContext, amount: int, tokens: int, month: str, floor: int) -> Reservation:
        org_id = ctx.org_id
        loaded = self.balances.get(org_id)
        if loaded is None or time.monotonic() - loaded[0] >= settings.HYPEREAL["BALANCE_CACHE_SECONDS"]:
            loaded = self.balances[org_id] = (time.monotonic(),
                                              await run_db(wallet_balance, organization_id=org_id))
        slot = (ctx.key_id, month)
        if ctx.monthly_spend_limit is not None and slot not in self.spent:
            self.spent[slot] = await _month_spend(ctx, month)
        decision = Decision.of(self.window.check(org_id, ctx.rpm, ctx.tpm, tokens), ctx.rpm, ctx.tpm)
        if not decision.allowed:
            raise _rate_limited(decision)
        spendable = loaded[1] - meter.pending_cost(org_id) - self.inflight.get(org_id, 0)
        refusal = None
        if spendable < floor or spendable < amount:
            refusal = _insufficient(floor)
        elif ctx.monthly_spend_limit is not None and self.spent[slot] + amount > ctx.monthly_spend_limit:
            refusal = _over_limit(ctx, month)
        if refusal is not None:
            self.window.add(org_id, decision.bucket, requests=-1, tokens=-tokens)
            raise refusal
        self.inflight[org_id] = self.inflight.get(org_id, 0) + amount
        if ctx.monthly_spend_limit is not None:
            self.spent[slot] += amount
        return Reservation(ctx, amount, tokens, decision, month)

    def settle(self, reservation: Reservation, cost: int, tokens: int) -> int | None:
        ctx = reservation.ctx
        self.inflight[ctx.org_id] -= reservation.amount
        self.window.add(ctx.org_id, reservation.decision.bucket, tokens=tokens - reservation.tokens)
        if ctx.monthly_spend_limit is None:
            return None
        slot = (ctx.key_id, reservation.month)
        self.spent[slot] = self.spent.get(slot, 0) + cost - reservation.amount
        return self.spent[slot]


_local = _Local()
_background: set[asyncio.Task] = set()


async def take(ctx: KeyContext, *, amount: int, tokens: int, floor: int | None = None) -> Reservation:
    """Reserve ``amount`` micro-credits and ``tokens`` for one call, or refuse it with 402/429. The wallet
    must hold ``floor`` too (µcr; default: the LLM floor)."""
    month = spend_month()
    floor = llm_floor() if floor is None else floor
    redis = redis_client()
    if redis is None:
        return await _local.take(ctx, amount, tokens, month, floor)
    limit = -1 if ctx.monthly_spend_limit is None else ctx.monthly_spend_limit
    keys = [spendable_key(ctx.org_id), *ratelimit_keys(ctx.org_id), spend_key(ctx.org_id, ctx.key_id, month)]
    args = [floor, amount, -1, ctx.rpm, ctx.tpm, tokens, limit, -1, SPEND_TTL]
    while True:
        try:
            outcome, req, tok, req_reset, tok_reset, now, _ = await redis.script(_TAKE, keys, args)
        except RedisError:
            log.exception("taking a call's reservation from Redis failed")
            raise GatewayError(503, "service_unavailable", "Hypereal cannot check limits and balances right "
                               "now; retry shortly.", headers={"retry-after": "1"}) from None
        if outcome == SEED_WALLET:  # first call on this Redis: start from what the database knows
            args[2] = await run_db(wallet_balance, organization_id=ctx.org_id) - meter.pending_cost(ctx.org_id)
        elif outcome == SEED_SPEND:
            args[7] = await _month_spend(ctx, month)
        else:
            break
    decision = Decision(outcome != RATE_LIMITED, ctx.rpm, ctx.tpm, req, tok, req_reset, tok_reset, now)
    if outcome == RATE_LIMITED:
        raise _rate_limited(decision)
    if outcome == INSUFFICIENT:
        raise _insufficient(floor)
    if outcome == OVER_LIMIT:
        raise _over_limit(ctx, month)
    return Reservation(ctx, amount, tokens, decision, month)


def settle(reservation: Reservation, *, cost: int, tokens: int) -> None:
    """The call cost ``cost`` and used ``tokens``: give back the rest of what it took."""
    if redis_client() is None:
        _alert_if_due(reservation, _local.settle(reservation, cost, tokens))
        return
    _settler.add(reservation, cost, tokens)


class _Settler:
    """Settlements of calls that ended, sent to Redis at once; those that end while one is on its way go
    together in the next (no added delay when idle, one round trip for many under load)."""

    def __init__(self) -> None:
        self.pending: list[tuple[Reservation, int, int]] = []
        self.task: asyncio.Task | None = None

    def add(self, reservation: Reservation, cost: int, tokens: int) -> None:
        self.pending.append((reservation, cost, tokens))
        if self.task is None:
            self.task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        try:
            while self.pending and await self.flush():
                pass
        finally:
            self.task = None

    async def flush(self) -> bool:
        batch, self.pending = self.pending, []
        if not batch:
            return True
        keys, args = [], []
        for reservation, cost, tokens in batch:
            ctx = reservation.ctx
            keys += [spendable_key(ctx.org_id), ratelimit_keys(ctx.org_id)[1],
                     spend_key(ctx.org_id, ctx.key_id, reservation.month)]
            args += [reservation.amount - cost, reservation.decision.bucket,
                     tokens - reservation.tokens if ctx.tpm else 0,
                     cost - reservation.amount if ctx.monthly_spend_limit is not None else ""]
        try:
            spent = await redis_client().script(_SETTLE, keys, args)
        except RedisError:
            log.exception("settling %d calls with Redis failed; they go with the next batch", len(batch))
            self.pending[:0] = batch
            return False
        for (reservation, _, _), value in zip(batch, spent):
            _alert_if_due(reservation, value)
        return True


_settler = _Settler()


async def flush() -> None:
    """Send the settlements still waiting (shutdown)."""
    if _settler.task is not None:
        await _settler.task
    await _settler.flush()


def _alert_if_due(reservation: Reservation, spent: int | None) -> None:
    limit = reservation.ctx.monthly_spend_limit
    if spent is not None and limit:
        for threshold in ALERT_THRESHOLDS:
            if spent * 100 >= limit * threshold:
                _alert_once(reservation.ctx.key_id, reservation.month, threshold)


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
    elif not await redis.execute("SET", f"hypereal:alert:{key_id}:{month}:{threshold}", 1, "NX", "EX", SPEND_TTL):
        return
    await run_db(budget_threshold_reached.delay, key_id, month, threshold)  # publishing may block: off the loop

