"""Spend analytics over any cost store: totals by key and by time, forecasts, anomalies, advice and export.

Every function takes a ``source``: a ``CostTracker`` (flushed first), a ``CostStore`` (``MemoryStore``,
``DuckDBStore``, ``ParquetStore``...) or a DataFrame as ``CostTracker.frame()`` returns it. Whatever the source,
the work is one DuckDB SQL query over a relation of its entries (``CostStore.query``): sums of money are exact
``DECIMAL(38, 18)`` and only the final figures become float64 ``cost`` columns for pandas.

Every function that takes a source also takes ``since=``/``until=`` in the command line's forms: datetimes, dates,
ISO text, ``"today"``, ``"yesterday"``, or a span before now (``"7d"``, ``"24h"``).

Time buckets are cut in UTC and labelled by the start of the bucket. ``freq`` takes pandas-style names:
``"min"``, ``"h"``, ``"D"``, ``"W"`` (ISO weeks, starting Monday), ``"MS"`` (calendar months; ``"M"`` is taken
to mean the same), ``"QS"`` and ``"YS"``, or ``"hourly"``, ``"daily"``, ``"weekly"``, ``"monthly"``.

Example::

    from llmcost import analytics

    tracker = llmcost.get_tracker()
    analytics.by_model(tracker)                      # model, cost, calls, tokens..., most expensive first
    analytics.spend(tracker, by=("resource", "tag:team"), since=datetime(2024, 5, 1))
    analytics.by_model(tracker, since="7d")          # the last seven days
    analytics.over_time(tracker, freq="W")           # one row per ISO week, gaps filled with zeros
    analytics.export(tracker, "costs.parquet")
"""

# The layout, one idea per module, imports running down this list only: _freq (time buckets), _source (any source
# as SQL over its entries), _spend (group-bys), _forecast (run-rate, pending work, anomalies), _advice (model
# comparison and cheaper models), _export (files), _reprice (usage priced again: what-ifs), _invoice (provider
# invoices read into daily lines) and _reconcile (recorded spend against an invoice). The tuning constants stay
# importable from here, as before, but are not in ``__all__``: the documented API is the functions.
from ._advice import MIN_SAVING as MIN_SAVING
from ._advice import compare_models, recommendations
from ._export import export
from ._forecast import ANOMALY_THRESHOLD as ANOMALY_THRESHOLD
from ._forecast import anomalies, forecast, forecast_tasks
from ._reconcile import reconcile
from ._reprice import reprice
from ._spend import GROUP_KEYS as GROUP_KEYS
from ._spend import MEASURES as MEASURES
from ._spend import by_category, by_model, by_resource, by_tag, over_time, spend

__all__ = [
    "anomalies",
    "by_category",
    "by_model",
    "by_resource",
    "by_tag",
    "compare_models",
    "export",
    "forecast",
    "forecast_tasks",
    "over_time",
    "recommendations",
    "reconcile",
    "reprice",
    "spend",
]
