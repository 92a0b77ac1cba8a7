"""Anthropic Messages: the format on both sides of the gateway, and its translation to and from chat.

Anthropic clients reach chat upstreams through ``chat_request_from_anthropic``,
``anthropic_response_from_chat`` and ``ChatToAnthropicStream``; chat requests reach Anthropic upstreams
through ``anthropic_request_from_chat``, ``chat_response_from_anthropic`` and ``AnthropicToChatStream``.
Every request to an Anthropic upstream may get Hypereal Cache's breakpoint (``with_cache_breakpoint``).
Anthropic's usage counts ``input_tokens`` without cache reads and writes; the gateway's includes them.
"""

from billing.tokens import TokenUsage
from gateway.catalog import Route, Target
from gateway.errors import GatewayError
from gateway.formats.base import (
    ClientRequest,
    NamedEventFormat,
    Observer,
    Price,
    SSEEvent,
    capped,
    client_request,
    json_bytes,
)
from gateway.formats.chat import usage_from_chat
from gateway.formats.checks import (
    boolean,
    checked,
    integer,
    named,
    number,
    objects,
    refused,
    string,
    string_or_list,
    with_role,
)
from gateway.formats.common import (
    MIN_THINKING_BUDGET,
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
    safe_tool_id,
    split_data_url,
    stream_fields,
    text_of,
    tool_call,
    tool_choice_mode,
)
from gateway.sse import encode_event

FINISH_FROM_STOP = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
                    "model_context_window_exceeded": "length", "tool_use": "tool_calls",
                    "refusal": "content_filter"}
STOP_FROM_FINISH = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                    "function_call": "tool_use", "content_filter": "refusal"}
CHOICE_FROM_ANTHROPIC = {"auto": "auto", "any": "required", "none": "none"}
ANTHROPIC_FROM_CHOICE = {mode: kind for kind, mode in CHOICE_FROM_ANTHROPIC.items()}
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; chat clients often leave it out
THINKING_TYPES = ("thinking", "redacted_thinking")
STREAM_END_EVENTS = ("message_delta", "message_stop")
ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_PING = b'event: ping\ndata: {"type": "ping"}\n\n'
NOT_COUNTED = ("max_tokens", "stream", "metadata", "temperature", "top_p", "top_k", "stop_sequences",
               "service_tier")  # what only a call takes: /messages/count_tokens refuses them


# Usage

def usage_from_anthropic(usage: dict | None) -> TokenUsage:
    if not usage:
        return TokenUsage()
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_write = int(usage.get("cache_creation_input_tokens") or 0)
    return TokenUsage(
        input=int(usage.get("input_tokens") or 0) + cache_read + cache_write,
        cached_read=cache_read,
        cache_write=cache_write,
        output=int(usage.get("output_tokens") or 0),
    )


def anthropic_usage(usage: TokenUsage) -> dict:
    return {
        "input_tokens": usage.input - usage.cached_read - usage.cache_write,
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cached_read,
        "output_tokens": usage.output,
    }


# Anthropic client → chat upstream

def chat_request_from_anthropic(body: dict) -> dict:
    messages = [{"role": "system", "content": _chat_content(body["system"])}] if body.get("system") else []
    for message in body.get("messages") or []:
        messages += _chat_messages(message)
    thinking = body.get("thinking") or {}
    return compact({
        "model": body.get("model"),
        "messages": messages,
        "max_completion_tokens": body.get("max_tokens"),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "stop": body.get("stop_sequences") or None,
        "user": (body.get("metadata") or {}).get("user_id"),
        "reasoning_effort": effort_for_budget(thinking.get("budget_tokens") or 0)
        if thinking.get("type") == "enabled" else None,
        **_chat_tools(body.get("tools"), body.get("tool_choice")),
        **stream_fields(body.get("stream")),
    })


def _chat_content(content: str | list[dict]) -> str | list[dict]:
    return content if isinstance(content, str) else chat_content([_chat_part(block) for block in content])


def _chat_part(block: dict) -> dict:
    kind = block.get("type")
    if kind == "text":
        return compact({"type": "text", "text": block.get("text", ""),
                        "cache_control": block.get("cache_control")})
    if kind == "image":
        source = block.get("source") or {}
        if source.get("type") == "base64":
            return image_part(data_url(source.get("media_type", ""), source.get("data", "")))
        if source.get("type") == "url":
            return image_part(source.get("url", ""))
    raise TranslationError(f"Content block {kind!r} cannot be sent to this model.")


def _chat_messages(message: dict) -> list[dict]:
    role, content = message.get("role"), message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    blocks = content or []
    if role == "assistant":
        texts = [block for block in blocks if block.get("type") == "text"]
        calls = [tool_call(block.get("id", ""), block.get("name", ""), dump_json(block.get("input")))
                 for block in blocks if block.get("type") == "tool_use"]
        thinking = [block for block in blocks if block.get("type") in THINKING_TYPES]
        return [assistant_message(_chat_content(texts) if texts else None, calls, thinking_blocks=thinking)]
    # Tool results become tool messages, which must come first; chat tool messages hold text only, so images
    # returned by a tool travel in the user message that follows them.
    results, parts = [], []
    for block in blocks:
        if block.get("type") != "tool_result":
            parts.append(_chat_part(block))
            continue
        result = block.get("content")
        result_blocks = [{"type": "text", "text": result}] if isinstance(result, str) else result or []
        texts = [item for item in result_blocks if item.get("type") == "text"]
        results.append({"role": "tool", "tool_call_id": block.get("tool_use_id"),
                        "content": _chat_content(texts)})
        parts += [_chat_part(item) for item in result_blocks if item.get("type") != "text"]
    return results + ([{"role": "user", "content": chat_content(parts)}] if parts else [])


def _chat_tools(tools: list[dict] | None, choice: dict | None) -> dict:
    # Anthropic-hosted tools (web search, bash, …; they carry a type) have no chat equivalent and are dropped.
    functions = [{"type": "function",
                  "function": compact({"name": tool.get("name"), "description": tool.get("description"),
                                       "parameters": tool.get("input_schema")}),
                  **({"cache_control": tool["cache_control"]} if "cache_control" in tool else {})}
                 for tool in tools or [] if tool.get("type") in (None, "custom")]
    if not functions:
        return {}
    choice = choice or {}
    fields: dict = {"tools": functions}
    if choice.get("type") == "tool":
        fields["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif choice.get("type") in CHOICE_FROM_ANTHROPIC:
        fields["tool_choice"] = CHOICE_FROM_ANTHROPIC[choice["type"]]
    if choice.get("disable_parallel_tool_use"):
        fields["parallel_tool_calls"] = False
    return fields


def anthropic_response_from_chat(resp: dict, *, model: str) -> dict:
    choice = (resp.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content = list(message.get("thinking_blocks") or [])
    if not content and message.get("reasoning_content"):  # a non-Anthropic model's reasoning has no signature
        content.append({"type": "thinking", "thinking": message["reasoning_content"], "signature": ""})
    if text := text_of(message.get("content") or message.get("refusal"), sep=""):
        content.append({"type": "text", "text": text})
    content += [_tool_use(call) for call in message.get("tool_calls") or []]
    return {"id": new_id("msg"), "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": STOP_FROM_FINISH.get(choice.get("finish_reason") or "stop", "end_turn"),
            "stop_sequence": None, "usage": anthropic_usage(usage_from_chat(resp.get("usage")))}


class ChatToAnthropicStream(ChatStreamTranslator[SSEEvent]):
    """Chat chunks → Anthropic SSE events, as (event name, data) pairs.

    Anthropic blocks never interleave: a change of kind (thinking, text, another tool call) closes the open
    block and opens the next, numbered from 0. Chat streams send each tool call's fragments contiguously; a
    fragment for a call whose block is already closed could not be placed and is dropped.
    """

    def __init__(self, model: str, message_id: str | None = None) -> None:
        super().__init__()
        self._model = model
        self._message_id = message_id or new_id("msg")
        self._index = -1  # of the latest block
        self._open: object = None  # the open block's kind: "text", "thinking", ("tool", n); None if closed

    def _start(self) -> list[SSEEvent]:
        # Chat upstreams report usage only at the end: message_start carries zeros, message_delta the totals.
        message = {"id": self._message_id, "type": "message", "role": "assistant", "model": self._model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": anthropic_usage(TokenUsage())}
        return [_event("message_start", message=message)]

    def _on_text(self, text: str) -> list[SSEEvent]:
        return self._enter("text", {"type": "text", "text": ""}) + [self._delta("text_delta", text=text)]

    def _on_reasoning(self, text: str) -> list[SSEEvent]:
        return self._enter_thinking() + [self._delta("thinking_delta", thinking=text)]

    def _on_thinking_block(self, block: dict) -> list[SSEEvent]:
        if block.get("type") == "redacted_thinking":
            redacted = {"type": "redacted_thinking", "data": block.get("data", "")}
            return self._enter("redacted", redacted) + self._close()
        if block.get("signature"):  # the signature is the last delta of its thinking block
            opened = self._enter_thinking()
            return opened + [self._delta("signature_delta", signature=block["signature"])] + self._close()
        return []

    def _on_tool_start(self, index: int, call_id: str, name: str) -> list[SSEEvent]:
        block = {"type": "tool_use", "id": safe_tool_id(call_id), "name": name, "input": {}}
        return self._enter(("tool", index), block)

    def _on_tool_arguments(self, index: int, fragment: str) -> list[SSEEvent]:
        if self._open != ("tool", index):
            return []
        return [self._delta("input_json_delta", partial_json=fragment)]

    def _end(self, finish_reason: str | None) -> list[SSEEvent]:
        stop_reason = STOP_FROM_FINISH.get(finish_reason or "stop", "end_turn")
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        usage = anthropic_usage(self._usage or TokenUsage())  # cumulative: totals, never increments
        return self._close() + [_event("message_delta", delta=delta, usage=usage), _event("message_stop")]

    def _error(self, type: str, message: str) -> list[SSEEvent]:
        return [_event("error", error={"type": type, "message": message})]

    def _enter_thinking(self) -> list[SSEEvent]:
        return self._enter("thinking", {"type": "thinking", "thinking": "", "signature": ""})

    def _enter(self, kind: object, block: dict) -> list[SSEEvent]:
        if self._open == kind:
            return []
        out = self._close()
        self._index += 1
        self._open = kind
        return out + [_event("content_block_start", index=self._index, content_block=block)]

    def _close(self) -> list[SSEEvent]:
        if self._open is None:
            return []
        self._open = None
        return [_event("content_block_stop", index=self._index)]

    def _delta(self, kind: str, **fields: str) -> SSEEvent:
        return _event("content_block_delta", index=self._index, delta={"type": kind, **fields})


def _event(kind: str, /, **fields: object) -> SSEEvent:
    return kind, {"type": kind, **fields}


# Chat request → Anthropic upstream

def anthropic_request_from_chat(body: dict) -> dict:
    system: list[dict] = []
    messages: list[dict] = []
    for message in body.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):  # Anthropic has one top-level system prompt
            system += _anthropic_blocks(message.get("content"))
        elif role == "tool":
            append_turn(messages, "user", [_tool_result(message)])
        elif role == "assistant":
            append_turn(messages, "assistant", _assistant_blocks(message))
        else:
            append_turn(messages, "user", _anthropic_blocks(message.get("content")))
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    stop = body.get("stop")
    temperature = body.get("temperature")
    request = compact({
        "model": body.get("model"),
        "max_tokens": max_tokens,
        "system": system or None,
        "messages": messages,
        "stop_sequences": [stop] if isinstance(stop, str) else stop or None,
        "temperature": None if temperature is None else min(max(temperature, 0), 1),  # Anthropic's is 0–1
        "top_p": body.get("top_p"),
        "metadata": {"user_id": body["user"]} if body.get("user") else None,
        "stream": True if body.get("stream") else None,
        **_anthropic_tools(body),
    })
    # The budget must stay below max_tokens: the client's output cap wins over the requested effort.
    budget = min(THINKING_BUDGETS.get(body.get("reasoning_effort") or "none", 0), max_tokens - 1)
    if budget >= MIN_THINKING_BUDGET and _can_think(request):
        request["thinking"] = {"type": "enabled", "budget_tokens": budget}
        for field in ("temperature", "top_p"):  # Anthropic rejects sampling overrides while thinking
            request.pop(field, None)
    return request


def _can_think(request: dict) -> bool:
    """Whether Anthropic accepts thinking for this request; reasoning_effort is only a wish, so rather than
    fail the call, thinking is left off where Anthropic would reject it: with a forced tool choice, and in a
    tool loop whose last assistant turn does not start with the (signed) thinking block it was answered with.
    """
    if (request.get("tool_choice") or {}).get("type") in ("any", "tool"):
        return False
    assistant_turns = [turn["content"] for turn in request["messages"] if turn["role"] == "assistant"]
    last = assistant_turns[-1] if assistant_turns else []
    uses_tools = any(block.get("type") == "tool_use" for block in last)
    return not uses_tools or last[0].get("type") in THINKING_TYPES


def _anthropic_blocks(content: object) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content or []:
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):  # Anthropic rejects empty text blocks
                blocks.append(compact({"type": "text", "text": part["text"],
                                       "cache_control": part.get("cache_control")}))
        elif kind == "image_url":
            blocks.append(_image_block((part.get("image_url") or {}).get("url", "")))
        else:
            raise TranslationError(f"Content part {kind!r} cannot be sent to this model.")
    return blocks


def _image_block(url: str) -> dict:
    if parsed := split_data_url(url):
        return {"type": "image", "source": {"type": "base64", "media_type": parsed[0], "data": parsed[1]}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _tool_result(message: dict) -> dict:
    content = message.get("content")
    return {"type": "tool_result", "tool_use_id": safe_tool_id(message.get("tool_call_id") or ""),
            "content": content if isinstance(content, str) else _anthropic_blocks(content)}


def _assistant_blocks(message: dict) -> list[dict]:
    # Thinking blocks go back unmodified, and only when signed: Anthropic rejects a thinking block whose
    # signature it did not issue (reasoning from other providers has none).
    thinking = [block for block in message.get("thinking_blocks") or []
                if block.get("type") == "redacted_thinking" or block.get("signature")]
    calls = [_tool_use(call) for call in message.get("tool_calls") or []]
    return thinking + _anthropic_blocks(message.get("content")) + calls


def _tool_use(call: dict) -> dict:
    function = call.get("function") or {}
    return {"type": "tool_use", "id": safe_tool_id(call.get("id") or ""), "name": function.get("name", ""),
            "input": parse_arguments(function.get("arguments"))}


def _anthropic_tools(body: dict) -> dict:
    tools = [compact({"name": function.get("name"), "description": function.get("description"),
                      "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
                      "cache_control": tool.get("cache_control")})
             for tool in body.get("tools") or [] if (function := tool.get("function"))]
    if not tools:
        return {}
    choice: dict | None = None
    if mode := tool_choice_mode(body.get("tool_choice")):
        kind, name = mode
        choice = {"type": "tool", "name": name} if name else {"type": ANTHROPIC_FROM_CHOICE.get(kind, "auto")}
    if body.get("parallel_tool_calls") is False and (choice or {}).get("type") != "none":
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    return compact({"tools": tools, "tool_choice": choice})


def chat_response_from_anthropic(msg: dict) -> dict:
    blocks = msg.get("content") or []
    text = "".join(block.get("text", "") for block in blocks if block.get("type") == "text")
    reasoning = "".join(block.get("thinking", "") for block in blocks if block.get("type") == "thinking")
    calls = [tool_call(block.get("id", ""), block.get("name", ""), dump_json(block.get("input")))
             for block in blocks if block.get("type") == "tool_use"]
    thinking = [block for block in blocks if block.get("type") in THINKING_TYPES]
    message = assistant_message(text or None, calls, reasoning=reasoning or None, thinking_blocks=thinking)
    finish_reason = FINISH_FROM_STOP.get(msg.get("stop_reason") or "end_turn", "stop")
    return chat_completion(msg.get("model", ""), [chat_choice(message, finish_reason)],
                           usage_from_anthropic(msg.get("usage")), msg.get("id"))


class AnthropicToChatStream(ChatStreamWriter):
    """Anthropic SSE events, as (event name, data) pairs → chat.completion.chunk dicts.

    Tool calls are numbered by a running tool index, not by Anthropic's block index (text and thinking blocks
    take block indexes too). message_delta ends the stream: the finish chunk, then the usage chunk.
    """

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self._tool_index: dict[int, int] = {}  # Anthropic block index → chat tool_calls index
        self._raw_usage: dict = {}  # message_start's usage, overwritten by message_delta's cumulative counts

    def feed(self, item: SSEEvent) -> list[dict]:
        name, data = item
        kind = data.get("type") or name
        self.finished = self.finished or kind in STREAM_END_EVENTS
        if self._done or kind in ("ping", "message_stop"):
            return []
        if kind == "error":
            error = data.get("error") or {}
            return self.error(error.get("type") or "api_error", error.get("message") or "Upstream error")
        out = self._begin()
        if kind == "message_start":
            self._merge_usage((data.get("message") or {}).get("usage"))
        elif kind == "content_block_start":
            out += self._block_start(data.get("index", 0), data.get("content_block") or {})
        elif kind == "content_block_delta":
            out += self._block_delta(data.get("index", 0), data.get("delta") or {})
        elif kind == "message_delta":
            self._merge_usage(data.get("usage"))
            stop_reason = (data.get("delta") or {}).get("stop_reason")
            self._finish_reason = FINISH_FROM_STOP.get(stop_reason or "end_turn", "stop")
            out += self.finish()
        return out

    def _merge_usage(self, usage: dict | None) -> None:
        self._raw_usage.update({key: value for key, value in (usage or {}).items() if value is not None})
        self._usage = usage_from_anthropic(self._raw_usage)

    def _block_start(self, index: int, block: dict) -> list[dict]:
        if block.get("type") == "tool_use":
            self._tool_index[index] = len(self._tool_index)
            arguments = dump_json(block["input"]) if block.get("input") else ""
            call = tool_call(block.get("id", ""), block.get("name", ""), arguments)
            return [self._chunk({"tool_calls": [{"index": self._tool_index[index], **call}]})]
        if block.get("type") == "redacted_thinking":
            return [self._chunk({"thinking_blocks": [block]})]
        return []

    def _block_delta(self, index: int, delta: dict) -> list[dict]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [self._chunk({"content": delta.get("text", "")})]
        if kind == "thinking_delta":
            return [self._chunk({"reasoning_content": delta.get("thinking", "")})]
        if kind == "signature_delta":
            signature = {"type": "thinking", "signature": delta.get("signature", "")}
            return [self._chunk({"thinking_blocks": [signature]})]
        if kind == "input_json_delta" and index in self._tool_index and delta.get("partial_json"):
            call = {"index": self._tool_index[index], "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [call]})]
        return []


# Hypereal Cache

def with_cache_breakpoint(body: dict) -> dict:
    """Mark the end of the prompt for Anthropic's prompt cache when the client marked nothing.

    One breakpoint on the last block of the last message caches everything before it (tools, system,
    earlier turns), which is what a growing conversation re-sends.
    """
    messages = body.get("messages") or []
    if not messages or _has_cache_control(body):
        return body
    last = messages[-1]
    content = last.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
    if not blocks or blocks[-1].get("type") in THINKING_TYPES:
        return body  # thinking blocks cannot carry cache_control
    blocks[-1] = {**blocks[-1], "cache_control": {"type": "ephemeral"}}
    return {**body, "messages": [*messages[:-1], {**last, "content": blocks}]}


def _has_cache_control(body: dict) -> bool:
    if any("cache_control" in tool for tool in body.get("tools") or [] if isinstance(tool, dict)):
        return True
    system = body.get("system")
    if isinstance(system, list) and any("cache_control" in block
                                        for block in system if isinstance(block, dict)):
        return True
    return any("cache_control" in block for message in body.get("messages") or []
               if isinstance(message.get("content"), list)
               for block in message["content"] if isinstance(block, dict))


# The format

class AnthropicObserver(Observer):
    NOT_PLAIN = (b"message_start", b"message_delta", b"message_stop", b'"error"')

    def __init__(self, price: Price) -> None:
        super().__init__(price)
        self._usage: dict = {}

    def _watch(self, raw: bytes, payload: dict) -> bytes:
        kind = payload.get("type")
        if kind == "content_block_delta":
            delta = payload.get("delta") or {}
            text = delta.get("text") or delta.get("thinking") or delta.get("partial_json") or ""
            self.produced += len(text)
        elif kind == "message_start":
            self._merge((payload.get("message") or {}).get("usage"))
        elif kind == "message_delta":
            self.finished = True
            self._merge(payload.get("usage"))
            payload["usage"] = {**(payload.get("usage") or {}), "cost": self.price(self.usage)}
            return encode_event("message_delta", payload)
        elif kind == "message_stop":
            self.finished = True
        elif kind == "error":
            self.failed = True
        return raw

    def _merge(self, usage: dict | None) -> None:
        self._usage.update({k: v for k, v in (usage or {}).items() if v is not None})
        self.usage = usage_from_anthropic(self._usage)


ANTHROPIC_FIELDS = {
    # Claude Code also sends system turns among its messages; Anthropic takes them.
    "model": string, "messages": objects(with_role(("user", "assistant", "system"), (str, list))),
    "system": string_or_list,
    "max_tokens": integer(1), "temperature": number(0, 1), "top_p": number(0, 1), "top_k": integer(0),
    "stream": boolean, "tools": objects(named()),
}


class AnthropicFormat(NamedEventFormat):
    ping = ANTHROPIC_PING
    request_id_header = "request-id"  # where the anthropic SDK looks for it
    forwarded_headers = (b"anthropic-version", b"anthropic-beta")

    def read(self, body: dict, *, model: object = None, stream: bool | None = None) -> ClientRequest:
        checked(body, ANTHROPIC_FIELDS)
        if body.get("messages") is None:
            raise refused("messages", "given (a list of messages)")
        return client_request(body, model=body.get("model"), stream=bool(body.get("stream")),
                              max_output=body.get("max_tokens"), max_output_field="max_tokens")

    def admits(self, route: Route) -> bool:
        """Every chat model: non-Anthropic ones are translated both ways."""
        return True

    def to_chat(self, request: ClientRequest) -> dict:
        return chat_request_from_anthropic(request.body)

    def error_body(self, err: GatewayError) -> dict:
        return {"type": "error", "error": {"type": err.type, "message": err.message, **err.extra}}

    def answer_from_chat(self, chat: dict, model: str) -> dict:
        return anthropic_response_from_chat(chat, model=model)

    def observer(self, request: ClientRequest, price: Price) -> Observer:
        return AnthropicObserver(price)

    def translator(self, request: ClientRequest, model: str) -> ChatToAnthropicStream:
        return ChatToAnthropicStream(model)

    def stamp(self, item: SSEEvent, cost: float) -> None:
        if item[0] == "message_delta":
            item[1]["usage"]["cost"] = cost

    def stream_error(self, observer: Observer, type: str, message: str) -> bytes:
        return encode_event("error", {"type": "error", "error": {"type": type, "message": message}})

    def build_request(self, target: Target, body: dict, *, stream: bool, cache: bool,
                      client_headers: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
        payload = {**body, "model": target.upstream_model}
        if cache:
            payload = with_cache_breakpoint(payload)
        headers = {"x-api-key": target.api_key, "content-type": "application/json",
                   "anthropic-version": client_headers.get("anthropic-version") or ANTHROPIC_VERSION}
        if beta := client_headers.get("anthropic-beta"):
            headers["anthropic-beta"] = beta
        return f"{target.base_url}/messages", headers, json_bytes(payload)

    def build_count_request(self, target: Target, body: dict, *,
                            client_headers: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
        """/messages/count_tokens for the prompt a call with ``body`` would send (Hypereal Cache adds nothing
        there: breakpoints change what is billed, not how many tokens the prompt has)."""
        counted = {name: value for name, value in body.items() if name not in NOT_COUNTED}
        url, headers, payload = self.build_request(target, counted, stream=False, cache=False,
                                                   client_headers=client_headers)
        return f"{url}/count_tokens", headers, payload

    def request_from_chat(self, chat: dict) -> dict:
        return anthropic_request_from_chat(chat)

    def cap_output(self, body: dict, tokens: int) -> dict:
        return capped(body, "max_tokens", tokens)

    def usage_of(self, answer: dict) -> TokenUsage:
        return usage_from_anthropic(answer.get("usage"))

    def chat_from_answer(self, answer: dict, model: str) -> dict:
        return chat_response_from_anthropic(answer)

    def chat_decoder(self, model: str) -> AnthropicToChatStream:
        return AnthropicToChatStream(model)


ANTHROPIC = AnthropicFormat()
