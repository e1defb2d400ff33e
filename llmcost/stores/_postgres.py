"""``PostgresStore``: entries, budget definitions and the reservation ledger in a PostgreSQL database that many
processes on many hosts share.

Driver: psycopg 3 (extra ``llmcost[postgres]``), imported on first use. It was measured against the ADBC PostgreSQL
driver on this project's machine (2 CPUs, PostgreSQL 15): a 100,000-entry append took 1.35 s through psycopg's COPY
against 1.95 s through ADBC's ingest (with the Arrow table already built); ADBC fetched 1M rows into DuckDB faster
(5.2 s against 6.7 s), but the groupings pushed down into PostgreSQL take 1.1 s for all three, and ADBC's DB-API
needs pyarrow, which llmcost does not otherwise require.

The table layout is derived from ``llmcost._rows.SQL_TYPES`` (``_PG_TYPES`` maps each DuckDB type to PostgreSQL's):
amounts ``NUMERIC(38, 18)``, times ``timestamptz``, tags ``jsonb``, token counts ``bigint``. Tables are created in
the first schema of the connection's ``search_path`` (``?options=-csearch_path%3Dllmcost`` in the DSN puts them in
a schema of their own).

Writes: one transaction per batch. The batch is copied (``COPY``) into a session-local staging table and moved in
with ``INSERT ... ON CONFLICT (id) DO NOTHING``, so a batch retried after a lost acknowledgement, or a spill file
replayed twice, adds nothing twice. ``append`` returns after the commit, which PostgreSQL has flushed to its WAL:
acknowledged entries survive a crash of the writer and a restart of the server.

When the server cannot be reached (or a transient error outlasts ``retry_timeout``), the batch is written to a spill
file on this host (``spill_dir``; by default under the user's state directory, one folder per database) and the
append counts as acknowledged; the next successful connection replays it, exactly once thanks to the id conflict
rule. A tracked call never breaks because the database is down.

Reads: filters, totals, summaries and the groupings of ``llmcost.analytics`` (``spend_groups``) run in PostgreSQL
(user values only as parameters). ``query(sql)`` runs DuckDB SQL, as on every store (the rest of analytics and the
reports go through it): the columns the SQL reads (``needed_columns``) are copied out of PostgreSQL (``COPY ... TO
STDOUT``) into an in-memory DuckDB. Measured on 1M entries, the three standard groupings take 0.24-0.53 s each
pushed down against 2.3-3.0 s copied out (``benchmarks/bench_postgres.py``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from .._entry import CostEntry
from .._errors import StoreError
from .._rows import COLUMNS, SQL_TYPES, TOKEN_COLUMNS, entries_from_columns, entry_row, frame_from_arrays, typed_select
from .._summary import CostSummary, ordered
from .._time import seconds_arg
from .._usage import Usage
from ._base import CostStore
from ._dead_letter import DeadLetters, warn_of
from ._durable import retry_call
from ._filters import NO_FILTERS, Filters
from ._ledger import DEFAULT_LEASE, Ledger
from ._locations import fallback_dirs
from ._migrate import BUDGETS_DDL, META_DDL, migrate_postgres
from ._postgres_ledger import LEDGER_DDL, PostgresLedger
from ._spill import Spill
from ._sql import sum_value

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PostgresStore", "copy_rows", "needed_columns", "postgres_type", "redacted_url", "store_identity"]

logger = logging.getLogger("llmcost")

T = TypeVar("T")

#: The PostgreSQL type of each DuckDB type ``_rows.SQL_TYPES`` uses.
_PG_TYPES = {
    "VARCHAR": "text",
    "TIMESTAMPTZ": "timestamptz",
    "DECIMAL(38, 18)": "NUMERIC(38, 18)",
    "BIGINT": "bigint",
    "DOUBLE": "double precision",
    "MAP(VARCHAR, VARCHAR)": "jsonb",
    "MAP(VARCHAR, BIGINT)": "jsonb",
}

TABLE = "llmcost_entries"

#: Seconds a store treats the server as down after its retries ran out (one try per operation meanwhile).
_DOWN_FOR = 30.0

#: Connections a forked child inherited from its parent: never used, never closed (see ``_connection``).
_INHERITED: list[Any] = []


def _close_dropped(con: Any, pid: int) -> None:
    """(``weakref.finalize`` of a store) close the connection of a store freed without ``close()``, in the process
    that opened it only (a forked child must not end its parent's session): freed open, psycopg warns
    (``ResourceWarning``) wherever the garbage collector happens to run."""
    if os.getpid() == pid:
        with contextlib.suppress(Exception):
            con.close()


def postgres_type(sql_type: str) -> str:
    """The PostgreSQL type for a column of DuckDB type ``sql_type`` (from ``_rows.SQL_TYPES``).

    Example::

        postgres_type("DECIMAL(38, 18)")  # 'NUMERIC(38, 18)'
    """
    try:
        return _PG_TYPES[sql_type]
    except KeyError:
        raise StoreError(
            f"no PostgreSQL type for the row type {sql_type!r}; add it to _PG_TYPES in llmcost/stores/_postgres.py"
        ) from None


def _q(name: str) -> str:
    return f'"{name}"'


def _ddl() -> tuple[str, ...]:
    columns = ", ".join(
        f"{_q(c)} {postgres_type(t)}{' NOT NULL' if c in ('id', 'timestamp', 'amount') else ''}"
        for c, t in SQL_TYPES.items()
    )
    return (
        f"CREATE TABLE IF NOT EXISTS {TABLE} ({columns}, PRIMARY KEY (id))",
        f'CREATE INDEX IF NOT EXISTS {TABLE}_timestamp ON {TABLE} ("timestamp")',
        # The DuckDB stores' metadata and budget tables, in PostgreSQL's dialect (VARCHAR and PRIMARY KEY are
        # both standard), and the reservation ledger's.
        META_DDL,
        BUDGETS_DDL,
        *LEDGER_DDL,
    )


_CREATED = re.compile(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)")


def _relations(ddl: Sequence[str]) -> tuple[str, ...]:
    """The tables and indexes ``ddl`` creates, by name: an open that finds them all at the current schema version
    runs no DDL (``migrate_postgres``)."""
    names = []
    for statement in ddl:
        found = _CREATED.match(statement)
        if found is None:  # a new kind of statement: name what it creates here, or opens would never see it
            raise StoreError(f"cannot tell what this DDL statement creates: {statement!r}")
        names.append(found.group(1).lower())
    return tuple(names)


def _add_columns() -> tuple[str, ...]:
    return tuple(
        f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS {_q(c)} {postgres_type(t)}" for c, t in SQL_TYPES.items()
    )


_INSERT_COLUMNS = ", ".join(map(_q, COLUMNS))
_STAGE = "llmcost_stage"


def _read_columns() -> str:
    """What reads select, in the encodings ``_rows.entries_from_columns`` and ``frame_from_arrays`` take: epoch
    microseconds, exact amount text without trailing zeros, tags as JSON text, 0 for missing token counts."""
    exprs = []
    for c, t in SQL_TYPES.items():
        if c == "timestamp":
            expr = '(extract(epoch FROM "timestamp") * 1000000)::bigint'
        elif t.startswith("DECIMAL"):
            expr = f"trim_scale({_q(c)})::text"
        elif t.startswith("MAP"):
            expr = f"coalesce({_q(c)}, '{{}}'::jsonb)::text"
        elif c in TOKEN_COLUMNS:
            expr = f"coalesce({_q(c)}, 0)"
        else:
            expr = _q(c)
        exprs.append(f"{expr} AS {_q(c)}")
    return ", ".join(exprs)


def _text_columns(columns: Sequence[str]) -> str:
    """``columns`` as PostgreSQL's own text output (cheapest to produce), which DuckDB casts back with
    ``_rows.typed_select``: times in the session's UTC, amounts as exact decimal text, tags as JSON text."""
    return ", ".join(f"{_q(c)}::text" if SQL_TYPES[c].startswith("MAP") else _q(c) for c in columns)


def needed_columns(con: Any, sql: str) -> tuple[str, ...]:
    """The columns of ``entries`` that DuckDB ``sql`` can read, from its syntax tree (``json_serialize_sql`` in the
    DuckDB connection ``con``); every column when the tree does not say for sure.

    A ``*`` is allowed only as ``SELECT * FROM entries`` inside a ``WITH`` (as ``llmcost.analytics`` writes its
    queries), where the names read later are the ones that count. Any other star, a reference to a whole row, or a
    statement DuckDB cannot serialize means every column.

    Example::

        needed_columns(duckdb.connect(), "SELECT model, sum(amount) FROM entries GROUP BY model")  # amount, model
    """
    try:
        ((text,),) = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()
        tree = json.loads(text)
    except Exception:  # noqa: BLE001 - anything odd: read every column, as before
        return COLUMNS
    if tree.get("error") or len(tree.get("statements", ())) != 1:
        return COLUMNS
    names: set[str] = set()
    relations: set[str] = {"entries"}
    allowed_stars: set[int] = set()
    stars: list[int] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        for cte in node.get("cte_map", {}).get("map", ()) if isinstance(node.get("cte_map"), dict) else ():
            relations.add(str(cte.get("key", "")).lower())
            query = (cte.get("value") or {}).get("query_node") or {}
            select = query.get("select_list") or []
            source = query.get("from_table") or {}
            if (
                len(select) == 1
                and select[0].get("class") == "STAR"
                and not select[0].get("columns")
                and not select[0].get("exclude_list")
                and not select[0].get("replace_list")
                and source.get("type") == "BASE_TABLE"
                and source.get("table_name", "").lower() == "entries"
            ):
                allowed_stars.add(id(select[0]))
        kind = node.get("class")
        if kind == "STAR":
            stars.append(id(node))
        elif kind == "COLUMN_REF":
            names.add(str(node.get("column_names", [""])[-1]).lower())
        if node.get("alias") and "class" not in node:  # a table's alias (expressions have a class)
            relations.add(str(node["alias"]).lower())
        if node.get("type") == "BASE_TABLE":
            relations.add(str(node.get("table_name", "")).lower())
        for value in node.values():
            walk(value)

    walk(tree["statements"])
    if any(star not in allowed_stars for star in stars) or names & relations - set(COLUMNS):
        return COLUMNS
    found = tuple(c for c in COLUMNS if c in names)
    return found or ("category",)  # rows still count (count(*)): one narrow column carries them


_READ_COLUMNS = _read_columns()

#: ``spend_groups``'s keys besides ``tag:<key>``, as SQL; models by the catalog's id where there is one, as
#: ``llmcost.analytics`` groups them.
_GROUP_EXPRS = {
    "category": '"category"',
    "resource": '"resource"',
    "model": "coalesce(canonical_model, model)",
    "provider": '"provider"',
}
#: The ``date_trunc`` units ``spend_groups`` takes (those of ``llmcost.analytics``' ``freq``).
_UNITS = frozenset({"minute", "hour", "day", "week", "month", "quarter", "year"})
#: The token counts ``spend_groups`` sums, in the order analytics reports them.
_SPEND_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def _filter_text(filters: Filters) -> Iterator[str]:
    """Every text value in ``filters`` (to spot a NUL character, which no PostgreSQL text holds)."""
    for names in (filters.category, filters.resource, filters.model, filters.provider):
        yield from names or ()
    for key, value in (filters.tags or {}).items():
        yield key
        yield value


def _where(filters: Filters) -> tuple[str, list[Any]]:
    """``filters`` (all but ``limit``) as ``(" WHERE ...", params)`` in PostgreSQL's dialect; values only as
    parameters.

    A value with a NUL character matches nothing, as on every other store: no entry here holds one (``copy_rows``
    sets them aside), and PostgreSQL refuses it even as a parameter, so it is left out of the SQL (a list of values
    keeps the others; a tag, which every entry must have, makes the whole filter match nothing)."""
    conds: list[str] = []
    params: list[Any] = []
    if filters.since is not None:
        conds.append('"timestamp" >= %s')
        params.append(filters.since)
    if filters.until is not None:
        conds.append('"timestamp" < %s')
        params.append(filters.until)
    for column, wanted in (
        ("category", filters.category),
        ("resource", filters.resource),
        ("provider", filters.provider),
    ):
        if wanted is None:
            continue
        conds.append(f"{_q(column)} = ANY(%s)")
        params.append(_holdable(wanted))
    if filters.model is not None:  # the id as returned or the catalog's (canonical) one
        conds.append("(model = ANY(%s) OR canonical_model = ANY(%s))")
        params.extend((_holdable(filters.model), _holdable(filters.model)))
    if filters.tags:
        if any("\x00" in f"{k}{v}" for k, v in filters.tags.items()):
            conds.append("FALSE")
        else:
            conds.append("tags @> %s::jsonb")
            params.append(json.dumps(dict(filters.tags), ensure_ascii=False))
    return (" WHERE " + " AND ".join(conds) if conds else ""), params


def _holdable(values: Iterable[str]) -> list[str]:
    """``values`` PostgreSQL text can hold (no NUL character), sorted: an empty list matches nothing."""
    return sorted(v for v in values if "\x00" not in v)


#: The contract's (timestamp, id) order, ids compared by code point as every other store (and Python) compares them:
#: ``COLLATE "C"`` compares UTF-8 bytes, which order as code points do, whatever the database's collation (with
#: en_US or ICU's, the default of many managed servers, ``a-1`` sorted before ``B-2``, and ``limit=`` picked other
#: entries). On the expression, not the column, so tables created before keep working unchanged.
_ORDER = ' ORDER BY "timestamp", id COLLATE "C"'


def _select(filters: Filters, columns: str, *, ordered_rows: bool = True) -> tuple[str, list[Any]]:
    where, params = _where(filters)
    sql = f"SELECT {columns} FROM {TABLE}{where}"
    if filters.limit is not None:
        sql += _ORDER + " LIMIT %s"
        params.append(filters.limit)
    elif ordered_rows:
        sql += _ORDER
    return sql, params


def store_identity(dsn: str) -> str:
    """The database ``dsn`` names, as a ``postgresql://`` URL without its password and with its parameters in one
    order, whichever way the DSN is spelled: the key of the store's spill and dead-letter fallback directories
    (``_locations.fallback_dirs``), the same on every open of that database by this user.

    Example::

        store_identity("host=db port=5432 dbname=costs user=app password=secret")
        # 'postgresql://app@db:5432/costs'
    """
    from urllib.parse import quote, urlencode

    from psycopg.conninfo import conninfo_to_dict

    try:
        info = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if k != "password"}
    except Exception:  # noqa: BLE001 - a malformed DSN never opens a store; show nothing of it
        return "postgresql://<unparseable dsn>"
    user, host, port, db = (info.pop(k, "") for k in ("user", "host", "port", "dbname"))
    netloc = (quote(user, safe="") + "@" if user else "") + quote(host, safe="") + (f":{port}" if port else "")
    query = urlencode(sorted(info.items()))
    return f"postgresql://{netloc}/{quote(db, safe='')}" + (f"?{query}" if query else "")


def _redacted(dsn: str) -> str:
    """``dsn`` without its password (for messages, logs and the spill folder's name)."""
    try:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo
    except ImportError:  # pragma: no cover - the store cannot be built without psycopg anyway
        return dsn
    try:
        info = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - a malformed DSN: show nothing of it rather than risk a password
        return "<unparseable dsn>"
    info.pop("password", None)
    return make_conninfo(**{k: str(v) for k, v in sorted(info.items())})


def redacted_url(dsn: str) -> str:
    """``dsn`` as a ``postgresql://`` URL without its password (what ``store.url`` shows, and what the command line
    prints for a ``--store`` that names a database).

    The URL is read by libpq's own parser (``conninfo_to_dict``), as the connection reads it, and written again from
    the parts it found: libpq takes a password holding ``#`` or ``?`` unencoded, where ``urllib`` would end
    the address early and show the start of the password. Never raises: a URL libpq cannot read is shown as
    ``<url not shown>``.

    Example::

        >>> redacted_url("postgresql://app:s#cr?t@db:5432/costs?sslmode=require&password=secret")
        'postgresql://app@db:5432/costs?sslmode=require'
    """
    from urllib.parse import quote, urlencode

    scheme, sep, _ = dsn.partition("://")
    if not sep:
        return f"postgresql:// ({_redacted(dsn)})"
    try:
        from psycopg.conninfo import conninfo_to_dict

        info = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if k != "password"}
    except Exception:  # noqa: BLE001 - psycopg missing or a malformed DSN: show nothing of it, not a password
        return f"{scheme}://<url not shown>"
    user, host, port, db = (info.pop(k, "") for k in ("user", "host", "port", "dbname"))
    hosts, ports = host.split(","), port.split(",") if port else []
    if ports and len(ports) != len(hosts):  # ports a URL cannot pair with its hosts: keep them as parameters
        info["host"], info["port"] = host, port
        hosts, ports = [], []
    pairs = [
        (f"[{h}]" if ":" in h else quote(h, safe="")) + (f":{ports[i]}" if i < len(ports) and ports[i] else "")
        for i, h in enumerate(hosts)
    ]
    netloc = (quote(user, safe="") + "@" if user else "") + ",".join(pairs)
    query = urlencode(list(info.items()), quote_via=quote)  # libpq reads "+" as a plus, never as a space
    return f"{scheme}://{netloc}" + (f"/{quote(db, safe='')}" if db else "") + (f"?{query}" if query else "")


def _transient(exc: BaseException) -> bool:
    """Whether ``exc`` may pass if we try again: the server is unreachable or restarting, the connection broke,
    or PostgreSQL asked for a retry (serialization failure, deadlock)."""
    import psycopg
    from psycopg import errors

    if isinstance(exc, (errors.SerializationFailure, errors.DeadlockDetected)):
        return True
    refused = (errors.InsufficientPrivilege, errors.InvalidPassword, errors.InvalidAuthorizationSpecification)
    if isinstance(exc, refused):
        return False
    if not isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return False
    # libpq reports a refused login as a connection failure without a SQLSTATE: retrying cannot help it. A broken
    # connection is named by the transport: over TLS, a server that crashed or restarted reads as "SSL error:
    # unexpected eof" or "SSL SYSCALL error: EOF detected", which is as passing as "server closed the connection
    # unexpectedly" in the clear; any other TLS failure (handshake, protocol, a refused client certificate) is
    # configuration.
    text = str(exc).lower()
    if any(p in text for p in _PERMANENT):
        return False
    if any(p in text for p in _CONNECTION_LOST):
        return True
    return "ssl" not in text


#: Failures that waiting does not cure (a wrong password, database or role; a host not allowed; bad TLS settings),
#: whatever else the message says (libpq joins the messages of each address and mode it tried).
_PERMANENT = (
    "authentication failed",
    "password",
    "does not exist",
    "pg_hba.conf",
    "permission denied",
    "invalid connection option",
    "invalid dsn",
    "certificate",
    "sslmode",
    "server does not support ssl",
)
#: A connection that was made and then lost (the server crashed, restarted or the network dropped), over TCP or TLS:
#: the server may be back on the next try. "ssl syscall error" is the socket's own error under TLS.
_CONNECTION_LOST = (
    "unexpected eof",
    "eof detected",
    "closed unexpectedly",
    "ssl syscall error",
    "connection reset",
    "broken pipe",
)


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (PostgreSQL adds CONTEXT and DETAIL lines)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _hint(exc: BaseException) -> str:
    """What to do about a permanent PostgreSQL error ``exc``."""
    from psycopg import errors

    text = str(exc).lower()
    if "password" in text or "authentication" in text or isinstance(exc, errors.InvalidPassword):
        return "check the user and password: PGPASSWORD or ~/.pgpass, never the code"
    if "pg_hba.conf" in text:
        return "the server does not accept this host or user: add a line to its pg_hba.conf"
    if "does not exist" in text and "database" in text:
        return "create the database, or check the DSN's dbname"
    if isinstance(exc, errors.InsufficientPrivilege) or "permission denied" in text:
        return "grant the role the privileges docs/postgres.md lists"
    if "ssl" in text or "certificate" in text:
        return "check the DSN's sslmode and certificates"
    return "the cause is chained to this error"


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise StoreError("PostgresStore needs psycopg 3; install the extra: pip install 'llmcost[postgres]'") from exc
    return psycopg


class PostgresStore(CostStore):
    """Entries, budget definitions and the budget reservation ledger in PostgreSQL, shared by every process and
    host that opens the same database.

    ``dsn`` is a libpq connection string or URL (``postgresql://user@host:5432/db?sslmode=verify-full``; a password
    is better kept in ``PGPASSWORD`` or ``~/.pgpass`` than in code). ``retry_timeout`` bounds, in seconds, how long
    an operation retries a server that is unreachable or restarting; an append that cannot get through by then is
    spilled to ``spill_dir`` on this host (by default a per-user folder named by a hash of the DSN without its
    password, see docs/stores.md) and replayed on the next successful connection. Entries PostgreSQL cannot hold
    are set aside in a per-user dead-letter folder named the same way (``dead_letters()``). ``connect_timeout``
    applies to each connection attempt unless the DSN sets its own.

    Period budgets reserve in the database itself (``PostgresLedger``), atomically for every host; ``lease`` is how
    many seconds the reservations of a process that died (or lost the network) keep counting.

    Example::

        store = llmcost.PostgresStore("postgresql://llmcost@db.internal/costs?sslmode=verify-full")
        tracker = llmcost.CostTracker(store)
        tracker.record(model="gpt-4o", input_tokens=1200, output_tokens=300)
        tracker.flush()
        store.total(model="gpt-4o")
    """

    buffered = True
    query_copies = True  # (``query`` copies the whole table out of PostgreSQL)

    def __init__(
        self,
        dsn: str,
        *,
        retry_timeout: float = 10.0,
        spill_dir: str | os.PathLike[str] | None = None,
        connect_timeout: float = 5.0,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        if not isinstance(dsn, str) or not dsn:
            raise TypeError(f"dsn must be a non-empty str (a libpq connection string or URL), got {dsn!r}")
        retry_timeout = seconds_arg(retry_timeout, "retry_timeout", zero=True)
        # (libpq takes whole seconds: under one rounds up to one. An infinite lease was taken, and then every
        # reservation failed with "interval out of range", putting budgets offline without a word.)
        connect_timeout = seconds_arg(connect_timeout, "connect_timeout")
        lease = seconds_arg(lease, "lease")
        if spill_dir is not None and not isinstance(spill_dir, (str, os.PathLike)):
            raise TypeError(f"spill_dir must be a str, os.PathLike or None, got {spill_dir!r}")
        _import_psycopg()
        self.dsn = dsn
        self.url = redacted_url(dsn)
        self.where = _redacted(dsn)
        self.retry_timeout = float(retry_timeout)
        self.connect_timeout = connect_timeout
        self.lease = float(lease)
        identity = store_identity(dsn)
        spills, dead = fallback_dirs(identity, "spill"), fallback_dirs(identity, "dead-letter")
        self.dead = DeadLetters("", fallbacks=dead, store_path=identity)  # no folder of its own: per user only
        self.spill = Spill(
            os.path.abspath(spill_dir) if spill_dir is not None else "",
            fallbacks=spills,
            store_path=identity,
            set_aside_lines=self.dead.set_aside_lines,
        )
        self._lock = threading.RLock()
        self._con: Any = None
        self._closer: weakref.finalize | None = None  # (closes the connection of a store freed without ``close()``)
        self._pid = 0
        self._ready = False  # tables made and migrated by this object
        self._down_until = 0.0  # monotonic time until which the server counts as down: one try, no retries
        try:
            self._run(lambda cur: None, what="open")
        except StoreError as exc:
            if not self._passing(exc):
                self.close()
                raise
            # The server is down: the store still opens, so a tracker can record (its appends spill).
            logger.warning("llmcost: %s; appends will spill to %s until it is back", exc, self.spill.directories[0])
        warn_of(self.dead.read())

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"

    # -- connection -----------------------------------------------------------------------------------------------
    def _connection(self) -> Any:
        """This process's connection (a forked child opens its own); made, migrated and replayed on first use."""
        psycopg = _import_psycopg()
        if self._con is not None and self._pid == os.getpid() and not self._con.closed:
            return self._con
        if self._con is not None and self._pid != os.getpid():
            # A forked child must neither use nor finalize its parent's connection (finalizing it would end the
            # parent's session on the shared socket): it is kept, untouched, for the life of the child.
            _INHERITED.append(self._con)
        self._con = None
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in self.dsn:
            kwargs["connect_timeout"] = max(1, round(self.connect_timeout))
        con = psycopg.connect(self.dsn, **kwargs)
        self._closer = weakref.finalize(self, _close_dropped, con, os.getpid())
        con.execute("SET TIME ZONE 'UTC'")
        self._con, self._pid = con, os.getpid()
        return con

    def _drop_connection(self) -> None:
        con, self._con = self._con, None
        if self._closer is not None:
            self._closer.detach()
        if con is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                con.close()

    @contextlib.contextmanager
    def _transaction(self, con: Any, spilled: Sequence[_SpillFile]) -> Iterator[Any]:
        """A cursor inside one transaction on ``con`` (the tables made and migrated the first time, and the
        ``spilled`` files replayed, in the same transaction). Once it commits, the spilled entries PostgreSQL
        refused are set aside and the files deleted."""
        try:
            with con.transaction(), con.cursor() as cur:
                if not self._ready:
                    ddl = _ddl()
                    migrate_postgres(cur, self.where, ddl, _add_columns(), _relations(ddl))
                refused = self._replay(cur, spilled)
                yield cur
        except BaseException as exc:
            if _transient(exc) or con.broken:
                self._drop_connection()
            raise
        self._ready = True
        for path, entry, error in refused:
            self.set_aside([entry], f"spill file {path} could not be replayed", error=error)
        if spilled:
            self.spill.remove([file.path for file in spilled])
            logger.info("llmcost: replayed %d spill file(s) into PostgreSQL at %s", len(spilled), self.where)

    def _run(self, body: Callable[[Any], T], *, what: str) -> T:
        """``body(cursor)`` in one transaction, retried while it fails for a passing reason; ``StoreError`` (caused
        by the last error) when ``retry_timeout`` runs out."""
        # Pending spill files are read once, by the first attempt that reaches the server (while it is down, none
        # is read), and kept for the retries: each attempt reading them again would set the same lines aside again.
        spilled: list[_SpillFile] | None = None

        def attempt() -> T:
            nonlocal spilled
            with self._lock:
                con = self._connection()
                if spilled is None:
                    spilled = self._spilled()
                with self._transaction(con, spilled) as cur:
                    return body(cur)

        # Once retries ran out, later operations try once until _DOWN_FOR has passed: with the server down, a
        # tracker's flush spills at once instead of waiting retry_timeout each time.
        timeout = 0.0 if time.monotonic() < self._down_until else self.retry_timeout
        try:
            result = retry_call(attempt, transient=_transient, timeout=timeout)
        except StoreError:
            raise
        except Exception as exc:
            if _transient(exc):
                self._down_until = time.monotonic() + _DOWN_FOR
                raise StoreError(
                    f"could not {what} PostgreSQL at {self.where} within retry_timeout={self.retry_timeout}s: "
                    f"{_first_line(exc)} (is the server up and reachable from this host? appends spill to "
                    f"{self.spill.directories[0]} meanwhile and are replayed when it is back; raise retry_timeout "
                    "to wait longer)"
                ) from exc
            import psycopg

            if isinstance(exc, psycopg.errors.DataError) and what == "append to":
                raise StoreError(
                    f"entries cannot be stored in PostgreSQL at {self.where}: {_first_line(exc)} (an entry's value "
                    "is out of the stored range; append the others and keep this one with "
                    "store.set_aside(entries, reason))"
                ) from exc
            if isinstance(exc, psycopg.Error):
                message = f"could not {what} PostgreSQL at {self.where}: {_first_line(exc)} ({_hint(exc)})"
                raise StoreError(message) from exc
            raise
        self._down_until = 0.0
        return result

    @staticmethod
    def _passing(error: StoreError) -> bool:
        return isinstance(error.__cause__, Exception) and _transient(error.__cause__)

    # -- writing --------------------------------------------------------------------------------------------------
    def _insert(self, cur: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        """Copy ``rows`` (``copy_rows``) into the session's staging table and move the new ids in (inside the
        caller's transaction). The staging table is emptied at every commit."""
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (LIKE {TABLE} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        with cur.copy(f"COPY {_STAGE} ({_INSERT_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO {TABLE} ({_INSERT_COLUMNS}) SELECT {_INSERT_COLUMNS} FROM {_STAGE} "
            "ON CONFLICT (id) DO NOTHING"
        )

    def _spilled(self) -> list[_SpillFile]:
        """The pending spill files, read: lines that cannot be read back and entries PostgreSQL cannot hold at all
        (text with a NUL character) are set aside here, once, and left out of the file."""
        found = []
        for path in self.spill.pending():
            entries = self.spill.read(path) or []
            rows, refused = copy_rows(entries)
            if refused:  # only in a spill file of another llmcost: appends set them aside up front
                self.set_aside(refused, f"spill file {path} could not be replayed", error=_refusal(refused))
                gone = set(map(id, refused))
                entries = [e for e in entries if id(e) not in gone]
                self.spill.keep_only(path, entries)
            found.append(_SpillFile(path, entries, rows))
        return found

    def _replay(self, cur: Any, spilled: Sequence[_SpillFile]) -> list[tuple[str, CostEntry, BaseException]]:
        """Insert the entries of ``spilled`` files (inside the caller's transaction); return those PostgreSQL
        refused (a value beyond its types), with their file and the error, for the caller to set aside once the
        transaction commits, so one of them never blocks the store."""
        import psycopg

        refused: list[tuple[str, CostEntry, BaseException]] = []
        for file in spilled:
            if not file.rows:
                continue
            try:
                with cur.connection.transaction():  # a savepoint
                    self._insert(cur, file.rows)
            except psycopg.errors.DataError:
                refused += self._replay_one_by_one(cur, file)
        return refused

    def _replay_one_by_one(self, cur: Any, file: _SpillFile) -> list[tuple[str, CostEntry, BaseException]]:
        """Insert a spill file's rows one by one (each in a savepoint); return the entries PostgreSQL refuses (a
        value beyond its types), with the file and the error: the rare path of a file ``_replay`` could not insert
        whole."""
        import psycopg

        by_id = {e.id: e for e in file.entries}
        refused: list[tuple[str, CostEntry, BaseException]] = []
        for row in file.rows:
            try:
                with cur.connection.transaction():
                    self._insert(cur, [row])
            except psycopg.errors.DataError as exc:
                refused.append((file.path, by_id[row[COLUMNS.index("id")]], exc))
        return refused

    def append(self, entries: Sequence[CostEntry]) -> None:
        """Write ``entries`` in one transaction; when this returns they are committed (or durably spilled on this
        host when the server cannot be reached). Ids already stored are skipped."""
        batch = list(entries)
        for entry in batch:
            if not isinstance(entry, CostEntry):
                raise TypeError(f"entries must be CostEntry objects, got {entry!r}")
        if not batch:
            return
        rows, refused = copy_rows(batch)  # before taking the connection: hold it as briefly as possible
        if rows:
            try:
                self._run(lambda cur: self._insert(cur, rows), what="append to")
            except StoreError as exc:
                gone = set(map(id, refused))
                self.spill_batch(exc, [e for e in batch if id(e) not in gone])
        if refused:
            self.refuse(refused)

    def refuse(self, entries: Sequence[CostEntry]) -> None:
        """What becomes of entries PostgreSQL cannot hold at all (text with a NUL character) after the rest of
        their batch was written (or, from a spill file, replayed): set aside (``dead_letters()``), never lost."""
        self.set_aside(entries, "PostgreSQL cannot hold text with a NUL character", error=_refusal(entries))
        self.set_aside_counted(entries)  # (their calls' money was spent: budgets keep counting it)

    def set_aside(self, entries: Sequence[CostEntry], reason: str, *, error: BaseException | str | None = None) -> None:
        """Keep ``entries`` this store could not take in a JSON-lines file in the per-user dead-letter folder of
        this database (``$XDG_STATE_HOME/llmcost/dead-letter/<hash>``, see docs/stores.md), with ``reason`` and
        ``error``; see ``CostStore.set_aside``.

        Example::

            store.set_aside([entry], "amount out of range", error=exc)
        """
        self.dead.set_aside(entries, reason, error, where=f"PostgreSQL at {self.where}")

    def dead_letters(self) -> list[dict[str, Any]]:
        """What ``set_aside`` kept for this database on this host, oldest file first (``CostStore.dead_letters``)."""
        return self.dead.letters()

    def spill_batch(self, error: StoreError, entries: Sequence[CostEntry]) -> None:
        """The fallback of an append that ``error`` stopped: spill ``entries`` to this host (durable, so
        acknowledged) if the error was passing, else re-raise it. The one place the spill integration lives."""
        if not self._passing(error):
            raise error
        try:
            path = self.spill.write(entries)
        except OSError as spill_exc:
            raise StoreError(
                f"{error}; spilling the entries on this host failed too: {spill_exc} "
                "(make spill_dir or $XDG_STATE_HOME writable)"
            ) from spill_exc
        logger.warning("llmcost: %s; %d entries spilled to %s for replay", error, len(entries), path)

    def close(self) -> None:
        """Close this process's connection and stop the ledger's heartbeat; the store stays usable (the next call
        connects again)."""
        self.close_ledger()
        with self._lock:
            self._drop_connection()

    # -- reading --------------------------------------------------------------------------------------------------
    def _fetch_columns(self, filters: Filters) -> dict[str, list[Any]]:
        sql, params = _select(filters, _READ_COLUMNS)

        def body(cur: Any) -> dict[str, list[Any]]:
            cur.execute(sql, params)
            rows = cur.fetchall()
            if not rows:
                return {c: [] for c in COLUMNS}
            return dict(zip(COLUMNS, map(list, zip(*rows, strict=True)), strict=True))

        return self._run(body, what="read")

    def _entries(self, filters: Filters) -> list[CostEntry]:
        return entries_from_columns(self._fetch_columns(filters))

    def _scan(self, filters: Filters) -> pd.DataFrame:
        return frame_from_arrays(self._fetch_columns(filters))

    def _total(self, filters: Filters) -> Decimal:
        inner, params = _select(filters, "amount", ordered_rows=False)

        def body(cur: Any) -> Decimal:
            cur.execute(f"SELECT trim_scale(sum(amount))::text FROM ({inner}) AS e", params)
            (text,) = cur.fetchone()
            return sum_value(text)

        return self._run(body, what="read")

    def _summary(self, filters: Filters) -> CostSummary:
        columns = "amount, category, resource, coalesce(canonical_model, model) AS model, tags, " + ", ".join(
            map(_q, TOKEN_COLUMNS)
        )  # models by their canonical id where there is one, as every store groups them
        inner, params = _select(filters, columns, ordered_rows=False)
        tokens = ", ".join(f"sum({_q(c)})::bigint" for c in TOKEN_COLUMNS)
        no_tokens = ", ".join("NULL::bigint" for _ in TOKEN_COLUMNS)

        # One scan per group kind (cheaper than one scan with grouping sets: PostgreSQL's NUMERIC sums dominate, and
        # a mixed aggregate adds each amount into every set); tag maps are grouped whole first (few distinct ones)
        # and only then split into (key, value) pairs.
        def grouped(kind: int, key: str) -> str:
            return (
                f"SELECT {kind}, {key}::text, NULL::text, trim_scale(sum(amount))::text, count(*), {no_tokens} "
                f"FROM e GROUP BY {key}"
            )

        sql = (
            f"WITH e AS NOT MATERIALIZED ({inner}) "
            f"SELECT 0, NULL::text, NULL::text, trim_scale(sum(amount))::text, count(*), {tokens} FROM e "
            f"UNION ALL {grouped(1, 'category')} UNION ALL {grouped(2, 'resource')} UNION ALL {grouped(3, 'model')} "
            f"UNION ALL SELECT 4, t.key, t.value, trim_scale(sum(m.amount))::text, sum(m.n)::bigint, {no_tokens} "
            "FROM (SELECT tags, sum(amount) AS amount, count(*) AS n FROM e GROUP BY tags) AS m, "
            "jsonb_each_text(m.tags) AS t GROUP BY t.key, t.value"
        )

        def body(cur: Any) -> list[Any]:
            cur.execute(sql, params)
            return cur.fetchall()

        groups: list[dict[Any, Decimal]] = [{}, {}, {}]
        by_tag: dict[str, dict[str, Decimal]] = {}
        total, calls, usage = Decimal(0), 0, Usage()
        for kind, key, value, text, count, *counts in self._run(body, what="read"):
            amount = sum_value(text)
            if kind == 0:
                total, calls = amount, count
                inp, out, cache_read, cache_write, reasoning = (int(n or 0) for n in counts)
                usage = Usage(inp, out, cache_read, cache_write, reasoning)
            elif kind == 4:
                by_tag.setdefault(key, {})[value] = amount
            else:
                groups[kind - 1][key] = amount
        return CostSummary(
            total=total,
            calls=calls,
            usage=usage,
            by_category=ordered(groups[0]),
            by_resource=ordered(groups[1]),
            by_model=ordered(groups[2]),
            by_tag={k: ordered(v) for k, v in sorted(by_tag.items())},
            start=filters.since,
            end=filters.until,
        )

    def spend_groups(
        self, keys: Sequence[str], filters: Filters = NO_FILTERS, *, unit: str | None = None
    ) -> list[tuple[Any, ...]] | None:
        """Spend per group, summed inside PostgreSQL: what ``llmcost.analytics`` groups by (``spend``, ``by_model``,
        ``over_time``...) without copying rows out.

        ``keys`` name ``category``, ``resource``, ``model`` (the catalog's id where there is one), ``provider`` or
        ``tag:<key>``; ``unit`` (a ``date_trunc`` unit: minute, hour, day, week, month, quarter, year) puts the UTC
        start of each bucket first. One row per group with spend: the key values, the exact ``Decimal`` sum of
        ``amount``, the count, then the sums of ``input_tokens``, ``output_tokens``, ``cache_read_tokens`` and
        ``cache_write_tokens``; in no particular order. Tag keys and every filter value travel as parameters.
        ``None`` when the question names text PostgreSQL cannot hold (a NUL character): the caller then asks
        ``query``, which gives the answer (no entry here holds such text).

        Example::

            store.spend_groups(["model"], Filters(since=datetime(2024, 5, 1)), unit="day")
            # [(datetime(2024, 5, 1, 0, 0), 'gpt-4o', Decimal('12.40625...'), 830, 3021934, ...), ...]
        """
        if unit is not None and unit not in _UNITS:
            raise ValueError(f"unit must be one of {', '.join(sorted(_UNITS))} or None, got {unit!r}")
        if not isinstance(filters, Filters):
            raise TypeError(f"filters must be a Filters, got {filters!r}")
        selects: list[str] = []
        params: list[Any] = []
        if unit is not None:
            selects.append("date_trunc(%s::text, \"timestamp\" AT TIME ZONE 'UTC')")
            params.append(unit)
        for key in keys:
            if not isinstance(key, str):
                raise TypeError(f"keys must be str, got {key!r}")
            if key.startswith("tag:") and key[4:]:
                selects.append("tags ->> %s::text")
                params.append(key[4:])
            elif key in _GROUP_EXPRS:
                selects.append(_GROUP_EXPRS[key])  # a fixed expression, never user text
            else:
                raise ValueError(f"keys must name {', '.join(_GROUP_EXPRS)} or tag:<key>, got {key!r}")
        if any("\x00" in p for p in (*params, *_filter_text(filters))):
            return None
        where, where_params = _where(filters)  # every filter but limit, which a sum has no use for
        tokens = ", ".join(f"sum({_q(c)})::bigint" for c in _SPEND_TOKENS)
        head = "".join(f"{s}, " for s in selects)
        positions = ", ".join(str(i) for i in range(1, len(selects) + 1))
        group = f" GROUP BY {positions}" if selects else " HAVING count(*) > 0"
        sql = f"SELECT {head}sum(amount), count(*), {tokens} FROM {TABLE}{where}{group}"

        def body(cur: Any) -> list[tuple[Any, ...]]:
            cur.execute(sql, [*params, *where_params])
            return [tuple(row) for row in cur.fetchall()]

        return self._run(body, what="read")

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run DuckDB ``sql`` against a relation ``entries`` holding this store's rows (see ``CostStore.query``).

        The rows are copied out of PostgreSQL (``COPY ... TO STDOUT``) into an in-memory DuckDB first, so this
        reads the whole table; ``total`` and ``summary`` run inside PostgreSQL instead.

        Example::

            store.query("SELECT model, sum(amount) AS cost FROM entries GROUP BY model ORDER BY cost DESC")
        """
        import duckdb

        from ._sql import fetch_frame

        if not isinstance(sql, str):
            raise TypeError(f"sql must be a str, got {sql!r}")
        with tempfile.TemporaryDirectory(prefix="llmcost-pg-") as tmp:
            path = os.path.join(tmp, "entries.csv")
            con = duckdb.connect()
            try:
                con.execute("SET TimeZone = 'UTC'")
                columns = needed_columns(con, sql)
                self._copy_out(path, columns)
                types = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in columns) + "}"
                # Quoted empty text is "", not NULL (PostgreSQL writes NULL unquoted).
                con.execute(
                    "CREATE TEMP TABLE raw AS SELECT * FROM read_csv(?, header = false, auto_detect = false, "
                    f"quote = '\"', escape = '\"', allow_quoted_nulls = false, columns = {types})",
                    [path],
                )
                exprs = {c: "NULL" for c in COLUMNS if c not in columns}  # typed NULLs: the query never reads them
                source = "raw"
                if "tags" in columns:
                    # Each distinct tag map is parsed once (entries share a few), then joined back.
                    con.execute(
                        "CREATE TEMP TABLE tag_maps AS SELECT tags AS tag_text, CAST(CAST(tags AS JSON) AS "
                        "MAP(VARCHAR, VARCHAR)) AS tag_map FROM (SELECT DISTINCT tags FROM raw)"
                    )
                    source = "raw LEFT JOIN tag_maps ON raw.tags IS NOT DISTINCT FROM tag_maps.tag_text"
                    exprs["tags"] = "tag_map"
                if "units" in columns:  # JSON text of a map of counts (NULL when empty)
                    # '{}' is how rows written by earlier versions hold no units: NULL, as written now and elsewhere.
                    exprs["units"] = "CAST(CAST(NULLIF(\"units\", '{}') AS JSON) AS MAP(VARCHAR, BIGINT))"
                con.execute(f"CREATE TEMP TABLE entries AS {typed_select(source, exprs)}")
                con.execute("DROP TABLE raw")
                return fetch_frame(con, sql, params)
            finally:
                con.close()

    def _copy_out(self, path: str, columns: Sequence[str] = COLUMNS) -> None:
        """The ``columns`` of every row as CSV in PostgreSQL's own text output, into the file ``path``."""
        statement = f"COPY (SELECT {_text_columns(columns)} FROM {TABLE}) TO STDOUT (FORMAT csv)"

        def body(cur: Any) -> None:
            with open(path, "wb") as out, cur.copy(statement) as copy:
                for chunk in copy:
                    out.write(chunk)

        self._run(body, what="read")

    # -- budget definitions -----------------------------------------------------------------------------------------
    def save_budget(self, name: str, definition: str) -> None:
        """Keep (or replace) the budget definition ``definition`` under ``name``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"budget name must be a non-empty str, got {name!r}")
        if not isinstance(definition, str):
            raise TypeError(f"budget definition must be a str (JSON text), got {definition!r}")
        self._run(
            lambda cur: cur.execute(
                "INSERT INTO llmcost_budgets (name, definition) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET definition = EXCLUDED.definition",
                [name, definition],
            ),
            what="save a budget in",
        )

    def load_budgets(self) -> dict[str, str]:
        """Every saved budget definition, by name."""

        def body(cur: Any) -> list[Any]:
            cur.execute("SELECT name, definition FROM llmcost_budgets ORDER BY name")
            return cur.fetchall()

        return dict(self._run(body, what="read budgets from"))

    def delete_budget(self, name: str) -> bool:
        """Forget the budget ``name``; return whether it existed."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")

        def body(cur: Any) -> bool:
            cur.execute("DELETE FROM llmcost_budgets WHERE name = %s RETURNING name", [name])
            return cur.fetchone() is not None

        return self._run(body, what="delete a budget from")

    # -- the budget ledger ------------------------------------------------------------------------------------------
    def open_ledger(self) -> Ledger:
        """The budget ledger every process on every host that opens this database shares: tables in the database
        itself (see ``_postgres_ledger``)."""
        return PostgresLedger(self._run, where=_where, table=TABLE, lease=self.lease)


class _SpillFile(NamedTuple):
    """A pending spill file as one operation replays it: its path, its entries and their ``copy_rows`` rows."""

    path: str
    entries: list[CostEntry]
    rows: list[tuple[Any, ...]]


#: Positions of the map columns (tags, and any added later), which travel as JSON text into ``jsonb``.
_MAP_AT = tuple(i for i, t in enumerate(SQL_TYPES.values()) if t.startswith("MAP"))
#: Map columns NULL when empty, as the row format has them (``_rows.SQL_TYPES``: ``units``) and every other store
#: keeps them; tags stay ``{}``.
_NULL_WHEN_EMPTY = frozenset(i for i, c in enumerate(SQL_TYPES) if c == "units")


def copy_rows(batch: Sequence[CostEntry]) -> tuple[list[tuple[Any, ...]], list[CostEntry]]:
    """``batch`` as rows for ``COPY`` in ``COLUMNS`` order (maps such as tags as JSON text, the category as its
    value), and the entries PostgreSQL would refuse: text or map keys and values with a NUL character, which its
    ``text`` and ``jsonb`` cannot hold (``CostEntry`` admits no lone surrogate).
    """
    rows: list[tuple[Any, ...]] = []
    refused: list[CostEntry] = []
    for entry in batch:
        row = list(entry_row(entry))
        if any(isinstance(v, str) and "\x00" in v for v in row) or any(
            "\x00" in f"{k}{v}" for i in _MAP_AT if row[i] for k, v in row[i].items()
        ):
            refused.append(entry)
            continue
        for i in _MAP_AT:
            if not row[i] and i in _NULL_WHEN_EMPTY:
                row[i] = None
            else:
                row[i] = json.dumps(dict(row[i]) if row[i] is not None else {}, ensure_ascii=False)
        rows.append(tuple(row))
    return rows, refused


def _refusal(entries: Sequence[CostEntry]) -> str:
    ids = ", ".join(repr(e.id) for e in entries[:5]) + (" ..." if len(entries) > 5 else "")
    return (
        f"PostgreSQL cannot keep {len(entries)} entries whose text holds a NUL character (ids {ids}); "
        "remove the NUL characters (\\x00) from their description, tags or names"
    )
