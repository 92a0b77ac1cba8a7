"""Upstream adapters: how to ask each wire format an upstream speaks, and how to read its answers.

A call reaches a target either natively (the client's format is the upstream's: the body is passed on
with the model id swapped) or through OpenAI chat, the pivot every translator in gateway.formats
speaks. ``upstream_format`` decides per target; the adapter builds the HTTP request and reads usage
from answers and streams, and for translated calls turns them into chat.
"""

import json

from gateway.catalog import Target
from gateway.formats.anthropic import AnthropicToChatStream, anthropic_request_from_chat, chat_response_from_anthropic
from gateway.formats.common import SSEEvent
from gateway.formats.gemini import GeminiToChatStream, chat_response_from_gemini, gemini_request_from_chat
from gateway.sse import event_field
from billing.tokens import TokenUsage

CHAT, RESPONSES, ANTHROPIC, GEMINI = "chat", "responses", "anthropic", "gemini"
ANTHROPIC_VERSION = "2023-06-01"
# Gateway-internal chat extensions (gateway.formats.common) that a strict OpenAI upstream would refuse.
_CHAT_EXTENSIONS = ("reasoning_content", "thinking_blocks")


def upstream_format(target: Target, client_format: str) -> str:
    if target.kind == ANTHROPIC:
        return ANTHROPIC
    if target.kind == GEMINI:
        return GEMINI
    return RESPONSES if client_format == RESPONSES and target.responses else CHAT


def load_json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _dump(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


# --- requests ----------------------------------------------------------------------------------------

def chat_for_upstream(chat: dict) -> dict:
    """A translated chat request without the gateway's own extensions."""
    messages = []
    for message in chat.get("messages") or []:
        if any(field in message for field in _CHAT_EXTENSIONS) or isinstance(message.get("content"), list):
            message = {k: v for k, v in message.items() if k not in _CHAT_EXTENSIONS}
            if isinstance(message.get("content"), list):
                message["content"] = [_without_cache_control(part) for part in message["content"]]
        messages.append(message)
    out = {**chat, "messages": messages}
    if chat.get("tools"):
        out["tools"] = [_without_cache_control(tool) for tool in chat["tools"]]
    return out


def _without_cache_control(item: object) -> object:
    return {k: v for k, v in item.items() if k != "cache_control"} if isinstance(item, dict) else item


def with_cache_breakpoint(body: dict) -> dict:
    """Hypereal Cache: mark the end of the prompt for Anthropic's prompt cache when the client marked nothing.

    One breakpoint on the last block of the last message caches everything before it (tools, system,
    earlier turns), which is what a growing conversation re-sends.
    """
    messages = body.get("messages") or []
    if not messages or _has_cache_control(body):
        return body
    last = messages[-1]
    content = last.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
    if not blocks or blocks[-1].get("type") in ("thinking", "redacted_thinking"):
        return body  # thinking blocks cannot carry cache_control
    blocks[-1] = {**blocks[-1], "cache_control": {"type": "ephemeral"}}
    return {**body, "messages": [*messages[:-1], {**last, "content": blocks}]}


def _has_cache_control(body: dict) -> bool:
    if any("cache_control" in tool for tool in body.get("tools") or [] if isinstance(tool, dict)):
        return True
    system = body.get("system")
    if isinstance(system, list) and any("cache_control" in block for block in system if isinstance(block, dict)):
        return True
    return any("cache_control" in block for message in body.get("messages") or []
               if isinstance(message.get("content"), list)
               for block in message["content"] if isinstance(block, dict))


def build_request(fmt: str, target: Target, body: dict, *, stream: bool, cache: bool,
                  client_headers: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
    """URL, headers and body of one attempt. ``body`` is in ``fmt`` already (native or translated)."""
    base = target.base_url
    if fmt == CHAT:
        payload = {**body, "model": target.upstream_model}
        if stream:  # always ask for usage: a stream is billed from its final usage block
            payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return f"{base}/chat/completions", _bearer(target), _dump(payload)
    if fmt == RESPONSES:
        return f"{base}/responses", _bearer(target), _dump({**body, "model": target.upstream_model})
    if fmt == ANTHROPIC:
        payload = {**body, "model": target.upstream_model}
        if cache:
            payload = with_cache_breakpoint(payload)
        headers = {"x-api-key": target.api_key, "content-type": "application/json",
                   "anthropic-version": client_headers.get("anthropic-version") or ANTHROPIC_VERSION}
        if beta := client_headers.get("anthropic-beta"):
            headers["anthropic-beta"] = beta
        return f"{base}/messages", headers, _dump(payload)
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    headers = {"x-goog-api-key": target.api_key, "content-type": "application/json"}
    return f"{base}/models/{target.upstream_model}:{method}", headers, _dump(body)


def _bearer(target: Target) -> dict[str, str]:
    return {"authorization": f"Bearer {target.api_key}", "content-type": "application/json"}


def request_from_chat(fmt: str, chat: dict) -> dict:
    """The pivot request in the upstream's format."""
    if fmt == ANTHROPIC:
        return anthropic_request_from_chat(chat)
    if fmt == GEMINI:
        return gemini_request_from_chat(chat)
    return chat_for_upstream(chat)


# --- answers -----------------------------------------------------------------------------------------

def usage_of(fmt: str, data: dict) -> TokenUsage:
    if fmt == CHAT:
        return TokenUsage.from_openai_chat(data.get("usage"))
    if fmt == RESPONSES:
        return TokenUsage.from_responses(data.get("usage"))
    if fmt == ANTHROPIC:
        return TokenUsage.from_anthropic(data.get("usage"))
    return TokenUsage.from_gemini(data.get("usageMetadata"))


def chat_from_answer(fmt: str, data: dict, model: str) -> dict:
    if fmt == ANTHROPIC:
        return chat_response_from_anthropic(data)
    if fmt == GEMINI:
        return chat_response_from_gemini(data, model=model)
    return data


# --- streams -----------------------------------------------------------------------------------------

def sse_item(fmt: str, raw: bytes) -> SSEEvent | dict | None:
    """One raw SSE event as the translators take it: (event name, data) or data; None for comments."""
    data = event_field(raw, b"data")
    if data is None:
        return None
    if fmt in (CHAT, GEMINI) and data == b"[DONE]":
        return {"done": True}
    payload = load_json(data)
    if not isinstance(payload, dict):
        return None  # not an event any translator could read
    if fmt in (CHAT, GEMINI):
        return payload
    name = event_field(raw, b"event")
    return (name.decode() if name else payload.get("type", "")), payload


def chat_output_chars(chunk: dict) -> int:
    """Characters of output in one chat.completion.chunk: text, reasoning and tool-call arguments."""
    produced = 0
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        produced += len(delta.get("content") or "") + len(delta.get("reasoning_content") or "")
        for call in delta.get("tool_calls") or ():
            produced += len((call.get("function") or {}).get("arguments") or "")
    return produced


class ChatDecoder:
    """A chat upstream's stream as chat chunks (the pivot already): it only watches for usage and the end."""

    def __init__(self) -> None:
        self.usage: TokenUsage | None = None
        self.finished = False

    def feed(self, item: dict) -> list[dict]:
        if item.get("done"):
            self.finished = True
            return []
        if item.get("usage"):
            self.usage = TokenUsage.from_openai_chat(item["usage"])
        return [item]

    def finish(self) -> list[dict]:
        return []


class _WriterDecoder:
    """Anthropic or Gemini stream → chat chunks, through the format's ChatStreamWriter."""

    def __init__(self, writer, ended) -> None:
        self._writer, self._ended = writer, ended
        self.finished = False

    @property
    def usage(self) -> TokenUsage | None:
        return self._writer.usage

    def feed(self, item) -> list[dict]:
        self.finished = self.finished or self._ended(item)
        return self._writer.feed(item)

    def finish(self) -> list[dict]:
        return self._writer.finish()


def chat_decoder(fmt: str, model: str):
    if fmt == ANTHROPIC:
        return _WriterDecoder(AnthropicToChatStream(model),
                              lambda item: item[1].get("type") in ("message_delta", "message_stop"))
    if fmt == GEMINI:
        return _WriterDecoder(GeminiToChatStream(model), lambda item: any(
            c.get("finishReason") for c in item.get("candidates") or ()))
    return ChatDecoder()
