"""OpenAI Chat Completions: the gateway's pivot, as a client's format and as an upstream's.

Every translator in gateway.formats goes through chat, so chat clients and chat upstreams meet as they
are. A request translated from another format still goes through ``chat_for_upstream``, which takes out
the gateway-internal extensions (gateway.formats.common) that a strict OpenAI upstream would refuse.
"""

import re

from billing.tokens import TokenUsage
from gateway.catalog import Target
from gateway.formats.base import ClientRequest, Observer, Price, WireFormat, client_request, json_bytes
from gateway.formats.checks import boolean, checked, integer, named, number, objects, string, with_role
from gateway.sse import encode_data

CHAT_EXTENSIONS = ("reasoning_content", "thinking_blocks")


# Usage: the gateway's own convention (cached tokens within the prompt, reasoning within the output)

def usage_from_chat(usage: dict | None) -> TokenUsage:
    if not usage:
        return TokenUsage()
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return TokenUsage(
        input=int(usage.get("prompt_tokens") or 0),
        cached_read=int(prompt_details.get("cached_tokens") or 0),
        cache_write=int(prompt_details.get("cache_write_tokens") or 0),
        output=int(usage.get("completion_tokens") or 0),
        reasoning=int(completion_details.get("reasoning_tokens") or 0),
    )


def chat_usage(usage: TokenUsage) -> dict:
    return {
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.total,
        "prompt_tokens_details": {"cached_tokens": usage.cached_read,
                                  "cache_write_tokens": usage.cache_write},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning},
    }


# Chunks and requests

def chat_output_chars(chunk: dict) -> int:
    """Characters of output in one chat.completion.chunk: text, reasoning and tool-call arguments."""
    produced = 0
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        produced += len(delta.get("content") or "") + len(delta.get("reasoning_content") or "")
        for call in delta.get("tool_calls") or ():
            produced += len((call.get("function") or {}).get("arguments") or "")
    return produced


def chat_stream_error(type: str, message: str) -> dict:
    """A mid-stream ``data: {"error": ...}``, which the openai SDK raises as an APIError."""
    return {"error": {"message": message, "type": type, "param": None, "code": None}}


def chat_for_upstream(chat: dict) -> dict:
    """A translated chat request without the gateway's own extensions."""
    messages = []
    for message in chat.get("messages") or []:
        if any(field in message for field in CHAT_EXTENSIONS) or isinstance(message.get("content"), list):
            message = {k: v for k, v in message.items() if k not in CHAT_EXTENSIONS}
            if isinstance(message.get("content"), list):
                message["content"] = [_without_cache_control(part) for part in message["content"]]
        messages.append(message)
    out = {**chat, "messages": messages}
    if chat.get("tools"):
        out["tools"] = [_without_cache_control(tool) for tool in chat["tools"]]
    return out


def _without_cache_control(item: object) -> object:
    return {k: v for k, v in item.items() if k != "cache_control"} if isinstance(item, dict) else item


def bearer_headers(target: Target) -> dict[str, str]:
    return {"authorization": f"Bearer {target.api_key}", "content-type": "application/json"}


# Streams

# A usage key with a value (not null): a key, since a quote inside a string is escaped. Its own pattern,
# whose literal start the regex engine searches for fast, unlike an alternation's.
_USAGE_WITH_VALUE = re.compile(rb'"usage"\s*:\s*[^n\s]')


class ChatObserver(Observer):
    NOT_PLAIN = (b'"error"', b"[DONE]")  # and a usage with a value: ``_plain_until``

    def __init__(self, price: Price, wants_usage: bool) -> None:
        super().__init__(price)
        self.wants_usage = wants_usage

    def _plain_until(self, raw: bytes) -> int:
        until = super()._plain_until(raw)
        usage = _USAGE_WITH_VALUE.search(raw, 0, until)
        return usage.start() if usage else until

    def _other(self, raw: bytes, data: bytes | None) -> bytes:
        self.finished = self.finished or data == b"[DONE]"
        return raw  # a comment, [DONE], or data not ours to judge: passed on untouched

    def _watch(self, raw: bytes, chunk: dict) -> bytes:
        if chunk.get("error"):
            self.failed = True
            return raw
        if chunk.get("usage"):
            self.usage = usage_from_chat(chunk["usage"])
            if self.wants_usage:
                chunk["usage"]["cost"] = self.price(self.usage)
            else:
                del chunk["usage"]
            return encode_data(chunk) if self.wants_usage or chunk.get("choices") else b""
        self.produced += chat_output_chars(chunk)
        return raw


class ChatToChat:
    """A translated upstream's chat chunks as a chat client gets them, ending in ``data: [DONE]``."""

    def __init__(self, wants_usage: bool) -> None:
        self.wants_usage = wants_usage
        self._failed = False

    def feed(self, chunk: dict) -> list[dict]:
        if chunk.get("error"):
            self._failed = True
        elif chunk.get("usage") and not self.wants_usage:
            chunk = {k: v for k, v in chunk.items() if k != "usage"}
            if not chunk.get("choices"):
                return []
        return [chunk]

    def finish(self) -> list[dict | str]:
        return [] if self._failed else ["[DONE]"]  # encode_data("[DONE]") is the `data: [DONE]` line

    def error(self, type: str, message: str) -> list[dict]:
        return [chat_stream_error(type, message)]


class ChatDecoder:
    """A chat upstream's stream as chat chunks (the pivot already): it watches for usage and the end, and
    keeps the chunks from the finish reason on for ``finish()``."""

    has_end_event = True  # [DONE], after the usage chunk

    def __init__(self) -> None:
        self.usage: TokenUsage | None = None
        self.finished = False
        self._ending: list[dict] = []

    def feed(self, item: dict) -> list[dict]:
        if item.get("done"):
            self.finished = True
            return []
        if item.get("usage"):
            self.usage = usage_from_chat(item["usage"])
        ends = item.get("usage") or any(choice.get("finish_reason") for choice in item.get("choices") or ())
        if ends or self._ending:
            self._ending.append(item)
            return []
        return [item]

    def finish(self) -> list[dict]:
        ending, self._ending = self._ending, []
        return ending


def _chat_tool(tool: dict) -> str | None:
    """OpenAI's tools name their type; a function tool names its function."""
    if not isinstance(tool.get("type"), str):
        return "with a `type` string"
    return named(("function",))(tool) if tool["type"] == "function" else None


CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
CHAT_FIELDS = {
    "model": string,
    "messages": objects(with_role(CHAT_ROLES, (str, list), content_optional=("assistant", "function")),
                        non_empty=True),
    "max_tokens": integer(1), "max_completion_tokens": integer(1), "n": integer(1, 128),
    "temperature": number(0, 2), "top_p": number(0, 1), "stream": boolean, "tools": objects(_chat_tool),
}


class ChatFormat(WireFormat):
    def read(self, body: dict, *, model: object = None, stream: bool | None = None) -> ClientRequest:
        checked(body, CHAT_FIELDS)
        field = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        return client_request(
            body, model=body.get("model"), stream=bool(body.get("stream")) if stream is None else stream,
            max_output=body.get(field), max_output_field=field, choices=body.get("n", 1),
            wants_usage=bool((body.get("stream_options") or {}).get("include_usage")))

    def to_chat(self, request: ClientRequest) -> dict:
        return request.body

    def answer_from_chat(self, chat: dict, model: str) -> dict:
        return {**chat, "model": model}

    def observer(self, request: ClientRequest, price: Price) -> Observer:
        return ChatObserver(price, request.wants_usage)

    def translator(self, request: ClientRequest, model: str) -> ChatToChat:
        return ChatToChat(request.wants_usage)

    def stamp(self, item, cost: float) -> None:
        if isinstance(item, dict) and item.get("usage"):
            item["usage"]["cost"] = cost

    def stream_error(self, observer: Observer, type: str, message: str) -> bytes:
        return encode_data(chat_stream_error(type, message))

    def build_request(self, target: Target, body: dict, *, stream: bool, cache: bool,
                      client_headers: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
        payload = {**body, "model": target.upstream_model}
        if stream:  # always ask for usage: a stream is billed from its final usage block
            payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return f"{target.base_url}/chat/completions", bearer_headers(target), json_bytes(payload)

    def request_from_chat(self, chat: dict) -> dict:
        return chat_for_upstream(chat)

    def usage_of(self, answer: dict) -> TokenUsage:
        return usage_from_chat(answer.get("usage"))

    def chat_from_answer(self, answer: dict, model: str) -> dict:
        return answer

    def chat_decoder(self, model: str) -> ChatDecoder:
        return ChatDecoder()


CHAT = ChatFormat()
