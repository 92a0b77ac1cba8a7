"""Server-sent events: split an upstream byte stream into whole events without re-buffering it."""

from gateway import jsoncodec


class SSEParser:
    """Feed arbitrary byte chunks; get back complete raw events (each ending in a blank line)."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    @property
    def idle(self) -> bool:
        """No part of an event is waiting for the rest of it."""
        return not self._buffer

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._buffer + chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        *events, self._buffer = data.split(b"\n\n")
        return [event + b"\n\n" for event in events if event.strip()]


def event_field(event: bytes, name: bytes) -> bytes | None:
    """The value of ``name:`` in one raw event (multi-line ``data`` joined by newlines)."""
    prefix = name + b":"
    if event.startswith(prefix) and event.find(b"\n") == len(event) - 2:  # the usual one-line event
        return event[len(prefix):-2].removeprefix(b" ")
    values = [line[len(name) + 1:].removeprefix(b" ") for line in event.split(b"\n")
              if line.startswith(name + b":")]
    return b"\n".join(values) if values else None


def encode_data(payload: dict | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else jsoncodec.dumps(payload)
    return b"data: " + data + b"\n\n"


def encode_event(event: str, payload: dict) -> bytes:
    return b"event: " + event.encode() + b"\n" + encode_data(payload)
