"""The one normalised usage record every wire format maps into, and that pricing reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one call.

    ``input`` is the TOTAL prompt size, cached tokens included (OpenAI's convention);
    ``cached_read`` and ``cache_write`` are subsets of it. ``reasoning`` is a subset of ``output``.
    """

    input: int = 0
    cached_read: int = 0
    cache_write: int = 0
    output: int = 0
    reasoning: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output

    @classmethod
    def from_openai_chat(cls, usage: dict | None) -> TokenUsage:
        if not usage:
            return cls()
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return cls(
            input=int(usage.get("prompt_tokens") or 0),
            cached_read=int(prompt_details.get("cached_tokens") or 0),
            cache_write=int(prompt_details.get("cache_write_tokens") or 0),
            output=int(usage.get("completion_tokens") or 0),
            reasoning=int(completion_details.get("reasoning_tokens") or 0),
        )

    @classmethod
    def from_responses(cls, usage: dict | None) -> TokenUsage:
        if not usage:
            return cls()
        input_details = usage.get("input_tokens_details") or {}
        output_details = usage.get("output_tokens_details") or {}
        return cls(
            input=int(usage.get("input_tokens") or 0),
            cached_read=int(input_details.get("cached_tokens") or 0),
            cache_write=int(input_details.get("cache_write_tokens") or 0),
            output=int(usage.get("output_tokens") or 0),
            reasoning=int(output_details.get("reasoning_tokens") or 0),
        )

    @classmethod
    def from_anthropic(cls, usage: dict | None) -> TokenUsage:
        """Anthropic's ``input_tokens`` excludes cache reads and writes; ours includes them."""
        if not usage:
            return cls()
        cache_read = int(usage.get("cache_read_input_tokens") or 0)
        cache_write = int(usage.get("cache_creation_input_tokens") or 0)
        return cls(
            input=int(usage.get("input_tokens") or 0) + cache_read + cache_write,
            cached_read=cache_read,
            cache_write=cache_write,
            output=int(usage.get("output_tokens") or 0),
        )

    @classmethod
    def from_gemini(cls, metadata: dict | None) -> TokenUsage:
        """Gemini's ``candidatesTokenCount`` excludes thoughts; our output includes reasoning."""
        if not metadata:
            return cls()
        thoughts = int(metadata.get("thoughtsTokenCount") or 0)
        return cls(
            input=int(metadata.get("promptTokenCount") or 0),
            cached_read=int(metadata.get("cachedContentTokenCount") or 0),
            output=int(metadata.get("candidatesTokenCount") or 0) + thoughts,
            reasoning=thoughts,
        )

    def to_openai_chat(self) -> dict:
        return {
            "prompt_tokens": self.input,
            "completion_tokens": self.output,
            "total_tokens": self.total,
            "prompt_tokens_details": {"cached_tokens": self.cached_read, "cache_write_tokens": self.cache_write},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning},
        }

    def to_responses(self) -> dict:
        return {
            "input_tokens": self.input,
            "input_tokens_details": {"cached_tokens": self.cached_read, "cache_write_tokens": self.cache_write},
            "output_tokens": self.output,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.total,
        }

    def to_anthropic(self) -> dict:
        return {
            "input_tokens": self.input - self.cached_read - self.cache_write,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cached_read,
            "output_tokens": self.output,
        }

    def to_gemini(self) -> dict:
        return {
            "promptTokenCount": self.input,
            "cachedContentTokenCount": self.cached_read,
            "candidatesTokenCount": self.output - self.reasoning,
            "thoughtsTokenCount": self.reasoning,
            "totalTokenCount": self.total,
        }
