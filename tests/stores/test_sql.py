"""The shared SQL: parameters only, exact types on the way out, fast ingest on the way in."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import duckdb
import pandas as pd
import pytest

from llmcost._rows import INGEST_SELECT, ingest_columns
from llmcost.stores import Filters
from llmcost.stores._sql import QueryFrames, fetch_frame, registered, where_sql

from .conftest import NASTY, make_entry


def test_user_values_only_travel_as_parameters() -> None:
    filters = Filters(
        since=datetime(2024, 1, 1),
        until=datetime(2024, 2, 1),
        category=["compute", "other"],
        resource=NASTY,
        model="x'); DROP TABLE entries; --",
        provider=[],
        tags={k or "k": k for k in NASTY},
    )
    sql, params = where_sql(filters)
    assert sql.count("?") == len(params)
    for value in params:
        if isinstance(value, str) and value:
            assert value not in sql.replace("tags[?]", ""), value
    assert "FALSE" in sql  # an empty provider list matches nothing
    assert where_sql(Filters()) == ("", [])


def test_fetch_frame_keeps_decimals_exact_and_timestamps_utc() -> None:
    con = duckdb.connect()
    frame = fetch_frame(
        con,
        "SELECT CAST(? AS DECIMAL(38, 18)) AS d, CAST(NULL AS DECIMAL(38, 18)) AS n, "
        "TIMESTAMPTZ '2024-05-01 12:00:00.000001+02' AS t, CAST(NULL AS TIMESTAMPTZ) AS t2, 'x' AS s, 1 AS s",
        ["0.000000000000000001"],
    )
    assert list(frame.columns) == ["d", "n", "t", "t2", "s", "s"]
    assert frame["d"][0] == Decimal("1E-18") and isinstance(frame["d"][0], Decimal)
    assert frame["n"][0] is None
    assert frame["t"][0].to_pydatetime() == datetime(2024, 5, 1, 10, 0, 0, 1, tzinfo=timezone.utc)
    assert str(frame["t"].dtype) == "datetime64[us, UTC]"
    assert frame["t2"].isna().all()
    assert fetch_frame(con, "SELECT 1 AS a WHERE FALSE", None).empty
    con.close()


_PLAIN_SQL = (
    "SELECT i, 'v' || i AS s, CASE WHEN i % 2 = 0 THEN NULL ELSE i END AS n, [i] AS l, map(['k'], ['v']) AS m, "
    "1.5::DOUBLE AS f, TIMESTAMP '2024-01-01' AS t, i AS i FROM range(4) AS r(i) WHERE i < ?"
)


def test_query_frames_gives_fetch_frames_frame_when_asked_again() -> None:
    """A query asked again runs as plain DuckDB runs it (one execute, then df) and gives the very frame."""
    con = duckdb.connect()
    frames = QueryFrames()
    want = fetch_frame(con, _PLAIN_SQL, [3])
    for _ in range(3):
        got = frames.fetch(con, _PLAIN_SQL, [3])
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert list(got.columns) == ["i", "s", "n", "l", "m", "f", "t", "i"]
    con.close()


def test_query_frames_converts_a_remembered_query_whose_result_needs_it() -> None:
    """A query remembered as having nothing to convert still comes back converted when its result needs it (a
    parameter of another type here; a migrated schema in a store): exact Decimals, UTC timestamps."""
    con = duckdb.connect()
    frames = QueryFrames()
    sql = "SELECT ? AS x, ? AS y"
    assert frames.fetch(con, sql, [1, "a"])["x"].tolist() == [1]
    values = [Decimal("0.000000000000000001"), datetime(2024, 5, 1, tzinfo=timezone.utc)]
    exact = frames.fetch(con, sql, values)
    assert exact["x"][0] == Decimal("1E-18") and isinstance(exact["x"][0], Decimal)
    assert str(exact["y"].dtype) == "datetime64[us, UTC]"
    pd.testing.assert_frame_equal(exact, fetch_frame(con, sql, values), check_exact=True)
    assert frames.fetch(con, sql, [2, "b"])["x"].tolist() == [2]
    con.close()


def test_query_frames_keeps_errors_of_a_new_shape_of_parameters() -> None:
    con = duckdb.connect()
    frames = QueryFrames(size=1)
    frames.fetch(con, "SELECT ? AS x", [1])
    with pytest.raises(duckdb.InvalidInputException) as got:
        frames.fetch(con, "SELECT ? AS x", [1, 2])
    with pytest.raises(duckdb.InvalidInputException) as want:
        fetch_frame(con, "SELECT ? AS x", [1, 2])
    assert str(got.value) == str(want.value)
    frames.fetch(con, "SELECT 2 AS y", None)  # full: the oldest query is forgotten
    assert frames.fetch(con, "SELECT ? AS x", [5])["x"].tolist() == [5]
    con.close()


@pytest.mark.parametrize("tags", [{}, {"a": "1"}, {"a": "1", "b": ""}])
def test_ingest_round_trip(tags: dict[str, str]) -> None:
    entries = [make_entry(i, tags=dict(tags)) for i in range(5)]
    cols = ingest_columns(entries)
    assert len(cols[1]["tags"]) == (2 if tags else 1)  # equal tag maps are sent once
    con = duckdb.connect()
    with registered(con, cols):
        rows = con.execute(f"SELECT id, tags, CAST(amount AS VARCHAR) FROM ({INGEST_SELECT})").fetchall()
    assert [(r[0], r[1], Decimal(r[2])) for r in rows] == [(e.id, dict(e.tags), e.amount) for e in entries]
    con.close()


def test_ingest_units_are_null_when_empty() -> None:
    import pickle

    from llmcost import Usage
    from llmcost._usage import Units

    plain = make_entry(0)
    unpickled = pickle.loads(pickle.dumps(make_entry(2)))  # an empty Units that is not the NO_UNITS object
    counted = attrs.evolve(make_entry(3), usage=Usage(10, 5, units=Units({"web_searches": 2})))
    assert list(ingest_columns([plain, unpickled])[0]["units"]) == [None, None]
    assert list(ingest_columns([plain, unpickled, counted])[0]["units"]) == [None, None, '{"web_searches": 2}']


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_a_frame_whose_hashes_do_not_tell_values_apart_comes_from_plain_rows(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``read_frame`` reads repeating columns as hashes plus their distinct values; were two distinct values to share
    a hash (here: every hash made 0), the frame comes from every row's own values, the same frame. (A ParquetStore's
    Arrow read finds distinct values by value, in one scan: no hashes, no fallback.)"""
    from llmcost._rows import frame_to_entries
    from llmcost.stores import DuckDBStore, ParquetStore, _sql

    store = DuckDBStore(tmp_path / "c.duckdb") if kind == "duckdb" else ParquetStore(tmp_path / "pq")
    entries = [make_entry(i) for i in range(60)]
    store.append(entries)
    want = store.scan()
    for name in ("_DISTINCT", "_ARROW_DISTINCT"):  # the hash read, and the Arrow read where pandas keeps text in Arrow
        colliding = tuple(q.replace("SELECT hash(", "SELECT 0 * hash(", 1) for q in getattr(_sql, name))
        monkeypatch.setattr(_sql, name, colliding)
    plain, fell_back = _sql._plain_frame, []
    monkeypatch.setattr(_sql, "_plain_frame", lambda *args: fell_back.append(1) or plain(*args))
    got = store.scan()
    pd.testing.assert_frame_equal(got, want)
    assert frame_to_entries(got) == entries
    with pd.option_context("mode.string_storage", "python"):
        assert frame_to_entries(store.scan()) == entries
    assert len(fell_back) == (2 if kind == "duckdb" else 1)


@pytest.mark.parametrize("storage", ["python", "pyarrow"])
@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_a_frame_comes_in_time_then_id_order_whatever_order_the_rows_were_stored_in(
    kind: str, storage: str, tmp_path: Path
) -> None:
    """``read_frame`` reads rows unordered and sorts them itself: by timestamp, ids breaking ties (as
    ``ORDER BY "timestamp", id``), with and without a limit, whichever way pandas stores strings."""
    if storage == "pyarrow":
        pytest.importorskip("pyarrow")
    from llmcost._rows import frame_to_entries
    from llmcost.stores import DuckDBStore, ParquetStore

    store = DuckDBStore(tmp_path / "c.duckdb") if kind == "duckdb" else ParquetStore(tmp_path / "pq")
    entries = [make_entry(i) for i in range(40)]
    tied = [make_entry(i + 100, id=f"tie-{9 - i}", timestamp=entries[20].timestamp) for i in range(10)]
    for batch in (entries[30:], tied[::2], entries[:15], tied[1::2], entries[15:30]):
        store.append(batch)
    want = sorted([*entries, *tied], key=lambda e: (e.timestamp, e.id))
    with pd.option_context("mode.string_storage", storage):
        assert frame_to_entries(store.scan()) == want
        assert frame_to_entries(store.scan(limit=25)) == want[:25]


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_a_frame_read_through_arrow_is_the_frame_of_plain_rows(kind: str, tmp_path: Path) -> None:
    """Where pandas keeps text in Arrow, ``read_frame`` reads each row once and finds the distinct texts and amounts
    in Arrow; the frame is the one made from every row's own values, to each amount's digits (``repr``) and each
    column's dtype."""
    pytest.importorskip("pyarrow")
    from llmcost.stores import DuckDBStore, ParquetStore, _sql

    store = DuckDBStore(tmp_path / "c.duckdb") if kind == "duckdb" else ParquetStore(tmp_path / "pq")
    amounts = ["0", "1E-18", "100", "0.5", "12345678901234567890.123456789012345678", "0.000000012345678901", "7.10"]
    entries = [make_entry(i, amount=Decimal(amounts[i % len(amounts)])) for i in range(90)]
    store.append(entries[40:])
    store.append(entries[:40])
    plain = store.scan()
    with pd.option_context("mode.string_storage", "pyarrow"):
        got = store.scan()
        monkeypatch = pytest.MonkeyPatch()
        monkeypatch.setattr(_sql, "_arrow_frame", lambda *args: None)  # the frame from plain rows instead
        try:
            want = store.scan()
        finally:
            monkeypatch.undo()
    pd.testing.assert_frame_equal(got, want)
    assert [repr(a) for a in got["amount"]] == [repr(a) for a in want["amount"]]
    assert [repr(a) for a in got["amount"][:3]] == ["Decimal('0')", "Decimal('1E-18')", "Decimal('100')"]
    pd.testing.assert_frame_equal(plain, want)


@pytest.mark.parametrize(("group_rows", "rows_known"), [(1, True), (7, True), (1 << 17, True), (7, False)])
def test_a_parquet_frame_read_in_one_scan_is_the_frame_of_plain_rows(
    group_rows: int, rows_known: bool, tmp_path: Path
) -> None:
    """A ParquetStore's Arrow read takes every column from one streamed scan, a group of batches at a time, and finds
    the distinct values of the columns the frame keeps as objects across groups: values that first appear in later
    groups, NULLs in some groups only, amounts to their digits, rows stored out of order, filters and limits; and
    where more rows come than the source was counted to hold (arrays made for one row), the arrays grow."""
    pytest.importorskip("pyarrow")
    from llmcost import Usage
    from llmcost.stores import ParquetStore, _sql

    store = ParquetStore(tmp_path / "pq")
    amounts = ["0", "1E-18", "100", "0.5", "12345678901234567890.123456789012345678", "7.10"]
    entries = [
        make_entry(
            i,
            amount=Decimal(amounts[i % len(amounts)]),
            tags={"team": f"t{i % 4}"} if i % 3 else {},
            resource=None if i % 5 == 0 else f"job-{i // 20}",  # new values in later files
            model=f"m{i % 3}" if i > 30 else "gpt-4o",
            usage=Usage(10, 5, units={"web_searches": i % 2 + 1}) if i % 7 == 0 else Usage(10, 5),
        )
        for i in range(80)
    ]
    for batch in (entries[50:], entries[:10], entries[30:50], entries[10:30]):
        store.append(batch)
    read = _sql._one_scan_frame
    for filters in ({}, {"limit": 33}, {"resource": ["job-1", "job-3"]}):
        with pd.option_context("mode.string_storage", "pyarrow"), pytest.MonkeyPatch.context() as patch:
            patch.setattr(_sql, "_GROUP_ROWS", group_rows)
            if not rows_known:
                patch.setattr(_sql, "_one_scan_frame", lambda *args, **kw: read(*args[:-1], 1, **kw))
            got = store.scan(**filters)
            patch.setattr(_sql, "_one_scan_frame", lambda *args, **kw: None)  # the frame from plain rows instead
            want = store.scan(**filters)
        assert len(want) == {"limit": 33, "resource": 32}.get(next(iter(filters), ""), 80)
        pd.testing.assert_frame_equal(got, want)
        assert [repr(a) for a in got["amount"]] == [repr(a) for a in want["amount"]]
        assert [(type(t), t) for t in got["tags"]] == [(type(t), t) for t in want["tags"]]


def test_a_coded_column_of_one_value_shares_it_in_every_row() -> None:
    """``frame_from_arrays`` fills a coded object column of one distinct value with that one object (as the take of
    several does), and takes the others; the frame is the frame of plain values."""
    import numpy as np

    from llmcost._rows import COLUMNS, Coded, frame_from_arrays

    rows = 5
    plain = {c: [None] * rows for c in COLUMNS} | {
        "id": [f"i{n}" for n in range(rows)],
        "timestamp": list(range(rows)),
        "amount": ["1.5"] * rows,
        "currency": ["USD"] * rows,
        "category": ["compute"] * rows,
        "description": [""] * rows,
        "pricing": ["given"] * rows,
        "model": ["a", "b", "a", "b", "a"],
        **{c: [0] * rows for c in ("input_tokens", "output_tokens", "cache_read_tokens")},
        **{c: [0] * rows for c in ("cache_write_tokens", "reasoning_tokens")},
        "latency_ms": [1.0] * rows,
        "tags": ['{"team": "x"}'] * rows,
    }
    coded = dict(plain)
    coded["tags"] = Coded(np.zeros(rows, np.int32), ['{"team": "x"}'])
    coded["amount"] = Coded(np.zeros(rows, np.int32), ["1.5"])
    coded["model"] = Coded(np.array([0, 1, 0, 1, 0], np.int32), ["a", "b"])
    coded["units"] = Coded(np.zeros(rows, np.int32), [None])
    got, want = frame_from_arrays(coded), frame_from_arrays({c: np.array(v, dtype=object) for c, v in plain.items()})
    pd.testing.assert_frame_equal(got, want)
    assert all(t is got["tags"][0] for t in got["tags"]) and got["tags"][0] == {"team": "x"}
    assert all(a is got["amount"][0] for a in got["amount"]) and repr(got["amount"][0]) == "Decimal('1.5')"
    assert got["units"].tolist() == [{}] * rows


_SMALL_AMOUNTS = [
    "0",
    "1E-18",
    "-1E-18",
    "0.5",
    "-0.5",
    "7.10",
    "1",
    "-1",
    "9",
    "0.000000012345678901",
    "1.000000000000000001",
    "-9.223372036854775808",  # the 64-bit integers' bounds, as 18-digit fractions
    "9.223372036854775807",
    "0.100000000000000000",
    "3.14",
]


@pytest.mark.parametrize("chunks", [1, 3])
def test_small_amounts_are_the_decimals_of_the_plain_reads_text(chunks: int) -> None:
    """Amounts under ~9.22 in size are made from their integers, not DuckDB's text: each is the very ``Decimal`` (its
    digits and exponent, not only its value) that the plain read's text makes, and rows share it; one amount that
    needs more than 64 bits, or a NULL, leaves them all to DuckDB's text."""
    pa = pytest.importorskip("pyarrow")
    import decimal
    import random

    from llmcost._rows import read_expression
    from llmcost.stores import _sql

    rng = random.Random(7)
    more = [f"{rng.choice('-+')}{rng.randrange(10 ** rng.randrange(1, 19))}E-{rng.randrange(19)}" for _ in range(500)]
    amounts = [Decimal(a) for a in _SMALL_AMOUNTS + more if abs(Decimal(a)) < Decimal("9.223372036854775807")]
    amounts += amounts[:50]  # repeated values share a code
    con = duckdb.connect()
    texts = [
        row[0]
        for row in con.execute(
            f"SELECT {read_expression('amount')} FROM (SELECT unnest(CAST(? AS DECIMAL(38, 18)[])) AS amount)",
            [amounts],
        ).fetchall()
    ]
    column = pa.array(amounts, type=pa.decimal128(38, 18))
    step = -(-len(column) // chunks)
    chunked = pa.chunked_array([column.slice(i, step) for i in range(0, len(column), step)])
    with decimal.localcontext() as context:
        context.prec = 3  # the caller's context rounds nothing of them
        small = _sql._small_amounts(chunked)
    assert small is not None
    codes, exact = small
    got = [exact[c] for c in codes]
    assert [(d.as_tuple(), repr(d)) for d in got] == [(Decimal(t).as_tuple(), repr(Decimal(t))) for t in texts]
    assert len(exact) == len(set(amounts))
    assert (
        _sql._small_amounts(pa.chunked_array([pa.array([Decimal("9.223372036854775808")], pa.decimal128(38, 18))]))
        is None
    )
    assert _sql._small_amounts(pa.chunked_array([pa.array([Decimal(-100), Decimal(1)], pa.decimal128(38, 18))])) is None
    assert _sql._small_amounts(pa.chunked_array([pa.array([Decimal(1), None], pa.decimal128(38, 18))])) is None


@pytest.mark.parametrize(
    "groups",
    [
        [["0.5", "1E-18"], ["-9.223372036854775808", "0.5"]],  # every amount small: only their integers kept
        [["0.5", "7.10"], ["12345678901234567890.123456789012345678", "0.5"], ["1"]],  # a large one in a later group
        [["100"], [None, "0.5"], ["3.14"]],  # a NULL in a later group
        [["9.223372036854775808"], ["0.5"]],  # large from the first group on
    ],
)
def test_amounts_kept_a_group_at_a_time_are_the_amounts_of_the_whole_column(groups: list[list[str | None]]) -> None:
    """A one-scan read keeps the amounts of each group as their 64-bit integers while they fit, and Arrow copies from
    the first group that does not on (the earlier groups' made again from their integers): either way, the amounts
    are those ``_amounts`` finds in the whole column at once, to their digits."""
    pa = pytest.importorskip("pyarrow")
    from llmcost.stores import _sql

    con = duckdb.connect()
    kind = pa.decimal128(38, 18)
    columns = [
        pa.chunked_array([pa.array([None if a is None else Decimal(a) for a in group[i : i + 1]], kind)
                          for i in range(len(group))])
        for group in groups
    ]  # fmt: skip
    kept = _sql._Amounts(1)  # (made for fewer rows than come: the integers' array grows)
    for column in columns:
        kept.add(column)
    got = kept.coded(con, None)
    whole = _sql._amounts(con, pa.chunked_array([c for column in columns for c in column.chunks]), None)

    def exact(coded: Any) -> list[str | None]:  # (a NULL's code is one past the distinct amounts)
        return [repr(Decimal(coded.values[c])) if c < len(coded.values) else None for c in coded.codes]

    assert exact(got) == exact(whole)
    assert len(got.codes) == sum(len(group) for group in groups)


@pytest.mark.parametrize("value", ["", "USD", "catalog@1", "ünïcode ✓"])
def test_a_repeated_text_made_from_its_buffers_is_arrows_repeat(value: str) -> None:
    """A column the statistics show to hold one text is made from its buffers (zero offsets for an empty text): the
    very array Arrow's ``repeat`` makes."""
    pa = pytest.importorskip("pyarrow")
    from llmcost.stores import _sql

    for rows in (0, 1, 5):
        got = _sql._repeated_text(value, rows)
        want = pa.chunked_array([pa.repeat(pa.scalar(value, pa.large_string()), rows)])
        got.validate(full=True)
        assert got.equals(want)
