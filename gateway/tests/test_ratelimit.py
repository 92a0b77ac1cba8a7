"""The sliding minute in Redis (gateway.ratelimit.WINDOW_LUA) counts exactly what the plain algorithm counts:
its running total and oldest-second cursor against a recount of every bucket, over long random runs of
calls, corrections and clock moves (steady, sparse, idle past the minute, a clock that goes back)."""

import random

import pytest
import redis as sync_redis
from django.conf import settings

from gateway.ratelimit import WINDOW, WINDOW_LUA

# The window's functions with the clock as an argument, so that a test can move it.
_DRIVE = WINDOW_LUA + """
local now = tonumber(ARGV[1])
if ARGV[2] == 'correct' then
  window_correct(KEYS[1], ARGV[3], tonumber(ARGV[4]))
  return {}
end
local total, oldest = window_used(KEYS[1], now)
if ARGV[3] ~= '0' then window_add(KEYS[1], now, tonumber(ARGV[3])) end
return {total, oldest}
"""


class Reference:
    """Every bucket summed on each call, as the window was first written (and as LocalWindow does)."""

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}

    def take(self, now: int, count: int) -> list[int]:
        for sec in [s for s in self.buckets if s <= now - WINDOW]:
            del self.buckets[sec]
        answer = [sum(self.buckets.values()), min(self.buckets, default=now)]
        if count:
            self.buckets[now] = self.buckets.get(now, 0) + count
        return answer

    def correct(self, bucket: int, delta: int) -> None:
        if delta and bucket in self.buckets:
            self.buckets[bucket] += delta


@pytest.fixture
def window():
    client = sync_redis.Redis.from_url(settings.REDIS_URL)
    key = "hypereal:test:window"
    client.delete(key)
    yield client.register_script(_DRIVE), key
    client.delete(key)
    client.close()


@pytest.mark.parametrize("seed", range(6))
def test_the_running_total_and_oldest_second_match_a_full_recount(window, seed):
    script, key = window
    rng = random.Random(seed)
    reference, now, taken = Reference(), 1_800_000_000, []
    for step in range(1500):
        move = rng.random()
        if move < 0.55:
            pass  # several calls in one second
        elif move < 0.85:
            now += rng.randint(1, 3)  # a steady rate
        elif move < 0.95:
            now += rng.randint(4, 59)  # sparse calls
        elif move < 0.98:
            now += rng.randint(60, 400)  # idle past the minute
        else:
            now -= rng.randint(1, 90)  # the clock went back (a failover to a server whose clock lags)
        if taken and rng.random() < 0.3:  # a call's real usage against its reservation, or a refused take
            bucket, count = rng.choice(taken)
            delta = rng.randint(-count, 2 * count)
            script(keys=[key], args=[now, "correct", bucket, delta])
            reference.correct(bucket, delta)
        count = rng.choice([0, 1, 1, 1, 250, 4000])  # 0: refused, nothing taken
        expected = reference.take(now, count)
        assert script(keys=[key], args=[now, "take", count]) == expected, f"step {step} at {now}"
        if count:
            taken.append((now, count))


def test_a_new_window_starts_at_its_first_call_and_empties_a_minute_after_its_last(window):
    script, key = window
    t = 1_800_000_000
    assert script(keys=[key], args=[t, "take", 5]) == [0, t]
    assert script(keys=[key], args=[t + 10, "take", 2]) == [5, t]
    assert script(keys=[key], args=[t + 59, "take", 0]) == [7, t], "still inside the minute"
    assert script(keys=[key], args=[t + 60, "take", 0]) == [2, t + 10], "the first second left the window"
    assert script(keys=[key], args=[t + 70, "take", 0]) == [0, t + 70], "empty: the oldest is now"
