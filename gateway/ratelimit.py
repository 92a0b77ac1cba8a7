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
WINDOW_LUA = """
local function window_used(key, now)
  local total, oldest = 0, now
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    local sec = tonumber(fields[i])
    if sec <= now - 60 then
      redis.call('HDEL', key, fields[i])
    else
      total = total + tonumber(fields[i + 1])
      if sec < oldest then oldest = sec end
    end
  end
  return total, oldest
end
local function window_add(key, now, count)
  redis.call('HINCRBY', key, now, count)
  redis.call('EXPIRE', key, 61)
end
local function window_correct(key, bucket, delta)
  if delta ~= 0 and redis.call('HEXISTS', key, bucket) == 1 then redis.call('HINCRBY', key, bucket, delta) end
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
    return [f"hypereal:rl:{{{org_id}}}:req", f"hypereal:rl:{{{org_id}}}:tok"]


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
