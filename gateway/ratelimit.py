"""Per-organization requests- and tokens-per-minute, shared by every gateway process.

Each limit counts per-second buckets over the last 60 seconds (a sliding minute), checked and taken
in one atomic Redis round trip, on Redis's clock so that processes on different hosts agree. Token
limits reserve an estimate up front; ``reconcile`` corrects the bucket to the actual usage.
Without Redis the same algorithm runs in process (one gateway process only).
"""

import time
from dataclasses import dataclass

from gateway.redis import redis_client

WINDOW = 60

# KEYS: requests hash, tokens hash. ARGV: rpm, tpm, tokens wanted (0 = unlimited for a limit).
_CHECK = """
local now = tonumber(redis.call('TIME')[1])
local rpm, tpm, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local function used(key)
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
local req, req_oldest = used(KEYS[1])
local tok, tok_oldest = used(KEYS[2])
local allowed = 1
if rpm > 0 and req + 1 > rpm then allowed = 0 end
if tpm > 0 and tok > 0 and tok + want > tpm then allowed = 0 end
if allowed == 1 then
  redis.call('HINCRBY', KEYS[1], now, 1)
  redis.call('HINCRBY', KEYS[2], now, want)
  redis.call('EXPIRE', KEYS[1], 61)
  redis.call('EXPIRE', KEYS[2], 61)
  req, tok = req + 1, tok + want
end
return {allowed, req, tok, req_oldest + 60 - now, tok_oldest + 60 - now, now}
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
    bucket: int  # the second the reservation was taken in, for reconcile

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


def _keys(org_id: int) -> list[str]:
    return [f"hypereal:rl:{{{org_id}}}:req", f"hypereal:rl:{{{org_id}}}:tok"]


class _LocalWindow:
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
        req_buckets, tok_buckets = self.requests.setdefault(org_id, {}), self.tokens.setdefault(org_id, {})
        req, req_oldest = self._used(req_buckets, now)
        tok, tok_oldest = self._used(tok_buckets, now)
        allowed = not (rpm and req + 1 > rpm) and not (tpm and tok and tok + want > tpm)
        if allowed:
            req_buckets[now] = req_buckets.get(now, 0) + 1
            tok_buckets[now] = tok_buckets.get(now, 0) + want
            req, tok = req + 1, tok + want
        return [int(allowed), req, tok, req_oldest + WINDOW - now, tok_oldest + WINDOW - now, now]

    def add_tokens(self, org_id: int, bucket: int, delta: int) -> None:
        buckets = self.tokens.get(org_id)
        if buckets is not None and bucket in buckets:
            buckets[bucket] += delta


_local = _LocalWindow()
_script = None


async def check(*, org_id: int, rpm: int, tpm: int, tokens: int) -> Decision:
    global _script
    if not rpm and not tpm:
        return Decision(True, 0, 0, 0, 0, 0, 0, 0)
    redis = redis_client()
    if redis is None:
        result = _local.check(org_id, rpm, tpm, tokens)
    else:
        if _script is None:
            _script = redis.register_script(_CHECK)
        result = [int(v) for v in await _script(keys=_keys(org_id), args=[rpm, tpm, tokens])]
    allowed, req, tok, req_reset, tok_reset, now = result
    return Decision(bool(allowed), rpm, tpm, req, tok, req_reset, tok_reset, now)


async def reconcile(*, org_id: int, decision: Decision, actual_tokens: int, reserved_tokens: int) -> None:
    """Replace the up-front token estimate with what the call really used."""
    delta = actual_tokens - reserved_tokens
    if not decision.tpm or not delta:
        return
    redis = redis_client()
    if redis is None:
        _local.add_tokens(org_id, decision.bucket, delta)
        return
    key = _keys(org_id)[1]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hincrby(key, str(decision.bucket), delta)
        pipe.expire(key, WINDOW + 1)
        await pipe.execute()
