"""Every client wire format against every upstream format, through a live gateway and simulator.

The official SDKs are the clients: anthropic (/v1/messages), openai (/v1/responses and chat
completions), google-genai (/v1beta/models/…), and plain HTTP for /v1/gemini; then the Vercel AI SDK
(node) and the openai-agents SDK as their users set them up. Each call checks the
answer (text, tool calls), its usage in the format's own convention, and that the cost it reports is
the one logged and charged for its request id. The simulator's answers are deterministic
(sim/text.py), so the expected text and output token counts are known in advance.
"""

import asyncio
import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from billing.models import LedgerEntry
from billing.money import MICRO
from gateway.catalog_file import catalog_file_read
from sim.text import reply_words, thinking_words
from tests.live import ROOT, start_gateway, stop_process
from usage.models import RequestLog

CLAUDE, HAIKU = "claude-sonnet-4-6", "claude-haiku-4-5"  # Anthropic upstream
GPT = "gpt-5.5"  # OpenAI chat upstream
CODEX = "gpt-5.3-codex"  # OpenAI Responses upstream
GEMINI = "gemini-3.5-flash"  # Gemini upstream
STREAMING = pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])

TOOL_RESULT = "18 degrees and sunny"
WEATHER_QUESTION = "What is the weather in Paris?"  # the simulator calls get_weather(city="Paris")
WEATHER_AND_TIME = "What are the weather and the time in Paris?"  # ... and get_time, where parallel calls may be
# Anthropic caches no prompt shorter than the model's minimum (4,096 tokens on claude-haiku-4-5): the context a
# cached prompt carries.
LONG_CONTEXT = "The project notes the assistant keeps in mind across the conversation. " * 240
PRICES = {model_id: model.prices for model_id, model in catalog_file_read().models.items()}  # µcr per MTok
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
ANTHROPIC_TOOL = {"name": "get_weather", "description": "Current weather for a city.", "input_schema": CITY}
RESPONSES_TOOL = {"type": "function", "name": "get_weather", "description": "Current weather for a city.",
                  "parameters": CITY}
CHAT_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": CITY,
                                              "description": "Current weather for a city."}}
GEMINI_TOOL = types.Tool(function_declarations=[types.FunctionDeclaration(
    name="get_weather", description="Current weather for a city.",  # Gemini's own OpenAPI-style schema:
    parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")},
                            required=["city"]),
)])


def user(text: str) -> list[dict]:
    """A one-message conversation (chat and Anthropic shapes alike)."""
    return [{"role": "user", "content": text}]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def expected_reply(prompt: str) -> str:
    """The simulator's answer to a conversation whose last user text is ``prompt`` (one token a word)."""
    return " ".join(reply_words(prompt))


def expected_thinking(prompt: str) -> str:
    return " ".join(thinking_words(prompt))


# --- money and tokens -----------------------------------------------------------------------------------

def micro(credits: object) -> int:
    """A cost as the API reports it (a JSON number or a header of credits), in micro-credits."""
    return int(Decimal(str(credits)) * MICRO)


@dataclass(frozen=True)
class Tokens:
    """One call's usage as RequestLog keeps it: input includes cache reads and writes, output includes
    reasoning. ``reasoning`` is None for formats that do not report it (Anthropic)."""

    input: int
    output: int
    cached: int = 0
    cache_write: int = 0
    reasoning: int | None = None

    def priced(self, model: str) -> int:
        """The cost at the catalog file's prices (micro-credits per million tokens), rounded up once."""
        price = PRICES[model]
        uncached = self.input - self.cached - self.cache_write
        micro = Decimal(uncached * price["input"] + self.cached * price["cached_input"]
                        + self.cache_write * price["cache_write"] + self.output * price["output"]) / 1_000_000
        return int(micro.to_integral_value(ROUND_CEILING))


def anthropic_tokens(usage) -> Tokens:
    """Anthropic's input_tokens excludes cache reads and writes."""
    read, write = usage.cache_read_input_tokens or 0, usage.cache_creation_input_tokens or 0
    return Tokens(input=usage.input_tokens + read + write, output=usage.output_tokens, cached=read,
                  cache_write=write)


def responses_tokens(usage) -> Tokens:
    return Tokens(input=usage.input_tokens, output=usage.output_tokens,
                  cached=usage.input_tokens_details.cached_tokens,
                  reasoning=usage.output_tokens_details.reasoning_tokens)


def chat_tokens(usage: dict) -> Tokens:
    return Tokens(input=usage["prompt_tokens"], output=usage["completion_tokens"],
                  cached=usage["prompt_tokens_details"]["cached_tokens"],
                  reasoning=usage["completion_tokens_details"]["reasoning_tokens"])


def gemini_tokens(usage: dict) -> Tokens:
    """Gemini's candidatesTokenCount excludes thoughts; promptTokenCount includes cached content."""
    thoughts = usage.get("thoughtsTokenCount") or 0
    return Tokens(input=usage["promptTokenCount"], output=usage.get("candidatesTokenCount", 0) + thoughts,
                  cached=usage.get("cachedContentTokenCount") or 0, reasoning=thoughts)


@dataclass
class Reply:
    """One call as the client saw it: the SDK's answer, its usage, the cost it reported, its request id."""

    answer: object
    tokens: Tokens
    cost: int | None  # None where nothing carries it (google-genai drops the field from Gemini answers)
    request_id: str


def flush(gateway_url: str, key: str) -> None:
    """GET /credits makes the gateway process write every call it has served so far."""
    assert httpx.get(f"{gateway_url}/api/v1/credits", headers=bearer(key)).status_code == 200


def assert_billed(gateway_url: str, account, reply: Reply, *, model: str, stream: bool) -> RequestLog:
    """The call's log holds the tokens the client was shown, priced at the model's rates; the cost the
    response reported is that price; the ledger charged exactly that for the request id."""
    flush(gateway_url, account.key)
    log = RequestLog.objects.get(request_id=reply.request_id)
    assert (log.organization_id, log.model, log.status, log.stream) == (account.org.pk, model, 200, stream)
    logged = Tokens(input=log.input_tokens, output=log.output_tokens, cached=log.cached_tokens,
                    cache_write=log.cache_write_tokens,
                    reasoning=None if reply.tokens.reasoning is None else log.reasoning_tokens)
    assert logged == reply.tokens
    assert log.cost == reply.tokens.priced(model) > 0
    if reply.cost is not None:
        assert reply.cost == log.cost
    assert LedgerEntry.objects.get(idempotency_key=f"call:{reply.request_id}").amount == -log.cost
    return log


def assert_cut_billed(gateway_url: str, account, request_id: str, received: str) -> None:
    """A stream the upstream broke off is logged as a 502 and charged for at least the output the client
    received (the simulator's replies are a token a word)."""
    flush(gateway_url, account.key)
    log = RequestLog.objects.get(request_id=request_id)
    assert (log.status, log.error_type, log.stream) == (502, "upstream_stream_interrupted", True)
    assert log.input_tokens > 0 and log.output_tokens >= len(received.split()) > 0
    assert log.cost > 0
    assert LedgerEntry.objects.get(idempotency_key=f"call:{request_id}").amount == -log.cost


def assert_never_charged(org) -> None:
    assert not LedgerEntry.objects.filter(wallet__organization=org, kind=LedgerEntry.Kind.CHARGE).exists()


def sim_bodies(sim_url: str, marker: str) -> list[dict]:
    """Request bodies the simulator received that contain ``marker`` (newest first)."""
    recent = httpx.get(f"{sim_url}/_sim/requests", params={"limit": 100}).json()
    return [r["body"] for r in recent if marker in json.dumps(r["body"])]


# --- clients --------------------------------------------------------------------------------------------

class Wire:
    """Response headers of every call an openai or google-genai client makes (an httpx event hook)."""

    def __init__(self) -> None:
        self.headers: list[httpx.Headers] = []

    def client(self) -> httpx.Client:
        return httpx.Client(timeout=30, event_hooks={"response": [lambda r: self.headers.append(r.headers)]})

    @property
    def request_id(self) -> str:
        return self.headers[-1]["x-request-id"]

    @property
    def credits(self) -> int:
        return micro(self.headers[-1]["x-hypereal-credits"])


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
def claude(gateway_url, account) -> anthropic.Anthropic:
    # anthropic reads request ids itself (the request-id header), and only takes its own httpx fork as client.
    return anthropic.Anthropic(base_url=f"{gateway_url}/api", api_key=account.key, max_retries=0)


@pytest.fixture
def oai(gateway_url, account, wire) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/api/v1", api_key=account.key, max_retries=0,
                         http_client=wire.client())


def genai_client(gateway_url: str, key: str, wire: Wire | None = None) -> genai.Client:
    """google-genai as its users point it at the gateway: the gateway root as base URL."""
    options = types.HttpOptions(base_url=gateway_url, httpx_client=(wire or Wire()).client())
    return genai.Client(api_key=key, http_options=options)


@pytest.fixture
def google(gateway_url, account, wire) -> genai.Client:
    return genai_client(gateway_url, account.key, wire)


# --- one call in each format, whole or streamed ---------------------------------------------------------

def claude_call(client: anthropic.Anthropic, *, stream: bool, **params) -> Reply:
    """messages.create, or messages.stream + get_final_message (the cost rides on message_delta)."""
    if not stream:
        raw = client.messages.with_raw_response.create(**params)
        message = raw.parse()
        cost = micro(message.usage.model_extra["cost"])
        assert micro(raw.headers["x-hypereal-credits"]) == cost
        return Reply(message, anthropic_tokens(message.usage), cost, message._request_id)
    with client.messages.stream(**params) as events:
        deltas = [event for event in events if event.type == "message_delta"]
        message = events.get_final_message()
    assert len(deltas) == 1
    return Reply(message, anthropic_tokens(message.usage), micro(deltas[0].usage.model_extra["cost"]),
                 events.request_id)


def responses_call(client: openai.OpenAI, wire: Wire, *, stream: bool, **params) -> Reply:
    """responses.create, or responses.stream + get_final_response."""
    if stream:
        with client.responses.stream(**params) as events:
            response = events.get_final_response()
    else:
        response = client.responses.create(**params)
        assert wire.credits == micro(response.usage.model_extra["cost"])
    return Reply(response, responses_tokens(response.usage), micro(response.usage.model_extra["cost"]),
                 wire.request_id)


def chat_call(client: openai.OpenAI, wire: Wire, *, stream: bool, **params) -> Reply:
    """chat.completions.create, or chat.completions.stream (include_usage) + get_final_completion."""
    if stream:
        with client.chat.completions.stream(**params, stream_options={"include_usage": True}) as events:
            completion = events.get_final_completion()
    else:
        completion = client.chat.completions.create(**params)
        assert wire.credits == micro(completion.usage.model_extra["cost"])
    usage = completion.usage.model_dump()
    return Reply(completion, chat_tokens(usage), micro(usage["cost"]), wire.request_id)


@dataclass
class GeminiAnswer:
    text: str
    thoughts: str
    calls: list[types.FunctionCall]
    content: types.Content  # the model's turn, to send back in the conversation
    usage: types.GenerateContentResponseUsageMetadata


def gemini_call(client: genai.Client, wire: Wire, *, stream: bool, model: str, contents,
                config: types.GenerateContentConfig | None = None, finish: str = "STOP") -> Reply:
    """generate_content, or generate_content_stream with its chunks joined (the last usage is final)."""
    if stream:
        chunks = list(client.models.generate_content_stream(model=model, contents=contents, config=config))
        assert [c.candidates[0].finish_reason for c in chunks if c.candidates[0].finish_reason] == [finish]
        parts = [part for chunk in chunks for part in chunk.candidates[0].content.parts or []]
        usage, cost = chunks[-1].usage_metadata, None
    else:
        response = client.models.generate_content(model=model, contents=contents, config=config)
        assert response.candidates[0].finish_reason == finish
        parts, usage, cost = response.candidates[0].content.parts or [], response.usage_metadata, wire.credits
    answer = GeminiAnswer(text="".join(p.text for p in parts if p.text and not p.thought),
                          thoughts="".join(p.text for p in parts if p.text and p.thought),
                          calls=[p.function_call for p in parts if p.function_call],
                          content=types.Content(role="model", parts=[p for p in parts if not p.thought]),
                          usage=usage)
    return Reply(answer, gemini_tokens(usage.model_dump(by_alias=True)), cost, wire.request_id)


# --- raw wire checks, caps, caches ---------------------------------------------------------------------

def gemini_sse(resp: httpx.Response) -> list[dict]:
    """A Gemini stream as google-genai reads it: nothing but ``data: {json}`` lines (and blank ones)."""
    lines = [line for line in resp.text.split("\n") if line]
    assert all(line.startswith("data: {") for line in lines), lines
    return [json.loads(line.removeprefix("data: ")) for line in lines]


CAP = 3  # output tokens: the simulator's reply is one token a word


def capped_reply(prompt: str) -> str:
    return " ".join(reply_words(prompt)[:CAP])


CACHED = 10
CACHED_PROMPT = "A prompt long enough that part of it was served from the provider's cache"


# --- streams the simulator cuts off ---------------------------------------------------------------------

CUT = {"sim": {"cut_after": 4}}  # the simulator drops the connection after four content events
CUT_PROMPT = "Cut me off"


@pytest.fixture(scope="module")
def cutting_models(committed_db, sim_url) -> dict[str, str]:
    """A model per translated upstream format whose every stream the simulator cuts (directives survive
    translation only in a provider's base URL). Anthropic upstreams serve other formats only as a fallback
    (an Anthropic model is refused outside /messages), so that one sits behind a target that always fails."""
    from gateway.models import Provider
    from gateway.services import model_upsert, provider_upsert

    def provider(kind: str, path: str) -> Provider:
        return provider_upsert(name=f"wf-{kind}-{path.replace('/', '-').replace('=', '-')}", kind=kind,
                               base_url=f"{sim_url}/x/{path}", api_key="k")

    prices = {"input": "10", "output": "40"}
    chains = {
        "openai": [(provider(Provider.Kind.OPENAI, "cut_after=4/v1"), "wf-cut-openai")],
        "gemini": [(provider(Provider.Kind.GEMINI, "cut_after=4/v1beta"), "wf-cut-gemini")],
        "anthropic": [(provider(Provider.Kind.OPENAI, "fail=500/v1"), "wf-cut-anthropic-a"),
                      (provider(Provider.Kind.ANTHROPIC, "cut_after=4/v1"), "wf-cut-anthropic-b")],
        # cut after the stream's last event, before the body's clean end
        "openai-at-end": [(provider(Provider.Kind.OPENAI, "cut_at_end=true/v1"), "wf-cut-openai-at-end")],
        "gemini-at-end": [(provider(Provider.Kind.GEMINI, "cut_at_end=true/v1beta"), "wf-cut-gemini-at-end")],
    }
    for upstream, targets in chains.items():
        model_upsert(public_id=f"wf-cut-{upstream}", capability="chat", prices_per_mtok=prices,
                     targets=targets)
    return {upstream: f"wf-cut-{upstream}" for upstream in chains}


@pytest.fixture
def cutting(cutting_models, gateway_url, account) -> dict[str, str]:
    """The cutting models, once the gateway's catalog snapshot (refreshed every few seconds) serves them."""
    deadline = time.monotonic() + 30
    while True:
        listed = httpx.get(f"{gateway_url}/api/v1/models", headers=bearer(account.key))
        if set(cutting_models.values()) <= {m["id"] for m in listed.json()["data"]}:
            return cutting_models
        assert time.monotonic() < deadline, "the gateway never loaded the test models"
        time.sleep(0.1)  # polling a readiness condition, bounded by the deadline


# Each cut_* streams CUT_PROMPT in one format until the upstream breaks off, checks the client sees the
# failure, and returns (the text received, the request id).

def cut_anthropic(claude, wire, model: str, extra: dict) -> tuple[str, str]:
    """The anthropic SDK raises on the ``event: error`` (the request id is its own, from the headers)."""
    text = []
    with pytest.raises(anthropic.APIError, match="interrupted"):
        with claude.messages.stream(model=model, max_tokens=256, extra_body=extra,
                                    messages=user(CUT_PROMPT)) as events:
            request_id = events.request_id
            for event in events:
                if event.type == "text":
                    text.append(event.text)
    return "".join(text), request_id


def cut_responses(oai, wire, model: str, extra: dict) -> tuple[str, str]:
    """The openai SDK yields the error event (it raises only on an ``error`` key); no final response."""
    with oai.responses.stream(model=model, input=CUT_PROMPT, extra_body=extra) as events:
        received = list(events)
        with pytest.raises(RuntimeError, match="response.completed"):
            events.get_final_response()
    assert (received[-1].type, received[-1].code) == ("error", "upstream_stream_interrupted")
    assert [e.sequence_number for e in received] == list(range(len(received)))
    return "".join(e.delta for e in received if e.type == "response.output_text.delta"), wire.request_id


def cut_chat(oai, wire, model: str, extra: dict) -> tuple[str, str]:
    text = []
    with pytest.raises(openai.APIError, match="interrupted"):
        for chunk in oai.chat.completions.create(model=model, stream=True, extra_body=extra,
                                                 messages=user(CUT_PROMPT)):
            text += [c.delta.content or "" for c in chunk.choices]
    return "".join(text), wire.request_id


def cut_gemini(google, wire, model: str, extra: dict) -> tuple[str, str]:
    config = types.GenerateContentConfig(http_options=types.HttpOptions(extra_body=extra)) if extra else None
    text = []
    with pytest.raises(genai_errors.APIError, match="interrupted"):
        for chunk in google.models.generate_content_stream(model=model, contents=CUT_PROMPT, config=config):
            text.append(chunk.text or "")
    return "".join(text), wire.request_id


# --- Anthropic messages: natively, to a chat upstream, to a Gemini upstream ------------------------------

@STREAMING
@pytest.mark.parametrize("model", [CLAUDE, GPT, GEMINI])
def test_anthropic_messages_answer_and_charge_the_reported_cost(gateway_url, account, claude, model, stream):
    prompt = f"Describe the weather in {model}"
    reply = claude_call(claude, stream=stream, model=model, max_tokens=512,
                        messages=user(prompt))
    message = reply.answer
    assert (message.model, message.stop_reason) == (model, "end_turn")
    assert [(block.type, block.text) for block in message.content] == [("text", expected_reply(prompt))]
    assert message.usage.output_tokens == len(reply_words(prompt))
    assert_billed(gateway_url, account, reply, model=model, stream=stream)


@STREAMING
@pytest.mark.parametrize("model", [CLAUDE, GPT, GEMINI])
def test_anthropic_tool_use_round_trip(gateway_url, account, claude, model, stream):
    messages = [{"role": "user", "content": WEATHER_QUESTION}]
    first = claude_call(claude, stream=stream, model=model, max_tokens=512, tools=[ANTHROPIC_TOOL],
                        messages=messages)
    assert first.answer.stop_reason == "tool_use"
    (use,) = [block for block in first.answer.content if block.type == "tool_use"]
    assert (use.name, use.input) == ("get_weather", {"city": "Paris"})
    assert_billed(gateway_url, account, first, model=model, stream=stream)

    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.answer.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": TOOL_RESULT}]},
    ]
    second = claude_call(claude, stream=stream, model=model, max_tokens=512, tools=[ANTHROPIC_TOOL],
                         messages=messages)
    assert second.answer.stop_reason == "end_turn"
    assert [block.type for block in second.answer.content] == ["text"]
    assert TOOL_RESULT in second.answer.content[0].text
    assert_billed(gateway_url, account, second, model=model, stream=stream)


@STREAMING
@pytest.mark.parametrize("model", [CLAUDE, GPT, GEMINI])
def test_anthropic_thinking_reaches_every_upstream_and_is_billed_as_output(gateway_url, account, claude,
                                                                           model, stream):
    prompt = "Think about the tides"
    reply = claude_call(claude, stream=stream, model=model, max_tokens=2048,
                        thinking={"type": "enabled", "budget_tokens": 1024},
                        messages=user(prompt))
    blocks = reply.answer.content
    assert (blocks[-1].type, blocks[-1].text) == ("text", expected_reply(prompt))
    thinking = [block for block in blocks if block.type == "thinking"]
    if model == CLAUDE:  # the signed block, as Anthropic sends it
        assert thinking[0].thinking == expected_thinking(prompt) and thinking[0].signature
    elif model == GEMINI:  # Gemini's thoughts, shown as thinking
        assert thinking[0].thinking == expected_thinking(prompt)
    else:  # the chat upstream reasons without showing it
        assert not thinking
    # Anthropic's output_tokens includes the thinking.
    assert reply.answer.usage.output_tokens == len(reply_words(prompt)) + len(thinking_words(prompt))
    log = assert_billed(gateway_url, account, reply, model=model, stream=stream)
    assert log.reasoning_tokens == (0 if model == CLAUDE else len(thinking_words(prompt)))


@pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")  # the SDK's notice
@pytest.mark.parametrize(("alias", "model"), [("claude-3-5-sonnet-20241022", CLAUDE),
                                               ("claude-sonnet-4-5-20250929", CLAUDE),
                                               ("claude-3-5-haiku-20241022", HAIKU)])
@STREAMING
def test_legacy_claude_alias_answers_as_the_current_model(gateway_url, account, claude, sim_url, alias, model,
                                                          stream):
    marker = uuid.uuid4().hex
    reply = claude_call(claude, stream=stream, model=alias, max_tokens=256,
                        messages=[{"role": "user", "content": f"Who are you? {marker}"}])
    assert reply.answer.model == model
    assert [body["model"] for body in sim_bodies(sim_url, marker)] == [model]  # upstreams never see aliases
    assert_billed(gateway_url, account, reply, model=model, stream=stream)


# --- OpenAI Responses: natively, to a chat upstream, to a Gemini upstream --------------------------------

@STREAMING
@pytest.mark.parametrize("model", [CODEX, GPT, GEMINI])
def test_responses_answer_and_charge_the_reported_cost(gateway_url, account, oai, wire, model, stream):
    prompt = f"Describe the weather in {model}"
    reply = responses_call(oai, wire, stream=stream, model=model, input=prompt)
    response = reply.answer
    assert (response.model, response.status) == (model, "completed")
    assert response.output_text == expected_reply(prompt)
    assert response.usage.output_tokens == len(reply_words(prompt))
    assert_billed(gateway_url, account, reply, model=model, stream=stream)


@STREAMING
@pytest.mark.parametrize("model", [CODEX, GPT, GEMINI])
def test_responses_function_call_round_trip(gateway_url, account, oai, wire, model, stream):
    question = [{"role": "user", "content": WEATHER_QUESTION}]
    first = responses_call(oai, wire, stream=stream, model=model, input=question, tools=[RESPONSES_TOOL])
    (call,) = [item for item in first.answer.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    assert_billed(gateway_url, account, first, model=model, stream=stream)

    follow_up = [*question,
                 {"type": "function_call", "call_id": call.call_id, "name": call.name,
                  "arguments": call.arguments},
                 {"type": "function_call_output", "call_id": call.call_id, "output": TOOL_RESULT}]
    second = responses_call(oai, wire, stream=stream, model=model, input=follow_up, tools=[RESPONSES_TOOL])
    assert [item.type for item in second.answer.output] == ["message"]
    assert TOOL_RESULT in second.answer.output_text
    assert_billed(gateway_url, account, second, model=model, stream=stream)


@STREAMING
@pytest.mark.parametrize("model", [CODEX, GPT, GEMINI])
def test_responses_reasoning_tokens_are_reported_within_output(gateway_url, account, oai, wire, model,
                                                               stream):
    prompt = "Reason about the tides"
    reply = responses_call(oai, wire, stream=stream, model=model, input=prompt, reasoning={"effort": "low"})
    usage = reply.answer.usage
    assert reply.answer.output_text == expected_reply(prompt)
    assert usage.output_tokens_details.reasoning_tokens == len(thinking_words(prompt))
    assert usage.output_tokens == len(reply_words(prompt)) + len(thinking_words(prompt))
    assert_billed(gateway_url, account, reply, model=model, stream=stream)


def test_always_streaming_responses_upstream_is_aggregated_for_a_whole_answer(gateway_url, account, oai,
                                                                              wire):
    prompt = "Answer in one piece"
    reply = responses_call(oai, wire, stream=False, model=CODEX, input=prompt,
                           extra_body={"sim": {"always_stream": 1}})
    assert wire.headers[-1]["content-type"] == "application/json"
    assert (reply.answer.status, reply.answer.output_text) == ("completed", expected_reply(prompt))
    assert_billed(gateway_url, account, reply, model=CODEX, stream=False)


# --- OpenAI chat completions to a Gemini upstream --------------------------------------------------------

@STREAMING
def test_chat_completion_on_gemini(gateway_url, account, oai, wire, stream):
    prompt = "Say hello to Rome"
    reply = chat_call(oai, wire, stream=stream, model=GEMINI, messages=user(prompt))
    assert reply.answer.model == GEMINI
    assert reply.answer.choices[0].finish_reason == "stop"
    assert reply.answer.choices[0].message.content == expected_reply(prompt)
    assert_billed(gateway_url, account, reply, model=GEMINI, stream=stream)


def test_chat_stream_on_gemini_ends_with_the_usage_chunk_when_asked(gateway_url, account, oai, wire):
    prompt = "Stream hello to Rome"
    chunks = list(oai.chat.completions.create(model=GEMINI, messages=user(prompt), stream=True,
                                              stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected_reply(prompt)
    (usage_chunk,) = [c for c in chunks if c.usage is not None]
    assert usage_chunk is chunks[-1] and usage_chunk.choices == []
    usage = usage_chunk.usage.model_dump()
    reply = Reply(chunks, chat_tokens(usage), micro(usage["cost"]), wire.request_id)
    assert_billed(gateway_url, account, reply, model=GEMINI, stream=True)


def test_chat_stream_on_gemini_without_usage_ends_with_done_like_openais(gateway_url, account):
    """Clients other than the SDK (curl scripts, hand-written parsers) wait for ``data: [DONE]``."""
    prompt = "Stream hello to Oslo"
    resp = httpx.post(f"{gateway_url}/api/v1/chat/completions", headers=bearer(account.key),
                      json={"model": GEMINI, "stream": True, "messages": user(prompt)})
    lines = [line for line in resp.text.split("\n") if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == expected_reply(prompt)
    assert not any("usage" in chunk for chunk in chunks), "the client did not ask for usage"
    flush(gateway_url, account.key)
    log = RequestLog.objects.get(request_id=resp.headers["x-request-id"])
    assert log.status == 200 and log.output_tokens == len(reply_words(prompt)) and log.cost > 0


@STREAMING
def test_chat_tool_call_round_trip_on_gemini(gateway_url, account, oai, wire, stream):
    messages = [{"role": "user", "content": WEATHER_QUESTION}]
    first = chat_call(oai, wire, stream=stream, model=GEMINI, messages=messages, tools=[CHAT_TOOL])
    assert first.answer.choices[0].finish_reason == "tool_calls"
    (call,) = first.answer.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    assert_billed(gateway_url, account, first, model=GEMINI, stream=stream)

    messages += [{"role": "assistant", "tool_calls": [{"id": call.id, "type": "function", "function": {
                     "name": call.function.name, "arguments": call.function.arguments}}]},
                 {"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT}]
    second = chat_call(oai, wire, stream=stream, model=GEMINI, messages=messages, tools=[CHAT_TOOL])
    assert second.answer.choices[0].finish_reason == "stop"
    assert TOOL_RESULT in second.answer.choices[0].message.content
    assert_billed(gateway_url, account, second, model=GEMINI, stream=stream)


# --- output caps and parallel calls ----------------------------------------------------------------------

@STREAMING
@pytest.mark.parametrize("model", [CLAUDE, GPT, GEMINI])
def test_anthropic_output_cap_stops_with_max_tokens(gateway_url, account, claude, model, stream):
    prompt = "Tell me a long story"
    reply = claude_call(claude, stream=stream, model=model, max_tokens=CAP, messages=user(prompt))
    assert reply.answer.stop_reason == "max_tokens"
    assert reply.answer.content[0].text == capped_reply(prompt)
    assert reply.answer.usage.output_tokens == CAP
    assert_billed(gateway_url, account, reply, model=model, stream=stream)


@STREAMING
@pytest.mark.parametrize("model", [CODEX, GPT, GEMINI])
def test_responses_output_cap_ends_incomplete(gateway_url, account, oai, wire, model, stream):
    prompt = "Tell me a long story"
    if stream:  # no response.completed, so no final response: the response.incomplete event carries it
        with oai.responses.stream(model=model, input=prompt, max_output_tokens=CAP) as events:
            (ended,) = [event for event in events if event.type == "response.incomplete"]
        response = ended.response
    else:
        response = oai.responses.create(model=model, input=prompt, max_output_tokens=CAP)
    assert (response.status, response.incomplete_details.reason) == ("incomplete", "max_output_tokens")
    assert response.output_text == capped_reply(prompt)
    assert response.usage.output_tokens == CAP
    assert_billed(gateway_url, account, Reply(response, responses_tokens(response.usage),
                                              micro(response.usage.model_extra["cost"]), wire.request_id),
                  model=model, stream=stream)


@STREAMING
@pytest.mark.parametrize("model", [GEMINI, GPT])
def test_genai_output_cap_finishes_with_max_tokens(gateway_url, account, google, wire, model, stream):
    prompt = "Tell me a long story"
    reply = gemini_call(google, wire, stream=stream, model=model, contents=prompt, finish="MAX_TOKENS",
                        config=types.GenerateContentConfig(max_output_tokens=CAP))
    assert reply.answer.text == capped_reply(prompt)
    assert reply.answer.usage.candidates_token_count == CAP
    assert_billed(gateway_url, account, reply, model=model, stream=stream)


@STREAMING
def test_chat_output_cap_on_gemini_finishes_with_length(gateway_url, account, oai, wire, stream):
    prompt = "Tell me a long story"
    params = {"model": GEMINI, "max_completion_tokens": CAP, "messages": user(prompt)}
    if stream:  # the SDK's stream helper refuses length-capped completions: read the chunks
        chunks = list(oai.chat.completions.create(**params, stream=True,
                                                  stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        usage = chunks[-1].usage.model_dump()
    else:
        completion = oai.chat.completions.create(**params)
        text, finish = completion.choices[0].message.content, [completion.choices[0].finish_reason]
        usage = completion.usage.model_dump()
    assert (text, finish) == (capped_reply(prompt), ["length"])
    reply = Reply(text, chat_tokens(usage), micro(usage["cost"]), wire.request_id)
    assert_billed(gateway_url, account, reply, model=GEMINI, stream=stream)


@STREAMING
@pytest.mark.parametrize("model", [CODEX, GPT])
def test_responses_parallel_function_calls_arrive_as_separate_items(gateway_url, account, oai, wire, model,
                                                                    stream):
    clock = {"type": "function", "name": "get_time", "description": "Local time in a city.",
             "parameters": CITY}
    reply = responses_call(oai, wire, stream=stream, model=model, input=WEATHER_AND_TIME,
                           tools=[RESPONSES_TOOL, clock], parallel_tool_calls=True)
    calls = [item for item in reply.answer.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"}),
                                                                ("get_time", {"city": "Paris"})]
    assert len({c.call_id for c in calls}) == 2
    assert_billed(gateway_url, account, reply, model=model, stream=stream)


# --- cached prompt tokens an upstream reports are billed at the cached rate ------------------------------

@STREAMING
def test_cached_tokens_of_a_responses_upstream(gateway_url, account, oai, wire, stream):
    reply = responses_call(oai, wire, stream=stream, model=CODEX, input=CACHED_PROMPT,
                           extra_body={"sim": {"cached": CACHED}})
    assert reply.tokens.cached == CACHED
    assert_billed(gateway_url, account, reply, model=CODEX, stream=stream)


@STREAMING
def test_cached_tokens_of_a_chat_upstream(gateway_url, account, oai, wire, stream):
    reply = chat_call(oai, wire, stream=stream, model=GPT, messages=user(CACHED_PROMPT),
                      extra_body={"sim": {"cached": CACHED}})
    assert reply.tokens.cached == CACHED
    assert_billed(gateway_url, account, reply, model=GPT, stream=stream)


@STREAMING
def test_cached_tokens_of_a_gemini_upstream(gateway_url, account, google, wire, stream):
    options = types.HttpOptions(extra_body={"sim": {"cached": CACHED}})
    config = types.GenerateContentConfig(http_options=options)
    reply = gemini_call(google, wire, stream=stream, model=GEMINI, contents=CACHED_PROMPT, config=config)
    assert reply.answer.usage.cached_content_token_count == CACHED
    assert_billed(gateway_url, account, reply, model=GEMINI, stream=stream)


# --- Gemini: google-genai natively and translated, and /v1/gemini ---------------------------------------

@STREAMING
@pytest.mark.parametrize("model", [GEMINI, GPT])
def test_genai_generate_content_and_charge(gateway_url, account, google, wire, model, stream):
    prompt = f"Describe the weather in {model}"
    reply = gemini_call(google, wire, stream=stream, model=model, contents=prompt)
    assert reply.answer.text == expected_reply(prompt) and not reply.answer.calls
    assert reply.answer.usage.candidates_token_count == len(reply_words(prompt))
    assert_billed(gateway_url, account, reply, model=model, stream=stream)


@STREAMING
@pytest.mark.parametrize("model", [GEMINI, GPT])
def test_genai_function_call_round_trip(gateway_url, account, google, wire, model, stream):
    config = types.GenerateContentConfig(tools=[GEMINI_TOOL])
    contents = [types.Content(role="user", parts=[types.Part(text=WEATHER_QUESTION)])]
    first = gemini_call(google, wire, stream=stream, model=model, contents=contents, config=config)
    (call,) = first.answer.calls
    assert (call.name, call.args) == ("get_weather", {"city": "Paris"})
    assert_billed(gateway_url, account, first, model=model, stream=stream)

    contents += [first.answer.content, types.Content(role="user", parts=[
        types.Part.from_function_response(name=call.name, response={"result": TOOL_RESULT})])]
    second = gemini_call(google, wire, stream=stream, model=model, contents=contents, config=config)
    assert TOOL_RESULT in second.answer.text and not second.answer.calls
    assert_billed(gateway_url, account, second, model=model, stream=stream)


@STREAMING
@pytest.mark.parametrize("model", [GEMINI, GPT])
def test_genai_thoughts_are_counted_apart_from_candidates(gateway_url, account, google, wire, model, stream):
    prompt = "Think about the tides"
    config = types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(thinking_budget=1024, include_thoughts=True))
    reply = gemini_call(google, wire, stream=stream, model=model, contents=prompt, config=config)
    assert reply.answer.text == expected_reply(prompt)
    # Gemini natively shows its thoughts; the chat upstream reasons without showing them.
    assert reply.answer.thoughts == (expected_thinking(prompt) if model == GEMINI else "")
    assert reply.answer.usage.candidates_token_count == len(reply_words(prompt))
    assert reply.answer.usage.thoughts_token_count == len(thinking_words(prompt))
    assert_billed(gateway_url, account, reply, model=model, stream=stream)


@pytest.mark.parametrize("style", ["x-goog-api-key", "?key=", "bearer"])
def test_gemini_path_takes_the_key_wherever_google_clients_put_it(gateway_url, account, style):
    def present(key: str) -> dict:
        return {"x-goog-api-key": {"headers": {"x-goog-api-key": key}}, "?key=": {"params": {"key": key}},
                "bearer": {"headers": {"Authorization": f"Bearer {key}"}}}[style]

    url = f"{gateway_url}/v1beta/models/{GEMINI}:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "Authenticate me"}]}]}
    resp = httpx.post(url, json=body, **present(account.key))
    assert resp.status_code == 200
    assert resp.json()["candidates"][0]["content"]["parts"] == [{"text": expected_reply("Authenticate me")}]

    refused = httpx.post(url, json=body, **present("ck_not-a-real-key"))
    assert refused.status_code == 401
    error = refused.json()["error"]
    assert (error["code"], error["status"]) == (401, "UNAUTHENTICATED")


@pytest.mark.parametrize("model", [GEMINI, GPT], ids=["native", "translated"])
@pytest.mark.parametrize("how", ["whole", "?alt=sse", '"stream": true'])
def test_gemini_endpoint_takes_a_native_body_with_the_model_inside(gateway_url, account, how, model):
    prompt = "Native body please"
    body = {"model": model, "contents": [{"role": "user", "parts": [{"text": prompt}]}],
            **({"stream": True} if how == '"stream": true' else {})}
    resp = httpx.post(f"{gateway_url}/api/v1/gemini", json=body, headers={"x-goog-api-key": account.key},
                      params={"alt": "sse"} if how == "?alt=sse" else {})
    assert resp.status_code == 200
    if how == "whole":
        answer = resp.json()
        parts, usage = answer["candidates"][0]["content"]["parts"], answer["usageMetadata"]
        cost = micro(usage["cost"])
        assert micro(resp.headers["x-hypereal-credits"]) == cost
    else:
        chunks = gemini_sse(resp)
        parts, usage = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]], chunks[-1]["usageMetadata"]
        cost = micro(usage["cost"])  # the last chunk carries the call's cost
    assert "".join(part["text"] for part in parts) == expected_reply(prompt)
    reply = Reply(parts, gemini_tokens(usage), cost, resp.headers["x-request-id"])
    assert_billed(gateway_url, account, reply, model=model, stream=how != "whole")


@pytest.mark.parametrize("how", ["whole", "?alt=sse", '"stream": true'])
def test_gemini_endpoint_answers_an_openai_shaped_body_in_kind(gateway_url, account, how):
    prompt = "OpenAI body please"
    stream = how != "whole"
    body = {"model": GEMINI, "messages": user(prompt),
            **({"stream": True} if how == '"stream": true' else {}),
            **({"stream_options": {"include_usage": True}} if stream else {})}
    resp = httpx.post(f"{gateway_url}/api/v1/gemini", json=body, headers=bearer(account.key),
                      params={"alt": "sse"} if how == "?alt=sse" else {})
    assert resp.status_code == 200
    if stream:
        lines = [line for line in resp.text.split("\n") if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
        assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        usage = chunks[-1]["usage"]
    else:
        answer = resp.json()
        assert answer["object"] == "chat.completion"
        text, usage = answer["choices"][0]["message"]["content"], answer["usage"]
    assert text == expected_reply(prompt)
    assert_billed(gateway_url, account, Reply(text, chat_tokens(usage), micro(usage["cost"]),
                                              resp.headers["x-request-id"]), model=GEMINI, stream=stream)


# --- Anthropic models live on /v1/messages only ----------------------------------------------------------

@pytest.mark.parametrize("model", [CLAUDE, "claude-3-5-haiku-20241022"])
@pytest.mark.parametrize("endpoint", ["/api/v1/chat/completions", "/api/v1/responses", "/api/v1/gemini",
                                      "/v1beta/models/{model}:generateContent"])
def test_anthropic_models_are_refused_outside_messages_at_no_cost(gateway_url, account, endpoint, model):
    body = {"/api/v1/chat/completions": {"model": model, "messages": user("hi")},
            "/api/v1/responses": {"model": model, "input": "hi"},
            "/api/v1/gemini": {"model": model, "contents": [{"parts": [{"text": "hi"}]}]},
            }.get(endpoint, {"contents": [{"parts": [{"text": "hi"}]}]})
    resp = httpx.post(gateway_url + endpoint.format(model=model), json=body,
                      headers=bearer(account.key))
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert "/v1/messages" in error["message"]
    if "gemini" in endpoint or "generateContent" in endpoint:  # Gemini's error shape
        assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    else:
        assert (error["type"], error["code"]) == ("invalid_request_error", "wrong_endpoint_for_model")
    flush(gateway_url, account.key)
    assert RequestLog.objects.get(request_id=resp.headers["x-request-id"]).status == 400
    assert_never_charged(account.org)


def test_sdks_see_the_refusal_as_a_bad_request(oai, google):
    with pytest.raises(openai.BadRequestError, match="/v1/messages"):
        oai.chat.completions.create(model=CLAUDE, messages=user("hi"))
    with pytest.raises(openai.BadRequestError, match="/v1/messages"):
        oai.responses.create(model=CLAUDE, input="hi")
    with pytest.raises(genai_errors.ClientError, match="/v1/messages") as exc:
        google.models.generate_content(model=CLAUDE, contents="hi")
    assert (exc.value.code, exc.value.status) == (400, "INVALID_ARGUMENT")


# --- errors in each format's own shape -------------------------------------------------------------------

def test_anthropic_errors_have_anthropics_shape(gateway_url, claude):
    stranger = anthropic.Anthropic(base_url=f"{gateway_url}/api", api_key="ck_not-a-real-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as exc:
        stranger.messages.create(model=CLAUDE, max_tokens=16, messages=user("hi"))
    assert exc.value.body["type"] == "error" and exc.value.body["error"]["type"] == "authentication_error"

    with pytest.raises(anthropic.BadRequestError) as exc:
        claude.messages.create(model="claude-0", max_tokens=16, messages=user("hi"))
    assert exc.value.body["type"] == "error" and exc.value.body["error"]["type"] == "invalid_request_error"
    assert {CLAUDE, HAIKU, GPT, GEMINI, CODEX} <= set(exc.value.body["error"]["available_models"])


def test_gemini_errors_have_geminis_shape(gateway_url, google):
    stranger = genai_client(gateway_url, "ck_not-a-real-key")
    with pytest.raises(genai_errors.ClientError) as exc:
        stranger.models.generate_content(model=GEMINI, contents="hi")
    assert (exc.value.code, exc.value.status) == (401, "UNAUTHENTICATED")

    with pytest.raises(genai_errors.ClientError) as exc:
        google.models.generate_content(model="gemini-0", contents="hi")
    assert (exc.value.code, exc.value.status) == (400, "INVALID_ARGUMENT")
    assert {GEMINI, GPT, CLAUDE} <= set(exc.value.details["error"]["available_models"])


def test_responses_errors_have_openais_shape(gateway_url, oai):
    stranger = openai.OpenAI(base_url=f"{gateway_url}/api/v1", api_key="ck_not-a-real-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        stranger.responses.create(model=CODEX, input="hi")
    assert exc.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as exc:
        oai.responses.create(model="gpt-0", input="hi")
    assert exc.value.body["code"] == "model_not_found" and CODEX in exc.value.body["available_models"]


def test_messages_take_the_key_as_x_api_key_or_bearer(gateway_url, account):
    body = {"model": HAIKU, "max_tokens": 16, "messages": user("hi")}
    for auth in ({"x-api-key": account.key}, {"Authorization": f"Bearer {account.key}"}):
        resp = httpx.post(f"{gateway_url}/v1/messages", json=body,
                          headers={**auth, "anthropic-version": "2023-06-01"})
        assert resp.status_code == 200 and resp.json()["type"] == "message"
        assert resp.headers["request-id"] == resp.headers["x-request-id"]  # where the anthropic SDK looks


@pytest.mark.parametrize("fmt", ["anthropic", "responses", "gemini"])
def test_a_wallet_below_the_floor_is_refused_in_each_formats_shape_at_no_cost(gateway_url, make_account, fmt):
    poor = make_account(credits="150")  # below the 200-credit floor for LLM calls
    if fmt == "anthropic":
        client = anthropic.Anthropic(base_url=f"{gateway_url}/api", api_key=poor.key, max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as exc:
            client.messages.create(model=CLAUDE, max_tokens=16, messages=user("hi"))
        assert exc.value.status_code == 402
        assert exc.value.body == {"type": "error", "error": {"type": "insufficient_credits",
                                                             "message": exc.value.body["error"]["message"]}}
    elif fmt == "responses":
        client = openai.OpenAI(base_url=f"{gateway_url}/api/v1", api_key=poor.key, max_retries=0)
        with pytest.raises(openai.APIStatusError) as exc:
            client.responses.create(model=CODEX, input="hi")
        assert (exc.value.status_code, exc.value.body["type"]) == (402, "insufficient_credits")
    else:
        with pytest.raises(genai_errors.ClientError) as exc:
            genai_client(gateway_url, poor.key).models.generate_content(model=GEMINI, contents="hi")
        assert (exc.value.code, exc.value.status) == (402, "FAILED_PRECONDITION")
    flush(gateway_url, poor.key)
    assert RequestLog.objects.get(organization=poor.org).status == 402
    assert_never_charged(poor.org)


def test_v1_mirror_serves_every_format(gateway_url, account):
    """SDKs whose base URL is the gateway root (anthropic) or ends in /v1 (openai) find the same API."""
    prompt = "Mirror mirror"
    message = anthropic.Anthropic(base_url=gateway_url, api_key=account.key, max_retries=0).messages.create(
        model=GPT, max_tokens=64, messages=user(prompt))
    assert message.content[0].text == expected_reply(prompt)
    responses = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=account.key, max_retries=0).responses
    response = responses.create(model=GEMINI, input=prompt)
    assert response.output_text == expected_reply(prompt)
    resp = httpx.post(f"{gateway_url}/v1/gemini", headers={"x-goog-api-key": account.key},
                      json={"model": GPT, "contents": [{"parts": [{"text": prompt}]}]})
    assert resp.json()["candidates"][0]["content"]["parts"] == [{"text": expected_reply(prompt)}]
    google_v1 = genai.Client(api_key=account.key, http_options=types.HttpOptions(base_url=gateway_url,
                                                                                  api_version="v1"))
    assert google_v1.models.generate_content(model=GEMINI, contents=prompt).text == expected_reply(prompt)


# --- Hypereal Cache --------------------------------------------------------------------------------------

@STREAMING
def test_hypereal_cache_bills_a_repeated_prompt_at_the_cached_rate(gateway_url, account, claude, stream):
    marker = uuid.uuid4().hex  # the simulator's cache is shared by the whole session
    prompt = f"{LONG_CONTEXT}A long prompt worth caching, tagged {marker}"
    params = {"model": HAIKU, "max_tokens": 256, "messages": [{"role": "user", "content": prompt}]}
    first = claude_call(claude, stream=stream, **params)
    assert (first.tokens.cache_write, first.tokens.cached) == (first.tokens.input, 0)  # all of it written
    assert_billed(gateway_url, account, first, model=HAIKU, stream=stream)

    second = claude_call(claude, stream=stream, **params)
    assert (second.tokens.cached, second.tokens.cache_write) == (first.tokens.cache_write, 0)  # all read
    log = assert_billed(gateway_url, account, second, model=HAIKU, stream=stream)
    assert log.cached_tokens == second.answer.usage.cache_read_input_tokens
    assert second.cost < first.cost


def test_hypereal_cache_can_be_turned_off(gateway_url, account, claude, sim_url):
    marker = uuid.uuid4().hex
    params = {"model": HAIKU, "max_tokens": 256, "extra_body": {"hypereal": {"cache": False}},
              "messages": [{"role": "user", "content": f"Do not cache this, tagged {marker}"}]}
    for _ in range(2):
        reply = claude_call(claude, stream=False, **params)
        assert (reply.tokens.cached, reply.tokens.cache_write) == (0, 0)
        assert_billed(gateway_url, account, reply, model=HAIKU, stream=False)
    bodies = sim_bodies(sim_url, marker)
    assert len(bodies) == 2
    assert all("hypereal" not in body and "cache_control" not in json.dumps(body) for body in bodies)


def test_hypereal_cache_leaves_the_clients_own_breakpoints_alone(gateway_url, account, claude, sim_url):
    marker = uuid.uuid4().hex
    system = [{"type": "text", "text": f"You are a careful assistant {marker}. {LONG_CONTEXT}",
               "cache_control": {"type": "ephemeral"}}]
    question = [{"role": "user", "content": "A question after the cached system prompt"}]
    reply = claude_call(claude, stream=False, model=HAIKU, max_tokens=256, system=system, messages=question)
    (body,) = sim_bodies(sim_url, marker)
    assert body["system"][0] == system[0]
    assert body["messages"] == question  # no breakpoint added to the last message
    assert 0 < reply.tokens.cache_write < reply.tokens.input  # only the system prompt was cached


def test_hypereal_options_are_checked(gateway_url, claude):
    with pytest.raises(anthropic.BadRequestError, match="hypereal"):
        claude.messages.create(model=HAIKU, max_tokens=16, messages=user("hi"),
                               extra_body={"hypereal": {"cache": "sometimes"}})


@pytest.mark.parametrize(("path", "body"), [
    ("chat/completions", {"model": GEMINI, "messages": [{"role": "user", "content": "{marker}"}]}),
    ("responses", {"model": CODEX, "input": "{marker}"}),
    ("messages", {"model": GPT, "max_tokens": 64, "messages": [{"role": "user", "content": "{marker}"}]}),
    ("messages", {"model": HAIKU, "max_tokens": 64, "messages": [{"role": "user", "content": "{marker}"}]}),
    ("gemini", {"model": GEMINI, "contents": [{"parts": [{"text": "{marker}"}]}]}),
], ids=["chat-to-gemini", "responses-native", "messages-to-chat", "messages-native", "gemini-native"])
def test_the_hypereal_field_never_reaches_an_upstream(gateway_url, account, sim_url, path, body):
    marker = uuid.uuid4().hex
    body = json.loads(json.dumps(body).replace("{marker}", marker))
    resp = httpx.post(f"{gateway_url}/api/v1/{path}", json={**body, "hypereal": {"cache": "auto"}},
                      headers=bearer(account.key))
    assert resp.status_code == 200
    (received,) = sim_bodies(sim_url, marker)
    assert "hypereal" not in received


# --- streams cut off mid-way -----------------------------------------------------------------------------

@pytest.mark.parametrize(("client", "upstream"), [
    ("anthropic", "native"), ("responses", "native"), ("gemini", "native"),
    ("anthropic", "openai"), ("anthropic", "gemini"), ("responses", "openai"), ("responses", "gemini"),
    ("chat", "gemini"), ("gemini", "openai"),
    ("chat", "anthropic"), ("responses", "anthropic"), ("gemini", "anthropic"),
])
def test_stream_cut_mid_way_ends_with_an_error_in_the_clients_format_and_bills_the_partial_output(
        request, gateway_url, account, claude, oai, google, wire, client, upstream):
    if upstream == "native":  # the sim directive rides in the body, passed through untouched
        model, extra = {"anthropic": CLAUDE, "responses": CODEX, "gemini": GEMINI}[client], CUT
    else:
        model, extra = request.getfixturevalue("cutting")[upstream], {}
    cut, sdk = {"anthropic": (cut_anthropic, claude), "responses": (cut_responses, oai),
                "chat": (cut_chat, oai), "gemini": (cut_gemini, google)}[client]
    text, request_id = cut(sdk, wire, model, extra)
    assert text and expected_reply(CUT_PROMPT).startswith(text) and text != expected_reply(CUT_PROMPT)
    assert_cut_billed(gateway_url, account, request_id, text)


# --- streams cut after their end ------------------------------------------------------------------------

@pytest.mark.parametrize("client", ["chat", "anthropic", "responses"])
def test_a_stream_cut_after_its_last_event_is_a_whole_answer_charged_once(
        gateway_url, account, claude, oai, wire, client):
    """The upstream's connection dies after its last event, before the body's clean end: what the client
    reads is the whole answer, and the call a success charged once (its charge was recorded as soon as the
    upstream said how the stream ends). A Gemini stream has no end event, so a cut there stays an error."""
    prompt, extra = "Cut me off only at the very end", {"sim": {"cut_at_end": True}}
    if client == "chat":
        model = GPT
        reply = chat_call(oai, wire, stream=True, model=model, messages=user(prompt), extra_body=extra)
        text = reply.answer.choices[0].message.content
    elif client == "anthropic":
        model = CLAUDE
        reply = claude_call(claude, stream=True, model=model, max_tokens=256, messages=user(prompt),
                            extra_body=extra)
        text = reply.answer.content[0].text
    else:
        model = CODEX
        reply = responses_call(oai, wire, stream=True, model=model, input=prompt, extra_body=extra)
        text = reply.answer.output_text
    assert text == expected_reply(prompt)
    assert_billed(gateway_url, account, reply, model=model, stream=True)


def test_a_translated_stream_cut_after_its_end_is_whole_unless_gemini_usage_could_still_follow(
        gateway_url, account, claude, oai, wire, cutting):
    """Translated too, a stream cut after its end event is a whole answer charged once as a success. A
    Gemini stream's only end is its body's (a usageMetadata may follow the finishReason), so a cut there is
    an error, billed for what was sent."""
    prompt = "Cut me off only at the very end"
    model = cutting["openai-at-end"]
    reply = claude_call(claude, stream=True, model=model, max_tokens=256, messages=user(prompt))
    assert reply.answer.content[0].text == expected_reply(prompt)
    flush(gateway_url, account.key)
    log = RequestLog.objects.get(request_id=reply.request_id)
    assert (log.status, log.error_type, log.output_tokens) == (200, "", reply.tokens.output)
    assert log.cost == reply.cost > 0
    assert LedgerEntry.objects.get(idempotency_key=f"call:{reply.request_id}").amount == -log.cost
    text, request_id = cut_chat(oai, wire, cutting["gemini-at-end"], {})
    assert text == expected_reply(CUT_PROMPT)
    assert_cut_billed(gateway_url, account, request_id, text)


# --- the model list --------------------------------------------------------------------------------------

def test_model_list_shows_where_and_at_what_price_each_model_is_served(gateway_url, account):
    resp = httpx.get(f"{gateway_url}/api/v1/models", headers=bearer(account.key))
    models = {m["id"]: m for m in resp.json()["data"]}
    claude, gpt = models[CLAUDE], models[GPT]
    assert claude["capability"] == gpt["capability"] == "chat"
    assert claude["endpoints"] == ["/v1/messages"]
    assert set(gpt["endpoints"]) == {"/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/gemini"}
    assert set(claude["aliases"]) == {"claude-sonnet-4-5-20250929", "claude-3-5-sonnet-20241022"}
    assert gpt["aliases"] == []
    unit = {"unit": "credits per million tokens"}
    assert claude["pricing"] == {**unit, "input": 300, "cached_input": 30, "cache_write": 375, "output": 1500}
    assert gpt["pricing"] == {**unit, "input": 500, "cached_input": 50, "cache_write": 0, "output": 3000}


# --- keep-alives ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pinging_gateway_url(demo_catalog, redis_client):
    """A gateway that pings after 0.2 s of quiet (15 s in production), for streams the simulator slows down."""
    url, proc = start_gateway(HYPEREAL_STREAM_PING_SECONDS="0.2")
    yield url
    stop_process(proc)


SLOW = {"sim": {"chunk_delay_ms": 500, "words": 3}}  # quiet gaps of 0.5 s between events
SLOW_REPLY = " ".join(expected_reply("Ping me").split()[:3])


def test_a_quiet_chat_stream_gets_sse_comment_pings_the_sdk_ignores(pinging_gateway_url, account):
    body = {"model": GPT, "messages": user("Ping me"), "stream": True, **SLOW}
    with httpx.stream("POST", f"{pinging_gateway_url}/api/v1/chat/completions", json=body,
                      headers=bearer(account.key), timeout=30) as resp:
        raw = b"".join(resp.iter_raw())
    assert b": ping\n\n" in raw
    client = openai.OpenAI(base_url=f"{pinging_gateway_url}/api/v1", api_key=account.key, max_retries=0)
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=GPT, messages=user("Ping me"), stream=True, extra_body=SLOW) if c.choices)
    assert text == SLOW_REPLY


def test_a_quiet_anthropic_stream_gets_ping_events(pinging_gateway_url, account):
    body = {"model": CLAUDE, "max_tokens": 64, "messages": user("Ping me"), "stream": True, **SLOW}
    with httpx.stream("POST", f"{pinging_gateway_url}/api/v1/messages", json=body,
                      headers={"x-api-key": account.key}, timeout=30) as resp:
        raw = b"".join(resp.iter_raw())
    assert b'event: ping\ndata: {"type": "ping"}\n\n' in raw
    client = anthropic.Anthropic(base_url=f"{pinging_gateway_url}/api", api_key=account.key, max_retries=0)
    with client.messages.stream(model=CLAUDE, max_tokens=64, messages=user("Ping me"), extra_body=SLOW) as stream:
        assert stream.get_final_text() == SLOW_REPLY


def test_a_quiet_gemini_stream_stays_pure_data_lines(pinging_gateway_url, account):
    body = {"contents": [{"role": "user", "parts": [{"text": "Ping me"}]}], **SLOW}
    with httpx.stream("POST", f"{pinging_gateway_url}/v1beta/models/{GEMINI}:streamGenerateContent",
                      params={"alt": "sse"}, json=body, headers={"x-goog-api-key": account.key}, timeout=30) as resp:
        raw = b"".join(resp.iter_raw())
    lines = [line for line in raw.split(b"\n") if line]
    assert lines and all(line.startswith(b"data: ") for line in lines)


# --- the Vercel AI SDK (node, pinned in tests/clients) ---------------------------------------------------

AI_SDK = ROOT / "tests" / "clients"


@pytest.fixture(scope="module")
def ai_sdk_installed() -> None:
    if not (AI_SDK / "node_modules" / "ai").exists():
        if os.environ.get("CI"):
            pytest.fail("tests/clients is not installed: `make test-deps` installs it")
        pytest.skip("tests/clients is not installed (run `make test-deps`)")


def ai_sdk(gateway_url: str, key: str, **spec) -> dict:
    """One AI SDK call (tests/clients/ai_sdk.mjs), with the base URL its provider takes."""
    done = subprocess.run(["node", "ai_sdk.mjs", json.dumps(spec)], cwd=AI_SDK, capture_output=True, text=True,
                          timeout=60, env={"PATH": os.environ["PATH"], "HYPEREAL_URL": gateway_url,
                                           "HYPEREAL_API_KEY": key})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def assert_charged_once(gateway_url: str, account, request_ids: list[str], model: str) -> None:
    flush(gateway_url, account.key)
    for request_id in request_ids:
        log = RequestLog.objects.get(request_id=request_id)
        assert (log.model, log.status) == (model, 200) and log.cost > 0
        (charge,) = LedgerEntry.objects.filter(idempotency_key=f"call:{request_id}")
        assert charge.amount == -log.cost


@STREAMING
@pytest.mark.parametrize(("provider", "model"), [("anthropic", CLAUDE), ("openai", CODEX), ("openai", GPT),
                                                 ("openai.chat", GPT), ("google", GEMINI)])
def test_ai_sdk_answers_and_is_charged_once(ai_sdk_installed, gateway_url, account, provider, model, stream):
    """createAnthropic and createOpenAI at /api/v1 (the Responses API by default, .chat for completions),
    createGoogleGenerativeAI at /v1beta."""
    answer = ai_sdk(gateway_url, account.key, provider=provider, model=model, prompt="Say hi", stream=stream)
    assert answer["text"] == expected_reply("Say hi")
    assert answer["usage"]["outputTokens"] == len(reply_words("Say hi"))
    (request_id,) = answer["requestIds"]
    assert_charged_once(gateway_url, account, [request_id], model)


@pytest.mark.parametrize(("provider", "model"), [("anthropic", CLAUDE), ("openai", CODEX), ("google", GEMINI)])
def test_ai_sdk_tool_loop_calls_the_tool_then_answers(ai_sdk_installed, gateway_url, account, provider, model):
    answer = ai_sdk(gateway_url, account.key, provider=provider, model=model, prompt=WEATHER_QUESTION,
                    weather=True, stream=True)
    assert answer["toolCalls"] == [{"name": "get_weather", "input": {"city": "Paris"}}]
    assert answer["text"].startswith("Tool result: ") and "18 degrees and sunny in Paris" in answer["text"]
    assert len(answer["requestIds"]) == 2, "the call, then the answer after the tool's result"
    assert_charged_once(gateway_url, account, answer["requestIds"], model)


# --- the openai-agents SDK ---------------------------------------------------------------------------------

@STREAMING
@pytest.mark.parametrize("api", ["responses", "chat_completions"])
def test_openai_agents_sdk_runs_a_tool_loop(gateway_url, account, api, stream):
    """An Agent on the SDK's default model (Responses API), or on a chat model over chat completions."""
    from agents import (
        Agent,
        OpenAIChatCompletionsModel,
        Runner,
        function_tool,
        set_default_openai_client,
        set_tracing_disabled,
    )
    from agents.models import get_default_model

    set_tracing_disabled(True)  # the SDK would export traces to OpenAI otherwise
    request_ids: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return f"{TOOL_RESULT} in {city}"

    async def remember(response: httpx.Response) -> None:
        request_ids.append(response.headers["x-request-id"])

    async def run() -> str:
        client = openai.AsyncOpenAI(base_url=f"{gateway_url}/api/v1", api_key=account.key, max_retries=0,
                                    http_client=httpx.AsyncClient(event_hooks={"response": [remember]}))
        set_default_openai_client(client, use_for_tracing=False)
        model = OpenAIChatCompletionsModel(model=GPT, openai_client=client) if api == "chat_completions" else None
        agent = Agent(name="Weather", instructions="Use the tools.", tools=[get_weather],
                      **({"model": model} if model else {}))
        if stream:
            result = Runner.run_streamed(agent, WEATHER_QUESTION)
            async for _ in result.stream_events():
                pass
        else:
            result = await Runner.run(agent, WEATHER_QUESTION)
        return result.final_output

    final = asyncio.run(run())
    assert final.startswith(f"Tool result: {TOOL_RESULT} in Paris")
    assert len(request_ids) == 2, "the tool call, then the answer"
    served = GPT if api == "chat_completions" else get_default_model()
    assert_charged_once(gateway_url, account, request_ids, served)
