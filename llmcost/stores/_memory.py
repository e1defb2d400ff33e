"""``MemoryStore``: entries kept in this process's memory, column by column.

Entries are not kept as objects: each field goes to its own compact column (``array`` of ints and floats,
repeated strings and tag maps interned once), so a million entries take about 200 MB instead of about 700 MB, and
``scan()`` builds its frame straight from the columns. ``entries()`` rebuilds ``CostEntry`` objects on the way out.
"""

from __future__ import annotations

import logging
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal, localcontext
from itertools import islice, repeat
from operator import attrgetter, is_, lt
from threading import get_ident as _get_ident
from time import sleep as _sleep
from typing import TYPE_CHECKING, Any

import attrs

from .. import _state
from .._entry import EMPTY_TAGS, CostCategory, CostEntry, FrozenTags, trusted_entry
from .._errors import StoreError
from .._money import MAX_AMOUNT, MIN_AMOUNT, ZERO
from .._rows import TOKEN_COLUMNS, frame_from_arrays, from_micros, ingest_arrays, micros
from .._usage import NO_UNITS, Units, trusted_usage
from ._base import CostStore, query_rows
from ._filters import Filters
from ._ledger import Ledger, LocalLedger

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ROW_FIELDS", "MemoryStore", "entry_of_row"]

logger = logging.getLogger("llmcost")

_EXACT_DIGITS = 80  # DECIMAL(38, 18) values summed over billions of rows stay exact within 80 digits
# Entries are moved into the columns this many at a time. Few enough that pending entries are gone before the
# cyclic garbage collector promotes them to its oldest generation: at 2,048 they were, and the full collections
# that followed (every ~30,000 calls, each walking the whole heap) cost about 3 us per tracked call in a process
# with the OpenAI, Anthropic and LangChain SDKs loaded; at 256, none ran in 100,000 calls. Moving 256 at a time costs
# no more per entry (the fixed part of a move is about 20 array extends).
_BATCH = 256
#: Seconds an append sleeps while another thread finishes a move (``MemoryStore._move_pending``): long enough for the
#: mover to be scheduled, short against the interpreter's 5 ms switch interval, after which it would run anyway.
_MOVE_WAIT = 0.0001
_CATEGORIES = list(CostCategory)
_CATEGORY_INDEX = {c: i for i, c in enumerate(_CATEGORIES)}
#: The order of the field values ``append_row`` takes (the order ``_FIELDS`` reads an entry's).
ROW_FIELDS = (
    "id",
    "timestamp",
    "amount",
    "category",
    "currency",
    "resource",
    "description",
    "model",
    "provider",
    "pricing",
    "usage",
    "latency_ms",
    "tags",
    "service_tier",
    "canonical_model",
)
_FIELDS = attrgetter(*ROW_FIELDS)
_COUNTS = attrgetter(*TOKEN_COLUMNS)
_COUNT_GETTERS = tuple(map(attrgetter, TOKEN_COLUMNS))
_UNITS = attrgetter("units")
#: The columns of interned strings (``MemoryStore._<name>``), as ``_rows.frame_from_arrays`` names them.
_STRING_COLUMNS = (
    "currency",
    "resource",
    "description",
    "model",
    "provider",
    "pricing",
    "service_tier",
    "canonical_model",
)


def entry_of_row(row: tuple[Any, ...]) -> CostEntry:
    """The ``CostEntry`` of a row ``append_row`` took: its own, or one built from the row's fields."""
    (id_, us, amount, category, currency, resource, description, model, provider, pricing, usage, latency, tags,
     tier, canonical, entry) = row  # fmt: skip
    if entry is not None:
        return entry  # type: ignore[no-any-return]
    return trusted_entry(
        id_, from_micros(us), amount, category, resource, description, model, provider, usage, latency, tags,
        pricing, currency, tier, canonical,
    )  # fmt: skip


def _row_of(item: CostEntry | tuple[Any, ...]) -> tuple[Any, ...]:
    """A pending item as a row: a row as it is, an entry of ``append`` as its fields (the timestamp as epoch
    microseconds) and itself."""
    if type(item) is tuple:
        return item
    fields = _FIELDS(item)
    return (fields[0], micros(fields[1]), *fields[2:], item)


_NAN = float("nan")
_COUNT_LIMIT = 2**63


def _unfit(entry: CostEntry) -> str | None:
    """What no store can hold in ``entry`` (a token count beyond 64 bits, an amount not below 10**20 in magnitude,
    as ``CostEntry`` checks), or ``None``: such an entry was forced past the checks, and is refused here as every
    other store refuses it, so that one moved to another store is not lost on the way."""
    amount = entry.amount
    if not (type(amount) is Decimal and amount.is_finite() and MIN_AMOUNT < amount < MAX_AMOUNT):
        return f"amount={amount!r} is not below 10**20 in magnitude (stores keep DECIMAL(38, 18))"
    counts = _COUNTS(entry.usage)
    a, b, c, d, e = counts
    if type(a) is type(b) is type(c) is type(d) is type(e) is int and 0 <= a | b | c | d | e < _COUNT_LIMIT:
        return None  # the usual case, in one test: plain ints, none negative (or-ing keeps a sign) or too wide
    for name, count in zip(TOKEN_COLUMNS, counts, strict=True):
        if not isinstance(count, int) or not 0 <= count < 2**63:
            return f"{name}={count!r} does not fit a 64-bit count"
    return None


@attrs.frozen
class _Converted:
    """A batch converted into column pieces, ready to be added to a ``MemoryStore``'s columns."""

    n: int
    last: tuple[int, str]
    unsorted: bool
    ids: bytes
    odd_ids: dict[int, str]
    ts: array[int]
    amounts: list[Decimal]
    cat: array[int]
    strings: list[array[int]]
    tokens: list[array[int]]
    latency: array[float]
    tags: array[int]
    units: list[Any]  # the units of every row of the batch when any has units, else empty


#: Rows out of order from which a read bounded in time sorts them to slice its period (``MemoryStore._time_rows``).
_SORT_TO_SLICE = 4096


class _Interned:
    """A table of distinct values (strings, tag maps, ``None``) and their indices."""

    __slots__ = ("index", "values")

    def __init__(self) -> None:
        self.values: list[Any] = [None]
        self.index: dict[Any, int] = {None: 0}

    def __call__(self, value: Any) -> int:
        i = self.index.get(value)
        if i is None:
            i = self.index[value] = len(self.values)
            self.values.append(value)
        return i

    def matching(self, wanted: frozenset[str]) -> set[int]:
        return {i for v, i in self.index.items() if v in wanted}


def _indices(table: _Interned, values: Sequence[Any]) -> list[int]:
    """The table indices of ``values``, adding the ones not seen before."""
    found = list(map(table.index.get, values))
    if None in found:
        for k, value in enumerate(values):
            if found[k] is None:
                found[k] = table(value)
    return found  # type: ignore[return-value]  # every None was replaced


def _all_are(values: Iterable[Any], one: Any) -> bool:
    """Whether every one of ``values`` is ``one`` itself (at C level, stopping at the first that is not)."""
    return all(map(is_, values, repeat(one)))


def _member(column: array[int], allowed: set[int]) -> Callable[[int], bool]:
    return lambda i: column[i] in allowed


class MemoryStore(CostStore):
    """A thread-safe store that keeps everything in this process's memory and forgets it at exit.

    Example::

        store = llmcost.MemoryStore()
        tracker = llmcost.CostTracker(store)
        tracker.record(model="gpt-4o", input_tokens=100, output_tokens=20)
        assert len(store.entries()) == 1
    """

    url = "memory://"
    buffered = False
    query_copies = True  # (``query`` ingests every row anew)

    def __init__(self) -> None:
        self._lock = _state.new_rlock()  # shared with the budget ledger, which keeps a running total of appends
        # The thread of the ``_lock`` holder moving pending entries into the columns, else ``None`` (see
        # ``_move_pending`` and ``_columnize``). A child forked during another thread's move finds it set to that
        # thread, which is harmless: the lock is free there, and its own first move replaces it.
        self._mover: int | None = None
        self._budgets: dict[str, str] = {}
        self._feeds: LocalLedger | None = None  # the ledger ``open_ledger`` made, which counts every append
        self._clear()

    def _clear(self) -> None:
        self._n = 0
        self._ids = bytearray()  # 13 bytes per row: the id's 26 hex digits; other ids go to _odd_ids
        self._odd_ids: dict[int, str] = {}
        self._ts = array("q")
        self._amounts: list[Decimal] = []
        self._cat = array("b")
        self._strings = _Interned()  # currency, resource, description, model, provider, pricing
        self._currency = array("i")
        self._resource = array("i")
        self._description = array("i")
        self._model = array("i")
        self._provider = array("i")
        self._pricing = array("i")
        self._service_tier = array("i")
        self._canonical_model = array("i")
        # The units of each row up to the last row that has any (rows after it: NO_UNITS). A list, not a dict of the
        # rows that have units: extended a batch at a time (C-level), and smaller where many rows have units.
        self._units: list[Units] = []
        self._tokens = [array("q") for _ in range(5)]
        self._latency = array("d")
        self._tag_maps = _Interned()
        self._tag_ids: dict[int, int] = {id(EMPTY_TAGS): 0}  # id() of interned tag maps -> their index
        self._tags = array("i")
        # Appended, not yet moved into the columns (never rebound: the ledger reads it): entries, and rows from
        # ``append_row``.
        self._pending: list[CostEntry | tuple[Any, ...]] = []
        self._order: list[int] | None = None  # row order by (timestamp, id) once rows arrived out of order
        self._unsorted = False
        self._last: tuple[int, str] = (-(2**63), "")

    def append(self, entries: Sequence[CostEntry]) -> None:
        """Add ``entries``, all of them or none; they are acknowledged when this returns.

        An entry no store can hold (a token count beyond 64 bits or an amount of 10**20 or more, forced past
        ``Usage``'s and ``CostEntry``'s checks) raises ``StoreError`` naming it, and nothing of the batch is added."""
        batch = list(entries)
        for entry in batch:
            if not isinstance(entry, CostEntry):
                raise TypeError(f"entries must be CostEntry objects, got {entry!r}")
        for entry in batch:
            problem = _unfit(entry)
            if problem is not None:
                raise StoreError(
                    f"MemoryStore cannot keep entry {entry.id!r}: {problem}; nothing of the batch of {len(batch)} "
                    "was added (append the others and keep this one with store.set_aside(entries, reason))"
                )
        # No lock here: the batch joins the pending list in one ``list.extend`` of a list, a single step under the
        # GIL, so threads recording at once do not wait for each other to append (only for a move that the
        # interpreter switched away from: ``_move_pending``). Only the lock holder takes entries off the list's front.
        pending = self._pending
        pending.extend(batch)
        if len(pending) >= _BATCH:
            self._move_pending()

    def append_row(self, row: tuple[Any, ...]) -> None:
        """Add one entry given as its field values in ``ROW_FIELDS`` order, already checked and converted as
        ``CostEntry`` holds them, except the timestamp: an int of microseconds since the epoch (UTC); then the
        ``CostEntry`` of those values if one was built already (else ``None``: it is built when read).

        ``CostTracker``'s per-call path, which then need not build the ``CostEntry`` (``entries()`` builds it when
        read). Acknowledged when this returns (this store's ledger learns of appends itself); a count a column
        cannot hold raises ``StoreError`` as ``append`` does. The amount is the caller's to keep below 10**20 in
        magnitude, as ``CostEntry`` does: it is not checked again here (``append`` checks each entry, ``_unfit``),
        where the check would cost ~750 instructions a tracked call (1.4%)."""
        a, b, c, d, e = _COUNTS(row[10])
        if not (type(a) is type(b) is type(c) is type(d) is type(e) is int and 0 <= a | b | c | d | e < _COUNT_LIMIT):
            entry = entry_of_row(row)
            problem = _unfit(entry)
            if problem is not None:
                raise StoreError(f"MemoryStore cannot keep entry {entry.id!r}: {problem}")
        pending = self._pending
        pending.append(row)  # one step under the GIL, as ``append``'s extend
        if len(pending) >= _BATCH:
            self._move_pending()

    def _move_pending(self) -> None:
        """From an append that found a batch pending: move the pending entries into the columns; if another thread
        is moving some, first let it finish.

        A thread that finds the lock taken by a move runs while the mover does not: the interpreter switched away
        from the mover in the middle of it. Not waiting, the threads still running appended for their whole switch
        intervals: 4 threads piled up 5,000-20,000 entries about 10 times in 80,000 calls, which outlived the young
        garbage-collector generations (~100 collections of generation 0, ~10 of 1 and one full collection, which
        walks every stored amount: 0.15-1.3 us of CPU per call in all; none ran in one thread). So it sleeps a
        moment, which hands the interpreter to the other threads and, once they sleep too, to the mover; under the
        GIL one thread runs either way, so no calls per second are lost. It waits on nothing shared (waiting on a
        lock the mover then takes made a convoy) and holds nothing meanwhile, and the move is bounded (at most the
        pending entries). A reader or ledger holding the lock for anything else is not waited for: the entries stay
        pending for a later append or read."""
        lock = self._lock
        while not lock.acquire(False):
            if self._mover is None:
                return
            _sleep(_MOVE_WAIT)
        try:
            self._columnize()
        finally:
            lock.release()

    def open_ledger(self) -> Ledger:
        """A ledger in this process that keeps each budget's spend as a running total of appends (exact, and no
        re-reading of the entries): it reads the pending appends itself, under the store's lock, and counts those it
        has not counted yet before it reads an account (``LocalLedger``'s ``appends``)."""
        ledger = self._feeds = LocalLedger(self.total, lock=self._lock, fed=True, appends=self._pending, row_of=_row_of)
        return ledger

    def _columnize(self) -> None:
        """Move pending entries into the columns (caller holds the lock), all of them or, if one cannot be
        converted after all, every other one: the poison is set aside (``dead_letters``), never dropped, and the
        columns stay aligned.

        This runs for every entry ever recorded, so the batch is taken apart with C-level helpers (``attrgetter``,
        ``zip``, ``map``) and Python code runs per entry only where it must. Everything is converted into new
        arrays first; the store's columns are extended only once the whole batch converted.

        A move that an exception interrupts part-way (Ctrl-C, a signal handler's, no memory) is undone: the columns
        as they were, the batch back at the front of the pending entries, as counted by the ledger as before.
        """
        me = _get_ident()
        if self._mover == me:
            # This thread's own move, entered again (the lock is an RLock) by a signal handler that records into or
            # reads this store: nothing moves here. The handler's rows stay pending, and its reads see the store as
            # the move found it. Moving here extended the columns in the middle of the interrupted extend, and mixed
            # the fields of the rows (real timer signals: hundreds of rows in 100,000).
            return
        pending, feeds = self._pending, self._feeds
        self._mover = me  # (from here: the ledger's count of the appends is part of the move appends wait for)
        try:
            n = len(pending) if feeds is None else feeds.counted_appends()  # (counted by the ledger before they leave)
            if not n:
                return
            batch = pending[:n]
            del pending[:n]  # appends racing with this land after the first n, which only this lock holder removes
            mark = self._mark()
            try:
                try:
                    columns = self._convert(batch)
                except (ValueError, TypeError, OverflowError, KeyError, AttributeError):
                    columns = self._convert_each(batch)
                self._extend(columns)
            except BaseException:
                self._undo(mark)
                if feeds is None:
                    pending[:0] = batch
                else:
                    feeds.returned_appends(batch)
                raise
        finally:
            self._mover = None

    def _mark(self) -> tuple[Any, ...]:
        """What ``_undo`` puts back: the columns' length and the order's state."""
        return self._n, len(self._units), self._last, self._unsorted, self._order

    def _undo(self, mark: tuple[Any, ...]) -> None:
        """Cut every column back to the rows it held at ``mark`` (``_mark``), and the order's state with it."""
        n, units, last, unsorted, order = mark
        del self._ids[13 * n :]
        for row in [row for row in self._odd_ids if row >= n]:
            del self._odd_ids[row]
        for column in self._row_columns():
            del column[n:]
        del self._units[units:]
        self._n, self._last, self._unsorted, self._order = n, last, unsorted, order

    def _row_columns(self) -> tuple[Any, ...]:
        """The columns of one item per row (all but the ids, their exceptions and the units)."""
        return (
            self._ts,
            self._amounts,
            self._cat,
            *(getattr(self, f"_{name}") for name in _STRING_COLUMNS),
            *self._tokens,
            self._latency,
            self._tags,
        )

    def _convert_each(self, batch: list[Any]) -> _Converted:
        """``_convert`` of the entries of ``batch`` that convert alone; the others set aside."""
        good = []
        for item in batch:
            entry = entry_of_row(item) if type(item) is tuple else item
            try:
                self._convert([entry])
            except (ValueError, TypeError, OverflowError, KeyError, AttributeError) as exc:
                logger.error("llmcost: MemoryStore cannot keep entry %r (%s); set aside", entry, exc)
                self.set_aside([entry], "MemoryStore could not convert it into its columns", error=exc)
            else:
                good.append(entry)
        return self._convert(good)

    def _convert(self, batch: list[Any]) -> _Converted:
        if not batch:
            return _Converted(
                0, self._last, False, b"", {}, array("q"), [], array("b"), [], [], array("d"), array("i"), []
            )
        # Rows from append_row, entries from append (their fields, and a last column that is not read). The usual
        # batch (every item a row; one category, one tag map all along) is checked for at C level (``_all_are``).
        rows = (
            batch
            if _all_are(map(type, batch), tuple)
            else [x if type(x) is tuple else (*_FIELDS(x), None) for x in batch]
        )
        (ids, stamps, amounts, cats, currency, resource, description, model, provider, pricing, usages, latency,
         tags, tiers, canonical, _) = zip(*rows, strict=True)  # fmt: skip
        # Rows hold epoch microseconds already; an entry's timestamp is converted exactly.
        if _all_are(map(type, stamps), int):
            stamps_us = list(stamps)
        else:
            stamps_us = [s if type(s) is int else micros(s) for s in stamps]
        last, unsorted = self._last, False
        if stamps_us[0] > last[0] and all(map(lt, stamps_us, islice(stamps_us, 1, None))):
            last = (stamps_us[-1], ids[-1])  # strictly later timestamps, one after another (C-level): in order
        else:
            for key in zip(stamps_us, ids, strict=True):
                if key < last:
                    unsorted = True
                else:
                    last = key
        raw_ids, odd_ids = self._id_bytes(ids)
        # array.fromlist is twice as fast as array.extend from other sequences.
        ts = array("q")
        ts.fromlist(stamps_us)
        if _all_are(cats, cats[0]):
            cat = array("b", (_CATEGORY_INDEX[cats[0]],)) * len(cats)
        else:
            cat = array("b")
            cat.fromlist(list(map(_CATEGORY_INDEX.__getitem__, cats)))
        strings = []
        for values in (currency, resource, description, model, provider, pricing, tiers, canonical):
            first = values[0]
            if values.count(first) == len(values):  # one value all along (a C-level scan): the usual column
                column = array("i", (self._strings(first),)) * len(values)
            else:
                column = array("i")
                column.fromlist(_indices(self._strings, values))
            strings.append(column)
        tokens = []
        for count in _COUNT_GETTERS:  # one C-level pass per count
            column = array("q")
            column.fromlist(list(map(count, usages)))
            tokens.append(column)
        lat = array("d")
        lat.fromlist(
            list(latency) if _all_are(map(type, latency), float) else [_NAN if v is None else v for v in latency]
        )
        if _all_are(tags, tags[0]):
            tag_column = array("i", self._tag_indices(tags[:1])) * len(tags)
        else:
            tag_column = array("i")
            tag_column.fromlist(self._tag_indices(tags))
        all_units = list(map(_UNITS, usages))
        # Rows without units hold NO_UNITS itself: told apart by identity (comparing would call ``Units.__eq__``,
        # Python code, for every row that has units).
        units = [] if _all_are(all_units, NO_UNITS) else all_units
        return _Converted(
            len(batch), last, unsorted, raw_ids, odd_ids, ts, list(amounts), cat, strings, tokens, lat, tag_column,
            units,
        )  # fmt: skip

    def _extend(self, c: _Converted) -> None:
        """Add converted rows to every column (``_columnize`` undoes what an exception interrupts)."""
        if not c.n:
            return
        self._last = max(self._last, c.last)
        self._ids += c.ids
        self._odd_ids.update({self._n + row: entry_id for row, entry_id in c.odd_ids.items()})
        self._ts.extend(c.ts)
        self._amounts.extend(c.amounts)
        self._cat.extend(c.cat)
        for target, column in zip(
            (
                self._currency,
                self._resource,
                self._description,
                self._model,
                self._provider,
                self._pricing,
                self._service_tier,
                self._canonical_model,
            ),
            c.strings,
            strict=True,
        ):
            target.extend(column)
        for target, column in zip(self._tokens, c.tokens, strict=True):
            target.extend(column)
        self._latency.extend(c.latency)
        self._tags.extend(c.tags)
        if c.units:
            kept = self._units
            if len(kept) < self._n:  # rows since the last that had units
                kept.extend(repeat(NO_UNITS, self._n - len(kept)))
            kept.extend(c.units)
        # Last, and with no call between them (where a signal handler could read the store): the rows are in. A
        # batch out of order drops the order (rows among those before: ``_rows`` sorts them all again).
        if c.unsorted:
            self._unsorted, self._order = True, None
        self._n += c.n

    @staticmethod
    def _id_bytes(ids: Sequence[str]) -> tuple[bytes, dict[int, str]]:
        """The ids as 13 bytes each, and the ids that are not llmcost's 26 lowercase hex digits by row in ``ids``
        (kept as given; their bytes are zeros)."""
        joined = "".join(ids)
        if set(map(len, ids)) == {26}:
            try:
                raw = bytes.fromhex(joined)
            except ValueError:
                raw = b""
            if raw.hex() == joined:  # every id 26 lowercase hex digits (a C-level check; islower() is slower)
                return raw, {}
        out = bytearray()
        odd: dict[int, str] = {}
        for row, entry_id in enumerate(ids):
            try:
                one = bytes.fromhex(entry_id) if len(entry_id) == 26 and entry_id.islower() else b""
            except ValueError:
                one = b""
            if len(one) == 13:
                out += one
            else:
                out += bytes(13)
                odd[row] = entry_id
        return bytes(out), odd

    def _tag_indices(self, maps: Sequence[FrozenTags]) -> list[int]:
        # Found by identity first: the tracker hands one FrozenTags object to every entry of a block or decorator,
        # and hashing or comparing one runs Python code. Only maps kept alive in the table are remembered by id().
        found = list(map(self._tag_ids.get, map(id, maps)))
        if None in found:
            table = self._tag_maps
            for k, tag_map in enumerate(maps):
                if found[k] is None:
                    if tag_map:
                        i = found[k] = table(tag_map)
                        if table.values[i] is tag_map:
                            self._tag_ids[id(tag_map)] = i
                    else:
                        found[k] = 0
        return found  # type: ignore[return-value]  # every None was replaced

    def _rows(self, ordered: bool = True) -> list[int] | range:
        """Row numbers in (timestamp, id) order, as of now (``ordered=False``: in any order)."""
        with self._lock:
            self._columnize()
            n = self._n
            if not self._unsorted or not ordered:
                return range(n)
            kept = self._order
            if kept is None:  # (dropped by each batch that came out of order: ``_extend``)
                order = self._sorted_rows(n)
            elif len(kept) < n:
                # Rows moved in since the order was found, each after the one before: they follow it. (A new list:
                # a reader may still be going through the last one outside the lock.)
                order = [*kept, *range(len(kept), n)]
            else:
                return kept
            # Kept for the next read only if no rows came in meanwhile: a signal handler recording here (the lock is
            # this thread's already) may have moved a batch in out of order, which dropped the order; rows kept as
            # following this one would then be read as in order, and a read bounded in time would miss them.
            if self._n == n and self._order is kept:
                self._order = order
            return order

    def _sorted_rows(self, n: int) -> list[int]:
        """The first ``n`` row numbers in (timestamp, id) order (the caller holds the lock).

        Found by NumPy from copies of the columns: with a Python key per row, every read after threads had recorded
        out of order sorted the whole store again (0.10 s a ``total()`` at 200,000 rows)."""
        if self._odd_ids:  # ids that are not 26 hex digits compare as text
            ts, id_of = self._ts, self._id
            return sorted(range(n), key=lambda i: (ts[i], id_of(i)))
        import numpy as np

        # Copies (slices), not views: a column exporting its buffer cannot grow (see ``_columns``).
        stamps = np.frombuffer(self._ts[:n], dtype=np.int64)
        raw = np.frombuffer(self._ids[: 13 * n], dtype=np.uint8).reshape(n, 13)
        # An id's 13 bytes are in the order of its hex digits: compared as a big-endian 8-byte int, then the last 5.
        high = np.ascontiguousarray(raw[:, :8]).view(">u8").ravel()
        low_bytes = np.zeros((n, 8), dtype=np.uint8)
        low_bytes[:, 3:] = raw[:, 8:]
        low = low_bytes.view(">u8").ravel()
        order: list[int] = np.lexsort((low, high, stamps)).tolist()  # (stable: equal keys in row order, as sorted())
        return order

    def _time_rows(self, ordered: bool) -> tuple[list[int] | range, bool]:
        """``_rows(ordered)``, and whether they are in timestamp order: rows appended in order are, and so are rows
        whose order was found before (``_order``, extended as rows come in order). Rows out of order (threads
        recording at once) are sorted for this when there are enough that a check of each costs more than sorting
        them (NumPy sorts ~10 times faster than the checks read rows), else read in any order, each checked."""
        with self._lock:
            self._columnize()
            if not self._unsorted:
                return range(self._n), True
            if not ordered and self._order is None and (self._n < _SORT_TO_SLICE or self._odd_ids):
                # (Ids not of 26 hex digits are sorted as text, by a Python key per row: no faster than the checks.)
                return range(self._n), False
            return self._rows(True), True

    def _select(self, filters: Filters, ordered: bool = True) -> list[int] | range:
        ordered = ordered or filters.limit is not None
        since, until = filters.since, filters.until
        if since is None and until is None:
            rows, by_time = self._rows(ordered), False
        else:
            rows, by_time = self._time_rows(ordered)
        if filters.is_empty:
            return rows
        # The checks are made under the lock: a move (which holds it) adds to the tables of strings and tag maps
        # that they read, and a dict read as it grows raises ``RuntimeError``. The rows are then read outside it.
        with self._lock:
            checks: list[Callable[[int], bool]] = []
            ts = self._ts
            if by_time:
                # The period's rows are a slice of rows in timestamp order, found by bisection: a budget's first look
                # at a day of a big store (a new user's daily budget) reads that day's rows, not a check of every row.
                time_of = ts.__getitem__
                start = 0 if since is None else bisect_left(rows, micros(since), key=time_of)
                end = len(rows) if until is None else bisect_left(rows, micros(until), start, key=time_of)
                rows = rows[start:end]
            else:
                if since is not None:
                    lo = micros(since)
                    checks.append(lambda i: ts[i] >= lo)
                if until is not None:
                    hi = micros(until)
                    checks.append(lambda i: ts[i] < hi)
            if filters.category is not None:
                cats = {_CATEGORY_INDEX[CostCategory(c)] for c in filters.category}
                cat = self._cat
                checks.append(lambda i: cat[i] in cats)
            for wanted, column in (
                (filters.resource, self._resource),
                (filters.provider, self._provider),
            ):
                if wanted is not None:
                    checks.append(_member(column, self._strings.matching(wanted)))
            if filters.model is not None:  # the id as returned or the canonical one
                models = self._strings.matching(filters.model)
                model_col, canonical_col = self._model, self._canonical_model
                checks.append(lambda i: model_col[i] in models or canonical_col[i] in models)
            if filters.tags:
                want = dict(filters.tags)
                allowed = {
                    i
                    for tags, i in self._tag_maps.index.items()
                    if tags is not None and all(tags.get(k) == v for k, v in want.items())
                }
                tag_col = self._tags
                checks.append(lambda i: tag_col[i] in allowed)
        if not checks:  # (a limit alone: the first rows, without a look at each)
            return rows if filters.limit is None else rows[: filters.limit]
        if len(checks) == 1:
            out = list(filter(checks[0], rows))
        else:
            out = [i for i in rows if all(check(i) for check in checks)]
        return out if filters.limit is None else out[: filters.limit]

    def _id(self, i: int) -> str:
        odd = self._odd_ids.get(i) if self._odd_ids else None
        return odd if odd is not None else self._ids[13 * i : 13 * i + 13].hex()

    def _entry(self, i: int) -> CostEntry:
        v = self._strings.values
        t = self._tokens
        latency = self._latency[i]
        units = self._units
        return trusted_entry(
            self._id(i),
            from_micros(self._ts[i]),
            self._amounts[i],
            _CATEGORIES[self._cat[i]],
            v[self._resource[i]],
            v[self._description[i]],
            v[self._model[i]],
            v[self._provider[i]],
            trusted_usage(t[0][i], t[1][i], t[2][i], t[3][i], t[4][i], units[i] if i < len(units) else NO_UNITS),
            None if latency != latency else latency,
            self._tag_maps.values[self._tags[i]] or EMPTY_TAGS,
            v[self._pricing[i]],
            v[self._currency[i]],
            v[self._service_tier[i]],
            v[self._canonical_model[i]],
        )

    def _entries(self, filters: Filters) -> list[CostEntry]:
        return [self._entry(i) for i in self._select(filters)]

    def _total(self, filters: Filters) -> Decimal:
        amounts = self._amounts
        with localcontext() as ctx:
            ctx.prec = _EXACT_DIGITS  # sums never round, whatever the magnitudes
            return +sum((amounts[i] for i in self._select(filters, ordered=False)), ZERO)  # (a sum: any order)

    def _columns(self, rows: list[int] | range) -> dict[str, Any]:
        """One array per column for ``rows``, as ``_rows.frame_from_arrays`` and ``ingest_arrays`` take them:
        timestamps as epoch microseconds, tags as indices into ``self._tag_maps.values``."""
        import numpy as np

        index = np.asarray(rows, dtype=np.int64)

        def take(column: array[Any], dtype: str) -> np.ndarray:
            return np.frombuffer(column, dtype=dtype)[index] if len(column) else np.zeros(0, dtype=dtype)

        # The arrays are read in place (``np.frombuffer``) only under the lock, each view let go of as its rows are
        # copied out: an array exporting its buffer cannot grow, and a move (``_extend``, which holds the lock)
        # grows every column. Read without it, a writer's move during a reader's copy raised ``BufferError`` out of
        # ``record()`` and lost the batch it was moving.
        with self._lock:
            taken = {
                "timestamp": take(self._ts, "int64"),
                "category": take(self._cat, "int8"),
                "latency_ms": take(self._latency, "float64"),
                "tags": take(self._tags, "int32"),
                **{name: take(getattr(self, f"_{name}"), "int32") for name in _STRING_COLUMNS},
                **{name: take(column, "int64") for name, column in zip(TOKEN_COLUMNS, self._tokens, strict=True)},
            }
            strings = np.asarray(self._strings.values, dtype=object)  # (a move adds to it as it is read)
        columns: dict[str, Any] = {
            **taken,
            "id": np.asarray([self._id(i) for i in index], dtype=object),
            "amount": [self._amounts[i] for i in index],
            "category": np.asarray([c.value for c in _CATEGORIES], dtype=object)[taken["category"]],
        }
        units = self._units
        with_units = len(units)
        columns["units"] = [
            dict(units[i]) if i < with_units and units[i] is not NO_UNITS else None for i in index.tolist()
        ]
        for name in _STRING_COLUMNS:
            columns[name] = strings[taken[name]]
        return columns

    def _scan(self, filters: Filters) -> pd.DataFrame:
        columns = self._columns(list(self._select(filters)))
        maps = [dict(t) if t is not None else {} for t in self._tag_maps.values]
        columns["tags"] = [maps[i] for i in columns["tags"].tolist()]
        return frame_from_arrays(columns)

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run DuckDB ``sql`` against a relation named ``entries`` holding this store's rows (see ``CostStore``)."""
        import json

        columns = self._columns(self._rows())  # first: it moves pending entries (and their tag maps) in
        texts = [json.dumps(dict(t) if t is not None else {}, ensure_ascii=False) for t in self._tag_maps.values]
        return query_rows(ingest_arrays(columns, texts), sql, params)

    def __len__(self) -> int:
        with self._lock:
            return self._n + len(self._pending)

    def close(self) -> None:
        """Nothing to release: the entries stay until the object is dropped."""

    def save_budget(self, name: str, definition: str) -> None:
        """Keep the budget definition ``definition`` under ``name``."""
        with self._lock:
            self._budgets[name] = definition

    def load_budgets(self) -> dict[str, str]:
        """Every saved budget definition, by name."""
        with self._lock:
            return dict(self._budgets)

    def delete_budget(self, name: str) -> bool:
        """Forget the budget ``name``; return whether it existed."""
        with self._lock:
            return self._budgets.pop(name, None) is not None
