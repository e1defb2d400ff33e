"""PostgresStore against a real PostgreSQL server: many writers, the reservation ledger under concurrency, a killed
writer and a restarted server, a server that is down. Skipped, saying why, when no server is configured."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from llmcost import CostTracker, StoreError
from llmcost._rows import SQL_TYPES
from llmcost.stores import BudgetScope, MemoryStore, PostgresStore, open_store
from llmcost.stores._ledger import Standing

from . import postgres_server
from .conftest import CHILD_PREAMBLE, Children, make_entry

PERIOD = datetime(2024, 5, 1, tzinfo=timezone.utc)


@pytest.fixture
def dsn(postgres_database: str) -> str:
    """A fresh schema of its own in the session's database."""
    return postgres_server.fresh_schema(postgres_database)


@pytest.fixture
def store(dsn: str, tmp_path: Path) -> Iterator[PostgresStore]:
    s = PostgresStore(dsn, spill_dir=str(tmp_path / "spill"))
    yield s
    s.close()


def _psql(dsn: str, sql: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        cur = con.execute(sql, params)
        return cur.fetchall() if cur.description else []


_SERVER_SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "postgres.sh"


@pytest.fixture
def own_server() -> Iterator[tuple[str, str]]:
    """``(dsn, pg_ctl)`` of a PostgreSQL server of the test's own (``.ci/postgres.sh``), to stop and restart: the run's
    shared server serves the other worker's tests meanwhile (restarting it refused their connections). Skipped when
    the run's server is not the run's own (no ``pg_ctl`` given): then this machine's servers are not ours to start."""
    if not os.environ.get(postgres_server.CTL_VARIABLE):
        pytest.skip(f"{postgres_server.CTL_VARIABLE} is not set: the server is not this test run's to restart")
    started = subprocess.run(["bash", str(_SERVER_SCRIPT), "start"], capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr
    exported = dict(
        shlex.split(line)[1].split("=", 1) for line in started.stdout.splitlines() if line.startswith("export ")
    )
    try:
        yield exported["LLMCOST_TEST_POSTGRES_DSN"], exported["LLMCOST_TEST_POSTGRES_CTL"]
    finally:
        stop = ["bash", str(_SERVER_SCRIPT), "stop", exported["LLMCOST_TEST_POSTGRES_DIR"]]
        subprocess.run(stop, capture_output=True, timeout=120)


#: ``roles(label, password)``: the name of a new login role (see the ``roles`` fixture).
RoleFactory = Callable[[str, str], str]


@pytest.fixture
def roles(postgres_database: str) -> Iterator[RoleFactory]:
    """Makes login roles with unique names on the tests' server (roles belong to the whole server); drops them, and
    what they own or were granted in the session's database, after. Skipped when the tests' role may not create
    roles (a server that is not this test run's own)."""
    (allowed,) = _psql(
        postgres_database, "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
    )[0]
    if not allowed:
        pytest.skip("the tests' PostgreSQL role may not create roles")
    made: list[str] = []

    def make(label: str, password: str) -> str:
        name = f"llmcost_{label}_{uuid.uuid4().hex[:8]}"
        _psql(postgres_database, f'CREATE ROLE "{name}" LOGIN PASSWORD {_literal(password)}')
        made.append(name)
        return name

    yield make
    if made:
        names = ", ".join(f'"{n}"' for n in made)
        _psql(postgres_database, f"DROP OWNED BY {names} CASCADE")
        _psql(postgres_database, f"DROP ROLE {names}")


def _literal(text: str) -> str:
    """``text`` as a SQL string literal (utility statements such as ``CREATE ROLE`` take no parameters)."""
    return "'" + text.replace("'", "''") + "'"


def _role_url(database_dsn: str, role: str, password: str, schema: str | None = None) -> str:
    """A ``postgresql://`` URL for ``role`` on the session's database, ``password`` written into it unencoded (as
    libpq accepts it), the tables looked for in ``schema``."""
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(database_dsn)
    url = f"postgresql://{role}:{password}@{info['host']}:{info['port']}/{info['dbname']}"
    return url + (f"?options=-csearch_path%3D{schema}" if schema else "")


def _ctl(ctl: str, *args: str) -> None:
    """Run ``pg_ctl`` of a test's own server (``own_server``)."""
    subprocess.run([*shlex.split(ctl), *args], check=True, capture_output=True, timeout=120)


# -- opening ------------------------------------------------------------------------------------------------------
def test_open_store_urls(postgres_database: str, tmp_path: Path) -> None:
    url = postgres_server.server_dsn()
    for scheme in ("postgresql", "postgres"):
        opened = open_store(scheme + url[url.index("://") :])
        assert isinstance(opened, PostgresStore)
        password = str(opened.dsn).split(":")[2].split("@")[0]
        assert password not in repr(opened) and password not in opened.url
        assert opened.url.startswith(scheme + "://")
        opened.close()


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://app:abc#TOPSECRET@db:5432/costs", "postgresql://app@db:5432/costs"),
        ("postgresql://app:abc?TOPSECRET@db/costs?sslmode=require", "postgresql://app@db/costs?sslmode=require"),
        ("postgres://app:a#b?TOPSECRET@db/costs?password=TOPSECRET", "postgres://app@db/costs"),
        ("postgresql://app:TOPSECRET@h1:5432,h2:5433/costs", "postgresql://app@h1:5432,h2:5433/costs"),
        (
            "postgresql://app:TOPSECRET@[::1]:5432/costs?options=-csearch_path%3Dllmcost",
            "postgresql://app@[::1]:5432/costs?options=-csearch_path%3Dllmcost",
        ),
        ("postgresql://app:TOPSECRET@[db/costs", "postgresql://<url not shown>"),
    ],
)
def test_a_shown_url_holds_no_part_of_the_password(dsn: str, shown: str) -> None:
    pytest.importorskip("psycopg")
    from llmcost.cli._store import shown_url
    from llmcost.stores._postgres import redacted_url

    # libpq takes "#" and "?" in a URL's password as they are: urllib ended the address there and showed "abc".
    assert redacted_url(dsn) == shown_url(dsn) == shown


def test_a_password_with_hash_and_question_mark_is_never_shown(
    postgres_database: str, roles: RoleFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmcost.cli import main

    password = "pwq#TOP?SECRET"  # (no hex digits before "#": the role's name ends in random hex)
    role = roles("hash", password)
    _psql(postgres_database, f'CREATE SCHEMA "{role}" AUTHORIZATION "{role}"')
    url = _role_url(postgres_database, role, password, schema=role)
    store = PostgresStore(url)  # libpq reads the password whole: the connection is made
    assert store.total() == Decimal(0)
    for shown in (store.url, repr(store), store.where):
        assert "pwq" not in shown and "SECRET" not in shown and role in shown
    assert store.url.startswith(f"postgresql://{role}@")
    store.close()
    main(["report", "--store", url])
    captured = capsys.readouterr()
    assert (
        "pwq" not in captured.out + captured.err
        and "SECRET" not in captured.out + captured.err
        and role in captured.out + captured.err
    )


_DOCS = Path(__file__).resolve().parents[2] / "docs" / "postgres.md"


def _documented_role_setup(names: dict[str, str]) -> tuple[list[str], list[str]]:
    """The SQL of docs/postgres.md "Roles and permissions", as written there: the statements an administrator runs
    before the owner's first open, and the grants after it; with the roles and the schema renamed by ``names``
    (``llmcost_owner``, ``llmcost_app``, ``llmcost_ro``, ``llmcost``), since roles belong to the whole server."""
    import re

    section = _DOCS.read_text().split("## Roles and permissions", 1)[1]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    before, after = re.split(r"^-- open the store once as llmcost_owner.*$", block, flags=re.MULTILINE)

    def statements(text: str) -> list[str]:
        text = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
        for role in ("llmcost_owner", "llmcost_app", "llmcost_ro"):
            text = re.sub(rf"\b{role}\b", f'"{names[role]}"', text)
        text = re.sub(r"\bSCHEMA llmcost\b", f'SCHEMA "{names["llmcost"]}"', text)
        text = re.sub(r"\bllmcost\.", f'"{names["llmcost"]}".', text)
        return [" ".join(s.split()) for s in text.split(";") if s.strip()]

    return statements(before), statements(after)


def test_the_documented_app_and_read_only_roles_open_and_use_the_store(
    postgres_database: str, roles: RoleFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmcost.cli import main

    # Only the documented grants: the owner's open creates the tables, the others' opens may run no DDL at all.
    names = {
        role: roles(role.removeprefix("llmcost_"), "pw") for role in ("llmcost_owner", "llmcost_app", "llmcost_ro")
    }
    names["llmcost"] = f"s_roles_{uuid.uuid4().hex[:8]}"
    before, after = _documented_role_setup(names)
    assert sum(s.startswith("CREATE ROLE") for s in before) == 3 and any(s.startswith("GRANT SELECT ON") for s in after)
    for statement in before:
        if not statement.startswith("CREATE ROLE"):  # made by the fixture, with a password to log in with
            _psql(postgres_database, statement)
    url = {
        role: _role_url(postgres_database, names[role], "pw", schema=names["llmcost"])
        for role in names
        if role != "llmcost"
    }
    PostgresStore(url["llmcost_owner"]).close()
    for statement in after:
        _psql(postgres_database, statement)

    app = PostgresStore(url["llmcost_app"], spill_dir=str(tmp_path / "spill"), retry_timeout=1)
    tracker = CostTracker(app)
    tracker.record(amount="0.5", category="compute", tags={"team": "search"})
    tracker.flush()
    app.append([make_entry(1)])
    app.save_budget("daily", "{}")
    daily = BudgetScope("daily", since=PERIOD, until=PERIOD + timedelta(days=1))
    held = app.reserve(daily, Decimal("0.25"), limit=Decimal(1))
    assert held.granted
    app.settle(daily, Decimal("0.2"), reservation=held, entry_id="settled-1")
    assert app.total() == Decimal("0.5") + make_entry(1).amount
    assert app.spill.pending() == []  # written, not spilled

    reader = PostgresStore(url["llmcost_ro"], spill_dir=str(tmp_path / "spill-ro"), retry_timeout=1)
    assert reader.total() == app.total()
    assert reader.entries(tags={"team": "search"})[0].amount == Decimal("0.5")
    assert reader.summary().calls == 2
    assert len(reader.query("SELECT * FROM entries")) == 2
    assert reader.load_budgets() == {"daily": "{}"}
    assert reader.standing(daily).spent == Decimal("0.2") + make_entry(1).amount  # the entry is in the period
    with pytest.raises(StoreError, match="permission denied"):  # reads only, as documented
        reader.save_budget("daily", "{}")
    assert main(["report", "--store", url["llmcost_ro"]]) == 0, capsys.readouterr().err
    assert "compute" in capsys.readouterr().out
    app.close()
    reader.close()
    tracker.close()


def test_a_table_missing_at_the_current_version_is_made_again(store: PostgresStore, dsn: str) -> None:
    # An open at the current version reads instead of creating; it still checks every table and index is there.
    store.close()
    _psql(dsn, "DROP TABLE llmcost_ledger_holds")
    _psql(dsn, "DROP INDEX llmcost_entries_timestamp")
    with PostgresStore(dsn) as again:
        assert again.reserve(BudgetScope("b", since=PERIOD), Decimal(1), limit=Decimal(2)).granted
    assert _psql(dsn, "SELECT to_regclass('llmcost_entries_timestamp') IS NOT NULL") == [(True,)]


def test_four_first_opens_at_once_create_the_tables_once(dsn: str, children: Children) -> None:
    # Each finds no tables (or not all yet) without a lock, then creates them under the advisory lock: one wins.
    code = CHILD_PREAMBLE + (
        "from llmcost.stores import PostgresStore\n"
        "sys.stdin.readline()\n"
        "store = PostgresStore(sys.argv[1], retry_timeout=30)\n"
        "store.append([entry(int(sys.argv[2]), 0)])\n"
        "store.close()\n"
    )
    procs = [children.spawn(code, dsn, str(n)) for n in range(4)]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert _psql(dsn, "SELECT count(*) FROM llmcost_entries") == [(4,)]
    assert _psql(dsn, "SELECT count(*) FROM llmcost_meta") == [(1,)]


def test_import_llmcost_does_not_import_the_driver() -> None:
    code = "import sys, llmcost, llmcost.stores; print('psycopg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_table_types_follow_the_row_format(store: PostgresStore, dsn: str) -> None:
    got = dict(
        _psql(
            dsn,
            "SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns c "
            "JOIN pg_attribute a ON a.attrelid = 'llmcost_entries'::regclass AND a.attname = c.column_name "
            "WHERE c.table_name = 'llmcost_entries' AND c.table_schema = current_schema()",
        )
    )
    want = {
        "VARCHAR": "text",
        "TIMESTAMPTZ": "timestamp with time zone",
        "DECIMAL(38, 18)": "numeric(38,18)",
        "BIGINT": "bigint",
        "DOUBLE": "double precision",
        "MAP(VARCHAR, VARCHAR)": "jsonb",
        "MAP(VARCHAR, BIGINT)": "jsonb",
    }
    assert got == {c: want[t] for c, t in SQL_TYPES.items()}


def test_a_retried_batch_never_duplicates(store: PostgresStore) -> None:
    batch = [make_entry(i) for i in range(300)]
    store.append(batch)
    store.append(batch[100:])  # a retry after a lost acknowledgement, overlapping
    store.append(batch)
    assert store.entries() == batch


def test_schema_version_is_recorded_and_a_newer_one_refused(store: PostgresStore, dsn: str) -> None:
    from llmcost._rows import SCHEMA_VERSION

    assert _psql(dsn, "SELECT value FROM llmcost_meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    _psql(dsn, "UPDATE llmcost_meta SET value = %s WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    with pytest.raises(StoreError, match="schema version"):
        PostgresStore(dsn)


def test_an_older_table_gets_the_missing_columns(store: PostgresStore, dsn: str) -> None:
    store.append([make_entry(1)])
    store.close()
    _psql(dsn, "ALTER TABLE llmcost_entries DROP COLUMN reasoning_tokens")
    _psql(dsn, "UPDATE llmcost_meta SET value = '0' WHERE key = 'schema_version'")
    again = PostgresStore(dsn)
    assert again.entries()[0].usage.reasoning_tokens == 0  # the new column, NULL for old rows, reads as 0
    again.append([make_entry(2)])
    assert again.entries()[1] == make_entry(2)
    again.close()


def test_a_bad_password_is_not_retried_and_says_where(dsn: str) -> None:
    bad = postgres_server.with_options(dsn, password="wrong")
    t0 = time.monotonic()
    with pytest.raises(StoreError, match="PostgreSQL") as info:
        PostgresStore(bad, retry_timeout=30)
    assert time.monotonic() - t0 < 10
    assert "wrong" not in str(info.value)


def test_analytics_on_postgres_equal_memory(store: PostgresStore) -> None:
    from llmcost import analytics

    batch = [make_entry(i) for i in range(400)]
    store.append(batch)
    memory = MemoryStore()
    memory.append(batch)
    for got, want in [
        (analytics.by_category(store), analytics.by_category(memory)),
        (analytics.by_model(store), analytics.by_model(memory)),
        (analytics.spend(store, by=("tag:team",), freq="D"), analytics.spend(memory, by=("tag:team",), freq="D")),
        (analytics.over_time(store, freq="D"), analytics.over_time(memory, freq="D")),
    ]:
        assert got.equals(want)


# -- many writers ---------------------------------------------------------------------------------------------------
WRITER = (
    CHILD_PREAMBLE
    + """
from llmcost.stores import PostgresStore
dsn, n, batches, size, spill = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
store = PostgresStore(dsn, spill_dir=spill, retry_timeout=60)
print("ready", flush=True)
sys.stdin.readline()
b = 0
while batches < 0 or b < batches:
    store.append([entry(n, b * size + k) for k in range(size)])
    print("acked", b, flush=True)
    b += 1
store.close()
"""
)


@pytest.mark.slow
def test_eight_writers_lose_and_duplicate_nothing(dsn: str, tmp_path: Path, children: Children) -> None:
    writers, batches, size = 8, 10, 500  # 5,000 entries each
    PostgresStore(dsn).close()  # tables made once, before the race
    procs = [children.spawn(WRITER, dsn, str(n), str(batches), str(size), str(tmp_path / "spill")) for n in range(8)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert out.split().count("acked") == batches
    total, distinct = _psql(dsn, "SELECT count(*), count(DISTINCT id) FROM llmcost_entries")[0]
    assert (total, distinct) == (writers * batches * size, writers * batches * size)
    want = {f"w{n:02d}-{k:08d}" for n in range(writers) for k in range(batches * size)}
    assert {r[0] for r in _psql(dsn, "SELECT id FROM llmcost_entries")} == want
    assert not os.path.isdir(tmp_path / "spill") or not os.listdir(tmp_path / "spill")


# -- the budget ledger (more in test_ledger.py, which runs every store) --------------------------------------------
def scope(budget: str = "daily", **filters: object) -> BudgetScope:
    return BudgetScope(budget, since=PERIOD, until=PERIOD + timedelta(days=1), **filters)  # type: ignore[arg-type]


def test_reserve_settle_release(store: PostgresStore) -> None:
    limit, daily = Decimal("1.00"), scope()
    a = store.reserve(daily, Decimal("0.60"), limit=limit)
    assert a.granted and a.id is not None
    assert not store.reserve(daily, Decimal("0.50"), limit=limit).granted  # 0.60 held
    assert store.reserve(scope("other"), Decimal("0.50"), limit=limit).granted  # another budget: its own room
    b = store.reserve(daily, Decimal("0.40"), limit=limit)
    assert b.granted
    assert store.standing(daily) == Standing(Decimal(0), limit)
    entry = make_entry(1, timestamp=PERIOD, amount=Decimal("0.25"))
    assert store.settle(daily, entry.amount, reservation=a, entry_id=entry.id) == Standing(Decimal("0.25"), b.amount)
    store.release(b)
    store.release(b)  # a no-op the second time
    assert store.standing(daily) == Standing(Decimal("0.25"), Decimal(0))
    store.append([entry])  # written: counted once, now as recorded spend (before and after the acknowledgement)
    assert store.standing(daily).spent == Decimal("0.25")
    store.acknowledge([entry])
    assert store.standing(daily).spent == Decimal("0.25")
    assert _psql(store.dsn, "SELECT count(*) FROM llmcost_ledger_holds WHERE entry IS NOT NULL") == [(0,)]
    assert store.reserve(daily, Decimal("0.75"), limit=limit).granted  # exactly to the limit
    assert not store.reserve(daily, Decimal("0.000000000000000001"), limit=limit).granted


def test_recorded_spend_counts_with_the_scopes_filters(store: PostgresStore) -> None:
    store.append(
        [
            make_entry(1, timestamp=PERIOD, amount=Decimal("0.5"), resource="bot", tags={"team": "x", "k": "v"}),
            make_entry(2, timestamp=PERIOD, amount=Decimal("0.25"), resource="bot", tags={"team": "y"}),
            make_entry(3, timestamp=PERIOD - timedelta(seconds=1), amount=Decimal("7"), resource="bot"),
        ]
    )
    assert store.standing(scope(resource="bot")).spent == Decimal("0.75")
    assert store.standing(scope(resource="bot", tags={"team": "x"})).spent == Decimal("0.5")
    assert store.standing(scope(resource="bot", tags={"team": "it's'; --"})).spent == 0
    assert not store.reserve(scope(resource="bot"), Decimal("0.3"), limit=Decimal(1)).granted


def test_a_dead_holders_reservation_lapses_and_a_live_ones_does_not(dsn: str) -> None:
    live, dead = PostgresStore(dsn, lease=0.6), PostgresStore(dsn, lease=0.6)
    hourly = scope("hourly")
    assert live.reserve(hourly, Decimal("0.5"), limit=Decimal(1)).granted
    assert dead.reserve(hourly, Decimal("0.5"), limit=Decimal(1)).granted
    dead.close_ledger()  # its heartbeat stops, as a killed process's would
    time.sleep(1.0)
    assert live.standing(hourly).reserved == Decimal("0.5")  # renewed by its heartbeat; the other one lapsed
    assert live.reserve(hourly, Decimal("0.5"), limit=Decimal(1)).granted
    live.close()
    dead.close()


def test_lease_is_checked(dsn: str) -> None:
    with pytest.raises(ValueError, match="lease"):
        PostgresStore(dsn, lease=0)


@pytest.mark.parametrize(
    ("argument", "value", "error", "words"),
    [
        # An infinite lease was taken, and then every reservation failed "interval out of range": budgets offline.
        ("lease", float("inf"), ValueError, "lease must be a finite, positive number of seconds, got inf"),
        ("lease", float("nan"), ValueError, "lease must be a finite, positive number of seconds, got nan"),
        ("retry_timeout", float("nan"), ValueError, "retry_timeout must be a finite, non-negative number"),
        ("retry_timeout", float("inf"), ValueError, "retry_timeout must be a finite, non-negative number"),
        ("connect_timeout", "5", ValueError, "connect_timeout must be a finite, positive number of seconds, got '5'"),
        ("connect_timeout", float("nan"), ValueError, "connect_timeout must be a finite, positive number"),
        ("connect_timeout", -3, ValueError, "connect_timeout must be a finite, positive number of seconds, got -3"),
        ("spill_dir", 5, TypeError, "spill_dir must be a str, os.PathLike or None, got 5"),
    ],
)
def test_bad_arguments_raise_at_construction_naming_the_argument(
    dsn: str, argument: str, value: object, error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as raised:
        PostgresStore(dsn, **{argument: value})  # type: ignore[arg-type]
    assert words in str(raised.value)


SPENDER = (
    CHILD_PREAMBLE
    + """
import random
from llmcost.stores import BudgetScope, PostgresStore
dsn, n, limit = sys.argv[1], int(sys.argv[2]), Decimal(sys.argv[3])
scope = BudgetScope("monthly", since=datetime(2024, 5, 1, tzinfo=timezone.utc))
store = PostgresStore(dsn, retry_timeout=60)
rng = random.Random(n)
print("ready", flush=True)
sys.stdin.readline()
granted = refused = k = 0
later = []
while refused < 20:
    estimate = Decimal(rng.randint(1, 9)) / 100  # exact: the call costs what was estimated
    r = store.reserve(scope, estimate, limit=limit)
    if not r.granted:
        refused += 1
        continue
    e = entry(n, k)
    e = CostEntry(id=e.id, timestamp=e.timestamp, amount=estimate, resource=e.resource, tags=e.tags)
    store.settle(scope, estimate, reservation=r, entry_id=e.id)
    if k % 2:  # half written at once, half left settled (in a tracker's buffer) until the end
        store.append([e])
        store.acknowledge([e])
    else:
        later.append(e)
    granted += 1
    k += 1
store.append(later)
print("granted", granted, flush=True)
"""
)


@pytest.mark.slow
def test_eight_processes_never_pass_the_limit(dsn: str, children: Children) -> None:
    limit = Decimal("3.00")
    PostgresStore(dsn).close()
    procs = [children.spawn(SPENDER, dsn, str(n), str(limit)) for n in range(8)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    granted = 0
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        granted += int(out.split()[-1])
    store = PostgresStore(dsn)
    recorded = store.total()
    assert recorded <= limit
    assert recorded > limit - Decimal("0.01") * 9  # every process saw the room run out, not a false refusal
    # Every reservation settled, every settled amount counted once (whether acknowledged or not).
    assert store.standing(BudgetScope("monthly", since=PERIOD)) == Standing(recorded, Decimal(0))
    assert len(store.entries()) == granted
    store.close()


# -- durability -----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_kill_9_and_a_server_restart_lose_nothing_acknowledged(
    own_server: tuple[str, str], tmp_path: Path, children: Children
) -> None:
    dsn, ctl = own_server
    spill = str(tmp_path / "spill")
    PostgresStore(dsn).close()
    proc = children.spawn(WRITER, dsn, "3", "-1", "200", spill)
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.stdin.write("go\n")
    proc.stdin.flush()
    acked = []
    for _ in range(5):
        acked.append(int(proc.stdout.readline().split()[1]))
    _ctl(ctl, "restart", "-m", "fast", "-w", "-t", "60")  # the server goes away under the writer and comes back
    for _ in range(5):
        acked.append(int(proc.stdout.readline().split()[1]))
    proc.kill()
    proc.wait()
    # Whatever the writer spilled while the server restarted is replayed by the next store that opens.
    store = PostgresStore(dsn, spill_dir=spill)
    ids = {e.id for e in store.entries(resource="writer-3")}
    want = {f"w03-{b * 200 + k:08d}" for b in acked for k in range(200)}
    assert want <= ids
    total, distinct = _psql(dsn, "SELECT count(*), count(DISTINCT id) FROM llmcost_entries")[0]
    assert total == distinct
    store.close()


@pytest.mark.slow
def test_server_down_spills_and_replays_exactly_once(own_server: tuple[str, str], tmp_path: Path) -> None:
    dsn, ctl = own_server
    spill = str(tmp_path / "spill")
    store = PostgresStore(dsn, spill_dir=spill, retry_timeout=2)
    store.append([make_entry(0)])
    tracker = CostTracker(store)
    _ctl(ctl, "stop", "-m", "fast", "-w", "-t", "60")
    try:
        batch = [make_entry(i) for i in range(1, 101)]
        store.append(batch)  # does not raise: spilled, after retrying for retry_timeout
        tracker.record(amount=Decimal("0.5"), description="while the server was down")
        t0 = time.monotonic()
        tracker.flush()  # the tracked call is not broken either, and the store no longer waits to spill
        assert time.monotonic() - t0 < 1.5
        pending = os.listdir(spill)
        assert len(pending) == 2
        down = PostgresStore(dsn, spill_dir=spill, retry_timeout=0.2)  # opening while down works too
        down.append([make_entry(101)])
        down.close()
    finally:
        _ctl(ctl, "start", "-w", "-t", "60")
    again = PostgresStore(dsn, spill_dir=spill)
    assert [e.id for e in again.entries()][:102] == [make_entry(i).id for i in range(102)]
    assert len(again.entries()) == 103
    assert os.listdir(spill) == []
    store.append([make_entry(0)])  # the old store object reconnects; a repeat adds nothing
    store.close()
    again.close()
    tracker.close()
    third = PostgresStore(dsn, spill_dir=spill)
    assert len(third.entries()) == 103
    third.close()


_WHERE = 'connection to server at "127.0.0.1", port 5432 failed: '


@pytest.mark.parametrize(
    ("message", "passing"),
    [
        # A server that crashed or restarted under an open connection, in the clear and over TLS (libpq's words).
        ("consuming input failed: SSL error: unexpected eof while reading", True),
        ("consuming input failed: SSL SYSCALL error: EOF detected", True),
        ("SSL SYSCALL error: Connection reset by peer", True),
        ("SSL connection has been closed unexpectedly", True),
        (
            "consuming input failed: server closed the connection unexpectedly\n\tThis probably means the server "
            "terminated abnormally\n\tbefore or while processing the request.",
            True,
        ),
        (_WHERE + "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?", True),
        (_WHERE + "FATAL:  the database system is starting up", True),
        # Configuration: retrying cannot help, whatever the transport.
        (_WHERE + "SSL error: certificate verify failed", False),
        (
            _WHERE + 'root certificate file "/root/.postgresql/root.crt" does not exist\nEither provide the file, '
            "use the system's trusted roots with sslrootcert=system, or change sslmode to disable server "
            "certificate verification.",
            False,
        ),
        (_WHERE + 'could not read certificate file "/etc/client.crt": no start line', False),
        ('connection is bad: invalid sslmode value: "bogus"', False),
        (_WHERE + "server does not support SSL, but SSL was required", False),
        (_WHERE + "SSL error: tlsv1 alert unknown ca", False),
        (_WHERE + "SSL error: wrong version number", False),
        (_WHERE + 'FATAL:  password authentication failed for user "app"', False),
        # libpq joins the messages of each try (sslmode=prefer: TLS, then in the clear): a refusal anywhere wins.
        (_WHERE + "SSL SYSCALL error: EOF detected\n" + _WHERE + "FATAL:  no pg_hba.conf entry for host", False),
    ],
)
def test_lost_connections_pass_whatever_the_transport_and_configuration_errors_do_not(
    message: str, passing: bool
) -> None:
    psycopg = pytest.importorskip("psycopg")
    from llmcost.stores._postgres import _transient

    assert _transient(psycopg.OperationalError(message)) is passing


@pytest.fixture
def ssl_server(own_server: tuple[str, str]) -> tuple[str, str]:
    """``own_server`` with TLS on (a self-signed certificate): ``(dsn, pg_ctl)``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make the server a certificate")
    dsn, ctl = own_server
    argv = shlex.split(ctl)
    data = Path(argv[argv.index("-D") + 1])
    key, crt = data / "server.key", data / "server.crt"
    subj = ["-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(crt)]
    subprocess.run([openssl, "req", "-new", "-x509", "-days", "2", "-nodes", *subj], check=True, capture_output=True)
    owner = data.stat()
    for path in (key, crt):
        os.chown(path, owner.st_uid, owner.st_gid)  # the server's user (postgres when the tests run as root)
    key.chmod(0o600)
    with open(data / "postgresql.conf", "a") as conf:
        conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    _ctl(ctl, "restart", "-m", "fast", "-w", "-t", "60")
    return dsn, ctl


@pytest.mark.slow
def test_a_server_crash_over_tls_is_retried_not_raised(ssl_server: tuple[str, str], tmp_path: Path) -> None:
    dsn, _ = ssl_server
    spill = tmp_path / "spill"
    store = PostgresStore(postgres_server.with_options(dsn, sslmode="require"), spill_dir=str(spill), retry_timeout=10)
    store.append([make_entry(0)])
    assert store._con.pgconn.ssl_in_use
    os.kill(store._con.info.backend_pid, signal.SIGKILL)  # as the OOM killer would: the server restarts
    store.append([make_entry(1)])  # "SSL error: unexpected eof while reading", then a new connection
    assert [e.id for e in store.entries()] == [make_entry(i).id for i in range(2)]
    assert not spill.exists() or os.listdir(spill) == []
    store.close()


@pytest.mark.parametrize(
    ("sql", "want"),
    [
        ("SELECT model, count(*) AS n FROM entries GROUP BY model", ("model",)),
        ("SELECT count(*) FROM entries", ("category",)),  # one narrow column still carries the row count
        (
            "WITH _e AS (SELECT * FROM entries WHERE timestamp >= ?) SELECT tags[?] AS k, sum(amount) FROM _e "
            "GROUP BY ALL ORDER BY k",
            ("timestamp", "amount", "tags"),
        ),
        ("SELECT * FROM entries", None),
        ("WITH _e AS (SELECT * FROM entries) SELECT * FROM _e", None),
        ("SELECT * EXCLUDE (id) FROM entries", None),
        ("SELECT e FROM entries e", None),  # a whole row
        ("SELECT to_json(entries) FROM entries", None),
        ("not sql at all", None),
    ],
)
def test_query_reads_only_the_columns_it_needs(sql: str, want: tuple[str, ...] | None) -> None:
    import duckdb

    from llmcost.stores import COLUMNS
    from llmcost.stores._postgres import needed_columns

    assert needed_columns(duckdb.connect(), sql) == (COLUMNS if want is None else want)


def test_query_on_postgres_star_and_counts(store: PostgresStore) -> None:
    batch = [make_entry(i) for i in range(50)]
    store.append(batch)
    assert store.query("SELECT count(*) AS n FROM entries").loc[0, "n"] == 50
    frame = store.query("SELECT * FROM entries ORDER BY timestamp")
    assert frame["description"].tolist() == [e.description for e in batch]  # "" stays "", not NULL
    assert frame["resource"].isna().tolist() == [e.resource is None for e in batch]  # NULL stays NULL
    assert store.query("SELECT sum(amount) AS s FROM entries").loc[0, "s"] == sum(e.amount for e in batch)


def test_entries_postgres_cannot_hold_are_set_aside_and_the_rest_written(store: PostgresStore) -> None:
    good = [make_entry(i) for i in range(5)]
    bad = [make_entry(10, description="nul\x00here"), make_entry(11, tags={"k": "v\x00"})]
    store.append([*good[:3], *bad, *good[3:]])
    assert store.entries() == good
    letters = store.dead_letters()
    assert [d["entry"]["id"] for d in letters] == [e.id for e in bad]
    assert "NUL" in letters[0]["reason"] and repr(bad[0].id) in letters[0]["error"]


def test_spill_and_dead_letters_default_to_per_user_folders_keyed_by_the_dsn(dsn: str) -> None:
    from llmcost.stores._locations import fallback_dirs
    from llmcost.stores._postgres import store_identity

    with_password = postgres_server.with_options(dsn, password="s3cret")
    identity = store_identity(with_password)
    assert "s3cret" not in identity and identity == store_identity(dsn)  # the same database, however spelled
    store = PostgresStore(dsn)
    assert store.spill.directories == fallback_dirs(identity, "spill")
    assert store.spill.directory == "" and store.spill.directories[0].startswith(os.environ["XDG_STATE_HOME"])
    store.set_aside([make_entry(1)], "test")
    (folder,) = {os.path.dirname(p) for p in store.dead.read()}
    assert folder == fallback_dirs(identity, "dead-letter")[0]
    assert Path(folder, "_store").read_text().strip() == identity
    store.close()


def test_a_spilled_entry_postgres_refuses_is_set_aside_and_the_rest_replayed(dsn: str, tmp_path: Path) -> None:
    from llmcost.stores._spill import Spill

    good = [make_entry(i) for i in range(5)]
    poison = make_entry(9, id="poison")
    object.__setattr__(poison, "amount", Decimal("1E+25"))  # beyond NUMERIC(38, 18)
    nul, nul_tag = make_entry(10, description="nul\x00"), make_entry(11, tags={"k": "v\x00"})
    Spill(str(tmp_path / "spill")).write([*good[:2], poison, nul, nul_tag, *good[2:]])
    store = PostgresStore(dsn, spill_dir=str(tmp_path / "spill"))
    assert store.entries() == good
    letters = store.dead_letters()
    (line,) = [d for d in letters if isinstance(d["entry"], str)]  # a line that cannot even be read as an entry
    assert '"id": "poison"' in line["entry"] and "10**20" in line["error"]
    assert sorted(d["entry"]["id"] for d in letters if d is not line) == sorted([nul.id, nul_tag.id])
    assert Spill(str(tmp_path / "spill")).pending() == []
    store.close()


def test_a_spill_replay_retried_sets_its_refusals_aside_once(dsn: str, tmp_path: Path) -> None:
    """Another session locks the table, so every attempt of an append (and the replay in its transaction) times out
    and is retried until retry_timeout runs out: the unreadable line and the entry PostgreSQL cannot hold are set
    aside once, not at every attempt, and not again by the replay that finally goes through."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from llmcost.stores._spill import Spill

    options = conninfo_to_dict(dsn).get("options", "")
    quick = postgres_server.with_options(dsn, options=f"{options} -clock_timeout=50")  # a lock wait fails (retried)
    spill = str(tmp_path / "spill")
    store = PostgresStore(quick, spill_dir=spill, retry_timeout=1)
    good, nul = [make_entry(i) for i in range(3)], make_entry(10, description="nul\x00")
    Spill(spill).write([*good, nul])
    Path(spill, "unreadable.jsonl").write_text('{"not": "an entry"}\n')
    with psycopg.connect(dsn) as holder:
        holder.execute("LOCK TABLE llmcost_entries IN ACCESS EXCLUSIVE MODE")
        store.append([make_entry(20)])  # retried until retry_timeout, then spilled
        assert len(store.dead_letters()) == 2
        holder.rollback()
    assert store.entries() == [*good, make_entry(20)]  # replayed now
    letters = store.dead_letters()
    assert sorted(str(d["entry"]) for d in letters if isinstance(d["entry"], str)) == ['{"not": "an entry"}']
    assert [d["entry"]["id"] for d in letters if isinstance(d["entry"], dict)] == [nul.id]
    assert Spill(spill).pending() == []
    store.close()


def test_a_value_out_of_range_refuses_the_batch_with_a_hint(store: PostgresStore) -> None:
    bad = make_entry(3)
    object.__setattr__(bad, "amount", Decimal("1E+25"))
    with pytest.raises(StoreError, match=r"cannot be stored in PostgreSQL at .*set_aside") as info:
        store.append([make_entry(1), bad])
    assert "password" not in str(info.value)
    assert store.entries() == []


def test_a_forked_child_leaves_the_parents_connection_alone(store: PostgresStore) -> None:
    store.append([make_entry(0)])
    pid = os.fork()
    if pid == 0:  # the child: its own connection, and the parent's left as it was
        try:
            store.append([make_entry(1)])
            code = 0 if len(store.entries()) == 2 else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store.append([make_entry(2)])  # the parent's connection still works
    assert [e.id for e in store.entries()] == [make_entry(i).id for i in range(3)]


def test_the_command_line_never_prints_the_password(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from urllib.parse import quote

    from psycopg.conninfo import conninfo_to_dict

    from llmcost.cli import main

    info = {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    password = info["password"]
    url = (
        f"postgresql://{quote(info['user'])}:{quote(password, safe='')}@{info['host']}:{info['port']}/"
        f"{info['dbname']}?options={quote(info['options'], safe='')}"
    )
    page = tmp_path / "report.html"
    for argv in (
        ["demo", "--days", "2", "--store", url],
        ["demo", "--days", "2", "--store", url],  # "already holds entries": an error naming the store
        ["report", "--store", url],
        ["report", "--html", str(page), "--store", url],
    ):
        main(argv)
        captured = capsys.readouterr()
        assert password not in captured.out + captured.err, argv
        assert info["dbname"][-8:] in captured.out + captured.err, argv  # the store is named, without the password
    assert password not in page.read_text()


def test_an_id_twice_in_one_batch_is_stored_once(store: PostgresStore) -> None:
    first, second = make_entry(1), make_entry(2)
    store.append([first, second, first, make_entry(3, id=second.id)])  # the first entry of each id is kept
    assert store.entries() == [first, second]


def test_ties_are_ordered_by_id_code_points_whatever_the_collation(dsn: str, tmp_path: Path) -> None:
    # ICU's root collation (and en_US, the default of many managed servers) sorts "a-1" before "B-2"; every other
    # store, and the contract's (timestamp, id) order, by code point: "B-2" first.
    if not _psql(dsn, "SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu'"):
        pytest.skip("this PostgreSQL has no ICU collations")
    store = PostgresStore(dsn, spill_dir=str(tmp_path / "spill"))
    _psql(dsn, 'ALTER TABLE llmcost_entries ALTER COLUMN id TYPE text COLLATE "und-x-icu"')
    assert _psql(dsn, "SELECT 'a-1' < 'B-2' COLLATE \"und-x-icu\"") == [(True,)]
    lower, upper = make_entry(1, id="a-1", amount=Decimal(1)), make_entry(1, id="B-2", amount=Decimal(10))
    store.append([lower, upper])
    assert [e.id for e in store.entries()] == ["B-2", "a-1"]
    assert store.total(limit=1) == Decimal(10)
    assert [e.id for e in store.entries(limit=1)] == ["B-2"]
    store.close()


def test_no_units_is_null_as_in_every_store(store: PostgresStore, dsn: str) -> None:
    plain, with_units = make_entry(0), make_entry(1)  # make_entry(1) has units, make_entry(0) none
    assert not plain.usage.units and with_units.usage.units
    store.append([plain, with_units])
    assert _psql(dsn, "SELECT id, units IS NULL FROM llmcost_entries ORDER BY id") == sorted(
        [(plain.id, True), (with_units.id, False)]
    )
    _psql(dsn, "UPDATE llmcost_entries SET units = '{}' WHERE id = %s", [plain.id])  # as earlier versions wrote it
    memory = MemoryStore()
    memory.append([plain, with_units])
    sql = "SELECT id, units IS NULL AS none, units FROM entries ORDER BY id"
    assert store.query(sql).equals(memory.query(sql))
    assert store.entries() == [plain, with_units]


def test_a_store_freed_without_close_closes_its_connection_without_a_warning(dsn: str) -> None:
    # psycopg warns (ResourceWarning) of a connection freed open, wherever the garbage collector then runs: under
    # pytest's "error" filter that failed whichever test happened to collect it.
    import gc
    import warnings

    store = PostgresStore(dsn)
    store.append([make_entry(0)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del store
        gc.collect()
    assert [w.message for w in caught if issubclass(w.category, ResourceWarning)] == []
    with PostgresStore(dsn) as again:
        assert len(again.entries()) == 1
