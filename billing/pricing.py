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


@dataclass(frozen=True, slots=True)
class UnitPrice:
    """Micro-credits per unit of what is not priced in tokens: an image, a second (of video or of GPU
    time), a clip, a request. ``max_units`` caps what one call can be billed (a GPU model's max seconds)."""

    amount: int
    max_units: int | None = None


def unit_cost(price: UnitPrice, units: int) -> int:
    """Cost in micro-credits of ``units`` (at most ``max_units`` of them, and never fewer than none)."""
    if price.max_units is not None:
        units = min(units, price.max_units)
    return price.amount * max(units, 0)


def billed_seconds(milliseconds: int) -> int:
    """Whole seconds billed for a run: any started second counts (as GPU providers bill)."""
    return -(-max(milliseconds, 0) // 1000)
