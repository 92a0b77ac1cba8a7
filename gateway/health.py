"""Target health: consecutive failures put an upstream target in cooldown for every gateway process.

A target failing COOLDOWN_FAILURES times in a row (connection error, timeout, 429, 5xx) is skipped
for COOLDOWN_SECONDS, then tried again. The state lives in Redis; each process trusts its view of it
for one second. Without Redis it lives in this process.
"""

import logging
import time

from django.conf import settings

from gateway.catalog import Target
from gateway.redis import RedisError, redis_client

log = logging.getLogger(__name__)
VIEW_SECONDS = 1.0
FAIL_WINDOW = 60  # failures further apart than this are not "in a row"


def target_id(target: Target) -> str:
    return f"{target.provider}/{target.upstream_model}"


def _fails_key(tid: str) -> str:
    return f"hypereal:health:fails:{tid}"


def _cool_key(tid: str) -> str:
    return f"hypereal:health:cool:{tid}"


class Health:
    def __init__(self) -> None:
        self._view: dict[str, tuple[float, float]] = {}  # id → (checked at, cooling until, epoch s)
        self._failing: dict[str, float] = {}  # ids this process saw fail recently → when
        self._local_fails: dict[str, int] = {}  # embedded default only
        self._local_cool: dict[str, float] = {}

    async def usable(self, targets: tuple[Target, ...]) -> list[Target]:
        """The targets not in cooldown, in chain order."""
        now, mono = time.time(), time.monotonic()
        ids = [target_id(t) for t in targets]
        stale = [tid for tid in ids if mono - self._view.get(tid, (-VIEW_SECONDS, 0))[0] >= VIEW_SECONDS]
        if stale:
            redis = redis_client()
            if redis is None:
                values = [self._local_cool.get(tid) for tid in stale]
            else:
                try:
                    values = await redis.execute("MGET", *[_cool_key(tid) for tid in stale])
                except RedisError:  # health is advice: without it, every target is worth a try
                    log.warning("target health unavailable from Redis", exc_info=True)
                    values = [0] * len(stale)
            for tid, value in zip(stale, values):
                self._view[tid] = (mono, float(value or 0))
        return [t for t, tid in zip(targets, ids) if self._view[tid][1] <= now]

    def cooling_until(self, targets: tuple[Target, ...]) -> float:
        return min((self._view.get(target_id(t), (0, 0))[1] for t in targets), default=0)

    async def failed(self, target: Target) -> None:
        try:
            await self._failed(target)
        except RedisError:  # the call goes on to its next target either way
            log.warning("recording a target failure in Redis failed", exc_info=True)

    async def _failed(self, target: Target) -> None:
        tid, conf = target_id(target), settings.HYPEREAL
        self._failing[tid] = time.monotonic()
        redis = redis_client()
        if redis is None:
            fails = self._local_fails[tid] = self._local_fails.get(tid, 0) + 1
        else:
            fails, _ = await redis.pipeline([("INCR", _fails_key(tid)), ("EXPIRE", _fails_key(tid), FAIL_WINDOW)])
        if fails >= conf["COOLDOWN_FAILURES"]:
            until = time.time() + conf["COOLDOWN_SECONDS"]
            if redis is None:
                self._local_cool[tid] = until
                self._local_fails.pop(tid, None)
            else:
                await redis.pipeline([("SET", _cool_key(tid), until, "EX", conf["COOLDOWN_SECONDS"]),
                                      ("DEL", _fails_key(tid))])
            self._view[tid] = (time.monotonic(), until)

    async def succeeded(self, target: Target) -> None:
        """A success ends a run of failures; only processes that saw one pay the Redis write."""
        tid = target_id(target)
        if self._failing.pop(tid, None) is None:
            return
        redis = redis_client()
        if redis is None:
            self._local_fails.pop(tid, None)
        else:
            try:
                await redis.execute("DEL", _fails_key(tid))
            except RedisError:
                log.warning("recording a target recovery in Redis failed", exc_info=True)


health = Health()


# Operator side (sync: Django admin, management commands). Without Redis the state is this process's.

def _sync_redis():
    import redis as sync_redis

    return sync_redis.Redis.from_url(settings.REDIS_URL) if settings.REDIS_URL else None


def health_snapshot(ids: list[str]) -> dict[str, tuple[int, float]]:
    """id → (failures in a row, cooling until as epoch seconds, 0 when healthy)."""
    client = _sync_redis()
    if client is None:
        return {tid: (health._local_fails.get(tid, 0), health._local_cool.get(tid, 0)) for tid in ids}
    with client:
        fails = client.mget([_fails_key(tid) for tid in ids]) if ids else []
        cool = client.mget([_cool_key(tid) for tid in ids]) if ids else []
    return {tid: (int(f or 0), float(c or 0)) for tid, f, c in zip(ids, fails, cool)}


def target_cooldown_set(tid: str, seconds: int) -> None:
    """Take a target out of traffic now (e.g. an upstream incident); it returns after ``seconds``."""
    until = time.time() + seconds
    client = _sync_redis()
    if client is None:
        health._local_cool[tid] = until
        return
    with client:
        client.set(_cool_key(tid), until, ex=seconds)


def target_cooldown_clear(tid: str) -> None:
    client = _sync_redis()
    if client is None:
        health._local_cool.pop(tid, None)
        health._local_fails.pop(tid, None)
        return
    with client:
        client.delete(_cool_key(tid), _fails_key(tid))
