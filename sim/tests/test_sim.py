"""The simulator over real HTTP, judged by the official openai, anthropic and google-genai SDKs."""

from __future__ import annotations

import base64
import io
import json
import time
import uuid

import anthropic
import httpx
import httpx2  # what the SDKs speak HTTP with; a broken stream surfaces as its error
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from PIL import Image

from sim import openai_chat
from sim.text import count_tokens, reply_words, signature, thinking_words

pytestmark = pytest.mark.no_services

QUESTION = "What is the weather in Oslo?"
USER = [{"role": "user", "content": QUESTION}]
REPLY = " ".join(reply_words(QUESTION))
WEATHER = {
    "type": "object",
    "required": ["city"],
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer"},
        "unit": {"type": "string", "enum": ["c", "f"]},
        "detail": {"type": "object", "properties": {"hourly": {"type": "boolean"}}},
    },
}
WEATHER_ARGS = {"city": "Oslo", "days": 1, "unit": "c", "detail": {"hourly": True}}
BROKEN_STREAM = (httpx.HTTPError, httpx2.HTTPError, openai.APIError, anthropic.APIError)


def oai(sim_url: str, prefix: str = "", **options) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim_url}{prefix}/v1", api_key="sk-test-1234", max_retries=0, **options)


def claude(sim_url: str, prefix: str = "") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{sim_url}{prefix}", api_key="sk-ant-5678", max_retries=0)


def gemini(sim_url: str, prefix: str = "") -> genai.Client:
    options = types.HttpOptions(
        base_url=f"{sim_url}{prefix}", retry_options=types.HttpRetryOptions(attempts=1)
    )
    return genai.Client(api_key="x", http_options=options)


# OpenAI chat completions


def test_chat_stream_equals_non_stream_with_realistic_usage(sim_url):
    client = oai(sim_url)
    whole = client.chat.completions.create(model="gpt-4o", messages=USER)
    assert whole.choices[0].message.content == REPLY and whole.choices[0].finish_reason == "stop"
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    words = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(words) == REPLY and len(words) == 12, "one chunk a word"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert (
        whole.usage.prompt_tokens == count_tokens(QUESTION) == openai_chat.prompt({"messages": USER}).tokens
    )
    assert whole.usage.completion_tokens == 12 and whole.usage.total_tokens == whole.usage.prompt_tokens + 12


def test_chat_usage_chunk_only_when_asked(sim_url):
    chunks = list(oai(sim_url).chat.completions.create(model="gpt-4o", messages=USER, stream=True))
    assert chunks and all(c.usage is None and c.choices for c in chunks)


def test_chat_tool_call_round_trip(sim_url):
    client = oai(sim_url)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
    with client.chat.completions.stream(model="gpt-4o", messages=USER, tools=tools) as stream:
        streamed = stream.get_final_completion()
    whole = client.chat.completions.create(model="gpt-4o", messages=USER, tools=tools)
    for completion in (streamed, whole):
        (call,) = completion.choices[0].message.tool_calls
        assert completion.choices[0].finish_reason == "tool_calls" and call.id.startswith("call_")
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == WEATHER_ARGS
    assert streamed.usage is None and whole.usage.completion_tokens == count_tokens(json.dumps(WEATHER_ARGS))
    call = whole.choices[0].message.tool_calls[0]
    follow_up = [
        *USER,
        {"role": "assistant", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21C"},
    ]
    answer = client.chat.completions.create(model="gpt-4o", messages=follow_up, tools=tools)
    assert answer.choices[0].message.content == f"Tool result: Sunny, 21C {REPLY}"


def test_chat_tool_choice_and_parallel_calls(sim_url):
    client = oai(sim_url)
    tools = [
        {"type": "function", "function": {"name": name, "parameters": WEATHER}}
        for name in ("first", "second")
    ]
    none = client.chat.completions.create(model="m", messages=USER, tools=tools, tool_choice="none")
    assert none.choices[0].message.content == REPLY and not none.choices[0].message.tool_calls
    named = client.chat.completions.create(
        model="m",
        messages=USER,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "second"}},
    )
    assert [c.function.name for c in named.choices[0].message.tool_calls] == ["second"]
    both = [{"role": "user", "content": "Call first and second: what is the weather in Oslo?"}]
    with client.chat.completions.stream(
        model="m", messages=both, tools=tools, parallel_tool_calls=True
    ) as stream:
        calls = stream.get_final_completion().choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["first", "second"] and calls[0].id != calls[1].id
    assert all(json.loads(c.function.arguments) == WEATHER_ARGS for c in calls)


def test_chat_output_cap_and_token_directives(sim_url):
    capped = oai(sim_url).chat.completions.create(model="m", messages=USER, max_completion_tokens=3)
    assert capped.choices[0].finish_reason == "length" and capped.choices[0].message.content == " ".join(
        reply_words(QUESTION)[:3]
    )
    shaped = oai(sim_url, "/x/words=5,cached=2").chat.completions.create(
        model="m", messages=USER, extra_body={"sim": {"reasoning": 7}}
    )
    usage = shaped.usage
    assert shaped.choices[0].message.content == " ".join(reply_words(QUESTION, 5))
    assert usage.completion_tokens == 5 + 7 and usage.completion_tokens_details.reasoning_tokens == 7
    assert usage.prompt_tokens_details.cached_tokens == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_chat_fail_directive_raises_the_matching_sdk_error(sim_url, status, error):
    with pytest.raises(error) as from_path:
        oai(sim_url, f"/x/fail={status}").chat.completions.create(model="m", messages=USER)
    with pytest.raises(error) as from_body:
        oai(sim_url).chat.completions.create(
            model="m", messages=USER, stream=True, extra_body={"sim": {"fail": status}}
        )
    for raised in (from_path.value, from_body.value):
        assert raised.status_code == status and raised.body["message"] == f"Simulated failure {status}."
        assert raised.response.headers.get("retry-after") == ("1" if status == 429 else None)


def test_chat_cut_after_breaks_the_stream(sim_url):
    stream = oai(sim_url).chat.completions.create(
        model="m",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"sim": {"cut_after": 3}},
    )
    received = []
    with pytest.raises(BROKEN_STREAM):
        received.extend(stream)
    assert "".join(c.choices[0].delta.content or "" for c in received) == " ".join(reply_words(QUESTION)[:3])
    assert all(c.usage is None for c in received)


@pytest.mark.parametrize("path, body, end", [
    ("/v1/chat/completions", {"model": "m", "messages": USER, "stream": True}, b"data: [DONE]\n\n"),
    ("/v1/messages", {"model": "c", "max_tokens": 64, "messages": USER, "stream": True},
     b'event: message_stop\ndata: {"type": "message_stop"}\n\n'),
])
def test_cut_at_end_breaks_the_body_after_the_last_event(sim_url, path, body, end):
    """Every event arrives, then the connection closes without the chunked body's clean end."""
    received = []
    keys = {"authorization": "Bearer sk-test-1234", "x-api-key": "sk-ant-5678"}
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", f"{sim_url}{path}", json={**body, "sim": {"cut_at_end": True}},
                          headers=keys) as resp:
            received += resp.iter_bytes()
    assert b"".join(received).endswith(end)


def test_latency_hang_and_drop(sim_url):
    started = time.monotonic()
    oai(sim_url, "/x/latency_ms=300").chat.completions.create(model="m", messages=USER)
    assert time.monotonic() - started >= 0.3
    with pytest.raises(openai.APITimeoutError):
        oai(sim_url, "/x/hang=1", timeout=0.5).chat.completions.create(model="m", messages=USER)
    with pytest.raises(openai.APIConnectionError):
        oai(sim_url).chat.completions.create(model="m", messages=USER, extra_body={"sim": {"drop": 1}})
    assert httpx.get(f"{sim_url}/health").json() == {"ok": True}, "the server survives all three"


def test_missing_key_bad_json_and_bad_directives_in_each_format(sim_url):
    routes = {
        "/v1/chat/completions": lambda e: e["error"]["type"],
        "/v1/messages": lambda e: e["error"]["type"],
        "/v1beta/models/g:generateContent": lambda e: e["error"]["status"],
    }
    for path, kind in routes.items():
        missing = httpx.post(f"{sim_url}{path}", json={})
        assert missing.status_code == 401 and kind(missing.json()) in (
            "authentication_error",
            "UNAUTHENTICATED",
        )
        broken = httpx.post(f"{sim_url}{path}", content=b"{", headers={"x-api-key": "k"})
        assert broken.status_code == 400 and kind(broken.json()) in (
            "invalid_request_error",
            "INVALID_ARGUMENT",
        )
    unknown = httpx.post(f"{sim_url}/x/explode=1/v1/chat/completions", json={}, headers={"x-api-key": "k"})
    assert unknown.status_code == 400 and "explode" in unknown.json()["error"]["message"]


def test_recent_requests_are_inspectable_with_secrets_redacted(sim_url):
    marker = f"inspect-{uuid.uuid4()}"
    oai(sim_url, "/x/words=2").chat.completions.create(
        model=marker, messages=USER, extra_body={"sim": {"cached": 1}}
    )
    google_client = gemini(sim_url)  # held: a google-genai client closes itself when collected
    google_client.models.generate_content(model=marker, contents="hi")
    recent = httpx.get(f"{sim_url}/_sim/requests", params={"limit": 2}).json()
    assert len(recent) == 2
    google, chat = recent
    assert chat["path"] == "/x/words=2/v1/chat/completions" and chat["body"]["model"] == marker
    assert chat["body"]["sim"] == {"cached": 1} and chat["headers"]["authorization"] == "***1234"
    assert (
        google["path"].endswith(f"/models/{marker}:generateContent")
        and google["headers"]["x-goog-api-key"] == "***x"
    )
    assert "sk-test-1234" not in json.dumps(recent)


def test_models_and_images(sim_url):
    client = oai(sim_url)
    assert "gpt-4o" in [m.id for m in client.models.list()]
    encoded = client.images.generate(
        model="gpt-image-1", prompt="a violet dot", n=2, response_format="b64_json"
    )
    pictures = [Image.open(io.BytesIO(base64.b64decode(i.b64_json))) for i in encoded.data]
    assert [(p.format, p.size) for p in pictures] == [("PNG", (1024, 1024))] * 2
    assert encoded.usage.input_tokens == count_tokens("a violet dot")
    linked = client.images.generate(model="dall-e-3", prompt="a violet dot", response_format="url")
    image = httpx.get(linked.data[0].url)
    assert image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (1024, 1024)


# OpenAI responses


def test_responses_stream_equals_non_stream(sim_url):
    client = oai(sim_url)
    whole = client.responses.create(model="gpt-5", input=QUESTION, instructions="Be brief.")
    assert whole.output_text == REPLY and whole.status == "completed"
    assert whole.usage.input_tokens == count_tokens(QUESTION) + count_tokens("Be brief.")
    with client.responses.stream(model="gpt-5", input=QUESTION, instructions="Be brief.") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events[:4]] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == REPLY
    assert final.output_text == REPLY and final.usage == whole.usage


def test_responses_function_call_round_trip(sim_url):
    client = oai(sim_url)
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER}]
    with client.responses.stream(model="gpt-5", input=USER, tools=tools) as stream:
        streamed = stream.get_final_response()
    whole = client.responses.create(model="gpt-5", input=USER, tools=tools)
    for response in (streamed, whole):
        (call,) = response.output
        assert call.type == "function_call" and call.call_id.startswith("call_")
        assert json.loads(call.arguments) == WEATHER_ARGS
    assert streamed.usage == whole.usage
    call = whole.output[0]
    answer = client.responses.create(
        model="gpt-5",
        tools=tools,
        input=[
            *USER,
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"},
        ],
    )
    assert answer.output_text == f"Tool result: Sunny {REPLY}"


def test_responses_reasoning_cap_and_always_stream(sim_url):
    client = oai(sim_url)
    reasoned = client.responses.create(model="o4-mini", input=QUESTION, reasoning={"effort": "low"})
    assert (
        reasoned.output[0].type == "reasoning" and reasoned.usage.output_tokens_details.reasoning_tokens == 8
    )
    assert reasoned.usage.output_tokens == 8 + 12
    capped = client.responses.create(model="gpt-5", input=QUESTION, max_output_tokens=2)
    assert capped.status == "incomplete" and capped.incomplete_details.reason == "max_output_tokens"
    assert capped.output_text == " ".join(reply_words(QUESTION)[:2])
    forced = httpx.post(
        f"{sim_url}/x/always_stream=1/v1/responses",
        headers={"authorization": "Bearer k"},
        json={"model": "gpt-5", "input": QUESTION, "stream": False},
    )
    assert forced.headers["content-type"].startswith("text/event-stream")
    assert (
        forced.text.startswith("event: response.created\n") and "event: response.completed\n" in forced.text
    )


# Anthropic messages


def test_messages_stream_equals_non_stream(sim_url):
    client = claude(sim_url)
    whole = client.messages.create(model="claude-sim", max_tokens=256, messages=USER)
    assert whole.content[0].text == REPLY and whole.stop_reason == "end_turn"
    assert whole.usage.input_tokens == count_tokens(QUESTION) and whole.usage.output_tokens == 12
    with client.messages.stream(model="claude-sim", max_tokens=256, messages=USER) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == REPLY and len(texts) == 12
    assert final.content[0].text == whole.content[0].text and final.usage == whole.usage


def test_messages_tool_use_round_trip(sim_url):
    client = claude(sim_url)
    tools = [{"name": "get_weather", "description": "Weather.", "input_schema": WEATHER}]
    whole = client.messages.create(model="c", max_tokens=256, messages=USER, tools=tools)
    with client.messages.stream(model="c", max_tokens=256, messages=USER, tools=tools) as stream:
        streamed = stream.get_final_message()
    for message in (whole, streamed):
        (block,) = message.content
        assert (
            message.stop_reason == "tool_use" and block.type == "tool_use" and block.id.startswith("toolu_")
        )
        assert block.name == "get_weather" and block.input == WEATHER_ARGS
    assert streamed.usage == whole.usage
    block = whole.content[0]
    answer = client.messages.create(
        model="c",
        max_tokens=256,
        tools=tools,
        messages=[
            *USER,
            {"role": "assistant", "content": [block.model_dump()]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "Sunny"}],
            },
        ],
    )
    assert answer.content[0].text == f"Tool result: Sunny {REPLY}"
    refused = client.messages.create(
        model="c", max_tokens=256, messages=USER, tools=tools, tool_choice={"type": "none"}
    )
    assert refused.content[0].text == REPLY


def test_messages_thinking(sim_url):
    client = claude(sim_url)
    thinking = {"type": "enabled", "budget_tokens": 1024}
    whole = client.messages.create(model="c", max_tokens=2048, messages=USER, thinking=thinking)
    with client.messages.stream(model="c", max_tokens=2048, messages=USER, thinking=thinking) as stream:
        streamed = stream.get_final_message()
    thought = " ".join(thinking_words(QUESTION))
    assert [b.type for b in whole.content] == ["thinking", "text"]
    assert whole.content[0].thinking == thought and whole.content[0].signature == signature(thought)
    assert [b.model_dump(include={"type", "thinking", "signature", "text"}) for b in streamed.content] == [
        b.model_dump(include={"type", "thinking", "signature", "text"}) for b in whole.content
    ]
    assert streamed.usage == whole.usage
    assert whole.usage.output_tokens == len(thinking_words(QUESTION)) + 12
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="c", max_tokens=1000, messages=USER, thinking=thinking)


def test_messages_prompt_caching_creates_then_reads(sim_url):
    client = claude(sim_url)
    system = [
        {
            "type": "text",
            "text": f"You are helpful. {uuid.uuid4()} " * 100,  # past the 1,024-token cache minimum
            "cache_control": {"type": "ephemeral"},
        }
    ]
    prefix = count_tokens(system[0]["text"])
    first = client.messages.create(model="c", max_tokens=64, system=system, messages=USER)
    assert (first.usage.cache_creation_input_tokens, first.usage.cache_read_input_tokens) == (prefix, 0)
    assert first.usage.input_tokens == count_tokens(QUESTION), "input_tokens excludes cached tokens"
    with client.messages.stream(model="c", max_tokens=64, system=system, messages=USER) as stream:
        again = stream.get_final_message()
    assert (again.usage.cache_creation_input_tokens, again.usage.cache_read_input_tokens) == (0, prefix)
    assert again.usage.input_tokens == first.usage.input_tokens
    # The next turn moves the breakpoint forward: the cached system prompt is read, the rest written.
    turn = [
        {
            "role": "user",
            "content": [{"type": "text", "text": QUESTION, "cache_control": {"type": "ephemeral"}}],
        }
    ]
    grown = client.messages.create(model="c", max_tokens=64, system=system, messages=turn)
    assert (grown.usage.cache_creation_input_tokens, grown.usage.cache_read_input_tokens) == (
        count_tokens(QUESTION),
        prefix,
    )
    assert grown.usage.input_tokens == 0


def test_messages_validation_failures_and_cuts(sim_url):
    missing = httpx.post(
        f"{sim_url}/v1/messages", headers={"x-api-key": "k"}, json={"model": "c", "messages": USER}
    )
    assert missing.status_code == 400 and missing.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        claude(sim_url, "/x/fail=529").messages.create(model="c", max_tokens=64, messages=USER)
    assert overloaded.value.body["error"]["type"] == "overloaded_error"
    with pytest.raises(anthropic.RateLimitError):
        claude(sim_url).messages.create(
            model="c", max_tokens=64, messages=USER, extra_body={"sim": {"fail": 429}}
        )
    cut = claude(sim_url, "/x/cut_after=2").messages.stream(model="c", max_tokens=64, messages=USER)
    with pytest.raises(BROKEN_STREAM), cut as stream:
        list(stream.text_stream)


# Gemini


def test_gemini_stream_equals_non_stream(sim_url):
    client = gemini(sim_url)
    whole = client.models.generate_content(model="gemini-2.5-flash", contents=QUESTION)
    assert whole.text == REPLY and whole.candidates[0].finish_reason == types.FinishReason.STOP
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents=QUESTION))
    assert "".join(c.text for c in chunks) == REPLY and len(chunks) == 12
    assert chunks[-1].usage_metadata == whole.usage_metadata
    assert whole.usage_metadata.prompt_token_count == count_tokens(QUESTION)
    assert whole.usage_metadata.candidates_token_count == 12


def test_gemini_function_calling(sim_url):
    client = gemini(sim_url)
    declarations = [
        types.FunctionDeclaration(name="get_weather", parameters_json_schema=WEATHER),
        types.FunctionDeclaration(
            name="get_time",
            parameters=types.Schema(
                type=types.Type.OBJECT, properties={"zone": types.Schema(type=types.Type.STRING)}
            ),
        ),
    ]
    tools = [types.Tool(function_declarations=declarations)]

    def ask(mode: str = "AUTO", allowed: list[str] | None = None, contents=QUESTION, stream: bool = False):
        calling = types.FunctionCallingConfig(mode=mode, allowed_function_names=allowed)
        config = types.GenerateContentConfig(
            tools=tools, tool_config=types.ToolConfig(function_calling_config=calling)
        )
        if stream:
            return list(client.models.generate_content_stream(model="g", contents=contents, config=config))
        return client.models.generate_content(model="g", contents=contents, config=config)

    (call,) = ask().function_calls
    assert call.name == "get_weather" and call.args == WEATHER_ARGS
    (streamed,) = ask(stream=True)
    assert streamed.function_calls[0].args == WEATHER_ARGS
    assert streamed.candidates[0].finish_reason == types.FinishReason.STOP
    (timed,) = ask("ANY", ["get_time"]).function_calls
    assert timed.name == "get_time" and timed.args == {"zone": "Oslo"}
    assert ask("NONE").text == REPLY
    history = [
        types.Content(role="user", parts=[types.Part(text=QUESTION)]),
        types.Content(role="model", parts=[types.Part(function_call=call)]),
        types.Content(
            role="user", parts=[types.Part.from_function_response(name="get_weather", response={"temp": 21})]
        ),
    ]
    assert ask(contents=history).text == f'Tool result: {{"temp": 21}} {REPLY}'


def test_gemini_thinking(sim_url):
    client = gemini(sim_url)
    config = types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=1024)
    )
    whole = client.models.generate_content(model="g", contents=QUESTION, config=config)
    thought, answer = whole.candidates[0].content.parts
    assert thought.thought and thought.text == " ".join(thinking_words(QUESTION)) and answer.text == REPLY
    assert whole.usage_metadata.thoughts_token_count == 8 and whole.usage_metadata.total_token_count == (
        count_tokens(QUESTION) + 8 + 12
    )
    chunks = list(client.models.generate_content_stream(model="g", contents=QUESTION, config=config))
    assert (
        "".join(
            c.candidates[0].content.parts[0].text for c in chunks if c.candidates[0].content.parts[0].thought
        )
        == thought.text
    )
    assert chunks[-1].usage_metadata == whole.usage_metadata


def test_gemini_failures_and_cuts(sim_url):
    failing, exhausted, cut = (
        gemini(sim_url, "/x/fail=503"),
        gemini(sim_url, "/x/fail=429"),
        gemini(sim_url, "/x/cut_after=4"),
    )
    with pytest.raises(genai_errors.ServerError) as unavailable:
        failing.models.generate_content(model="g", contents=QUESTION)
    assert unavailable.value.code == 503 and unavailable.value.status == "UNAVAILABLE"
    with pytest.raises(genai_errors.ClientError) as limited:
        exhausted.models.generate_content(model="g", contents=QUESTION)
    assert limited.value.status == "RESOURCE_EXHAUSTED"
    received = []
    with pytest.raises(BROKEN_STREAM):
        received.extend(cut.models.generate_content_stream(model="g", contents=QUESTION))
    assert "".join(c.text for c in received) == " ".join(reply_words(QUESTION)[:4])


# Behaving like a model: tools when asked, caches past their minimum, counts that agree, structured output


AGENT_TOOLS = [
    {"name": name, "description": f"The agent's {name} tool.", "input_schema": {"type": "object"}}
    for name in ("Bash", "Read", "TodoWrite")
]


def test_offered_tools_are_called_only_when_the_prompt_asks_for_one(sim_url):
    client = claude(sim_url)
    hello = client.messages.create(
        model="c", max_tokens=256, tools=AGENT_TOOLS, messages=[{"role": "user", "content": "Say hi"}]
    )
    assert hello.stop_reason == "end_turn"
    assert hello.content[0].text == " ".join(reply_words("Say hi"))
    named = client.messages.create(
        model="c", max_tokens=256, tools=AGENT_TOOLS, messages=[{"role": "user", "content": "Use read on it"}]
    )
    assert [(b.type, b.name) for b in named.content] == [("tool_use", "Read")]
    required = oai(sim_url).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Say hi"}],
        tool_choice="required",
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}],
    )
    assert [c.function.name for c in required.choices[0].message.tool_calls] == ["get_weather"]


def test_an_agents_context_blocks_are_not_what_the_user_asked(sim_url):
    """Claude Code wraps its context in <system-reminder> (here naming a tool): the reply follows the user."""
    reminder = "<system-reminder>\nPlease use the TodoWrite tool to track tasks.\n</system-reminder>"
    turn = [{"role": "user", "content": [{"type": "text", "text": reminder}, {"type": "text", "text": "Say hi"}]}]
    answer = claude(sim_url).messages.create(model="c", max_tokens=256, tools=AGENT_TOOLS, messages=turn)
    assert answer.content[0].text == " ".join(reply_words("Say hi"))
    assert answer.usage.input_tokens > count_tokens("Say hi"), "the context still counts as prompt"


def test_prompt_caching_honours_each_models_minimum_length(sim_url):
    client = claude(sim_url)
    tiny = [{"role": "user", "content": [{"type": "text", "text": f"hi {uuid.uuid4().hex[:4]}",
                                          "cache_control": {"type": "ephemeral"}}]}]
    for _ in range(2):  # never written, so never read
        usage = client.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=tiny).usage
        assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)
    system = [{"type": "text", "text": f"Notes {uuid.uuid4()}. " * 250, "cache_control": {"type": "ephemeral"}}]
    assert 1024 < count_tokens(system[0]["text"]) < 4096
    haiku = client.messages.create(model="claude-haiku-4-5", max_tokens=16, system=system, messages=USER).usage
    assert haiku.cache_creation_input_tokens == 0, "below claude-haiku-4-5's 4,096-token minimum"
    sonnet = client.messages.create(model="claude-sonnet-4-6", max_tokens=16, system=system, messages=USER).usage
    assert sonnet.cache_creation_input_tokens == count_tokens(system[0]["text"])


def test_count_tokens_is_the_prompt_a_call_is_billed_for(sim_url):
    client = claude(sim_url)
    tools = [{"name": "get_weather", "description": "Weather.", "input_schema": WEATHER}]
    counted = client.messages.count_tokens(model="c", system="Be brief.", tools=tools, messages=USER)
    usage = client.messages.create(model="c", max_tokens=64, system="Be brief.", tools=tools, messages=USER).usage
    total = usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
    assert counted.input_tokens == total > count_tokens(QUESTION)


def test_structured_output_follows_the_requested_schema(sim_url):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "score": {"type": "integer"}}}
    chat = oai(sim_url).chat.completions.create(
        model="m", messages=USER,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    )
    assert json.loads(chat.choices[0].message.content) == {"city": "Oslo", "score": 1}
    config = types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=schema)
    google_client = gemini(sim_url)  # held: a google-genai client closes itself when collected
    routed = google_client.models.generate_content(model="g", contents=QUESTION, config=config)
    assert json.loads(routed.text) == {"city": "Oslo", "score": 1}
