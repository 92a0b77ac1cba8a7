"""Stream observers: what they see of an upstream's events passed on natively."""

import json
from types import SimpleNamespace

import pytest

from gateway.exchange import _NativeRelay
from gateway.formats.anthropic import ANTHROPIC
from gateway.formats.base import ClientRequest, WireFormat
from gateway.formats.chat import CHAT, ChatObserver

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


def chat_stream(texts: list[str], model: str) -> bytes:
    """A chat stream as an OpenAI upstream sends it: a role chunk, content, finish, usage and [DONE]."""
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": model}
    events = [event({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})]
    events += [event({**chunk, "choices": [{"index": 0, "delta": {"content": text}}], "usage": None})
               for text in texts]
    events += [event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
               event({**chunk, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": len(texts),
                                                        "total_tokens": 5 + len(texts)}}),
               event("[DONE]")]
    return b"".join(events)


def anthropic_stream(texts: list[str], model: str) -> bytes:
    """A Messages stream as Anthropic sends it, from message_start to message_stop."""
    def named(name: str, payload: dict) -> bytes:
        return b"event: " + name.encode() + b"\n" + event({"type": name, **payload})

    message = {"id": "m", "role": "assistant", "model": model, "content": [],
               "usage": {"input_tokens": 5, "output_tokens": 1}}
    events = [named("message_start", {"message": message}),
              named("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
              named("ping", {})]
    events += [named("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}})
               for text in texts]
    events += [named("content_block_stop", {"index": 0}),
               named("message_delta", {"delta": {"stop_reason": "end_turn"},
                                       "usage": {"output_tokens": len(texts)}}),
               named("message_stop", {})]
    return b"".join(events)


FORMATS = {"chat": (CHAT, chat_stream, b"data: [DONE]\n\n"),
           "anthropic": (ANTHROPIC, anthropic_stream, b"event: message_delta\n")}


def relay(fmt: WireFormat) -> _NativeRelay:
    exchange = SimpleNamespace(
        client_format=fmt,
        request=ClientRequest(body={}, model="public", intent=None, stream=True, max_output=None),
        price=lambda usage: 0.25, route=SimpleNamespace(public_id="public"),
        call=SimpleNamespace(first_token=lambda: None), observer=None)
    opened = SimpleNamespace(format=fmt, target=SimpleNamespace(upstream_model="private"))
    return _NativeRelay(exchange, opened)


def relayed(relay: _NativeRelay, reads: list[bytes]) -> tuple[bytes, bytes]:
    sent, ending = b"", b""
    for read in reads:
        now, end = relay.feed(read)
        sent, ending = sent + now, ending + end
    return sent, ending


@pytest.mark.parametrize("name", FORMATS)
def test_a_native_stream_relays_the_same_however_its_reads_are_cut(name):
    """Whole reads of plain events pass in one piece; a read that ends mid-event (mid model id, even) or
    starts with more than output is parsed: the client gets the same bytes, with the public model id, and
    the same usage, cost and character count either way; from the end event on, it is held."""
    fmt, stream, end = FORMATS[name]
    texts = ["Hello", " world", ' "usage": "error" [done] message_stop', " naïve"]
    raw = stream(texts, "private")
    whole = relay(fmt)
    sent, ending = relayed(whole, [raw])
    assert ending.startswith(end) and whole.charge_known and whole.usage.output == len(texts)
    assert b"private" not in sent + ending and b'"public"' in sent
    assert b'"cost":0.25' in sent + ending
    for cut in range(1, len(raw)):
        split = relay(fmt)
        assert relayed(split, [raw[:cut], raw[cut:]]) == (sent, ending), cut
        assert split.usage == whole.usage and split.observer.output_chars() == sum(map(len, texts))
    one_by_one = relay(fmt)
    assert relayed(one_by_one, [e + b"\n\n" for e in raw.split(b"\n\n") if e]) == (sent, ending)
    assert one_by_one.observer.output_chars() == whole.observer.output_chars() == sum(map(len, texts))


def test_skimming_stops_at_the_first_event_that_is_more_than_output():
    observer = ChatObserver(price=lambda usage: 0.5, wants_usage=True)
    first, plain = delta("Hi"), delta(" there") + delta(" you")
    assert observer.skim(first + plain) == 0  # before any output: parsed, for the time to first token
    assert observer.feed(first) == first and observer.produced == 2
    usage = event({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}})
    assert observer.skim(plain + usage + event("[DONE]")) == len(plain)
    assert observer.skim(plain + delta(" cut")[:9]) == len(plain)  # a read that ends mid-event
    assert observer.skim(plain.replace(b"\n", b"\r\n")) == 0  # CRLF lines are parsed
    assert observer.skim(event({"error": {"message": "overloaded"}})) == 0
    assert observer.usage is None
    assert observer.output_chars() == len("Hi") + 2 * len(" there you")  # the plain events were skimmed twice
