"""What every translator shares: ids, chat message pieces, and the two skeletons of chat-stream translation.

OpenAI Chat Completions is the lingua franca. A few gateway-internal extensions ride on chat messages so that
nothing is lost when a call goes Anthropic → chat → Anthropic (strip them before a strict OpenAI upstream):

- ``reasoning_content`` on an assistant message or stream delta: the model's reasoning text (DeepSeek's and
  vLLM's name for it).
- ``thinking_blocks`` on an assistant message: Anthropic ``thinking`` / ``redacted_thinking`` blocks verbatim,
  so their signatures survive (LiteLLM's convention). In a stream delta, ``{"type": "thinking", "signature"}``
  is the signature that ends the thinking block being streamed, and ``{"type": "redacted_thinking", "data"}``
  is a whole block.
- ``cache_control`` on text parts and on tool definitions: Anthropic prompt-caching marks.
"""

import json
import re
import time
import uuid
from typing import Generic, TypeVar

from billing.tokens import TokenUsage
from gateway.formats.chat import chat_stream_error, chat_usage, usage_from_chat

Out = TypeVar("Out")

# Reasoning effort ⇄ thinking-token budget. Anthropic needs budget_tokens >= 1024; Gemini reads 0 as "off".
THINKING_BUDGETS = {"none": 0, "minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
MIN_THINKING_BUDGET = 1024


class TranslationError(ValueError):
    """The request cannot be expressed in the target format; the client should get a 400 with this message."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def compact(fields: dict) -> dict:
    """Drop unset (None) fields, so a translated body carries only what the client actually set."""
    return {key: value for key, value in fields.items() if value is not None}


def stream_fields(stream: object) -> dict:
    """Streaming always asks for usage: billing needs it; the usage chunk is stripped later if unwanted."""
    return {"stream": True, "stream_options": {"include_usage": True}} if stream else {}


def effort_for_budget(budget: int) -> str:
    """The closest reasoning_effort to a thinking budget (an approximation: the scales do not match)."""
    if budget <= THINKING_BUDGETS["low"]:
        return "low"
    return "medium" if budget <= THINKING_BUDGETS["medium"] else "high"


def text_of(content: object, sep: str = "\n") -> str:
    """The text of a message content: a string, or the text of every part that has some (any part type)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return sep.join(part["text"] for part in content
                    if isinstance(part, dict) and isinstance(part.get("text"), str))


def chat_content(parts: list[dict]) -> str | list[dict]:
    """Chat content for parts: a plain string when all are unmarked text (every chat upstream takes that)."""
    if all(part.get("type") == "text" and "cache_control" not in part for part in parts):
        return "\n".join(part["text"] for part in parts)
    return parts


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def data_url(media_type: str, data: str) -> str:
    return f"data:{media_type};base64,{data}"


def split_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a ``data:`` URL; None for anything else, such as an http URL."""
    match = re.fullmatch(r"data:([^;,]+);base64,(.*)", url, re.DOTALL)
    return (match[1], match[2]) if match else None


def safe_tool_id(tool_id: str) -> str:
    """Anthropic requires tool ids to match ^[a-zA-Z0-9_-]+$; other providers' ids may not."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", tool_id) or new_id("toolu")


def parse_arguments(arguments: str | None) -> dict:
    """Tool-call arguments (a JSON string) as the object Anthropic and Gemini want.

    Empty or unparseable arguments become ``{}`` rather than an error: a call cut off by max_tokens is still
    in the conversation the client sends back, and must not make that conversation unsendable.
    """
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def dump_json(value: object) -> str:
    return json.dumps(value if value is not None else {}, ensure_ascii=False, separators=(",", ":"))


def tool_call(call_id: str, name: str, arguments: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def assistant_message(content: str | list[dict] | None, tool_calls: list[dict] | None = None, *,
                      reasoning: str | None = None, thinking_blocks: list[dict] | None = None) -> dict:
    # Chat wants content null beside tool calls, and a string otherwise.
    message: dict = {"role": "assistant", "content": content or (None if tool_calls else "")}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = reasoning
    if thinking_blocks:
        message["thinking_blocks"] = thinking_blocks
    return message


def append_turn(turns: list[dict], role: str, items: list[dict], field: str = "content") -> None:
    """Add items to the conversation, merging into the previous turn when it has the same role.

    Anthropic and Gemini carry tool results inside a user turn, so consecutive results (and a user message
    that follows them) must share one turn.
    """
    if not items:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][field].extend(items)
    else:
        turns.append({"role": role, field: list(items)})


def tool_choice_mode(choice: object) -> tuple[str, str | None] | None:
    """A chat tool_choice as (auto|none|required, forced function name or None); None when unset."""
    if isinstance(choice, str):
        return choice, None
    if isinstance(choice, dict) and choice.get("type") == "function":
        return "required", (choice.get("function") or {}).get("name")
    return None


def chat_choice(message: dict, finish_reason: str, index: int = 0) -> dict:
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason}


def chat_completion(model: str, choices: list[dict], usage: TokenUsage, completion_id: str | None = None) -> dict:
    return {"id": completion_id or new_id("chatcmpl"), "object": "chat.completion",
            "created": int(time.time()), "model": model, "choices": choices, "usage": chat_usage(usage)}


class ChatStreamWriter:
    """Base of translators that produce a chat.completion.chunk stream from another format's stream.

    Every chunk repeats id, object, created and model; the role chunk comes first; the finish chunk and then
    the usage chunk (``choices: []``) come last, from ``finish()`` even when the upstream never said how it
    ended; nothing follows them or an error. ``finished`` tells whether the upstream did say it (a stream
    cut before that is a failure, not an answer).
    """

    has_end_event = True

    def __init__(self, model: str) -> None:
        self._head = {"id": new_id("chatcmpl"), "object": "chat.completion.chunk",
                      "created": int(time.time()), "model": model}
        self.finished = False
        self._started = False
        self._done = False
        self._finish_reason: str | None = None
        self._usage: TokenUsage | None = None

    @property
    def usage(self) -> TokenUsage | None:
        return self._usage

    def finish(self) -> list[dict]:
        if self._done:
            return []
        self._done = True
        out = self._begin() + [self._chunk({}, self._finish_reason or "stop")]
        if self._usage is not None:
            out.append({**self._head, "choices": [], "usage": chat_usage(self._usage)})
        return out

    def error(self, type: str, message: str) -> list[dict]:
        self._done = True
        return [chat_stream_error(type, message)]

    def _begin(self) -> list[dict]:
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> dict:
        return {**self._head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                           "finish_reason": finish_reason}]}


class ChatStreamTranslator(Generic[Out]):
    """Base of translators fed chat.completion.chunk dicts that render another format's stream.

    The liberal reading of chat streams lives here once: only choice 0 is translated; a tool call starts
    when its index first appears (with an id synthesised if the upstream sent none); the finish_reason is
    held until a chunk carrying usage arrives (include_usage sends it after the finish chunk), so the closing
    events carry the final usage; ``finish()`` closes a stream that ended without usage or without a
    finish_reason; nothing is emitted after the end or an error. Subclasses render the pieces through the
    ``_on_*`` hooks.
    """

    def __init__(self) -> None:
        self._started = False
        self._done = False
        self._usage: TokenUsage | None = None
        self._finish_reason: str | None = None
        self._tool_ids: dict[int, str] = {}

    @property
    def usage(self) -> TokenUsage | None:
        return self._usage

    def feed(self, chunk: dict) -> list[Out]:
        if self._done:
            return []
        if isinstance(chunk.get("error"), dict):  # a chat upstream's mid-stream error payload
            error = chunk["error"]
            return self.error(str(error.get("type") or "api_error"),
                              str(error.get("message") or "Upstream error"))
        out = self._begin()
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) == 0:
                out += self._read_delta(choice.get("delta") or {})
                self._finish_reason = choice.get("finish_reason") or self._finish_reason
        if chunk.get("usage"):
            self._usage = usage_from_chat(chunk["usage"])
            if self._finish_reason:
                out += self.finish()
        return out

    def finish(self) -> list[Out]:
        if self._done:
            return []
        self._done = True
        return self._begin() + self._end(self._finish_reason)

    def error(self, type: str, message: str) -> list[Out]:
        self._done = True
        return self._error(type, message)

    def _begin(self) -> list[Out]:
        if self._started:
            return []
        self._started = True
        return self._start()

    def _read_delta(self, delta: dict) -> list[Out]:
        out: list[Out] = []
        if reasoning := delta.get("reasoning_content") or delta.get("reasoning"):
            out += self._on_reasoning(reasoning)
        for block in delta.get("thinking_blocks") or []:
            out += self._on_thinking_block(block)
        if text := delta.get("content"):
            out += self._on_text(text)
        for call in delta.get("tool_calls") or []:
            index, function = call.get("index", 0), call.get("function") or {}
            if index not in self._tool_ids:
                self._tool_ids[index] = call.get("id") or new_id("call")
                out += self._on_tool_start(index, self._tool_ids[index], function.get("name") or "")
            if arguments := function.get("arguments"):
                out += self._on_tool_arguments(index, arguments)
        return out

    def _start(self) -> list[Out]:
        return []

    def _on_thinking_block(self, block: dict) -> list[Out]:
        return []  # only Anthropic has a place for signatures and redacted thinking

    def _on_text(self, text: str) -> list[Out]:
        raise NotImplementedError

    def _on_reasoning(self, text: str) -> list[Out]:
        raise NotImplementedError

    def _on_tool_start(self, index: int, call_id: str, name: str) -> list[Out]:
        raise NotImplementedError

    def _on_tool_arguments(self, index: int, fragment: str) -> list[Out]:
        raise NotImplementedError

    def _end(self, finish_reason: str | None) -> list[Out]:
        raise NotImplementedError

    def _error(self, type: str, message: str) -> list[Out]:
        raise NotImplementedError
