"""The budget reservation ledger in PostgreSQL: reserve before a call, settle (or release) after it, on any host.

Two tables. ``llmcost_ledger_periods`` holds one row per (budget key, period start) with the ``settled`` spend:
the exact actual amounts of settled reservations. ``llmcost_reservations`` holds the reservations still open, each
with a lease (``expires_at``, on the server's clock, so hosts with skewed clocks agree).

``reserve`` is one transaction of two statements. The first upserts the period row, which takes its row lock: every
other reserver of the same budget period, on any host, waits there until this transaction ends. The second, with a
fresh READ COMMITTED snapshot taken after the lock was granted, inserts the reservation only if ``settled`` plus the
unexpired reservations plus ``amount`` stays within ``limit``, and returns its id (no row: refused). Budgets and
periods that differ never wait for each other.

A reservation whose holder died is ignored once its lease runs out (default 60 s), so the room it held comes back;
``settle`` of such a late reservation still counts its actual amount. Amounts are ``NUMERIC(38, 18)``: exact.

Example::

    with connection.transaction():
        rid = reserve(connection, "monthly", period_start, Decimal("0.02"), Decimal("100"), lease_seconds=60)
    ...  # the call
    with connection.transaction():
        settle(connection, rid, Decimal("0.017"))
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

__all__ = ["LEDGER_DDL", "committed", "release", "reserve", "settle"]

LEDGER_DDL: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS llmcost_ledger_periods ("
    " budget_key text NOT NULL, period_start timestamptz NOT NULL,"
    " settled NUMERIC(38, 18) NOT NULL DEFAULT 0, PRIMARY KEY (budget_key, period_start))",
    "CREATE TABLE IF NOT EXISTS llmcost_reservations ("
    " id uuid PRIMARY KEY DEFAULT gen_random_uuid(), budget_key text NOT NULL, period_start timestamptz NOT NULL,"
    " amount NUMERIC(38, 18) NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),"
    " expires_at timestamptz NOT NULL)",
    "CREATE INDEX IF NOT EXISTS llmcost_reservations_period ON llmcost_reservations (budget_key, period_start)",
)

_LOCK_PERIOD = (
    "INSERT INTO llmcost_ledger_periods (budget_key, period_start) VALUES (%s, %s) "
    "ON CONFLICT (budget_key, period_start) DO UPDATE SET settled = llmcost_ledger_periods.settled "
    "RETURNING settled"
)
_HELD = (
    "SELECT coalesce(sum(amount), 0) FROM llmcost_reservations "
    "WHERE budget_key = %(key)s AND period_start = %(start)s AND expires_at > now()"
)
_RESERVE = (
    "INSERT INTO llmcost_reservations (budget_key, period_start, amount, expires_at) "
    "SELECT %(key)s, %(start)s, %(amount)s, now() + make_interval(secs => %(lease)s) "
    "WHERE (SELECT settled FROM llmcost_ledger_periods WHERE budget_key = %(key)s AND period_start = %(start)s) "
    f"+ %(spent)s + ({_HELD}) + %(amount)s <= %(limit)s "
    "RETURNING id::text"
)


def _money(name: str, value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise TypeError(f"{name} must be a Decimal or an int, got {value!r}")
    amount = Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{name} must be a finite, non-negative amount, got {value!r}")
    return amount


def _key(budget_key: object) -> str:
    if not isinstance(budget_key, str) or not budget_key:
        raise ValueError(f"budget_key must be a non-empty str, got {budget_key!r}")
    return budget_key


def reserve(
    cur: Any,
    budget_key: str,
    period_start: datetime,
    amount: Decimal,
    limit: Decimal,
    *,
    lease_seconds: float = 60.0,
    spent: Decimal = Decimal(0),
) -> str | None:
    """Reserve ``amount`` of budget ``budget_key``'s period starting ``period_start`` if settled spend, ``spent``
    (recorded spend the ledger does not know of), unexpired reservations and ``amount`` stay within ``limit``.

    Returns the reservation id, or ``None`` when it would not fit. ``cur`` is a psycopg cursor (or connection)
    inside a transaction the caller commits: the period row lock is held until then.
    """
    key = _key(budget_key)
    if period_start.tzinfo is None:
        raise ValueError(f"period_start must be timezone-aware, got {period_start!r}")
    if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, (int, float)) or lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be a positive number, got {lease_seconds!r}")
    params = {
        "key": key,
        "start": period_start,
        "amount": _money("amount", amount),
        "limit": _money("limit", limit),
        "spent": _money("spent", spent),
        "lease": float(lease_seconds),
    }
    cur.execute(_LOCK_PERIOD, [key, period_start])
    cur.fetchall()
    cur.execute(_RESERVE, params)
    row = cur.fetchone()
    return None if row is None else str(row[0])


def settle(cur: Any, reservation_id: str, actual: Decimal) -> bool:
    """Close reservation ``reservation_id``, counting ``actual`` as settled spend of its budget period instead of
    the reserved amount. Returns whether the reservation was open (settling twice counts once)."""
    amount = _money("actual", actual)
    cur.execute(
        "WITH r AS (DELETE FROM llmcost_reservations WHERE id = %s::uuid RETURNING budget_key, period_start) "
        "UPDATE llmcost_ledger_periods p SET settled = p.settled + %s FROM r "
        "WHERE p.budget_key = r.budget_key AND p.period_start = r.period_start RETURNING 1",
        [_reservation_id(reservation_id), amount],
    )
    return cur.fetchone() is not None


def release(cur: Any, reservation_id: str) -> bool:
    """Drop reservation ``reservation_id`` without spending (the call was not made). Returns whether it was open."""
    cur.execute("DELETE FROM llmcost_reservations WHERE id = %s::uuid RETURNING 1", [_reservation_id(reservation_id)])
    return cur.fetchone() is not None


def committed(cur: Any, budget_key: str, period_start: datetime) -> Decimal:
    """Settled spend plus unexpired reservations of the budget period: what ``reserve`` weighs against the limit."""
    params = {"key": _key(budget_key), "start": period_start}
    cur.execute(
        "SELECT coalesce((SELECT settled FROM llmcost_ledger_periods "
        f"WHERE budget_key = %(key)s AND period_start = %(start)s), 0) + ({_HELD})",
        params,
    )
    (value,) = cur.fetchone()
    return Decimal(value)


def _reservation_id(value: object) -> str:
    import uuid

    if not isinstance(value, str):
        raise TypeError(f"reservation id must be a str, got {value!r}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"reservation id must be an id reserve() returned, got {value!r}") from None
