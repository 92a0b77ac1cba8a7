"""Stream observers: what they see of an upstream's events passed on natively."""

import json

import pytest

from gateway.formats.chat import ChatObserver

pytestmark = pytest.mark.no_services


def event(payload: dict | str) -> bytes:
    return b"data: " + (payload if isinstance(payload, str) else json.dumps(payload)).encode() + b"\n\n"


def delta(text: str, **extra) -> bytes:
    return event({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}],
                  **extra})


def test_a_chat_observer_counts_every_character_and_still_sees_usage_and_errors_after_output_began():
    """Events after the first output pass unparsed until their characters are asked for; an event with a
    usage or an error is read at once, even when the text before it talks about "usage" or "error"."""
    observer = ChatObserver(price=lambda usage: 0.5, wants_usage=True)
    texts = ["Hello", ' a "usage": {"error": 1} quote', " naïve\n", ""]
    for text in texts:
        assert observer.feed(delta(text, usage=None)) == delta(text, usage=None)  # passed on as it came
    assert not observer.failed and observer.usage is None
    usage = {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}
    stamped = json.loads(observer.feed(event({"choices": [], "usage": usage}))[len(b"data: "):])
    assert stamped["usage"] == {**usage, "cost": 0.5} and observer.usage.output == 9
    assert observer.output_chars() == sum(len(text) for text in texts)
    observer.feed(event({"error": {"message": "overloaded"}}))
    assert observer.failed
    observer.feed(event("[DONE]"))
    assert observer.finished
