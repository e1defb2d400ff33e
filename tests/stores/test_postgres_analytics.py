"""Analytics on a PostgresStore, grouped inside PostgreSQL (``PostgresStore.spend_groups``), give the very frames the
DuckDB path gives on a MemoryStore and a DuckDBStore holding the same entries: every grouping, every ``freq``, every
filter, hostile tag keys and values, ties, empty answers. Against a real server; skipped without one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from llmcost import CostEntry, Usage, analytics
from llmcost.analytics._source import as_source
from llmcost.analytics._spend import exact_spend
from llmcost.stores import CostStore, DuckDBStore, MemoryStore, PostgresStore
from llmcost.stores._filters import Filters

from . import postgres_server
from .conftest import NASTY, T0, make_entry

#: Tag keys that would break a query that formatted them into SQL, or confuse one that parsed them.
HOSTILE_KEYS = [
    "'; DROP TABLE llmcost_entries; --",
    'a"b',
    "%s",
    "%(x)s",
    "$1",
    "?",
    "{}",
    "->>",
    "back\\slash",
    "key with space",
    "ключ ✓ 日本",
    "line\nbreak",
    "it's",
]
#: Group values that sort differently under a locale's collation than byte by byte (DuckDB's order).
TIE_VALUES = ["B", "a", "É", "e", "Z", "ä", "😀", "", "b", "aa", "A"]


def _entries() -> list[CostEntry]:
    out = [make_entry(i) for i in range(400)]
    for i, key in enumerate(HOSTILE_KEYS):
        for j, value in enumerate(NASTY):
            out.append(
                make_entry(
                    1000 + i * 100 + j,
                    tags={key: value, "team": NASTY[(i + j) % len(NASTY)]},
                    amount=Decimal("0.000000000000000001") * (j + 1) + Decimal(i),
                )
            )
    # Equal sums in every group: the order among them is the keys' (byte order, missing last).
    for i, value in enumerate(TIE_VALUES):
        out.append(
            make_entry(
                5000 + i,
                tags={"tie": value},
                resource=f"tie-{value}",
                model=value or None,
                provider=value,
                amount=Decimal("7.25"),
                usage=Usage(10, 2, 3, 4, 0),
                timestamp=T0 + timedelta(days=40),
            )
        )
    # Far apart in time: empty buckets in between, a year and a quarter boundary.
    out.append(make_entry(6000, timestamp=datetime(2023, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)))
    out.append(make_entry(6001, timestamp=datetime(2025, 3, 31, 23, 59, 59, tzinfo=timezone.utc)))
    return out


@dataclass
class Stores:
    postgres: PostgresStore
    memory: MemoryStore
    duckdb: DuckDBStore


@pytest.fixture(scope="module")
def stores(postgres_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    tmp: Path = tmp_path_factory.mktemp("pg-analytics")
    batch = _entries()
    pg = PostgresStore(postgres_server.fresh_schema(postgres_database), spill_dir=str(tmp / "spill"))
    memory = MemoryStore()
    duck = DuckDBStore(str(tmp / "costs.duckdb"))
    for store in (pg, memory, duck):
        store.append(batch)
    yield Stores(pg, memory, duck)
    pg.close()
    duck.close()


@pytest.fixture
def pushed_down(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The PostgresStore with its copy path (``query``) switched off, so that a passing test proves the grouping ran
    in PostgreSQL; yields the list of ``spend_groups`` answers."""
    answers: list[object] = []
    original = stores.postgres.spend_groups

    def spy(*args: Any, **kwargs: Any) -> Any:
        answers.append(found := original(*args, **kwargs))
        return found

    def no_copy(*args: object, **kwargs: object) -> None:
        raise AssertionError("the grouping was not pushed down into PostgreSQL: query() was called")

    monkeypatch.setattr(stores.postgres, "spend_groups", spy)
    monkeypatch.setattr(stores.postgres, "query", no_copy)
    return answers


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Equal to the last bit: columns, dtypes, order, values (exact Decimals compared as Decimals, with type)."""
    assert list(got.columns) == list(want.columns)
    assert list(got.dtypes) == list(want.dtypes)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.equals(want)
    if len(want) and want["cost"].dtype == object:
        assert [(type(c), c, str(c)) for c in got["cost"]] == [(type(c), c, str(c)) for c in want["cost"]]


SINCE = datetime(2024, 5, 2, 3, 30, tzinfo=timezone.utc)
UNTIL = datetime(2024, 5, 3, 12, 0, tzinfo=timezone.utc)

#: name: (analytics function, its keyword arguments), each run on every store.
CASES: dict[str, tuple[Callable[..., pd.DataFrame], dict[str, Any]]] = {
    "default": (analytics.spend, {}),
    "no keys": (analytics.spend, {"by": ()}),
    "None keys": (analytics.spend, {"by": None}),
    "by category": (analytics.by_category, {}),
    "by resource": (analytics.by_resource, {}),
    "by model": (analytics.by_model, {}),
    "by provider": (analytics.spend, {"by": "provider"}),
    "by model and team": (analytics.spend, {"by": ("model", "tag:team")}),
    "by three keys": (analytics.spend, {"by": ("provider", "resource", "category")}),
    "by tie tag": (analytics.spend, {"by": ("tag:tie",)}),
    "by tag missing everywhere": (analytics.spend, {"by": ("tag:nobody",)}),
    "by tag, key": (analytics.by_tag, {"key": "team"}),
    "over time by day": (analytics.over_time, {"freq": "D"}),
    "over time by week and model": (analytics.over_time, {"freq": "W", "by": "model"}),
    "since until": (analytics.by_model, {"since": SINCE, "until": UNTIL}),
    "since text date": (analytics.by_category, {"since": "2024-05-02"}),
    "until date object": (analytics.spend, {"by": "resource", "until": date(2024, 5, 3)}),
    "until text date (whole day)": (analytics.spend, {"by": "provider", "until": "2024-05-02", "freq": "h"}),
    "empty window": (analytics.by_model, {"since": datetime(2030, 1, 1)}),
    "empty window, no keys": (analytics.spend, {"by": (), "since": datetime(2030, 1, 1)}),
    "empty window, freq": (analytics.spend, {"by": "tag:team", "freq": "D", "since": datetime(2030, 1, 1)}),
    "empty over time": (analytics.over_time, {"freq": "D", "since": datetime(2030, 1, 1)}),
    **{
        f"freq {freq}": (analytics.spend, {"by": ("model", "tag:team"), "freq": freq})
        for freq in ("min", "h", "D", "W", "MS", "QS", "YS")
    },
    **{
        f"exact {i}": (exact_spend, kw)
        for i, kw in enumerate(
            [
                {},
                {"by": ("model",), "category": "llm_inference"},
                {"by": ("category",), "resource": "svc-1"},
                {"by": ("resource",), "tags": {"team": "search"}},
                {"by": ("tag:team",), "freq": "D", "since": SINCE, "until": UNTIL},
                {"by": ("model",), "category": "compute", "resource": "svc-2", "tags": {"team": "ads"}},
                {"by": ("provider",), "resource": "no such resource"},
                {"by": ("tag:tie",), "tags": {"tie": "ä"}},
                {"by": (), "category": "llm_embedding", "since": "2024-05-02"},
            ]
        )
    },
    **{
        f"hostile key {i}": (analytics.spend, {"by": (f"tag:{key}", "model"), "freq": "D"})
        for i, key in enumerate(HOSTILE_KEYS)
    },
    **{
        f"hostile by_tag {i}": (analytics.by_tag, {"key": key, "since": SINCE})
        for i, key in enumerate(HOSTILE_KEYS[:4])
    },
    **{
        f"hostile filter {i}": (exact_spend, {"by": ("tag:team", f"tag:{key}"), "tags": {key: value}})
        for i, (key, value) in enumerate(zip(HOSTILE_KEYS, NASTY, strict=False))
    },
    "hostile values as filters": (
        exact_spend,
        {"by": ("model",), "tags": {"team": "'; DROP TABLE llmcost_entries; --"}, "resource": "x' OR '1'='1"},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_pushed_down_groupings_equal_the_duckdb_path(stores: Stores, pushed_down: list[object], case: str) -> None:
    fn, kwargs = CASES[case]
    want = fn(stores.memory, **kwargs)
    _same(fn(stores.duckdb, **kwargs), want)
    got = fn(stores.postgres, **kwargs)
    assert pushed_down and all(a is not None for a in pushed_down)
    _same(got, want)


def test_narrowing_twice_is_pushed_down_and_equal(stores: Stores, pushed_down: list[object]) -> None:
    def narrowed(store: CostStore, **second: Any) -> pd.DataFrame:
        with as_source(store) as src:
            view = src.where(since=SINCE, category="llm_inference", tags={"team": "ads"})
            return exact_spend(view.where(until=UNTIL, **second), by=("model", "tag:nasty"), freq="h")

    for second in ({"category": "llm_inference"}, {"category": "compute"}, {"tags": {"nasty": "it's"}}, {}):
        _same(narrowed(stores.postgres, **second), narrowed(stores.memory, **second))
    assert len(pushed_down) == 4


def test_what_one_filters_cannot_say_goes_the_copy_path(stores: Stores) -> None:
    # tags[team] = search AND tags[team] = ads: no entry, and no single Filters to hand to PostgreSQL.
    def conflicting(store: CostStore) -> pd.DataFrame:
        with as_source(store) as src:
            view = src.where(tags={"team": "search"}).where(tags={"team": "ads"})
            assert view.filters() is None
            return analytics.spend(view, by="model")

    got = conflicting(stores.postgres)
    assert got.empty
    _same(got, conflicting(stores.memory))


def test_text_postgres_cannot_hold_is_answered_by_the_copy_path(stores: Stores) -> None:
    assert stores.postgres.spend_groups(["tag:a\x00b"]) is None
    assert stores.postgres.spend_groups(["model"], Filters(resource="svc\x00")) is None
    for fn in (
        lambda s: analytics.spend(s, by=("tag:a\x00b", "category")),
        lambda s: exact_spend(s, by="model", resource="svc\x00"),
    ):
        _same(fn(stores.postgres), fn(stores.memory))


@pytest.mark.parametrize(
    "filters",
    [
        Filters(),
        Filters(model="gpt-4o"),
        Filters(model=["claude-3-5-sonnet", "a"], provider=["anthropic", "ä"]),
        Filters(provider="openai", category=["compute", "llm_inference"], since=SINCE),
        Filters(tags={"team": "ads", "nasty": "line\nbreak"}, until=UNTIL),
        Filters(tags={HOSTILE_KEYS[0]: NASTY[7]}),
        Filters(category=[]),
    ],
)
def test_spend_groups_sums_what_filters_match(stores: Stores, filters: Filters) -> None:
    """Every filter ``Filters`` has (model and provider too, which analytics does not pass yet), as ``matches``
    applies it."""
    want: dict[tuple[Any, ...], list[Any]] = {}
    for e in stores.memory.entries():
        if filters.matches(e):
            key = (e.canonical_model or e.model, e.tags.get("team"))
            sums = want.setdefault(key, [Decimal(0), 0, 0, 0, 0, 0])
            usage = (e.usage.input_tokens, e.usage.output_tokens, e.usage.cache_read_tokens, e.usage.cache_write_tokens)
            for i, v in enumerate((e.amount, 1, *usage)):
                sums[i] += v
    got = stores.postgres.spend_groups(["model", "tag:team"], filters)
    assert got is not None
    assert {tuple(r[:2]): list(r[2:]) for r in got} == want
    assert all(type(r[2]) is Decimal for r in got)


def test_spend_groups_refuses_what_is_not_a_key(stores: Stores) -> None:
    for keys in (["amount"], ["tag:"], ["model; DROP TABLE llmcost_entries"], [3]):
        with pytest.raises((ValueError, TypeError)):
            stores.postgres.spend_groups(keys)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="unit"):
        stores.postgres.spend_groups(["model"], unit="day'); DROP TABLE llmcost_entries; --")
    assert len(stores.postgres.entries()) == len(_entries())  # and the table is all there
