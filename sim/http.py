"""What format handlers and the ASGI app exchange: directives, request context, and responses to send."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

Headers = tuple[tuple[bytes, bytes], ...]


class SimError(Exception):
    """An error answered in the route's own error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Directives:
    """Failure injection and timing, from a ``/x/k=v,…/`` path prefix and/or a body ``"sim"`` object."""

    latency_ms: int = 0  # wait before the response headers
    chunk_delay_ms: int = 0  # wait between stream events
    fail: int = 0  # answer with this status and an error body
    hang: bool = False  # never answer
    drop: bool = False  # close the connection without a response
    cut_after: int | None = None  # close a stream after this many content events
    words: int = 12  # reply length
    cached: int = 0  # cached prompt tokens to report (OpenAI, Gemini)
    reasoning: int | None = None  # reasoning tokens to report instead of the default
    always_stream: bool = False  # /v1/responses streams even when asked not to

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Directives:
        known = {f.name: f for f in fields(cls)}
        if unknown := sorted(raw.keys() - known.keys()):
            raise SimError(400, f"Unknown sim directive(s): {', '.join(unknown)}.")
        try:
            values = {k: int(v) for k, v in raw.items()}  # int(True) == 1: JSON booleans work too
        except (TypeError, ValueError) as exc:
            raise SimError(400, f"Sim directives take integers: {exc}.") from None
        return cls(**{k: bool(v) if isinstance(known[k].default, bool) else v for k, v in values.items()})


@dataclass(frozen=True)
class Context:
    directives: Directives
    params: dict[str, str]  # captured from the route's path
    query: dict[str, str]
    origin: str  # scheme://host as the client addressed this server


@dataclass(frozen=True)
class Json:
    payload: Any
    status: int = 200
    headers: Headers = ()


@dataclass(frozen=True)
class Event:
    data: bytes
    content: bool = False  # counts toward cut_after (deltas, not the stream's frame)


@dataclass(frozen=True)
class Sse:
    events: Iterable[Event]
    headers: Headers = ()


def data_event(payload: Any, content: bool = False) -> Event:
    return Event(b"data: " + json.dumps(payload).encode() + b"\n\n", content)


def named_event(name: str, payload: Any, content: bool = False) -> Event:
    return Event(b"event: " + name.encode() + b"\ndata: " + json.dumps(payload).encode() + b"\n\n", content)
