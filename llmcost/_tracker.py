"""``CostTracker``: prices and records entries, buffers them for the store, and tells subscribers.

Over 400 lines because ``CostTracker`` is one class whose public methods (``record``, ``entries``, ``summary``,
``frame``, ``subscribe``, ``flush``) are the API, most of it docstrings; the parts with their own idea live
elsewhere (pricing in ``_prices``, the recent-calls statistic in ``_estimate``, process state in ``_state``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from decimal import Decimal, getcontext
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from . import _state
from ._context import NO_GUARDS, Guard, GuardSet, active_guards, begin_settling, current_tags, end_settling, joined
from ._entry import (
    EMPTY_TAGS,
    CostCategory,
    CostEntry,
    FrozenTags,
    check_text,
    entry_id,
    intern_tags,
    new_entry_id,
    to_category,
    to_latency,
    to_service_tier,
    to_tags,
    trusted_entry,
)
from ._errors import StoreError, UnknownModelError
from ._estimate import RecentCosts
from ._money import EXACT_DIGITS, MAX_AMOUNT, MIN_AMOUNT, ZERO, to_amount, to_utc, wide_context
from ._periods import period_bounds
from ._prices import priced
from ._rows import FieldColumns
from ._summary import CostSummary
from ._time import EPOCH, from_micros
from ._usage import Usage, fitted, refuse_usage_and_keywords
from .stores import CostStore, MemoryStore, open_store
from .stores._isolate import PartlyWritten, append_columns_or_set_aside

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EVENTS", "STORED_BUDGETS_SECONDS", "CostTracker", "log_once"]

logger = logging.getLogger("llmcost")

#: The causes ``log_once`` remembers at most (then it forgets them all, and logs each once more).
LOGGED_KEPT = 4096
#: Seconds between looks for budgets saved in a tracker's store by ``BudgetManager`` in any process.
STORED_BUDGETS_SECONDS = 5.0
#: The longest a new tracker waits to read them (a store another process holds locked, one that is down): the
#: background writer looks again STORED_BUDGETS_SECONDS later, so the constructor need not wait ``retry_timeout``.
FIRST_BUDGETS_SECONDS = 1.0
EVENTS = ("cost.recorded", "budget.created", "budget.warning", "budget.exceeded")
_UNKNOWN_MODEL_POLICIES = ("warn", "raise", "ignore")
_logged = _state.logged
_logged_lock = _state.logged_lock
#: Not empty once a SIGTERM is ending the process: entries are then written as they are recorded (``_write_ending``).
_ending = _state.ending
#: Buffered entries are moved into columns every this many appends (fewer with a smaller ``batch_size``): short
#: enough that they die before a second-generation collection, long enough that the move is cheap per entry.
_CHUNK = 256


def log_once(
    cause: object, message: str, *args: object, level: int = logging.WARNING, exc_info: BaseException | None = None
) -> None:
    """Log ``message`` the first time ``cause`` is seen in this process (tracking failures repeat per call), with
    ``exc_info``'s traceback if given."""
    if cause in _logged:
        return
    with _logged_lock:
        if cause in _logged:
            return
        if len(_logged) >= LOGGED_KEPT:
            # Causes that carry a value (a failing call's message) could grow it for good in a long-running process:
            # emptied instead, a cause seen again is logged once more.
            _logged.clear()
        _logged.add(cause)
    logger.log(level, message, *args, exc_info=exc_info)


def _flush_cause(exc: Exception) -> tuple[object, ...]:
    """What a failed flush is logged once for: the error it raised from, where there is one (its message is the
    problem), else its own. Not the ``StoreError`` made around another error as the buffer is put back, whose
    message counts the entries waiting: a new cause on every retry of one outage."""
    cause = exc.__cause__
    if cause is not None:
        return ("flush", type(exc), type(cause), str(cause))
    return ("flush", type(exc), str(exc))


def _count_failed(guard: object, entry_id: str, exc: Exception) -> None:
    """A budget failed to count an entry (its store is down, say): logged with the traceback once per budget and
    cause, as docs/errors.md promises (every call would fail the same way), at debug level after that."""
    cause = ("count", getattr(guard, "name", None), type(exc))
    if cause in _logged:
        logger.debug("llmcost: budget %r failed to count entry %s: %r", guard, entry_id, exc)
        return
    log_once(cause, "llmcost: budget %r failed to count entry %s", guard, entry_id, level=logging.ERROR, exc_info=exc)


#: What users write for a ``summary``/``total`` period, as the ``BudgetPeriod`` it means.
_PERIOD_ALIASES = {"hour": "hourly", "today": "daily", "day": "daily", "week": "weekly", "month": "monthly"}


_time_ns = time.time_ns
_monotonic = time.monotonic


def _release(guard: Guard, token: object, entry: CostEntry | None) -> None:
    """Settle a call's reservation that was not counted with its entry (``after_call``); a failure there is logged."""
    try:
        guard.after_call(token, entry)
    except Exception as exc:  # noqa: BLE001 - tracking must never break the user's call
        log_once(("settle", type(exc)), "llmcost: budget settlement failed: %r", exc)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


#: The default clock (``CostTracker.clock`` when none is given): the system's, as ``time.time()`` reads it too (a
#: period budget's lease checks its calls' period against that once per batch, ``Lease.take``).
system_clock = _utc_now


def _in_utc(clock: Callable[[], datetime]) -> Callable[[], datetime]:
    """``clock`` read as an aware UTC datetime (``to_utc``: a naive reading is taken as UTC, as timestamps are).

    Everything reads a tracker's time through its ``clock``: entries' timestamps and ids, periods, budgets. A naive
    reading broke each of them (a tracked call recorded nothing); an aware non-UTC one gave entries non-UTC
    timestamps. Only a given clock pays for this: the default one (``system_clock``) is read as it is.
    """

    def utc_clock() -> datetime:
        return to_utc(clock(), "clock()")

    return utc_clock


_NO_USAGE = Usage()  # frozen, so every entry recorded without tokens (an ``amount=``) can share it


def _usage_of(inp: object, out: object, cache_read: object, cache_write: object, reasoning: object) -> Usage:
    """The ``Usage`` of ``record``'s token keywords, checked by ``Usage`` (no tokens at all: ``_NO_USAGE``)."""
    if type(inp) is type(out) is type(cache_read) is type(cache_write) is type(reasoning) is int and not (
        inp or out or cache_read or cache_write or reasoning
    ):
        return _NO_USAGE
    return Usage(inp, out, cache_read, cache_write, reasoning)  # type: ignore[arg-type]  # Usage checks them


def _usage_given(
    usage: Usage | None, inp: object, out: object, cache_read: object, cache_write: object, reasoning: object
) -> Usage:
    """The ``Usage`` of ``record``/``build``: ``usage``, else that of the token keywords (``_usage_of``). Both given
    is a ``TypeError``: the keywords used to be dropped without a word (a call of a million input tokens recorded at
    the price of ``usage``'s ten)."""
    if usage is None:
        return _usage_of(inp, out, cache_read, cache_write, reasoning)
    if inp or out or cache_read or cache_write or reasoning:
        refuse_usage_and_keywords(
            usage,
            {
                "input_tokens": inp,
                "output_tokens": out,
                "cache_read_tokens": cache_read,
                "cache_write_tokens": cache_write,
                "reasoning_tokens": reasoning,
            },
        )
    return usage


def _acknowledge_in(store: CostStore, batch: Sequence[CostEntry] | FieldColumns) -> None:
    """Tell ``store``'s budget ledger that ``batch`` is written (its settled amounts give way to the rows)."""
    try:
        if isinstance(batch, FieldColumns):
            store.acknowledge_columns(batch)
        else:
            store.acknowledge(batch)
    except Exception as exc:  # noqa: BLE001 - the entries are written; budgets read the store again later
        log_once(("acknowledge", type(exc)), "llmcost: could not update the budget ledger: %r", exc)


def _written(store: CostStore, batch: FieldColumns) -> None:
    """``batch`` was appended to ``store``: acknowledge it (by id, unless the store acknowledges in its own way)."""
    if type(store).acknowledge is not CostStore.acknowledge:
        _acknowledge_in(store, batch.entries())  # a store that acknowledges in its own way gets the entries
    elif store.current_ledger() is not None:
        _acknowledge_in(store, batch)  # by id: no ``CostEntry`` built (only when a ledger listens)


class _Left:
    """What a tracker dropped without ``close()`` still had buffered: its buffer and columns (the same lists, never
    rebound), written to its store once the tracker is freed.

    The tracker's ``weakref.finalize`` hands this over (``_dropped``). Its write runs on a thread of its own, since
    a finalizer runs wherever the garbage collector happened to run, maybe holding a lock the write needs. Until
    written it is one of ``_state``'s live trackers: the exit hook, SIGTERM and a ``multiprocessing`` child's exit
    flush it (and stop its thread first) as they do a tracker's.
    """

    __slots__ = ("__weakref__", "_buffer", "_columns", "_lock", "_store", "_thread")

    def __init__(self, store: CostStore, buffer: list[CostEntry], columns: list[FieldColumns]) -> None:
        self._store = store
        self._buffer = buffer
        self._columns = columns
        # (As the tracker's own flush lock: a SIGTERM while the main thread writes here is handled once it lets go,
        # not by a flush that would wait for this lock until the process ends, the batch in hand.)
        self._lock = _state.FlushLock()
        self._thread: threading.Thread | None = None

    def pending(self) -> int:
        return len(self._buffer) + sum(map(len, self._columns))

    def start(self) -> None:
        """Write what is left on a thread of its own (a failure is logged; the exit hook tries again)."""
        _state.track_orphan(self)
        self._thread = threading.Thread(target=self._write_quietly, name="llmcost-flush-dropped", daemon=True)
        self._thread.start()

    def _write_quietly(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - kept for the exit hook's try
            log_once(_flush_cause(exc), "llmcost: could not write entries yet (%s); will retry", exc)

    def flush(self) -> None:
        """Write what is left to the store (put back, and raised, if the store fails)."""
        with self._lock:
            columns, buffer = self._columns, self._buffer
            parts = [*columns, FieldColumns.of(buffer)] if buffer else columns[:]
            del buffer[:], columns[:]
            if parts:
                batch = FieldColumns.joined(parts)
                try:
                    with self._store.writing(batch):
                        append_columns_or_set_aside(self._store, batch)
                except PartlyWritten as partly:
                    columns[:0] = [FieldColumns.of(partly.unwritten)]  # only these: the rest are in the store
                    _written(self._store, FieldColumns.of(partly.written))
                    raise
                except BaseException:
                    columns[:0] = [batch]
                    raise
                _written(self._store, batch)
                self._store.flush()
        _state.forget_orphan(self)

    def stop_writer(self) -> None:
        """Wait for the thread writing what is left, if it is still writing (the exit hook, as for a tracker)."""
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join()

    def close(self) -> None:
        self.flush()

    def forked(self) -> None:
        """In a forked child: what is left is the parent's to write."""
        del self._buffer[:], self._columns[:]
        self._thread = None
        _state.forget_orphan(self)


def _dropped(left: _Left) -> None:
    """The ``weakref.finalize`` of a tracker freed without ``close()``: have what it left written."""
    if left.pending():
        left.start()


class CostTracker:
    """Prices calls, records ``CostEntry`` objects into a store, and answers what was spent.

    ``store`` is a ``CostStore`` or a store URL (``None``: a new ``MemoryStore``); ``clock`` returns the current
    time (a datetime, read in UTC: a naive one is taken as UTC) and defaults to UTC now; ``on_unknown_model`` is
    ``"warn"`` (record amount 0 with ``pricing="unpriced"`` and log once), ``"raise"`` or ``"ignore"`` (as warn,
    without the log line).

    Entries for durable stores are buffered and written in batches of ``batch_size`` or every ``flush_interval``
    seconds, and at exit; ``flush()`` writes what is buffered and is the acknowledgement point. A ``MemoryStore``
    gets every entry at once.

    Example::

        tracker = CostTracker("duckdb:///tmp/costs.duckdb")
        tracker.record(model="gpt-4o", input_tokens=1200, output_tokens=300, resource="summarize")
        print(tracker.summary(period="daily").total)
    """

    def __init__(
        self,
        store: CostStore | str | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        on_unknown_model: Literal["warn", "raise", "ignore"] = "warn",
        batch_size: int = 4096,
        flush_interval: float = 1.0,
    ) -> None:
        if on_unknown_model not in _UNKNOWN_MODEL_POLICIES:
            raise ValueError(f"on_unknown_model must be one of {_UNKNOWN_MODEL_POLICIES}, got {on_unknown_model!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(flush_interval, (int, float)) or not flush_interval > 0:
            raise ValueError(f"flush_interval must be a positive number of seconds, got {flush_interval!r}")
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be a callable returning a datetime, got {clock!r}")
        self.store: CostStore = MemoryStore() if store is None else open_store(store)
        self.clock: Callable[[], datetime] = _utc_now if clock is None else _in_utc(clock)
        self.on_unknown_model = on_unknown_model
        self._direct = not self.store.buffered
        self._batch_size = batch_size
        self._flush_interval = float(flush_interval)
        self._buffer: list[CostEntry] = []  # never rebound: recording threads append to it without a lock
        # Older buffered entries, moved out of ``_buffer`` every ``_chunk`` appends as columns (``FieldColumns``,
        # oldest first; ``_columned`` counts their rows): entries kept as objects until the next write would live
        # long enough to reach the oldest GC generation, which every full collection walks again.
        self._columns: list[FieldColumns] = []  # never rebound either (``_Left`` holds both lists)
        self._columned = 0
        self._taken = 0  # entries ever taken off the front of ``_buffer`` (changed only under ``_move_lock``)
        # The batch a write has in hand (its columns, its entries), from taken off the buffer until in the store or put
        # back, each step under ``_move_lock``: so an entry is always in one of the three (``holds_unwritten``).
        self._in_hand: tuple[list[FieldColumns], list[CostEntry]] | None = None
        self._chunk = min(_CHUNK, batch_size)
        # Held only to move entries between _buffer and _columns, never to write. Both locks are ``FlushLock``s:
        # SIGTERM's flush needs them, so a SIGTERM arriving while the main thread holds one waits for its release.
        self._move_lock = _state.FlushLock()
        self._start_lock = threading.Lock()
        self._starting: int | None = None  # the thread starting the background writer, under ``_start_lock``
        self._flush_lock = _state.FlushLock()
        self._last_flush = time.monotonic()
        self._flusher: threading.Thread | None = None
        self._closed = threading.Event()
        self._wake = threading.Event()  # set when a batch is full: the writer need not wait out the interval
        self._subscribers: dict[str, list[Callable[[Any], object]]] = {e: [] for e in EVENTS}
        self._on_recorded = self._subscribers["cost.recorded"]  # the same list, looked at on every call
        # A MemoryStore of its own class takes a call's field values (``append_row``) and needs no acknowledgement
        # (its ledger learns of appends itself): ``record_call`` then need not build the entry.
        # Kept as the store itself, compared by identity on each call: a ``store`` attribute assigned later is
        # written to as any store is.
        self._row_store = self.store if type(self.store) is MemoryStore and not self.store.read_only else None
        self._guards = NO_GUARDS
        self._stored_due = 0.0  # when to look for budgets saved in the store (BudgetManager) next
        #: The registry of budgets this tracker enforces from its store's saved definitions (kept by ``_manager``).
        self.stored_budgets: Any = None
        self._recent = RecentCosts()
        if not self._direct or type(self.store).flush is not CostStore.flush:
            _state.track_live(self)  # what the tracker or the store buffers is written at exit
        if not self._direct:
            # Dropped without ``close()`` (a function's or a job's own tracker), it is freed with its buffer; what
            # that holds is then written all the same. (Not at exit: the exit hook flushes the live trackers.)
            weakref.finalize(self, _dropped, _Left(self.store, self._buffer, self._columns)).atexit = False
        if not self._direct:
            # Budgets saved in a durable store are read now, not on a tracked call (which must never wait on the
            # store); the background writer looks for new ones every STORED_BUDGETS_SECONDS, and again that soon if
            # they cannot be read within FIRST_BUDGETS_SECONDS now.
            with _state.short_retries(FIRST_BUDGETS_SECONDS):
                self.load_stored_budgets()

    # -- recording ----------------------------------------------------------------------------------------------
    def record(
        self,
        *,
        model: str | None = None,
        usage: Usage | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        amount: Decimal | int | float | str | None = None,
        category: CostCategory | str = CostCategory.LLM_INFERENCE,
        resource: str | None = None,
        description: str = "",
        provider: str | None = None,
        tags: dict[str, str] | None = None,
        latency_ms: float | None = None,
        timestamp: datetime | None = None,
        service_tier: str | None = None,
    ) -> CostEntry:
        """Record one cost and return its entry.

        With ``amount`` the entry is recorded as given (any category, no model needed, ``pricing="given"``).
        Otherwise it is priced from ``model`` and ``usage`` (or the token keywords) at ``timestamp`` (default: the
        tracker's clock), at ``service_tier`` (``None``: standard; ``"batch"``, ``"flex"``, ``"priority"``, ``"fast"``;
        ``"us"`` or a tier with ``"+us"``: Anthropic's US-only inference).
        Tags from enclosing ``llmcost.tags`` blocks are added; ``tags`` given here win.

        Example::

            tracker.record(model="claude-3-5-sonnet-20241022", input_tokens=2000, cache_read_tokens=1500,
                           output_tokens=400, tags={"team": "support"})
            tracker.record(amount="1.20", category="compute", resource="gpu-box")
        """
        usage = _usage_given(
            usage, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens
        )
        entry = self._entry(
            model=model,
            usage=usage,
            amount=amount,
            category=category,
            resource=resource,
            description=description,
            provider=provider,
            tags=to_tags(tags) if tags else None,
            latency_ms=latency_ms,
            timestamp=timestamp,
            lenient=False,
            service_tier=to_service_tier(service_tier),
        )
        self._add(entry)
        return entry

    def build(
        self,
        *,
        model: str | None = None,
        usage: Usage | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        amount: Decimal | int | float | str | None = None,
        category: CostCategory | str = CostCategory.LLM_INFERENCE,
        resource: str | None = None,
        description: str = "",
        provider: str | None = None,
        tags: dict[str, str] | None = None,
        latency_ms: float | None = None,
        timestamp: datetime | None = None,
        service_tier: str | None = None,
    ) -> CostEntry:
        """The entry ``record`` would record with these arguments, priced and checked, but not recorded: ``add`` it
        to record it. For callers that check a whole batch before recording any of it (``llmcost serve``).

        Example::

            batch = [tracker.build(**item) for item in items]   # a bad item raises before anything is recorded
            for entry in batch:
                tracker.add(entry)
        """
        usage = _usage_given(
            usage, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens
        )
        return self._entry(
            model=model,
            usage=usage,
            amount=amount,
            category=category,
            resource=resource,
            description=description,
            provider=provider,
            tags=to_tags(tags) if tags else None,
            latency_ms=latency_ms,
            timestamp=timestamp,
            lenient=False,
            service_tier=to_service_tier(service_tier),
        )

    def _entry(
        self,
        *,
        model: str | None,
        usage: Usage,
        amount: object,
        category: CostCategory | str,
        resource: str | None,
        description: str,
        provider: str | None,
        tags: FrozenTags | None,
        latency_ms: float | None,
        timestamp: datetime | None,
        lenient: bool,
        service_tier: str | None = None,
    ) -> CostEntry:
        """Build (not yet record) an entry. ``lenient``: an unknown model is recorded unpriced even under
        ``on_unknown_model="raise"`` (the decorator's path, where tracking must never break the call)."""
        when = self.clock() if timestamp is None else to_utc(timestamp)
        if not isinstance(usage, Usage):
            raise TypeError(f"usage must be a llmcost.Usage, got {usage!r}")
        canonical: str | None = None
        if amount is not None:
            value, pricing = to_amount(amount), "given"
        elif model is None:
            raise ValueError("record() needs model= (to price usage) or amount=; got neither")
        else:
            value, pricing, provider, canonical = self._price(model, provider, usage, when, lenient, service_tier)
        for field, text in (("resource", resource), ("model", model), ("provider", provider)):
            if text is not None:
                if not isinstance(text, str):
                    raise TypeError(f"{field} must be a str or None, got {text!r}")
                check_text(text, field)
        if not isinstance(description, str):
            raise TypeError(f"description must be a str, got {description!r}")
        check_text(description, "description")
        if not MIN_AMOUNT < value < MAX_AMOUNT:  # a priced amount this large means a mistaken registered price
            raise ValueError(f"amount must be below 10**20 in magnitude, got {value} for model {model!r}")
        return trusted_entry(
            new_entry_id(when),
            when,
            value,
            to_category(category),
            resource,
            description,
            model,
            provider,
            usage,
            to_latency(latency_ms),
            self._merge_tags(tags),
            pricing,
            "USD",
            service_tier,
            canonical,
        )

    def record_call(
        self,
        model: str | None,
        provider: str | None,
        usage: Usage,
        category: CostCategory,
        resource: str | None,
        tags: FrozenTags,
        latency_ms: float,
        service_tier: str | None = None,
        provider_guessed: bool = False,
        keep: bool = True,
        reservations: list[tuple[Any, object]] | None = None,
        checked: FrozenTags | None = None,
        guard: Guard | None = None,
        token: object = None,
    ) -> CostEntry | None:
        """Record one tracked call (``@track_cost``'s hot path). Every value was checked by the caller; an unknown
        model, or none, is recorded unpriced (amount 0) whatever ``on_unknown_model`` says, since tracking must
        never break the call. ``provider_guessed``: the provider was inferred (from the SDK that made the
        response), so a model that provider lacks is looked up without it before it is called unknown.

        Returns the entry; with ``keep=False`` (the caller has no use for it) it may return ``None`` instead: when
        nothing else needs the ``CostEntry`` (a ``MemoryStore``, no budget, no subscriber) the store is given the
        entry's field values and builds the object only when it is read.

        ``reservations``: the call's open ``(guard, token)`` reservations, a list of its own, for guards that count
        the call as a row (``Guard.on_recorded_row``) to settle and take out of it. ``checked``: the context tags under
        which the guards of ``reservations`` matched the call's ``resource``, ``category`` and ``tags`` before it was
        made (``Guard.checks_call``); if they are the context's tags still, the entry has the fields they matched.

        ``guard``/``token``: the one reservation of a call that a single guard reserved for (in place of
        ``reservations``), which this settles: counted with the row (``Guard.settle_row``) or the entry, else released
        (``after_call``). Unless this raises: then nothing of it was settled."""
        # Nothing but the store needs this call's entry (no subscriber, a caller that has no use for it, only budgets
        # that count rows): a MemoryStore then takes its fields as a row and builds the entry when read.
        rows = self._row_store is self.store
        guards = active_guards()
        if self._guards:
            guards = joined(self._guards, guards)
        bare = not keep and rows and not self._on_recorded and (not guards or guards.counts_rows)
        if bare and self.clock is _utc_now:
            # The default clock read as epoch microseconds (what datetime.now(timezone.utc) holds, floored the same
            # way): the row, the id and most prices need nothing else, so no datetime is made for them.
            micros = _time_ns() // 1000
            when: datetime | None = None
        else:
            when = self.clock()
            since = when - EPOCH
            micros = (since.days * 86400 + since.seconds) * 1_000_000 + since.microseconds
        atto: int | None  # (the amount in 10**-18 units, where pricing found it: budgets count these)
        if model is None:
            amount, atto, pricing, canonical = ZERO, 0, "unpriced", None
        else:
            try:  # ``_price``'s common case inline: this runs on every tracked call
                amount, pricing, price_provider, canonical, atto = priced(
                    model, provider, usage, micros if when is None else when, service_tier,
                    # The amount's ints, wanted where something counts them: a guard (a block budget's figures, a
                    # period budget's account lent as ints: ``LentAccount``), or the recent-calls sums.
                    guards or self._recent.summing,
                )  # fmt: skip
            except (UnknownModelError, ValueError) as failed:
                if when is None:
                    when = from_micros(micros)
                if isinstance(failed, ValueError):
                    # Parts that count more than their whole (a ``usage=`` function's own ``Usage``; extraction fits
                    # a response's): fitted the same way, so the call is recorded and priced (the entry keeps them).
                    usage = fitted(usage)
                atto = None
                amount, pricing, provider, canonical = self._price(
                    model, provider, usage, when, True, service_tier, provider_guessed
                )
            else:
                # A provider guessed from the response (the SDK that made it) gives way to the one whose price priced
                # the call: "deepseek/deepseek-r1" from the OpenAI SDK is DeepSeek's; one named stays.
                provider = (price_provider or provider) if provider_guessed else (provider or price_provider)
        outer = current_tags()  # ``_merge_tags`` inline; EMPTY_TAGS by identity first (its len() is Python code)
        if outer is not EMPTY_TAGS and outer:
            tags = intern_tags({**outer, **tags}) if tags is not EMPTY_TAGS and tags else outer
        if rows:
            # Fields in ``ROW_FIELDS`` order (``stores._memory``), the timestamp as epoch microseconds, then the
            # entry: built here only when something needs it (a budget, a subscriber, the caller).
            entry_id_ = entry_id(micros)
            if bare:
                self.store.append_row(  # type: ignore[attr-defined]  # rows: the store is a MemoryStore
                    (entry_id_, micros, amount, category, "USD", resource, "", model, provider, pricing, usage,
                     latency_ms, tags, service_tier, canonical, None)
                )  # fmt: skip
                self._recent.observe_call(resource, model, amount, atto)
                if guard is None:
                    if guards:
                        # The merged tags are those the guards matched before the call if the context's are the same.
                        matched = checked is outer
                        for counting in guards:  # (as ``_counted``, with the entry's fields)
                            try:
                                counting.on_recorded_row(
                                    self, amount, resource, category, tags, reservations, model, canonical, matched,
                                    micros, atto,
                                )  # fmt: skip
                            except Exception as exc:  # noqa: BLE001 - a budget's failure never breaks the call or loses the entry
                                _count_failed(counting, entry_id_, exc)
                    return None
                matched = checked is outer
                for counting in guards:  # (as above; the call's one reservation settled by its guard, whatever happens)
                    try:
                        if counting is guard:
                            guard = None
                            counting.settle_row(  # type: ignore[attr-defined]  # (``ONE_*`` kinds have it)
                                self, token, amount, resource, category, tags, model, canonical, matched, micros, atto
                            )
                        else:
                            counting.on_recorded_row(
                                self, amount, resource, category, tags, None, model, canonical, matched, micros, atto
                            )
                    except Exception as exc:  # noqa: BLE001 - a budget's failure never breaks the call or loses the entry
                        _count_failed(counting, entry_id_, exc)
                if guard is not None:  # (not among the guards now: released)
                    _release(guard, token, None)
                return None
            entry = trusted_entry(
                entry_id_, from_micros(micros) if when is None else when, amount, category, resource, "", model,
                provider, usage, latency_ms, tags, pricing, "USD", service_tier, canonical,
            )  # fmt: skip
            self.store.append_row(  # type: ignore[attr-defined]
                (entry_id_, micros, amount, category, "USD", resource, "", model, provider, pricing, usage,
                 latency_ms, tags, service_tier, canonical, entry)
            )  # fmt: skip
            if guard is not None:  # (the call's one reservation, as a pair there: settled below if it is still open)
                reservations = [(guard, token)]
            self._counted(entry, reservations, atto=atto)
            if guard is not None and reservations:
                _release(guard, token, entry)
            return entry
        entry = trusted_entry(
            entry_id(micros),
            from_micros(micros) if when is None else when,
            amount,
            category,
            resource,
            "",
            model,
            provider,
            usage,
            latency_ms,
            tags,
            pricing,
            "USD",
            service_tier,
            canonical,
        )
        # (The guards of ``reservations`` matched these fields if the context's tags are those they saw: see above.)
        if guard is None:
            self._add(entry, reservations, micros, checked is outer, atto)
            return entry
        if not self._direct and len(guards) == 1 and guards[0] is guard:
            # The usual budgeted call over a store other than a MemoryStore (DuckDB, Parquet, PostgreSQL): ``_add`` and
            # ``_counted`` of its entry inline, for the one guard that reserved for it (this runs after every such
            # call: a frame and a list fewer). Its token is offered with the entry (``Guard.settle_recorded``) before
            # the recent-calls sums see the call, not after as in ``_counted``; any other entry is counted there. (In
            # the caller's decimal context, unlike ``_counted``: ``settle_recorded`` settles the usual call in integer
            # steps, and takes a wide context itself for anything else.)
            self._buffer_entry(entry)
            try:
                settled = guard.settle_recorded(self, entry, token, micros, checked is outer, atto)
            except Exception as exc:  # noqa: BLE001 - a budget's failure never breaks the call or loses the entry
                _count_failed(guard, entry.id, exc)
                with wide_context():  # (as ``_counted``: the release may settle a batch)
                    _release(guard, token, entry)  # (as ``_counted``'s caller does: nothing if it was settled there)
                settled = True
            if settled:
                self._recent.observe_call(resource, model, amount, atto)
                if self._on_recorded:
                    self.emit("cost.recorded", entry)
                return entry
            reservations = [(guard, token)]
            self._counted(entry, reservations, micros, checked is outer, atto)
        else:
            reservations = [(guard, token)]  # (the call's one reservation as a pair: settled below if still open)
            self._add(entry, reservations, micros, checked is outer, atto)
        if reservations:
            _release(guard, token, entry)
        return entry

    def now_micros(self) -> int:
        """The tracker's clock now, as epoch microseconds: what ``record_call`` stamps a call with (the default clock
        read without making a datetime, as there). A period budget checks each call's period with it."""
        if self.clock is _utc_now:
            return _time_ns() // 1000
        since = self.clock() - EPOCH
        return (since.days * 86400 + since.seconds) * 1_000_000 + since.microseconds

    def _merge_tags(self, given: FrozenTags | None) -> FrozenTags:
        outer = current_tags()
        if not given:
            return outer
        if not outer:
            return given
        return intern_tags({**outer, **given})

    def _price(
        self,
        model: str,
        provider: str | None,
        usage: Usage,
        when: datetime,
        lenient: bool,
        service_tier: str | None = None,
        provider_guessed: bool = False,
    ) -> tuple[Decimal, str, str | None, str | None]:
        """The amount, pricing label, provider and canonical model id of a call (``None`` when unpriced)."""
        try:
            try:
                amount, label, price_provider, canonical, _ = priced(model, provider, usage, when, service_tier)
            except UnknownModelError:
                if not provider_guessed or provider is None:
                    raise
                amount, label, price_provider, canonical, _ = priced(model, None, usage, when, service_tier)
                provider = None
        except UnknownModelError:
            if self.on_unknown_model == "raise" and not lenient:
                raise
            if self.on_unknown_model != "ignore":
                log_once(
                    ("unknown-model", model, provider),
                    "llmcost: no price known for model %r; recorded with amount 0 and pricing='unpriced'. "
                    "Register one with llmcost.register_price(...).",
                    model,
                )
            return ZERO, "unpriced", provider, None
        return (
            amount,
            label,
            (price_provider or provider) if provider_guessed else (provider or price_provider),
            canonical,
        )

    def add(self, entry: CostEntry) -> None:
        """Record an already built ``entry`` (imports, replays): stored, counted by budgets, published."""
        if not isinstance(entry, CostEntry):
            raise TypeError(f"entry must be a llmcost.CostEntry, got {entry!r}")
        self._add(entry)

    def _add(
        self,
        entry: CostEntry,
        reservations: list[tuple[Any, object]] | None = None,
        recorded_us: int | None = None,
        matched: bool = False,
        atto: int | None = None,
    ) -> None:
        if self._direct:
            batch = (entry,)
            self.store.append(batch)
            self._acknowledge(batch)
        else:
            self._buffer_entry(entry)
        self._counted(entry, reservations, recorded_us, matched, atto)

    def _counted(
        self,
        entry: CostEntry,
        reservations: list[tuple[Any, object]] | None = None,
        recorded_us: int | None = None,
        matched: bool = False,
        atto: int | None = None,
    ) -> None:
        """``entry`` is recorded: count it for estimates and budgets, and tell subscribers (``atto``: its amount in
        10**-18 units, if known). ``reservations``: those
        of the tracked call that made it, which guards settle with it: a guard whose pair comes first is offered its
        token with the entry (``Guard.settle_recorded``, given ``recorded_us``, the entry's timestamp as epoch
        microseconds, and ``matched``: the guards matched the entry's resource, category and tags before the call),
        and the others find theirs with ``settling_token`` (``begin_settling``, set only for them)."""
        guards: tuple[Guard, ...] = self._guards
        active = active_guards()
        if active:
            guards = joined(self._guards, active) if guards else active
        if (guards or reservations) and getcontext().prec < EXACT_DIGITS:
            with wide_context():  # (as ``_Engine.begin`` does for a tracked call)
                self._counted(entry, reservations, recorded_us, matched, atto)
            return
        self._recent.observe_call(entry.resource, entry.model, entry.amount, atto)
        settling = None
        marked = False  # (whether ``begin_settling`` was asked: a call whose guards all settle here needs no context)
        try:
            for guard in guards:  # the try is per guard, inline: this runs for every budget on every recorded call
                try:
                    if reservations:
                        # Guards count an entry in the order they checked its call: a guard's pair is first if it
                        # reserved for the call (the pairs of those before it that settled here are gone).
                        owner, token = reservations[0]
                        if (
                            owner is guard
                            and recorded_us is not None
                            and guard.settle_recorded(self, entry, token, recorded_us, matched, atto)
                        ):
                            del reservations[0]
                            continue
                        if not marked:
                            settling, marked = begin_settling(reservations), True
                    guard.on_recorded(self, entry, atto)
                except Exception as exc:  # noqa: BLE001 - a budget's failure never breaks the call or loses the entry
                    _count_failed(guard, entry.id, exc)
        finally:
            if settling is not None:
                end_settling(settling)
        if self._on_recorded:
            self.emit("cost.recorded", entry)

    # -- buffering ----------------------------------------------------------------------------------------------
    def _buffer_entry(self, entry: CostEntry) -> None:
        # The tracked call only appends to the buffer: writing is the background writer's job, so a slow or locked
        # store never adds its wait to the user's call. ``list.append`` is one step under the GIL, so recording
        # threads take no lock here either; only ``flush`` takes entries off the front. A full batch wakes the
        # writer early.
        buffer = self._buffer
        if _ending:  # (a SIGTERM is ending the process: ``_write_ending``)
            self._write_ending(entry)
            return
        buffer.append(entry)
        if self._flusher is None:
            self._start_flusher()
        if len(buffer) >= self._chunk:
            self._to_columns()

    def _write_ending(self, entry: CostEntry) -> None:
        """Buffer ``entry`` and write it now, on the recording thread, while a SIGTERM ends the process: its flush
        runs once, and entries buffered after it would be lost. Buffered under the flush lock, so the flush's last
        step (``flush_and_hold``) either writes it or, holding the lock, keeps it from being buffered at all (the
        call is then one in flight as the process ends)."""
        with self._flush_lock:
            self._buffer.append(entry)
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - kept buffered: the last step writes it (or spills it)
            log_once(("ending", type(exc)), "llmcost: could not write an entry as the process ends: %r", exc)

    def _to_columns(self) -> None:
        """Move the buffered entries into ``_columns``, so they die young; wake the writer once a batch waits.

        The entries are converted before the lock is taken, and moved only if nothing took entries off the
        buffer's front meanwhile (``_taken`` unchanged: then they are still its first ``n``); the lock is held for a
        few C-level steps, so a SIGTERM handler's flush (on another thread) hardly ever waits for a recording
        thread. Other threads' appends land after the first ``n`` and stay."""
        buffer = self._buffer
        taken = self._taken
        chunk = buffer[:]
        n = len(chunk)
        if not n:
            return
        part = FieldColumns.of(chunk)
        with self._move_lock:
            if self._taken == taken:
                self._columns.append(part)
                self._columned += n
                self._taken = taken + n
                del buffer[:n]
            due = self._columned >= self._batch_size
        if due:
            self._wake.set()

    def _start_flusher(self) -> None:
        if self._starting == threading.get_ident():
            # Entered again by this very thread as it starts the writer: a garbage collection in the middle of that
            # settled an abandoned stream (its finalizer records). The entry is buffered; the writer being started
            # writes it. (Waiting for the lock here waited for itself for good.)
            return
        with self._start_lock:
            if self._flusher is not None:
                return
            closed = self._closed.is_set()
            if not closed:
                self._starting = threading.get_ident()
                try:
                    self._start_writer()
                finally:
                    self._starting = None
        if closed:
            # Closed (``close``, or the exit hook's ``stop_writer``), yet something records: a call in flight as
            # ``configure`` replaced this tracker, a ``record`` after ``close``, an atexit hook that ran after
            # llmcost's. No writer will come, so the entry is written now; kept for the exit hook if that fails.
            if self not in _state.live_trackers:  # (once: ``track_live`` also looks at the SIGTERM handler)
                _state.track_live(self)
            self._flush_quietly()

    def _start_writer(self) -> None:
        """Start the background writer (the caller holds ``_start_lock``)."""
        ref = weakref.ref(self)
        interval = self._flush_interval
        closed = self._closed
        wake = self._wake

        def run() -> None:
            while not closed.is_set():
                wake.wait(interval)
                wake.clear()
                tracker = ref()
                if tracker is None or closed.is_set():
                    return  # stopped (``stop_writer``): whoever stopped it flushes
                tracker._flush_quietly()
                if not closed.is_set() and time.monotonic() >= tracker._stored_due:
                    tracker.load_stored_budgets()  # not once stopped: the store may be closed, or exiting
                del tracker

        self._flusher = threading.Thread(target=run, name="llmcost-flush", daemon=True)
        self._flusher.start()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - background flushes log; entries stay buffered for the next try
            log_once(_flush_cause(exc), "llmcost: could not write entries yet (%s); will retry", exc)

    def flush(self) -> None:
        """Write buffered entries to the store; when this returns they are acknowledged.

        If the store fails, the entries stay buffered (nothing is lost) and ``StoreError`` is raised; if it failed
        after taking part of them, only the entries it did not take stay. An entry the store refuses while it takes
        the others is set aside with its reason (``store.dead_letters()``), so it never holds back the entries
        around it.
        """
        with self._flush_lock:
            self._write_buffered()

    def flush_and_hold(self) -> None:
        """Write what is buffered, keeping the flush lock for good: no entry is buffered after this returns (a
        recording thread waits for the lock first while the process ends: ``_buffer_entry``). The last step of the
        flush of a SIGTERM that ends the process (``_state.ending``): an entry buffered a moment after that write
        would be lost with the process. Raises as ``flush`` does (the lock still kept)."""
        if self._flush_lock.hold(_state.SIGTERM_FLUSH_SECONDS):  # (else a write hangs: the process ends anyway)
            self._write_buffered()

    def _write_buffered(self) -> None:
        """``flush``'s write of the buffered entries, its caller holding the flush lock."""
        with self._move_lock:
            parts = self._columns[:]
            buffer = self._buffer
            recent = buffer[:]
            del buffer[: len(recent)]  # entries recorded meanwhile were appended after these, and stay
            self._taken += len(recent)
            del self._columns[:]
            self._columned = 0
            if parts or recent:
                self._in_hand = (parts, recent)
        if parts or recent:
            try:
                batch = FieldColumns.joined([*parts, FieldColumns.of(recent)] if recent else parts)
                # (Inside ``writing``: the ledger knows the batch is in the store from the moment the append
                # returns, so a budget reading spend before the acknowledgement below counts it once.)
                with self.store.writing(batch):
                    append_columns_or_set_aside(self.store, batch)
            except BaseException as exc:
                # Back in front (all columned or buffered since are newer), in order; as columns, since entries
                # moved into columns since were recorded after ``recent``. Of a batch written in part, only what
                # the store did not take: kept, the rest would be stored again by the next flush.
                if isinstance(exc, PartlyWritten):
                    back = [FieldColumns.of(exc.unwritten)]
                    _written(self.store, FieldColumns.of(exc.written))
                else:
                    back = [*parts, FieldColumns.of(recent)] if recent else parts
                count = sum(map(len, back))
                with self._move_lock:
                    self._columns[:0] = back
                    self._columned += count
                    self._in_hand = None
                if isinstance(exc, Exception) and not isinstance(exc, StoreError):
                    raise StoreError(f"could not write {count} entries to {self.store!r}: {exc}") from exc
                raise
            _written(self.store, batch)
            self._in_hand = None  # (in the store: one seen in hand meanwhile is only looked at once more)
        self.store.flush()
        self._last_flush = time.monotonic()

    def _acknowledge(self, batch: Sequence[CostEntry] | FieldColumns) -> None:
        """Tell the store's budget ledger that ``batch`` is written (its settled amounts give way to the rows)."""
        _acknowledge_in(self.store, batch)

    def forked(self) -> None:
        """Start afresh in a forked child (``_state`` calls this after ``fork``).

        The child keeps none of the parent's buffered entries (the parent writes those; written twice they would
        only be skipped), starts its own background writer on its next entry (the parent's is not in the child),
        and takes new locks (one the parent's writer held at the fork would never be released).
        """
        self._move_lock = _state.FlushLock()
        self._start_lock = threading.Lock()
        self._starting = None
        self._flush_lock = _state.FlushLock()
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._flusher = None
        del self._buffer[:], self._columns[:]  # (in place: the lists are ``_Left``'s too)
        self._columned = 0
        self._in_hand = None

    def pending(self) -> int:
        """How many recorded entries wait in the buffer for the next flush."""
        with self._move_lock:
            return self._columned + len(self._buffer)

    def stop_writer(self) -> None:
        """Stop the background writer, waiting for what it is writing (``close`` and the exit hook call this).

        The writer is a daemon thread. Left running at interpreter exit, it may be inside the store (a DuckDB call,
        which runs without the GIL) when the interpreter finalizes; CPython then ends it with ``pthread_exit`` as it
        takes the GIL back, which unwinds through DuckDB's C++ frames and aborts the process ("terminate called
        after throwing an instance of ''", "FATAL: exception not rethrown"). Stopped first, it has left the store
        before the final flush and before finalization. A closed tracker's writer no longer touches the store
        either (it would open a connection nobody closes). The wait is the writer's current flush or budget read,
        which the store's ``retry_timeout`` bounds; the final flush would wait for that flush anyway.
        """
        with self._start_lock:
            self._closed.set()
            self._wake.set()
            # (No writer from now on: the next entry recorded finds none and is written at once, ``_start_flusher``.)
            flusher, self._flusher = self._flusher, None
        if flusher is not None and flusher.is_alive() and flusher is not threading.current_thread():
            flusher.join()

    def close(self) -> None:
        """Flush, stop the background flusher and close the store."""
        self.stop_writer()
        try:
            self.flush()
        finally:
            self.store.close()
            _state.forget_live(self)

    def __enter__(self) -> CostTracker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------------------------------
    def entries(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        category: CostCategory | str | Sequence[str] | None = None,
        resource: str | Sequence[str] | None = None,
        model: str | Sequence[str] | None = None,
        tags: dict[str, str] | None = None,
        limit: int | None = None,
    ) -> list[CostEntry]:
        """Recorded entries that match every given filter, oldest first (``until`` is exclusive).

        Example::

            tracker.entries(since=datetime(2024, 5, 1), model="gpt-4o", tags={"team": "search"}, limit=100)
        """
        self.flush()
        return self.store.entries(
            since=since,
            until=until,
            category=category,
            resource=resource,
            model=model,
            tags=tags,
            limit=limit,
        )

    def summary(
        self,
        *,
        period: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        category: CostCategory | str | Sequence[str] | None = None,
        resource: str | Sequence[str] | None = None,
        model: str | Sequence[str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> CostSummary:
        """Exact totals of the matching entries; ``period`` means the current period by the tracker's clock, in
        UTC: ``"hourly"``, ``"daily"``, ``"weekly"``, ``"monthly"`` or ``"total"`` (also ``"hour"``, ``"today"``/
        ``"day"``, ``"week"``, ``"month"``).

        Example::

            today = tracker.summary(period="today")
            print(today.total, today.by_model)
        """
        since, until = self._window(period, since, until)
        self.flush()
        return self.store.summary(
            since=since, until=until, category=category, resource=resource, model=model, tags=tags
        )

    def total(
        self,
        *,
        period: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        category: CostCategory | str | Sequence[str] | None = None,
        resource: str | Sequence[str] | None = None,
        model: str | Sequence[str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> Decimal:
        """The exact total amount of the matching entries (the filters and ``period`` of ``summary``), read with
        one pushed-down ``store.total`` after a flush.

        Example::

            spent_today = tracker.total(period="today", tags={"team": "search"})
        """
        since, until = self._window(period, since, until)
        self.flush()
        return self.store.total(since=since, until=until, category=category, resource=resource, model=model, tags=tags)

    def _window(
        self, period: str | None, since: datetime | None, until: datetime | None
    ) -> tuple[datetime | None, datetime | None]:
        """``since``/``until`` narrowed to the current ``period`` (by the clock), if one is given."""
        if period is None:
            return since, until
        if isinstance(period, str) and period.lower() in _PERIOD_ALIASES:
            period = _PERIOD_ALIASES[period.lower()]
        try:
            start, end = period_bounds(period, self.clock())
        except ValueError:
            raise ValueError(
                f"period must be one of hourly, daily, weekly, monthly, total (or hour, today, day, week, month); "
                f"got {period!r}"
            ) from None
        # Naive is UTC (as the stores read it), so that it compares with the period's aware bounds.
        since = None if since is None else to_utc(since, "since")
        until = None if until is None else to_utc(until, "until")
        since = start if since is None or (start is not None and start > since) else since
        until = end if until is None or (end is not None and end < until) else until
        return since, until

    def frame(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        category: CostCategory | str | Sequence[str] | None = None,
        resource: str | Sequence[str] | None = None,
        model: str | Sequence[str] | None = None,
        tags: dict[str, str] | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Matching entries as a pandas frame, one row per entry; ``amount`` exact Decimals, ``tags`` a dict column.

        Example::

            df = tracker.frame(since=datetime(2024, 5, 1))
            df.groupby("model")["amount"].sum()
        """
        self.flush()
        return self.store.scan(
            since=since,
            until=until,
            category=category,
            resource=resource,
            model=model,
            tags=tags,
            limit=limit,
        )

    # -- events and guards ----------------------------------------------------------------------------------------
    def subscribe(self, event: str, callback: Callable[[Any], object]) -> Callable[[], None]:
        """Call ``callback`` on ``event``; returns a function that unsubscribes it.

        Events: ``cost.recorded`` (gets the ``CostEntry``), ``budget.created`` (the ``Budget``),
        ``budget.warning`` and ``budget.exceeded`` (the ``BudgetAlert``). A failing callback is logged and never
        breaks the call that triggered it.

        Example::

            tracker.subscribe("cost.recorded", lambda e: print(e.model, e.amount))
        """
        if event not in self._subscribers:
            raise ValueError(f"event must be one of {', '.join(EVENTS)}; got {event!r}")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        callbacks = self._subscribers[event]
        callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in callbacks:
                callbacks.remove(callback)

        return unsubscribe

    def emit(self, event: str, payload: object) -> None:
        """Call every subscriber of ``event`` with ``payload`` (budgets publish their events through this)."""
        for callback in list(self._subscribers[event]):
            try:
                callback(payload)
            except Exception:
                logger.exception("llmcost: subscriber %r to %r failed", callback, event)

    def guards(self) -> GuardSet:
        """The guards enforced on every tracked call of this tracker (``BudgetManager`` and env budgets).

        Budgets saved in the store are looked for every ``STORED_BUDGETS_SECONDS``: for a durable store by the
        background writer (and once when the tracker is made), so a tracked call never waits on the store; for an
        in-process store here, on first use and then when due.
        """
        if self._direct and _monotonic() >= self._stored_due:
            self.load_stored_budgets()
        return self._guards

    def load_stored_budgets(self) -> None:
        """Enforce the budgets saved in the store now (``BudgetManager`` definitions from any process)."""
        self._stored_due = time.monotonic() + STORED_BUDGETS_SECONDS
        for hook in _state.stored_budget_hooks:
            try:
                hook(self)
            except Exception as exc:  # noqa: BLE001 - a store that cannot be read now is read again later
                log_once(("stored-budgets", type(exc)), "llmcost: could not load the store's budgets: %r", exc)

    def add_guard(self, guard: Guard) -> None:
        """Enforce ``guard`` on every tracked call of this tracker (``BudgetManager`` budgets use this)."""
        self._guards = GuardSet((*self._guards, guard))

    def remove_guard(self, guard: Guard) -> None:
        """Stop enforcing ``guard`` on this tracker's calls."""
        self._guards = GuardSet(g for g in self._guards if g is not guard)

    def recent_cost(self, resource: str | None, model: str | None) -> Decimal | None:
        """What the next call of ``resource`` and ``model`` will probably cost, from the calls recorded in this process
        (``RecentCosts``: the mean of the first 20, then weighted toward the latest), if any (at money's 18 places)."""
        return self._recent.mean(resource, model)

    def recent_atto(self, resource: str | None, model: str | None) -> int | None:
        """``recent_cost`` in 10**-18 units (``atto_of``): a budget's estimate on the per-call path."""
        return self._recent.mean_atto(resource, model)

    def __repr__(self) -> str:
        return f"CostTracker(store={self.store!r})"


# SIGTERM's flush needs llmcost's handler, which only the main thread may set. A process whose default tracker is on
# a store named by LLMCOST_STORE (made by whichever thread records first: often a request handler's) gets it now, if
# this import runs there. Without it, importing llmcost leaves SIGTERM as it was (a Python handler delays the signal
# while the main thread is in a long C call) until a durable tracker is made on the main thread.
if os.environ.get("LLMCOST_STORE"):
    _state.install_sigterm_handler(at_import=True)


#: Entries ``holds_unwritten`` looks through at most: with more unwritten, a write of them costs less than the look.
UNWRITTEN_LOOKED_AT = 1024


def holds_unwritten(tracker: CostTracker, matches: Callable[[CostEntry], bool]) -> bool:
    """Whether ``tracker`` may hold an entry that ``matches``, recorded and not yet in its store: one buffered, or in
    a write under way, that ``matches`` (or more such entries than ``UNWRITTEN_LOOKED_AT``, not looked through).

    A period budget reads its spend from the store, and writes the tracker's buffer first only when this says so: a
    write to a DuckDB or Parquet store costs milliseconds, and a budget opened per request (a user's) would pay one
    per request for entries that are not of its scope. Entries recorded after the look are the same as entries
    recorded after a write would be. (A function, not a method: see ``buffered_count``.)

    >>> import pathlib, tempfile
    >>> tracker = CostTracker(f"duckdb://{pathlib.Path(tempfile.mkdtemp(), 'costs.duckdb')}", flush_interval=60)
    >>> entry = tracker.record(amount="0.01", resource="search")
    >>> holds_unwritten(tracker, lambda e: e.resource == "search"), holds_unwritten(tracker, lambda e: False)
    (True, False)
    >>> tracker.flush(); holds_unwritten(tracker, lambda e: e.resource == "search")
    False
    >>> tracker.close()
    """
    with tracker._move_lock:  # (the buffer, its columns and a write's batch change together under it)
        parts = tracker._columns[:]
        entries = tracker._buffer[:]
        in_hand = tracker._in_hand
    if in_hand is not None:
        parts += in_hand[0]
        entries += in_hand[1]
    if len(entries) + sum(map(len, parts)) > UNWRITTEN_LOOKED_AT:
        return True
    return any(map(matches, entries)) or any(any(map(matches, part.entries())) for part in parts)


def buffered_count(tracker: CostTracker) -> int:
    """How many entries ``tracker`` has put in its buffer so far: ``pending()`` of them wait there, the others were
    taken off it to be written. (A period budget compares it with the calls it settled itself, to tell whether the
    buffer may hold spend its ledger has not counted: see ``Budget``.) A function, not a method: the tracker's class
    is looked up on every tracked call, and a method more there costs every call a little (its dict's layout)."""
    with tracker._move_lock:  # (``_taken`` and the buffer change together under it; appends need no lock)
        return tracker._taken + len(tracker._buffer)
