"""Money units. Stored and computed as integer micro-credits; credits appear only at the edges."""

from decimal import Decimal

MICRO = 1_000_000  # micro-credits per credit; 100 credits = 1 USD


def credits_to_micro(credits: int | str | Decimal) -> int:
    """Exact conversion of a decimal credit amount (never a float) to micro-credits."""
    if isinstance(credits, float):
        raise TypeError("Money is never a float; pass a str, int or Decimal.")
    micro = Decimal(credits) * MICRO
    if micro != micro.to_integral_value():
        raise ValueError(f"{credits} credits has more precision than a micro-credit.")
    return int(micro)


def micro_to_credits(micro: int) -> Decimal:
    return Decimal(micro) / MICRO


def micro_to_text(micro: int) -> str:
    """Credits as plain decimal text, as ``format(micro_to_credits(micro), "f")`` writes them, without Decimal
    (a response header on every call)."""
    whole, fraction = divmod(abs(micro), MICRO)
    text = f"{whole}.{fraction:06d}".rstrip("0").rstrip(".") if fraction else str(whole)
    return "-" + text if micro < 0 else text


def micro_to_json(micro: int) -> float:
    """A JSON number for API output. Exact for any realistic amount: x / 1e6 prints as its 6-dp decimal."""
    return micro / MICRO
