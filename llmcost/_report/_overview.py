"""The overview of a source, computed once: totals, spend by category, model, resource and tag, spend per period,
this month's forecast, anomalous periods, models compared and cheaper models. ``_text`` and ``_html`` render it.

The period follows the span of the data (hours up to two days, days up to 120, weeks up to two years, then months),
so both renderings show the same periods and flag the same anomalies.

Example::

    >>> overview = compute_overview(tracker, store="duckdb://llmcost.duckdb", now=tracker.clock())
    >>> overview.cost, overview.calls, overview.unit
    (30.488, 90, 'day')
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import attrs

from .._money import to_utc
from ..analytics import (
    by_category,
    by_model,
    by_resource,
    by_tag,
    compare_models,
    forecast,
    over_time,
    recommendations,
    spend,
)
from ..analytics._forecast import covered, score_periods
from ..analytics._source import Source, as_source

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EARLIEST_PROJECTION", "Overview", "choose_freq", "compute_overview"]

#: The reports project the month's spend at the current rate only once this much of the month has passed: a run-rate
#: from its first hours says little (one night batch, or a day's bill recorded at 00:05, projected over 30 days).
EARLIEST_PROJECTION = timedelta(days=1)


@attrs.frozen(eq=False)
class Overview:
    """What both reports show, computed once from one source. Frames are as ``llmcost.analytics`` returns them;
    treat them as read-only. An empty selection has ``calls == 0`` and empty frames.

    Example::

        >>> overview = compute_overview(store)
        >>> overview.by_model[["model", "cost"]].head(3)
                       model   cost
        0               None  24.00
        1             gpt-4o   5.18
        2  claude-3-5-sonnet   1.20
    """

    store: str | None  #: where the entries came from, as the user named it (a URL), if known
    now: datetime  #: the moment of the report: the forecast's "now"
    first: datetime | None  #: the earliest entry's timestamp (UTC), None when empty
    last: datetime | None  #: the latest entry's timestamp (UTC), None when empty
    cost: float
    calls: int
    input_tokens: int
    output_tokens: int
    freq: str  #: the period of ``periods``, ``by_period`` and ``anomalies``: "h", "D", "W" or "MS"
    unit: str  #: the same, as a word: hour, day, week, month
    by_category: pd.DataFrame
    by_model: pd.DataFrame
    by_resource: pd.DataFrame
    by_tag: pd.DataFrame  #: the long form: tag_key, tag_value, measures
    periods: pd.DataFrame  #: ``over_time(freq)``: every period from the first to the last, zero-filled
    by_period: pd.DataFrame  #: ``over_time(freq, by="category")``
    #: what the forecast covers: None for the whole source, or words such as "entries tagged team=search"
    month_scope: str | None
    #: the time window of the selection in words ("since 2024-05-01 00:00"), None when not narrowed in time: the
    #: forecast then still covers the whole month, and the periods shown are those of the selection
    window: str | None
    month_start: datetime  #: the current month (UTC) of the forecast, whatever the selection's time window
    month_end: datetime
    month_spent: float
    month_projected: float  #: the month's spend at the current rate
    anomalies: pd.DataFrame  #: the flagged periods only: period, cost, expected, score, anomaly
    models: pd.DataFrame  #: ``compare_models``
    advice: pd.DataFrame  #: ``recommendations``, largest saving first

    @property
    def empty(self) -> bool:
        """True when the selection holds no entry."""
        return self.calls == 0

    @property
    def month_elapsed(self) -> timedelta:
        """How much of the month had passed at ``now``: under ``EARLIEST_PROJECTION`` the reports show the month's
        spend so far and no projection (``projection_too_early``).

        Example::

            >>> compute_overview(tracker, now=datetime(2024, 5, 1, 2, 30, tzinfo=timezone.utc)).month_elapsed
            datetime.timedelta(seconds=9000)
        """
        return to_utc(self.now, "now") - self.month_start

    @property
    def projection_too_early(self) -> bool:
        """True while less than ``EARLIEST_PROJECTION`` of the month has passed (its first day, UTC).

        Example::

            >>> compute_overview(tracker, now=datetime(2024, 5, 1, 2, 30, tzinfo=timezone.utc)).projection_too_early
            True
        """
        return self.month_elapsed < EARLIEST_PROJECTION


def choose_freq(first: datetime | None, last: datetime | None) -> tuple[str, str]:
    """The period for data from ``first`` to ``last`` as ``(freq, unit)``: about a dozen to a hundred bars.

    Example::

        >>> choose_freq(datetime(2024, 5, 1), datetime(2024, 5, 20))
        ('D', 'day')
    """
    if first is None or last is None or first != first or last != last:  # NaT compares unequal to itself
        return "D", "day"
    days = (last - first).total_seconds() / 86400
    if days <= 2:
        return "h", "hour"
    if days <= 120:
        return "D", "day"
    if days <= 730:
        return "W", "week"
    return "MS", "month"


def compute_overview(
    source: Any,
    *,
    store: str | None = None,
    now: datetime | None = None,
    month: Any = None,
    month_scope: str | None = None,
    window: str | None = None,
) -> Overview:
    """The ``Overview`` of ``source`` (tracker, store, frame or ``Source``) at ``now`` (default: the current time).

    ``source`` may be a selection narrowed in time (``--since``): then pass ``month``, the same entries without the
    time window, so that "this month" is the whole month, and ``window``, the window in words, so that the report
    says what its periods cover. ``month_scope`` names what ``month`` holds when it is not everything.

    Example::

        >>> compute_overview(tracker, now=tracker.clock()).month_projected
        57.280484848484846
    """
    moment = now or datetime.now(timezone.utc)
    with as_source(source) as src:
        if month is None:
            return _compute(src, src, store, moment, month_scope, window)
        with as_source(month) as whole:
            return _compute(src, whole, store, moment, month_scope, window)


def _compute(
    src: Source, whole: Source, store: str | None, now: datetime, month_scope: str | None, window: str | None
) -> Overview:
    total = spend(src, by=())
    span = src.sql(
        "SELECT timezone('UTC', min(timestamp)) AS first, timezone('UTC', max(timestamp)) AS last FROM _e"
    ).iloc[0]
    first, last = _stamp(span["first"]), _stamp(span["last"])
    freq, unit = choose_freq(first, last)
    periods = over_time(src, freq)
    # what anomalies(src, freq) gives, without querying the periods again; the report's now for the running period
    start, end = covered(src, now)
    scored = score_periods(periods, freq=freq, start=start, end=end)
    month = forecast(whole, "monthly", now=now).iloc[0]
    t = total.iloc[0] if len(total) else None
    return Overview(
        store=store,
        now=now,
        first=first,
        last=last,
        cost=float(t.cost) if t is not None else 0.0,
        calls=int(t.calls) if t is not None else 0,
        input_tokens=int(t.input_tokens) if t is not None else 0,
        output_tokens=int(t.output_tokens) if t is not None else 0,
        freq=freq,
        unit=unit,
        by_category=by_category(src),
        by_model=by_model(src),
        by_resource=by_resource(src),
        by_tag=by_tag(src),
        periods=periods,
        by_period=over_time(src, freq, by="category"),
        month_scope=month_scope,
        window=window,
        month_start=month.period_start.to_pydatetime(),
        month_end=month.period_end.to_pydatetime(),
        month_spent=float(month.spent),
        month_projected=float(month.projected),
        anomalies=scored[scored["anomaly"]].reset_index(drop=True),
        models=compare_models(src),
        advice=recommendations(src, now=now),
    )


def _stamp(value: Any) -> datetime | None:
    if value is None or value != value:  # SQL NULL, which pandas may hand back as NaT
        return None
    stamp = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
    return stamp if isinstance(stamp, datetime) else None
