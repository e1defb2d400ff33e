"""The overview as text for a terminal (80 columns), and the one-line progress bar the command line draws.

Example::

    >>> from llmcost._report._overview import compute_overview
    >>> print(render_text(compute_overview(store, store="duckdb://llmcost.duckdb", now=tracker.clock())))
    llmcost report: duckdb://llmcost.duckdb
    2024-05-08 09:00 to 2024-05-17 11:30 UTC:
    $30.49 over 90 calls and 3.0M tokens
    ...
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import IO, TYPE_CHECKING

from ._format import WIDTH, cell, count, elapsed_words, frame_table, money
from ._overview import Overview

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Progress", "render_text"]

_PERIODS = {"hour": "Hourly", "day": "Daily", "week": "Weekly", "month": "Monthly"}
_SHOWN_PERIODS = 14


def render_text(overview: Overview) -> str:
    """The overview report: totals, breakdowns, recent periods, forecast, anomalies, advice; or one line saying the
    selection is empty.

    Example::

        >>> from llmcost._report._overview import compute_overview
        >>> text = render_text(compute_overview(tracker, now=tracker.clock()))
        >>> print(text[text.index("Forecast"):text.index("Anomalies")].strip())
        Forecast
        This month, 2024-05-01 to 2024-05-31 UTC:
        $30.49 so far; $57.28 by month end at the current rate
    """
    where = f" in {overview.store}" if overview.store else ""
    if overview.empty:
        return f"No entries{where} for this selection.\n"
    parts: list[str] = []
    if overview.store:
        url = overview.store
        shown = url if len(url) <= WIDTH - 16 else "…" + url[-(WIDTH - 17) :]
        parts.append(f"llmcost report: {shown}\n")
    else:
        parts.append("llmcost report\n")
    tokens = overview.input_tokens + overview.output_tokens
    parts.append(
        f"{cell(overview.first, 'time')} to {cell(overview.last, 'time')} UTC:\n{money(overview.cost)} over "
        f"{overview.calls:,} calls and {count(tokens)} tokens"
    )

    def section(heading: str, body: str) -> None:
        parts.append(f"\n\n{heading}\n{body}")

    section(
        "By category",
        frame_table(overview.by_category, ["category", "cost", "calls", "input_tokens", "output_tokens"]),
    )
    section(
        "By model",
        frame_table(overview.by_model.head(10), ["model", "cost", "calls", "input_tokens", "output_tokens"]),
    )
    section(
        "By resource (top 10)",
        frame_table(overview.by_resource.head(10), ["resource", "cost", "calls", "input_tokens"]),
    )
    if not overview.by_tag.empty:
        section("By tag", frame_table(overview.by_tag, ["tag_key", "tag_value", "cost", "calls"]))
    if len(overview.periods) > 1:
        name = _PERIODS.get(overview.unit, f"Per-{overview.unit}")
        shown = overview.periods.tail(_SHOWN_PERIODS)
        span = f"last {len(shown)} {overview.unit}s" + (" of the selection" if overview.window else "")
        section(f"{name} spend ({span})", _bars(shown))
    last_day = overview.month_end - timedelta(days=1)
    forecast = [
        f"This month, {overview.month_start:%Y-%m-%d} to {last_day:%Y-%m-%d} UTC"
        + (f", {overview.month_scope}" if overview.month_scope else "")
        + ":",
        (
            f"{money(overview.month_spent)} so far, {elapsed_words(overview.month_elapsed)} into the month: too early"
            " for a run-rate"
            if overview.projection_too_early
            else f"{money(overview.month_spent)} so far; {money(overview.month_projected)} by month end at the current"
            " rate"
        ),
    ]
    if overview.window:
        forecast.append(f"(the whole month, not only the selection {overview.window})")
    section("Forecast", "\n".join(_fit(line) for line in forecast))
    section(
        f"Anomalies (per {overview.unit}, robust score beyond 3.5)",
        frame_table(overview.anomalies, ["period", "cost", "expected", "score"])
        if not overview.anomalies.empty
        else f"No {overview.unit} stands out.",
    )
    if not overview.advice.empty:
        section(
            "Cheaper models for the same work",
            frame_table(overview.advice.head(8), ["resource", "model", "suggested_model", "cost", "saving"]),
        )
    parts.append("\n\n")
    return "".join(parts)


def _fit(line: str) -> str:
    """``line`` wrapped to ``WIDTH`` columns, continued with an indent."""
    import textwrap

    return textwrap.fill(line, WIDTH, subsequent_indent="  ", break_on_hyphens=False)


def _bars(periods: pd.DataFrame) -> str:
    peak = float(periods["cost"].max()) or 1.0
    lines = []
    for period, cost in zip(periods["period"], periods["cost"], strict=True):
        label = cell(period, "time")
        amount = money(float(cost)).rjust(11)
        room = WIDTH - len(label) - len(amount) - 4
        lines.append(f"{label}  {amount}  {'#' * round(float(cost) / peak * room)}".rstrip())
    return "\n".join(lines)


class Progress:
    """A one-line progress bar on ``stream`` (stderr), redrawn in place; silent unless ``enabled``. Call it with
    ``(done, total)`` (as ``analytics.export(progress=...)`` does), then ``finish()``.

    Example::

        >>> progress = Progress("exporting costs.csv", enabled=sys.stderr.isatty())
        >>> analytics.export(store, "costs.csv", progress=progress)
        90
        >>> progress.finish()
    """

    def __init__(self, label: str, *, enabled: bool, stream: IO[str] | None = None) -> None:
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        share = 1.0 if total <= 0 else min(done / total, 1.0)
        counts = f"{done:,}/{total:,}"
        bar_width = max(10, WIDTH - 1 - len(self.label) - len(counts) - 12)
        filled = round(share * bar_width)
        line = f"{self.label} [{'#' * filled}{'.' * (bar_width - filled)}] {share:4.0%} {counts}"
        self.stream.write("\r" + line[: WIDTH - 1])
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        """End the bar's line, if one was drawn."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
