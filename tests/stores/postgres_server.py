"""The PostgreSQL server the tests use: ``LLMCOST_TEST_POSTGRES_DSN`` (``.ci/postgres.sh start`` prints it), a
database of its own per test session, a schema of its own per store."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

DSN_VARIABLE = "LLMCOST_TEST_POSTGRES_DSN"
#: ``pg_ctl -D <data dir> -l <log>`` for the tests' own server (``.ci/postgres.sh`` prints it): lets the durability
#: tests restart and stop it. Unset: those tests skip.
CTL_VARIABLE = "LLMCOST_TEST_POSTGRES_CTL"
#: Set (CI sets it) to fail, not skip, the PostgreSQL tests when no server is configured.
REQUIRED_VARIABLE = "LLMCOST_TEST_POSTGRES_REQUIRED"


def server_dsn() -> str:
    """The server's DSN, or skip the test saying how to get one."""
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install -e '.[dev]' (or '.[postgres]')")
    dsn = os.environ.get(DSN_VARIABLE)
    if not dsn and os.environ.get(REQUIRED_VARIABLE):
        pytest.fail(f"{REQUIRED_VARIABLE} is set but {DSN_VARIABLE} is not: the PostgreSQL server did not start")
    if not dsn:
        pytest.skip(f'no PostgreSQL server: {DSN_VARIABLE} is not set (eval "$(bash .ci/postgres.sh start)")')
    return dsn


def with_options(dsn: str, **params: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, **params)


def session_database() -> Iterator[str]:
    """Create a database with a unique name, yield its DSN, drop it (and its connections) after."""
    from benchmarks.bench_postgres import fresh_database

    with fresh_database(server_dsn(), prefix="llmcost_test") as dsn:
        yield dsn


def fresh_schema(database_dsn: str) -> str:
    """A new, empty schema in the session database; the DSN of a connection that works in it."""
    import psycopg

    schema = f"s_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_dsn, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
    return with_options(database_dsn, options=f"-csearch_path={schema}")
