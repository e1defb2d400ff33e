"""analytics.reprice: recorded usage priced again under another table, at another date, or on another model; the
same answer from every source, exact Decimal sums, and a price file that never registers anything.

History is recorded with the real tracker and a clock; every expected figure is worked out by hand from the
catalog's published prices (USD per million tokens), shown in the comments."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import llmcost
from llmcost import CostTracker, ModelPrice, PricingError, analytics, get_price
from llmcost._prices import registered_prices
from llmcost.stores import DuckDBStore, MemoryStore, ParquetStore
from tests.conftest import Clock

D = Decimal
JUNE_9 = datetime(2025, 6, 9, 12, tzinfo=timezone.utc)  # o3 cost $10/$40 until 2025-06-10, then $2/$8
SOURCES = ("tracker", "memory", "duckdb", "parquet", "frame")


def history(clock: Clock) -> CostTracker:
    """Two days of calls, recorded as they happen (the tracker prices each at its own time)."""
    tracker = CostTracker(clock=clock, on_unknown_model="ignore")
    clock.now = JUNE_9
    tracker.record(model="o3-2025-04-16", input_tokens=1_000_000, output_tokens=100_000, tags={"team": "a"})
    tracker.record(model="gpt-4o-2024-08-06", input_tokens=2_000_000, output_tokens=100_000, tags={"team": "b"})
    clock.now = JUNE_9 + timedelta(days=1)  # 2025-06-10: o3's new price
    tracker.record(model="o3", input_tokens=1_000_000, output_tokens=100_000, tags={"team": "a"})
    tracker.record(
        model="gpt-4o", input_tokens=1_000_000, output_tokens=0, cache_read_tokens=800_000, tags={"team": "a"}
    )
    tracker.record(category="compute", amount="2.50", resource="gpu")  # no model: kept as recorded
    tracker.record(model="acme-large", input_tokens=5000, output_tokens=10)  # unknown: unpriced, kept
    return tracker


# Recorded, by hand:
#   o3 on 06-09:      1M x $10 + 0.1M x $40                      = 10 + 4      = 14
#   o3 on 06-10:      1M x $2  + 0.1M x $8                       = 2 + 0.8     = 2.8
#   gpt-4o on 06-09:  2M x $2.5 + 0.1M x $10                     = 5 + 1       = 6
#   gpt-4o on 06-10:  0.2M x $2.5 + 0.8M cached x $1.25          = 0.5 + 1     = 1.5
#   compute 2.50, acme-large 0 (unpriced)
RECORDED = {"o3-2025-04-16": D("14"), "o3": D("2.8"), "gpt-4o-2024-08-06": D("6"), "gpt-4o": D("1.5")}


@pytest.fixture
def make_source(clock: Clock, tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    made: list[Any] = []

    def make(kind: str) -> Any:
        tracker = history(clock)
        made.append(tracker)
        if kind == "tracker":
            return tracker
        entries = tracker.entries()
        if kind == "frame":
            return tracker.frame()
        store = {
            "memory": lambda: MemoryStore(),
            "duckdb": lambda: DuckDBStore(tmp_path / f"{len(made)}.duckdb"),
            "parquet": lambda: ParquetStore(tmp_path / f"p{len(made)}"),
        }[kind]()
        store.append(entries)
        made.append(store)
        return store

    yield make
    for thing in made:
        thing.close()


@pytest.fixture(params=SOURCES)
def source(request: pytest.FixtureRequest, make_source: Callable[[str], Any]) -> Any:
    return make_source(request.param)


def by_model(frame: pd.DataFrame) -> dict[Any, tuple[Any, ...]]:
    return {r.model: (r.calls, r.recorded, r.repriced, r.delta) for r in frame.itertuples()}


def test_at_each_calls_own_time_the_catalog_agrees_with_what_was_recorded(source: Any) -> None:
    frame = analytics.reprice(source)
    assert list(frame.columns) == ["model", "calls", "recorded", "repriced", "delta", "delta_pct", "kept"]
    got = by_model(frame)
    # By the canonical id, as every grouping by model: a model's dated and plain ids are one row. o3's two days are
    # two price epochs, priced apart: 14 + 2.8.
    assert got["o3"] == (2, D("16.8"), D("16.8"), 0)
    assert got["gpt-4o"] == (2, D("7.5"), D("7.5"), 0)
    assert got[None] == (1, D("2.5"), D("2.5"), 0)
    assert got["acme-large"] == (1, 0, 0, 0)
    assert frame.loc[frame["model"].isna(), "kept"].item() == 1
    assert frame["model"].tolist()[0] == "o3"  # largest recorded first
    per_entry = by_model(analytics.reprice(source, by=None))  # one row per entry: the id as recorded
    for model, amount in RECORDED.items():
        assert per_entry[model] == (1, amount, amount, 0)
    assert all(isinstance(v, Decimal) for v in frame["recorded"]) and all(
        isinstance(v, Decimal) for v in frame["delta"]
    )


def test_at_another_date_prices_every_call_then(source: Any) -> None:
    frame = analytics.reprice(source, at=date(2025, 7, 1), by=())
    # At 2025-07-01 o3 is $2/$8: 06-09's call becomes 2 + 0.8 = 2.8 (was 14); gpt-4o did not change.
    # total recorded 14 + 2.8 + 6 + 1.5 + 2.5 = 26.8; repriced 2.8 + 2.8 + 6 + 1.5 + 2.5 = 15.6
    assert frame[["calls", "recorded", "repriced", "delta"]].iloc[0].tolist() == [6, D("26.8"), D("15.6"), D("-11.2")]
    assert frame["delta_pct"].iloc[0] == pytest.approx(-11.2 / 26.8)
    assert frame["kept"].iloc[0] == 2


def test_swapping_a_model_prices_its_usage_at_the_other_models_price(source: Any) -> None:
    frame = analytics.reprice(source, {"gpt-4o": "gpt-4o-mini"}, by="tag:team")
    got = {r._1: (r.recorded, r.repriced) for r in frame.itertuples()}
    # gpt-4o-mini: $0.15 in, $0.6 out, $0.075 cached. Dated and plain gpt-4o ids both match the swap.
    # team b: gpt-4o 06-09: 2M x 0.15 + 0.1M x 0.6 = 0.3 + 0.06 = 0.36 (was 6)
    # team a: o3 14 + 2.8 unchanged; gpt-4o 06-10: 0.2M x 0.15 + 0.8M x 0.075 = 0.03 + 0.06 = 0.09 (was 1.5)
    assert got["b"] == (D("6"), D("0.36"))
    assert got["a"] == (D("18.3"), D("16.89"))
    assert got[None] == (D("2.5"), D("2.5"))  # the compute entry and the unpriced one carry no team


def test_swapping_to_a_model_price(source: Any) -> None:
    cheaper = ModelPrice("o3", "openai", input_per_mtok="1", output_per_mtok="4", request_price="0.01")
    got = by_model(analytics.reprice(source, {"o3": cheaper}))
    # Each o3 call (o3-2025-04-16, o3): 1M x $1 + 0.1M x $4 + $0.01 per request = 1.41
    assert got["o3"][:3] == (2, D("16.8"), D("2.82"))


def test_a_price_or_swap_naming_a_dated_snapshot_reaches_the_entries_under_its_alias(source: Any) -> None:
    # o3-2025-04-16 and o3 are one catalog model (o3), one row by model: a key naming the snapshot prices both
    # entries, not half the row. At $1/$4 each call is 1M x 1 + 0.1M x 4 = 1.4; swapped to o4-mini ($1.1/$4.4), 1.54.
    table = [ModelPrice("o3-2025-04-16", "openai", input_per_mtok="1", output_per_mtok="4")]
    assert by_model(analytics.reprice(source, table))["o3"][:3] == (2, D("16.8"), D("2.8"))
    per_entry = by_model(analytics.reprice(source, {"o3-2025-04-16": "o4-mini"}, by=None))
    assert per_entry["o3-2025-04-16"][1:3] == (D("14"), D("1.54"))
    assert per_entry["o3"][1:3] == (D("2.8"), D("1.54"))
    # gpt-4o-2024-05-13 is a model of its own to the catalog, not the gpt-4o the entries are: they keep its price.
    kept = by_model(analytics.reprice(source, {"gpt-4o-2024-05-13": "gpt-4o-mini"}))["gpt-4o"]
    assert kept[:3] == (2, D("7.5"), D("7.5"))


def test_a_price_for_a_variant_the_catalog_prices_as_another_model_reprices_only_the_variant(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The catalog folds some variants into a model by prefix (claude-opus-4-6-fast into claude-opus-4-6, gpt-5-chat-
    # latest into gpt-5). They are not snapshots of it: a key naming one reprices its own entries, never the model's
    # (claude-opus-4-6 at the fast price, 30 for 10, was the snapshot rule overreaching), and a price of a model no
    # price knows is not looked up.
    tracker = CostTracker(clock=clock)
    for model in ("claude-opus-4-6", "claude-opus-4-6-fast", "gpt-5", "gpt-5-chat-latest"):
        tracker.record(model=model, input_tokens=1_000_000)
    table = [
        ModelPrice("claude-opus-4-6-fast", "anthropic", input_per_mtok="30", output_per_mtok="150"),
        ModelPrice("gpt-5-chat-latest", "openai", input_per_mtok="9", output_per_mtok="10"),
    ]
    got = {row.model: (row.recorded, row.repriced) for row in analytics.reprice(tracker, table, by=None).itertuples()}
    assert got == {
        "claude-opus-4-6": (D("10"), D("10")),  # (the catalog's price on the clock's day)
        "claude-opus-4-6-fast": (D("10"), D("30")),
        "gpt-5": (D("1.25"), D("1.25")),
        "gpt-5-chat-latest": (D("1.25"), D("9")),
    }
    # A table of models no price knows looks none of them up (each miss searches the catalog for suggestions: 12 ms).
    from llmcost.analytics import _reprice

    looked: list[str] = []

    def unknown(model: str, *rest: object) -> Any:
        looked.append(model)
        raise llmcost.UnknownModelError(model)

    monkeypatch.setattr(_reprice, "price_for", unknown)
    _reprice.PriceTable.of(
        [ModelPrice(f"acme-{i}", "acme", input_per_mtok="1", output_per_mtok="2") for i in range(50)]
    )
    assert looked == []


def test_a_request_fee_is_counted_once_per_call(clock: Clock) -> None:
    tracker = CostTracker(clock=clock)
    for _ in range(3):
        tracker.record(model="gpt-4o-mini", input_tokens=1000, output_tokens=100)
    fee = ModelPrice("gpt-4o-mini", "openai", input_per_mtok="1", output_per_mtok="2", request_price="0.001")
    frame = analytics.reprice(tracker, [fee])
    # 3 x (1000 x $1 + 100 x $2) / 1M + 3 x $0.001 = 0.0036 + 0.003 = 0.0066
    assert frame["repriced"].item() == D("0.0066")


def test_a_price_file_is_read_without_registering_it(source: Any, tmp_path: Path) -> None:
    table = tmp_path / "new-prices.toml"
    table.write_text(
        '[[price]]\nmodel = "gpt-4o"\nprovider = "openai"\ninput_per_mtok = "2.00"\noutput_per_mtok = "8.00"\n'
        'cache_read_per_mtok = "0.50"\n',
        encoding="utf-8",
    )
    got = by_model(analytics.reprice(source, str(table)))
    # 06-09: 2M x 2 + 0.1M x 8 = 4.8 (was 6); 06-10: 0.2M x 2 + 0.8M x 0.5 = 0.8 (was 1.5); o3 untouched (the catalog)
    assert got["gpt-4o"][2:] == (D("5.6"), D("-1.9"))
    assert got["o3"][2] == D("16.8")
    assert registered_prices() == [] and get_price("gpt-4o").input_per_mtok == D("2.5")


def test_a_bad_price_file_names_the_field(tmp_path: Path, clock: Clock) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"model": "gpt-4o", "input_per_mtok": "x", "output_per_mtok": "1"}]', encoding="utf-8")
    with pytest.raises(PricingError, match="input_per_mtok"):
        analytics.reprice(CostTracker(clock=clock), bad)


def test_prices_change_by_time_of_day(clock: Clock) -> None:
    tracker = CostTracker(clock=clock)
    day = datetime(2025, 3, 3, tzinfo=timezone.utc)
    for hour in (0, 12, 20):  # deepseek-chat: $0.27/M in from 00:30 to 16:30 UTC, $0.135/M off-peak
        clock.now = day + timedelta(hours=hour)
        tracker.record(model="deepseek-chat", input_tokens=1_000_000, output_tokens=0)
    frame = analytics.reprice(tracker)
    # recorded and repriced: 0.135 + 0.27 + 0.135 = 0.54 (half-hour epochs, not one price for the day)
    assert frame[["recorded", "repriced"]].iloc[0].tolist() == [D("0.54"), D("0.54")]
    assert analytics.reprice(tracker, at=day + timedelta(hours=12))["repriced"].item() == D("0.81")  # 3 x 0.27


def test_prices_by_time_of_day_that_also_change_by_date(clock: Clock) -> None:
    # deepseek-v4-flash: $0.30/M in from 01:00-04:00 and 06:00-10:00 UTC; otherwise $0.14/M, from 2026-08-17
    # $0.22/M, from 2026-09-10 $0.15/M.
    tracker = CostTracker(clock=clock)
    for when in ("2026-08-16T12:00", "2026-08-16T02:00", "2026-08-18T12:00", "2026-09-11T07:00", "2026-09-11T12:00"):
        clock.now = datetime.fromisoformat(when).replace(tzinfo=timezone.utc)
        tracker.record(model="deepseek-v4-flash", input_tokens=1_000_000)
    frame = analytics.reprice(tracker)
    # 0.14 + 0.30 + 0.22 + 0.30 + 0.15 = 1.11
    assert frame[["calls", "recorded", "repriced"]].iloc[0].tolist() == [5, D("1.11"), D("1.11")]


def test_a_price_that_changed_and_changed_back_prices_each_call_at_its_own(clock: Clock, tmp_path: Path) -> None:
    # OpenRouter's google/gemini-3.8-flash: $0.75/M input, $0.825/M from 2026-10-19, $0.75/M again from 2026-11-03.
    # The first and last calls' days agree; the one between does not.
    with CostTracker(DuckDBStore(tmp_path / "aba.duckdb"), clock=clock) as tracker:
        for day in ("2026-10-10", "2026-10-25", "2026-11-10"):
            clock.now = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
            tracker.record(model="google/gemini-3.8-flash", provider="openrouter", input_tokens=1_000_000)
        frame = analytics.reprice(tracker)
    # 0.75 + 0.825 + 0.75 = 2.325, recorded and repriced
    assert frame[["calls", "recorded", "repriced", "delta"]].iloc[0].tolist() == [3, D("2.325"), D("2.325"), 0]


def test_calls_over_a_long_context_tier_are_priced_one_by_one(clock: Clock) -> None:
    tracker = CostTracker(clock=clock)
    tracker.record(model="claude-sonnet-4-5", input_tokens=150_000, output_tokens=1000)
    tracker.record(model="claude-sonnet-4-5", input_tokens=150_000, output_tokens=1000)
    tracker.record(model="claude-sonnet-4-5", input_tokens=250_000, output_tokens=1000)
    frame = analytics.reprice(tracker)
    # Below 200k input: $3 in, $15 out, per call 0.45 + 0.015 = 0.465, twice = 0.93 (their 300k sum is not a
    # long-context call). Above: the whole call at $6/$22.5: 1.5 + 0.0225 = 1.5225. Total 2.4525.
    assert frame[["recorded", "repriced"]].iloc[0].tolist() == [D("2.4525"), D("2.4525")]


def test_one_row_per_entry(source: Any) -> None:
    frame = analytics.reprice(source, at=datetime(2025, 7, 1), by=None)
    assert list(frame.columns) == ["id", "timestamp", "model", "provider", *analytics_columns()]
    assert len(frame) == 6 and frame["timestamp"].is_monotonic_increasing
    first = frame.iloc[0]
    assert (first["model"], first["recorded"], first["repriced"]) == ("o3-2025-04-16", D("14"), D("2.8"))
    assert sum(frame["delta"], D(0)) == D("-11.2")


def analytics_columns() -> list[str]:
    return ["calls", "recorded", "repriced", "delta", "delta_pct", "kept"]


def test_every_source_gives_the_same_frame(make_source: Callable[[str], Any]) -> None:
    frames = [analytics.reprice(make_source(kind), at=date(2025, 7, 1), by=("model", "tag:team")) for kind in SOURCES]
    for frame in frames[1:]:
        pd.testing.assert_frame_equal(frame, frames[0])


@pytest.mark.parametrize(
    ("prices", "error"),
    [
        (42, "prices must be None"),
        ([ModelPrice("m", None, "1", "1"), "gpt-4o"], "every item of a price list"),
        ({"gpt-4o": 3}, "a model id or a llmcost.ModelPrice"),
    ],
)
def test_bad_prices_are_refused(prices: Any, error: str, clock: Clock) -> None:
    with pytest.raises(TypeError, match=error):
        analytics.reprice(CostTracker(clock=clock), prices)


def test_a_swap_to_an_unknown_model_names_the_closest(clock: Clock) -> None:
    with pytest.raises(llmcost.UnknownModelError, match="gpt-4o-mini"):
        analytics.reprice(CostTracker(clock=clock), {"gpt-4o": "gpt-4o-mnii"})


def test_an_empty_source_gives_an_empty_frame(clock: Clock) -> None:
    frame = analytics.reprice(CostTracker(clock=clock))
    assert frame.empty and list(frame.columns) == ["model", *analytics_columns()]


DOCS = Path(__file__).parent.parent / "docs" / "reprice.md"


def _python_blocks(text: str) -> list[str]:
    blocks, inside, current = [], False, []
    for line in text.splitlines():
        if line.strip() == "```python":
            inside, current = True, []
        elif line.strip() == "```" and inside:
            inside = False
            blocks.append("\n".join(current))
        elif inside:
            current.append(line)
    return blocks


@pytest.mark.parametrize("block", _python_blocks(DOCS.read_text(encoding="utf-8")))
def test_the_guides_examples_run_as_pasted_and_print_what_they_show(
    block: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(DOCS.parent.parent)
    exec(compile(block, str(DOCS), "exec"), {"__name__": "__docs__"})
    printed = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    # What a block shows: the comment lines right after a line that prints.
    shown, after_print = [], False
    for line in block.splitlines():
        if line.startswith("# ") and after_print:
            shown.append(line[2:].rstrip())
        else:
            after_print = "print(" in line
    assert shown
    for want, got in zip(shown, printed, strict=False):
        if want.endswith("..."):
            assert got.startswith(want[:-3].rstrip()), (want, got)
        else:
            assert got == want


def test_batch_calls_are_repriced_at_their_tier(clock: Clock) -> None:
    # claude-haiku-4-5 in June 2025: $1 input / $5 output per million; Batch is half by Anthropic's published rule
    # (the catalog's batch prices start in 2026), so 1M input + 0.1M output costs 1 + 0.5 = 1.5, in batch 0.75.
    tracker = CostTracker(clock=clock)
    clock.now = JUNE_9
    batch = tracker.record(
        model="claude-haiku-4-5", input_tokens=1_000_000, output_tokens=100_000, service_tier="batch"
    )
    assert batch.amount == D("0.75")
    # At the catalog (the call's own time): the tier is kept, so nothing changes.
    frame = analytics.reprice(tracker)
    assert frame[["recorded", "repriced"]].iloc[0].tolist() == [D("0.75"), D("0.75")]
    # Swapped to a price of one's own ($2 / $10): the batch rule halves it too: (2 + 1) / 2.
    own = ModelPrice("claude-haiku-4-5", "anthropic", input_per_mtok="2", output_per_mtok="10")
    frame = analytics.reprice(tracker, {"claude-haiku-4-5": own})
    assert frame["repriced"].iloc[0] == D("1.5")


@pytest.mark.parametrize("at", [None, date(2026, 11, 3)])
def test_a_swap_prices_a_tiered_call_at_the_target_models_catalog_price_for_that_tier(
    clock: Clock, tmp_path: Path, at: date | None
) -> None:
    # In November 2026 the catalog has Priority prices: gpt-4o $4.25 input (standard $2.5), gpt-4o-mini $0.25
    # (standard $0.15). A Priority call swapped to gpt-4o-mini costs what gpt-4o-mini bills for Priority, 1M x $0.25,
    # not the published rule's standard price (0.15), which is for a price that has no tier prices of its own.
    clock.now = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)
    with CostTracker(DuckDBStore(tmp_path / "costs.duckdb"), clock=clock) as tracker:
        entry = tracker.record(model="gpt-4o", input_tokens=1_000_000, service_tier="priority")
        assert entry.amount == D("4.25")
        swapped = analytics.reprice(tracker, {"gpt-4o": "gpt-4o-mini"}, at=at, by=())
        assert swapped[["recorded", "repriced"]].iloc[0].tolist() == [D("4.25"), D("0.25")]
        # A price of one's own has no tier prices: the rule (Priority at the standard price) applies to it.
        own = ModelPrice("gpt-4o-mini", "openai", input_per_mtok="0.15", output_per_mtok="0.6")
        assert analytics.reprice(tracker, {"gpt-4o": own}, at=at, by=())["repriced"].iloc[0] == D("0.15")
        assert analytics.reprice(tracker, [own], at=at, by=())["repriced"].iloc[0] == D("4.25")  # names another


@pytest.mark.parametrize("tier", ["us", "batch+us"])
def test_us_only_calls_are_repriced_at_1_1_times(clock: Clock, tier: str) -> None:
    # claude-opus-4-6: $5 input / $25 output per million; Anthropic's US-only inference is 1.1x every token price
    # for Claude Opus 4.6 and newer, on top of the Batch discount: 0.1M input + 0.01M output costs 0.5 + 0.25 = 0.75,
    # US-only 0.825, in batch and US-only 0.75 / 2 * 1.1 = 0.4125.
    tracker = CostTracker(clock=clock)
    clock.now = JUNE_9
    entry = tracker.record(model="claude-opus-4-6", input_tokens=100_000, output_tokens=10_000, service_tier=tier)
    want = D("0.825") if tier == "us" else D("0.4125")
    assert entry.amount == want
    frame = analytics.reprice(tracker)  # at the catalog: the tier is kept, so nothing changes
    assert frame[["recorded", "repriced"]].iloc[0].tolist() == [want, want]
    # Swapped to a price of one's own ($10 / $50): the rule applies to it too: (1 + 0.5) * 1.1, and halved in batch.
    own = ModelPrice("claude-opus-4-6", "anthropic", input_per_mtok="10", output_per_mtok="50")
    frame = analytics.reprice(tracker, {"claude-opus-4-6": own})
    assert frame["repriced"].iloc[0] == (D("1.65") if tier == "us" else D("0.825"))


def test_grouped_by_model_a_models_dated_and_plain_ids_are_one_row_as_in_spend(clock: Clock) -> None:
    tracker = CostTracker(clock=clock)
    tracker.record(model="gpt-4o-2024-08-06", input_tokens=1_000_000)
    tracker.record(model="gpt-4o", input_tokens=1_000_000)
    tracker.record(model="acme-unknown", input_tokens=10, amount="1")  # no canonical id: grouped by its own
    frame = analytics.reprice(tracker)
    assert frame[["model", "calls", "recorded", "repriced"]].values.tolist() == [
        ["gpt-4o", 2, D("5"), D("5")],
        ["acme-unknown", 1, D("1"), D("1")],
    ]
    assert frame["model"].tolist() == analytics.by_model(tracker)["model"].tolist()
    by_entry = analytics.reprice(tracker, by=None)["model"].tolist()
    assert by_entry == ["gpt-4o-2024-08-06", "gpt-4o", "acme-unknown"]  # one row per entry: the id as recorded


@pytest.mark.parametrize("prec", [28, 8])
def test_recorded_and_repriced_sums_keep_every_digit_whatever_the_context(tmp_path: Path, prec: int) -> None:
    from decimal import Context, localcontext

    from llmcost import CostEntry, Usage

    store = DuckDBStore(tmp_path / "large.duckdb")
    t = JUNE_9
    store.append(
        [  # amounts given without tokens: kept as recorded; 29 significant digits in all
            CostEntry(id="e1", timestamp=t, amount=D("12345678901.123456789012345678"), model="gpt-4o"),
            CostEntry(id="e2", timestamp=t + timedelta(days=1), amount=D("1E-18"), model="gpt-4o"),
            CostEntry(id="e3", timestamp=t, amount=D("2E-18"), model="gpt-4o-mini", usage=Usage(10_000_000_000, 0)),
        ]
    )
    with localcontext(Context(prec=prec)):
        frame = analytics.reprice(store, by=())
    # gpt-4o-mini's 10G input tokens at $0.15/M: $1,500, repriced from the recorded 2E-18
    assert frame["recorded"][0] == D("12345678901.123456789012345681")
    assert frame["repriced"][0] == D("12345680401.123456789012345679")
    assert frame["delta"][0] == D("1499.999999999999999998")
    store.close()


@pytest.mark.parametrize("kind", SOURCES)
def test_calls_with_units_and_tiers_are_summed_per_group_and_priced_as_each_was(
    kind: str, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 300 Claude calls, each with its own 5-minute and 1-hour cache writes and web searches, a third through the
    # Batch API, one above the long-context tier: repriced exactly as the sum of what each cost, with the units and
    # tiers summed per group, so a handful of pricings rather than one per call (a million cache-writing calls
    # used to take a minute).
    tracker = CostTracker(clock=clock)
    clock.now = datetime(2025, 9, 1, 12, tzinfo=timezone.utc)
    expected = D(0)
    for i in range(300):
        five, hour = 100 + i, 7 * i
        usage = llmcost.Usage(
            2_000 + five + hour,
            50 + i,
            300,
            five + hour,
            units={"cache_write_5m_tokens": five, "cache_write_1h_tokens": hour, "web_searches": i % 3},
        )
        tier = "batch" if i % 3 == 0 else None
        expected += tracker.record(model="claude-sonnet-4-5", usage=usage, service_tier=tier).amount
    long = llmcost.Usage(250_000, 1_000, 0, 2_000, units={"cache_write_1h_tokens": 2_000})
    expected += tracker.record(model="claude-sonnet-4-5", usage=long).amount  # above 200K: its own pricing
    entries = tracker.entries()
    source: Any = tracker
    if kind == "frame":
        source = tracker.frame()
    elif kind != "tracker":
        source = {
            "memory": lambda: MemoryStore(),
            "duckdb": lambda: DuckDBStore(tmp_path / "u.duckdb"),
            "parquet": lambda: ParquetStore(tmp_path / "u"),
        }[kind]()
        source.append(entries)
    pricings = []
    cost = ModelPrice.cost

    def counted(self: ModelPrice, usage: llmcost.Usage) -> Decimal:
        pricings.append(usage)
        return cost(self, usage)

    monkeypatch.setattr(ModelPrice, "cost", counted)
    frame = analytics.reprice(source, by=())
    assert frame[["calls", "recorded", "repriced", "delta"]].iloc[0].tolist() == [301, expected, expected, 0]
    assert len(pricings) <= 3  # standard, batch, the long call
    if kind not in ("tracker", "frame"):
        source.close()
