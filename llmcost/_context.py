"""What is active in the current context: tags, guards (budgets), and the global on/off switch.

Everything here follows ``contextvars``, so threads and asyncio tasks each see their own tags and budgets, and a
context manager restores exactly what it found.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from ._entry import EMPTY_TAGS, FrozenTags, intern_tags, to_tags

if TYPE_CHECKING:
    from ._entry import CostEntry
    from ._tracker import CostTracker

__all__ = [
    "Guard",
    "PendingCall",
    "active_guards",
    "current_tags",
    "entered_guard",
    "is_active",
    "set_active",
    "tags",
]

_tags: contextvars.ContextVar[FrozenTags] = contextvars.ContextVar("llmcost_tags", default=EMPTY_TAGS)
_guards: contextvars.ContextVar[tuple[Guard, ...]] = contextvars.ContextVar("llmcost_guards", default=())
_active = [True]


def set_active(active: bool) -> None:
    """Turn tracking and budget enforcement on or off for the whole process (tests, emergencies).

    While off, ``@track_cost`` calls the wrapped function and records nothing, and budgets refuse nothing.
    ``CostTracker.record`` still records: it is an explicit request.

    Example::

        llmcost.set_active(False)   # e.g. in a test that should not touch the cost store
    """
    _active[0] = bool(active)


def is_active() -> bool:
    """Whether tracking and enforcement are on (see ``set_active``)."""
    return _active[0]


def current_tags() -> FrozenTags:
    """The tags that ``llmcost.tags(...)`` blocks have set in this context."""
    return _tags.get()


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


def active_guards() -> tuple[Guard, ...]:
    """The guards (budgets) entered in this context, outermost first."""
    return _guards.get()


@contextlib.contextmanager
def entered_guard(guard: Guard) -> Iterator[None]:
    """Make ``guard`` active for the block (used by ``budget``)."""
    token = _guards.set((*_guards.get(), guard))
    try:
        yield
    finally:
        _guards.reset(token)


@attrs.define(slots=True)
class PendingCall:
    """A tracked call about to be made: what a guard gets to decide whether to let it through.

    ``estimate()`` is the expected cost (or ``None`` when nothing is known); it is computed on first use from the
    decorator's ``estimate=``, the call's own LLM request arguments, or recent calls of the same resource and model.
    """

    tracker: CostTracker
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
            self._estimate = _estimator()(self)
            self._estimated = True
        return self._estimate


def _estimator() -> Any:
    # Imported on first use (it needs the token counter) and kept: an import statement per call costs ~0.5 µs.
    global _estimate_call
    if _estimate_call is None:
        from ._estimate import estimate_call

        _estimate_call = estimate_call
    return _estimate_call


_estimate_call: Any = None


class Guard(Protocol):
    """What the tracking engine asks of a budget. Implemented by ``Budget``.

    ``before_call`` may raise ``BudgetExceeded`` to refuse the call; what it returns is handed back to
    ``after_call`` with the recorded entry (``None`` when the call failed or recorded nothing), so a reservation can
    be released. ``on_recorded`` sees every entry recorded while the guard is active.
    """

    def before_call(self, call: PendingCall) -> object: ...

    def after_call(self, token: object, entry: CostEntry | None) -> None: ...

    def on_recorded(self, tracker: CostTracker, entry: CostEntry) -> None: ...
