"""What is active in the current context: tags, guards (budgets), and the global on/off switch.

Tags and guards follow ``contextvars``, so threads and asyncio tasks each see their own, and a context manager
restores exactly what it found. The switch is process state (``_state.active``).

This module knows trackers and budgets only through the protocols below (``TrackerLike``, ``Guard``), so it sits
under both in the import graph.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

import attrs

from . import _state
from ._entry import EMPTY_TAGS, CostEntry, FrozenTags, intern_tags, to_tags
from ._estimate import RecentCostSource, estimate_call

__all__ = [
    "NOT_CHECKED",
    "NO_GUARDS",
    "ONE_FILTERED",
    "ONE_UNFILTERED",
    "Guard",
    "GuardSet",
    "PendingCall",
    "SettledByEntry",
    "TrackerLike",
    "active_guards",
    "begin_settling",
    "current_tags",
    "end_settling",
    "is_active",
    "joined",
    "pop_guard",
    "push_guard",
    "set_active",
    "settling_token",
    "tags",
]

_tags: contextvars.ContextVar[FrozenTags] = contextvars.ContextVar("llmcost_tags", default=EMPTY_TAGS)


class GuardSet(tuple["Guard", ...]):
    """Guards active together (those entered in a context, or a tracker's own), outermost first, with what every one
    of them offers found once, when the set is made: the per-call path reads these instead of asking each guard.

    ``unfiltered``: every guard's ``Guard.unfiltered``; ``counts_rows``: every guard's ``Guard.counts_rows``. A set
    of one guard that counts rows and settles its call's token with the row (``Guard.settle_row``) is of the kind
    ``ONE_UNFILTERED`` or ``ONE_FILTERED``: a call under it alone keeps its one ``(guard, token)`` as two values, not
    in a list of pairs.
    """

    # The two flags are class attributes of the kind of set made (``_KINDS``): a set has no ``__dict__``, so the
    # per-call path finds them without an instance lookup (a tuple subclass's own attributes cannot be slots).
    __slots__ = ()
    unfiltered: bool = True
    counts_rows: bool = True

    def __new__(cls, guards: Iterable[Guard] = ()) -> GuardSet:
        items = tuple(guards)
        unfiltered = all(getattr(guard, "unfiltered", False) for guard in items)
        counts_rows = all(getattr(guard, "counts_rows", False) for guard in items)
        one = (
            len(items) == 1
            and counts_rows
            and callable(getattr(items[0], "settle_row", None))
            and isinstance(getattr(items[0], "context_free", None), bool)  # (read on the one-guard path)
        )
        return tuple.__new__(_KINDS[unfiltered, counts_rows, one], items)

    def __reduce__(self) -> tuple[type[GuardSet], tuple[tuple[Guard, ...]]]:
        # (The kinds share one name: a copy or pickle is made again by ``GuardSet``, which picks the kind.)
        return GuardSet, (tuple(self),)


#: The kind of ``GuardSet`` made for each ``(unfiltered, counts_rows, one)`` (``one``: a single guard that settles
#: its call's token with the row, ``Guard.settle_row``).
_KINDS: dict[tuple[bool, bool, bool], type[GuardSet]] = {
    (unfiltered, counts_rows, one): type(
        "GuardSet", (GuardSet,), {"__slots__": (), "unfiltered": unfiltered, "counts_rows": counts_rows}
    )
    for unfiltered in (True, False)
    for counts_rows in (True, False)
    for one in (True, False)
}

#: The kind of a ``GuardSet`` of one guard that checks every call alike (``Guard.unfiltered``), counts rows and
#: settles its call's token with the row (``Guard.settle_row``): the per-call path tells it by ``type(guards) is``,
#: quicker than reading a flag off the set's class.
ONE_UNFILTERED: type[GuardSet] = _KINDS[True, True, True]
#: As ``ONE_UNFILTERED``, of one guard that checks only some calls.
ONE_FILTERED: type[GuardSet] = _KINDS[False, True, True]


#: What ``Guard.reserve_checked`` returns for a call the guard does not check.
NOT_CHECKED: Any = object()

#: No guards.
NO_GUARDS = GuardSet()


def joined(first: GuardSet, second: GuardSet) -> GuardSet:
    """The guards of ``first`` then those of ``second`` not in ``first`` (either one itself when the other is
    empty). A guard in both (a tracker's budget also entered with ``with``) checks and counts each call once."""
    if not first:
        return second
    if not second:
        return first
    more = [guard for guard in second if not any(guard is own for own in first)]
    if not more:
        return first
    return GuardSet((*first, *more))


_guards: contextvars.ContextVar[GuardSet] = contextvars.ContextVar("llmcost_guards", default=NO_GUARDS)
# The reservations of the tracked call whose entry is being recorded right now: a guard that reserved for the call
# settles its reservation with the entry as it is recorded (``on_recorded``), in one step.
_settling: contextvars.ContextVar[Sequence[tuple[Any, object]]] = contextvars.ContextVar("llmcost_settling", default=())


def set_active(active: bool) -> None:
    """Turn tracking and budget enforcement on or off for the whole process (tests, emergencies).

    While off, ``@track_cost`` calls the wrapped function and records nothing, and budgets refuse nothing.
    ``CostTracker.record`` still records: it is an explicit request.

    Example::

        llmcost.set_active(False)   # e.g. in a test that should not touch the cost store
    """
    _state.set_active(bool(active))


def is_active() -> bool:
    """Whether tracking and enforcement are on (see ``set_active``).

    Example::

        >>> llmcost.is_active()
        True
        >>> llmcost.set_active(False)
        >>> llmcost.is_active()
        False
        >>> llmcost.set_active(True)
    """
    return _state.active


#: ``current_tags()``: the tags that ``llmcost.tags(...)`` blocks have set in this context. The context variable's
#: own ``get``, not a function around it: every tracked call asks.
current_tags: Callable[[], FrozenTags] = _tags.get


@contextlib.contextmanager
def tags(**values: str) -> Iterator[FrozenTags]:
    """Add ``values`` as tags to every entry recorded inside the block; blocks nest, inner values win.

    Thread- and asyncio-safe: each thread and task sees only the tags of its own blocks (tasks inherit the tags of
    the context that created them).

    Example::

        with llmcost.tags(team="search", env="prod"):
            answer(question)          # recorded with team=search, env=prod
    """
    added = to_tags(values)
    outer = _tags.get()
    merged = intern_tags({**outer, **added}) if outer else added
    token = _tags.set(merged)
    try:
        yield merged
    finally:
        _tags.reset(token)


#: ``active_guards()``: the guards (budgets) entered in this context, outermost first (the context variable's
#: own ``get``: every tracked call asks, twice).
active_guards: Callable[[], GuardSet] = _guards.get


def push_guard(guard: Guard) -> contextvars.Token[GuardSet]:
    """Make ``guard`` active in this context, innermost; ``pop_guard`` with the token returned undoes it.

    A guard already active stays where it is (a budget entered again, as when a function under ``@budget`` calls
    itself, must check and count each call once, not once per entry); so does one active already under another name,
    the same budget to the ledger (``same_budget``: two equal unnamed period budgets share one account, and each
    would reserve every call in it again)."""
    active = _guards.get()
    for entered in active:
        if entered is guard:
            return _guards.set(active)
        same = getattr(entered, "same_budget", None)
        if same is not None and same(guard):
            return _guards.set(active)
    return _guards.set(GuardSet((*active, guard)))


def pop_guard(token: contextvars.Token[GuardSet]) -> None:
    """Restore the guards as they were before the ``push_guard`` that returned ``token``."""
    _guards.reset(token)


class SettledByEntry:
    """Base of the ``before_call`` tokens that their guard settles with the call's entry as it is recorded (found
    with ``settling_token``); a token that is a ``list`` is one too (a guard's cheapest mutable token: ``Budget``'s
    call served from a lease). A call whose tokens are all of other kinds needs no settling context at all."""

    __slots__ = ()


def begin_settling(
    reservations: Sequence[tuple[Any, object]],
) -> contextvars.Token[Sequence[tuple[Any, object]]] | None:
    """Mark ``reservations`` (``(guard, token)`` pairs from ``before_call``) as those of the entry about to be
    recorded in this context; ``end_settling`` with the token returned undoes it. ``None`` (nothing to undo) when no
    token is a ``SettledByEntry`` (or a list): then no guard looks for them."""
    for _, token in reservations:
        if isinstance(token, SettledByEntry) or type(token) is list:
            return _settling.set(reservations)
    return None


def end_settling(token: contextvars.Token[Sequence[tuple[Any, object]]] | None) -> None:
    """Undo the ``begin_settling`` that returned ``token`` (``None``: it set nothing, so nothing to undo)."""
    if token is not None:
        _settling.reset(token)


def settling_token(guard: object, wanted: Callable[[object], bool]) -> object | None:
    """The first token ``guard`` returned for the call being recorded that ``wanted`` accepts (or ``None``)."""
    for owner, token in _settling.get():
        if owner is guard and wanted(token):
            return token
    return None


@attrs.define(slots=True)
class PendingCall:
    """A tracked call about to be made: what a guard gets to decide whether to let it through.

    ``estimate()`` is the expected cost (or ``None`` when nothing is known); it is computed on first use from the
    decorator's ``estimate=``, the call's own LLM request arguments, or recent calls of the same resource and model.
    """

    tracker: TrackerLike
    resource: str | None
    model: str | None
    category: str
    tags: FrozenTags
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = attrs.field(factory=dict)
    explicit_estimate: Any = None
    _estimate: Decimal | None = None
    _estimated: bool = False

    def estimate(self) -> Decimal | None:
        """The expected cost of the call in USD, or ``None`` when nothing is known."""
        if not self._estimated:
            self._estimate = estimate_call(self)
            self._estimated = True
        return self._estimate


class TrackerLike(RecentCostSource, Protocol):
    """What a pending call and a guard see of a tracker (``CostTracker`` implements it): guards compare trackers by
    identity, and estimates read ``recent_cost``."""


class Guard(Protocol):
    """What the tracking engine asks of a budget. Implemented by ``Budget``.

    ``before_call`` may raise ``BudgetExceeded`` to refuse the call; what it returns is handed back to
    ``after_call`` with the recorded entry (``None`` when the call failed, recorded nothing, or was recorded as a
    row without a ``CostEntry``), so a reservation can be released. ``on_recorded`` sees every entry recorded while
    the guard is active.

    A guard whose ``counts_rows`` is true may be given a recorded entry's fields (``on_recorded_row``) in place of
    the ``CostEntry``, so a tracked call under it keeps the tracker's row path (no entry built). It is given the
    call's open reservations too (``(guard, token)`` pairs from ``before_call``, a list of the call's own): a guard
    that settles its reservation there takes the pair out of the list, and ``after_call`` is then not asked for it.
    ``checked``: each guard with a reservation there matched the call (``checks_call``) on these very resource,
    category and tags, so it need not match them again (the model it checks again: it may not have been known).
    ``recorded_us``: the entry's timestamp as epoch microseconds (``None``: now).

    A recorded ``CostEntry`` of a call whose first open reservation is a guard's own is offered to that guard with
    its ``token`` first (``settle_recorded``; ``recorded_us`` as above, ``matched`` as ``checked``): ``True`` means
    the guard counted the entry and settled the token in one step, and the tracker takes the pair out of the call's
    reservations (``on_recorded`` and ``after_call`` are not asked); ``False``: nothing was done, ``on_recorded``
    counts it (finding its token with ``settling_token``). For a call that this guard alone reserved for, it is asked
    in the caller's decimal context, which may be narrow: a guard that needs exact ``Decimal`` steps there takes a
    wide context itself (``_money.in_exact_context``).

    ``settle_row`` (optional: a guard without it is always given ``on_recorded_row``) is ``on_recorded_row`` for a call
    that this guard alone reserved for, given that reservation's ``token`` in place of the call's list of pairs: it
    counts the row as ``on_recorded_row`` would and settles ``token`` exactly once, whatever happens (also when it
    raises): in the same step as the amount is counted, or else released as ``after_call`` releases it. The tracker
    then settles nothing more of it (``after_call`` is not asked).

    Amounts the tracker priced reach the guard also as ints of ``10**-MONEY_SCALE`` USD (``atto``, ``None`` where
    not known: ``_money.atto_of`` finds it), which a guard may count in place of the Decimal: its figures are then
    exact in any decimal context, at a quarter of the instructions.

    A guard whose ``unfiltered`` is true checks every call of its tracker alike, whatever its resource, model,
    category or tags: ``reserve_estimate(tracker, estimate)`` may stand in for ``before_call`` (no ``PendingCall``;
    the estimate given as a Decimal, or as ``None`` with ``atto``: known in 10**-18 units only).
    So may it for any guard once ``checks_call`` (the call's tracker, resource, category, tags, model and request
    arguments) said that the guard checks the call, as ``before_call`` decides; ``reserve_checked`` is the two in one
    step, returning ``NOT_CHECKED`` for a call the guard does not check.
    """

    counts_rows: bool
    unfiltered: bool
    #: Its figures and estimates are exact in any decimal context (ints of 10**-18 USD): a call under it alone is
    #: checked and settled in the caller's context, however narrow (else in a wide one: ``EXACT_DIGITS``).
    context_free: bool

    def before_call(self, call: PendingCall) -> object: ...

    def reserve_estimate(self, tracker: TrackerLike, needed: Decimal | None, atto: int | None = None) -> object: ...

    def reserve_checked(
        self,
        tracker: TrackerLike,
        resource: str | None,
        category: str,
        tags: FrozenTags,
        model: str | None,
        kwargs: Mapping[str, Any],
        needed: Decimal,
        atto: int | None = None,
    ) -> object: ...

    def checks_call(
        self,
        tracker: TrackerLike,
        resource: str | None,
        category: str,
        tags: FrozenTags,
        model: str | None,
        kwargs: Mapping[str, Any],
    ) -> bool: ...

    def after_call(self, token: object, entry: CostEntry | None) -> None: ...

    def on_recorded(self, tracker: TrackerLike, entry: CostEntry, atto: int | None = None) -> None: ...

    def settle_recorded(
        self, tracker: TrackerLike, entry: CostEntry, token: object, recorded_us: int, matched: bool, atto: int | None
    ) -> bool: ...

    def on_recorded_row(
        self,
        tracker: TrackerLike,
        amount: Decimal,
        resource: str | None,
        category: str,
        tags: FrozenTags,
        reservations: list[tuple[Any, object]] | None,
        model: str | None = None,
        canonical_model: str | None = None,
        checked: bool = False,
        recorded_us: int | None = None,
        atto: int | None = None,
    ) -> None: ...

    # (``settle_row(tracker, token, amount, resource, category, tags, model, canonical_model, checked, recorded_us,
    # atto)`` is optional, so not declared here: ``GuardSet`` looks for it.)
