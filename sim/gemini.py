"""Google Gemini generateContent / streamGenerateContent (wire-formats §4), camelCase on the wire.

A stream is nothing but ``data: <full response JSON>`` events: google-genai parses every other line as
JSON and fails, so there are no comments, names or ``[DONE]``.

Image models (an id containing "image" or "t2i") answer a text part and an ``inlineData`` PNG part whose size
follows ``generationConfig.imageConfig.aspectRatio`` (1:1 by default); responseModalities ["IMAGE"] drops the
text. Each image costs IMAGE_TOKENS output tokens, reported by modality.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

from sim import media
from sim.http import Context, Json, SimError, Sse, data_event
from sim.plan import Piece, Plan, Prompt, Tool, make_plan, new_id, said

STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error(status: int, message: str) -> dict:
    fallback = "INTERNAL" if status >= 500 else "INVALID_ARGUMENT"
    return {"error": {"code": status, "message": message, "status": STATUSES.get(status, fallback)}}


def _get(obj: dict, name: str) -> Any:
    """A request field by its camelCase or its snake_case name: Gemini parses proto JSON, which accepts
    both, and google-genai sends some nested fields (thinking_budget, parameters_json_schema) snake_case."""
    return obj.get(name, obj.get(re.sub(r"[A-Z]", lambda m: "_" + m[0].lower(), name)))


def _part_text(part: dict) -> str:
    if (call := _get(part, "functionCall")) is not None:
        return json.dumps(call.get("args") or {})
    if (result := _get(part, "functionResponse")) is not None:
        return json.dumps(result.get("response") or {})
    return part.get("text", "")  # inlineData and other media count nothing


def _texts(content: dict) -> str:
    return " ".join(p["text"] for p in content.get("parts") or [] if "text" in p and not p.get("thought"))


def prompt(body: dict) -> Prompt:
    contents: list[dict] = body["contents"]
    tools: list[dict] = body.get("tools") or []
    system = _get(body, "systemInstruction") or {}
    parts = [*(system.get("parts") or []), *(p for c in contents for p in c.get("parts") or [])]
    pieces = [Piece(json.dumps(t)) for t in tools] + [Piece(_part_text(p)) for p in parts]
    results = [r for p in contents[-1].get("parts") or [] if (r := _get(p, "functionResponse")) is not None]
    users = [said(_texts(c)) for c in contents if c.get("role", "user") == "user"]
    calling = _get(_get(body, "toolConfig") or {}, "functionCallingConfig") or {}
    mode = str(calling.get("mode") or "AUTO").upper()
    generation = _get(body, "generationConfig") or {}
    thinking = _get(generation, "thinkingConfig")
    declarations = [f for t in tools for f in _get(t, "functionDeclarations") or []]
    return Prompt(
        pieces=pieces,
        user_text=next((t for t in reversed(users) if t), ""),
        tool_result=" ".join(json.dumps(r.get("response") or {}) for r in results) if results else None,
        tools=[
            Tool(f["name"], f.get("parameters") or _get(f, "parametersJsonSchema") or {})
            for f in declarations
        ],
        tool_mode="none" if mode == "NONE" else "required" if mode == "ANY" else "auto",
        tool_name=next(iter(_get(calling, "allowedFunctionNames") or []), None),
        thinking=thinking is not None and _get(thinking, "thinkingBudget") != 0,
        max_output=_get(generation, "maxOutputTokens"),
        json_output=_get(generation, "responseMimeType") == "application/json",
        output_schema=_get(generation, "responseJsonSchema") or _get(generation, "responseSchema"),
    )


def usage(plan: Plan, candidates: int) -> dict:
    """usageMetadata with ``candidates`` output tokens so far; zero counts are omitted, as Gemini does."""
    metadata = {
        "promptTokenCount": plan.prompt_tokens,
        "candidatesTokenCount": candidates,
        "totalTokenCount": plan.prompt_tokens + candidates + plan.reasoning_tokens,
    }
    if plan.cached_tokens:
        metadata["cachedContentTokenCount"] = plan.cached_tokens
    if plan.reasoning_tokens:
        metadata["thoughtsTokenCount"] = plan.reasoning_tokens
    return metadata


IMAGE_TOKENS = 1290  # what gemini-2.5-flash-image bills an image of any aspect ratio
ASPECT_RATIOS = {  # aspect ratio -> the image's width and height
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}


def handle(body: dict, ctx: Context) -> Json | Sse:
    if not isinstance(body.get("contents"), list) or not body["contents"]:
        raise SimError(400, "* GenerateContentRequest.contents: contents is not specified")
    model = ctx.params["model"]
    if "image" in model or "t2i" in model:
        return _image(body, ctx)
    plan = make_plan(prompt(body), ctx.directives)
    # Thought parts appear only when asked for; thoughtsTokenCount is reported regardless.
    thinking_config = _get(_get(body, "generationConfig") or {}, "thinkingConfig") or {}
    thoughts = plan.thinking if _get(thinking_config, "includeThoughts") else []
    calls = [{"functionCall": {"name": call.name, "args": call.arguments}} for call in plan.calls]
    finish = "MAX_TOKENS" if plan.truncated else "STOP"
    frame = {"modelVersion": ctx.params["model"], "responseId": new_id("")}

    def response(parts: list[dict], candidates: int, last: bool) -> dict:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if last:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "usageMetadata": usage(plan, candidates), **frame}

    whole = plan.output_tokens - plan.reasoning_tokens  # candidatesTokenCount excludes thoughts
    if ctx.params["method"] == "generateContent":
        parts = (
            ([{"text": "".join(thoughts), "thought": True}] if thoughts else [])
            + ([{"text": plan.reply}] if plan.text else [])
            + calls
        )
        return Json(response(parts, whole, True))

    def chunks() -> Iterator[dict]:
        # One chunk per thought word and per reply word, calls whole; usage is cumulative, the last exact.
        steps = [([{"text": t, "thought": True}], 0) for t in thoughts]
        steps += [([{"text": piece}], n) for n, piece in enumerate(plan.text, 1)]
        steps += [(calls, whole)] if calls else []
        steps = steps or [([], whole)]  # an output cap of 0 still ends the stream with a finish reason
        for number, (parts, candidates) in enumerate(steps, 1):
            yield response(parts, candidates, number == len(steps))

    if ctx.query.get("alt") != "sse":  # without alt=sse Gemini streams one JSON array
        return Json(list(chunks()))
    return Sse(data_event(chunk, content=True) for chunk in chunks())


def _image(body: dict, ctx: Context) -> Json | Sse:
    """An image model's answer: [text,] then the picture, usage split by modality."""
    request = prompt(body)
    plan = make_plan(request, ctx.directives)
    generation = _get(body, "generationConfig") or {}
    ratio = _get(_get(generation, "imageConfig") or {}, "aspectRatio") or "1:1"
    if ratio not in ASPECT_RATIOS:
        raise SimError(
            400,
            f"* GenerateContentRequest.generation_config.image_config.aspect_ratio: {ratio} is not supported",
        )
    width, height = ASPECT_RATIOS[ratio]
    modalities = [str(m).upper() for m in _get(generation, "responseModalities") or ["TEXT", "IMAGE"]]
    texts = [{"text": plan.reply}] if "TEXT" in modalities else []
    png = media.image(width, height, f"{request.user_text}/{ratio}")
    picture = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode()}}
    text_tokens = len(plan.text) if texts else 0
    usage = {
        "promptTokenCount": plan.prompt_tokens,
        "candidatesTokenCount": text_tokens + IMAGE_TOKENS,
        "totalTokenCount": plan.prompt_tokens + text_tokens + IMAGE_TOKENS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": plan.prompt_tokens}],
        "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": IMAGE_TOKENS}]
        + ([{"modality": "TEXT", "tokenCount": text_tokens}] if texts else []),
    }
    frame = {"modelVersion": ctx.params["model"], "responseId": new_id("")}

    def response(parts: list[dict], last: bool) -> dict:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if last:
            candidate["finishReason"] = "STOP"
        return {"candidates": [candidate], "usageMetadata": usage, **frame}

    if ctx.params["method"] == "generateContent":
        return Json(response([*texts, picture], True))
    chunks = [response(texts, False)] if texts else []
    chunks.append(response([picture], True))
    if ctx.query.get("alt") != "sse":
        return Json(chunks)
    return Sse(data_event(chunk, content=True) for chunk in chunks)
