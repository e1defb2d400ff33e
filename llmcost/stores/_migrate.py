"""Schema versions on disk and the steps that bring an older store up to ``SCHEMA_VERSION``.

Every durable store records the schema version it was written with: DuckDB files and PostgreSQL databases in the
``llmcost_meta`` table, Parquet datasets in ``_llmcost.json``. Opening a store written with an older version runs
the steps from that version up, in order, then records the new version; opening one written by a newer llmcost
raises ``StoreError`` rather than guess.

To change the schema: bump ``llmcost._rows.SCHEMA_VERSION`` to N+1, then add ``DUCKDB_STEPS[N]`` (SQL run in the same
transaction that records N+1, e.g. ``ALTER TABLE entries ADD COLUMN ...``) and ``PARQUET_STEPS[N]`` (a function
of the dataset directory, run under the dataset lock); ``POSTGRES_STEPS[N]`` only when a change is more than a new
column (PostgreSQL adds every declared column that is missing by itself). Parquet files are read with
``union_by_name``, so files written before a column was added read a typed NULL in it, and ``compact()`` rewrites
them to the current schema; a step only rewrites files itself when that is not enough.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from .. import _rows
from .._errors import StoreError
from ._disk import write_atomic

__all__ = [
    "BUDGETS_DDL",
    "DUCKDB_STEPS",
    "META_DDL",
    "PARQUET_STEPS",
    "POSTGRES_STEPS",
    "check_duckdb_version",
    "check_version",
    "current_version",
    "migrate_duckdb",
    "migrate_parquet",
    "migrate_postgres",
]

META_DDL = "CREATE TABLE IF NOT EXISTS llmcost_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)"
BUDGETS_DDL = "CREATE TABLE IF NOT EXISTS llmcost_budgets (name VARCHAR PRIMARY KEY, definition VARCHAR NOT NULL)"

#: SQL statements that take a DuckDB store from version N to N+1, by N.
DUCKDB_STEPS: dict[int, tuple[str, ...]] = {
    # 1 -> 2: billing units (a map of genai-prices usage name to count) and the service tier.
    1: (
        f'ALTER TABLE entries ADD COLUMN IF NOT EXISTS "units" {_rows.SQL_TYPES["units"]}',
        f'ALTER TABLE entries ADD COLUMN IF NOT EXISTS "service_tier" {_rows.SQL_TYPES["service_tier"]}',
    ),
    # 2 -> 3: the catalog's id of the model that priced an entry (NULL in rows written before).
    2: (f'ALTER TABLE entries ADD COLUMN IF NOT EXISTS "canonical_model" {_rows.SQL_TYPES["canonical_model"]}',),
}
#: Functions of the dataset directory that take a Parquet store from version N to N+1, by N. Versions 2 and 3 only
#: added columns (``units``, ``service_tier``; ``canonical_model``), which files written before read as NULL: no step
#: rewrites them.
PARQUET_STEPS: dict[int, Callable[[str], None]] = {}

PARQUET_META = "_llmcost.json"
_PARQUET_FORMAT = "llmcost-parquet"


def current_version() -> int:
    """The schema version this llmcost writes (read at call time, so tests can pretend to be newer)."""
    return _rows.SCHEMA_VERSION


def _check(found: int, where: str) -> None:
    if found > current_version():
        raise StoreError(
            f"{where} was written with schema version {found}, but this llmcost knows version "
            f"{current_version()} at most; upgrade llmcost to open it"
        )


def check_version(found: int | None, where: str) -> None:
    """Raise ``StoreError`` if ``found`` (a store's recorded version) is newer than this llmcost knows: for stores
    opened read-only, which are read as they are and never migrated."""
    if found is not None:
        _check(found, where)


def check_duckdb_version(con: Any, where: str) -> None:
    """``check_version`` for the DuckDB file attached (read-only) on ``con``."""
    tables = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
        ).fetchall()
    }
    if "llmcost_meta" not in tables:
        if "entries" not in tables:
            raise StoreError(f"{where} is a DuckDB file but not an llmcost store (it has no entries table)")
        return
    rows = con.execute("SELECT value FROM llmcost_meta WHERE key = 'schema_version'").fetchall()
    check_version(int(rows[0][0]) if rows else None, where)


def migrate_duckdb(con: Any, where: str) -> int:
    """Create the tables if needed and migrate them to the current version; return the version found.

    Runs inside the caller's write transaction, so concurrent openers migrate once: the DuckDB file lock lets one
    process in at a time, and the next one finds the new version.
    """
    con.execute(_rows.ENTRIES_DDL)
    con.execute(META_DDL)
    con.execute(BUDGETS_DDL)
    # fetchall, not fetchone: DuckDB refuses some calls while a result is not read to its end.
    rows = con.execute("SELECT value FROM llmcost_meta WHERE key = 'schema_version'").fetchall()
    target = current_version()
    if not rows:
        con.execute("INSERT INTO llmcost_meta VALUES ('schema_version', ?)", [str(target)])
        return target
    found = int(rows[0][0])
    _check(found, where)
    for version in range(found, target):
        for statement in DUCKDB_STEPS.get(version, ()):
            con.execute(statement)
    if found != target:
        con.execute("UPDATE llmcost_meta SET value = ? WHERE key = 'schema_version'", [str(target)])
    return found


def read_parquet_version(directory: str) -> int | None:
    """The schema version recorded for the dataset in ``directory``; ``None`` if none is recorded yet."""
    try:
        with open(os.path.join(directory, PARQUET_META), encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise StoreError(f"{os.path.join(directory, PARQUET_META)} is not valid JSON: {exc}") from exc
    if meta.get("format") != _PARQUET_FORMAT or not isinstance(meta.get("schema_version"), int):
        raise StoreError(f"{os.path.join(directory, PARQUET_META)} does not describe an llmcost Parquet store")
    return int(meta["schema_version"])


def write_parquet_version(directory: str, version: int) -> None:
    """Record ``version`` for the dataset in ``directory`` (atomically)."""
    text = json.dumps({"format": _PARQUET_FORMAT, "schema_version": version}, indent=2) + "\n"
    write_atomic(os.path.join(directory, PARQUET_META), text.encode("utf-8"))


def migrate_parquet(directory: str) -> int:
    """Migrate the dataset in ``directory`` to the current version; return the version found.

    The caller holds the dataset lock.
    """
    found = read_parquet_version(directory)
    target = current_version()
    if found is None:
        write_parquet_version(directory, target)
        return target
    _check(found, directory)
    for version in range(found, target):
        step = PARQUET_STEPS.get(version)
        if step is not None:
            step(directory)
    if found != target:
        write_parquet_version(directory, target)
    return found


# -- PostgreSQL ---------------------------------------------------------------------------------------------------
#: SQL statements that take a PostgreSQL store from version N to N+1, by N (``%s``-free, run as they are). Columns
#: added to ``_rows.SQL_TYPES`` need no step here: ``migrate_postgres`` adds every declared column that is missing.
POSTGRES_STEPS: dict[int, tuple[str, ...]] = {}


def migrate_postgres(
    cur: Any, where: str, ddl: tuple[str, ...], add_columns: tuple[str, ...], relations: tuple[str, ...]
) -> int:
    """Create the PostgreSQL tables (``ddl``) if needed and migrate them to the current version; return the version
    found. ``add_columns`` are ``ALTER TABLE ... ADD COLUMN IF NOT EXISTS`` statements for every declared column;
    ``relations`` names every table and index ``ddl`` creates.

    A store already at the current version, with every one of ``relations`` in the schema ``ddl`` creates them in
    (the first of the ``search_path``), is only read: no DDL runs, so a role with ``SELECT`` and ``USAGE`` alone
    opens it (docs/postgres.md, "Roles and permissions"; even ``CREATE TABLE IF NOT EXISTS`` needs ``CREATE`` on
    the schema). Otherwise the tables are made and migrated inside the caller's transaction, under a
    transaction-level advisory lock, so concurrent openers on any host migrate once and never race on ``CREATE
    TABLE``; the version is read again under the lock. ``relations`` are checked, not just the version, because a
    table or index added without a version bump (the ledger's, in version 2) is still made.
    """
    found = _postgres_version(cur, relations)
    if found is not None:
        _check(found, where)
        if found == current_version():
            return found
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended('llmcost.migrate', 0))")
    for statement in ddl:
        cur.execute(statement)
    cur.execute("SELECT value FROM llmcost_meta WHERE key = 'schema_version'")
    rows = cur.fetchall()
    target = current_version()
    if not rows:
        for statement in add_columns:
            cur.execute(statement)
        cur.execute("INSERT INTO llmcost_meta VALUES ('schema_version', %s)", [str(target)])
        return target
    found = int(rows[0][0])
    _check(found, where)
    for version in range(found, target):
        for statement in POSTGRES_STEPS.get(version, ()):
            cur.execute(statement)
    if found != target:
        for statement in add_columns:
            cur.execute(statement)
        cur.execute("UPDATE llmcost_meta SET value = %s WHERE key = 'schema_version'", [str(target)])
    return found


def _postgres_version(cur: Any, relations: tuple[str, ...]) -> int | None:
    """The schema version recorded in ``llmcost_meta`` if every one of ``relations`` exists in the schema tables are
    created in (``current_schema()``); ``None`` when one is missing or no version is recorded. Reads only (the
    catalog, then ``llmcost_meta``), with no lock: a first creation commits its tables and its version together,
    so either all of them are seen or the opener goes on to create them under the lock."""
    cur.execute(
        "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relname = ANY(%s)",
        [list(relations)],
    )
    (present,) = cur.fetchone()
    if present != len(set(relations)):
        return None
    cur.execute("SELECT value FROM llmcost_meta WHERE key = 'schema_version'")
    rows = cur.fetchall()
    return int(rows[0][0]) if rows else None
