"""What format handlers and the ASGI app exchange: directives, request context, and responses to send."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

Headers = tuple[tuple[bytes, bytes], ...]


class SimError(Exception):
    """An error answered in the route's own error shape; ``details`` are extra fields that shape carries
    (OpenAI's ``param`` and ``code``)."""

    def __init__(self, status: int, message: str, **details: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


@dataclass(frozen=True)
class Directives:
    """Failure injection and timing, from a ``/x/k=v,…/`` path prefix and/or a body ``"sim"`` object."""

    latency_ms: int = 0  # wait before the response headers
    chunk_delay_ms: int = 0  # wait between stream events
    fail: int = 0  # answer with this status and an error body
    retry_after: int = 1  # the Retry-After seconds sent with a 429
    hang: bool = False  # never answer
    drop: bool = False  # close the connection without a response
    cut_after: int | None = None  # close a stream after this many content events
    cut_at_end: bool = False  # close a stream after its last event, before the body's clean end
    words: int = 12  # reply length
    cached: int = 0  # cached prompt tokens to report (OpenAI, Gemini)
    reasoning: int | None = None  # reasoning tokens to report instead of the default
    always_stream: bool = False  # /v1/responses streams even when asked not to
    # Jobs (videos, fal, RunPod), timed by the sim clock: queued for queue_ms, running for run_ms, then outcome.
    queue_ms: int = 200
    run_ms: int = 800
    outcome: str = "completed"  # completed | failed | cancelled | timed_out | timeout (never finishes)
    error_code: str = ""  # a failed job's error code and message; empty: the protocol's usual ones
    error_message: str = ""
    unknown_status: bool = False  # while queued, status polls answer "WARMING", which no protocol defines
    webhook: str = ""  # the completion webhook: duplicate | early | fail (no retries) | lost (never sent)
    webhook_url: str = ""  # /v1/videos only: where to send signed video.completed / video.failed events

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "outcome": ("completed", "failed", "cancelled", "timed_out", "timeout"),
        "webhook": ("", "duplicate", "early", "fail", "lost"),
    }

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Directives:
        """Values may be strings (a path prefix, form fields) or JSON values."""
        kinds = {f.name: f.type for f in fields(cls)}
        if unknown := sorted(raw.keys() - kinds.keys()):
            raise SimError(400, f"Unknown sim directive(s): {', '.join(unknown)}.")
        values = {k: _directive(k, kinds[k], v) for k, v in raw.items()}
        for name, allowed in cls.CHOICES.items():
            if name in values and values[name] not in allowed:
                raise SimError(400, f"Sim directive {name} takes one of {', '.join(filter(None, allowed))}.")
        return cls(**values)


def _directive(name: str, kind: str, value: Any) -> Any:
    if kind == "str":
        return str(value).lower() if name in Directives.CHOICES else str(value)
    if kind == "bool" and str(value).lower() in ("true", "false"):  # form fields spell booleans out
        return str(value).lower() == "true"
    try:
        number = int(value)  # int(True) == 1: JSON booleans work too
    except (TypeError, ValueError) as exc:
        raise SimError(400, f"Sim directive {name} takes an integer: {exc}.") from None
    return bool(number) if kind == "bool" else number


def sim_object(body: dict) -> tuple[dict, dict]:
    """A body's ``"sim"`` directives, and the body without them (a copy: the recorded body keeps them)."""
    overrides = body.get("sim") or {}
    if not isinstance(overrides, dict):
        raise SimError(400, '"sim" must be an object of directives.')
    return overrides, {k: v for k, v in body.items() if k != "sim"}


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart/form-data body."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Context:
    directives: Directives
    params: dict[str, str]  # captured from the route's path
    query: dict[str, str]
    origin: str  # scheme://host as the client addressed this server
    headers: dict[str, str]  # lower-cased names
    prefix: str = ""  # the directive prefix the client used (/x/…), kept in URLs handed back to it


@dataclass(frozen=True)
class Json:
    payload: Any
    status: int = 200
    headers: Headers = ()


@dataclass(frozen=True)
class Raw:
    """Bytes as they are (media); ``chunked`` sends them in pieces with no Content-Length, as streamed audio."""

    data: bytes
    content_type: str
    status: int = 200
    headers: Headers = ()
    chunked: bool = False


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
