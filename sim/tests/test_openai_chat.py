"""The simulator speaks OpenAI chat completions exactly: the official SDK is the judge."""

import json
import time

import httpx
import openai
import pytest
from openai import OpenAI

from sim.text import reply_words
from tests.conftest import free_port, start_process, stop_process

pytestmark = pytest.mark.no_services


@pytest.fixture(scope="module")
def sim():
    import sys

    port = free_port()
    proc = start_process([sys.executable, "-m", "sim", "--port", str(port)], f"http://127.0.0.1:{port}/health")
    yield f"http://127.0.0.1:{port}"
    stop_process(proc)


def client(base: str) -> OpenAI:
    return OpenAI(base_url=base, api_key="sim-key", max_retries=0)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_reply_is_deterministic_and_stream_equals_non_stream(sim):
    whole = client(f"{sim}/v1").chat.completions.create(model="m", messages=ask("Hello there"))
    assert whole.choices[0].message.content == " ".join(reply_words("Hello there"))
    chunks = list(client(f"{sim}/v1").chat.completions.create(
        model="m", messages=ask("Hello there"), stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert whole.usage.completion_tokens == 12 and whole.usage.prompt_tokens > 0


def test_usage_chunk_only_when_asked(sim):
    chunks = list(client(f"{sim}/v1").chat.completions.create(model="m", messages=ask("hi"), stream=True))
    assert all(c.usage is None for c in chunks)


def test_tool_call_streams_name_once_and_arguments_from_the_schema(sim):
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}
    with client(f"{sim}/v1").chat.completions.stream(model="m", messages=ask("Forecast for Oslo"),
                                                     tools=[tool]) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == {"city": "Oslo", "days": 1}


def test_failure_directives_from_the_path_and_the_body(sim):
    with pytest.raises(openai.InternalServerError):
        client(f"{sim}/x/fail=500/v1").chat.completions.create(model="m", messages=ask("hi"))
    with pytest.raises(openai.RateLimitError):
        client(f"{sim}/v1").chat.completions.create(model="m", messages=ask("hi"), extra_body={"sim": {"fail": 429}})


def test_cut_after_breaks_the_stream_mid_way(sim):
    stream = client(f"{sim}/v1").chat.completions.create(model="m", messages=ask("hi"), stream=True,
                                                         extra_body={"sim": {"cut_after": 3}})
    received = []
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        for chunk in stream:
            received.append(chunk)
    assert 1 <= len(received) <= 4


def test_latency_and_hang(sim):
    started = time.monotonic()
    client(f"{sim}/x/latency_ms=200/v1").chat.completions.create(model="m", messages=ask("hi"))
    assert time.monotonic() - started >= 0.2
    with pytest.raises(openai.APITimeoutError):
        OpenAI(base_url=f"{sim}/x/hang=1/v1", api_key="k", max_retries=0, timeout=0.5).chat.completions.create(
            model="m", messages=ask("hi"))


def test_missing_key_and_bad_json(sim):
    assert httpx.post(f"{sim}/v1/chat/completions", json={}).status_code == 401
    resp = httpx.post(f"{sim}/v1/chat/completions", content=b"{", headers={"authorization": "Bearer k"})
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"


def test_recent_requests_are_inspectable_with_secrets_redacted(sim):
    client(f"{sim}/v1").chat.completions.create(model="inspect-me", messages=ask("hi"))
    recent = httpx.get(f"{sim}/_sim/requests?limit=5").json()
    mine = next(r for r in recent if r["body"].get("model") == "inspect-me")
    assert mine["path"] == "/v1/chat/completions" and mine["headers"]["authorization"].endswith("-key")
    assert "sim-key" not in json.dumps(mine)
