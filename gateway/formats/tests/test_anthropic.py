import json

import anthropic
import openai
import pytest
from anthropic.types import Message, RawMessageStreamEvent, message_create_params
from openai.types.chat import ChatCompletion, ChatCompletionChunk, completion_create_params

from billing.tokens import TokenUsage
from gateway.formats.anthropic import (
    AnthropicToChatStream,
    ChatToAnthropicStream,
    anthropic_request_from_chat,
    anthropic_response_from_chat,
    anthropic_usage,
    chat_request_from_anthropic,
    chat_response_from_anthropic,
    usage_from_anthropic,
)
from gateway.formats.chat import usage_from_chat
from gateway.formats.common import TranslationError
from gateway.formats.tests.support import (
    anthropic_client,
    anthropic_final_message,
    chunk,
    data_lines,
    json_body,
    openai_client,
    openai_final_completion,
    run,
    validate,
)

pytestmark = pytest.mark.no_services

CHAT_USAGE = {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160,
              "prompt_tokens_details": {"cached_tokens": 64},
              "completion_tokens_details": {"reasoning_tokens": 10}}
PNG = "iVBORw0KGgo="
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}


def chat_response(message: dict, finish: str = "stop", usage: dict | None = None) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": usage or CHAT_USAGE}


# Anthropic request → chat request

def test_request_maps_system_sampling_and_stream():
    chat = chat_request_from_anthropic({
        "model": "claude", "max_tokens": 512, "system": "Be brief.", "temperature": 0.3, "top_p": 0.9,
        "stop_sequences": ["END"], "metadata": {"user_id": "u1"}, "stream": True,
        "messages": [{"role": "user", "content": "Hi"}]})
    assert chat == {"model": "claude", "messages": [{"role": "system", "content": "Be brief."},
                                                    {"role": "user", "content": "Hi"}],
                    "max_completion_tokens": 512, "temperature": 0.3, "top_p": 0.9, "stop": ["END"],
                    "user": "u1", "stream": True, "stream_options": {"include_usage": True}}
    validate(completion_create_params.CompletionCreateParamsStreaming, chat)


def test_request_keeps_cache_control_and_collapses_plain_text():
    marked = {"type": "text", "text": "Rules.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    chat = chat_request_from_anthropic({"model": "c", "max_tokens": 9, "system": [marked], "messages": [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]})
    assert chat["messages"] == [{"role": "system", "content": [marked]}, {"role": "user", "content": "a\nb"}]
    assert "stream" not in chat


def test_request_images_become_image_url_parts():
    content = [IMAGE, {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
               {"type": "text", "text": "What are these?"}]
    chat = chat_request_from_anthropic({"model": "c", "max_tokens": 9,
                                        "messages": [{"role": "user", "content": content}]})
    assert chat["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
        {"type": "text", "text": "What are these?"}]
    validate(completion_create_params.CompletionCreateParamsNonStreaming, chat)


def test_request_tool_round_trip_with_parallel_calls():
    chat = chat_request_from_anthropic({"model": "c", "max_tokens": 9, "messages": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": False,
             "content": [{"type": "text", "text": "21C"}, IMAGE]},
            {"type": "text", "text": "Which is warmer?"}]}]})
    assert chat["messages"][1:] == [
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
            {"id": "toolu_2", "type": "function",
             "function": {"name": "weather", "arguments": '{"city":"Rome"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "21C"},
        {"role": "user", "content": [  # the tool's image follows its result, in the next user message
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "text", "text": "Which is warmer?"}]}]
    validate(completion_create_params.CompletionCreateParamsNonStreaming, chat)


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, {"tool_choice": "auto"}),
    ({"type": "any"}, {"tool_choice": "required"}),
    ({"type": "none"}, {"tool_choice": "none"}),
    ({"type": "tool", "name": "weather"},
     {"tool_choice": {"type": "function", "function": {"name": "weather"}}}),
    ({"type": "auto", "disable_parallel_tool_use": True},
     {"tool_choice": "auto", "parallel_tool_calls": False}),
    (None, {}),
])
def test_request_tools_and_tool_choice(choice, expected):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    tools = [{"name": "weather", "description": "Now.", "input_schema": schema},
             {"type": "web_search_20250305", "name": "web_search"}]
    chat = chat_request_from_anthropic({"model": "c", "max_tokens": 9, "messages": [], "tools": tools,
                                        "tool_choice": choice})
    assert chat["tools"] == [{"type": "function",  # the hosted web search tool has no chat equivalent
                              "function": {"name": "weather", "description": "Now.", "parameters": schema}}]
    assert {key: chat[key] for key in ("tool_choice", "parallel_tool_calls") if key in chat} == expected


@pytest.mark.parametrize(("budget", "effort"),
                         [(1024, "low"), (2048, "low"), (5000, "medium"), (30000, "high")])
def test_request_thinking_budget_approximates_reasoning_effort(budget, effort):
    chat = chat_request_from_anthropic({"model": "c", "max_tokens": 40000, "messages": [],
                                        "thinking": {"type": "enabled", "budget_tokens": budget}})
    assert chat["reasoning_effort"] == effort
    assert "reasoning_effort" not in chat_request_from_anthropic(
        {"model": "c", "max_tokens": 9, "messages": [], "thinking": {"type": "disabled"}})


def test_request_keeps_thinking_blocks_on_the_assistant_message():
    thinking = {"type": "thinking", "thinking": "Hmm.", "signature": "sig=="}
    redacted = {"type": "redacted_thinking", "data": "opaque"}
    chat = chat_request_from_anthropic({"model": "c", "max_tokens": 9, "messages": [
        {"role": "assistant", "content": [thinking, redacted, {"type": "text", "text": "Hi"}]}]})
    assert chat["messages"] == [{"role": "assistant", "content": "Hi",
                                 "thinking_blocks": [thinking, redacted]}]


def test_request_refuses_blocks_chat_cannot_carry():
    with pytest.raises(TranslationError, match="document"):
        chat_request_from_anthropic({"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}]})


# Chat response → Anthropic response

def test_response_with_text_and_parallel_tool_calls_parses_in_the_sdk():
    resp = chat_response({"content": "Let me check.", "tool_calls": [
        {"id": "call_a", "type": "function",
         "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
        {"id": "call.b", "type": "function", "function": {"name": "time", "arguments": ""}}]}, "tool_calls")
    message = anthropic_response_from_chat(resp, model="claude-x")
    parsed = anthropic_client(json_body(message), "application/json").messages.create(
        model="claude-x", max_tokens=9, messages=[{"role": "user", "content": "hi"}])
    assert isinstance(parsed, Message)
    assert [block.type for block in parsed.content] == ["text", "tool_use", "tool_use"]
    assert parsed.content[1].input == {"city": "Paris"}
    assert (parsed.content[2].id, parsed.content[2].input) == ("call_b", {})  # sanitised id, "" → {}
    assert parsed.stop_reason == "tool_use" and parsed.model == "claude-x"


def test_response_usage_excludes_cached_tokens_from_input():
    usage = anthropic_response_from_chat(chat_response({"content": "Hi"}), model="m")["usage"]
    assert usage == {"input_tokens": 56, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 64,
                     "output_tokens": 40}
    assert usage_from_anthropic(usage) == TokenUsage(input=120, cached_read=64, output=40)


@pytest.mark.parametrize(("finish", "stop"), [("stop", "end_turn"), ("length", "max_tokens"),
                                              ("tool_calls", "tool_use"), ("content_filter", "refusal"),
                                              (None, "end_turn")])
def test_response_stop_reason_mapping(finish, stop):
    message = anthropic_response_from_chat(chat_response({"content": "x"}, finish), model="m")
    assert message["stop_reason"] == stop


def test_response_reasoning_becomes_a_thinking_block():
    plain = anthropic_response_from_chat(chat_response({"content": "4", "reasoning_content": "2+2"}),
                                         model="m")
    assert plain["content"][0] == {"type": "thinking", "thinking": "2+2", "signature": ""}
    signed = [{"type": "thinking", "thinking": "2+2", "signature": "sig"}]
    kept = anthropic_response_from_chat(chat_response(
        {"content": "4", "reasoning_content": "2+2", "thinking_blocks": signed}), model="m")
    assert kept["content"] == [*signed, {"type": "text", "text": "4"}]
    Message.model_validate(kept)


# Chat stream → Anthropic events

def text_stream(usage: dict | None = CHAT_USAGE) -> list[dict]:
    chunks = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}),
              chunk({"content": "lo"}), chunk(finish="stop")]
    return chunks + ([chunk(usage=usage, choices=False)] if usage else [])


def assert_well_formed(events: list[tuple[str, dict]]) -> None:
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("message_delta") == 1 and names.count("message_stop") == 1
    assert all(data["type"] == name for name, data in events)
    starts = [data["index"] for name, data in events if name == "content_block_start"]
    assert starts == list(range(len(starts)))
    assert [data["index"] for name, data in events if name == "content_block_stop"] == starts
    open_index = None
    for name, data in events:  # deltas land only in the open block
        if name == "content_block_start":
            assert open_index is None
            open_index = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            open_index = None
        validate(RawMessageStreamEvent, data)


def assert_chat_chunks(chunks: list[dict]) -> None:
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    for chunk_ in chunks:
        assert chunk_["object"] == "chat.completion.chunk" and chunk_["model"] == chunks[0]["model"]
        assert (chunk_["id"], chunk_["created"]) == (chunks[0]["id"], chunks[0]["created"])
        validate(ChatCompletionChunk, chunk_)
    assert chunks[-1]["choices"] == [] and "usage" in chunks[-1]
    assert [c["choices"][0]["finish_reason"] is not None for c in chunks[:-1]].count(True) == 1


def test_text_stream_parses_in_the_sdk():
    events = run(ChatToAnthropicStream("claude-x", message_id="msg_1"), text_stream())
    assert_well_formed(events)
    message = anthropic_final_message(events)
    assert message.id == "msg_1" and message.content[0].text == "Hello" and message.stop_reason == "end_turn"
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (56, 64, 40)


def test_thinking_text_and_parallel_tool_calls_stream():
    translator = ChatToAnthropicStream("claude-x")
    events = run(translator, [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "User wants "}), chunk({"reasoning_content": "weather."}),
        chunk({"content": "Checking both."}),
        chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                               "function": {"name": "weather", "arguments": '{"city":"Rome"}'}}]}),
        chunk(finish="tool_calls"), chunk(usage=CHAT_USAGE, choices=False)])
    assert_well_formed(events)
    assert translator.usage == TokenUsage(input=120, cached_read=64, output=40, reasoning=10)
    message = anthropic_final_message(events)
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert message.content[0].thinking == "User wants weather."
    assert [(block.id, block.input) for block in message.content[2:]] == [("call_a", {"city": "Paris"}),
                                                                         ("call_b", {"city": "Rome"})]
    assert message.stop_reason == "tool_use"


def test_a_fragment_for_a_closed_tool_block_is_dropped():
    def call(index: int, arguments: str, name: str | None = None) -> dict:
        head = {"id": f"call_{index}", "type": "function"} if name else {}
        return chunk({"tool_calls": [{"index": index, **head, "function": {
            **({"name": name} if name else {}), "arguments": arguments}}]})
    events = run(ChatToAnthropicStream("m"), [call(0, '{"a":', "f"), call(1, "{}", "g"), call(0, "1}"),
                                              chunk(finish="tool_calls")])
    assert_well_formed(events)  # interleaved fragments cannot reopen a closed Anthropic block
    assert [block.input for block in anthropic_final_message(events).content] == [{}, {}]


def test_finish_is_held_until_the_usage_chunk():
    translator = ChatToAnthropicStream("m")
    held = translator.feed(chunk({"content": "Hi"})) + translator.feed(chunk(finish="length"))
    assert "message_delta" not in [name for name, _ in held]
    closing = translator.feed(chunk(usage=CHAT_USAGE, choices=False))
    assert [name for name, _ in closing] == ["content_block_stop", "message_delta", "message_stop"]
    assert closing[1][1]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert closing[1][1]["usage"]["output_tokens"] == 40
    assert translator.finish() == [] and translator.feed(chunk({"content": "late"})) == []


def test_usage_on_the_finish_chunk_closes_at_once():
    events = ChatToAnthropicStream("m").feed(chunk({"content": "Hi"}, "stop", CHAT_USAGE))
    assert [name for name, _ in events][-2:] == ["message_delta", "message_stop"]


def test_usage_before_the_finish_reason_does_not_close_the_stream():
    translator = ChatToAnthropicStream("m")
    events = translator.feed(chunk({"content": "Hi"}, usage={"prompt_tokens": 5, "completion_tokens": 1}))
    assert "message_delta" not in [name for name, _ in events]
    assert translator.usage == TokenUsage(input=5, output=1)


def test_stream_without_usage_still_closes():
    translator = ChatToAnthropicStream("m")
    events = run(translator, text_stream(usage=None))
    assert_well_formed(events)
    assert events[-2][1]["usage"] == anthropic_usage(TokenUsage())
    assert translator.usage is None
    assert anthropic_final_message(events).content[0].text == "Hello"


def test_empty_upstream_stream_is_a_valid_message():
    events = ChatToAnthropicStream("m").finish()
    assert [name for name, _ in events] == ["message_start", "message_delta", "message_stop"]
    assert anthropic_final_message(events).content == []


def test_signatures_and_redacted_thinking_pass_through():
    events = run(ChatToAnthropicStream("m"), [
        chunk({"reasoning_content": "Think."}),
        chunk({"thinking_blocks": [{"type": "thinking", "signature": "sig"}]}),
        chunk({"thinking_blocks": [{"type": "redacted_thinking", "data": "opaque"}]}),
        chunk({"content": "Done."}, "stop")])
    assert_well_formed(events)
    content = anthropic_final_message(events).content
    assert [(block.type, getattr(block, "signature", None)) for block in content] == [
        ("thinking", "sig"), ("redacted_thinking", None), ("text", None)]


def test_error_event_ends_the_stream_and_the_sdk_raises():
    translator = ChatToAnthropicStream("m")
    events = translator.feed(chunk({"content": "Hi"})) + translator.error("overloaded_error", "Try later.")
    assert events[-1] == ("error", {"type": "error",
                                    "error": {"type": "overloaded_error", "message": "Try later."}})
    assert translator.finish() == []
    with pytest.raises(anthropic.APIStatusError, match="Try later"):
        anthropic_final_message(events)


def test_upstream_error_chunk_becomes_an_error_event():
    events = ChatToAnthropicStream("m").feed({"error": {"type": "server_error", "message": "boom"}})
    assert events == [("error", {"type": "error", "error": {"type": "server_error", "message": "boom"}})]


# Chat request → Anthropic request

def test_chat_request_hoists_system_and_keeps_cache_control():
    marked = {"type": "text", "text": "Long rules.", "cache_control": {"type": "ephemeral"}}
    body = anthropic_request_from_chat({"model": "claude", "messages": [
        {"role": "system", "content": "You help."}, {"role": "developer", "content": [marked]},
        {"role": "user", "content": "Hi"}, {"role": "system", "content": "Late rule."}]})
    assert body["system"] == [{"type": "text", "text": "You help."}, marked,
                              {"type": "text", "text": "Late rule."}]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert body["max_tokens"] == 4096
    validate(message_create_params.MessageCreateParamsNonStreaming, body)


def test_chat_request_tool_round_trip():
    body = anthropic_request_from_chat({"model": "claude", "max_completion_tokens": 100, "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call:1", "type": "function",
             "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call:2", "type": "function", "function": {"name": "time", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call:1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call:2", "content": [{"type": "text", "text": "noon"}]},
        {"role": "user", "content": "Thanks"}]})
    assert body["max_tokens"] == 100
    assert body["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "time", "input": {}}]},
        {"role": "user", "content": [  # consecutive results and the next user message share one turn
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
            {"type": "text", "text": "Thanks"}]}]
    validate(message_create_params.MessageCreateParamsNonStreaming, body)


def test_chat_request_sampling_stop_and_images():
    body = anthropic_request_from_chat({"model": "c", "max_tokens": 50, "temperature": 1.7, "top_p": 0.5,
                                        "stop": "END", "user": "u1", "stream": True, "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "Look"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}}]}]})
    assert (body["temperature"], body["top_p"], body["stop_sequences"]) == (1, 0.5, ["END"])
    assert body["metadata"] == {"user_id": "u1"} and body["stream"] is True and "stream_options" not in body
    assert body["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}}]
    assert anthropic_request_from_chat({"model": "c", "temperature": -1, "messages": []})["temperature"] == 0
    validate(message_create_params.MessageCreateParamsStreaming, body)


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}), ("required", None, {"type": "any"}), ("none", None, {"type": "none"}),
    ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    (None, None, None),
])
def test_chat_request_tools_and_tool_choice(choice, parallel, expected):
    body = anthropic_request_from_chat({"model": "c", "messages": [], "tool_choice": choice,
                                        "parallel_tool_calls": parallel,
                                        "tools": [{"type": "function", "function": {"name": "f"},
                                                   "cache_control": {"type": "ephemeral"}}]})
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}},
                              "cache_control": {"type": "ephemeral"}}]
    assert body.get("tool_choice") == expected


def test_chat_request_reasoning_effort_becomes_a_budget_below_max_tokens():
    body = anthropic_request_from_chat({"model": "c", "max_tokens": 20000, "temperature": 0.2,
                                        "reasoning_effort": "high", "messages": []})
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 19999}
    assert "temperature" not in body  # Anthropic rejects it while thinking
    low = anthropic_request_from_chat({"model": "c", "reasoning_effort": "low", "messages": []})
    assert low["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "thinking" not in anthropic_request_from_chat(  # no room for the minimum budget
        {"model": "c", "max_tokens": 1000, "reasoning_effort": "medium", "messages": []})


def test_chat_request_leaves_thinking_off_where_anthropic_would_reject_it():
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    loop = [{"role": "user", "content": "Go"}, {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "done"}]
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert "thinking" not in anthropic_request_from_chat(  # the last assistant turn lacks its thinking block
        {"model": "c", "reasoning_effort": "low", "messages": loop})
    signed = {**loop[1], "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "sig"}]}
    assert "thinking" in anthropic_request_from_chat(
        {"model": "c", "reasoning_effort": "low", "messages": [loop[0], signed, loop[2]]})
    assert "thinking" not in anthropic_request_from_chat(  # a forced tool choice
        {"model": "c", "reasoning_effort": "low", "messages": loop[:1], "tools": tools,
         "tool_choice": "required"})


def test_chat_request_replays_only_signed_thinking_blocks():
    signed = {"type": "thinking", "thinking": "Hmm.", "signature": "sig"}
    body = anthropic_request_from_chat({"model": "c", "messages": [{"role": "assistant", "content": "Hi",
        "thinking_blocks": [signed, {"type": "thinking", "thinking": "x", "signature": ""},
                            {"type": "redacted_thinking", "data": "opaque"}]}]})
    assert body["messages"][0]["content"] == [signed, {"type": "redacted_thinking", "data": "opaque"},
                                              {"type": "text", "text": "Hi"}]


def test_anthropic_request_survives_a_round_trip_through_chat():
    original = {
        "model": "claude", "max_tokens": 8000, "stream": True, "stop_sequences": ["END"], "temperature": 0.5,
        "system": [{"type": "text", "text": "Rules.", "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "weather", "description": "Now.", "input_schema": {"type": "object"},
                   "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Call it.", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1",
                 "content": [{"type": "text", "text": "18C", "cache_control": {"type": "ephemeral"}}]}]}]}
    assert anthropic_request_from_chat(chat_request_from_anthropic(original)) == original


def test_chat_request_refuses_parts_anthropic_cannot_carry():
    with pytest.raises(TranslationError, match="input_audio"):
        anthropic_request_from_chat({"model": "c", "messages": [
            {"role": "user", "content": [{"type": "input_audio",
                                          "input_audio": {"data": "x", "format": "wav"}}]}]})


# Anthropic response → chat response

def anthropic_message(content: list[dict], stop: str = "end_turn") -> dict:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": content,
            "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": 50, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 300,
                      "output_tokens": 80}}


def test_chat_response_parses_in_the_sdk():
    thinking = {"type": "thinking", "thinking": "Need data.", "signature": "sig"}
    resp = chat_response_from_anthropic(anthropic_message([
        thinking, {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}], "tool_use"))
    parsed = openai_client(json_body(resp), "application/json").chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "hi"}])
    assert isinstance(parsed, ChatCompletion) and parsed.model == "claude"
    choice = parsed.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Checking."
    assert choice.message.tool_calls[0].id == "toolu_1"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert resp["choices"][0]["message"]["reasoning_content"] == "Need data."
    assert resp["choices"][0]["message"]["thinking_blocks"] == [thinking]
    assert (parsed.usage.prompt_tokens, parsed.usage.prompt_tokens_details.cached_tokens,
            parsed.usage.completion_tokens) == (370, 300, 80)
    assert usage_from_chat(resp["usage"]) == TokenUsage(input=370, cached_read=300, cache_write=20,
                                                          output=80)


@pytest.mark.parametrize(("stop", "finish"), [("end_turn", "stop"), ("stop_sequence", "stop"),
                                              ("max_tokens", "length"), ("tool_use", "tool_calls"),
                                              ("refusal", "content_filter"), ("pause_turn", "stop")])
def test_chat_response_finish_reason_mapping(stop, finish):
    resp = chat_response_from_anthropic(anthropic_message([{"type": "text", "text": "x"}], stop))
    assert resp["choices"][0]["finish_reason"] == finish


# Anthropic stream → chat chunks

ANTHROPIC_EVENTS = [
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 50, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 300,
                  "output_tokens": 1}}}),
    ("ping", {"type": "ping"}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "thinking_delta", "thinking": "Two cities."}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "signature_delta", "signature": "sig"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1,
                             "content_block": {"type": "text", "text": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "text_delta", "text": "Checking."}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {
        "type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 2,
                             "delta": {"type": "input_json_delta", "partial_json": '{"city":'}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 2,
                             "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 2}),
    ("content_block_start", {"type": "content_block_start", "index": 3, "content_block": {
        "type": "tool_use", "id": "toolu_2", "name": "weather", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 3,
                             "delta": {"type": "input_json_delta", "partial_json": '{"city":"Rome"}'}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 3}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                       "usage": {"output_tokens": 80}}),
    ("message_stop", {"type": "message_stop"}),
]


def test_anthropic_stream_becomes_chat_chunks_the_sdk_accumulates():
    translator = AnthropicToChatStream("claude")
    chunks = run(translator, ANTHROPIC_EVENTS)
    assert_chat_chunks(chunks)
    assert chunks[0]["model"] == "claude"
    tool_indexes = [call["index"] for c in chunks for choice in c["choices"]
                    for call in choice["delta"].get("tool_calls", [])]
    assert tool_indexes == [0, 0, 0, 1, 1]  # running tool index, not the block index
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 370
    assert translator.usage == TokenUsage(input=370, cached_read=300, cache_write=20, output=80)
    assert translator.finish() == []
    completion = openai_final_completion(chunks)
    message = completion.choices[0].message
    assert message.content == "Checking." and completion.choices[0].finish_reason == "tool_calls"
    assert [(call.id, json.loads(call.function.arguments)) for call in message.tool_calls] == [
        ("toolu_1", {"city": "Paris"}), ("toolu_2", {"city": "Rome"})]
    assert completion.usage.prompt_tokens_details.cached_tokens == 300
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"])
    assert reasoning == "Two cities."
    assert {"thinking_blocks": [{"type": "thinking", "signature": "sig"}]} in [
        c["choices"][0]["delta"] for c in chunks if c["choices"]]


def test_anthropic_stream_survives_translation_back_to_anthropic():
    chunks = run(AnthropicToChatStream("claude"), ANTHROPIC_EVENTS)
    events = run(ChatToAnthropicStream("claude"), chunks)
    assert_well_formed(events)
    message = anthropic_final_message(events)
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert message.content[0].signature == "sig" and message.content[3].input == {"city": "Rome"}
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens,
            message.usage.cache_creation_input_tokens, message.usage.output_tokens) == (50, 300, 20, 80)


def test_anthropic_stream_cut_short_still_finishes():
    chunks = run(AnthropicToChatStream("claude"), ANTHROPIC_EVENTS[:8])
    assert_chat_chunks(chunks)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["prompt_tokens"] == 370  # what message_start reported


def test_anthropic_error_event_becomes_a_chat_error_the_sdk_raises():
    translator = AnthropicToChatStream("claude")
    chunks = translator.feed(ANTHROPIC_EVENTS[0]) + translator.feed(
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    assert chunks[-1] == {"error": {"message": "Overloaded", "type": "overloaded_error", "param": None,
                                    "code": None}}
    assert translator.finish() == []
    with pytest.raises(openai.APIError, match="Overloaded"):
        list(openai_client(data_lines(chunks)).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True))
