"""Test support: the official SDKs as oracles, fed translated output the way a real client receives it."""

import functools
import json

import anthropic
import httpx2
import openai
import pydantic
from google import genai
from google.genai import types as genai_types

from gateway.sse import encode_data, encode_event


def chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None, *,
          choices: bool = True) -> dict:
    """One chat.completion.chunk as a chat upstream sends it."""
    body: dict = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1735689600, "model": "up",
                  "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else []}
    if usage is not None:
        body["usage"] = usage
    return body


def run(translator, items: list) -> list:
    """Everything a stream translator emits for the items, then for the end of the upstream."""
    out = []
    for item in items:
        out += translator.feed(item)
    return out + translator.finish()


def sse(events: list[tuple[str, dict]]) -> bytes:
    return b"".join(encode_event(name, data) for name, data in events)


def data_lines(payloads: list[dict], *, done: bool = False) -> bytes:
    return b"".join(encode_data(payload) for payload in payloads) + (encode_data("[DONE]") if done else b"")


def _http(body: bytes, content_type: str) -> httpx2.Client:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": content_type})
    return httpx2.Client(transport=httpx2.MockTransport(handler))


def openai_client(body: bytes, content_type: str = "text/event-stream") -> openai.OpenAI:
    return openai.OpenAI(api_key="test", base_url="http://upstream.test/v1",
                         http_client=_http(body, content_type), max_retries=0)


def anthropic_client(body: bytes, content_type: str = "text/event-stream") -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="test", base_url="http://upstream.test",
                               http_client=_http(body, content_type), max_retries=0)


def genai_client(body: bytes, content_type: str = "text/event-stream") -> genai.Client:
    options = genai_types.HttpOptions(base_url="http://upstream.test", httpx_client=_http(body, content_type))
    return genai.Client(api_key="test", http_options=options)


def anthropic_final_message(events: list[tuple[str, dict]]) -> anthropic.types.Message:
    """What anthropic's stream helper accumulates from the events."""
    client = anthropic_client(sse(events))
    messages = [{"role": "user", "content": "hi"}]
    with client.messages.stream(model="m", max_tokens=9, messages=messages) as stream:
        return stream.get_final_message()


def openai_final_completion(chunks: list[dict]) -> openai.types.chat.ParsedChatCompletion:
    """What openai's chat stream helper accumulates from the chunks (ended by [DONE])."""
    client = openai_client(data_lines(chunks, done=True))
    with client.chat.completions.stream(model="m", messages=[{"role": "user", "content": "hi"}]) as stream:
        return stream.get_final_completion()


def json_body(payload: dict) -> bytes:
    return json.dumps(payload).encode()


def _drain(value: object) -> object:
    # TypedDict params declare Iterable fields, which pydantic validates lazily: consume them to validate.
    if isinstance(value, dict):
        return {key: _drain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ValidatorIterator":
        return [_drain(item) for item in value]
    return value


@functools.cache
def _adapter(sdk_type: object) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(sdk_type)  # must outlive the lazy iterators it returns


def validate(sdk_type: object, value: dict) -> None:
    """Strict check of a body or event against an SDK type: a model, a TypedDict of params, or a union."""
    _drain(_adapter(sdk_type).validate_python(value))
