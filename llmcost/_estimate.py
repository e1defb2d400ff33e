"""What a tracked call will probably cost, before it is made (for budgets).

In order: the decorator's ``estimate=``; else the call's own LLM request arguments (``model`` with ``messages``,
``input``, ``prompt`` or ``contents``, and ``max_tokens``/``max_output_tokens``/``max_completion_tokens``); else
the mean of recent calls of the same resource and model (``RecentCosts``, kept by each tracker); else nothing is
known (``None``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from decimal import Decimal
from itertools import islice
from math import ceil as _ceil
from typing import Any, Protocol

from . import _state
from ._entry import CostEntry
from ._money import atto_of, from_atto, to_money
from ._tokens import MESSAGE_OVERHEAD, REPLY_OVERHEAD, estimated_amount

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "CallFacts",
    "RecentCostSource",
    "RecentCosts",
    "estimate_call",
    "request_estimate",
    "request_estimate_atto",
]

#: Output tokens assumed for a request that sets no output limit.
DEFAULT_OUTPUT_TOKENS = 500
# What ``request_estimate`` reads of the chat requests' estimates kept by ``_tokens.estimated_amount``: by model counted
# by the heuristic, (ASCII characters per token, ``None`` for the tokenizer, its text counts, its
# ``message_tokens_table``, the prices' generation, the amounts by (input tokens, output tokens), each with its 10**-18
# units), at the prices in force (the dict is emptied as they change).
_kept_amounts: dict[str, Any] = _state.heuristic_amounts
_PER_MESSAGE = MESSAGE_OVERHEAD
_PER_REPLY = REPLY_OVERHEAD
_PROMPT_KEYS = ("messages", "input", "prompt", "contents")
_LIMIT_KEYS = ("max_tokens", "max_output_tokens", "max_completion_tokens")


class RecentCostSource(Protocol):
    """Where the recent-calls statistic comes from (a ``CostTracker``, which keeps a ``RecentCosts``)."""

    def recent_cost(self, resource: str | None, model: str | None) -> Decimal | None: ...


class CallFacts(Protocol):
    """What an estimate is made from (``_context.PendingCall`` has it)."""

    @property
    def tracker(self) -> RecentCostSource: ...
    @property
    def resource(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def args(self) -> tuple[Any, ...]: ...
    @property
    def kwargs(self) -> dict[str, Any]: ...
    @property
    def explicit_estimate(self) -> Any: ...


def _explicit(value: Any, pending: CallFacts) -> Decimal:
    if callable(value):
        value = value(*pending.args, **pending.kwargs)
    amount = getattr(value, "amount", value)  # an Estimate
    return to_money(amount, "estimate")


def request_estimate(kwargs: Mapping[str, Any], model: str | None) -> Decimal | None:
    """The expected cost of a call from its own LLM request arguments ``kwargs`` (``model``, defaulting to
    ``model``; the prompt; the output limit), or ``None`` when they do not say (an unreadable request included).

    >>> request_estimate({"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 400}],
    ...                   "max_tokens": 100}, None)
    Decimal('0.001265')
    """
    found = request_estimate_atto(kwargs, model)
    return None if found is None else found[0]


def request_estimate_atto(kwargs: Mapping[str, Any], model: str | None) -> tuple[Decimal, int | None] | None:
    """``request_estimate`` as ``(amount, atto)``: with the same in 10**-18 units (a budget's figures) where it was
    kept so, else ``None`` there (the per-call path of a budgeted call with request arguments).

    >>> request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 100}
    >>> request_estimate(request, None)  # (priced, and kept with its units)
    Decimal('0.001265')
    >>> request_estimate_atto(request, None)
    (Decimal('0.001265'), 1265000000000000)
    """
    # (One function, its loops written out: this runs before every budgeted call with request arguments.)
    try:
        found = kwargs.get("model")
        if isinstance(found, str):
            model = found
        if not model:
            return None
        prompt = kwargs.get("messages")
        limit = kwargs.get("max_tokens")
        if type(limit) is int and type(prompt) is list:
            # A chat request: what the rules below come to for it (``estimated_amount``). Its usual form is read here,
            # without another call (a tenth of the estimate's instructions): messages of plain ASCII text counted by
            # the heuristic as ``_tokens`` counts them (3 tokens for the reply; each message's 3 and its text's
            # ceiling of its length over the ratio read off the model's ``message_tokens_table`` for all but long
            # texts: half the instructions of dividing), priced at an amount kept for the model, at the prices in
            # force, with its 10**-18 units (``_state.heuristic_amounts``, as ``_tokens`` keeps it). Anything else (no
            # messages, a name, a message with no text, a part list, non-ASCII text, a tokenizer, no amount kept for
            # the counts, a negative limit: none is kept for it) and ``estimated_amount`` counts the whole prompt.
            kept = _kept_amounts.get(model)
            if kept is not None and prompt:
                table = kept[3]
                tokens = _PER_REPLY
                try:
                    for message in prompt:
                        if type(message) is not dict or "name" in message:
                            break
                        content = message["content"]  # (a message without one: ``KeyError``, counted below)
                        if type(content) is not str or not content.isascii():
                            break
                        try:
                            tokens += table[len(content)]
                        except IndexError:  # (a text too long for the table: ``CEIL_TABLE_CHARS``)
                            tokens += _PER_MESSAGE + _ceil(len(content) / kept[0])
                    else:
                        return kept[5][tokens, limit]  # type: ignore[no-any-return]  # (none kept: ``KeyError``)
                except KeyError:
                    pass
            return estimated_amount(model, prompt, limit if limit >= 0 else DEFAULT_OUTPUT_TOKENS), None
        for key in _PROMPT_KEYS:
            prompt = kwargs.get(key)
            if prompt is not None:
                break
        else:
            return None
        limit = None
        for key in _LIMIT_KEYS:
            value = kwargs.get(key)
            if isinstance(value, int):
                limit = value
                break
        if limit is None:
            config = kwargs.get("config")
            if isinstance(config, Mapping):
                limit = config.get("max_output_tokens")
        output = limit if isinstance(limit, int) and limit >= 0 else DEFAULT_OUTPUT_TOKENS
        if type(output) is bool:  # (an int to ``isinstance``, but no output limit: the request is unreadable)
            return None
        if type(prompt) is not list and isinstance(prompt, Mapping):  # (a list, the usual prompt, is no Mapping)
            prompt = [prompt]
        return estimated_amount(model, prompt, output), None
    except (TypeError, ValueError, KeyError):
        return None


def estimate_call(pending: CallFacts) -> Decimal | None:
    """The expected cost of ``pending`` in USD, or ``None`` when nothing is known.

    An ``estimate=`` that fails raises (it is the user's own code); an unreadable request falls through to the
    recent-calls statistic.
    """
    explicit = pending.explicit_estimate
    if explicit is not None:
        if type(explicit) is Decimal:  # the common case, a fixed estimate
            return to_money(explicit, "estimate")
        return _explicit(explicit, pending)
    found = request_estimate(pending.kwargs, pending.model)
    if found is not None:
        return found
    return pending.tracker.recent_cost(pending.resource, pending.model)


#: The (resource, model) keys a ``RecentCosts`` keeps at most: past them the older half is forgotten (their estimates
#: start again from their next calls), so a tracker recording a resource per tenant or per request does not grow
#: without end (1.7-3.1 KB a key, measured with tracemalloc).
MAX_KEYS = 10_000

#: The calls an estimate follows: a key's first ``SPAN`` calls are averaged exactly, and from then on each call
#: moves the estimate by ``2 / (SPAN + 1)`` of its difference from it (an exponentially weighted mean whose weights
#: have the center of mass of a ``SPAN``-call moving average: pandas' ``ewm(span=SPAN)``).
SPAN = 20


def _rounded_mean(total: int, count: int) -> int:
    """``total / count`` rounded half-even to a whole unit (money's 18 places, as ``round_money`` rounds)."""
    mean, rest = divmod(total, count)
    if rest and (2 * rest > count or (2 * rest == count and mean & 1)):
        mean += 1
    return mean


class _Window:
    """The estimate of one (resource, model), in ``10**-18`` units (``atto_of``): before means are asked for, the
    last ``SPAN`` amounts; from then on the mean (``mean``) of the calls counted (``count``, at most ``SPAN``), and
    while there are fewer than ``SPAN``, their sum and count (``first``)."""

    __slots__ = ("amounts", "count", "first", "mean")

    def __init__(self, size: int) -> None:
        #: The last amounts, ints of 10**-18 USD or Decimals (kept only until means are asked for: ``RecentCosts``).
        self.amounts: deque[int | Decimal] = deque(maxlen=size)
        self.mean: int | None = None
        self.count = 0
        #: (sum, count) of the first calls, replaced as one value: a child forked between two steps of ``add`` finds
        #: it whole (``settle``).
        self.first: tuple[int, int] = (0, 0)

    def add(self, atto: int) -> None:
        """Count ``atto``, one of the window's first calls (the caller holds the windows' lock)."""
        total, count = self.first
        self.first = (total + atto, count + 1)
        self.settle()

    def settle(self) -> None:
        """``mean`` and ``count`` from ``first`` (in a forked child too, whose parent thread may have been between)."""
        total, count = self.first
        if count:
            self.mean = _rounded_mean(total, count)
            self.count = count


class RecentCosts:
    """What the next call of a (resource, model) will probably cost, from the calls recorded: the fallback estimate
    each tracker keeps.

    The estimate is the mean of a key's first calls, up to ``window`` (20), then an exponentially weighted mean:
    each call moves it ``2 / (window + 1)`` of the way to the call's amount (pandas' ``ewm(span=window)``, whose
    weights have the center of mass of a ``window``-call moving average), the distance left rounded down to a whole
    10**-18 (so a run of one amount ends at it exactly). It follows a change of cost about as the mean of the last
    ``window`` calls would, and costs a few integer steps a call: no window to slide, no lock on the per-call path.
    Amounts are kept as ints of ``10**-MONEY_SCALE`` USD (``atto_of``; the tracker's pricing gives most calls' so),
    exact in any decimal context.

    Until an estimate is first asked for (a budget estimating a call), recording only appends the amount to a short
    window; the first estimate starts each key's mean from the amounts its window holds. Two threads recording the
    same key at the same instant may leave one of the two out (one sample fewer), rather than wait for each other.

    >>> recent = RecentCosts()
    >>> for amount in ("0.01", "0.02", "0.02"):
    ...     recent.observe_call("answer", "gpt-4o", Decimal(amount))
    >>> recent.mean("answer", None), recent.mean_atto("answer", "gpt-4o")
    (Decimal('0.016666666666666667'), 16666666666666667)
    """

    __slots__ = (
        "__weakref__",
        "_by_key",
        "_keep",
        "_lock",
        "_max_keys",
        "_of_resource",
        "_span",
        "_window",
        "summing",
    )

    def __init__(self, window: int = SPAN, max_keys: int = MAX_KEYS) -> None:
        self._window = window
        self._max_keys = max_keys
        # Each call after the first ``window`` keeps (window - 1)/(window + 1) of the mean's distance from its amount.
        self._keep, self._span = window - 1, window + 1
        self._by_key: dict[tuple[str | None, str | None], _Window] = {}
        self._of_resource: dict[str | None, tuple[_Window, ...]] = {}  # resource -> the windows of its models
        self._lock = _state.new_lock()  # the windows' dictionaries, and a window's first calls (free in a forked child)
        #: Whether estimates have been asked for: recording then updates each key's mean, counting ints.
        self.summing = False
        _state.register_fork_aware(self)

    def observe(self, entry: CostEntry) -> None:
        """Count ``entry``'s amount in the window of its resource and model."""
        self.observe_call(entry.resource, entry.model, entry.amount)

    def observe_call(self, resource: str | None, model: str | None, amount: Decimal, atto: int | None = None) -> None:
        """Count ``amount``, the cost of a call of ``resource`` and ``model`` (the per-call path: no entry needed);
        ``atto``: the same in 10**-18 units, if known (the tracker's pricing finds it for most calls)."""
        key = (resource, model)
        window = self._by_key.get(key)
        if window is None:
            window = self._add_window(key)
        if not self.summing:
            window.amounts.append(amount if atto is None else atto)  # (an append as means switch on may be left out)
            return
        if atto is None:
            atto = atto_of(amount)
        if window.count == self._window:
            # The usual call: the mean moved 2/(window + 1) of the way to ``atto``, its distance from ``atto`` rounded
            # down (a run of one amount ends at that amount exactly). Unlocked: a thread recording the same key at the
            # same instant may leave one of the two samples out.
            distance = window.mean - atto  # type: ignore[operator]  # (set: the window has counted calls)
            if distance >= 0:
                window.mean = atto + distance * self._keep // self._span
            else:
                window.mean = atto - -distance * self._keep // self._span
            return
        with self._lock:  # (a key's first calls: their exact mean)
            if window.count < self._window:
                window.add(atto)
                return
        self.observe_call(resource, model, amount, atto)  # (another thread filled it meanwhile)

    def forked(self) -> None:
        """In a forked child: each window still counting its first calls made whole (a parent thread may have been in
        the middle of ``_Window.add`` at the fork, which the child's lock no longer waits for)."""
        for window in tuple(self._by_key.values()):
            if window.count < self._window:
                window.settle()

    def _add_window(self, key: tuple[str | None, str | None]) -> _Window:
        with self._lock:
            window = self._by_key.get(key)
            if window is None:
                if len(self._by_key) >= self._max_keys:
                    self._forget_older_half()
                window = self._by_key[key] = _Window(self._window)
                resource = key[0]
                self._of_resource[resource] = (*self._of_resource.get(resource, ()), window)
            return window

    def _forget_older_half(self) -> None:
        """Keep only the newer half of the keys (the caller holds the lock). New dictionaries, swapped in whole: a
        thread reading them unlocked finds the old or the new (a window it holds already keeps counting, unread)."""
        kept = dict(islice(self._by_key.items(), len(self._by_key) // 2, None))
        windows: dict[str | None, list[_Window]] = {}
        for (resource, _), window in kept.items():
            windows.setdefault(resource, []).append(window)
        self._by_key, self._of_resource = kept, {resource: tuple(found) for resource, found in windows.items()}

    def _switch_on(self) -> None:
        """The first estimate asked for: each key's mean started from the amounts its window holds, and kept from
        now on as calls are recorded."""
        with self._lock:
            if self.summing:
                return
            for window in tuple(self._by_key.values()):
                amounts = tuple(window.amounts)  # (one C-level copy: an append racing with it is in or left out)
                window.amounts.clear()
                for value in amounts:
                    window.add(atto_of(value) if isinstance(value, Decimal) else value)
            self.summing = True

    def mean(self, resource: str | None, model: str | None) -> Decimal | None:
        """The estimate for the next call of ``resource`` and ``model`` (``None``: of any model of the resource),
        rounded half-even to money's 18 places; ``None`` when no call of it was recorded.

        >>> recent = RecentCosts(window=2)
        >>> recent.mean("f", "m") is None  # (none recorded yet; estimates are kept from the first one asked for)
        True
        >>> for amount in ("0.03", "0.01", "0.035"):
        ...     recent.observe_call("f", "m", Decimal(amount))
        >>> recent.mean("f", "m")  # 0.02, the mean of the first two, moved 2/3 of the way to 0.035
        Decimal('0.03')
        """
        atto = self.mean_atto(resource, model)
        return None if atto is None else from_atto(atto)

    def mean_atto(self, resource: str | None, model: str | None) -> int | None:
        """``mean`` in 10**-18 units (the per-call path: budgets reserve ints)."""
        if not self.summing:
            self._switch_on()
        if model is not None:
            found = self._by_key.get((resource, model))
            return None if found is None else found.mean
        # A decorator often knows no model before the call: then the recent calls of every model of the resource
        # count, each model's estimate weighted by the calls it counts.
        windows = self._of_resource.get(resource)
        if windows is None:
            return None
        if len(windows) == 1:  # the usual case: one model
            return windows[0].mean
        total = count = 0
        for window in windows:
            mean, n = window.mean, window.count
            if mean is not None and n:
                total, count = total + mean * n, count + n
        return _rounded_mean(total, count) if count else None
