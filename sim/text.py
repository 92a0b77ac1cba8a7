"""Deterministic content and token counts; the gateway's tests import these to compute expected values.

Everything is a pure function of its input (hashes are SHA-2/SHAKE, never Python's salted ``hash()``),
so a reply can be predicted by anyone holding the prompt.
"""

from __future__ import annotations

import base64
import hashlib
import re
import string
from typing import Any

VOCABULARY = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
    "quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()


def _picked(seed: str, count: int) -> list[str]:
    return [VOCABULARY[byte % len(VOCABULARY)] for byte in hashlib.shake_256(seed.encode()).digest(count)]


def reply_words(prompt: str, words: int = 12) -> list[str]:
    """The reply to ``prompt``: "Simulated" then ``words - 1`` vocabulary words (at least one word)."""
    return ["Simulated", *_picked(prompt, max(words, 1) - 1)]


def thinking_words(prompt: str, words: int = 8) -> list[str]:
    """The reasoning shown for ``prompt`` (Anthropic thinking, Gemini thought parts)."""
    return ["Considering", *_picked("thinking:" + prompt, max(words, 1) - 1)]


def chunks(text: str) -> list[str]:
    """``text`` split into words, each but the first keeping its leading whitespace: they join back to it."""
    return re.findall(r"\s*\S+", text)


def count_tokens(text: str) -> int:
    """About four characters a token, rounded up; the empty string is free."""
    return -(-len(text) // 4)


def signature(thinking: str) -> str:
    """The opaque signature of a thinking block: base64 of its SHA-256, like Anthropic's base64 blobs."""
    return base64.b64encode(hashlib.sha256(thinking.encode()).digest()).decode()


def argument_word(text: str) -> str:
    """The last capitalised word of ``text`` stripped of punctuation: what a tool call is asked about."""
    capitalised = [w for w in (w.strip(string.punctuation) for w in text.split()) if w[:1].isupper()]
    return capitalised[-1] if capitalised else "value"


def arguments_for(schema: dict, text: str) -> dict[str, Any]:
    """Arguments satisfying a JSON (or Gemini OpenAPI) object schema: every property gets a value."""
    return {name: _value(prop, text) for name, prop in (schema.get("properties") or {}).items()}


def _value(prop: dict, text: str) -> Any:
    if prop.get("enum"):
        return prop["enum"][0]
    kind = prop.get("type", "string")
    if isinstance(kind, list):  # nullable types: ["string", "null"]
        kind = next((k for k in kind if k != "null"), "string")
    kind = str(kind).lower()  # Gemini spells types in capitals
    if kind == "object":
        return arguments_for(prop, text)
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return [_value(prop.get("items") or {}, text)]
    return argument_word(text)
