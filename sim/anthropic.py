"""Anthropic Messages (wire-formats §3), with thinking blocks, prompt caching and token counting."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from sim.http import Context, Event, Json, SimError, Sse, named_event
from sim.plan import Piece, Plan, Prompt, Tool, fragments, make_plan, new_id, said, text_of
from sim.text import count_tokens, signature

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
CACHED: set[str] = set()  # hashes of the prompt prefixes written to the "cache" so far
# Anthropic's minimum cacheable prompt, by model id prefix (first match; others: DEFAULT_CACHE_MINIMUM). A
# shorter prefix is never cached, so a 3-token prompt is never a cache read.
CACHE_MINIMUMS = (
    ("claude-opus-5", 512),
    ("claude-fable", 512),
    ("claude-mythos", 512),
    ("claude-opus-4-7", 2048),
    ("claude-opus-4-6", 4096),
    ("claude-opus-4-5", 4096),
    ("claude-haiku-4-5", 4096),
    ("claude-3-5-haiku", 2048),
    ("claude-3-haiku", 2048),
)
DEFAULT_CACHE_MINIMUM = 1024  # Sonnet, Opus 4.8 and 4.1, and any model not listed


def error(status: int, message: str) -> dict:
    err_type = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": err_type, "message": message}}


def _block_text(block: dict) -> str:
    kind = block.get("type")
    if kind == "tool_use":
        return json.dumps(block.get("input") or {})
    if kind == "tool_result":
        return text_of(block.get("content"))
    return block.get("thinking", "") if kind == "thinking" else block.get("text", "")  # media count nothing


def prompt(body: dict) -> Prompt:
    tools: list[dict] = body.get("tools") or []
    pieces = [Piece(json.dumps(t), "cache_control" in t) for t in tools]
    system = body.get("system") or []
    blocks = [{"type": "text", "text": system}] if isinstance(system, str) else list(system)
    for message in body["messages"]:
        content = message["content"]
        blocks += [{"type": "text", "text": content}] if isinstance(content, str) else content
    pieces += [Piece(_block_text(b), "cache_control" in b) for b in blocks]
    last = body["messages"][-1]["content"]
    results = [b for b in last if b.get("type") == "tool_result"] if isinstance(last, list) else []
    user_texts = [said(text_of(m["content"])) for m in body["messages"] if m.get("role") == "user"]
    choice = body.get("tool_choice") or {"type": "auto"}
    mode = {"any": "required", "tool": "required"}.get(choice["type"], choice["type"])
    return Prompt(
        pieces=pieces,
        user_text=next((t for t in reversed(user_texts) if t), ""),
        tool_result=" ".join(text_of(b.get("content")) for b in results) if results else None,
        tools=[Tool(t["name"], t.get("input_schema") or {}) for t in tools if "input_schema" in t],
        tool_mode=mode,
        tool_name=choice.get("name"),
        parallel=choice.get("disable_parallel_tool_use") is False,
        thinking=(body.get("thinking") or {}).get("type") == "enabled",
        max_output=body.get("max_tokens"),
        **_json_output((body.get("output_config") or {}).get("format") or body.get("output_format")),
    )


def _json_output(output_format: Any) -> dict:
    """Structured outputs: ``output_config.format`` (or the beta's ``output_format``) of type json_schema."""
    if not isinstance(output_format, dict) or output_format.get("type") != "json_schema":
        return {}
    schema = output_format.get("schema")
    return {"json_output": True, "output_schema": schema if isinstance(schema, dict) else None}


def cache_minimum(model: str) -> int:
    return next((tokens for prefix, tokens in CACHE_MINIMUMS if model.startswith(prefix)), DEFAULT_CACHE_MINIMUM)


def _cache(model: str, pieces: list[Piece]) -> tuple[int, int]:
    """(read, written) tokens: the prompt up to the last cache_control breakpoint is cached.

    Like Anthropic, the longest already-cached prefix ending at any block before that breakpoint is read
    (so a growing conversation reads its previous turn), the rest up to the breakpoint is written, and
    every breakpoint's prefix at least the model's minimum cacheable length long is stored; a prompt shorter
    than that up to its last breakpoint is neither read nor written.
    """
    marks = {i for i, piece in enumerate(pieces) if piece.breakpoint}
    if not marks:
        return 0, 0
    minimum = cache_minimum(model)
    running, tokens, read = hashlib.sha256(model.encode()), 0, 0
    for index, piece in enumerate(pieces[: max(marks) + 1]):
        running.update(json.dumps(piece.text).encode())
        tokens += count_tokens(piece.text)
        digest = running.hexdigest()
        if digest in CACHED:
            read = tokens
        if index in marks and tokens >= minimum:
            CACHED.add(digest)
    return (read, tokens - read) if tokens >= minimum else (0, 0)


def count(body: dict, ctx: Context) -> Json:
    """POST /v1/messages/count_tokens: the prompt a call with this body would be billed as (its input,
    cache read and cache write tokens together)."""
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise SimError(400, "messages: at least one message is required")
    if unknown := sorted(set(body) & {"max_tokens", "stream"}):
        raise SimError(400, f"{unknown[0]}: Extra inputs are not permitted")
    return Json({"input_tokens": prompt(body).tokens})


def handle(body: dict, ctx: Context) -> Json | Sse:
    if not isinstance(body.get("max_tokens"), int):
        raise SimError(400, "max_tokens: Field required")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise SimError(400, "messages: at least one message is required")
    thinking = body.get("thinking") or {}
    if (
        thinking.get("type") == "enabled"
        and not 1024 <= thinking.get("budget_tokens", 0) < body["max_tokens"]
    ):
        raise SimError(400, "thinking.budget_tokens must be at least 1024 and less than max_tokens")
    request = prompt(body)
    plan = make_plan(request, ctx.directives)
    read, written = _cache(body.get("model") or "", request.pieces)
    usage = {
        "input_tokens": plan.prompt_tokens - read - written,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": plan.output_tokens,
    }
    content: list[dict[str, Any]] = []
    if plan.thinking:
        text = "".join(plan.thinking)
        content.append({"type": "thinking", "thinking": text, "signature": signature(text)})
    if plan.text:
        content.append({"type": "text", "text": plan.reply})
    content += [
        {"type": "tool_use", "id": new_id("toolu_"), "name": call.name, "input": call.arguments}
        for call in plan.calls
    ]
    stop = "tool_use" if plan.calls else "max_tokens" if plan.truncated else "end_turn"
    message = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }
    headers = ((b"request-id", new_id("req_").encode()),)
    return Sse(_events(message, plan), headers) if body.get("stream") else Json(message, headers=headers)


def _events(message: dict, plan: Plan) -> Iterator[Event]:
    def event(kind: str, content: bool = False, **fields: Any) -> Event:
        return named_event(kind, {"type": kind, **fields}, content)

    def delta(index: int, **fields: Any) -> Event:
        return event("content_block_delta", True, index=index, delta=fields)

    # Like Anthropic, message_start reports the input side and a token of output; message_delta the totals.
    usage = message["usage"]
    yield event(
        "message_start",
        message={**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}},
    )
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        empty = {
            "thinking": {"thinking": "", "signature": ""},
            "text": {"text": ""},
            "tool_use": {"input": {}},
        }[kind]
        yield event("content_block_start", index=index, content_block={**block, **empty})
        if index == 0:
            yield event("ping")
        if kind == "thinking":
            yield from (delta(index, type="thinking_delta", thinking=piece) for piece in plan.thinking)
            yield delta(index, type="signature_delta", signature=block["signature"])
        elif kind == "text":
            yield from (delta(index, type="text_delta", text=piece) for piece in plan.text)
        else:
            partial = fragments(json.dumps(block["input"]))
            yield from (delta(index, type="input_json_delta", partial_json=piece) for piece in partial)
        yield event("content_block_stop", index=index)
    yield event(
        "message_delta", delta={"stop_reason": message["stop_reason"], "stop_sequence": None}, usage=usage
    )
    yield event("message_stop")
