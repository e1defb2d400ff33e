"""Schema versions: a store written with an older schema opens after a schema change, migrated once."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from llmcost import CostEntry, StoreError, Usage, _rows
from llmcost.stores import DuckDBStore, ParquetStore, _migrate

from .conftest import make_entry


def _version(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        ((value,),) = con.execute("SELECT value FROM llmcost_meta WHERE key = 'schema_version'").fetchall()
        return int(value)
    finally:
        con.close()


NOW = _rows.SCHEMA_VERSION


def test_duckdb_store_written_now_opens_after_a_later_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "costs.duckdb"
    entries = [make_entry(i) for i in range(20)]
    store = DuckDBStore(db)
    store.append(entries)
    store.save_budget("b", "{}")
    store.close()
    assert _version(db) == _rows.SCHEMA_VERSION == NOW

    # Pretend this llmcost is newer: schema NOW + 1 adds a column.
    monkeypatch.setattr(_rows, "SCHEMA_VERSION", NOW + 1)
    monkeypatch.setattr(_migrate, "DUCKDB_STEPS", {NOW: ("ALTER TABLE entries ADD COLUMN region VARCHAR",)})
    migrated = DuckDBStore(db)
    assert _version(db) == NOW + 1
    assert migrated.query("SELECT count(region) AS n FROM entries").loc[0, "n"] == 0
    assert migrated.entries() == entries
    assert migrated.load_budgets() == {"b": "{}"}
    migrated.append([make_entry(20)])
    # The step ran once: running it again would fail (the column exists).
    assert DuckDBStore(db).entries() == [*entries, make_entry(20)]


def test_duckdb_store_from_a_newer_llmcost_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "costs.duckdb"
    monkeypatch.setattr(_rows, "SCHEMA_VERSION", NOW + 1)
    DuckDBStore(db).save_budget("b", "{}")  # the first write creates the file
    monkeypatch.setattr(_rows, "SCHEMA_VERSION", NOW)
    with pytest.raises(StoreError, match=rf"schema version {NOW + 1}.*upgrade llmcost"):
        DuckDBStore(db)


def test_parquet_store_written_now_opens_after_a_later_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "costs"
    entries = [make_entry(i) for i in range(20)]
    ParquetStore(root).append(entries)
    assert json.loads((root / "_llmcost.json").read_text())["schema_version"] == NOW

    ran: list[str] = []
    monkeypatch.setattr(_rows, "SCHEMA_VERSION", NOW + 1)
    monkeypatch.setattr(_migrate, "PARQUET_STEPS", {NOW: ran.append})
    store = ParquetStore(root)
    assert ran == [str(root)]
    assert json.loads((root / "_llmcost.json").read_text())["schema_version"] == NOW + 1
    assert store.entries() == entries
    ParquetStore(root)
    assert ran == [str(root)]  # once


def test_parquet_store_from_a_newer_llmcost_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "costs"
    root.mkdir()
    (root / "_llmcost.json").write_text(json.dumps({"format": "llmcost-parquet", "schema_version": 99}))
    with pytest.raises(StoreError, match="upgrade llmcost"):
        ParquetStore(root)
    (root / "_llmcost.json").write_text("{broken")
    with pytest.raises(StoreError, match="not valid JSON"):
        ParquetStore(root)


def test_parquet_files_of_an_older_shape_still_read(tmp_path: Path) -> None:
    """Files that lack a column a later schema added read as NULL in it (``union_by_name``)."""
    root = tmp_path / "costs"
    store = ParquetStore(root)
    entries = [make_entry(i, timestamp=make_entry(0).timestamp) for i in range(3)]
    store.append(entries)
    con = duckdb.connect()
    day = next(root.glob("day=*"))
    old = day / "part-old.parquet"
    con.execute(
        "COPY (SELECT * EXCLUDE (pricing) FROM read_parquet(?)) TO ? (FORMAT parquet)",
        [str(next(day.glob("part-*.parquet"))), str(old)],
    )
    con.close()
    frame = store.query("SELECT count(*) AS n, count(pricing) AS p FROM entries")
    assert (frame.loc[0, "n"], frame.loc[0, "p"]) == (6, 3)


# The entries table exactly as schema version 1 (llmcost before billing units and service tiers) created it.
V1_DDL = (
    'CREATE TABLE entries ("id" VARCHAR, "timestamp" TIMESTAMPTZ, "amount" DECIMAL(38, 18), "currency" VARCHAR, '
    '"category" VARCHAR, "resource" VARCHAR, "description" VARCHAR, "model" VARCHAR, "provider" VARCHAR, '
    '"input_tokens" BIGINT, "output_tokens" BIGINT, "cache_read_tokens" BIGINT, "cache_write_tokens" BIGINT, '
    '"reasoning_tokens" BIGINT, "latency_ms" DOUBLE, "tags" MAP(VARCHAR, VARCHAR), "pricing" VARCHAR)'
)
V1_ROW = (
    "INSERT INTO entries VALUES ('0005f0000000000000000000aa', TIMESTAMPTZ '2024-05-01 12:00:00+00', 0.0125, "
    "'USD', 'llm_inference', 'bot', '', 'gpt-4o', 'openai', 1000, 200, 100, 0, 0, 12.5, MAP {'team': 'a'}, "
    "'catalog@0.2.3')"
)


def _v1_entry() -> CostEntry:
    return CostEntry(
        id="0005f0000000000000000000aa",
        timestamp=datetime(2024, 5, 1, 12, tzinfo=timezone.utc),
        amount=Decimal("0.0125"),
        resource="bot",
        model="gpt-4o",
        provider="openai",
        usage=Usage(1000, 200, 100),
        latency_ms=12.5,
        tags={"team": "a"},
        pricing="catalog@0.2.3",
    )


def _v2_entry() -> CostEntry:
    return CostEntry(
        id="0005f0000000000000000000bb",
        timestamp=datetime(2024, 5, 1, 13, tzinfo=timezone.utc),
        amount=Decimal("0.0672"),
        model="claude-sonnet-4-20250514",
        usage=Usage(10000, 500, 4000, 5000, units={"cache_write_1h_tokens": 3000, "web_searches": 3}),
        pricing="catalog@0.2.3+batch-rule",
        service_tier="batch",
    )


def test_duckdb_store_written_by_schema_v1_migrates_to_units_and_service_tier(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute(V1_DDL)
    con.execute(_migrate.META_DDL)
    con.execute(_migrate.BUDGETS_DDL)
    con.execute("INSERT INTO llmcost_meta VALUES ('schema_version', '1')")
    con.execute(V1_ROW)
    con.close()

    store = DuckDBStore(db)
    assert store.entries() == [_v1_entry()]
    store.append([_v2_entry()])
    store.close()
    assert _version(db) == _rows.SCHEMA_VERSION
    con = duckdb.connect(str(db), read_only=True)
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'entries'"
        ).fetchall()
    )
    con.close()
    assert types["units"] == "MAP(VARCHAR, BIGINT)" and types["service_tier"] == "VARCHAR"
    again = DuckDBStore(db)
    assert again.entries() == [_v1_entry(), _v2_entry()]
    assert again.entries()[1].usage.units == {"cache_write_1h_tokens": 3000, "web_searches": 3}
    frame = again.scan()
    assert frame["units"].tolist() == [{}, {"cache_write_1h_tokens": 3000, "web_searches": 3}]
    assert frame["service_tier"].tolist() == [None, "batch"]


def test_parquet_store_written_by_schema_v1_migrates_to_units_and_service_tier(tmp_path: Path) -> None:
    root = tmp_path / "old"
    day = root / "day=2024-05-01"
    day.mkdir(parents=True)
    (root / "_llmcost.json").write_text(json.dumps({"format": "llmcost-parquet", "schema_version": 1}))
    con = duckdb.connect()
    con.execute(V1_DDL)
    con.execute(V1_ROW)
    con.execute("COPY entries TO ? (FORMAT parquet)", [str(day / "part-v1.parquet")])
    con.close()

    store = ParquetStore(root)
    assert json.loads((root / "_llmcost.json").read_text())["schema_version"] == _rows.SCHEMA_VERSION
    assert store.entries() == [_v1_entry()]
    store.append([_v2_entry()])
    assert ParquetStore(root).entries() == [_v1_entry(), _v2_entry()]
    store.compact()
    assert ParquetStore(root).entries() == [_v1_entry(), _v2_entry()]
    con = duckdb.connect()
    for file in root.rglob("*.parquet"):
        schema = dict(con.execute("SELECT name, type FROM parquet_schema(?)", [str(file)]).fetchall())
        assert "units" in schema and "service_tier" in schema, file
    con.close()


# The entries table exactly as schema version 2 (before canonical model ids) created it.
V2_DDL = V1_DDL[:-1] + ', "units" MAP(VARCHAR, BIGINT), "service_tier" VARCHAR)'
V2_ROW = (
    "INSERT INTO entries VALUES ('0005f0000000000000000000bb', TIMESTAMPTZ '2024-05-01 13:00:00+00', 0.0672, "
    "'USD', 'llm_inference', NULL, '', 'claude-sonnet-4-20250514', NULL, 10000, 500, 4000, 5000, 0, NULL, MAP {}, "
    "'catalog@0.2.3+batch-rule', MAP {'cache_write_1h_tokens': 3000, 'web_searches': 3}, 'batch')"
)


def _v3_entry() -> CostEntry:
    return CostEntry(
        id="0005f0000000000000000000cc",
        timestamp=datetime(2024, 5, 1, 14, tzinfo=timezone.utc),
        amount=Decimal("0.00015"),
        model="gpt-4o-mini-2024-07-18",
        provider="openai",
        usage=Usage(1000),
        pricing="catalog@0.2.3",
        canonical_model="gpt-4o-mini",
    )


def test_duckdb_store_written_by_schema_v2_migrates_to_canonical_model(tmp_path: Path) -> None:
    db = tmp_path / "v2.duckdb"
    con = duckdb.connect(str(db))
    con.execute(V2_DDL)
    con.execute(_migrate.META_DDL)
    con.execute(_migrate.BUDGETS_DDL)
    con.execute("INSERT INTO llmcost_meta VALUES ('schema_version', '2')")
    con.execute(V2_ROW)
    con.close()

    store = DuckDBStore(db)
    assert store.entries() == [_v2_entry()]
    assert store.entries()[0].canonical_model is None
    store.append([_v3_entry()])
    store.close()
    assert _version(db) == 3
    con = duckdb.connect(str(db), read_only=True)
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'entries'"
        ).fetchall()
    )
    con.close()
    assert types["canonical_model"] == "VARCHAR"
    again = DuckDBStore(db)
    assert again.entries() == [_v2_entry(), _v3_entry()]
    assert again.entries(model="gpt-4o-mini") == [_v3_entry()]
    assert again.summary().by_model == {
        "claude-sonnet-4-20250514": Decimal("0.0672"),
        "gpt-4o-mini": Decimal("0.00015"),
    }


def test_parquet_store_written_by_schema_v2_migrates_to_canonical_model(tmp_path: Path) -> None:
    root = tmp_path / "v2"
    day = root / "day=2024-05-01"
    day.mkdir(parents=True)
    (root / "_llmcost.json").write_text(json.dumps({"format": "llmcost-parquet", "schema_version": 2}))
    con = duckdb.connect()
    con.execute(V2_DDL)
    con.execute(V2_ROW)
    con.execute("COPY entries TO ? (FORMAT parquet)", [str(day / "part-v2.parquet")])
    con.close()

    store = ParquetStore(root)
    assert json.loads((root / "_llmcost.json").read_text())["schema_version"] == 3
    assert store.entries() == [_v2_entry()]
    store.append([_v3_entry()])
    assert ParquetStore(root).entries() == [_v2_entry(), _v3_entry()]
    assert ParquetStore(root).entries(model="gpt-4o-mini") == [_v3_entry()]
    store.compact()
    assert ParquetStore(root).entries() == [_v2_entry(), _v3_entry()]
