import time
from typing import Generic, TypeVar

V = TypeVar("V")
MISSING = object()


class TTLCache(Generic[V]):
    """An in-process cache whose entries expire; bounded so hostile input cannot grow it forever.

    An expired entry is kept as the last good value (``last_good``): while its source is down, a caller
    may go on serving it for a bounded time after it was read."""

    __slots__ = ("_ttl", "_max", "_data")

    def __init__(self, ttl: float, max_entries: int = 50_000) -> None:
        self._ttl, self._max, self._data = ttl, max_entries, {}

    def get(self, key) -> V | object:
        entry = self._data.get(key)
        if entry is None or entry[0] < time.monotonic():
            return MISSING
        return entry[1]

    def set(self, key, value: V) -> None:
        if len(self._data) >= self._max:
            self._data.clear()
        now = time.monotonic()
        self._data[key] = (now + self._ttl, value, now)

    def last_good(self, key, max_age: float) -> V | object:
        """The value last set, if it was read at most ``max_age`` seconds ago; it then counts as fresh for
        another TTL, so that callers do not all retry the source that just failed."""
        entry = self._data.get(key)
        now = time.monotonic()
        if entry is None or now - entry[2] > max_age:
            return MISSING
        self._data[key] = (now + self._ttl, entry[1], entry[2])
        return entry[1]

    def discard(self, key) -> None:
        self._data.pop(key, None)
