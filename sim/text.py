"""Deterministic content and token counts, importable by tests to compute expected values."""

import hashlib
import math
import re

VOCABULARY = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
              "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def reply_words(prompt: str, words: int = 12) -> list[str]:
    """The reply to ``prompt``: "Simulated" then words chosen by a stable hash of the prompt."""
    digest = hashlib.sha256(prompt.encode()).digest()
    picked = [VOCABULARY[digest[i % len(digest)] % len(VOCABULARY)] for i in range(max(words - 1, 0))]
    return ["Simulated", *picked][:max(words, 1)]


def count_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def argument_word(text: str) -> str:
    """The last capitalised word of the user's message: what a tool call is asked about."""
    capitalised = [w for w in re.findall(r"[A-Za-z]+", text) if w[0].isupper()]
    return capitalised[-1] if capitalised else "value"


def arguments_for(schema: dict, text: str) -> dict:
    return {name: _value(prop, text) for name, prop in (schema.get("properties") or {}).items()}


def _value(prop: dict, text: str):
    if prop.get("enum"):
        return prop["enum"][0]
    kind = prop.get("type")
    if kind == "object":
        return arguments_for(prop, text)
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return [_value(prop.get("items") or {"type": "string"}, text)]
    return argument_word(text)
