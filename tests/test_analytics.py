"""llmcost.analytics: the same answers from every source (tracker, memory, DuckDB, Parquet, frame), exact sums,
tag and time semantics, forecasts, anomalies, recommendations and export."""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

import llmcost
from llmcost import CostEntry, CostTracker, Usage, analytics, get_price
from llmcost.stores import COLUMNS, DuckDBStore, MemoryStore, ParquetStore

MON = datetime(2024, 5, 13, tzinfo=timezone.utc)  # a Monday
INJECTION = "'; DROP TABLE entries; --"
SOURCES = ("tracker", "memory", "duckdb", "parquet", "frame")


def entry(n: int, when: datetime, amount: str, **fields: Any) -> CostEntry:
    return CostEntry(id=f"{n:026x}", timestamp=when, amount=amount, **fields)


ENTRIES = [
    entry(
        1,
        MON + timedelta(hours=10),
        "0.1",
        resource="summarize",
        model="gpt-4o",
        provider="openai",
        usage=Usage(1000, 200),
        tags={"team": "search", "env": "prod"},
    ),
    entry(
        2,
        MON + timedelta(hours=23, minutes=30),
        "0.2",
        resource="summarize",
        model="gpt-4o",
        provider="openai",
        usage=Usage(2000, 300),
        tags={"team": "search"},
    ),
    entry(
        3,
        MON + timedelta(days=1, hours=1),
        "0.3",
        resource="chat",
        model="claude-3-5-sonnet",
        provider="anthropic",
        usage=Usage(3000, 500, cache_read_tokens=1000, cache_write_tokens=200),
        tags={"team": "ads"},
    ),
    entry(4, MON + timedelta(days=2, hours=12), "1.25", category="compute", resource="gpu"),
    entry(
        5,
        MON + timedelta(days=4, hours=8),
        "0.05",
        resource="chat",
        model="gpt-4o-mini",
        provider="openai",
        usage=Usage(500, 100),
        tags={"env": "dev"},
    ),
    entry(
        6,
        MON + timedelta(days=7, hours=9),
        "0.000000000000000001",
        category="other",
        resource=INJECTION,
        tags={"team": "x' OR '1'='1", "it's": "ok"},
    ),
]
TOTAL = sum((e.amount for e in ENTRIES), Decimal(0))


def fill(store: Any, entries: list[CostEntry] = ENTRIES) -> Any:
    store.append(entries)
    store.flush()
    return store


@pytest.fixture
def make_source(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build a source of the given kind holding ``entries``."""
    made: list[Any] = []
    counter = iter(range(1000))

    def make(kind: str, entries: list[CostEntry] = ENTRIES) -> Any:
        n = next(counter)
        if kind == "tracker":
            tracker = CostTracker(fill(MemoryStore(), entries), clock=lambda: MON + timedelta(days=3))
            made.append(tracker)
            return tracker
        if kind == "memory":
            return fill(MemoryStore(), entries)
        if kind == "duckdb":
            store = fill(DuckDBStore(tmp_path / f"costs{n}.duckdb"), entries)
        elif kind == "parquet":
            store = fill(ParquetStore(tmp_path / f"dataset{n}"), entries)
        else:
            return fill(MemoryStore(), entries).scan()
        made.append(store)
        return store

    yield make
    for thing in made:
        thing.close()


@pytest.fixture(params=SOURCES)
def source_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=SOURCES)
def source(request: pytest.FixtureRequest, make_source: Callable[..., Any]) -> Any:
    return make_source(request.param)


MEASURES = ["cost", "calls", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"]


def rows(frame: pd.DataFrame, *columns: str) -> list[tuple[Any, ...]]:
    return list(frame[list(columns)].itertuples(index=False, name=None))


# -- spend and the by_* shortcuts ----------------------------------------------------------------------------------


def test_by_category_is_exact_and_sorted_by_cost(source: Any) -> None:
    frame = analytics.by_category(source)
    assert list(frame.columns) == ["category", *MEASURES]
    assert rows(frame, "category", "calls") == [("compute", 1), ("llm_inference", 4), ("other", 1)]
    inference = frame.set_index("category").loc["llm_inference"]
    # 0.1 + 0.2 + 0.3 + 0.05 summed as floats is 0.6500000000000001; exact DECIMAL sums give 0.65.
    assert inference["cost"] == 0.65
    assert inference["input_tokens"] == 6500
    assert inference["cache_read_tokens"] == 1000 and inference["cache_write_tokens"] == 200
    assert frame["cost"].dtype == "float64" and frame["calls"].dtype == "int64"
    assert frame["cost"].is_monotonic_decreasing


def test_every_source_gives_the_same_frames(make_source: Callable[..., Any]) -> None:
    expected = {
        "spend": analytics.spend(make_source("memory"), by=("model", "tag:team")),
        "tags": analytics.by_tag(make_source("memory")),
        "weekly": analytics.over_time(make_source("memory"), freq="W", by="category"),
    }
    for kind in SOURCES:
        src = make_source(kind)
        pd.testing.assert_frame_equal(analytics.spend(src, by=("model", "tag:team")), expected["spend"])
        pd.testing.assert_frame_equal(analytics.by_tag(src), expected["tags"])
        pd.testing.assert_frame_equal(analytics.over_time(src, freq="W", by="category"), expected["weekly"])


def test_sums_past_10_to_the_20_stay_exact(source_kind: str, make_source: Callable[..., Any]) -> None:
    # Each amount fits DECIMAL(38, 18); their sum does not, and DuckDB's sum(amount) overflowed.
    big = [
        entry(1, MON, "60000000000000000000.25", model="gpt-4o", tags={"team": "a"}),
        entry(2, MON + timedelta(days=1), "60000000000000000000.5", model="gpt-4o"),
        entry(3, MON + timedelta(days=1), "1", resource="x", model="gpt-4o-mini", tags={"team": "b"}),
    ]
    source = make_source(source_kind, big)
    exact = analytics._spend.exact_spend(source, ("resource",))
    assert rows(exact, "resource", "cost") == [(None, Decimal("120000000000000000000.75")), ("x", Decimal(1))]
    assert rows(analytics.spend(source, ()), "cost", "calls") == [(1.2e20, 3)]
    assert rows(analytics.by_category(source), "cost") == [(1.2e20,)]
    assert rows(analytics.by_tag(source), "tag_value", "cost") == [(None, 6e19), ("a", 6e19), ("b", 1.0)]
    assert rows(analytics.over_time(source, "W"), "cost") == [(1.2e20,)]
    assert rows(analytics.compare_models(source), "model", "cost") == [("gpt-4o", 1.2e20), ("gpt-4o-mini", 1.0)]
    spent = analytics.forecast(source, "monthly", now=MON + timedelta(days=2))["spent"].iloc[0]
    assert spent == 1.2e20


def test_spend_total_row_and_several_keys(source: Any) -> None:
    total = analytics.spend(source, by=())
    assert list(total.columns) == MEASURES
    assert total["cost"].iloc[0] == float(TOTAL) and total["calls"].iloc[0] == len(ENTRIES)
    frame = analytics.spend(source, by=["resource", "model"])
    assert list(frame.columns) == ["resource", "model", *MEASURES]
    assert ("summarize", "gpt-4o", 0.3) in rows(frame, "resource", "model", "cost")


def test_by_resource_and_model_count_missing_values_under_none(source: Any) -> None:
    models = analytics.by_model(source)
    assert dict(rows(models, "model", "calls")) == {
        None: 2,
        "gpt-4o": 2,
        "claude-3-5-sonnet": 1,
        "gpt-4o-mini": 1,
    }
    resources = analytics.by_resource(source)
    assert set(resources["resource"]) == {"gpu", "chat", "summarize", INJECTION}


def test_tag_keys_and_values_are_data_not_sql(source: Any) -> None:
    frame = analytics.spend(source, by=("tag:it's",))
    assert rows(frame, "tag:it's", "calls") == [(None, 5), ("ok", 1)]
    frame = analytics.spend(source, by=(f"tag:{INJECTION}",))
    assert rows(frame, f"tag:{INJECTION}", "calls") == [(None, 6)]
    teams = analytics.by_tag(source, "team")
    assert "x' OR '1'='1" in set(teams["tag_value"])


@pytest.mark.parametrize(
    ("by", "message"),
    [
        ("team", "did you mean 'tag:team'"),
        ("Model", r"did you mean 'model'\?\)$"),  # a known key in other case, not a tag 'Model'
        ("PROVIDER", r"did you mean 'provider'\?\)$"),
        (("model", "model"), "twice"),
        ("tag:", "without a key"),
        (("category; DROP TABLE entries",), "must name category"),
        ((1,), "sequence of str"),
    ],
)
def test_spend_refuses_unknown_keys(by: Any, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        analytics.spend(MemoryStore(), by=by)


def test_spend_since_until_window(source: Any) -> None:
    frame = analytics.spend(source, by=(), since=MON + timedelta(hours=10), until=MON + timedelta(days=2, hours=12))
    # since is inclusive (entry 1 at exactly 10:00), until exclusive (entry 4 at exactly that time)
    assert frame["calls"].iloc[0] == 3
    assert frame["cost"].iloc[0] == pytest.approx(0.6)
    naive = analytics.spend(source, by=(), since=datetime(2024, 5, 20))  # naive is UTC
    assert naive["calls"].iloc[0] == 1


def test_bad_source_and_frame_without_columns() -> None:
    with pytest.raises(TypeError, match="source must be a CostTracker"):
        analytics.by_category([1, 2, 3])
    with pytest.raises(ValueError, match="no 'amount' column"):
        analytics.by_category(pd.DataFrame({"timestamp": [MON]}))


def test_a_filtered_frame_from_the_tracker_is_a_source(make_source: Callable[..., Any]) -> None:
    tracker = make_source("tracker")
    frame = tracker.frame(resource="chat")[["timestamp", "amount", "model", "tags"]]
    models = analytics.by_model(frame)
    assert rows(models, "model", "cost") == [("claude-3-5-sonnet", 0.3), ("gpt-4o-mini", 0.05)]


# -- tags ---------------------------------------------------------------------------------------------------------


def test_by_tag_with_a_key(source: Any) -> None:
    frame = analytics.by_tag(source, "team")
    assert list(frame.columns) == ["tag_value", *MEASURES]
    # search and ads both cost 0.3: ties go by key
    assert rows(frame, "tag_value", "calls") == [(None, 2), ("ads", 1), ("search", 2), ("x' OR '1'='1", 1)]
    assert frame["cost"].sum() == pytest.approx(float(TOTAL))


def test_by_tag_long_form_counts_each_entry_once_per_key(source: Any) -> None:
    frame = analytics.by_tag(source)
    assert list(frame.columns) == ["tag_key", "tag_value", *MEASURES]
    got = {(k, v): (c, n) for k, v, c, n in rows(frame, "tag_key", "tag_value", "cost", "calls")}
    assert got[("env", "prod")] == (0.1, 1)
    assert got[("env", "dev")] == (0.05, 1)
    assert got[("env", None)] == (1.75, 4)  # entries 2, 3, 4, 6: no env tag (4 has no tags at all)
    assert got[("team", None)] == (1.3, 2)  # entries 4 and 5
    assert got[("it's", None)] == (1.9, 5)
    # Every key's rows add up to all entries: each entry counts once per key.
    per_key = frame.groupby("tag_key")["calls"].sum()
    assert set(per_key) == {len(ENTRIES)}
    assert list(frame["tag_key"]) == sorted(frame["tag_key"])


def test_by_tag_without_any_tags_is_empty() -> None:
    store = fill(MemoryStore(), [entry(1, MON, "1")])
    assert analytics.by_tag(store).empty
    assert rows(analytics.by_tag(store, "team"), "tag_value", "calls") == [(None, 1)]


# -- time ---------------------------------------------------------------------------------------------------------


def test_daily_buckets_are_utc_and_over_time_fills_gaps(source: Any) -> None:
    frame = analytics.over_time(source, freq="D")
    assert list(frame.columns) == ["period", *MEASURES]
    assert str(frame["period"].dtype) == "datetime64[us, UTC]"
    days = [p.to_pydatetime() for p in frame["period"]]
    assert days == [MON + timedelta(days=d) for d in range(8)]
    costs = dict(zip(days, frame["cost"], strict=True))
    assert costs[MON] == pytest.approx(0.3)  # 10:00 and 23:30 UTC both fall on Monday
    assert costs[MON + timedelta(days=3)] == 0.0 and costs[MON + timedelta(days=5)] == 0.0
    assert frame["calls"].sum() == len(ENTRIES)


def test_weeks_start_monday_and_months_on_the_first(source: Any) -> None:
    weeks = analytics.spend(source, by=(), freq="W")
    assert sorted(p.to_pydatetime() for p in weeks["period"]) == [MON, MON + timedelta(days=7)]
    months = analytics.over_time(source, freq="MS")
    assert [p.to_pydatetime() for p in months["period"]] == [datetime(2024, 5, 1, tzinfo=timezone.utc)]
    hours = analytics.over_time(source, freq="h")
    assert len(hours) == 7 * 24 + 9 - 10 + 1


def test_over_time_by_key_has_every_group_in_every_period(source: Any) -> None:
    frame = analytics.over_time(source, freq="D", by="tag:team")
    assert len(frame) == 8 * 4  # 8 days x (search, ads, x' OR..., None)
    monday = frame[frame["period"] == pd.Timestamp(MON)]
    # cost first, then the keys (None last)
    assert rows(monday, "tag:team", "cost") == [("search", 0.3), ("ads", 0.0), ("x' OR '1'='1", 0.0), (None, 0.0)]


@pytest.mark.parametrize("freq", ["2D", "Z", "", "minutes"])
def test_unknown_freq_is_refused(freq: str) -> None:
    with pytest.raises(ValueError, match="freq must be one of"):
        analytics.over_time(MemoryStore(), freq=freq)


def test_the_freq_error_lists_exactly_the_names_accepted() -> None:
    # It listed min, h, D, W, MS, QS, YS (or hourly, daily, weekly, monthly), yet Y, T, year... were accepted too.
    from llmcost.analytics._freq import _FREQS, parse_freq

    with pytest.raises(ValueError, match="freq must be one of") as refused:
        parse_freq("fortnightly")
    listed = re.findall(r"[\w-]+", str(refused.value).split("one of", 1)[1].rsplit("; got", 1)[0])
    assert sorted(listed) == sorted(_FREQS)
    for name in listed:
        parse_freq(name)


def test_empty_sources_give_empty_frames_with_the_columns() -> None:
    store = MemoryStore()
    assert list(analytics.spend(store, by="model", freq="D").columns) == ["period", "model", *MEASURES]
    assert analytics.over_time(store).empty
    assert analytics.anomalies(store).empty
    assert list(analytics.compare_models(store).columns) == [
        "model",
        "calls",
        "cost",
        "cost_per_call",
        "cost_per_1k_tokens",
    ]
    assert analytics.recommendations(store).empty


# -- forecasts ----------------------------------------------------------------------------------------------------


def test_forecast_runs_the_rate_to_the_end_of_the_period(source: Any) -> None:
    now = MON + timedelta(days=2, hours=12)  # 2024-05-15 12:00: 14.5 of May's 31 days gone
    frame = analytics.forecast(source, "monthly", now=now)
    assert list(frame.columns) == ["period_start", "period_end", "spent", "projected"]
    row = frame.iloc[0]
    assert row.period_start == pd.Timestamp("2024-05-01", tz="UTC")
    assert row.period_end == pd.Timestamp("2024-06-01", tz="UTC")
    assert row.spent == pytest.approx(1.85)  # entries up to and including now
    assert row.projected == pytest.approx(1.85 * 31 / 14.5)


def test_forecast_uses_the_tracker_clock(make_source: Callable[..., Any]) -> None:
    tracker = make_source("tracker")  # clock: Thursday 2024-05-16 00:00
    row = analytics.forecast(tracker, "weekly").iloc[0]
    assert row.period_start == pd.Timestamp(MON) and row.spent == pytest.approx(1.85)
    assert row.projected == pytest.approx(1.85 * 7 / 3)
    with pytest.raises(ValueError, match="hourly, daily, weekly or monthly"):
        analytics.forecast(tracker, "total")


def test_forecast_at_the_start_of_a_period_projects_what_is_spent() -> None:
    store = fill(MemoryStore(), [entry(1, MON, "2")])
    row = analytics.forecast(store, "daily", now=MON).iloc[0]
    assert (row.spent, row.projected) == (2.0, 2.0)


def test_forecast_tasks_is_exact() -> None:
    per_task = llmcost.cost_of("gpt-4o-mini", input_tokens=2000, output_tokens=400)
    assert analytics.forecast_tasks(500, 2000, 400, "gpt-4o-mini") == per_task * 500 * Decimal("1.2")
    assert analytics.forecast_tasks(500, 2000, 400, "gpt-4o-mini", buffer=1) == per_task * 500
    assert analytics.forecast_tasks(10, 1999.2, 399.5, "gpt-4o-mini", buffer="1.5") == per_task * 10 * Decimal("1.5")
    assert isinstance(analytics.forecast_tasks(0, 10, 10, "gpt-4o"), Decimal)


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((-1, 10, 10, "gpt-4o"), {}, "count must be a non-negative int"),
        ((1.5, 10, 10, "gpt-4o"), {}, "count must be"),
        ((1, -10, 10, "gpt-4o"), {}, "avg_input_tokens must not be negative"),
        ((1, 10, 10, "gpt-4o"), {"buffer": 0}, "buffer must be a positive"),
        ((1, 10, 10, "no-such-model-x"), {}, "no-such-model-x"),
    ],
)
def test_forecast_tasks_checks_its_input(args: tuple[Any, ...], kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises((ValueError, KeyError), match=error):
        analytics.forecast_tasks(*args, **kwargs)


# -- anomalies ----------------------------------------------------------------------------------------------------


def daily(costs: list[str], hour: int = 0) -> MemoryStore:
    """A cost a day from Monday, at ``hour`` (at 0 the first day is whole: the data begin at its start)."""
    return fill(MemoryStore(), [entry(i + 1, MON + timedelta(days=i, hours=hour), c) for i, c in enumerate(costs)])


def test_anomalies_flag_a_spike_with_a_robust_score() -> None:
    costs = ["10", "11", "9", "10", "12", "10", "95", "11", "9", "10"]
    frame = analytics.anomalies(daily(costs))
    assert list(frame.columns) == ["period", "cost", "expected", "score", "anomaly"]
    assert frame["anomaly"].tolist() == [c == "95" for c in costs]
    # median 10, MAD = median(|x - 10|) = 1 -> score (95 - 10) / (1.4826 * 1)
    spike = frame[frame["anomaly"]].iloc[0]
    assert spike.expected == 10.0
    assert spike.score == pytest.approx(85 / 1.4826)
    assert frame["score"].iloc[4] == pytest.approx(2 / 1.4826)
    assert frame["anomaly"].dtype == bool


def test_anomalies_when_most_periods_cost_the_same() -> None:
    frame = analytics.anomalies(daily(["5", "5", "5", "5", "5", "5", "40"]))
    # MAD is 0: the mean absolute deviation (35 / 7 = 5) scaled by 1.2533 stands in.
    assert frame["score"].iloc[-1] == pytest.approx(35 / (1.2533 * 5))
    assert frame["anomaly"].tolist() == [False] * 6 + [True]
    flat = analytics.anomalies(daily(["3", "3", "3"]))
    assert flat["score"].tolist() == [0.0, 0.0, 0.0] and not flat["anomaly"].any()


def test_anomalies_count_empty_days_and_take_a_threshold() -> None:
    store = fill(MemoryStore(), [entry(i + 1, MON + timedelta(days=2 * i), "1") for i in range(5)])
    frame = analytics.anomalies(store, threshold=10)
    assert len(frame) == 9 and frame["cost"].tolist()[:3] == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="threshold must be a positive number"):
        analytics.anomalies(store, threshold=0)


def test_anomalies_leave_out_periods_not_complete() -> None:
    costs = ["10", "11", "9", "10", "12", "10", "11", "1"]
    # The data begin at 02:00 on Monday and "now" is 03:00 on the last day: neither day is whole, so neither is
    # scored (the last, a drop to 1, was flagged as one) nor counted in the median.
    tracker = CostTracker(daily(costs, hour=2), clock=lambda: MON + timedelta(days=7, hours=3))
    frame = analytics.anomalies(tracker)
    assert not frame["anomaly"].any()
    assert frame["score"].isna().tolist() == [True] + [False] * 6 + [True]
    assert frame["expected"].iloc[0] == 10.5  # the median of the six whole days
    # from a since at the first day's start, that day is whole; an until in the past ends the running period
    whole = analytics.anomalies(tracker, since=MON, until=MON + timedelta(days=7))
    assert whole["score"].notna().all() and len(whole) == 7
    # a store's "now" is the current time: its last day, long past, is whole
    assert analytics.anomalies(daily(costs))["anomaly"].tolist() == [False] * 7 + [True]


# -- models -------------------------------------------------------------------------------------------------------


def test_compare_models(source: Any) -> None:
    frame = analytics.compare_models(source)
    assert rows(frame, "model", "calls") == [("claude-3-5-sonnet", 1), ("gpt-4o", 2), ("gpt-4o-mini", 1)]
    gpt = frame.set_index("model").loc["gpt-4o"]
    assert gpt["cost"] == pytest.approx(0.3)
    assert gpt["cost_per_call"] == pytest.approx(0.15)
    assert gpt["cost_per_1k_tokens"] == pytest.approx(0.3 / 3.5)


UNPRICED = [
    # an unknown model, and a call of gpt-4o recorded unpriced (as an id unknown when it was recorded would be)
    entry(
        7, MON + timedelta(hours=11), "0", model="no-such-model", usage=Usage(1_000_000, 100_000), pricing="unpriced"
    ),
    entry(8, MON + timedelta(hours=12), "0", model="no-such-model", usage=Usage(5, 5), pricing="unpriced"),
    entry(9, MON + timedelta(hours=13), "0", model="gpt-4o", usage=Usage(100_000, 0), pricing="unpriced"),
]


def test_compare_models_leaves_unpriced_calls_out_of_the_cost_figures(
    source_kind: str, make_source: Callable[..., Any]
) -> None:
    # Counted as $0, an unknown model looked the cheapest (0.0 a call and per 1k tokens), and an unpriced call of a
    # priced model cut its cost per call and per token. Its calls still count.
    frame = analytics.compare_models(make_source(source_kind, [*ENTRIES, *UNPRICED]))
    assert frame["model"].tolist() == ["claude-3-5-sonnet", "gpt-4o", "gpt-4o-mini", "no-such-model"]
    gpt = frame.set_index("model").loc["gpt-4o"]
    assert gpt["calls"] == 3 and gpt["cost"] == pytest.approx(0.3)
    assert gpt["cost_per_call"] == pytest.approx(0.15)  # of the two priced calls
    assert gpt["cost_per_1k_tokens"] == pytest.approx(0.3 / 3.5)  # their 3,500 tokens, not the unpriced 100,000
    unknown = frame.set_index("model").loc["no-such-model"]
    assert unknown["calls"] == 2
    assert unknown[["cost", "cost_per_call", "cost_per_1k_tokens"]].isna().all()  # unknown, never a silent $0
    reference = analytics.compare_models(make_source("memory", [*ENTRIES, *UNPRICED]))
    pd.testing.assert_frame_equal(frame, reference)  # every store gives the same frame


def test_compare_models_leaves_unpriced_calls_out_of_sums_past_the_decimal_range(
    make_source: Callable[..., Any],
) -> None:
    # Sums past 10**20 are split (DuckDB's sum(amount) overflows DECIMAL(38, 18)): unpriced calls are left out there
    # too, and a model with none priced still comes last.
    big = [
        entry(10, MON, "60000000000000000000.25", model="gpt-4o", usage=Usage(1000, 0)),
        entry(11, MON, "60000000000000000000.75", model="gpt-4o", usage=Usage(1000, 0)),
    ]
    frame = analytics.compare_models(make_source("duckdb", [*big, *UNPRICED]))
    assert frame["model"].tolist() == ["gpt-4o", "no-such-model"] and frame["calls"].tolist() == [3, 2]
    assert frame["cost"].iloc[0] == 1.2e20 and frame["cost_per_call"].iloc[0] == 6e19
    assert frame["cost_per_1k_tokens"].iloc[0] == 6e19 and frame["cost"].isna().tolist() == [False, True]


def priced(n: int, model: str, usage: Usage, resource: str, provider: str | None = None) -> CostEntry:
    price = get_price(model, provider)
    return entry(
        n,
        MON + timedelta(hours=n),
        str(price.cost(usage)),
        model=model,
        provider=price.provider,
        usage=usage,
        resource=resource,
        pricing="catalog",
    )


@pytest.mark.parametrize(
    ("model", "suggested"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o-mini"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-haiku-latest"),
        ("gemini-1.5-pro", "gemini-1.5-flash"),
        ("gpt-4.1", "gpt-4.1-mini"),  # the nearest step down, not gpt-4.1-nano
    ],
)
def test_recommendations_suggest_a_smaller_model_of_the_same_line(model: str, suggested: str) -> None:
    usage = Usage(4000, 500)
    store = fill(MemoryStore(), [priced(i, model, usage, "summarize") for i in range(1, 4)])
    frame = analytics.recommendations(store)
    assert list(frame.columns) == [
        "resource",
        "model",
        "suggested_model",
        "cost",
        "projected_cost",
        "saving",
        "reason",
    ]
    assert len(frame) == 1
    row = frame.iloc[0]
    assert (row.resource, row.model, row.suggested_model) == ("summarize", model, suggested)
    current = get_price(model)
    cheaper = get_price(suggested, current.provider)
    summed = usage + usage + usage
    assert row.cost == float(current.cost(usage) * 3)
    assert row.projected_cost == pytest.approx(float(cheaper.cost(summed)))
    assert row.saving == pytest.approx(row.cost - row.projected_cost)
    assert row.projected_cost <= row.cost * 0.8
    assert suggested in row.reason and "less" in row.reason


def test_no_recommendation_where_none_is_known() -> None:
    usage = Usage(4000, 500)
    store = fill(
        MemoryStore(),
        [
            priced(1, "gpt-4o-mini", usage, "already-small"),
            entry(2, MON, "0.5", model="acme-private-llm", usage=usage, resource="in-house"),
            entry(3, MON, "0.5", category="compute", resource="gpu"),
            entry(4, MON, "0", model="gpt-4o", provider="openai", usage=usage, resource="unpriced"),
        ],
    )
    assert analytics.recommendations(store).empty


def test_recommendations_per_resource_sorted_by_saving() -> None:
    big, small = Usage(20_000, 2_000), Usage(1_000, 100)
    entries = [priced(1, "gpt-4o", big, "big-job"), priced(2, "gpt-4o", small, "small-job")]
    frame = analytics.recommendations(fill(MemoryStore(), entries))
    assert frame["resource"].tolist() == ["big-job", "small-job"]
    assert frame["saving"].is_monotonic_decreasing


def test_model_advice_groups_dated_ids_under_the_catalog_id() -> None:
    # A model's alias and its dated id are one model (API: groupings by model use the canonical id), as in by_model.
    tracker = CostTracker()
    for model in ("gpt-4o", "gpt-4o-2024-08-06", "gpt-4o-2024-08-06"):
        tracker.record(model=model, usage=Usage(20_000, 2_000), resource="big-job")
    compared = analytics.compare_models(tracker)
    assert rows(compared, "model", "calls") == [("gpt-4o", 3)]
    assert analytics.by_model(tracker)["model"].tolist() == ["gpt-4o"]
    advice = analytics.recommendations(tracker)
    assert advice[["resource", "model", "suggested_model"]].values.tolist() == [["big-job", "gpt-4o", "gpt-4o-mini"]]
    assert advice["cost"].iloc[0] == float(tracker.total())


def test_recommendations_price_each_tier_and_the_units_on_both_sides() -> None:
    # Batch calls were priced at the standard rate on both sides: 100 Opus 4.5 calls that cost $7.50 in batch got
    # Sonnet 4.5 at $9.00 suggested "40% less", a saving of -$1.50. Audio tokens were priced as text: the mini
    # audio model looked $10 cheaper than it is.
    tracker = CostTracker()
    for _ in range(100):
        tracker.record(
            model="claude-opus-4-5", input_tokens=20_000, output_tokens=2_000, service_tier="batch", resource="nightly"
        )
    audio = Usage(5_000, 3_000, units={"input_audio_tokens": 2_000, "output_audio_tokens": 2_500})
    for _ in range(100):
        tracker.record(model="gpt-4o-audio-preview", usage=audio, resource="voice")
    frame = analytics.recommendations(tracker).set_index("resource")
    nightly, voice = frame.loc["nightly"], frame.loc["voice"]
    batch_sonnet = llmcost.cost_of("claude-sonnet-4-5", 20_000, 2_000, service_tier="batch") * 100
    assert nightly.suggested_model == "claude-sonnet-4-5" and nightly.cost == 7.5
    assert nightly.projected_cost == float(batch_sonnet) == 4.5 and nightly.saving == 3.0
    assert "batch tier" in nightly.reason
    mini = llmcost.cost_of("gpt-4o-mini-audio-preview", audio) * 100
    assert voice.suggested_model == "gpt-4o-mini-audio-preview" and voice.projected_cost == float(mini)
    assert voice.cost == float(tracker.total() - Decimal("7.5"))


def test_no_recommendation_saves_less_than_was_recorded() -> None:
    # Recorded at a price of the user's own, below the catalog's: the catalog's cheaper model would cost more.
    store = fill(MemoryStore(), [entry(1, MON, "0.001", model="gpt-4o", provider="openai", usage=Usage(20_000, 2_000))])
    assert analytics.recommendations(store).empty


def test_money_figures_are_exact_whatever_the_callers_decimal_context() -> None:
    from decimal import localcontext

    tracker = CostTracker(clock=lambda: datetime(2024, 5, 17, 12, tzinfo=timezone.utc))
    tracker.record(model="gpt-4o", input_tokens=4_321, output_tokens=321, resource="job")
    with localcontext() as narrow:
        narrow.prec = 3
        tasks = analytics.forecast_tasks(123_457, 2_001, 401, "gpt-4o", buffer="1.13")
        forecast = analytics.forecast(tracker, "monthly")["projected"].item()
        per_1k = analytics.compare_models(tracker)["cost_per_1k_tokens"].item()
        projected = analytics.recommendations(tracker)["projected_cost"].item()
    assert tasks == llmcost.cost_of("gpt-4o", 2_001, 401) * 123_457 * Decimal("1.13") == Decimal("1257.301520125")
    assert forecast == float(tracker.total() * 31 / Decimal("16.5"))
    assert per_1k == float(tracker.total() * 1000 / (4_321 + 321))
    assert projected == float(llmcost.cost_of("gpt-4o-mini", 4_321, 321))


# -- export -------------------------------------------------------------------------------------------------------


#: Run the export tests again in an interpreter where pyarrow cannot be imported from the start, as for a user
#: who never installed it. Blocking it inside this process would come too late: pandas 3 picks Arrow-backed strings
#: when it is first imported, so the frames would still need pyarrow whatever export does.
_WITHOUT_PYARROW = """
import sys
sys.modules["pyarrow"] = None  # any import of pyarrow now raises ImportError
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-k", "test_export_ and not without_pyarrow", sys.argv[1]]))
"""


def test_export_tests_pass_without_pyarrow_installed() -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_PYARROW, __file__], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed is not None and int(passed.group(1)) >= 6, done.stdout  # csv x3, json, parquet, format/refusals


@pytest.mark.parametrize("kind", ["memory", "duckdb", "parquet"])
def test_export_csv_keeps_amounts_exact_and_tags_as_json(
    kind: str, make_source: Callable[..., Any], tmp_path: Path
) -> None:
    target = tmp_path / "costs.csv"
    calls: list[tuple[int, int]] = []
    written = analytics.export(make_source(kind), target, progress=lambda done, total: calls.append((done, total)))
    assert written == len(ENTRIES)
    assert calls[0] == (0, len(ENTRIES)) and calls[-1] == (len(ENTRIES), len(ENTRIES))
    with target.open(newline="", encoding="utf-8") as f:
        records = list(csv.DictReader(f))
    assert list(records[0]) == list(COLUMNS)
    assert [r["id"] for r in records] == [e.id for e in ENTRIES]
    assert [Decimal(r["amount"]) for r in records] == [e.amount for e in ENTRIES]
    assert records[-1]["amount"] == "0.000000000000000001"
    assert [json.loads(r["tags"]) for r in records] == [dict(e.tags) for e in ENTRIES]
    assert records[0]["timestamp"] == "2024-05-13T10:00:00.000000Z"
    assert records[3]["model"] == "" and records[2]["cache_read_tokens"] == "1000"


def test_export_json_records(make_source: Callable[..., Any], tmp_path: Path) -> None:
    target = tmp_path / "costs.json"
    assert analytics.export(make_source("tracker"), target) == len(ENTRIES)
    records = json.loads(target.read_text(encoding="utf-8"), parse_float=Decimal)
    assert isinstance(records, list) and len(records) == len(ENTRIES)
    assert [r["amount"] for r in records] == [e.amount for e in ENTRIES]
    assert records[0]["tags"] == {"team": "search", "env": "prod"}
    assert records[3]["model"] is None and records[0]["input_tokens"] == 1000
    assert pd.read_json(target, orient="records")["resource"].tolist()[-1] == INJECTION


def test_export_parquet_keeps_the_store_types(make_source: Callable[..., Any], tmp_path: Path) -> None:
    target = tmp_path / "out" / "costs.parquet"
    target.parent.mkdir()
    assert analytics.export(make_source("duckdb"), target) == len(ENTRIES)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    types = dict(
        con.execute(
            "SELECT name, type FROM parquet_schema(?) WHERE name IN ('amount', 'tags')", [str(target)]
        ).fetchall()
    )
    assert types["amount"] == "FIXED_LEN_BYTE_ARRAY"
    got = con.execute(
        "SELECT CAST(amount AS VARCHAR), typeof(amount), typeof(tags), typeof(timestamp), tags['team'] "
        "FROM read_parquet(?) ORDER BY id",
        [str(target)],
    ).fetchall()
    assert [Decimal(r[0]) for r in got] == [e.amount for e in ENTRIES]
    assert got[0][1:] == ("DECIMAL(38,18)", "MAP(VARCHAR, VARCHAR)", "TIMESTAMP WITH TIME ZONE", "search")
    assert list(target.parent.iterdir()) == [target]  # no temporary file left behind


def test_export_with_format_and_refusals(make_source: Callable[..., Any], tmp_path: Path) -> None:
    store = make_source("memory")
    assert analytics.export(store, tmp_path / "costs.txt", format="csv") == len(ENTRIES)
    assert (tmp_path / "costs.txt").read_text().startswith("id,timestamp,amount")
    with pytest.raises(ValueError, match="cannot tell the export format"):
        analytics.export(store, tmp_path / "costs.xlsx")
    with pytest.raises(ValueError, match="format must be"):
        analytics.export(store, tmp_path / "costs.csv", format="xml")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        analytics.export(store, tmp_path / "missing" / "costs.csv")
    assert not (tmp_path / "costs.xlsx").exists()


def test_export_from_a_store_whose_queries_copy_it_copies_it_once(
    make_source: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A MemoryStore's (or PostgresStore's) every query copies all its entries: export read it once per chunk of
    # ~100,000 rows, each a full copy (600,000 entries took 7 copies, quadratic). It now reads one copy.
    from llmcost.analytics import _export

    monkeypatch.setattr(_export, "_CHUNK", 1)  # a chunk an hour: every entry's hour its own page
    store = make_source("memory")
    copies = []
    query = MemoryStore.query

    def counted(self: MemoryStore, sql: str, params: Any = None) -> pd.DataFrame:
        copies.append(sql)
        return query(self, sql, params)

    monkeypatch.setattr(MemoryStore, "query", counted)
    for name in ("m.csv", "m.json", "m.parquet"):
        assert analytics.export(store, tmp_path / name, since="2024-05-13") == len(ENTRIES)
    assert copies == []  # (read with ``scan`` once per export, which copies nothing into DuckDB)
    monkeypatch.setattr(MemoryStore, "query", query)
    reference = make_source("duckdb")
    for name in ("d.csv", "d.json", "d.parquet"):
        analytics.export(reference, tmp_path / name, since="2024-05-13")
    assert (tmp_path / "m.csv").read_bytes() == (tmp_path / "d.csv").read_bytes()
    assert (tmp_path / "m.json").read_bytes() == (tmp_path / "d.json").read_bytes()
    got = duckdb.execute("SELECT * FROM read_parquet(?) ORDER BY id", [str(tmp_path / "m.parquet")]).fetchall()
    assert got == duckdb.execute("SELECT * FROM read_parquet(?) ORDER BY id", [str(tmp_path / "d.parquet")]).fetchall()


@pytest.mark.parametrize("kind", ["memory", "duckdb", "parquet"])
@pytest.mark.parametrize("chunk", [1, 100_000])
def test_export_reaches_the_last_hour_there_is(
    kind: str, chunk: int, make_source: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hour after 9999-12-31 23:00 is past the calendar: a chunk ending there raised a bare OverflowError.
    from llmcost.analytics import _export

    monkeypatch.setattr(_export, "_CHUNK", chunk)  # 1: a chunk an hour, so the last hour closes a chunk too
    late = [
        entry(7, datetime(9999, 12, 31, 22, 15, tzinfo=timezone.utc), "2"),
        entry(8, datetime.max.replace(tzinfo=timezone.utc), "3"),
    ]
    source = make_source(kind, [*ENTRIES, *late])
    ids = [e.id for e in [*ENTRIES, *late]]
    assert analytics.export(source, tmp_path / "late.csv") == len(ids)
    with (tmp_path / "late.csv").open(newline="", encoding="utf-8") as f:
        records = list(csv.DictReader(f))
    assert [r["id"] for r in records] == ids
    assert records[-1]["timestamp"] == "9999-12-31T23:59:59.999999Z"
    assert analytics.export(source, tmp_path / "late.json") == len(ids)
    assert [r["id"] for r in json.loads((tmp_path / "late.json").read_text())] == ids
    assert analytics.export(source, tmp_path / "late.parquet") == len(ids)
    got = duckdb.execute("SELECT id FROM read_parquet(?) ORDER BY timestamp, id", [str(tmp_path / "late.parquet")])
    assert [r[0] for r in got.fetchall()] == ids


def test_export_of_an_empty_store(tmp_path: Path) -> None:
    for name in ("e.csv", "e.json", "e.parquet"):
        assert analytics.export(MemoryStore(), tmp_path / name) == 0
    assert json.loads((tmp_path / "e.json").read_text()) == []
    assert (tmp_path / "e.csv").read_text().strip() == ",".join(COLUMNS)
    assert duckdb.execute("SELECT count(*) FROM read_parquet(?)", [str(tmp_path / "e.parquet")]).fetchone() == (0,)


def test_public_names() -> None:
    assert sorted(analytics.__all__) == sorted(
        [
            "spend",
            "by_category",
            "by_resource",
            "by_model",
            "by_tag",
            "over_time",
            "forecast",
            "forecast_tasks",
            "anomalies",
            "compare_models",
            "recommendations",
            "export",
            "reprice",
            "reconcile",
        ]
    )
    for name in analytics.__all__:
        assert getattr(analytics, name).__doc__, name


# -- since/until as the command line writes them (issue 17) ------------------------------------------------------

TUE, FRI = MON + timedelta(days=1), MON + timedelta(days=4)
CALLS: dict[str, Callable[..., Any]] = {
    "spend": lambda s, **w: analytics.spend(s, by=("model",), **w),
    "by_category": analytics.by_category,
    "by_resource": analytics.by_resource,
    "by_model": analytics.by_model,
    "by_tag": analytics.by_tag,
    "by_tag_key": lambda s, **w: analytics.by_tag(s, "team", **w),
    "over_time": lambda s, **w: analytics.over_time(s, "h", **w),
    "forecast": lambda s, **w: analytics.forecast(s, "weekly", **w),
    "anomalies": lambda s, **w: analytics.anomalies(s, "h", **w),
    "compare_models": analytics.compare_models,
    "recommendations": analytics.recommendations,
}


def test_every_analytics_function_on_a_source_takes_since_and_until() -> None:
    import inspect

    for name in analytics.__all__:
        parameters = inspect.signature(getattr(analytics, name)).parameters
        if "source" in parameters:
            assert {"since", "until"} <= set(parameters), name


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize(
    ("since", "until"),
    [
        ("2d", "2024-05-16"),  # a span before the tracker's clock (Thursday 00:00); a date includes that day
        ("2024-05-14", "2024-05-16T23:59:59.999999+00:00"),
        ("2024-05-14T00:00:00Z", "2024-05-17T00:00"),  # ISO datetimes are exact bounds
        (TUE.date(), FRI.date()),  # date objects: their midnights
    ],
)
def test_since_and_until_take_the_command_line_forms(name: str, since: Any, until: Any) -> None:
    tracker = CostTracker(fill(MemoryStore()), clock=lambda: MON + timedelta(days=3))
    call = CALLS[name]
    expected = call(tracker, since=TUE, until=FRI)
    got = call(tracker, since=since, until=until)
    pd.testing.assert_frame_equal(got, expected)
    if name == "spend":
        assert expected["calls"].sum() == 2  # entries 3 and 4: Tuesday 01:00 and Wednesday 12:00


def test_today_yesterday_and_the_cli_parser_are_one(tmp_path: Path) -> None:
    from llmcost._time import parse_when
    from llmcost.cli._args import parse_when as cli_parse_when

    tracker = CostTracker(fill(MemoryStore()), clock=lambda: MON + timedelta(days=2, hours=13))  # Wed 13:00
    assert analytics.spend(tracker, by=(), since="today", until="now")["calls"].iloc[0] == 1  # the GPU bill at 12:00
    # a day named as until includes that day, as --until does: Tuesday and Wednesday
    assert analytics.spend(tracker, by=(), since="yesterday", until="today")["calls"].iloc[0] == 2
    # yesterday's spend alone, as docs/analytics.md shows it: Tuesday's one call
    assert analytics.spend(tracker, by=(), since="yesterday", until="yesterday")["calls"].iloc[0] == 1
    assert analytics.export(tracker, tmp_path / "x.csv", since="yesterday") == 4
    now = datetime(2024, 5, 17, 15, tzinfo=timezone.utc)
    for text in ("7d", "24h", "today", "yesterday", "2024-05-01", "2024-05-01T12:00"):
        assert parse_when(text, now=now) == cli_parse_when(text, now=now)
    with pytest.raises(ValueError, match=r"cannot read the since 'last tuesday'.*7d, 24h"):
        analytics.spend(tracker, since="last tuesday")
    # Times past the calendar's ends are read as badly, not as an OverflowError.
    for field, text in [("since", "999999d"), ("since", "0001-01-01T00:00:00+01:00"), ("until", "999999d")]:
        with pytest.raises(
            ValueError, match=rf"cannot read the {field} '{re.escape(text)}': .*0001-01-01 to 9999-12-31 UTC"
        ):
            analytics.spend(tracker, **{field: text})
    # ... but the last day there is, as an until, is all of it bar its last microsecond (its midnight after is none).
    every = analytics.spend(tracker, by=())
    pd.testing.assert_frame_equal(analytics.spend(tracker, by=(), until="9999-12-31"), every)


@pytest.mark.parametrize("day", ["2024-05-14", "20240514", "2024-W20-2", "2024W202"])
def test_a_date_as_until_includes_that_day_in_every_iso_form(day: str) -> None:
    # Tuesday: the entries at 01:00 (0.3) and the Monday ones before it (0.1 + 0.2)
    assert rows(analytics.spend(fill(MemoryStore()), (), until=day), "cost", "calls") == [(0.6, 3)]


def test_until_the_last_day_there_is(make_source: Callable[..., Any]) -> None:
    last = datetime(9999, 12, 31, 23, 59, tzinfo=timezone.utc)
    source = make_source("duckdb", [*ENTRIES, entry(7, last, "2")])
    assert rows(analytics.spend(source, (), since="9999-12-31", until="9999-12-31"), "cost", "calls") == [(2.0, 1)]


# -- exact money whatever the caller's decimal context -------------------------------------------------------------
LARGE = Decimal("12345678901.123456789012345678")
LARGE_SUM = Decimal("12345678901.123456789012345679")  # LARGE + 1E-18: 29 significant digits


def large_store(tmp_path: Path) -> DuckDBStore:
    store = DuckDBStore(tmp_path / "large.duckdb")
    t = datetime(2024, 5, 1, tzinfo=timezone.utc)
    store.append(
        [
            CostEntry(id="e1", timestamp=t, amount=LARGE, model="gpt-4o"),
            CostEntry(id="e2", timestamp=t + timedelta(days=1), amount=Decimal("1E-18"), model="gpt-4o"),
        ]
    )
    return store


@pytest.mark.parametrize("prec", [28, 8])
def test_exact_spend_keeps_every_digit_whatever_the_context(tmp_path: Path, prec: int) -> None:
    from decimal import Context, localcontext

    from llmcost.analytics._spend import exact_spend

    store = large_store(tmp_path)
    with localcontext(Context(prec=prec)):
        assert store.total() == LARGE_SUM
        cost = exact_spend(store, ("model",))["cost"][0]
    assert cost == LARGE_SUM and str(cost) == str(LARGE_SUM)
    store.close()
