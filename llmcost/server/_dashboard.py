"""``GET /``: the HTML report (``llmcost._report``) as a live dashboard.

The page is the report's own page (cards, SVG charts, tables, rendered on the server by the same code as
``llmcost report --html``) plus a filter bar (period, category, resource, tag) and a small inline script: every few
seconds, and at once when a filter changes, it fetches the summary JSON (``/api/v1/costs/summary``); when the
totals or the filters changed, it fetches the report's ``<main>`` again (``/?fragment=1&...``) and swaps it in. No
external script, style or font; without JavaScript the filter form still works as a plain GET form.

Example::

    html = dashboard_page(tracker, Filters.parse(period="7d"), store="duckdb:///costs.duckdb")
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import attrs

from .._entry import to_category
from .._report._format import escape
from .._report._html import render_html, render_main
from .._report._overview import Overview, compute_overview
from ..analytics import by_category, by_resource, by_tag
from ..analytics._source import as_source

if TYPE_CHECKING:
    from .._tracker import CostTracker

__all__ = ["PERIODS", "FilterError", "Filters", "dashboard_fragment", "dashboard_page"]

#: The period filter: label -> how far back (None: everything).
PERIODS: dict[str, timedelta | None] = {
    "all": None,
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}


class FilterError(ValueError):
    """A dashboard filter that cannot be read; ``field`` names it (``period``, ``category`` or ``tag``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@attrs.frozen
class Filters:
    """The dashboard's filters; ``tag`` is ``key:value``."""

    period: str = "all"
    category: str | None = None
    resource: str | None = None
    tag: str | None = None

    @classmethod
    def parse(
        cls,
        *,
        period: str | None = None,
        category: str | None = None,
        resource: str | None = None,
        tag: str | None = None,
    ) -> Filters:
        """Filters from query parameters; ``FilterError`` (a ``ValueError``) naming the bad one."""
        chosen = period or "all"
        if chosen not in PERIODS:
            raise FilterError(f"period must be one of {', '.join(PERIODS)}; got {period!r}", "period")
        if category:
            try:
                category = to_category(category).value
            except ValueError as exc:
                raise FilterError(str(exc), "category") from None
        if tag and (":" not in tag or tag.startswith(":")):
            raise FilterError(f"tag must be key:value with a key, got {tag!r}", "tag")
        return cls(chosen, category or None, resource or None, tag or None)

    def since(self, now: datetime) -> datetime | None:
        back = PERIODS[self.period]
        return None if back is None else now - back

    def tags(self) -> dict[str, str] | None:
        if not self.tag:
            return None
        key, _, value = self.tag.partition(":")
        return {key: value}


def _overview(tracker: CostTracker, filters: Filters, store: str | None, now: datetime) -> Overview:
    src = as_source(tracker).where(
        since=filters.since(now), tags=filters.tags(), category=filters.category, resource=filters.resource
    )
    return compute_overview(src, store=store, now=now)


def dashboard_fragment(tracker: CostTracker, filters: Filters, *, store: str | None = None) -> str:
    """The report's ``<main>`` for ``filters`` (what the page's script swaps in)."""
    return render_main(_overview(tracker, filters, store, datetime.now(timezone.utc)))


def _options(name: str, label: str, values: list[str], chosen: str | None) -> str:
    items = [f'<option value="">{escape(label)}</option>']
    for value in values:
        mark = " selected" if value == chosen else ""
        items.append(f'<option value="{escape(value)}"{mark}>{escape(value)}</option>')
    return f'<select name="{name}" id="f-{name}" aria-label="{escape(label)}">{"".join(items)}</select>'


def _controls(tracker: CostTracker, filters: Filters) -> str:
    categories = sorted(str(c) for c in by_category(tracker)["category"].dropna())
    resources = sorted(str(r) for r in by_resource(tracker)["resource"].dropna())
    tags = by_tag(tracker)
    pairs = sorted(
        f"{k}:{v}" for k, v in zip(tags["tag_key"], tags["tag_value"], strict=True) if k is not None and v is not None
    )
    periods = "".join(
        f'<option value="{p}"{" selected" if p == filters.period else ""}>'
        f"{'all time' if p == 'all' else 'last ' + p}</option>"
        for p in PERIODS
    )
    return (
        '<form id="filters" class="filters" method="get" action="/">'
        f'<select name="period" id="f-period" aria-label="period">{periods}</select>'
        + _options("category", "all categories", categories, filters.category)
        + _options("resource", "all resources", resources, filters.resource)
        + _options("tag", "all tags", pairs, filters.tag)
        + '<noscript><button type="submit">Apply</button></noscript>'
        '<span id="live" class="live">live</span></form>'
    )


_CSS = """
.filters { max-width: 1180px; margin: 14px auto 0; padding: 0 24px; display: flex; gap: 10px; flex-wrap: wrap;
  align-items: center; }
.filters select { font: inherit; padding: 5px 8px; border: 1px solid #d1d5db; border-radius: 6px; background: #fff; }
.live { color: #6b7280; font-size: 12px; margin-left: auto; }
.live.error { color: #b91c1c; }
"""

# The page's script: poll the summary JSON; when the figures or the filters change, swap in the report's <main>.
_SCRIPT = """
(function () {
  const form = document.getElementById("filters");
  const live = document.getElementById("live");
  const report = document.getElementById("report");
  const periods = PERIODS;
  let shown = null;
  function filters() {
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) { if (v && !(k === "period" && v === "all")) p.set(k, v); }
    return p;
  }
  function summaryQuery(p) {
    const q = new URLSearchParams({by: "category"});
    const back = periods[p.get("period") || "all"];
    if (back) q.set("since", new Date(Date.now() - back * 1000).toISOString());
    for (const k of ["category", "resource", "tag"]) { if (p.get(k)) q.set(k, p.get(k)); }
    return q;
  }
  async function refresh(force) {
    const p = filters();
    try {
      const r = await fetch("/api/v1/costs/summary?" + summaryQuery(p), {credentials: "same-origin"});
      if (!r.ok) throw new Error("summary: HTTP " + r.status);
      const s = await r.json();
      const key = p.toString() + "|" + s.total + "|" + s.calls;
      if (force || key !== shown) {
        const f = new URLSearchParams(p); f.set("fragment", "1");
        const h = await fetch("/?" + f, {credentials: "same-origin"});
        if (!h.ok) throw new Error("report: HTTP " + h.status);
        report.innerHTML = await h.text();
        shown = key;
        history.replaceState(null, "", p.toString() ? "/?" + p : "/");
      }
      live.className = "live";
      live.textContent = "live · $" + s.total + " in " + s.calls + " calls · updated " +
        new Date().toISOString().slice(11, 19) + " UTC";
      report.dataset.total = s.total;
    } catch (err) {
      live.className = "live error";
      live.textContent = "not updated: " + err.message;
    }
  }
  form.addEventListener("change", function () { refresh(true); });
  form.addEventListener("submit", function (e) { e.preventDefault(); refresh(true); });
  refresh(false);
  setInterval(function () { refresh(false); }, REFRESH_MS);
})();
"""


def dashboard_page(
    tracker: CostTracker, filters: Filters, *, store: str | None = None, refresh_seconds: float = 5.0
) -> str:
    """The whole dashboard page for ``filters``."""
    now = datetime.now(timezone.utc)
    seconds = {k: (v.total_seconds() if v is not None else None) for k, v in PERIODS.items()}
    script = _SCRIPT.replace("PERIODS", json.dumps(seconds)).replace("REFRESH_MS", str(int(refresh_seconds * 1000)))
    return render_html(
        _overview(tracker, filters, store, now),
        title="llmcost dashboard",
        controls=_controls(tracker, filters),
        script=script,
        css=_CSS,
    )
