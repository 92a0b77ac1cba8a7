"""Per-organization requests- and tokens-per-minute: the sliding window and the headers it produces.

Each limit counts per-second buckets over the last 60 seconds (a sliding minute). With Redis the
window is checked and taken by gateway.quota's script, on Redis's clock so that processes on
different hosts agree; ``LocalWindow`` is the same algorithm in process for the embedded default.
"""

import time
from dataclasses import dataclass

WINDOW = 60
# Lua over one per-second bucket hash, for gateway.quota's script: window_used drops buckets older than
# the minute and answers (count, oldest second); window_add counts into a bucket; window_correct adjusts
# a bucket still in the window (a call's real token usage against what it reserved).
# Beside the buckets the hash keeps their total ('t'), a second no bucket lies below ('o') and whether a
# bucket lies at it ('e'), so that a call reads three fields and drops only what left the window since
# the last call, instead of summing all sixty buckets: that scan was most of Redis's time per call (bench/:
# ~120 µs of a ~165 µs reservation script at a steady rate).
WINDOW_LUA = """
local window_seen = {}  -- key → {oldest-second bound, whether a bucket is at it}, for window_add
local function window_recount(key, now)  -- a new hash, or a clock that went back or leapt
  local total, oldest = 0, nil
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    local sec = tonumber(fields[i])
    if sec and sec <= now - 60 then
      redis.call('HDEL', key, fields[i])
    elseif sec then
      total = total + tonumber(fields[i + 1])
      if not oldest or sec < oldest then oldest = sec end
    end
  end
  window_seen[key] = {oldest or now, oldest ~= nil}
  if #fields > 0 then redis.call('HSET', key, 't', total, 'o', oldest or now, 'e', oldest and 1 or 0) end
  return total, oldest or now
end
local function window_used(key, now)
  local meta = redis.call('HMGET', key, 't', 'o', 'e')
  local total, cursor, exact = tonumber(meta[1]), tonumber(meta[2]), meta[3] == '1'
  if not total or not cursor or cursor > now or cursor < now - 120 then return window_recount(key, now) end
  local moved = false
  if cursor <= now - 60 then
    for sec = cursor, now - 60 do
      local count = redis.call('HGET', key, sec)
      if count then
        total = total - tonumber(count)
        redis.call('HDEL', key, sec)
      end
    end
    cursor, exact, moved = now - 59, false, true
  end
  if not exact then
    moved = true
    while true do  -- up to the oldest bucket, or to now
      if redis.call('HEXISTS', key, cursor) == 1 then
        exact = true
        break
      end
      if cursor >= now then break end
      cursor = cursor + 1
    end
    -- None up to now, yet more fields than t, o and e: buckets above now, from before the clock went back.
    if not exact and redis.call('HLEN', key) > 3 then return window_recount(key, now) end
  end
  if moved then redis.call('HSET', key, 't', total, 'o', cursor, 'e', exact and 1 or 0) end
  window_seen[key] = {cursor, exact}
  return total, exact and cursor or now
end
local function window_add(key, now, count)  -- after window_used(key, now) in the same script
  if redis.call('HINCRBY', key, now, count) == count then redis.call('EXPIRE', key, 61) end
  redis.call('HINCRBY', key, 't', count)
  local seen = window_seen[key]
  if not seen[2] or seen[1] > now then  -- no bucket left in the window, or the clock went back below them
    redis.call('HSET', key, 'o', now, 'e', 1)
    window_seen[key] = {now, true}
  end
end
local function window_correct(key, bucket, delta)
  if delta ~= 0 and redis.call('HEXISTS', key, bucket) == 1 then
    redis.call('HINCRBY', key, bucket, delta)
    redis.call('HINCRBY', key, 't', delta)
  end
end
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rpm: int
    tpm: int
    requests_used: int
    tokens_used: int
    requests_reset: int  # seconds until the oldest counted request leaves the window
    tokens_reset: int
    bucket: int  # the second the reservation was taken in, for settling

    @classmethod
    def of(cls, result: list[int], rpm: int, tpm: int) -> "Decision":
        allowed, req, tok, req_reset, tok_reset, now = result
        return cls(bool(allowed), rpm, tpm, req, tok, req_reset, tok_reset, now)

    @property
    def retry_after(self) -> int:
        """Seconds until the limit that refused this call frees up (both, if both refused it)."""
        requests_full = bool(self.rpm) and self.requests_used >= self.rpm
        tokens_full = bool(self.tpm) and (not requests_full or self.tokens_used >= self.tpm)
        waits = [self.requests_reset] * requests_full + [self.tokens_reset] * tokens_full
        return max(1, *waits)

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.rpm:
            remaining, reset = max(self.rpm - self.requests_used, 0), max(self.requests_reset, 0)
            headers.update({
                "x-ratelimit-limit": str(self.rpm), "x-ratelimit-remaining": str(remaining),
                "x-ratelimit-reset": str(reset), "x-ratelimit-limit-requests": str(self.rpm),
                "x-ratelimit-remaining-requests": str(remaining), "x-ratelimit-reset-requests": f"{reset}s",
            })
        if self.tpm:
            headers.update({
                "x-ratelimit-limit-tokens": str(self.tpm),
                "x-ratelimit-remaining-tokens": str(max(self.tpm - self.tokens_used, 0)),
                "x-ratelimit-reset-tokens": f"{max(self.tokens_reset, 0)}s",
            })
        if not self.allowed:
            headers["retry-after"] = str(self.retry_after)
        return headers


def ratelimit_keys(org_id: int) -> list[str]:
    # Not the hypereal:rl: keys of the summing window, whose scripts would misread the new fields: during a
    # rolling upgrade each version counts its own calls, for the minute until the old processes are gone.
    return [f"hypereal:window:{{{org_id}}}:req", f"hypereal:window:{{{org_id}}}:tok"]


class LocalWindow:
    """The embedded fallback: the same sliding minute, in this process."""

    def __init__(self) -> None:
        self.requests: dict[int, dict[int, int]] = {}
        self.tokens: dict[int, dict[int, int]] = {}

    @staticmethod
    def _used(buckets: dict[int, int], now: int) -> tuple[int, int]:
        for sec in [s for s in buckets if s <= now - WINDOW]:
            del buckets[sec]
        return sum(buckets.values()), min(buckets, default=now)

    def check(self, org_id: int, rpm: int, tpm: int, want: int) -> list[int]:
        now = int(time.time())
        if not rpm and not tpm:
            return [1, 0, 0, 0, 0, now]
        req_buckets, tok_buckets = self.requests.setdefault(org_id, {}), self.tokens.setdefault(org_id, {})
        req, req_oldest = self._used(req_buckets, now)
        tok, tok_oldest = self._used(tok_buckets, now)
        allowed = not (rpm and req + 1 > rpm) and not (tpm and tok and tok + want > tpm)
        if allowed:
            req_buckets[now] = req_buckets.get(now, 0) + 1
            tok_buckets[now] = tok_buckets.get(now, 0) + want
            req, tok = req + 1, tok + want
        return [int(allowed), req, tok, req_oldest + WINDOW - now, tok_oldest + WINDOW - now, now]

    def add(self, org_id: int, bucket: int, *, requests: int = 0, tokens: int = 0) -> None:
        """Correct a bucket still in the window (a refused call's take, or a call's real token usage)."""
        for counts, delta in ((self.requests.get(org_id), requests), (self.tokens.get(org_id), tokens)):
            if delta and counts is not None and bucket in counts:
                counts[bucket] += delta
