"""The amounts pages show: credits as their exact decimal, whole amounts included."""

import pytest

from usage.templatetags.money import credits

pytestmark = pytest.mark.no_services


def test_credits_print_exactly_with_their_whole_part_intact():
    cases = {None: "—", 0: "0", 10_000_000: "10", 100_000_000: "100", 20_500_000: "20.5", 1: "0.000001",
             -3_000_000: "-3"}
    for micro, text in cases.items():
        assert credits(micro) == text
