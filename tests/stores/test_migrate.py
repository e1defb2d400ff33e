"""Schema versions: a store written with an older schema opens after a schema change, migrated once."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from llmcost import StoreError, _rows
from llmcost.stores import DuckDBStore, ParquetStore, _migrate

from .conftest import make_entry


def _version(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        ((value,),) = con.execute("SELECT value FROM llmcost_meta WHERE key = 'schema_version'").fetchall()
        return int(value)
    finally:
        con.close()


def test_duckdb_store_written_with_v1_opens_after_a_v2_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "costs.duckdb"
    entries = [make_entry(i) for i in range(20)]
    store = DuckDBStore(db)
    store.append(entries)
    store.save_budget("b", "{}")
    store.close()
    assert _version(db) == _rows.SCHEMA_VERSION == 1

    # Pretend this llmcost is newer: schema v2 adds a column.
    monkeypatch.setattr(_rows, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(_migrate, "DUCKDB_STEPS", {1: ("ALTER TABLE entries ADD COLUMN region VARCHAR",)})
    migrated = DuckDBStore(db)
    assert _version(db) == 2
    assert migrated.query("SELECT count(region) AS n FROM entries").loc[0, "n"] == 0
    assert migrated.entries() == entries
    assert migrated.load_budgets() == {"b": "{}"}
    migrated.append([make_entry(20)])
    # The step ran once: running it again would fail (the column exists).
    assert DuckDBStore(db).entries() == [*entries, make_entry(20)]


def test_duckdb_store_from_a_newer_llmcost_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "costs.duckdb"
    monkeypatch.setattr(_rows, "SCHEMA_VERSION", 3)
    DuckDBStore(db).close()
    monkeypatch.setattr(_rows, "SCHEMA_VERSION", 2)
    with pytest.raises(StoreError, match=r"schema version 3.*upgrade llmcost"):
        DuckDBStore(db)


def test_parquet_store_written_with_v1_opens_after_a_v2_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "costs"
    entries = [make_entry(i) for i in range(20)]
    ParquetStore(root).append(entries)
    assert json.loads((root / "_llmcost.json").read_text())["schema_version"] == 1

    ran: list[str] = []
    monkeypatch.setattr(_rows, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(_migrate, "PARQUET_STEPS", {1: ran.append})
    store = ParquetStore(root)
    assert ran == [str(root)]
    assert json.loads((root / "_llmcost.json").read_text())["schema_version"] == 2
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
