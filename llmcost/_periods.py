"""Budget and summary periods, and the UTC bounds of the period containing a moment."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta, timezone, tzinfo

from ._money import to_utc

__all__ = ["BudgetPeriod", "period_bounds", "plain_zone", "to_period"]


class BudgetPeriod(str, enum.Enum):
    """How often a budget starts again: ``hourly``, ``daily``, ``weekly`` (ISO weeks, from Monday),
    ``monthly`` (calendar months) or ``total`` (never). Plain strings with these values are accepted.

    Example::

        with llmcost.budget(50, period=BudgetPeriod.DAILY):
            ...
    """

    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    TOTAL = "total"

    def __str__(self) -> str:
        return self.value


_PERIODS = {p.value: p for p in BudgetPeriod}


def to_period(value: object, field: str = "period") -> BudgetPeriod:
    """Return ``value`` as a ``BudgetPeriod``; raise ``ValueError`` naming the value otherwise."""
    if isinstance(value, BudgetPeriod):
        return value
    if isinstance(value, str):
        found = _PERIODS.get(value.lower())
        if found is not None:
            return found
    raise ValueError(f"{field} must be one of {', '.join(_PERIODS)}; got {value!r}")


def plain_zone(tz: tzinfo) -> tzinfo:
    """``tz`` as a zone whose ``tzinfo=`` gives the right offset: a pytz zone (its ``localize`` API; given as
    ``tzinfo=`` it has the zone's first offset, local mean time, New York's -4:56) becomes the ``ZoneInfo`` of its
    name; any other as it is.

    >>> plain_zone(timezone.utc) is timezone.utc
    True
    """
    name = getattr(tz, "zone", None)
    if callable(getattr(tz, "localize", None)) and isinstance(name, str):
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    return tz


def _local_midnight(day: datetime, tz: tzinfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(timezone.utc)


def period_bounds(
    period: BudgetPeriod | str, at: datetime, tz: tzinfo | None = None
) -> tuple[datetime | None, datetime | None]:
    """The ``[start, end)`` of the period that contains ``at``, as aware UTC datetimes.

    Periods are cut in ``tz`` (UTC by default): a daily period in ``Europe/Berlin`` runs from Berlin midnight to
    Berlin midnight, 23 or 25 hours across a DST change. ``total`` has no bounds: ``(None, None)``.

    >>> period_bounds("monthly", datetime(2024, 2, 29, 23, 59, tzinfo=timezone.utc))[1]
    datetime.datetime(2024, 3, 1, 0, 0, tzinfo=datetime.timezone.utc)
    """
    kind = to_period(period)
    if kind is BudgetPeriod.TOTAL:
        return None, None
    zone = plain_zone(tz) if tz is not None else timezone.utc
    local = to_utc(at, "at").astimezone(zone)
    if kind is BudgetPeriod.HOURLY:
        start = local.replace(minute=0, second=0, microsecond=0).astimezone(timezone.utc)
        return start, start + timedelta(hours=1)
    if kind is BudgetPeriod.DAILY:
        first = local
        following = local + timedelta(days=1)
    elif kind is BudgetPeriod.WEEKLY:
        first = local - timedelta(days=local.weekday())
        following = first + timedelta(days=7)
    else:  # monthly
        first = local.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
    return _local_midnight(first, zone), _local_midnight(following, zone)
