"""Time buckets: the ``freq`` names analytics accepts, as a DuckDB ``date_trunc`` unit and a pandas frequency.

Buckets are cut in UTC and labelled by their start. ``"W"`` is the ISO week (starting Monday); ``"M"`` is taken to
mean calendar months (``"MS"``), since a bucket is always labelled by its start.

Example::

    >>> parse_freq("weekly")
    ('week', 'W-MON')
"""

from __future__ import annotations

__all__ = ["parse_freq"]

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
