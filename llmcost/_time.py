"""Times as users write them: one reader for ``since``/``until`` shared by ``llmcost.analytics`` and the command
line, so ``analytics.spend(t, since="7d")`` and ``llmcost report --since 7d`` mean the same.

Example::

    >>> parse_when("7d", now=datetime(2024, 5, 17, tzinfo=timezone.utc))
    datetime.datetime(2024, 5, 10, 0, 0, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta, timezone

__all__ = ["EPOCH", "WHEN_FORMS", "When", "from_micros", "micros", "parse_when", "seconds_arg"]

#: 1970-01-01 UTC: stores, entry ids and prices count time as microseconds since it.
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: A ``since``/``until`` value: a datetime, a date, or text ``parse_when`` reads.
When = datetime | date | str

#: What ``parse_when`` accepts, for error messages.
WHEN_FORMS = "a date (2024-05-01), an ISO datetime, today, yesterday, or a span ago (7d, 24h)"

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "sec": "seconds", "m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def seconds_arg(value: object, field: str, *, zero: bool = False) -> float:
    """``value``, a number of seconds a store or ledger is given (a timeout, a lease), as a float: finite, and positive
    (or zero, with ``zero``); else ``ValueError`` naming ``field`` and the value.

    Why finite: NaN passes every comparison it is in (a NaN ``retry_timeout`` turned retries off), and an infinite
    one hangs a write on a lock for good or, as a lease, is past what a database interval holds.

    >>> seconds_arg(5, "lease")
    5.0
    >>> seconds_arg(float("inf"), "lease")
    Traceback (most recent call last):
    ...
    ValueError: lease must be a finite, positive number of seconds, got inf
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        ok = False
    else:
        ok = value >= 0 if zero else value > 0
    if not ok:
        kind = "non-negative" if zero else "positive"
        raise ValueError(f"{field} must be a finite, {kind} number of seconds, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def parse_when(
    value: datetime | date | str, *, now: datetime, end_of_day: bool = False, field: str = "time"
) -> datetime:
    """``value`` as an aware UTC datetime.

    Accepts a ``datetime`` (naive is UTC), a ``date`` (UTC midnight), or text: a date in any ISO form
    (``2024-05-01``, ``20240501``, ``2024-W18-3``; with ``end_of_day``, the midnight after it, so that an ``until``
    of ``2024-05-31`` includes the 31st, and the last microsecond there is for ``9999-12-31``), an ISO
    datetime (naive is UTC), ``today``, ``yesterday``, ``now``, or a time ago from ``now``: ``30m``, ``24h``,
    ``7d``, ``2w``. Anything else raises ``ValueError`` naming ``field`` and the value.

    Example::

        >>> parse_when("2024-05-31", now=datetime.now(timezone.utc), end_of_day=True)
        datetime.datetime(2024, 6, 1, 0, 0, tzinfo=datetime.timezone.utc)
    """
    try:
        return _parse(value, now, end_of_day, field)
    except OverflowError:  # "999999d", 0001-01-01T00:00+01:00: past the calendar's ends
        raise ValueError(
            f"cannot read the {field} {value!r}: it reaches beyond the times there are (0001-01-01 to 9999-12-31 UTC)"
        ) from None


def _parse(value: datetime | date | str, now: datetime, end_of_day: bool, field: str) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, date):
        return _midnight(value, end_of_day)
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a datetime, a date or text such as '7d', got {value!r}")
    text = value.strip()
    lowered = text.lower()
    if lowered in ("today", "yesterday", "now"):
        if lowered == "now":
            return now
        day = now.astimezone(timezone.utc).date() - timedelta(days=1 if lowered == "yesterday" else 0)
        return _midnight(day, end_of_day)
    match = _RELATIVE.match(text)
    if match:
        amount = float(match.group(1))
        return now - timedelta(**{_UNITS[match.group(2).lower()]: amount})
    # Any text that is only a date (2024-03-01, 20240301, 2024-W09-5) is a whole day, whichever ISO form writes it:
    # datetime.fromisoformat would read each as its midnight, so an until would leave the day out.
    try:
        return _midnight(date.fromisoformat(text), end_of_day)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    else:
        return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    raise ValueError(f"cannot read the {field} {value!r}: use {WHEN_FORMS}")


def _midnight(day: date, end_of_day: bool) -> datetime:
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    if end_of_day and day == date.max:
        # The midnight after 9999-12-31 is past the calendar; its last microsecond is the end there is.
        return datetime.max.replace(tzinfo=timezone.utc)
    return start + timedelta(days=1) if end_of_day else start


def micros(ts: datetime) -> int:
    """An aware datetime as exact epoch microseconds (``timestamp()`` would go through a float).

    >>> micros(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=timezone.utc))
    1000005
    """
    since = ts - EPOCH
    return (since.days * 86400 + since.seconds) * 1_000_000 + since.microseconds


def from_micros(us: int) -> datetime:
    """Epoch microseconds as an aware UTC datetime.

    >>> from_micros(1000005)
    datetime.datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=datetime.timezone.utc)
    """
    return EPOCH + timedelta(microseconds=us)
