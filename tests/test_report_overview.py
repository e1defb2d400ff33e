"""llmcost._report: the overview is computed once and rendered twice, as text and as HTML, showing the same
periods and the same anomalies; it holds what llmcost.analytics answers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from llmcost import CostEntry, Usage, analytics
from llmcost._report import _overview
from llmcost._report._html import render_html
from llmcost._report._overview import choose_freq, compute_overview
from llmcost._report._text import render_text
from llmcost.cli import main
from llmcost.stores import DuckDBStore, MemoryStore

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


# A day and a half of hourly calls, one hour twenty times the usual spend.
ENTRIES = [
    CostEntry(
        id=f"{i:026x}",
        timestamp=T0 + timedelta(hours=i, minutes=5),
        amount=Decimal("0.10") * (20 if i == 13 else 1),
        resource="summarize",
        model="gpt-4o",
        provider="openai",
        usage=Usage(1000, 100),
    )
    for i in range(36)
]


def hours_store() -> MemoryStore:
    store = MemoryStore()
    store.append(ENTRIES)
    return store


def test_text_and_html_show_the_same_periods_and_anomalies() -> None:
    overview = compute_overview(hours_store(), store="memory://", now=T0 + timedelta(days=2))
    assert (overview.freq, overview.unit) == ("h", "hour")  # a day and a half: hours, in both renderings
    text = render_text(overview)
    page = render_html(overview)
    assert "\nHourly spend (last 14 hours)\n" in text
    assert "<h2>Spend per hour</h2>" in page and "<h2>Anomalies (per hour)</h2>" in page
    assert list(overview.anomalies["period"].dt.hour) == [13]
    assert "2024-05-01 13:00" in text.split("Anomalies")[1]
    assert ">2024-05-01 13:00<" in page


def test_the_overview_holds_what_analytics_answers() -> None:
    store = hours_store()
    overview = compute_overview(store, now=T0 + timedelta(days=2))
    assert overview.cost == pytest.approx(float(Decimal("0.10") * 55)) and overview.calls == 36
    assert overview.by_model.equals(analytics.by_model(store))
    assert overview.periods.equals(analytics.over_time(store, "h"))
    flagged = analytics.anomalies(store, "h")
    assert overview.anomalies.equals(flagged[flagged["anomaly"]].reset_index(drop=True))


def test_an_empty_selection() -> None:
    overview = compute_overview(MemoryStore(), store="memory://")
    assert overview.empty and overview.first is None
    assert render_text(overview) == "No entries in memory:// for this selection.\n"
    assert "No entries for this selection." in render_html(overview)


@pytest.mark.parametrize(
    ("days", "freq"), [(0.5, "h"), (2, "h"), (2.5, "D"), (120, "D"), (121, "W"), (730, "W"), (731, "MS")]
)
def test_the_period_follows_the_span(days: float, freq: str) -> None:
    assert choose_freq(T0, T0 + timedelta(days=days))[0] == freq


def test_report_with_html_computes_the_overview_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "costs.duckdb"
    store = DuckDBStore(path)
    store.append(ENTRIES)
    store.close()
    calls = []
    real = _overview.compute_overview

    def counting(*args: object, **kwargs: object) -> _overview.Overview:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_overview, "compute_overview", counting)
    page = tmp_path / "report.html"
    assert main(["report", "--store", f"duckdb://{path}", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert len(calls) == 1
    assert "Hourly spend" in out and "Spend per hour" in page.read_text(encoding="utf-8")


# -- the month's forecast in its first day ---------------------------------------------------------------------------
MAY = datetime(2024, 5, 1, tzinfo=timezone.utc)


def month_start_store() -> MemoryStore:
    """Ten April days of $1.00 a day, then a whole day's $4.80 GPU bill recorded five minutes into May."""
    store = MemoryStore()
    april = [CostEntry(id=f"{i:026x}", timestamp=MAY - timedelta(days=i + 1), amount="1.00") for i in range(10)]
    store.append([*april, CostEntry(id="b" * 26, timestamp=MAY + timedelta(minutes=5), amount="4.80")])
    return store


@pytest.mark.parametrize(
    ("elapsed", "words"),
    [
        (timedelta(minutes=9, seconds=59), "9 min"),
        (timedelta(hours=2, minutes=12), "2 h"),
        (timedelta(hours=23, minutes=59), "23 h"),
    ],
)
def test_the_first_day_of_a_month_shows_its_spend_so_far_and_no_run_rate(elapsed: timedelta, words: str) -> None:
    overview = compute_overview(month_start_store(), now=MAY + elapsed)
    assert overview.projection_too_early and overview.month_elapsed == elapsed
    assert overview.month_projected > 100  # the run-rate itself is still the analytics' (4.80 over 30+ days)
    text = render_text(overview)
    forecast = text.split("\nForecast\n")[1].split("\n\n")[0]
    assert f"$4.80 so far, {words} into the month: too early for a run-rate" in forecast
    assert "by month end" not in forecast and f"{overview.month_projected:,.2f}" not in forecast
    page = render_html(overview)
    assert "This month, so far" in page and f"{words} into May 2024: too early to project" in page
    assert "This month, projected" not in page


def test_from_one_day_into_the_month_the_reports_project_at_the_current_rate() -> None:
    overview = compute_overview(month_start_store(), now=MAY + timedelta(days=1))
    assert not overview.projection_too_early and overview.month_projected == pytest.approx(4.80 * 31)
    assert "$4.80 so far; $148.80 by month end at the current rate" in render_text(overview)
    page = render_html(overview)
    assert "This month, projected" in page and "$148.80" in page and "too early" not in page


def test_a_naive_now_is_read_as_utc_for_the_month_elapsed() -> None:
    overview = compute_overview(month_start_store(), now=datetime(2024, 5, 1, 3))
    assert overview.month_elapsed == timedelta(hours=3) and overview.projection_too_early


def test_the_running_period_is_not_flagged(tmp_path: Path) -> None:
    # 20 whole days of about $24, then 3 hours of today: today's $3 is no drop, only a day not over yet.
    start = datetime(2024, 5, 1, tzinfo=timezone.utc)
    store = DuckDBStore(tmp_path / "partial.duckdb")
    store.append([CostEntry(id=f"{h:026x}", timestamp=start + timedelta(hours=h), amount="1") for h in range(483)])
    overview = compute_overview(store, now=start + timedelta(days=20, hours=3))
    assert overview.freq == "D" and overview.anomalies.empty
    store.close()
