"""OpenAI Chat Completions (wire-formats §1) and the model list."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from itertools import takewhile
from typing import Any

from sim.http import Context, Event, Json, SimError, Sse, data_event
from sim.plan import Piece, Plan, Prompt, Tool, fragments, make_plan, new_id, said, text_of

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
DONE = Event(b"data: [DONE]\n\n")
MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-5", "gpt-image-1", "o4-mini")


def error(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error shape; also used by /v1/responses, /v1/models, images, audio and videos."""
    err_type = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    code = code or {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


def prompt(body: dict) -> Prompt:
    messages: list[dict] = body["messages"]
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    pieces = [Piece(json.dumps(t)) for t in tools]
    for message in messages:
        pieces.append(Piece(text_of(message.get("content"))))
        pieces += [Piece(call["function"]["arguments"]) for call in message.get("tool_calls") or []]
    results = [
        text_of(m.get("content")) for m in takewhile(lambda m: m["role"] == "tool", reversed(messages))
    ]
    users = [said(text_of(m.get("content"))) for m in messages if m.get("role") == "user"]
    choice = body.get("tool_choice") or "auto"
    named = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    return Prompt(
        pieces=pieces,
        user_text=next((t for t in reversed(users) if t), ""),
        tool_result=" ".join(reversed(results)) if results else None,
        tools=[Tool(t["function"]["name"], t["function"].get("parameters") or {}) for t in tools],
        tool_mode="required" if named else choice if isinstance(choice, str) else "auto",
        tool_name=named,
        parallel=body.get("parallel_tool_calls") is True,
        thinking=body.get("reasoning_effort") not in (None, "none"),
        max_output=body.get("max_completion_tokens") or body.get("max_tokens"),
        **json_output(body.get("response_format"), schema_field="json_schema"),
    )


def json_output(response_format: Any, *, schema_field: str | None) -> dict:
    """The Prompt fields of an OpenAI ``response_format`` (chat) or ``text.format`` (responses): json_object
    asks for JSON, json_schema for JSON of its schema (nested under ``schema_field`` in chat's)."""
    if not isinstance(response_format, dict) or response_format.get("type") not in ("json_object", "json_schema"):
        return {}
    holder = (response_format.get(schema_field) or {}) if schema_field else response_format
    schema = holder.get("schema") if response_format["type"] == "json_schema" else None
    return {"json_output": True, "output_schema": schema if isinstance(schema, dict) else None}


def usage(plan: Plan) -> dict:
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.output_tokens,
        "total_tokens": plan.prompt_tokens + plan.output_tokens,
        "prompt_tokens_details": {"cached_tokens": plan.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
    }


def handle(body: dict, ctx: Context) -> Json | Sse:
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise SimError(400, "'messages' must be a non-empty array.")
    plan = make_plan(prompt(body), ctx.directives)
    calls = [
        {
            "id": new_id("call_"),
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments_json},
        }
        for call in plan.calls
    ]
    finish = "tool_calls" if calls else "length" if plan.truncated else "stop"
    base = {"id": new_id("chatcmpl-"), "created": int(time.time()), "model": body.get("model")}
    headers = ((b"x-request-id", new_id("req_").encode()),)
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return Sse(_chunks(base, plan, calls, finish, include_usage), headers)
    message = {"role": "assistant", "content": plan.reply if plan.text else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    return Json(
        {**base, "object": "chat.completion", "choices": [choice], "usage": usage(plan)}, headers=headers
    )


def _chunks(base: dict, plan: Plan, calls: list[dict], finish: str, include_usage: bool) -> Iterator[Event]:
    # With include_usage OpenAI puts "usage": null on every chunk, and the real usage on a last one.
    frame = {**base, "object": "chat.completion.chunk", **({"usage": None} if include_usage else {})}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, content: bool = False) -> Event:
        return data_event(
            {
                **frame,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            },
            content,
        )

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for piece in plan.text:
        yield chunk({"content": piece}, content=True)
    for index, call in enumerate(calls):
        # id, type and name only in the first delta of an index: the SDK concatenates repeated strings.
        first = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        yield chunk({"tool_calls": [first]}, content=True)
        for fragment in fragments(call["function"]["arguments"]):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}, content=True)
    yield chunk({}, finish)
    if include_usage:
        yield data_event({**frame, "choices": [], "usage": usage(plan)})
    yield DONE


def list_models(body: dict, ctx: Context) -> Json:
    return Json(
        {
            "object": "list",
            "data": [
                {"id": model, "object": "model", "created": 0, "owned_by": "system"} for model in MODELS
            ],
        }
    )
