"""The contract every ``CostStore`` keeps, run against Memory, DuckDB and Parquet alike."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import attrs
import pandas as pd
import pytest

from llmcost import CostEntry
from llmcost._rows import frame_to_entries
from llmcost._summary import CostSummary, summarize
from llmcost.stores import COLUMNS, CostStore, Filters

from .conftest import NASTY, T0, StoreFactory, make_entry


def _sum(entries: list[CostEntry]) -> Decimal:
    return sum((e.amount for e in entries), Decimal(0))


def test_round_trip_is_exact(store: CostStore, entries: list[CostEntry]) -> None:
    store.append(entries[:200])
    store.append(entries[200:])
    assert store.entries() == entries
    assert store.total() == _sum(entries)


def test_empty_store(store: CostStore) -> None:
    assert store.entries() == []
    assert store.total() == Decimal(0)
    frame = store.scan()
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == 0
    store.append([])
    assert store.entries() == []


def test_entries_come_back_in_time_order(store: CostStore, entries: list[CostEntry]) -> None:
    store.append(entries[250:])
    store.append(entries[:250])
    assert [e.id for e in store.entries()] == [e.id for e in entries]


def test_decimal_totals_are_exact(store: CostStore) -> None:
    tiny = [make_entry(i, amount=Decimal("0.000000012345678901")) for i in range(1000)]
    store.append(tiny)
    assert store.total() == Decimal("0.000012345678901000")
    assert store.total(limit=10) == Decimal("0.00000012345678901")


def test_totals_exact_beyond_28_digits(store: CostStore) -> None:
    big = make_entry(1, amount=Decimal("12345678901234567890.123456789012345678"))
    store.append([big, make_entry(2, amount=Decimal("0.000012345678901"))])
    assert store.entries(limit=1)[0].amount == big.amount
    assert store.total() == Decimal("12345678901234567890.123469134691246678")


@pytest.mark.parametrize(
    ("amounts", "shown"),
    [(["1.5", "2.5"], "4"), (["0.000000000000000001"] * 20, "2E-17"), (["0.1", "-0.1"], "0"), (["1E+2"], "100")],
)
def test_sums_take_one_form_in_every_store(store: CostStore, amounts: list[str], shown: str) -> None:
    # Equal sums print alike whatever the store (the memory store said 4.0 where DuckDB said 4).
    store.append([make_entry(i, amount=Decimal(a), category="compute") for i, a in enumerate(amounts)])
    summary = store.summary()
    assert str(store.total()) == str(summary.total) == shown
    assert [str(v) for v in summary.by_category.values()] == [shown]


def test_scan_frame_shape(store: CostStore, entries: list[CostEntry]) -> None:
    store.append(entries)
    frame = store.scan()
    assert list(frame.columns) == list(COLUMNS)
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
    assert all(isinstance(a, Decimal) for a in frame["amount"])
    assert all(isinstance(t, dict) for t in frame["tags"])
    assert frame["input_tokens"].dtype == "int64"
    assert frame_to_entries(frame) == entries
    assert frame_to_entries(store.scan(resource="svc-1", limit=5)) == store.entries(resource="svc-1", limit=5)


@pytest.mark.parametrize("storage", ["python", "pyarrow"])
def test_scan_text_columns_have_the_dtype_pandas_infers(
    store: CostStore, entries: list[CostEntry], storage: str
) -> None:
    """Text columns come out as pandas would type them from Python strings, however pandas stores its strings
    (frames from DuckDB hand ``id`` over as Arrow where pandas keeps strings in Arrow)."""
    if storage == "pyarrow":
        pytest.importorskip("pyarrow")
    with pd.option_context("mode.string_storage", storage):
        store.append(entries)
        for frame in (store.scan(), store.scan(resource="no such resource")):
            for name in ("id", "currency", "category", "description", "pricing"):
                inferred = pd.DataFrame({name: pd.Series(frame[name].tolist(), dtype=object).to_numpy()})[name]
                assert frame[name].dtype == inferred.dtype, name
        assert frame_to_entries(store.scan()) == entries


def _check(store: CostStore, entries: list[CostEntry], want: list[CostEntry], **filters: object) -> None:
    assert want, f"filters {filters} select nothing; the test data should cover them"
    assert store.entries(**filters) == want, filters
    assert store.total(**filters) == _sum(want), filters
    assert frame_to_entries(store.scan(**filters)) == want, filters


def test_time_filters(store: CostStore, entries: list[CostEntry]) -> None:
    store.append(entries)
    cut = entries[100].timestamp
    end = entries[300].timestamp
    _check(store, entries, entries[100:], since=cut)  # inclusive
    _check(store, entries, entries[:100], until=cut)  # exclusive
    _check(store, entries, entries[100:300], since=cut, until=end)
    # A range inside one UTC day, and one that starts mid-day and spans midnight.
    day2 = (T0 + timedelta(days=1)).replace(hour=0, minute=0)
    _check(
        store,
        entries,
        [e for e in entries if day2 <= e.timestamp < day2 + timedelta(hours=3)],
        since=day2,
        until=day2 + timedelta(hours=3),
    )
    _check(
        store,
        entries,
        [e for e in entries if day2 - timedelta(hours=1) <= e.timestamp < day2 + timedelta(hours=1)],
        since=day2 - timedelta(hours=1),
        until=day2 + timedelta(hours=1),
    )
    assert store.entries(since=end, until=cut) == []
    # Naive datetimes are UTC.
    _check(store, entries, entries[100:], since=cut.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("category", "compute"),
        ("category", ["llm_inference", "compute"]),
        ("resource", "svc-1"),
        ("resource", ["svc-1", "svc-2"]),
        ("model", "gpt-4o"),
        ("provider", "anthropic"),
        ("provider", {"anthropic", "openai"}),
    ],
)
def test_field_filters(store: CostStore, entries: list[CostEntry], field: str, value: object) -> None:
    store.append(entries)
    wanted = {value} if isinstance(value, str) else set(value)  # type: ignore[arg-type]

    def matches(e: CostEntry) -> bool:
        got = getattr(e, field)
        return (got.value if field == "category" else got) in wanted

    _check(store, entries, [e for e in entries if matches(e)], **{field: value})


def test_filters_that_match_nothing(store: CostStore, entries: list[CostEntry]) -> None:
    store.append(entries)
    assert store.entries(resource="nope") == []
    assert store.entries(resource=[]) == []
    assert store.total(model="x' OR '1'='1") == Decimal(0)
    assert store.entries(tags={"team": "search", "nasty": "no such value"}) == []
    assert store.entries(tags={"no such key": ""}) == []


@pytest.mark.parametrize(
    "nul",
    [
        {"tags": {"team": "search\x00"}},
        {"tags": {"team\x00": "search"}},
        {"tags": {"team": "search", "nasty": "it's\x00"}},
        {"model": "gpt-4o\x00"},
        {"resource": ["svc-1\x00"]},
        {"provider": {"openai\x00", "anthropic\x00"}},
    ],
)
def test_filter_values_with_a_nul_character_match_nothing(
    store: CostStore, entries: list[CostEntry], nul: dict[str, object]
) -> None:
    # No stored text holds a NUL character (PostgreSQL's cannot): every store answers "nothing", none raises.
    store.append(entries)
    assert store.entries(**nul) == []
    assert store.entries(**nul, limit=3) == []
    assert store.total(**nul) == Decimal(0)
    assert store.summary(**nul).calls == 0
    assert len(store.scan(**nul)) == 0


def test_a_nul_value_in_a_list_leaves_the_others_matching(store: CostStore, entries: list[CostEntry]) -> None:
    store.append(entries)
    _check(store, entries, [e for e in entries if e.resource == "svc-1"], resource=["svc-1", "svc-1\x00"])


@pytest.mark.parametrize("nasty", NASTY)
def test_tag_values_kept_and_filtered_exactly(store: CostStore, entries: list[CostEntry], nasty: str) -> None:
    store.append(entries)
    want = [e for e in entries if e.tags.get("nasty") == nasty]
    _check(store, entries, want, tags={"nasty": nasty})
    assert all(e.tags["nasty"] == nasty for e in store.entries(tags={"nasty": nasty}))


def test_nasty_tag_keys_and_strings(store: CostStore) -> None:
    odd = [
        make_entry(i, tags={key: key}, resource=key, description=key, model=key)
        for i, key in enumerate(k for k in NASTY if k)
    ]
    store.append(odd)
    assert store.entries() == odd
    for e in odd:
        key = next(iter(e.tags))
        assert store.entries(tags={key: key}) == [e]
        assert store.entries(resource=key) == [e]


def test_several_tags_must_all_match(store: CostStore, entries: list[CostEntry]) -> None:
    store.append(entries)
    want = [e for e in entries if e.tags.get("team") == "ads" and e.tags.get("nasty") == "it's"]
    _check(store, entries, want, tags={"team": "ads", "nasty": "it's"})
    _check(
        store,
        entries,
        [e for e in entries if e.tags.get("team") == "ads" and e.category.value == "compute"],
        tags={"team": "ads"},
        category="compute",
    )


def test_limit_keeps_the_first_rows(store: CostStore, entries: list[CostEntry]) -> None:
    store.append(entries[::-1])
    assert store.entries(limit=3) == entries[:3]
    assert store.entries(limit=0) == []
    assert store.total(limit=3) == _sum(entries[:3])
    assert len(store.scan(limit=7)) == 7
    ads = [e for e in entries if e.tags.get("team") == "ads"]
    assert store.entries(tags={"team": "ads"}, limit=4) == ads[:4]


def test_bad_filters_name_the_field(store: CostStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.entries(limit=-1)
    with pytest.raises(ValueError, match="category"):
        store.entries(category="nope")
    with pytest.raises(TypeError, match="entries"):
        store.append(["not an entry"])  # type: ignore[list-item]


def test_query_runs_sql_with_parameters(store: CostStore, entries: list[CostEntry]) -> None:
    store.append(entries)
    frame = store.query(
        "SELECT count(*) AS n, sum(amount) AS cost FROM entries WHERE tags[?] = ? AND resource = ?",
        ["nasty", "it's", "svc-1"],
    )
    want = [e for e in entries if e.tags.get("nasty") == "it's" and e.resource == "svc-1"]
    assert frame.loc[0, "n"] == len(want)
    assert frame.loc[0, "cost"] == _sum(want)
    assert isinstance(frame.loc[0, "cost"], Decimal)
    by_model = store.query("SELECT model, count(*) AS n FROM entries GROUP BY model ORDER BY model NULLS LAST")
    assert by_model["n"].sum() == len(entries)


def test_reopen_after_close(open_again: StoreFactory, entries: list[CostEntry]) -> None:
    store = open_again()
    store.append(entries[:100])
    store.save_budget("monthly", '{"limit": "10"}')
    store.close()
    again = open_again()
    assert again.entries() == entries[:100]
    assert again.load_budgets() == {"monthly": '{"limit": "10"}'}
    again.append(entries[100:])
    assert again.total() == _sum(entries)
    # A store object stays usable after close().
    store.close()
    assert store.entries(limit=1) == entries[:1]


@pytest.mark.parametrize("name", ["monthly", "../../evil", 'it\'s "quoted"', "ünï ✓", "a/b\\c\nd", "x" * 300])
def test_budget_definitions(open_again: StoreFactory, name: str) -> None:
    store = open_again()
    assert store.load_budgets() == {}
    store.save_budget(name, '{"limit": "5"}')
    store.save_budget("other", "{}")
    store.save_budget(name, '{"limit": "6"}')  # replaces
    assert store.load_budgets() == {name: '{"limit": "6"}', "other": "{}"}
    store.close()
    again = open_again()
    assert again.load_budgets() == {name: '{"limit": "6"}', "other": "{}"}
    assert again.delete_budget(name) is True
    assert again.delete_budget(name) is False
    assert again.load_budgets() == {"other": "{}"}


def test_query_frame_is_pandas(store: CostStore, entries: list[CostEntry]) -> None:
    store.append(entries[:10])
    frame = store.query("SELECT id FROM entries ORDER BY timestamp, id")
    assert isinstance(frame, pd.DataFrame)
    assert frame["id"].tolist() == [e.id for e in entries[:10]]


def test_every_field_comes_back_equal(store: CostStore) -> None:
    """Each field of an entry, currency included, survives the store in ``entries()`` and ``scan()``."""
    base = make_entry(7)
    odd = [
        make_entry(1, currency="EUR", latency_ms=0.25, description="d", pricing="user"),
        make_entry(2, currency="JPY", resource=None, model=None, provider=None, tags={}, latency_ms=None),
        make_entry(3, currency="USD", category="storage", amount=Decimal("0.000000000000000001")),
        make_entry(4, usage=base.usage, tags={"k": "v", "ünï": "✓"}, description="", pricing="unpriced"),
    ]
    store.append(odd)
    got = store.entries()
    assert got == odd
    for want, back in zip(odd, got, strict=True):
        for field in attrs.fields(CostEntry):
            assert getattr(back, field.name) == getattr(want, field.name), field.name
    assert [e.currency for e in got] == ["EUR", "JPY", "USD", "USD"]
    assert frame_to_entries(store.scan()) == odd
    assert store.query("SELECT currency FROM entries ORDER BY timestamp")["currency"].tolist() == [
        "EUR",
        "JPY",
        "USD",
        "USD",
    ]


def _in_order(summary: CostSummary) -> tuple[object, ...]:
    """Everything in ``summary``, with each group's order."""
    return (
        summary.total,
        summary.calls,
        summary.usage,
        list(summary.by_category.items()),
        list(summary.by_resource.items()),
        list(summary.by_model.items()),
        [(k, list(v.items())) for k, v in summary.by_tag.items()],
        summary.start,
        summary.end,
    )


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"since": T0 + timedelta(hours=20), "until": T0 + timedelta(days=2)},
        {"category": "compute"},
        {"tags": {"team": "ads"}},
        {"model": ["gpt-4o"], "resource": "svc-1"},
        {"limit": 37},
        {"resource": "nothing matches"},
    ],
)
def test_summary_is_the_exact_summary_of_the_entries(
    store: CostStore, entries: list[CostEntry], filters: dict[str, object]
) -> None:
    """Every store's (pushed-down) summary equals summing its entries in Python, groups in the same order."""
    store.append(entries)
    want = summarize(store.entries(**filters), Filters(**filters).since, Filters(**filters).until)  # type: ignore[arg-type]
    got = store.summary(**filters)
    assert got == want
    assert _in_order(got) == _in_order(want)
    if not filters:
        assert got.calls == len(entries) and got.total == _sum(entries)
        assert got.by_resource[None] == _sum([e for e in entries if e.resource is None])
        assert set(got.by_tag) == {"team", "nasty"}


def test_summary_sums_beyond_28_digits(store: CostStore) -> None:
    big = [make_entry(i, amount=Decimal("12345678901234567890.123456789012345678")) for i in range(3)]
    store.append(big)
    summary = store.summary()
    assert summary.total == Decimal("37037036703703703670.370370367037037034")
    assert summary.by_model == summarize(big).by_model


def test_model_filters_match_the_canonical_id_and_summaries_group_by_it(store: CostStore) -> None:
    """``model=`` matches the id as returned or the catalog's id; ``summary().by_model`` groups by the latter."""
    dated = make_entry(0, model="gpt-4o-mini-2024-07-18", canonical_model="gpt-4o-mini", amount=Decimal("0.25"))
    plain = make_entry(1, model="gpt-4o-mini", canonical_model="gpt-4o-mini", amount=Decimal("0.5"))
    other = make_entry(2, model="gpt-4o", canonical_model="gpt-4o", amount=Decimal("2"))
    unpriced = make_entry(3, model="mystery-1", canonical_model=None, amount=Decimal(0))
    store.append([dated, plain, other, unpriced])
    assert store.entries(model="gpt-4o-mini") == [dated, plain]
    assert store.entries(model="gpt-4o-mini-2024-07-18") == [dated]
    assert store.entries(model=["gpt-4o", "gpt-4o-mini"]) == [dated, plain, other]
    assert frame_to_entries(store.scan(model="gpt-4o-mini")) == [dated, plain]
    assert store.scan(model="gpt-4o-mini")["canonical_model"].tolist() == ["gpt-4o-mini", "gpt-4o-mini"]
    assert store.total(model="gpt-4o-mini") == Decimal("0.75")
    assert store.entries(model="mystery-1") == [unpriced]
    assert store.entries(model=[]) == []
    by_model = store.summary().by_model
    assert by_model == {"gpt-4o": Decimal(2), "gpt-4o-mini": Decimal("0.75"), "mystery-1": Decimal(0)}
    assert by_model == summarize(store.entries()).by_model


def test_sums_past_10_to_the_20_stay_exact(store: CostStore) -> None:
    # Each amount is storable (below 10**20); partial sums pass 10**20, which DECIMAL(38, 18) cannot hold.
    big = Decimal("90000000000000000000")
    amounts = [big, big, -big, Decimal("-89999999999999999999.5"), Decimal("0.000000000000000001")]
    tags = {"team": "search"}
    store.append([make_entry(i, amount=a, category="compute", tags=tags) for i, a in enumerate(amounts)])
    exact = Decimal("0.500000000000000001")
    assert store.total() == exact
    assert store.total(category="compute") == exact
    assert store.total(limit=2) == 2 * big  # 1.8E+20: a sum no store row could hold, told exactly
    summary = store.summary()
    assert summary.total == exact and summary.calls == len(amounts)
    assert summary.by_category == {"compute": exact}
    assert summary.by_tag == {"team": {"search": exact}}
