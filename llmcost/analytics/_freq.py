"""Time buckets: the ``freq`` names analytics accepts, as a DuckDB ``date_trunc`` unit and a pandas frequency.

Buckets are cut in UTC and labelled by their start. ``"W"`` is the ISO week (starting Monday); ``"M"`` is taken to
mean calendar months (``"MS"``), since a bucket is always labelled by its start.

Example::

    >>> parse_freq("weekly")
    ('week', 'W-MON')
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ["bucket_start", "parse_freq"]

# freq -> (DuckDB date_trunc unit, pandas frequency of the same buckets)
_FREQS: dict[str, tuple[str, str]] = {}
#: The names of each bucket, the first the one messages lead with; the error lists them all from here, so that it
#: names exactly what is accepted.
_NAMES = (
    (("min", "T", "minute", "minutely"), "minute", "min"),
    (("h", "H", "hour", "hourly"), "hour", "h"),
    (("D", "d", "day", "daily"), "day", "D"),
    (("W", "W-MON", "w", "week", "weekly"), "week", "W-MON"),
    (("MS", "M", "ME", "month", "monthly"), "month", "MS"),
    (("QS", "Q", "quarter", "quarterly"), "quarter", "QS"),
    (("YS", "Y", "A", "AS", "year", "yearly"), "year", "YS"),
)
for _names, _unit, _pandas in _NAMES:
    for _name in _names:
        _FREQS[_name] = (_unit, _pandas)
_CHOICES = "; ".join(f"{names[0]} ({', '.join(names[1:])})" for names, _, _ in _NAMES)


def parse_freq(freq: str) -> tuple[str, str]:
    """``(DuckDB date_trunc unit, pandas frequency)`` of ``freq``; a ``ValueError`` naming the choices otherwise.

    Example::

        >>> parse_freq("D")
        ('day', 'D')
        >>> parse_freq("fortnightly")
        Traceback (most recent call last):
        ...
        ValueError: freq must be one of min (T, minute, minutely); h (H, hour, hourly); D (d, day, daily); W (W-MON, ...
    """
    found = _FREQS.get(freq) if isinstance(freq, str) else None
    if found is None:
        raise ValueError(f"freq must be one of {_CHOICES}; got {freq!r}")
    return found


def bucket_start(moment: datetime, freq: str) -> datetime:
    """The start (UTC) of the ``freq`` bucket that holds ``moment``: the label ``date_trunc`` gives its entries.

    Worked out with ``datetime`` itself rather than pandas, whose ``Timestamp.floor`` takes no weeks, months or
    years and whose nanosecond timestamps end in 2262; a store takes times up to 9999-12-31.

    Example::

        >>> bucket_start(datetime(2024, 5, 17, 15, 30, tzinfo=timezone.utc), "W")   # a Friday: its ISO week's Monday
        datetime.datetime(2024, 5, 13, 0, 0, tzinfo=datetime.timezone.utc)
        >>> bucket_start(datetime(2024, 5, 17, 15, 30, tzinfo=timezone.utc), "QS")
        datetime.datetime(2024, 4, 1, 0, 0, tzinfo=datetime.timezone.utc)
    """
    unit = parse_freq(freq)[0]
    moment = moment.astimezone(timezone.utc)
    if unit == "minute":
        return moment.replace(second=0, microsecond=0)
    if unit == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=day.weekday())  # (0001-01-01 is a Monday: never before the calendar)
    if unit == "month":
        return day.replace(day=1)
    if unit == "quarter":
        return day.replace(month=3 * ((day.month - 1) // 3) + 1, day=1)
    return day.replace(month=1, day=1)
