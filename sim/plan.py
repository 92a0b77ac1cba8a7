"""The format-neutral core: each wire format reads its request into a ``Prompt``, ``make_plan`` decides
the answer once, and the format renders that one ``Plan`` as JSON or as a stream. Stream and non-stream
therefore carry the same text, calls and usage by construction.

Prompt tokens: every format lists the request's textual content as ``Piece``s, in Anthropic's cache
order (tools, then system, then messages), and the prompt costs ``sum(count_tokens(piece.text))``:
- each offered tool definition: ``json.dumps`` of the tool object exactly as sent;
- each system text (string, or each text block / part);
- each message text (string content, or each text part/block), assistant tool-call arguments
  (OpenAI: the arguments string; others: ``json.dumps`` of the object), tool results as stringified
  by ``text_of`` / ``json.dumps``, thinking text. Images and other media count nothing.
Output tokens: one per reply chunk (word), plus ``count_tokens`` of each call's arguments JSON, plus
reasoning tokens.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from sim.http import Directives
from sim.text import arguments_for, chunks, count_tokens, reply_words, thinking_words

ToolMode = Literal["auto", "none", "required"]


@dataclass(frozen=True)
class Piece:
    text: str
    breakpoint: bool = False  # Anthropic cache_control: the prompt up to here may be cached


@dataclass(frozen=True)
class Tool:
    name: str
    schema: dict


@dataclass
class Prompt:
    pieces: list[Piece]
    user_text: str = ""  # what the user said last (``said``): seeds the reply and the tool calls
    tool_result: str | None = None  # set when the conversation ends with tool results
    tools: list[Tool] = field(default_factory=list)
    tool_mode: ToolMode = "auto"
    tool_name: str | None = None  # a tool the client forces
    parallel: bool = False  # explicitly allowed: call every offered tool
    thinking: bool = False
    max_output: int | None = None
    json_output: bool = False  # the client asked for JSON (a response format or MIME type)
    output_schema: dict | None = None  # ...satisfying this JSON (or Gemini OpenAPI) schema

    @property
    def tokens(self) -> int:
        return sum(count_tokens(piece.text) for piece in self.pieces)


@dataclass(frozen=True)
class Call:
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments)


@dataclass(frozen=True)
class Plan:
    text: list[str]  # reply chunks, streamed one per event; joined, the whole reply
    thinking: list[str]  # reasoning chunks, likewise
    calls: list[Call]
    truncated: bool  # the output cap cut the reply short
    prompt_tokens: int
    cached_tokens: int
    reasoning_tokens: int

    @property
    def reply(self) -> str:
        return "".join(self.text)

    @property
    def output_tokens(self) -> int:
        arguments = sum(count_tokens(call.arguments_json) for call in self.calls)
        return len(self.text) + arguments + self.reasoning_tokens


def make_plan(prompt: Prompt, directives: Directives) -> Plan:
    """Tool calls when the user asks for offered tools (``asked_for``) or the client forces one, never right
    after a tool result; else text.

    The output cap (max_tokens and kin) truncates only the reply words, not calls or reasoning.
    """
    calls = [Call(tool.name, arguments_for(tool.schema, prompt.user_text)) for tool in _called(prompt)]
    text: list[str] = []
    if not calls:
        reply = " ".join(reply_words(prompt.user_text, directives.words))
        if prompt.tool_result is not None:
            reply = f"Tool result: {prompt.tool_result} {reply}"
        if prompt.output_schema is not None:  # structured output: a value of the schema (routers, agents)
            reply = json.dumps(arguments_for(prompt.output_schema, prompt.user_text))
        elif prompt.json_output:
            reply = json.dumps({"reply": reply})
        text = chunks(reply)
    cap = prompt.max_output if prompt.max_output is not None else len(text)
    thinking = chunks(" ".join(thinking_words(prompt.user_text))) if prompt.thinking else []
    reasoning = directives.reasoning if directives.reasoning is not None else len(thinking)
    prompt_tokens = prompt.tokens
    return Plan(
        text=text[:cap],
        thinking=thinking,
        calls=calls,
        truncated=len(text) > cap,
        prompt_tokens=prompt_tokens,
        cached_tokens=min(directives.cached, prompt_tokens),
        reasoning_tokens=reasoning,
    )


def _called(prompt: Prompt) -> list[Tool]:
    """The tools to call: the one the client names, else those the user asked for, else, where the client
    requires a call, those offered; every one where parallel calls are allowed, else the first."""
    if not prompt.tools or prompt.tool_mode == "none" or prompt.tool_result is not None:
        return []
    forced = [tool for tool in prompt.tools if tool.name == prompt.tool_name]
    chosen = forced or asked_for(prompt.tools, prompt.user_text)
    if not chosen and prompt.tool_mode == "required":
        chosen = prompt.tools
    return chosen if prompt.parallel else chosen[:1]


def asked_for(tools: list[Tool], text: str) -> list[Tool]:
    """The offered tools ``text`` asks for: by name (``get_weather``, "get weather"), or, for a ``get_<thing>``
    tool, by asking about the thing ("What is the weather in Paris?"). An agent's prompt that names no tool
    ("Say hi") gets an answer, not a call of the first tool offered."""
    words = f" {_words(text)} "
    return [tool for tool in tools
            if f" {(name := _words(tool.name))} " in words
            or (name.startswith("get ") and f" {name.removeprefix('get ')} " in words)]


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


# Context an agent wraps in a tag of its own (Claude Code's <system-reminder>, Gemini CLI's <session_context>,
# Codex's <environment_context>) is not what the user said: it counts as prompt, but replies and tool calls
# follow the user's words.
CONTEXT_BLOCK = re.compile(r"<([a-z][\w-]*)>.*?</\1>", re.S)


def said(text: str) -> str:
    """What the user said in ``text``: without the agents' context blocks."""
    return CONTEXT_BLOCK.sub("", text).strip()


def text_of(content: Any, types: tuple[str, ...] = ("text",)) -> str:
    """The text of a string or of a list of typed parts/blocks (the parts' texts joined by spaces)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in types)
    return ""


def fragments(text: str, size: int = 8) -> list[str]:
    """Arguments JSON in small pieces, as providers stream it (clients must concatenate)."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def new_id(prefix: str) -> str:
    """Unique ids shaped like the provider's (``call_…``, ``toolu_…``, ``msg_…``)."""
    return prefix + os.urandom(12).hex()
