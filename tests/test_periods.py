from datetime import datetime, timedelta, timezone, tzinfo
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


class _PytzLike(tzinfo):
    """A zone with pytz's API (``zone``, ``localize``): given as ``tzinfo=``, it has the zone's first offset, New
    York's local mean time (-4:56), as a pytz zone does; only ``localize`` and ``astimezone`` give the right one."""

    zone = "America/New_York"

    def utcoffset(self, dt):
        return timedelta(hours=-4, minutes=-56)

    def dst(self, dt):
        return timedelta(0)

    def tzname(self, dt):
        return "LMT"

    def localize(self, dt):
        return dt.replace(tzinfo=ZoneInfo(self.zone))


def test_a_pytz_zone_cuts_periods_at_its_midnight_not_at_its_local_mean_time():
    # A daily period in New York from a pytz zone ran 04:56Z to 04:56Z: between local midnight and 00:56, "now" was
    # outside its own period, and the calls made then counted nowhere.
    at = datetime(2024, 5, 2, 4, 30, tzinfo=UTC)  # 00:30 in New York
    assert period_bounds("daily", at, tz=_PytzLike()) == (
        datetime(2024, 5, 2, 4, tzinfo=UTC),
        datetime(2024, 5, 3, 4, tzinfo=UTC),
    )
    assert period_bounds("monthly", at, tz=_PytzLike())[0] == datetime(2024, 5, 1, 4, tzinfo=UTC)
