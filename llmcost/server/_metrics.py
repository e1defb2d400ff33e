"""``GET /metrics``: spend, calls, tokens and budget utilization in the Prometheus text format.

A ``prometheus_client`` collector that reads the store on every scrape (one grouped query through
``llmcost.analytics``, and the ``BudgetManager``'s status), so the figures are the store's, whichever process
recorded them. It lives in a registry of its own, not the process-wide default.

Metric names (labels in brackets):

- ``llmcost_spend_usd_total`` [category, model, resource]: USD charged, a counter: the sum of the entries of a
  positive amount. Credits and refunds (entries of a negative amount) are not taken off it, since a Prometheus
  counter never goes down (a decrease reads as a reset, and ``rate()`` shows a spike of the whole total).
- ``llmcost_credits_usd_total`` [category, model, resource]: USD credited, a counter: the entries of a negative
  amount, as a positive sum. Net spend is ``llmcost_spend_usd_total - llmcost_credits_usd_total``.
- ``llmcost_calls_total`` [category, model, resource]: entries recorded.
- ``llmcost_tokens_total`` [category, model, resource, kind]: tokens, ``kind`` one of input, output, cache_read,
  cache_write.
- ``llmcost_budget_limit_usd``, ``llmcost_budget_spent_usd``, ``llmcost_budget_remaining_usd``,
  ``llmcost_budget_utilization_ratio`` [budget, period]: each saved budget in its current period.

Example::

    registry = metrics_registry(tracker, manager)
    print(generate_latest(registry).decode())
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from .._money import ZERO
from ..analytics._source import MODEL_SQL, as_source
from ..analytics._spend import exact_spend

if TYPE_CHECKING:
    from .._manager import BudgetManager
    from .._tracker import CostTracker

__all__ = ["StoreCollector", "metrics_registry"]

_LABELS = ["category", "model", "resource"]
_TOKENS = ("input", "output", "cache_read", "cache_write")


class StoreCollector(Collector):
    """Reads the tracker's store and the manager's budgets on each ``collect()`` (each scrape)."""

    def __init__(self, tracker: CostTracker, manager: BudgetManager) -> None:
        self.tracker = tracker
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        spend = CounterMetricFamily("llmcost_spend_usd", "USD charged (entries of a positive amount)", labels=_LABELS)
        credits = CounterMetricFamily(
            "llmcost_credits_usd", "USD credited (entries of a negative amount, as a positive sum)", labels=_LABELS
        )
        calls = CounterMetricFamily("llmcost_calls", "Entries (calls) recorded", labels=_LABELS)
        tokens = CounterMetricFamily("llmcost_tokens", "Tokens recorded", labels=[*_LABELS, "kind"])
        credited = self._credits()
        for series, (cost, count, *counts) in self._series().items():
            credit = credited.get(series, ZERO)
            spend.add_metric(list(series), float(cost + credit))  # the net sum plus what credits took off it
            credits.add_metric(list(series), float(credit))
            calls.add_metric(list(series), float(count))
            for kind, n in zip(_TOKENS, counts, strict=True):
                tokens.add_metric([*series, kind], float(n))
        yield spend
        yield credits
        yield calls
        yield tokens

        names = ["budget", "period"]
        limit = GaugeMetricFamily("llmcost_budget_limit_usd", "Budget limit per period, USD", labels=names)
        spent = GaugeMetricFamily("llmcost_budget_spent_usd", "Spent in the current period, USD", labels=names)
        remaining = GaugeMetricFamily(
            "llmcost_budget_remaining_usd", "Limit less spend and open reservations, USD", labels=names
        )
        utilization = GaugeMetricFamily(
            "llmcost_budget_utilization_ratio", "Spent over limit (1 is fully used)", labels=names
        )
        for b in self.manager.list():
            b.sync(force=True)
            labels = [b.name, b.period.value if b.period else "block"]
            limit.add_metric(labels, float(b.limit))
            spent.add_metric(labels, float(b.spent))
            remaining.add_metric(labels, float(b.remaining))
            utilization.add_metric(labels, b.utilization)
        yield limit
        yield spent
        yield remaining
        yield utilization

    def _series(self) -> dict[tuple[str, str, str], list[Any]]:
        """Spend, calls and the token counts per label set. A missing model or resource is the empty label, as
        an empty one is: the store's groups of both are summed here (exactly), since a scrape may hold one sample
        per series and Prometheus would drop the other."""
        series: dict[tuple[str, str, str], list[Any]] = {}
        frame = exact_spend(self.tracker, by=("category", "model", "resource"))
        for row in frame.itertuples(index=False):
            labels = (row.category or "", row.model or "", row.resource or "")
            figures = [row.cost, int(row.calls), *(int(getattr(row, f"{kind}_tokens")) for kind in _TOKENS)]
            into = series.get(labels)
            if into is None:
                series[labels] = figures
            else:
                series[labels] = [a + b for a, b in zip(into, figures, strict=True)]
        return series

    def _credits(self) -> dict[tuple[str, str, str], Decimal]:
        """The credits (entries of a negative amount) per label set, as positive exact sums, grouped as ``_series``
        groups (the model by its catalog id, a missing label as the empty one). One query over the negative entries
        only; the net sums keep the grouping's path (pushed down into PostgreSQL)."""
        credits: dict[tuple[str, str, str], Decimal] = {}
        with as_source(self.tracker) as src:
            frame = src.sql(
                f"SELECT category, {MODEL_SQL} AS model, resource, sum(amount) AS credit FROM _e WHERE amount < 0"
                " GROUP BY ALL"
            )
        for row in frame.itertuples(index=False):
            # (A missing label comes back as None or NaN, as the frame's column holds others: the empty label.)
            labels = (_label(row.category), _label(row.model), _label(row.resource))
            credits[labels] = credits.get(labels, ZERO) - Decimal(row.credit)
        return credits


def _label(value: object) -> str:
    """A label value from a result frame: the text, or the empty label for SQL NULL (None, or NaN beside strings)."""
    return value if isinstance(value, str) else ""


def metrics_registry(tracker: CostTracker, manager: BudgetManager) -> CollectorRegistry:
    """A registry holding only the store collector (no process metrics of the server itself)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(tracker, manager))
    return registry
