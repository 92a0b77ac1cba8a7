import json

import openai
import pytest
from google.genai import errors as genai_errors
from google.genai import types
from openai.types.chat import ChatCompletion, ChatCompletionChunk, completion_create_params

from billing.tokens import TokenUsage
from gateway.formats.chat import chat_usage
from gateway.formats.common import TranslationError
from gateway.formats.gemini import (
    ChatToGeminiStream,
    GeminiToChatStream,
    chat_request_from_gemini,
    chat_response_from_gemini,
    gemini_request_from_chat,
    gemini_response_from_chat,
    looks_like_openai,
    usage_from_gemini,
)
from gateway.formats.tests.support import (
    chunk,
    data_lines,
    genai_client,
    json_body,
    openai_client,
    openai_final_completion,
    run,
    validate,
)

pytestmark = pytest.mark.no_services

CHAT_USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
              "prompt_tokens_details": {"cached_tokens": 64},
              "completion_tokens_details": {"reasoning_tokens": 10}}
GEMINI_USAGE = {"promptTokenCount": 120, "candidatesTokenCount": 20, "thoughtsTokenCount": 10,
                "cachedContentTokenCount": 64, "totalTokenCount": 150}
PNG = "iVBORw0KGgo="


def chat_response(message: dict, finish: str = "stop") -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up", "usage": CHAT_USAGE,
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}]}


def validate_gemini_request(body: dict) -> None:
    """google-genai's types forbid unknown fields: check each part of a request body against them."""
    for content in body["contents"]:
        validate(types.Content, content)
    for name, sdk_type in [("systemInstruction", types.Content), ("toolConfig", types.ToolConfig),
                           ("generationConfig", types.GenerationConfig)]:
        if name in body:
            validate(sdk_type, body[name])
    for tool in body.get("tools", []):
        validate(types.Tool, tool)


def test_looks_like_openai():
    assert looks_like_openai({"model": "g", "messages": [{"role": "user", "content": "hi"}]})
    assert not looks_like_openai({"contents": [{"parts": [{"text": "hi"}]}]})
    assert not looks_like_openai({"messages": "nope"})


# Gemini request → chat request

def test_request_maps_system_generation_config_and_stream():
    chat = chat_request_from_gemini({
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Be kind."}]},
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "generationConfig": {"temperature": 0.4, "topP": 0.9, "topK": 40, "maxOutputTokens": 256,
                             "candidateCount": 2, "stopSequences": ["END"], "seed": 7,
                             "responseMimeType": "application/json",
                             "thinkingConfig": {"thinkingBudget": 4000, "includeThoughts": True}}},
        model="gemini-x", stream=True)
    assert chat == {"model": "gemini-x", "messages": [{"role": "system", "content": "Be brief.\nBe kind."},
                                                      {"role": "user", "content": "Hi"}],
                    "max_completion_tokens": 256, "temperature": 0.4, "top_p": 0.9, "n": 2, "stop": ["END"],
                    "seed": 7, "response_format": {"type": "json_object"}, "reasoning_effort": "medium",
                    "stream": True, "stream_options": {"include_usage": True}}
    validate(completion_create_params.CompletionCreateParamsStreaming, chat)


def test_request_accepts_snake_case_and_images():
    chat = chat_request_from_gemini({
        "system_instruction": {"parts": [{"text": "Sys."}]},
        "contents": [{"role": "user", "parts": [
            {"text": "What is it?"}, {"inline_data": {"mime_type": "image/png", "data": PNG}},
            {"file_data": {"mime_type": "image/jpeg", "file_uri": "https://x.test/a.jpg"}}]}],
        "generation_config": {"max_output_tokens": 10, "response_schema": {"type": "OBJECT", "properties": {
            "name": {"type": "STRING"}}}}}, model="g")
    assert chat["messages"] == [{"role": "system", "content": "Sys."}, {"role": "user", "content": [
        {"type": "text", "text": "What is it?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}}]}]
    assert chat["max_completion_tokens"] == 10
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {"name": "response", "schema": {
        "type": "object", "properties": {"name": {"type": "string"}}}}}
    validate(completion_create_params.CompletionCreateParamsNonStreaming, chat)


def test_function_responses_pair_with_the_ids_synthesised_for_their_calls():
    chat = chat_request_from_gemini({"contents": [
        {"role": "user", "parts": [{"text": "Weather in Paris and Rome, and the time?"}]},
        {"role": "model", "parts": [
            {"text": "Checking.", "thought": True}, {"text": "On it."},
            {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "weather", "args": {"city": "Rome"}}},
            {"functionCall": {"name": "time", "args": {}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "time", "response": {"result": "noon"}}},
            {"functionResponse": {"name": "weather", "response": {"temp": 18}}},
            {"functionResponse": {"name": "weather", "response": {"temp": 21}}},
            {"text": "Thanks."}]}]}, model="g")
    assistant, *rest = chat["messages"][1:]
    ids = [call["id"] for call in assistant["tool_calls"]]
    assert assistant["content"] == "On it." and len(set(ids)) == 3  # thoughts are not sent back
    assert [json.loads(call["function"]["arguments"]) for call in assistant["tool_calls"]] == [
        {"city": "Paris"}, {"city": "Rome"}, {}]
    assert rest == [{"role": "tool", "tool_call_id": ids[2], "content": "noon"},
                    {"role": "tool", "tool_call_id": ids[0], "content": '{"temp":18}'},
                    {"role": "tool", "tool_call_id": ids[1], "content": '{"temp":21}'},
                    {"role": "user", "content": "Thanks."}]
    validate(completion_create_params.CompletionCreateParamsNonStreaming, chat)


def test_ids_given_by_the_client_are_kept():
    chat = chat_request_from_gemini({"contents": [
        {"role": "model", "parts": [{"functionCall": {"id": "call_x", "name": "f", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"id": "call_x", "name": "f", "response": {}}}]},
    ]}, model="g")
    assert chat["messages"][0]["tool_calls"][0]["id"] == chat["messages"][1]["tool_call_id"] == "call_x"


@pytest.mark.parametrize(("config", "expected"), [
    ({"mode": "AUTO"}, "auto"), ({"mode": "NONE"}, "none"), ({"mode": "ANY"}, "required"),
    ({"mode": "ANY", "allowedFunctionNames": ["weather"]},
     {"type": "function", "function": {"name": "weather"}}),
    (None, None)])
def test_request_tools_and_tool_config(config, expected):
    body = {"contents": [], "tools": [{"functionDeclarations": [
        {"name": "weather", "description": "Now.",
         "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}},
        {"name": "time", "parametersJsonSchema": {"type": "object", "additionalProperties": False}}]},
        {"googleSearch": {}}]}
    if config:
        body["toolConfig"] = {"functionCallingConfig": config}
    chat = chat_request_from_gemini(body, model="g")
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "weather", "description": "Now.", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
        {"type": "function", "function": {"name": "time", "parameters": {"type": "object",
                                                                          "additionalProperties": False}}}]
    assert chat.get("tool_choice") == expected


def test_request_refuses_parts_chat_cannot_carry():
    with pytest.raises(TranslationError, match="inlineData"):
        chat_request_from_gemini({"contents": [{"parts": [
            {"inlineData": {"mimeType": "application/pdf", "data": "x"}}]}]}, model="g")


# Chat response → Gemini response

def test_response_parses_in_the_sdk():
    resp = chat_response({"content": "Checking.", "reasoning_content": "Two calls.", "tool_calls": [
        {"id": "call_a", "type": "function",
         "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "weather", "arguments": ""}},
    ]}, "tool_calls")
    body = gemini_response_from_chat(resp, model="gemini-x")
    validate(types.GenerateContentResponse, body)
    parsed = genai_client(json_body(body), "application/json").models.generate_content(model="gemini-x",
                                                                                        contents="hi")
    assert parsed.text == "Checking." and parsed.candidates[0].finish_reason == types.FinishReason.STOP
    assert [(call.id, call.name, call.args) for call in parsed.function_calls] == [
        ("call_a", "weather", {"city": "Paris"}), ("call_b", "weather", {})]
    assert parsed.candidates[0].content.parts[0].thought is True
    usage = parsed.usage_metadata
    assert (usage.prompt_token_count, usage.cached_content_token_count, usage.candidates_token_count,
            usage.thoughts_token_count, usage.total_token_count) == (120, 64, 20, 10, 150)


@pytest.mark.parametrize(("finish", "reason"), [("stop", "STOP"), ("tool_calls", "STOP"),
                                                ("length", "MAX_TOKENS"), ("content_filter", "SAFETY")])
def test_response_finish_reason_mapping(finish, reason):
    body = gemini_response_from_chat(chat_response({"content": "x"}, finish), model="g")
    assert body["candidates"][0]["finishReason"] == reason


# Chat stream → Gemini chunks

def test_stream_parses_in_the_sdk_with_calls_whole_at_the_end():
    translator = ChatToGeminiStream("gemini-x")
    chunks = run(translator, [
        chunk({"role": "assistant", "content": ""}), chunk({"reasoning_content": "Hmm."}),
        chunk({"content": "Hel"}), chunk({"content": "lo"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "weather", "arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                               "function": {"name": "time", "arguments": ""}}]}),
        chunk(finish="tool_calls"), chunk(usage=CHAT_USAGE, choices=False)])
    for item in chunks:
        validate(types.GenerateContentResponse, item)
    assert [("usageMetadata" in c, "finishReason" in c["candidates"][0]) for c in chunks] == [
        (False, False)] * 3 + [(True, True)]
    assert translator.usage == TokenUsage(input=120, cached_read=64, output=30, reasoning=10)
    client = genai_client(data_lines(chunks))
    parsed = list(client.models.generate_content_stream(model="gemini-x", contents="hi"))
    assert [part.thought for part in parsed[0].candidates[0].content.parts] == [True]
    assert "".join(c.text or "" for c in parsed[1:3]) == "Hello"
    last = parsed[-1]
    assert [(call.id, call.name, call.args) for call in last.function_calls] == [
        ("call_a", "weather", {"city": "Paris"}), ("call_b", "time", {})]
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata.thoughts_token_count == 10 and last.usage_metadata.candidates_token_count == 20


def test_stream_without_usage_ends_at_finish():
    translator = ChatToGeminiStream("g")
    chunks = run(translator, [chunk({"content": "Hi"}), chunk(finish="length")])
    assert chunks[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS" and "usageMetadata" not in chunks[-1]
    assert translator.usage is None and translator.finish() == []


def test_stream_error_is_an_error_body_the_sdk_raises():
    translator = ChatToGeminiStream("g")
    chunks = translator.feed(chunk({"content": "Hi"})) + translator.error("server_error", "Upstream failed.")
    assert chunks[-1] == {"error": {"code": 500, "message": "Upstream failed.", "status": "INTERNAL"}}
    assert translator.finish() == []
    stream = genai_client(data_lines(chunks)).models.generate_content_stream(model="g", contents="hi")
    assert next(stream).text == "Hi"
    with pytest.raises(genai_errors.ServerError, match="Upstream failed"):
        next(stream)


# Chat request → Gemini request

def test_chat_request_becomes_a_valid_gemini_request():
    body = gemini_request_from_chat({"model": "gemini-x", "max_tokens": 300, "temperature": 0.5, "top_p": 0.8,
                                     "stop": "END", "n": 1, "seed": 3, "reasoning_effort": "low",
                                     "response_format": {"type": "json_schema", "json_schema": {
                                         "name": "a", "schema": {"type": "object"}}},
                                     "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "Weather here?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "time", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp":18}'},
        {"role": "tool", "tool_call_id": "call_b", "content": "noon"}]})
    validate_gemini_request(body)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [
            {"text": "Weather here?"}, {"inlineData": {"mimeType": "image/png", "data": PNG}},
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/a.jpg"}}]},
        {"role": "model", "parts": [{"text": "Checking."},
                                    {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                                    {"functionCall": {"name": "time", "args": {}}}]},
        {"role": "user", "parts": [  # consecutive results share one user turn, named after their calls
            {"functionResponse": {"name": "weather", "response": {"temp": 18}}},
            {"functionResponse": {"name": "time", "response": {"result": "noon"}}}]}]
    assert body["generationConfig"] == {
        "temperature": 0.5, "topP": 0.8, "maxOutputTokens": 300, "candidateCount": 1,
        "stopSequences": ["END"], "seed": 3, "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
        "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True}}
    assert "model" not in body


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}), ("required", {"mode": "ANY"}),
    ({"type": "function", "function": {"name": "f"}}, {"mode": "ANY", "allowedFunctionNames": ["f"]})])
def test_chat_request_tools_and_tool_choice(choice, expected):
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "additionalProperties": False}
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    body = gemini_request_from_chat({"messages": [{"role": "user", "content": "hi"}], "tools": tools,
                                     "tool_choice": choice})
    validate_gemini_request(body)
    assert body["tools"] == [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": schema}]}]
    assert body["toolConfig"] == {"functionCallingConfig": expected}


def test_chat_request_reasoning_none_turns_thinking_off():
    body = gemini_request_from_chat({"messages": [{"role": "user", "content": "hi"}],
                                     "reasoning_effort": "none"})
    assert body["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 0}}


def test_chat_request_refuses_a_result_without_its_call():
    with pytest.raises(TranslationError, match="call_x"):
        gemini_request_from_chat({"messages": [{"role": "tool", "tool_call_id": "call_x", "content": "1"}]})


def test_chat_tool_loop_survives_a_round_trip_through_gemini():
    messages = [{"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_a", "type": "function",
                     "function": {"name": "weather", "arguments": '{"c":"P"}'}},
                    {"id": "call_b", "type": "function",
                     "function": {"name": "weather", "arguments": '{"c":"R"}'}}]},
                {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_b", "content": "21C"}]
    back = chat_request_from_gemini(gemini_request_from_chat({"messages": messages}), model="g")["messages"]
    ids = [call["id"] for call in back[1]["tool_calls"]]
    assert [(m["tool_call_id"], m["content"]) for m in back[2:]] == [(ids[0], "18C"), (ids[1], "21C")]
    assert [call["function"] for call in back[1]["tool_calls"]] == [
        call["function"] for call in messages[1]["tool_calls"]]


# Gemini response → chat response

def gemini_response(parts: list[dict], finish: str = "STOP") -> dict:
    candidate = {"index": 0, "finishReason": finish, "content": {"role": "model", "parts": parts}}
    return {"candidates": [candidate], "usageMetadata": GEMINI_USAGE, "modelVersion": "gemini-x-001",
            "responseId": "r1"}


def test_chat_response_parses_in_the_sdk():
    resp = chat_response_from_gemini(gemini_response([
        {"text": "Let me think.", "thought": True}, {"text": "Checking."},
        {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "weather", "args": {"city": "Rome"}}}]), model="gemini-x")
    parsed = openai_client(json_body(resp), "application/json").chat.completions.create(
        model="gemini-x", messages=[{"role": "user", "content": "hi"}])
    assert isinstance(parsed, ChatCompletion) and parsed.model == "gemini-x" and parsed.id == "r1"
    choice = parsed.choices[0]
    assert choice.finish_reason == "tool_calls"  # Gemini said STOP
    assert choice.message.content == "Checking."
    assert resp["choices"][0]["message"]["reasoning_content"] == "Let me think."
    calls = choice.message.tool_calls
    assert len({call.id for call in calls}) == 2
    assert [json.loads(call.function.arguments) for call in calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens, parsed.usage.total_tokens,
            parsed.usage.prompt_tokens_details.cached_tokens,
            parsed.usage.completion_tokens_details.reasoning_tokens) == (120, 30, 150, 64, 10)


@pytest.mark.parametrize(("reason", "finish"), [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
    ("RECITATION", "content_filter"), ("SPII", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"),
    ("OTHER", "stop")])
def test_chat_response_finish_reason_mapping(reason, finish):
    assert chat_response_from_gemini(gemini_response([{"text": "x"}], reason), model="g")[
        "choices"][0]["finish_reason"] == finish


def test_blocked_prompt_becomes_a_content_filter_choice():
    resp = chat_response_from_gemini({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {
        "promptTokenCount": 5, "totalTokenCount": 5}}, model="g")
    assert resp["choices"][0]["finish_reason"] == "content_filter"
    ChatCompletion.model_validate(resp)


# Gemini stream → chat chunks

GEMINI_CHUNKS = [
    {"candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": "Hmm.", "thought": True}]}}],
     "usageMetadata": {"promptTokenCount": 120, "totalTokenCount": 120}},
    {"candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": "Checking."}]}}]},
    {"candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [
        {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "time", "args": {}}}]}}], "usageMetadata": GEMINI_USAGE},
]


def test_gemini_stream_becomes_chat_chunks_the_sdk_accumulates():
    translator = GeminiToChatStream("gemini-x")
    chunks = run(translator, GEMINI_CHUNKS)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    for item in chunks:
        validate(ChatCompletionChunk, item)
        assert (item["id"], item["created"]) == (chunks[0]["id"], chunks[0]["created"])
        assert item["model"] == "gemini-x"
    assert chunks[1]["choices"][0]["delta"] == {"reasoning_content": "Hmm."}
    assert [c["choices"][0]["delta"]["tool_calls"][0]["index"] for c in chunks[3:5]] == [0, 1]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == chat_usage(usage_from_gemini(GEMINI_USAGE))
    assert translator.usage == TokenUsage(input=120, cached_read=64, output=30, reasoning=10)
    completion = openai_final_completion(chunks)
    message = completion.choices[0].message
    assert message.content == "Checking." and completion.choices[0].finish_reason == "tool_calls"
    assert [(call.function.name, json.loads(call.function.arguments)) for call in message.tool_calls] == [
        ("weather", {"city": "Paris"}), ("time", {})]
    assert all(call.id for call in message.tool_calls)


def test_gemini_stream_finish_reasons_and_missing_usage():
    chunks = run(GeminiToChatStream("g"), [{"candidates": [{"finishReason": "MAX_TOKENS", "content": {
        "parts": [{"text": "Trunc"}]}}]}])
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"  # no usage seen: no usage chunk
    assert run(GeminiToChatStream("g"), [])[-1]["choices"][0]["finish_reason"] == "stop"


def test_gemini_error_becomes_a_chat_error_the_sdk_raises():
    translator = GeminiToChatStream("g")
    chunks = translator.feed(GEMINI_CHUNKS[1]) + translator.feed(
        {"error": {"code": 503, "message": "Overloaded", "status": "UNAVAILABLE"}})
    assert chunks[-1] == {"error": {"message": "Overloaded", "type": "UNAVAILABLE", "param": None,
                                    "code": None}}
    assert translator.finish() == []
    with pytest.raises(openai.APIError, match="Overloaded"):
        list(openai_client(data_lines(chunks)).chat.completions.create(
            model="g", messages=[{"role": "user", "content": "hi"}], stream=True))
