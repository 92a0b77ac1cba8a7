"""OpenAI Responses (wire-formats §2): a response object, or its SSE event sequence with a global
``sequence_number``. Errors use OpenAI's shape (``openai_chat.error``)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

from sim import openai_chat
from sim.http import Context, Event, Json, Sse, named_event
from sim.plan import Piece, Plan, Prompt, Tool, fragments, make_plan, new_id, said, text_of

TEXT_PARTS = ("input_text", "output_text", "text")


def _output_text(output: Any) -> str:
    """A function_call_output's output: a string, or input_text parts."""
    if isinstance(output, str):
        return output
    return text_of(output, TEXT_PARTS) if isinstance(output, list) else json.dumps(output)


def prompt(body: dict) -> Prompt:
    given = body.get("input") or []
    items: list[dict] = [{"role": "user", "content": given}] if isinstance(given, str) else given
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    pieces = [Piece(json.dumps(t)) for t in tools] + [Piece(body.get("instructions") or "")]
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            pieces.append(Piece(text_of(item.get("content"), TEXT_PARTS)))
        elif kind == "function_call":
            pieces.append(Piece(item.get("arguments") or ""))
        elif kind == "function_call_output":
            pieces.append(Piece(_output_text(item.get("output"))))
    trailing = itertools.takewhile(lambda i: i.get("type") == "function_call_output", reversed(items))
    results = [_output_text(i.get("output")) for i in trailing][::-1]
    users = [
        said(text_of(i.get("content"), TEXT_PARTS))
        for i in items
        if i.get("type", "message") == "message" and i.get("role") == "user"
    ]
    choice = body.get("tool_choice") or "auto"
    named = choice.get("name") if isinstance(choice, dict) else None
    reasoning = body.get("reasoning")
    return Prompt(
        pieces=pieces,
        user_text=next((t for t in reversed(users) if t), ""),
        tool_result=" ".join(results) if results else None,
        tools=[Tool(t["name"], t.get("parameters") or {}) for t in tools],
        tool_mode="required" if named else choice if isinstance(choice, str) else "auto",
        tool_name=named,
        parallel=body.get("parallel_tool_calls") is True,
        thinking=reasoning is not None and reasoning.get("effort") != "none",
        max_output=body.get("max_output_tokens"),
        **openai_chat.json_output((body.get("text") or {}).get("format"), schema_field=None),
    )


def usage(plan: Plan) -> dict:
    return {
        "input_tokens": plan.prompt_tokens,
        "input_tokens_details": {"cached_tokens": plan.cached_tokens},
        "output_tokens": plan.output_tokens,
        "output_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
        "total_tokens": plan.prompt_tokens + plan.output_tokens,
    }


def _output(plan: Plan) -> list[dict]:
    status = "incomplete" if plan.truncated else "completed"
    output: list[dict] = []
    if plan.reasoning_tokens:
        output.append({"type": "reasoning", "id": new_id("rs_"), "summary": []})
    if plan.text:
        part = {"type": "output_text", "text": plan.reply, "annotations": [], "logprobs": []}
        output.append(
            {
                "type": "message",
                "id": new_id("msg_"),
                "status": status,
                "role": "assistant",
                "content": [part],
            }
        )
    output += [
        {
            "type": "function_call",
            "id": new_id("fc_"),
            "call_id": new_id("call_"),
            "name": call.name,
            "arguments": call.arguments_json,
            "status": "completed",
        }
        for call in plan.calls
    ]
    return output


def handle(body: dict, ctx: Context) -> Json | Sse:
    plan = make_plan(prompt(body), ctx.directives)
    reasoning = body.get("reasoning") or {}
    response = {
        "id": new_id("resp_"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if plan.truncated else "completed",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if plan.truncated else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model"),
        "output": _output(plan),
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage(plan),
        "user": None,
        "metadata": body.get("metadata") or {},
    }
    headers = ((b"x-request-id", new_id("req_").encode()),)
    if body.get("stream") or ctx.directives.always_stream:
        return Sse(_events(response, plan), headers)
    return Json(response, headers=headers)


def _events(response: dict, plan: Plan) -> Iterator[Event]:
    numbers = itertools.count()

    def event(kind: str, content: bool = False, **fields: Any) -> Event:
        return named_event(kind, {"type": kind, "sequence_number": next(numbers), **fields}, content)

    started = {**response, "status": "in_progress", "incomplete_details": None, "output": [], "usage": None}
    yield event("response.created", response=started)
    yield event("response.in_progress", response=started)
    for index, item in enumerate(response["output"]):
        at = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            part = item["content"][0]
            yield event(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            yield event("response.content_part.added", **at, content_index=0, part={**part, "text": ""})
            for piece in plan.text:
                yield event(
                    "response.output_text.delta", True, **at, content_index=0, delta=piece, logprobs=[]
                )
            yield event("response.output_text.done", **at, content_index=0, text=part["text"], logprobs=[])
            yield event("response.content_part.done", **at, content_index=0, part=part)
        elif item["type"] == "function_call":
            yield event(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            for fragment in fragments(item["arguments"]):
                yield event("response.function_call_arguments.delta", True, **at, delta=fragment)
            yield event(
                "response.function_call_arguments.done", **at, name=item["name"], arguments=item["arguments"]
            )
        else:  # reasoning: no summary requested, so nothing streams inside it
            yield event("response.output_item.added", output_index=index, item=item)
        yield event("response.output_item.done", output_index=index, item=item)
    yield event("response.incomplete" if plan.truncated else "response.completed", response=response)
