from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from llmcost import BudgetPeriod
from llmcost._periods import period_bounds

UTC = timezone.utc


@pytest.mark.parametrize(
    ("period", "at", "start", "end"),
    [
        ("hourly", datetime(2024, 5, 17, 12, 59, 59), datetime(2024, 5, 17, 12), datetime(2024, 5, 17, 13)),
        ("daily", datetime(2024, 5, 17, 0, 0), datetime(2024, 5, 17), datetime(2024, 5, 18)),
        ("daily", datetime(2024, 5, 17, 23, 59, 59, 999999), datetime(2024, 5, 17), datetime(2024, 5, 18)),
        # ISO weeks start on Monday: 2024-05-19 is a Sunday, 2024-05-20 a Monday.
        ("weekly", datetime(2024, 5, 19, 23, 59), datetime(2024, 5, 13), datetime(2024, 5, 20)),
        ("weekly", datetime(2024, 5, 20, 0, 0), datetime(2024, 5, 20), datetime(2024, 5, 27)),
        ("weekly", datetime(2024, 12, 31, 8), datetime(2024, 12, 30), datetime(2025, 1, 6)),
        ("monthly", datetime(2024, 2, 29, 23, 59), datetime(2024, 2, 1), datetime(2024, 3, 1)),
        ("monthly", datetime(2024, 12, 31, 23, 59), datetime(2024, 12, 1), datetime(2025, 1, 1)),
        ("monthly", datetime(2025, 1, 31, 12), datetime(2025, 1, 1), datetime(2025, 2, 1)),
    ],
)
def test_period_bounds_in_utc(period, at, start, end):
    got = period_bounds(period, at.replace(tzinfo=UTC))
    assert got == (start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))


def test_total_has_no_bounds():
    assert period_bounds(BudgetPeriod.TOTAL, datetime(2024, 1, 1, tzinfo=UTC)) == (None, None)


def test_daily_across_dst_in_a_local_zone():
    berlin = ZoneInfo("Europe/Berlin")
    # 2024-03-31: clocks jump from 02:00 to 03:00 in Berlin, so that day has 23 hours.
    start, end = period_bounds("daily", datetime(2024, 3, 31, 12, tzinfo=UTC), tz=berlin)
    assert start == datetime(2024, 3, 30, 23, tzinfo=UTC)
    assert end == datetime(2024, 3, 31, 22, tzinfo=UTC)
    assert (end - start).total_seconds() == 23 * 3600
    start, end = period_bounds("daily", datetime(2024, 10, 27, 12, tzinfo=UTC), tz=berlin)
    assert (end - start).total_seconds() == 25 * 3600


def test_unknown_period_names_the_value():
    with pytest.raises(ValueError, match="fortnightly"):
        period_bounds("fortnightly", datetime(2024, 1, 1, tzinfo=UTC))
