"""The one normalised usage record every wire format maps into, and that pricing reads.

Each format's own usage convention (field names, what counts within what) lives with that format in
gateway.formats; billing knows only the counts.
"""

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
