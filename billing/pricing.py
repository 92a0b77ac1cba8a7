"""The one place that turns usage into micro-credits."""

from dataclasses import dataclass

from billing.tokens import TokenUsage

PER = 1_000_000  # prices are per million tokens


@dataclass(frozen=True, slots=True)
class TokenPrices:
    """Micro-credits per million tokens."""

    input: int
    cached_input: int
    cache_write: int
    output: int


def token_cost(usage: TokenUsage, prices: TokenPrices) -> int:
    """Cost in micro-credits, rounded up once so a call is never billed below its price."""
    uncached = max(usage.input - usage.cached_read - usage.cache_write, 0)
    numerator = (
        uncached * prices.input
        + usage.cached_read * prices.cached_input
        + usage.cache_write * prices.cache_write
        + usage.output * prices.output
    )
    return -(-numerator // PER)
