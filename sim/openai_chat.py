"""OpenAI Chat Completions, exactly as the official API streams and answers it."""

import asyncio
import json
import os
import time

from sim.text import argument_word, arguments_for, count_tokens, reply_words


def error(message: str, err_type: str) -> dict:
    return {"error": {"message": message, "type": err_type, "param": None, "code": None}}


def _text(content) -> str:
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def _plan(body: dict) -> tuple[list[str], list[dict]]:
    """(reply words, tool calls) for this request, identical for stream and non-stream."""
    messages = body.get("messages") or []
    words = int(body.get("_words", 12))
    last = messages[-1] if messages else {}
    user_text = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    if last.get("role") == "tool":
        return ["Tool result:", _text(last.get("content")), *reply_words(user_text, words)], []
    tools, choice = body.get("tools") or [], body.get("tool_choice", "auto")
    if tools and choice != "none":
        chosen = tools[0]
        if isinstance(choice, dict):
            chosen = next((t for t in tools if t["function"]["name"] == choice["function"]["name"]), chosen)
        function = chosen["function"]
        arguments = json.dumps(arguments_for(function.get("parameters") or {}, user_text))
        return [], [{"id": "call_" + os.urandom(8).hex(), "type": "function",
                     "function": {"name": function["name"], "arguments": arguments}}]
    return reply_words(user_text, words), []


def _usage(body: dict, words: list[str], calls: list[dict], directives: dict) -> dict:
    prompt = json.dumps(body.get("messages") or []) + json.dumps(body.get("tools") or [])
    completion = len(words) + sum(count_tokens(c["function"]["arguments"]) for c in calls)
    reasoning = int(directives.get("reasoning", 0))
    prompt_tokens = count_tokens(prompt)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion + reasoning,
            "total_tokens": prompt_tokens + completion + reasoning,
            "prompt_tokens_details": {"cached_tokens": min(int(directives.get("cached", 0)), prompt_tokens)},
            "completion_tokens_details": {"reasoning_tokens": reasoning}}


async def handle(body: dict, directives: dict, send) -> None:
    if "words" in directives:
        body["_words"] = directives["words"]
    words, calls = _plan(body)
    usage = _usage(body, words, calls, directives)
    base = {"id": "chatcmpl-" + os.urandom(8).hex(), "created": int(time.time()), "model": body.get("model", "")}
    finish = "tool_calls" if calls else "stop"
    if not body.get("stream"):
        message = {"role": "assistant", "content": " ".join(words) if words else None, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        payload = {**base, "object": "chat.completion", "usage": usage,
                   "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}]}
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(payload).encode()})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    delay = int(directives.get("chunk_delay_ms", 0)) / 1000
    cut_after = int(directives.get("cut_after", -1))

    async def emit(delta: dict | None, finish_reason=None, extra: dict | None = None) -> None:
        chunk = {**base, "object": "chat.completion.chunk",
                 "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                 **(extra or {})}
        await send({"type": "http.response.body", "body": b"data: " + json.dumps(chunk).encode() + b"\n\n",
                    "more_body": True})

    await emit({"role": "assistant", "content": ""})
    for i, word in enumerate(words):
        if i == cut_after:
            from sim.app import Abort
            raise Abort("cutting the stream as directed")
        if delay:
            await asyncio.sleep(delay)
        await emit({"content": word if i == 0 else " " + word})
    for index, call in enumerate(calls):
        await emit({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                    "function": {"name": call["function"]["name"], "arguments": ""}}]})
        await emit({"tool_calls": [{"index": index, "function": {"arguments": call["function"]["arguments"]}}]})
    await emit({}, finish)
    if (body.get("stream_options") or {}).get("include_usage"):
        await emit(None, extra={"usage": usage})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
