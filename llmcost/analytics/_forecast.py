"""Looking ahead and looking for the odd one out: ``forecast`` (run-rate of the current period), ``forecast_tasks``
(cost of pending work) and ``anomalies`` (periods far from the usual spend).

Example::

    >>> forecast(tracker, "monthly")[["spent", "projected"]]     # at noon on 17 May: 16.5 of 31 days gone
        spent  projected
    0  30.488  57.280485
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING, Any

from .._model_price import tidy
from .._money import ZERO, to_money, to_utc, wide_context
from .._periods import BudgetPeriod, period_bounds, to_period
from .._prices import cost_of
from .._time import When
from ..stores._sql import FRACTION_SUM, WHOLE_SUM, split_text, sum_value, with_split_sums
from ._freq import parse_freq
from ._source import Source, as_source
from ._spend import over_time

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ANOMALY_THRESHOLD", "anomalies", "forecast", "forecast_tasks", "score_periods"]

#: ``anomalies`` flags a period whose robust score is beyond this (Iglewicz and Hoaglin's 3.5).
ANOMALY_THRESHOLD = 3.5


def forecast(
    source: Any,
    period: BudgetPeriod | str = "monthly",
    *,
    now: datetime | None = None,
    since: When | None = None,
    until: When | None = None,
) -> pd.DataFrame:
    """What the current ``period`` (``hourly``, ``daily``, ``weekly``, ``monthly``; UTC) will cost at the current
    rate: one row with ``period_start``, ``period_end``, ``spent`` (so far) and ``projected``
    (``spent`` scaled from the time elapsed to the whole period, i.e. the run-rate).

    "Now" is the tracker's clock when ``source`` is a ``CostTracker``, else the current UTC time; ``now=`` overrides
    both.

    Example::

        >>> forecast(tracker, "daily")       # the tracker's clock says noon: half the day's spend is yet to come
                       period_start                period_end   spent  projected
        0 2024-05-17 00:00:00+00:00 2024-05-18 00:00:00+00:00  2.7408     5.4816
    """
    import pandas as pd

    kind = to_period(period)
    if kind is BudgetPeriod.TOTAL:
        raise ValueError("period must be hourly, daily, weekly or monthly for a run-rate forecast; got 'total'")
    with as_source(source) as base:
        src = base.where(since=since, until=until)
        moment = to_utc(now, "now") if now is not None else to_utc(src.clock(), "clock()")
        start, end = period_bounds(kind, moment)
        if start is None or end is None:  # pragma: no cover - TOTAL was refused above
            raise ValueError(f"period {kind.value!r} has no bounds")
        found = with_split_sums(
            lambda split: src.sql(
                f"SELECT {split_text(WHOLE_SUM, FRACTION_SUM) if split else 'sum(amount)'} AS spent FROM _e "
                "WHERE timestamp >= ? AND timestamp < ? AND timestamp <= ?",
                [start, end, moment],
            )
        )
    spent = found["spent"].iloc[0] if len(found) else None
    spent = ZERO if spent is None or (isinstance(spent, float) and math.isnan(spent)) else sum_value(spent)
    elapsed = Decimal((moment - start) // timedelta(microseconds=1))
    whole = Decimal((end - start) // timedelta(microseconds=1))
    with wide_context():  # (the caller's context may round: a notebook's prec=3 gave 0.495 for 0.4950087)
        projected = spent if elapsed <= 0 else spent * whole / elapsed
    return pd.DataFrame(
        {
            "period_start": pd.Series([start], dtype="datetime64[us, UTC]"),
            "period_end": pd.Series([end], dtype="datetime64[us, UTC]"),
            "spent": pd.Series([float(spent)], dtype="float64"),
            "projected": pd.Series([float(projected)], dtype="float64"),
        }
    )


def _tokens(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise TypeError(f"{field} must be a number of tokens, got {value!r}")
    amount = to_money(value, field)
    if amount < 0:
        raise ValueError(f"{field} must not be negative, got {value!r}")
    return int(amount.to_integral_value(rounding=ROUND_CEILING))


def forecast_tasks(
    count: int,
    avg_input_tokens: float,
    avg_output_tokens: float,
    model: str,
    *,
    buffer: Decimal | float | str = Decimal("1.2"),
) -> Decimal:
    """The exact cost of ``count`` pending tasks of ``avg_input_tokens`` in and ``avg_output_tokens`` out each on
    ``model``, times a safety ``buffer`` (1.2: 20% headroom): ``cost_of(model, one task) * count * buffer``.

    Fractional averages are rounded up to whole tokens (a forecast should not undershoot).

    Example::

        >>> forecast_tasks(500, 2_000, 400, "gpt-4o-mini")    # 500 * $0.00054 * 1.2
        Decimal('0.324')
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative int, got {count!r}")
    factor = to_money(buffer, "buffer")
    if factor <= 0:
        raise ValueError(f"buffer must be a positive multiplier (1.2 = 20% headroom), got {buffer!r}")
    per_task = cost_of(
        model,
        input_tokens=_tokens(avg_input_tokens, "avg_input_tokens"),
        output_tokens=_tokens(avg_output_tokens, "avg_output_tokens"),
    )
    with wide_context():  # exact whatever the caller's context: 1257.4 for 1257.301520125 at prec=5
        return tidy(per_task * count * factor)


def anomalies(
    source: Any,
    freq: str = "D",
    *,
    threshold: float = ANOMALY_THRESHOLD,
    since: When | None = None,
    until: When | None = None,
) -> pd.DataFrame:
    """Periods whose spend is far from usual: ``period``, ``cost``, ``expected``, ``score``, ``anomaly`` (bool).

    The score is the modified z-score of Iglewicz and Hoaglin, robust to the outliers it looks for:
    ``score = (cost - median) / (1.4826 * MAD)`` over every period of ``over_time(source, freq)`` (zero-filled),
    where MAD is the median absolute deviation from the median; ``expected`` is the median. When more than half the
    periods cost the same (MAD = 0) the mean absolute deviation is used instead (``1.2533 * meanAD``), and when all
    cost the same every score is 0. ``anomaly`` is ``abs(score) > threshold`` (default 3.5). Only whole periods are
    scored: the one still running ("now" is the tracker's clock for a tracker) and a first one the data begin inside
    get a NaN ``score`` and are left out of the median (see ``score_periods``).

    Example::

        >>> anomalies(tracker, freq="D").query("anomaly")
                             period    cost  expected     score  anomaly
        6 2024-05-14 00:00:00+00:00  5.8208    2.7408  6.383148     True
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    with as_source(source) as base:
        src = base.where(since=since, until=until)
        series = over_time(src, freq)
        start, end = covered(src, to_utc(src.clock(), "clock()"))
    return score_periods(series, threshold=threshold, freq=freq, start=start, end=end)


def covered(src: Source, now: datetime) -> tuple[datetime | None, datetime]:
    """The span ``src`` can speak for, ``(start, end)``: from its ``since`` (else its first entry) to its ``until``
    or ``now``, whichever is earlier. A period not wholly inside it is still running or began before the data did."""
    import pandas as pd

    now = to_utc(now, "now")
    since, until = src.bounds()
    if since is None:
        first = src.sql("SELECT min(timestamp) AS first FROM _e")["first"].iloc[0]
        since = None if pd.isna(first) else pd.Timestamp(first).tz_convert("UTC").to_pydatetime()
    return since, now if until is None else min(until, now)


def score_periods(
    series: pd.DataFrame,
    *,
    threshold: float = ANOMALY_THRESHOLD,
    freq: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """The ``anomalies`` frame of ``series``, an ``over_time`` frame (``period``, ``cost``...): for a caller that
    has the periods already and should not query them twice.

    With ``freq``, a period that does not lie wholly in ``[start, end)`` (``covered``: the one still running, the
    first when the data begin inside it) is not scored: its ``score`` is NaN, it is never an anomaly, and it does not
    count towards the median. A part of a period is not comparable with whole ones (three hours of a day look like a
    drop), and scaling it up pro rata would assume spend is spread evenly over the period, which daily and weekly
    cycles make false.

    Example::

        >>> score_periods(over_time(tracker, "D", since="2024-05-12"))[["period", "cost", "score", "anomaly"]]
                             period    cost     score  anomaly
        0 2024-05-12 00:00:00+00:00  2.7408  0.000000    False
        1 2024-05-13 00:00:00+00:00  2.7408  0.000000    False
        2 2024-05-14 00:00:00+00:00  5.8208  4.787361     True
        3 2024-05-15 00:00:00+00:00  2.7408  0.000000    False
        4 2024-05-16 00:00:00+00:00  2.7408  0.000000    False
        5 2024-05-17 00:00:00+00:00  2.7408  0.000000    False
    """
    import numpy as np
    import pandas as pd

    costs = series["cost"].to_numpy(dtype="float64")
    whole = np.ones(len(costs), dtype=bool)
    if freq is not None and len(costs):
        periods = pd.DatetimeIndex(series["period"])
        if start is not None:
            whole &= np.asarray(periods >= pd.Timestamp(start))
        if end is not None:
            whole &= np.asarray(periods + pd.tseries.frequencies.to_offset(parse_freq(freq)[1]) <= pd.Timestamp(end))
    scores = np.full(len(costs), np.nan)
    median = 0.0
    if whole.any():
        counted = costs[whole]
        median = float(np.median(counted))
        deviation = np.abs(counted - median)
        mad = float(np.median(deviation))
        if mad > 0:
            scale = 1.4826 * mad
        else:
            mean_ad = float(np.mean(deviation))
            scale = 1.2533 * mean_ad
        scores[whole] = (counted - median) / scale if scale > 0 else 0.0
    return pd.DataFrame(
        {
            "period": series["period"],
            "cost": costs,
            "expected": np.full(len(costs), median, dtype="float64"),
            "score": scores.astype("float64"),
            "anomaly": whole & (np.abs(np.nan_to_num(scores)) > threshold),
        }
    )
