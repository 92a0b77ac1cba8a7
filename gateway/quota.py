"""What a call takes up front, in one atomic step, and gives back when it ends — and how that survives
losing Redis, a process, or both.

Three budgets are checked and taken together, before the upstream call:

- the organization's requests- and tokens-per-minute (``gateway.ratelimit``: a sliding minute of
  per-second buckets, on Redis's clock so processes on different hosts agree);
- the wallet's spendable balance = balance − charges of answered calls not yet written − reservations of
  calls in flight. A call is refused (402 insufficient_credits) when it is under the LLM floor or cannot
  cover the least it can be served with, so concurrent calls cannot overdraw the wallet;
- the key's month-to-date spend (written charges + unwritten ones + open reservations, calendar month
  UTC), against its optional monthly limit (402 spending_limit_exceeded).

A token-priced call reserves between a least and a most (``call_budget``): every request byte priced as a
prompt token at the dearest prompt price (a token is at least a byte), plus output — at least the client's
max_tokens or HYPEREAL_OUTPUT_TOKENS_RESERVE, at most the client's max_tokens or the model's own limit. A
call without max_tokens takes at most 1/HYPEREAL_OUTPUT_RESERVE_SHARE of what is spendable, so that
concurrent calls still get in. The upstream is then sent the max output the reservation pays for
(``Budget.output_cap``): a call can never cost more than it reserved, so neither a wallet nor a key's
limit can be passed, as long as the upstream honours that cap.

With Redis, every term lives there and every process settles into it (one Lua script takes all three
budgets; one settles a batch of calls). What keeps it exact through faults:

- Leases. A reservation is written into its process's lease (a hash, in the script that takes it). Each
  process renews its presence every LEASE/5 s; one silent for HYPEREAL_LEASE_SECONDS is presumed dead and
  any other process reaps it: its reservations go back to the counters and its journal is replayed.
- The journal. A call's record is appended to its process's journal (a Redis stream) in the round trip
  that settles its reservation, and the answer completes only after that (``Call.durable``); the record
  is then queued in process and written by the metering writer, and the journal entry trimmed after
  commit. A dead process's journal is written by whoever reaps it (idempotent per request id).
- Rebuilding. A counter missing (first use, a restart, a flush, eviction) is rebuilt from the database
  (balance or month spend), minus or plus the journaled calls whose charge is not yet in the ledger and
  the leases of every process — one snapshot, checked again atomically before the counter is set. When
  Redis lost its state (its epoch key is gone, or a reconnection reached another server), every process
  writes its open reservations and unwritten calls back and calls get 503 for 2/5 of the lease while
  they do; nothing is rebuilt from one process's view alone.
- Reconciliation. Every HYPEREAL_RECONCILE_SECONDS one process checks every counter against that same
  rebuild, repairs and alerts on any difference.

Without Redis the same rules run in this process, which then knows every term exactly (one gateway
process only); its queued calls are lost on kill -9 (up to HYPEREAL_METER_FLUSH_MS of them).
"""

import asyncio
import itertools
import logging
import os
import re
import socket
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import mail_admins

from apikeys.limits import (
    KEY_SPEND_LUA,
    SPEND_PREFIX,
    SPEND_TTL,
    key_spend_snapshot,
    spend_key,
    spend_month,
    spend_slot,
)
from apikeys.selectors import api_keys_month_spend
from apikeys.services import BUDGET_THRESHOLDS
from apikeys.tasks import budget_threshold_reached
from billing.money import MICRO
from billing.pricing import PER, TokenPrices
from billing.selectors import wallet_balance, wallets_snapshot
from billing.spendable import WALLET_LUA, WALLET_PREFIX, spendable_key
from gateway.auth import KeyContext
from gateway.db import run_db
from gateway.errors import GatewayError
from gateway.metering import Queued, meter, record_dumps
from gateway.ratelimit import WINDOW_LUA, Decision, LocalWindow, ratelimit_keys
from gateway.redis import RedisError, Send, redis_client
from usage.services import CallRecord

log = logging.getLogger(__name__)

# Outcome codes of _TAKE.
TAKEN, RATE_LIMITED, INSUFFICIENT, OVER_LIMIT, SEED_WALLET, SEED_SPEND, LOST, REBUILDING = 0, 1, 2, 3, -1, -2, -3, -4
# What _COUNTERS says of each counter.
COUNTED, FENCED = 0, 1
JOURNAL_GRACE_MS = 2_000  # a committed entry stays this long, so that a rebuild under way still sees it
REBUILD_MAX_MS = 1_000  # a rebuild slower than this starts over (the journal may have been trimmed)
REBUILD_ATTEMPTS = 50
REAPED_TTL = 24 * 3600

EPOCH, REBUILDING_KEY = "hypereal:epoch", "hypereal:rebuilding"
PROCS, ORPHANS = "hypereal:procs", "hypereal:orphans"
LEASE, JOURNAL, REAPED = "hypereal:lease:", "hypereal:journal:", "hypereal:reaped:"

# Keys and helpers every script below shares. Scripts name other processes' keys themselves: the money state
# lives on one Redis server (or primary), not a cluster.
_PRELUDE = WINDOW_LUA + WALLET_LUA + KEY_SPEND_LUA + f"""
local EPOCH, REBUILDING, PROCS, ORPHANS = '{EPOCH}', '{REBUILDING_KEY}', '{PROCS}', '{ORPHANS}'
local function lease_of(pid) return '{LEASE}' .. pid end
local function journal_of(pid) return '{JOURNAL}' .. pid end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function lease_parts(value)  -- org, key slot, amount
  local org, slot, amount = string.match(value, '^([^|]*)|([^|]*)|(.*)$')
  return org, slot, tonumber(amount)
end
local function id_before(a, b)
  local am, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bm, bseq = string.match(b, '^(%d+)-(%d+)$')
  am, bm = tonumber(am), tonumber(bm)
  return am < bm or (am == bm and tonumber(aseq) < tonumber(bseq))
end
local function holders()  -- every process whose journal may hold unwritten calls: the live and the reaped
  local pids, seen = {{}}, {{}}
  for _, pid in ipairs(redis.call('ZRANGE', PROCS, 0, -1)) do seen[pid] = true; pids[#pids + 1] = pid end
  for _, pid in ipairs(redis.call('SMEMBERS', ORPHANS)) do
    if not seen[pid] then pids[#pids + 1] = pid end
  end
  return pids
end
"""

# KEYS: wallet counter, requests hash, tokens hash, key month-spend counter, this process's lease.
# ARGV: epoch, floor, least, most, share, rpm, tpm, tokens, spend limit (-1 = none), reservation id,
#       lease value prefix ("org|slot|").
# Returns {outcome, requests used, tokens used, requests reset, tokens reset, now, month spend, amount}.
_TAKE = _PRELUDE + f"""
local state = redis.call('MGET', EPOCH, REBUILDING)
if state[1] ~= ARGV[1] then return {{{LOST}, 0, 0, 0, 0, 0, 0, 0}} end
if state[2] then return {{{REBUILDING}, 0, 0, 0, 0, 0, 0, 0}} end
local now = tonumber(redis.call('TIME')[1])
local floor, least, most, share = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local rpm, tpm, want = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local limit = tonumber(ARGV[9])
local req, req_oldest, tok, tok_oldest = 0, now, 0, now
if rpm > 0 or tpm > 0 then
  req, req_oldest = window_used(KEYS[2], now)
  tok, tok_oldest = window_used(KEYS[3], now)
  if (rpm > 0 and req + 1 > rpm) or (tpm > 0 and tok > 0 and tok + want > tpm) then
    return {{{RATE_LIMITED}, req, tok, req_oldest + 60 - now, tok_oldest + 60 - now, now, 0, 0}}
  end
end
local available = wallet_available(KEYS[1])
if not available then return {{{SEED_WALLET}, 0, 0, 0, 0, now, 0, 0}} end
if available < floor or available < least then return {{{INSUFFICIENT}, req, tok, 0, 0, now, 0, 0}} end
local spent = key_spend(KEYS[4])
if limit >= 0 then
  if not spent then return {{{SEED_SPEND}, 0, 0, 0, 0, now, 0, 0}} end
  if spent + least > limit then return {{{OVER_LIMIT}, req, tok, 0, 0, now, spent, 0}} end
  available = math.min(available, limit - spent)
end
local amount = math.min(most, math.max(least, math.floor(available / share)))
redis.call('DECRBY', KEYS[1], amount)  -- the counter is there: wallet_available read it
if spent then spent = redis.call('INCRBY', KEYS[4], amount) else spent = 0 end
if rpm > 0 or tpm > 0 then
  window_add(KEYS[2], now, 1)
  window_add(KEYS[3], now, want)
  req, tok = req + 1, tok + want
end
redis.call('HSET', KEYS[5], ARGV[10], ARGV[11] .. amount)
return {{{TAKEN}, req, tok, req_oldest + 60 - now, tok_oldest + 60 - now, now, spent, amount}}
"""

# Settles calls and journals their records. KEYS: this process's lease, reaped set and journal, then per
# call (wallet counter, tokens hash, key month-spend counter). ARGV: epoch, then per call (reservation id or
# '', amount, cost, bucket, token delta, org, key slot, journaled cost, request id, record or '').
# A reservation still in the lease gives back amount − cost; one the reapers gave back whole (this process
# was presumed dead) is charged its cost; one in neither was settled by an earlier try of this batch.
# Returns false when Redis lost its state (the caller rejoins and retries), else per call its month spend
# (false when its key has no counter) and its journal id (false when it has no record).
_SETTLE = _PRELUDE + """
if redis.call('GET', EPOCH) ~= ARGV[1] then return false end
local out = {}
for i = 0, (#KEYS - 3) / 3 - 1 do
  local k, a = 3 + i * 3, 1 + i * 10
  local rid, cost = ARGV[a + 1], tonumber(ARGV[a + 3])
  local settled, spent = rid == '', false
  if rid ~= '' then
    local refund
    if redis.call('HDEL', KEYS[1], rid) == 1 then refund = tonumber(ARGV[a + 2]) - cost
    elseif redis.call('SREM', KEYS[2], rid) == 1 then refund = -cost end
    if refund then
      settled = true
      wallet_move(KEYS[k + 1], refund)
      window_correct(KEYS[k + 2], ARGV[a + 4], tonumber(ARGV[a + 5]))
      spent = key_spend_move(KEYS[k + 3], -refund)
    end
  end
  local id = false
  if settled and ARGV[a + 10] ~= '' then
    id = redis.call('XADD', KEYS[3], '*', 'o', ARGV[a + 6], 's', ARGV[a + 7], 'c', ARGV[a + 8], 'r', ARGV[a + 9],
                    'd', ARGV[a + 10])
  end
  out[#out + 1] = spent
  out[#out + 1] = id
end
return out
"""

# Joins (or rejoins) the money state: adopts the current epoch — or starts one when Redis has none, or when
# ``replace`` and it still holds the one this process knew (a reconnection reached another server, which
# may hold older state) — then writes this process's open reservations and unwritten calls, moving any
# counter rebuilt without them. KEYS: lease, journal. ARGV: known epoch ('' = never joined), new epoch,
# replace ('1'/''), pid, lease ms, rebuild ms, number of reservations, (id, lease value) each, then
# (org, key slot, journaled cost, request id, record) per unwritten call.
# Returns {epoch, 1 when it started it, journal id per call}.
_JOIN = _PRELUDE + """
local known, epoch, started = ARGV[1], redis.call('GET', EPOCH), 0
if not epoch or (ARGV[3] == '1' and epoch == known) then
  epoch, started = ARGV[2], 1
  redis.call('SET', EPOCH, epoch)
  if known ~= '' then redis.call('SET', REBUILDING, 1, 'PX', ARGV[6]) end
end
redis.call('DEL', KEYS[1])
local n = tonumber(ARGV[7])
for i = 0, n - 1 do
  local value = ARGV[9 + i * 2]
  redis.call('HSET', KEYS[1], ARGV[8 + i * 2], value)
  local org, slot, amount = lease_parts(value)
  wallet_move(wallet_key_of(org), -amount)
  if slot ~= '' then key_spend_move(spend_key_of(org, slot), amount) end
end
redis.call('DEL', KEYS[2])
local out = {epoch, started}
for i = 8 + n * 2, #ARGV, 5 do
  out[#out + 1] = redis.call('XADD', KEYS[2], '*', 'o', ARGV[i], 's', ARGV[i + 1], 'c', ARGV[i + 2],
                             'r', ARGV[i + 3], 'd', ARGV[i + 4])
  local cost = tonumber(ARGV[i + 2])
  wallet_move(wallet_key_of(ARGV[i]), -cost)
  if ARGV[i + 1] ~= '' then key_spend_move(spend_key_of(ARGV[i], ARGV[i + 1]), cost) end
end
redis.call('ZADD', PROCS, now_ms() + tonumber(ARGV[5]), ARGV[4])
redis.call('SREM', ORPHANS, ARGV[4])
return out
"""

# Renews this process's lease and trims its journal of entries committed more than the grace ago.
# KEYS: journal. ARGV: epoch, pid, lease ms, oldest uncommitted journal id or '', grace ms.
# Returns false when Redis lost its state, else {1 if this process was not registered (presumed dead),
# processes whose lease ran out, orphaned journals}.
_BEAT = _PRELUDE + """
if redis.call('GET', EPOCH) ~= ARGV[1] then return false end
local now = now_ms()
local fresh = redis.call('ZADD', PROCS, now + tonumber(ARGV[3]), ARGV[2])
if fresh == 1 then redis.call('SREM', ORPHANS, ARGV[2]) end
local cut = (now - tonumber(ARGV[5])) .. '-0'
if ARGV[4] ~= '' and id_before(ARGV[4], cut) then cut = ARGV[4] end
redis.call('XTRIM', KEYS[1], 'MINID', cut)
return {fresh, redis.call('ZRANGEBYSCORE', PROCS, '-inf', now, 'LIMIT', 0, 16),
        redis.call('SRANDMEMBER', ORPHANS, 16)}
"""

# Reaps a process whose lease ran out: its reservations go back, its journal waits to be replayed.
# ARGV: pid. Returns the number of reservations given back, or false when it is alive after all.
_REAP = _PRELUDE + f"""
local pid = ARGV[1]
local expiry = redis.call('ZSCORE', PROCS, pid)
if not expiry or tonumber(expiry) > now_ms() then return false end
local lease, reaped = lease_of(pid), '{REAPED}' .. pid
local entries = redis.call('HGETALL', lease)
for i = 1, #entries, 2 do
  local org, slot, amount = lease_parts(entries[i + 1])
  wallet_move(wallet_key_of(org), amount)
  if slot ~= '' then key_spend_move(spend_key_of(org, slot), -amount) end
  redis.call('SADD', reaped, entries[i])
end
if #entries > 0 then redis.call('EXPIRE', reaped, {REAPED_TTL}) end
redis.call('DEL', lease)
redis.call('ZREM', PROCS, pid)
if redis.call('EXISTS', journal_of(pid)) == 1 then redis.call('SADD', ORPHANS, pid) end
return #entries / 2
"""

# Drops replayed entries from an orphaned journal, and the journal once empty. KEYS: journal. ARGV: pid, ids.
_FORGET = _PRELUDE + """
if #ARGV > 1 then redis.call('XDEL', KEYS[1], unpack(ARGV, 2)) end
if redis.call('XLEN', KEYS[1]) == 0 and not redis.call('ZSCORE', PROCS, ARGV[1]) then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', ORPHANS, ARGV[1])
  return 1
end
return 0
"""

# A rebuild's first look: the journaled calls of some organizations, with a price, and their fences.
# ARGV: epoch, organizations. Returns false when Redis lost its state, else {now ms, 1 while rebuilding,
# fence version per organization, (request id, org, key slot, cost) per call}.
_JOURNALED = _PRELUDE + """
if redis.call('GET', EPOCH) ~= ARGV[1] then return false end
local wanted, fences, calls = {}, {}, {}
for i = 2, #ARGV do
  wanted[ARGV[i]] = true
  local _, version = fence_of(ARGV[i])
  fences[#fences + 1] = version
end
for _, pid in ipairs(holders()) do
  for _, entry in ipairs(redis.call('XRANGE', journal_of(pid), '-', '+')) do
    local f = entry[2]
    if f[6] ~= '0' and wanted[f[2]] then
      calls[#calls + 1] = f[8]; calls[#calls + 1] = f[2]; calls[#calls + 1] = f[4]; calls[#calls + 1] = f[6]
    end
  end
end
return {now_ms(), redis.call('EXISTS', REBUILDING), fences, calls}
"""

# A rebuild's second step, atomic: each counter from the database's figure (taken after _JOURNALED), the
# journaled calls not in the ledger at that moment (those trimmed since included) and every lease. ``seed``
# sets counters that are missing; ``check`` repairs counters that differ. A counter whose organization's
# fence was up, or moved, is left for another try. ARGV: epoch, mode, the first look's time, number of
# counters, (kind 'w'|'s', key, org, key slot, database figure, fence version) each, number of request ids
# written, those ids, then the first look's unwritten calls (request id, org, key slot, cost).
# Returns false when Redis lost its state, {-1} while rebuilding, {-2} when too slow, else per counter
# {outcome, value it should hold, value it held}.
_COUNTERS = _PRELUDE + f"""
if redis.call('GET', EPOCH) ~= ARGV[1] then return false end
if redis.call('EXISTS', REBUILDING) == 1 then return {{-1}} end
if now_ms() - tonumber(ARGV[3]) > {REBUILD_MAX_MS} then return {{-2}} end
local n = tonumber(ARGV[4])
local base = 5 + n * 6
local written, counted = {{}}, {{}}
for i = base + 1, base + tonumber(ARGV[base]) do written[ARGV[i]] = true end
local unwritten, reserved = {{}}, {{}}
local function add(totals, org, slot, amount)
  totals[org] = (totals[org] or 0) + amount
  if slot ~= '' then totals[org .. '|' .. slot] = (totals[org .. '|' .. slot] or 0) + amount end
end
local function count(request_id, org, slot, cost)
  if written[request_id] or counted[request_id] then return end
  counted[request_id] = true
  add(unwritten, org, slot, tonumber(cost))
end
for _, pid in ipairs(holders()) do
  for _, entry in ipairs(redis.call('XRANGE', journal_of(pid), '-', '+')) do
    local f = entry[2]
    if f[6] ~= '0' then count(f[8], f[2], f[4], f[6]) end
  end
end
for i = base + tonumber(ARGV[base]) + 1, #ARGV, 4 do count(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]) end
for _, pid in ipairs(redis.call('ZRANGE', PROCS, 0, -1)) do
  for _, value in ipairs(redis.call('HVALS', lease_of(pid))) do add(reserved, lease_parts(value)) end
end
local out = {{}}
for i = 0, n - 1 do
  local a = 5 + i * 6
  local kind, key, org, slot = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local pending, version = fence_of(org)
  local current = redis.call('GET', key)
  local outcome, expected = {FENCED}, 0
  if pending <= 0 and version == tonumber(ARGV[a + 5]) then
    local name = kind == 'w' and org or org .. '|' .. slot
    local terms = (unwritten[name] or 0) + (reserved[name] or 0)
    expected = kind == 'w' and tonumber(ARGV[a + 4]) - terms or tonumber(ARGV[a + 4]) + terms
    outcome = {COUNTED}
    if ARGV[2] == 'seed' and not current then
      if kind == 'w' then redis.call('SET', key, expected) else redis.call('SET', key, expected, 'EX', {SPEND_TTL}) end
    elseif ARGV[2] == 'check' and current and tonumber(current) ~= expected then
      redis.call('SET', key, expected, 'KEEPTTL')
    end
  end
  out[#out + 1] = outcome
  out[#out + 1] = expected
  out[#out + 1] = current
end
return out
"""

# Leaves the money state at shutdown, once every record is committed. KEYS: lease, journal. ARGV: pid.
_LEAVE = _PRELUDE + """
if redis.call('HLEN', KEYS[1]) > 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', PROCS, ARGV[1])
return 1
"""


@dataclass(frozen=True, slots=True)
class Budget:
    """What a token-priced call may reserve (µcr), and the output each amount it got pays for."""

    least: int  # the prompt's worst case plus the least output a call is served with
    most: int  # … plus the most output it may produce
    share: int  # a call without max_tokens takes at most 1/share of what is spendable (but at least ``least``)
    prompt: int  # the prompt's worst case, in µcr × PER
    output_price: int  # µcr per million output tokens of every choice together
    ceiling: int  # output tokens at ``most``
    enforced: bool  # the upstream keeps to ``ceiling`` by itself (the client's max_tokens, or the model's limit)

    def output_cap(self, amount: int) -> int | None:
        """The max output to send upstream so that the call cannot cost more than ``amount``; None when the
        upstream's own limit already does."""
        covered = (amount * PER - self.prompt) // self.output_price if self.output_price else self.ceiling
        if covered >= self.ceiling:
            return None if self.enforced else self.ceiling
        return max(covered, 0)


def call_budget(prices: TokenPrices, *, prompt_bytes: int, max_output: object, model_max: int | None,
                choices: int = 1) -> Budget:
    """``choices``: answers asked for (n), each of which may write the whole output."""
    conf = settings.HYPEREAL
    output_price = prices.output * choices
    asked = max_output if type(max_output) is int and max_output > 0 else None
    ceiling = asked or model_max or conf["OUTPUT_TOKENS_CEILING"]
    prompt = prompt_bytes * max(prices.input, prices.cached_input, prices.cache_write)

    def cost(output: int) -> int:
        return -(-(prompt + output * output_price) // PER)

    return Budget(least=cost(min(ceiling, conf["OUTPUT_TOKENS_RESERVE"])), most=cost(ceiling),
                  share=1 if asked else conf["OUTPUT_RESERVE_SHARE"], prompt=prompt, output_price=output_price,
                  ceiling=ceiling, enforced=bool(asked or model_max))


@dataclass(frozen=True, slots=True)
class Reservation:
    """What one call took: given back by ``settle`` whatever happens to the call."""

    ctx: KeyContext
    amount: int  # micro-credits reserved from the wallet and from the key's monthly limit
    tokens: int  # reserved in the tokens-per-minute budget
    decision: Decision
    month: str
    id: str = ""  # its entry in this process's lease (Redis)


def llm_floor() -> int:
    """The balance (µcr) LLM calls need beyond their own cost; media and jobs need only their price."""
    return settings.HYPEREAL["MIN_BALANCE_CREDITS"] * MICRO


def _insufficient(floor: int) -> GatewayError:
    message = (f"Insufficient credits: LLM calls need a balance of at least {floor // MICRO} credits and enough "
               "to cover the call." if floor else "Insufficient credits: the balance cannot cover this request's "
               "price.")
    return GatewayError(402, "insufficient_credits", f"{message} Top up to continue.", "insufficient_credits")


def _over_limit(ctx: KeyContext, month: str) -> GatewayError:
    _alert_once(ctx.key_id, month, BUDGET_THRESHOLDS[-1])  # the 80 % heads-up goes first, if still owed
    return GatewayError(402, "spending_limit_exceeded", "This API key has reached its monthly spending limit; "
                        "raise the limit or wait for the next month (UTC).", "spending_limit_exceeded")


def _rate_limited(decision: Decision) -> GatewayError:
    return GatewayError(429, "rate_limit_exceeded", "Rate limit reached for your organization; retry after "
                        f"{decision.retry_after} s.", "rate_limit_exceeded", headers=decision.headers())


def _unavailable(why: str, retry_after: int = 1) -> GatewayError:
    return GatewayError(503, "service_unavailable", f"Hypereal {why}; retry shortly.",
                        headers={"retry-after": str(retry_after)})


def _lease_seconds() -> float:
    return settings.HYPEREAL["LEASE_SECONDS"]


class _Local:
    """The embedded default: this process's exact view of all three budgets."""

    def __init__(self) -> None:
        self.window = LocalWindow()
        self.balances: dict[int, tuple[float, int]] = {}  # org → (loaded at, balance then)
        self.inflight: dict[int, int] = {}
        self.spent: dict[tuple[int, str], int] = {}
        self.alerted: set[tuple[int, str, int]] = set()

    async def take(self, ctx: KeyContext, least: int, most: int, share: int, tokens: int, month: str,
                   floor: int) -> Reservation:
        org_id = ctx.org_id
        loaded = self.balances.get(org_id)
        if loaded is None or time.monotonic() - loaded[0] >= settings.HYPEREAL["BALANCE_CACHE_SECONDS"]:
            loaded = self.balances[org_id] = (time.monotonic(),
                                              await run_db(wallet_balance, organization_id=org_id))
        slot = (ctx.key_id, month)
        if ctx.monthly_spend_limit is not None and slot not in self.spent:
            self.spent[slot] = (await run_db(api_keys_month_spend, key_ids=[ctx.key_id], month=month))[ctx.key_id]
        decision = Decision.of(self.window.check(org_id, ctx.rpm, ctx.tpm, tokens), ctx.rpm, ctx.tpm)
        if not decision.allowed:
            raise _rate_limited(decision)
        available = loaded[1] - meter.pending_cost(org_id) - self.inflight.get(org_id, 0)
        refusal = None
        if available < floor or available < least:
            refusal = _insufficient(floor)
        elif ctx.monthly_spend_limit is not None:
            if self.spent[slot] + least > ctx.monthly_spend_limit:
                refusal = _over_limit(ctx, month)
            available = min(available, ctx.monthly_spend_limit - self.spent[slot])
        if refusal is not None:
            self.window.add(org_id, decision.bucket, requests=-1, tokens=-tokens)
            raise refusal
        amount = min(most, max(least, available // share))
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


def _redis():
    client = redis_client()
    if client is not None and client.on_new_server is None:
        client.on_new_server = _presence.server_changed
    return client


def _spawn(coro) -> None:
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def take(ctx: KeyContext, *, amount: int, tokens: int, floor: int | None = None, most: int | None = None,
               share: int = 1) -> Reservation:
    """Reserve between ``amount`` and ``most`` micro-credits (at most 1/``share`` of what is spendable beyond
    ``amount``) and ``tokens`` for one call, or refuse it with 402/429/503. The wallet must hold ``floor``
    too (µcr; default: the LLM floor)."""
    month = spend_month()
    floor = llm_floor() if floor is None else floor
    most = amount if most is None else most
    redis = _redis()
    if redis is None:
        return await _local.take(ctx, amount, most, share, tokens, month, floor)
    org_id, limit = ctx.org_id, -1 if ctx.monthly_spend_limit is None else ctx.monthly_spend_limit
    keys = [spendable_key(org_id), *ratelimit_keys(org_id), spend_key(org_id, ctx.key_id, month),
            _presence.lease_key]
    rid = _presence.reservation_id()
    args = [await _presence.joined(), floor, amount, most, share, ctx.rpm, ctx.tpm, tokens, limit, rid,
            f"{org_id}|{spend_slot(ctx.key_id, month)}|"]
    for _ in range(REBUILD_ATTEMPTS):
        try:
            outcome, req, tok, req_reset, tok_reset, now, _, taken = await redis.script(_TAKE, keys, args)
        except RedisError:
            log.exception("taking a call's reservation from Redis failed")
            raise _unavailable("cannot check limits and balances right now") from None
        if outcome == LOST:
            args[0] = await _presence.rejoin(args[0])
        elif outcome == SEED_WALLET:
            await _rebuild([_Counter("w", org_id)])
        elif outcome == SEED_SPEND:
            await _rebuild([_Counter("s", org_id, ctx.key_id, month)])
        else:
            break
    else:
        raise _unavailable("is rebuilding its balances")
    decision = Decision(outcome != RATE_LIMITED, ctx.rpm, ctx.tpm, req, tok, req_reset, tok_reset, now)
    if outcome == REBUILDING:
        raise _unavailable("is rebuilding its balances after Redis lost its state",
                           retry_after=max(1, round(_lease_seconds() * 2 / 5)))
    if outcome == RATE_LIMITED:
        raise _rate_limited(decision)
    if outcome == INSUFFICIENT:
        raise _insufficient(floor)
    if outcome == OVER_LIMIT:
        raise _over_limit(ctx, month)
    reservation = Reservation(ctx, taken, tokens, decision, month, rid)
    # Recorded before any later reply is handled (replies resume their callers in order), so that a rejoin
    # writes it back. A take cancelled after Redis ran it stays in the lease until this process ends.
    _presence.open[rid] = reservation
    return reservation


def settle(reservation: Reservation | None, *, cost: int, tokens: int,
           record: CallRecord | None = None) -> asyncio.Future | None:
    """The call cost ``cost`` and used ``tokens``: give back the rest of what it took, and queue its record.
    With Redis, the returned future is done once both are in Redis (the record journaled)."""
    if _redis() is None:
        if reservation is not None:
            _alert_if_due(reservation, _local.settle(reservation, cost, tokens))
        if record is not None:
            meter.record(record)
        return None
    return _settler.add(reservation, cost, tokens, record)


@dataclass(slots=True)
class _Settlement:
    reservation: Reservation | None
    cost: int
    tokens: int
    record: CallRecord | None
    done: asyncio.Future
    data: bytes | None = None  # the record as journaled, handed on to the meter


class _Settler:
    """Settlements of calls that ended, sent to Redis at once; those that end while one is on its way go
    together in the next (no added delay when idle, one round trip for many under load)."""

    def __init__(self) -> None:
        self.pending: list[_Settlement] = []
        self.task: asyncio.Task | None = None

    def add(self, reservation: Reservation | None, cost: int, tokens: int, record: CallRecord | None) -> asyncio.Future:
        done = asyncio.get_running_loop().create_future()
        self.pending.append(_Settlement(reservation, cost, tokens, record, done))
        if self.task is None:
            self.task = asyncio.ensure_future(self._drain())
        return done

    def kick(self) -> None:
        """Retry settlements a failed round trip left waiting, even if no call ends to carry them."""
        if self.pending and self.task is None:
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
        epoch = await _presence.joined()
        keys, args = [_presence.lease_key, _presence.reaped_key, _presence.journal_key], [epoch]
        for s in batch:
            reservation, record = s.reservation, s.record
            ctx = reservation.ctx if reservation is not None else None
            if ctx is not None:
                keys += [spendable_key(ctx.org_id), ratelimit_keys(ctx.org_id)[1],
                         spend_key(ctx.org_id, ctx.key_id, reservation.month)]
                args += [reservation.id, reservation.amount, s.cost, reservation.decision.bucket,
                         s.tokens - reservation.tokens if ctx.tpm else 0]
            else:
                keys += ["", "", ""]
                args += ["", 0, 0, 0, 0]
            if record is None:
                args += ["", "", 0, "", ""]
            else:
                month = reservation.month if reservation is not None else spend_month(record.created_at)
                slot = spend_slot(record.api_key_id, month) if record.api_key_id else ""
                s.data = record_dumps(record)
                args += [record.organization_id, slot, 0 if record.prepaid else record.cost, record.request_id,
                         s.data]
        try:
            replies = await _redis().script(_SETTLE, keys, args)
        except RedisError:
            log.exception("settling %d calls with Redis failed; their records are queued unjournaled and their "
                          "reservations go with the next batch", len(batch))
            for s in batch:
                if s.record is not None:
                    meter.record(s.record, None, s.data)
                    s.record = None
                if not s.done.done():
                    s.done.set_result(None)
            self.pending[:0] = [s for s in batch if s.reservation is not None]
            return False
        if replies is None:  # Redis lost its state: write this process's back, then this batch again
            await _presence.rejoin(epoch)
            self.pending[:0] = batch
            return True
        for i, s in enumerate(batch):
            spent, journal_id = replies[2 * i], replies[2 * i + 1]
            if s.reservation is not None:
                _presence.open.pop(s.reservation.id, None)
                _alert_if_due(s.reservation, spent)
            if s.record is not None:
                meter.record(s.record, journal_id.decode() if journal_id else None, s.data)
            if not s.done.done():
                s.done.set_result(None)
        return True


_settler = _Settler()


async def flush() -> None:
    """Shutdown: send the settlements still waiting, write every record, and leave Redis's money state."""
    if _settler.task is not None:
        await _settler.task
    await _settler.flush()
    await meter.flush()
    await _presence.leave()


@dataclass(frozen=True, slots=True)
class _Counter:
    kind: str  # "w": a wallet's spendable counter; "s": a key's month spend
    org_id: int
    key_id: int = 0
    month: str = ""

    @property
    def key(self) -> str:
        return spendable_key(self.org_id) if self.kind == "w" else spend_key(self.org_id, self.key_id, self.month)

    @property
    def slot(self) -> str:
        return spend_slot(self.key_id, self.month) if self.kind == "s" else ""


@dataclass(frozen=True, slots=True)
class _Unwritten:
    """Journaled calls with a price, as a rebuild's first look saw them: (request id, org, key slot, cost)."""

    epoch: str
    now_ms: int
    fences: dict[int, int]
    calls: list[tuple[str, str, str, int]]

    def charge_keys(self) -> list[str]:
        return [f"call:{request_id}" for request_id, *_ in self.calls]


async def _journaled(org_ids: list[int]) -> _Unwritten:
    while True:
        epoch = await _presence.joined()
        reply = await _redis().script(_JOURNALED, [], [epoch, *org_ids])
        if reply is None:
            await _presence.rejoin(epoch)
            continue
        now, rebuilding, fences, flat = reply
        if rebuilding:
            raise _unavailable("is rebuilding its balances after Redis lost its state")
        calls = [(flat[i].decode(), flat[i + 1].decode(), flat[i + 2].decode(), int(flat[i + 3]))
                 for i in range(0, len(flat), 4)]
        return _Unwritten(epoch, now, dict(zip(org_ids, fences)), calls)


async def _figures(counters: list[_Counter], unwritten: _Unwritten) -> tuple[list[int], set[str]]:
    """The database's figure for each counter (all of one kind), and the request ids whose charge is written."""
    if counters[0].kind == "w":
        balances, written = await run_db(wallets_snapshot, organization_ids=[c.org_id for c in counters],
                                         charge_keys=unwritten.charge_keys())
        figures = [balances[c.org_id] for c in counters]
    else:
        spent, written = await run_db(key_spend_snapshot, slots=[(c.key_id, c.month) for c in counters],
                                      charge_keys=unwritten.charge_keys())
        figures = [spent[c.key_id, c.month] for c in counters]
    return figures, {key.removeprefix("call:") for key in written}


async def _counters(counters: list[_Counter], *, mode: str) -> list[tuple[_Counter, int, int, int | None]] | None:
    """One pass of _COUNTERS over counters of one kind: (counter, outcome, value it should hold, value it
    held) each, or None when the pass must start over."""
    org_ids = sorted({c.org_id for c in counters})
    unwritten = await _journaled(org_ids)
    figures, written = await _figures(counters, unwritten)
    args = [unwritten.epoch, mode, unwritten.now_ms, len(counters)]
    for counter, figure in zip(counters, figures):
        args += [counter.kind, counter.key, counter.org_id, counter.slot, figure, unwritten.fences[counter.org_id]]
    args += [len(written), *written]
    for request_id, org, slot, cost in unwritten.calls:
        if request_id not in written:
            args += [request_id, org, slot, cost]
    reply = await _redis().script(_COUNTERS, [], args)
    if reply is None:
        await _presence.rejoin(args[0])
        return None
    if reply == [-1]:
        raise _unavailable("is rebuilding its balances after Redis lost its state")
    if reply == [-2]:
        return None
    return [(counter, reply[3 * i], reply[3 * i + 1], None if reply[3 * i + 2] is None else int(reply[3 * i + 2]))
            for i, counter in enumerate(counters)]


_rebuilding: dict[_Counter, asyncio.Future] = {}


async def _rebuild(counters: list[_Counter]) -> None:
    """Seed missing counters (one kind); calls of this process waiting for the same counter share one rebuild."""
    if (shared := _rebuilding.get(counters[0])) is not None and len(counters) == 1:
        return await asyncio.shield(shared)
    future = asyncio.get_running_loop().create_future()
    for counter in counters:
        _rebuilding[counter] = future
    try:
        for _ in range(REBUILD_ATTEMPTS):
            done = await _counters(counters, mode="seed")
            if done is not None and all(outcome == COUNTED for _, outcome, _, _ in done):
                break
            await asyncio.sleep(0.01)  # a movement is committing (its fence is up): let it finish
        else:
            raise _unavailable("is rebuilding its balances")
        future.set_result(None)
    except BaseException as exc:
        future.set_exception(exc)
        future.exception()  # retrieved: whoever shares it sees it through its own await
        raise
    finally:
        for counter in counters:
            _rebuilding.pop(counter, None)


async def balance(org_id: int) -> int:
    """The wallet's balance with every answered call charged, on whichever process it was served: the
    ledger plus the journaled calls not yet in it."""
    if _redis() is None:  # this process's own calls are all there is: written once its queue is
        return await run_db(wallet_balance, organization_id=org_id)
    unwritten = await _journaled([org_id])
    balances, written = await run_db(wallets_snapshot, organization_ids=[org_id],
                                     charge_keys=unwritten.charge_keys())
    return balances[org_id] - sum(cost for request_id, _, _, cost in unwritten.calls
                                  if f"call:{request_id}" not in written)


async def month_spend(ctx: KeyContext) -> int:
    """The key's month-to-date spend with every answered call counted, on whichever process it was served."""
    month = spend_month()
    if _redis() is None:
        return (await run_db(api_keys_month_spend, key_ids=[ctx.key_id], month=month))[ctx.key_id]
    slot = spend_slot(ctx.key_id, month)
    unwritten = await _journaled([ctx.org_id])
    spent, written = await run_db(key_spend_snapshot, slots=[(ctx.key_id, month)],
                                  charge_keys=unwritten.charge_keys())
    return spent[ctx.key_id, month] + sum(cost for request_id, _, call_slot, cost in unwritten.calls
                                          if call_slot == slot and f"call:{request_id}" not in written)


_SPEND_KEY = re.compile(re.escape(SPEND_PREFIX) + r"\{(\d+)\}:(\d+):(\d{4}-\d{2})$")


async def reconcile(*, batch: int = 200) -> list[tuple[str, int, int]]:
    """Prove every counter equals the ledger's figure minus (or plus) what is unwritten and reserved; repair
    and alert on any that does not. Returns (counter key, value it held, value it should hold) per repair."""
    redis = _redis()
    found: list[_Counter] = []
    for pattern in (f"{WALLET_PREFIX}*", f"{SPEND_PREFIX}*"):
        cursor = b"0"
        while True:
            cursor, keys = await redis.execute("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            for key in keys:
                key = key.decode()
                if key.startswith(WALLET_PREFIX) and key[len(WALLET_PREFIX):].isdigit():
                    found.append(_Counter("w", int(key[len(WALLET_PREFIX):])))
                elif match := _SPEND_KEY.match(key):
                    found.append(_Counter("s", int(match[1]), int(match[2]), match[3]))
            if cursor == b"0":
                break
    repairs = []
    for kind in ("w", "s"):
        counters = [c for c in found if c.kind == kind]
        for start in range(0, len(counters), batch):
            for _ in range(3):  # a pass that took too long, or met a fence, is tried again; then next time
                checked = await _counters(counters[start:start + batch], mode="check")
                if checked is not None and all(outcome == COUNTED for _, outcome, _, _ in checked):
                    break
            for counter, outcome, expected, held in checked or ():
                if outcome == COUNTED and held is not None and held != expected:
                    repairs.append((counter.key, held, expected))
    if repairs:
        lines = "\n".join(f"{key}: held {held} µcr, the ledger says {expected} µcr" for key, held, expected in repairs)
        log.error("money counters out of step with the ledger, repaired:\n%s", lines)
        await run_db(mail_admins, "Money counters repaired", lines)
    return repairs


class _Presence:
    """This process in Redis's money state: its lease (open reservations), its journal (unwritten calls),
    renewed while it runs, and its share of the upkeep (reaping the dead, replaying their journals,
    reconciling the counters)."""

    def __init__(self) -> None:
        self.pid = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self.lease_key, self.journal_key = LEASE + self.pid, JOURNAL + self.pid
        self.reaped_key = REAPED + self.pid
        self.epoch: str | None = None
        self.open: dict[str, Reservation] = {}
        self._ids = itertools.count(1)
        self._joining: asyncio.Lock | None = None
        self._chores: asyncio.Task | None = None
        self._next_reconcile = time.monotonic() + settings.HYPEREAL["RECONCILE_SECONDS"]
        self._renewed = False

    def reservation_id(self) -> str:
        return str(next(self._ids))

    async def joined(self) -> str:
        return self.epoch or await self.rejoin(None)

    async def rejoin(self, seen: str | None) -> str:
        """Write this process's state into the epoch Redis holds now (starting one if it has none), unless
        another call of this process already did since ``seen``."""
        if self._joining is None:
            self._joining = asyncio.Lock()
        async with self._joining:
            if self.epoch is not None and self.epoch != seen:
                return self.epoch
            args, queued = self._join_args(replace=False)
            reply = await _redis().script(_JOIN, [self.lease_key, self.journal_key], args)
            return self._joined(reply, args, queued)

    async def server_changed(self, send: Send) -> None:
        """A reconnection reached another Redis server, maybe holding older state: start a new epoch (unless
        another process already did), write this process's state into it and drop every counter, before any
        other command goes out on the new connection."""
        if self.epoch is None:
            return
        args, queued = self._join_args(replace=True)
        reply = (await send(["EVAL", _JOIN, 2, self.lease_key, self.journal_key, *args]))[0]
        if self._joined(reply, args, queued) and reply[1] == 1:
            log.warning("Redis changed server; its counters are rebuilt from the ledger")
            for pattern in (f"{WALLET_PREFIX}*", f"{SPEND_PREFIX}*"):
                cursor = b"0"
                while True:
                    cursor, keys = (await send(["SCAN", cursor, "MATCH", pattern, "COUNT", 1000]))[0]
                    if keys:
                        await send(["DEL", *keys])
                    if cursor == b"0":
                        break

    def _join_args(self, *, replace: bool) -> tuple[list[object], list[Queued]]:
        queued = meter.uncommitted()
        args: list[object] = [self.epoch or "", os.urandom(8).hex(), "1" if replace else "", self.pid,
                              int(_lease_seconds() * 1000), int(_lease_seconds() * 400), len(self.open)]
        for rid, reservation in self.open.items():
            ctx = reservation.ctx
            args += [rid, f"{ctx.org_id}|{spend_slot(ctx.key_id, reservation.month)}|{reservation.amount}"]
        for entry in queued:
            record = entry.record
            slot = spend_slot(record.api_key_id, spend_month(record.created_at)) if record.api_key_id else ""
            args += [record.organization_id, slot, 0 if record.prepaid else record.cost, record.request_id,
                     entry.dumped()]
        return args, queued

    def _joined(self, reply: list, args: list[object], queued: list[Queued]) -> str:
        epoch, started, *ids = reply
        for entry, journal_id in zip(queued, ids):
            entry.journal_id = journal_id.decode()
        if args[0] and epoch.decode() != args[0]:
            log.warning("Redis lost its state (epoch %s → %s): %d reservations and %d unwritten calls written back",
                        args[0], epoch.decode(), len(self.open), len(queued))
        self.epoch = epoch.decode()
        return self.epoch

    async def run_forever(self) -> None:
        if _redis() is None:
            return
        while True:
            try:
                await self.beat()
            except Exception:
                log.exception("renewing this process's lease in Redis failed; retrying")
            await asyncio.sleep(_lease_seconds() / 5)  # a period, not a wait for anything

    async def beat(self) -> None:
        epoch = await self.joined()
        reply = await _redis().script(_BEAT, [self.journal_key], [
            epoch, self.pid, int(_lease_seconds() * 1000), meter.oldest_journaled() or "", JOURNAL_GRACE_MS])
        if reply is None:
            await self.rejoin(epoch)
            return
        fresh, expired, orphans = reply
        if fresh and self._renewed:
            log.warning("this process was presumed dead (lease not renewed for %s s): its open reservations were "
                        "given back and are charged as they settle", _lease_seconds())
        self._renewed = True
        _settler.kick()
        if self._chores is None or self._chores.done():
            self._chores = asyncio.ensure_future(self._upkeep([p.decode() for p in expired if p.decode() != self.pid],
                                                              [p.decode() for p in orphans]))

    async def _upkeep(self, expired: list[str], orphans: list[str]) -> None:
        """Work any process may do, one at a time so that it never delays the lease's renewal."""
        try:
            for pid in expired:
                if (returned := await _redis().script(_REAP, [], [pid])) is not None:
                    log.warning("gateway process %s stopped renewing its lease: %d reservations given back",
                                pid, returned)
                    orphans.append(pid)
            for pid in dict.fromkeys(orphans):
                await self._replay(pid)
            if time.monotonic() >= self._next_reconcile:
                self._next_reconcile = time.monotonic() + settings.HYPEREAL["RECONCILE_SECONDS"]
                lock_ms = int(settings.HYPEREAL["RECONCILE_SECONDS"] * 900)
                if await _redis().execute("SET", "hypereal:reconciling", self.pid, "NX", "PX", lock_ms):
                    await reconcile()
        except GatewayError as err:  # 503 while Redis is rebuilding: next time
            log.info("upkeep deferred: %s", err.message)
        except Exception:
            log.exception("upkeep of the money state failed; retrying at the next renewal")

    async def _replay(self, pid: str) -> None:
        """Write a dead process's journaled calls (idempotent per request id), then forget them."""
        redis, journal, lock = _redis(), JOURNAL + pid, f"hypereal:replaying:{pid}"
        if not await redis.execute("SET", lock, self.pid, "NX", "PX", 60_000):
            return
        try:
            while True:
                entries = await redis.execute("XRANGE", journal, "-", "+", "COUNT", 500)
                if entries:
                    await meter.write([dict(zip(fields[::2], fields[1::2]))[b"d"] for _, fields in entries])
                    log.warning("replayed %d calls journaled by gateway process %s", len(entries), pid)
                if await redis.script(_FORGET, [journal], [pid, *(entry_id for entry_id, _ in entries)]) \
                        or not entries:
                    return
        finally:
            await redis.execute("DEL", lock)

    async def leave(self) -> None:
        """Shutdown: once nothing of this process is unwritten, remove its lease, journal and registration."""
        if self._chores is not None:
            self._chores.cancel()  # a replay cut short is picked up by another process
        if _redis() is None or self.epoch is None or meter.uncommitted() or self.open:
            return
        try:
            await _redis().script(_LEAVE, [self.lease_key, self.journal_key], [self.pid])
        except RedisError:
            log.warning("could not leave Redis's money state; this process will be reaped in %s s",
                        _lease_seconds())


_presence = _Presence()
meter.run_with(_presence.run_forever)


def _alert_if_due(reservation: Reservation, spent: int | None) -> None:
    limit = reservation.ctx.monthly_spend_limit
    if spent is not None and limit:
        # The highest threshold crossed: its task sends any lower one still owed first, in order.
        if crossed := [t for t in BUDGET_THRESHOLDS if spent * 100 >= limit * t]:
            _alert_once(reservation.ctx.key_id, reservation.month, crossed[-1])


def _alert_once(key_id: int, month: str, threshold: int) -> None:
    _spawn(_alert(key_id, month, threshold))


async def _alert(key_id: int, month: str, threshold: int) -> None:
    """Queue the alert unless some process already did (the task itself is idempotent too)."""
    redis = _redis()
    if redis is None:
        if (key_id, month, threshold) in _local.alerted:
            return
        _local.alerted.add((key_id, month, threshold))
    elif not await redis.execute("SET", f"hypereal:alert:{key_id}:{month}:{threshold}", 1, "NX", "EX", SPEND_TTL):
        return
    await run_db(budget_threshold_reached.delay, key_id, month, threshold)  # publishing may block: off the loop
