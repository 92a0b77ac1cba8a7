from django import template

from billing.money import micro_to_credits, micro_to_text

register = template.Library()


@register.filter
def credits(micro) -> str:
    """Micro-credits as a plain decimal amount of credits."""
    return "—" if micro is None else micro_to_text(int(micro))


@register.filter
def percent_of(value, total) -> int:
    return min(100, round(int(value) * 100 / int(total))) if total else 0


@register.filter
def usd(micro) -> str:
    """Micro-credits as US dollars (100 credits = 1 USD), to the cent where it fits, exact otherwise."""
    if micro is None:
        return "—"
    dollars = micro_to_credits(int(micro)) / 100
    return f"{dollars:.2f}" if dollars == round(dollars, 2) else f"{dollars:f}".rstrip("0")
