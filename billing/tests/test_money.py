from decimal import Decimal

import pytest

from billing.money import MICRO, credits_to_micro, micro_to_credits, micro_to_json, micro_to_text
from billing.pricing import TokenPrices, UnitPrice, billed_seconds, token_cost, unit_cost
from billing.tokens import TokenUsage

pytestmark = pytest.mark.no_services


def test_credits_convert_exactly_and_refuse_floats():
    assert credits_to_micro("12.5") == 12_500_000
    assert credits_to_micro(Decimal("0.000001")) == 1
    assert micro_to_credits(1_234_500) == Decimal("1.2345")
    with pytest.raises(TypeError):
        credits_to_micro(0.1)
    with pytest.raises(ValueError):
        credits_to_micro("0.0000001")


def test_json_credits_print_as_their_exact_decimal():
    for micro in (1, 999_999, 123_456_789, 10_000 * 1_000_000 - 7):
        assert Decimal(repr(micro_to_json(micro))) == micro_to_credits(micro)


def test_text_credits_are_the_exact_decimal_without_trailing_zeros():
    cases = {0: "0", 1: "0.000001", 10: "0.00001", 1_500_000: "1.5", 2_000_000: "2",
             123_456_789: "123.456789", -2_500_000: "-2.5"}
    for micro, text in cases.items():
        assert micro_to_text(micro) == text == format(micro_to_credits(micro), "f")


def test_token_cost_uses_each_rate_and_rounds_up_once():
    prices = TokenPrices(input=125_000_000, cached_input=12_500_000, cache_write=156_250_000, output=1_000_000_000)
    usage = TokenUsage(input=1000, cached_read=400, cache_write=100, output=50, reasoning=20)
    # 500 uncached × 125 + 400 × 12.5 + 100 × 156.25 + 50 × 1000 credits per million tokens
    expected_numerator = 500 * 125_000_000 + 400 * 12_500_000 + 100 * 156_250_000 + 50 * 1_000_000_000
    assert token_cost(usage, prices) == expected_numerator // 1_000_000
    assert token_cost(TokenUsage(input=1), TokenPrices(1, 0, 0, 0)) == 1  # a fraction of a micro-credit rounds up
    assert token_cost(TokenUsage(), prices) == 0


def test_unit_prices_multiply_and_respect_the_cap():
    per_image = UnitPrice(amount=4 * MICRO)
    assert unit_cost(per_image, 3) == 12 * MICRO  # three images returned, three charged
    gpu_second = UnitPrice(amount=2_500, max_units=60)
    assert unit_cost(gpu_second, 61) == 60 * 2_500  # never beyond the model's max seconds
    assert unit_cost(gpu_second, -5) == 0


def test_a_started_second_is_a_billed_second():
    assert [billed_seconds(ms) for ms in (0, 1, 999, 1000, 1001, 62_500)] == [0, 1, 1, 1, 2, 63]
