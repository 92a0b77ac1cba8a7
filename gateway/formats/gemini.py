"""Google Gemini (generateContent): the format on both sides of the gateway, and its translation via chat.

Gemini's REST API accepts snake_case as well as camelCase field names (Google's own curl samples use
snake_case), so requests from Gemini clients are read in both; everything emitted is camelCase. Its
usage counts ``candidatesTokenCount`` without thoughts; the gateway's output includes them.
"""

import json
import mimetypes
import re
from typing import Any

from billing.tokens import TokenUsage
from gateway.catalog import Target
from gateway.errors import GatewayError
from gateway.formats.base import (
    ClientRequest,
    Observer,
    Price,
    WireFormat,
    capped,
    client_request,
    json_bytes,
)
from gateway.formats.chat import usage_from_chat
from gateway.formats.checks import checked, fields, integer, number, objects, string
from gateway.formats.common import (
    THINKING_BUDGETS,
    ChatStreamTranslator,
    ChatStreamWriter,
    TranslationError,
    append_turn,
    assistant_message,
    chat_choice,
    chat_completion,
    chat_content,
    compact,
    data_url,
    dump_json,
    effort_for_budget,
    image_part,
    new_id,
    parse_arguments,
    split_data_url,
    stream_fields,
    text_of,
    tool_call,
    tool_choice_mode,
)
from gateway.sse import encode_data

FINISH_FROM_GEMINI = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter",
                      "PROHIBITED_CONTENT": "content_filter", "BLOCKLIST": "content_filter",
                      "SPII": "content_filter", "RECITATION": "content_filter",
                      "IMAGE_SAFETY": "content_filter"}
GEMINI_FROM_FINISH = {"stop": "STOP", "tool_calls": "STOP", "function_call": "STOP", "length": "MAX_TOKENS",
                      "content_filter": "SAFETY"}
CHOICE_FROM_MODE = {"AUTO": "auto", "VALIDATED": "auto", "NONE": "none", "ANY": "required"}
MODE_FROM_CHOICE = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
GRPC_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "FAILED_PRECONDITION",
               403: "PERMISSION_DENIED", 404: "NOT_FOUND", 405: "UNIMPLEMENTED", 413: "INVALID_ARGUMENT",
               429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 502: "UNAVAILABLE",
               503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


# Usage

def usage_from_gemini(metadata: dict | None) -> TokenUsage:
    if not metadata:
        return TokenUsage()
    thoughts = int(metadata.get("thoughtsTokenCount") or 0)
    return TokenUsage(
        input=int(metadata.get("promptTokenCount") or 0),
        cached_read=int(metadata.get("cachedContentTokenCount") or 0),
        output=int(metadata.get("candidatesTokenCount") or 0) + thoughts,
        reasoning=thoughts,
    )


def gemini_usage(usage: TokenUsage) -> dict:
    return {
        "promptTokenCount": usage.input,
        "cachedContentTokenCount": usage.cached_read,
        "candidatesTokenCount": usage.output - usage.reasoning,
        "thoughtsTokenCount": usage.reasoning,
        "totalTokenCount": usage.total,
    }


def looks_like_openai(body: dict) -> bool:
    """The /gemini endpoint takes both shapes: OpenAI bodies carry ``messages``, Gemini ones ``contents``."""
    return isinstance(body.get("messages"), list) and "contents" not in body


def _get(obj: dict, name: str) -> Any:
    """A camelCase field of a client's request, or its snake_case spelling."""
    return obj[name] if name in obj else obj.get(re.sub(r"[A-Z]", lambda m: "_" + m[0].lower(), name))


# Gemini client → chat upstream

class _CallIds:
    """Gemini calls usually lack ids: number them, and pair each functionResponse with the oldest unanswered
    call of the same name, so a tool message's tool_call_id matches its call."""

    def __init__(self) -> None:
        self._count = 0
        self._open: dict[str, list[str]] = {}

    def call(self, name: str, given: object) -> str:
        self._count += 1
        call_id = str(given or f"call_{self._count}")
        self._open.setdefault(name, []).append(call_id)
        return call_id

    def response(self, name: str, given: object) -> str:
        queue = self._open.get(name) or []
        if given:
            if given in queue:
                queue.remove(given)
            return str(given)
        if queue:
            return queue.pop(0)
        self._count += 1
        return f"call_{self._count}"  # a result without its call: the upstream will say so


def chat_request_from_gemini(body: dict, *, model: str, stream: bool = False) -> dict:
    """``stream`` comes from the URL (streamGenerateContent), not the body."""
    messages: list[dict] = []
    if system := _get(body, "systemInstruction"):
        parts = system.get("parts") if isinstance(system, dict) else system
        messages.append({"role": "system", "content": text_of(parts)})
    ids = _CallIds()
    for content in body.get("contents") or []:
        parts = content.get("parts") or []
        if content.get("role") == "model":
            messages.append(_chat_assistant(parts, ids))
        else:
            messages += _chat_user(parts, ids)
    config = _get(body, "generationConfig") or {}
    return compact({
        "model": model,
        "messages": messages,
        "max_completion_tokens": _get(config, "maxOutputTokens"),
        "temperature": config.get("temperature"),
        "top_p": _get(config, "topP"),
        "n": _get(config, "candidateCount"),
        "stop": _get(config, "stopSequences") or None,
        "seed": config.get("seed"),
        "presence_penalty": _get(config, "presencePenalty"),
        "frequency_penalty": _get(config, "frequencyPenalty"),
        "response_format": _response_format(config),
        "reasoning_effort": _effort(_get(config, "thinkingConfig") or {}),
        **_chat_tools(body),
        **stream_fields(stream),
    })


def _chat_assistant(parts: list[dict], ids: _CallIds) -> dict:
    # Thought parts are not sent back: chat has no input field for reasoning.
    calls = [_chat_tool_call(call, ids.call(call.get("name", ""), call.get("id")))
             for part in parts if (call := _get(part, "functionCall"))]
    return assistant_message(_texts(parts, thought=False) or None, calls)


def _texts(parts: list[dict], *, thought: bool) -> str:
    """The text of a turn's answer parts, or of its thought parts."""
    return "".join(part["text"] for part in parts
                   if isinstance(part.get("text"), str) and bool(part.get("thought")) == thought)


def _chat_tool_call(call: dict, call_id: str) -> dict:
    return tool_call(call_id, call.get("name", ""), dump_json(call.get("args")))


def _chat_user(parts: list[dict], ids: _CallIds) -> list[dict]:
    results, rest = [], []
    for part in parts:
        if response := _get(part, "functionResponse"):
            call_id = ids.response(response.get("name", ""), response.get("id"))
            content = _result_text(response.get("response"))
            results.append({"role": "tool", "tool_call_id": call_id, "content": content})
        else:
            rest.append(_chat_part(part))
    return results + ([{"role": "user", "content": chat_content(rest)}] if rest else [])


def _chat_part(part: dict) -> dict:
    if isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if (inline := _get(part, "inlineData")) and str(_get(inline, "mimeType")).startswith("image/"):
        return image_part(data_url(str(_get(inline, "mimeType")), inline.get("data", "")))
    if (file := _get(part, "fileData")) and str(_get(file, "mimeType") or "image/").startswith("image/"):
        return image_part(str(_get(file, "fileUri")))
    raise TranslationError(f"Part {sorted(part)} cannot be sent to this model (only text and images can).")


def _result_text(response: object) -> str:
    # A lone {"result": text} is how a plain-text tool result is wrapped (see _result_object): unwrap it.
    if isinstance(response, dict) and list(response) == ["result"] and isinstance(response["result"], str):
        return response["result"]
    return dump_json(response)


def _chat_tools(body: dict) -> dict:
    # Gemini-hosted tools (googleSearch, codeExecution, …) have no chat equivalent and are dropped.
    declarations = [declaration for tool in body.get("tools") or []
                    for declaration in _get(tool, "functionDeclarations") or []]
    functions = [{"type": "function", "function": compact({
        "name": declaration.get("name"), "description": declaration.get("description"),
        "parameters": _get(declaration, "parametersJsonSchema")
        or _json_schema(declaration.get("parameters")),
    })} for declaration in declarations]
    if not functions:
        return {}
    config = _get(_get(body, "toolConfig") or {}, "functionCallingConfig") or {}
    mode = str(config.get("mode") or "").upper()
    names = _get(config, "allowedFunctionNames") or []
    choice: object = CHOICE_FROM_MODE.get(mode)
    if mode == "ANY" and len(names) == 1:
        choice = {"type": "function", "function": {"name": names[0]}}
    return compact({"tools": functions, "tool_choice": choice})


def _json_schema(schema: object) -> object:
    """Gemini's OpenAPI-style schema as JSON Schema: its type names are upper case (STRING, OBJECT, …)."""
    if isinstance(schema, dict):
        return {key: value.lower() if key == "type" and isinstance(value, str) else _json_schema(value)
                for key, value in schema.items()}
    if isinstance(schema, list):
        return [_json_schema(value) for value in schema]
    return schema


def _response_format(config: dict) -> dict | None:
    if schema := _get(config, "responseJsonSchema") or _json_schema(_get(config, "responseSchema")):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    if _get(config, "responseMimeType") == "application/json":
        return {"type": "json_object"}
    return None


def _effort(thinking: dict) -> str | None:
    if level := _get(thinking, "thinkingLevel"):
        return str(level).lower()
    budget = _get(thinking, "thinkingBudget")  # -1 means dynamic, 0 off: neither has an effort
    return effort_for_budget(budget) if isinstance(budget, int) and budget > 0 else None


def gemini_response_from_chat(resp: dict, *, model: str) -> dict:
    candidates = []
    for choice in resp.get("choices") or []:
        message = choice.get("message") or {}
        parts = []
        if reasoning := message.get("reasoning_content"):
            parts.append({"text": reasoning, "thought": True})
        if text := text_of(message.get("content") or message.get("refusal"), sep=""):
            parts.append({"text": text})
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            parts.append(_function_call_part(call.get("id", ""), function.get("name", ""),
                                             function.get("arguments", "")))
        candidates.append(_candidate(parts, choice.get("finish_reason"), choice.get("index", 0)))
    return {"candidates": candidates, "usageMetadata": gemini_usage(usage_from_chat(resp.get("usage"))),
            "modelVersion": model, "responseId": resp.get("id") or new_id("resp")}


def _function_call_part(call_id: str, name: str, arguments: str) -> dict:
    # The id is optional in Gemini; a client that echoes it in its functionResponse keeps the pairing exact.
    return {"functionCall": compact({"id": call_id or None, "name": name,
                                     "args": parse_arguments(arguments)})}


def _candidate(parts: list[dict], finish_reason: str | None, index: int = 0) -> dict:
    candidate: dict = {"index": index, "content": {"role": "model", "parts": parts}}
    if finish_reason:
        candidate["finishReason"] = GEMINI_FROM_FINISH.get(finish_reason, "OTHER")
    return candidate


class ChatToGeminiStream(ChatStreamTranslator[dict]):
    """Chat chunks → Gemini stream chunks (each one whole GenerateContentResponse, sent as ``data:`` lines).

    Text and thoughts go out as they arrive; a function call goes out whole in the last chunk, once its
    arguments are complete, with the finishReason and the usageMetadata.
    """

    def __init__(self, model: str) -> None:
        super().__init__()
        self._model = model
        self._response_id = new_id("resp")
        self._calls: dict[int, list[str]] = {}  # tool index → [call id, name, arguments so far]

    def _on_text(self, text: str) -> list[dict]:
        return [self._response([{"text": text}])]

    def _on_reasoning(self, text: str) -> list[dict]:
        return [self._response([{"text": text, "thought": True}])]

    def _on_tool_start(self, index: int, call_id: str, name: str) -> list[dict]:
        self._calls[index] = [call_id, name, ""]
        return []

    def _on_tool_arguments(self, index: int, fragment: str) -> list[dict]:
        self._calls[index][2] += fragment
        return []

    def _end(self, finish_reason: str | None) -> list[dict]:
        parts = [_function_call_part(*self._calls[index]) for index in sorted(self._calls)]
        last = self._response(parts, finish_reason or "stop")
        if self._usage is not None:
            last["usageMetadata"] = gemini_usage(self._usage)
        return [last]

    def _error(self, type: str, message: str) -> list[dict]:
        # Gemini streams have no error event: google-genai raises APIError on a data line that is an error
        # body, so the error goes out as one (a generic 500: the status line was sent long ago).
        return [{"error": {"code": 500, "message": message, "status": "INTERNAL"}}]

    def _response(self, parts: list[dict], finish_reason: str | None = None) -> dict:
        return {"candidates": [_candidate(parts, finish_reason)], "modelVersion": self._model,
                "responseId": self._response_id}


# Chat request → Gemini upstream

def gemini_request_from_chat(body: dict) -> dict:
    """The model is not part of a Gemini body: it goes in the URL."""
    system: list[dict] = []
    contents: list[dict] = []
    names: dict[str, str] = {}  # tool_call_id → function name: a functionResponse needs the name, not the id
    for message in body.get("messages") or []:
        role, content = message.get("role"), message.get("content")
        if role in ("system", "developer"):
            system.append({"text": text_of(content)})
        elif role == "assistant":
            parts = [{"text": text}] if (text := text_of(content, sep="")) else []
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                names[call.get("id", "")] = function.get("name", "")
                parts.append({"functionCall": {"name": function.get("name", ""),
                                               "args": parse_arguments(function.get("arguments"))}})
            append_turn(contents, "model", parts, "parts")
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in names:
                raise TranslationError(f"Tool message {call_id!r} answers no earlier tool call.")
            response = {"name": names[call_id], "response": _result_object(content)}
            append_turn(contents, "user", [{"functionResponse": response}], "parts")
        else:
            append_turn(contents, "user", _gemini_parts(content), "parts")
    return compact({
        "contents": contents,
        "systemInstruction": {"parts": system} if system else None,
        **_gemini_tools(body),
        "generationConfig": _generation_config(body) or None,
    })


def _gemini_parts(content: object) -> list[dict]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for part in content or []:
        if part.get("type") == "text":
            parts.append({"text": part.get("text", "")})
        elif part.get("type") == "image_url":
            parts.append(_image(part.get("image_url", {}).get("url", "")))
        else:
            raise TranslationError(f"Content part {part.get('type')!r} cannot be sent to this model.")
    return parts


def _image(url: str) -> dict:
    if parsed := split_data_url(url):
        return {"inlineData": {"mimeType": parsed[0], "data": parsed[1]}}
    return {"fileData": compact({"mimeType": mimetypes.guess_type(url)[0], "fileUri": url})}


def _result_object(content: object) -> dict:
    # functionResponse.response must be an object: JSON objects pass as they are, anything else is wrapped.
    text = text_of(content)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {"result": text}


def _gemini_tools(body: dict) -> dict:
    # parametersJsonSchema takes JSON Schema as chat clients write it; "parameters" wants an OpenAPI subset.
    declarations = [compact({"name": function.get("name"), "description": function.get("description"),
                             "parametersJsonSchema": function.get("parameters")})
                    for tool in body.get("tools") or [] if (function := tool.get("function"))]
    if not declarations:
        return {}
    config = None
    if mode := tool_choice_mode(body.get("tool_choice")):
        config = {"mode": "ANY", "allowedFunctionNames": [mode[1]]} if mode[1] \
            else {"mode": MODE_FROM_CHOICE.get(mode[0], "AUTO")}
    return compact({"tools": [{"functionDeclarations": declarations}],
                    "toolConfig": {"functionCallingConfig": config} if config else None})


def _generation_config(body: dict) -> dict:
    stop = body.get("stop")
    response_format = body.get("response_format") or {}
    wants_json = response_format.get("type") in ("json_object", "json_schema")
    effort = body.get("reasoning_effort")
    thinking = None
    if effort in THINKING_BUDGETS:
        budget = THINKING_BUDGETS[effort]
        thinking = {"thinkingBudget": budget, "includeThoughts": True} if budget else {"thinkingBudget": 0}
    return compact({
        "temperature": body.get("temperature"),
        "topP": body.get("top_p"),
        "maxOutputTokens": body.get("max_completion_tokens") or body.get("max_tokens"),
        "candidateCount": body.get("n"),
        "stopSequences": [stop] if isinstance(stop, str) else stop or None,
        "seed": body.get("seed"),
        "presencePenalty": body.get("presence_penalty"),
        "frequencyPenalty": body.get("frequency_penalty"),
        "responseMimeType": "application/json" if wants_json else None,
        "responseJsonSchema": (response_format.get("json_schema") or {}).get("schema"),
        "thinkingConfig": thinking,
    })


def chat_response_from_gemini(resp: dict, *, model: str) -> dict:
    choices = []
    for candidate in resp.get("candidates") or []:
        parts = (candidate.get("content") or {}).get("parts") or []
        calls = [_chat_tool_call(call, call.get("id") or new_id("call"))
                 for part in parts if (call := part.get("functionCall"))]
        message = assistant_message(_texts(parts, thought=False) or None, calls,
                                    reasoning=_texts(parts, thought=True) or None)
        choices.append(chat_choice(message, _finish_reason(candidate.get("finishReason"), bool(calls)),
                                   candidate.get("index", 0)))
    if not choices:  # the prompt itself was blocked (promptFeedback.blockReason): no candidates at all
        choices.append(chat_choice(assistant_message(None), "content_filter"))
    usage = usage_from_gemini(resp.get("usageMetadata"))
    return chat_completion(model, choices, usage, resp.get("responseId"))


def _finish_reason(reason: str | None, called: bool) -> str:
    # Gemini ends function calls with STOP; chat says tool_calls.
    return "tool_calls" if called else FINISH_FROM_GEMINI.get(reason or "STOP", "stop")


class GeminiToChatStream(ChatStreamWriter):
    """Gemini stream chunks → chat.completion.chunk dicts.

    Function calls arrive whole, so each becomes one complete tool_calls delta with a synthesised id. The
    finish chunk and the usage chunk (from the last usageMetadata, which is authoritative) come from
    ``finish()``.
    """

    has_end_event = False  # it ends with its body: a usageMetadata may follow the finishReason

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self._calls = 0
        self._reason: str | None = None  # the last finishReason seen

    def feed(self, item: dict) -> list[dict]:
        self.finished = self.finished or any(c.get("finishReason") for c in item.get("candidates") or ())
        if self._done:
            return []
        if isinstance(item.get("error"), dict):
            error = item["error"]
            return self.error(str(error.get("status") or "api_error"),
                              str(error.get("message") or "Upstream error"))
        out = self._begin()
        candidate = (item.get("candidates") or [{}])[0]  # candidateCount > 1 cannot stream as one chat choice
        for part in (candidate.get("content") or {}).get("parts") or []:
            if call := part.get("functionCall"):
                delta = {"index": self._calls, **_chat_tool_call(call, call.get("id") or new_id("call"))}
                out.append(self._chunk({"tool_calls": [delta]}))
                self._calls += 1
            elif isinstance(part.get("text"), str) and part["text"]:
                field = "reasoning_content" if part.get("thought") else "content"
                out.append(self._chunk({field: part["text"]}))
        self._reason = candidate.get("finishReason") or self._reason
        if item.get("usageMetadata"):
            self._usage = usage_from_gemini(item["usageMetadata"])
        return out

    def finish(self) -> list[dict]:
        self._finish_reason = _finish_reason(self._reason, self._calls > 0)
        return super().finish()


# The format

class GeminiObserver(Observer):
    has_end_event = False  # it ends with its body: a usageMetadata may follow the finishReason

    def _watch(self, raw: bytes, payload: dict) -> bytes:
        if payload.get("error"):
            self.failed = True
            return raw
        if payload.get("usageMetadata"):
            self.usage = usage_from_gemini(payload["usageMetadata"])  # the last one is authoritative
        for candidate in payload.get("candidates") or ():
            for part in (candidate.get("content") or {}).get("parts") or ():
                self.produced += len(part.get("text") or "")
            self.finished = self.finished or bool(candidate.get("finishReason"))
        if self.finished and payload.get("usageMetadata"):  # the last chunk carries the cost of the call
            payload["usageMetadata"] = {**payload["usageMetadata"], "cost": self.price(self.usage)}
            return encode_data(payload)
        return raw


_GENERATION_CONFIG = fields({
    name: rule for names, rule in [(("maxOutputTokens", "max_output_tokens"), integer(1)),
                                   (("candidateCount", "candidate_count"), integer(1, 8)),
                                   (("temperature",), number(0, 2)), (("topP", "top_p"), number(0, 1))]
    for name in names})
GEMINI_FIELDS = {
    "model": string,
    "contents": objects(lambda content: None if isinstance(content.get("parts"), list) else "with `parts` an array"),
    "generationConfig": _GENERATION_CONFIG, "generation_config": _GENERATION_CONFIG, "tools": objects(),
}


class GeminiFormat(WireFormat):
    ping = None  # google-genai reads every line of the stream as JSON: no room for comments
    model_field = "modelVersion"

    def read(self, body: dict, *, model: object = None, stream: bool | None = None) -> ClientRequest:
        checked(body, GEMINI_FIELDS)
        config_field = "generationConfig" if "generationConfig" in body else "generation_config"
        config = body.get(config_field) or {}
        output_field = "maxOutputTokens" if "maxOutputTokens" in config else "max_output_tokens"
        return client_request(
            body, model=model or body.get("model"),
            stream=bool(body.get("stream")) if stream is None else stream,
            max_output=config.get(output_field), max_output_field=f"{config_field}.{output_field}",
            choices=config.get("candidateCount", config.get("candidate_count", 1)),
            not_forwarded=("model", "stream"))  # a Gemini upstream reads both from its URL

    def to_chat(self, request: ClientRequest) -> dict:
        return chat_request_from_gemini(request.body, model=str(request.model), stream=request.stream)

    def error_body(self, err: GatewayError) -> dict:
        return {"error": {"code": err.status, "message": err.message,
                          "status": GRPC_STATUS.get(err.status, "UNKNOWN"), "reason": err.type, **err.extra}}

    def answer_from_chat(self, chat: dict, model: str) -> dict:
        return gemini_response_from_chat(chat, model=model)

    def stamp_answer(self, answer: dict, usage: TokenUsage, cost: float) -> None:
        answer["usageMetadata"] = {**(answer.get("usageMetadata") or gemini_usage(usage)), "cost": cost}

    def observer(self, request: ClientRequest, price: Price) -> Observer:
        return GeminiObserver(price)

    def translator(self, request: ClientRequest, model: str) -> ChatToGeminiStream:
        return ChatToGeminiStream(model)

    def stamp(self, item: dict, cost: float) -> None:
        if item.get("usageMetadata") and item["candidates"][0].get("finishReason"):
            item["usageMetadata"]["cost"] = cost

    def stream_error(self, observer: Observer, type: str, message: str) -> bytes:
        return encode_data({"error": {"code": 500, "message": message, "status": "INTERNAL", "reason": type}})

    def build_request(self, target: Target, body: dict, *, stream: bool, cache: bool,
                      client_headers: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        headers = {"x-goog-api-key": target.api_key, "content-type": "application/json"}
        return f"{target.base_url}/models/{target.upstream_model}:{method}", headers, json_bytes(body)

    def request_from_chat(self, chat: dict) -> dict:
        return gemini_request_from_chat(chat)

    def cap_output(self, body: dict, tokens: int) -> dict:
        name = "generation_config" if "generation_config" in body else "generationConfig"
        config = body.get(name) or {}
        field = "max_output_tokens" if "max_output_tokens" in config else "maxOutputTokens"
        limited = capped(config, field, tokens)
        return body if limited is config else {**body, name: limited}

    def usage_of(self, answer: dict) -> TokenUsage:
        return usage_from_gemini(answer.get("usageMetadata"))

    def chat_from_answer(self, answer: dict, model: str) -> dict:
        return chat_response_from_gemini(answer, model=model)

    def chat_decoder(self, model: str) -> GeminiToChatStream:
        return GeminiToChatStream(model)


GEMINI = GeminiFormat()
