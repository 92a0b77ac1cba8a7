"""A key's spend is counted per calendar month in UTC; the month every call asks for turns with the clock."""

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from apikeys import limits

pytestmark = pytest.mark.no_services


@pytest.mark.parametrize("last_second", [datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC),
                                         datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)])
def test_the_current_month_turns_at_midnight_utc_on_the_first(monkeypatch, last_second):
    clock = SimpleNamespace(now=last_second - timedelta(days=3))
    monkeypatch.setattr(limits, "time", SimpleNamespace(time=lambda: clock.now.timestamp()))
    monkeypatch.setattr(limits.timezone, "now", lambda: clock.now)
    monkeypatch.setattr(limits, "_this_month", (0.0, 0.0, ""))
    month = last_second.strftime("%Y-%m")
    assert limits.spend_month() == month
    clock.now = last_second
    assert limits.spend_month() == month
    clock.now = last_second + timedelta(seconds=1)
    assert limits.spend_month() == clock.now.strftime("%Y-%m") != month


def test_a_given_moment_is_placed_in_its_utc_month():
    assert limits.spend_month(datetime(2026, 12, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))) == "2026-11"
