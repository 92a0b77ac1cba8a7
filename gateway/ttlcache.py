import time
from typing import Generic, TypeVar

V = TypeVar("V")
MISSING = object()


class TTLCache(Generic[V]):
    """An in-process cache whose entries expire; bounded so hostile input cannot grow it forever."""

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
        self._data[key] = (time.monotonic() + self._ttl, value)

    def discard(self, key) -> None:
        self._data.pop(key, None)
