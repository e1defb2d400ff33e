"""Reservations for ``llmcost serve``: a service reserves an amount under a named budget before a call and settles
after it, through the ``Reservations`` protocol below.

The routes know only the protocol. ``reservations_for`` is the one place that picks the implementation:
``BudgetReservations`` reserves on the ``BudgetManager``'s own ``Budget`` objects, through the same
``before_call``/``after_call`` that tracked calls make. A period budget's ``before_call`` reserves in the store's
ledger (``CostStore.reserve``: a SQLite file beside a DuckDB or Parquet store, visible to every process on the
host), so a service reserving through the server and a Python worker tracking calls on the same store share one
limit. What this module adds is the HTTP side: reservation ids, a lease for clients that never settle, and
refusing a second settle of the same id.

A lease runs out on its own: a thread of the server (started with the first reservation) sleeps until the next
deadline and releases every hold due, in the store's ledger, so that no request need come for it to go; and every
route that reads a budget calls ``expire`` first, so a hold is never counted past its deadline by the server.

Example::

    reservations = reservations_for(manager)
    held = reservations.reserve("search-daily", Decimal("0.05"))
    ...                                       # the call
    reservations.claim(held.id, "search-daily")
    tracker.record(amount="0.04", ...)        # its cost, through the tracker
    reservations.settle(held.id, Decimal("0.04"))
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

import attrs

from .._context import PendingCall
from .._manager import BudgetManager
from .._money import ZERO

__all__ = ["DEFAULT_LEASE", "BudgetReservations", "Reservation", "Reservations", "reservations_for"]

logger = logging.getLogger("llmcost.server")

#: Seconds a reservation is held before it is released unsettled (a client that died never settles).
DEFAULT_LEASE = 60.0


class UnknownReservation(KeyError):
    """No open reservation has this id (never made, settled already, or released after its lease)."""


@attrs.frozen
class Reservation:
    """An amount held under a budget until it is settled or its lease runs out."""

    id: str
    budget: str
    amount: Decimal
    remaining: Decimal  #: what the budget has left after this reservation
    expires_at: datetime


class Reservations(Protocol):
    """What the reservation routes need.

    - ``reserve`` holds ``amount`` under ``budget`` atomically: ``KeyError`` for an unknown budget,
      ``BudgetExceeded`` when it does not fit.
    - ``claim`` marks an open reservation of ``budget`` as being settled, so a second settle of the same id is
      refused (``UnknownReservation``) before it records anything; it keeps holding the amount.
    - ``settle`` releases a claimed hold and returns what the budget has left.
    - ``expire`` releases now every hold whose lease ran out and that is not being settled (reads call it first).
    - ``close`` stops releasing holds on their own (the server is shutting down).

    The route claims, records the actual cost through the tracker, then settles: the spend is counted by the budget
    before the hold goes, never by neither.
    """

    def reserve(self, budget: str, amount: Decimal, *, lease: float = DEFAULT_LEASE) -> Reservation: ...

    def claim(self, reservation_id: str, budget: str) -> None: ...

    def settle(self, reservation_id: str, actual: Decimal) -> Decimal: ...

    def expire(self) -> None: ...

    def close(self) -> None: ...


@attrs.define
class _Held:
    budget: str
    token: object
    deadline: float
    claimed: bool = False


class BudgetReservations:
    """Reservations on the ``BudgetManager``'s ``Budget`` objects, held in the store's ledger (module docstring)."""

    def __init__(self, manager: BudgetManager) -> None:
        self.manager = manager
        self._lock = threading.Lock()
        self._due = threading.Condition(self._lock)  # notified when a hold is added, and on close
        self._held: dict[str, _Held] = {}
        self._sweeper: threading.Thread | None = None
        self._closed = False

    def reserve(self, budget: str, amount: Decimal, *, lease: float = DEFAULT_LEASE) -> Reservation:
        self.expire()
        target = self.manager.get(budget)  # KeyError naming the budget
        call = PendingCall(
            tracker=self.manager.tracker,
            resource=target.resource,
            model=None,
            category=target.category or "llm_inference",
            tags=target.tags,
            explicit_estimate=amount,
        )
        token = target.before_call(call)  # BudgetExceeded when it does not fit; the limit's own lock
        rid = f"res_{secrets.token_urlsafe(12)}"
        with self._lock:
            self._held[rid] = _Held(budget, token, time.monotonic() + lease)
            self._start_sweeper()
            self._due.notify()
        now = self.manager.tracker.clock()
        return Reservation(rid, budget, amount, target.remaining, now + timedelta(seconds=lease))

    def claim(self, reservation_id: str, budget: str) -> None:
        self.expire()
        with self._lock:
            held = self._held.get(reservation_id)
            if held is None or held.claimed or held.budget != budget:
                raise UnknownReservation(reservation_id)
            held.claimed = True

    def settle(self, reservation_id: str, actual: Decimal) -> Decimal:
        with self._lock:
            held = self._held.pop(reservation_id, None)
        if held is None:
            raise UnknownReservation(reservation_id)
        try:
            target = self.manager.get(held.budget)
        except KeyError:
            return ZERO  # the budget was deleted meanwhile: nothing left to release
        target.after_call(held.token, None)
        return target.remaining

    def expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            gone = [(rid, h) for rid, h in self._held.items() if h.deadline <= now and not h.claimed]
            for rid, _ in gone:
                del self._held[rid]
        failed: list[tuple[str, _Held]] = []
        error: Exception | None = None
        for rid, held in gone:
            try:
                self.manager.get(held.budget).after_call(held.token, None)
            except KeyError:
                pass  # the budget was deleted: nothing of it to release
            except Exception as exc:  # noqa: BLE001 - whatever failed (the store down), the hold is kept to try again
                failed.append((rid, held))
                error = error or exc
        if failed:
            with self._lock:
                for rid, held in failed:
                    self._held.setdefault(rid, held)
            assert error is not None
            raise error

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._due.notify_all()
        sweeper = self._sweeper
        if sweeper is not None and sweeper is not threading.current_thread():
            sweeper.join(timeout=5)

    def _start_sweeper(self) -> None:
        """Start the thread that releases holds at their deadlines (under ``_lock``; once)."""
        if self._sweeper is None and not self._closed:
            self._sweeper = threading.Thread(target=self._sweep, name="llmcost-serve-leases", daemon=True)
            self._sweeper.start()

    def _sweep(self) -> None:
        """Sleep until the next deadline of an open hold (or a new hold), then release those due, until closed."""
        while True:
            with self._lock:
                while not self._closed:
                    pending = [h.deadline for h in self._held.values() if not h.claimed]
                    wait = min(pending) - time.monotonic() if pending else None
                    if wait is not None and wait <= 0:
                        break
                    self._due.wait(wait)
                if self._closed:
                    return
            try:
                self.expire()
            except Exception:  # the store failed: the thread must live to try at the next deadline
                logger.warning("llmcost serve: releasing reservations whose lease ran out failed", exc_info=True)
                time.sleep(1.0)


def reservations_for(manager: BudgetManager) -> Reservations:
    """The reservations the server uses for ``manager``'s budgets. The one adapter: to move reservations onto the
    store's cross-process ledger, return an implementation that calls the store's ``reserve``/``settle`` here."""
    return BudgetReservations(manager)
