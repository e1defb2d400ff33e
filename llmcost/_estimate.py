"""What a tracked call will probably cost, before it is made (for budgets).

In order: the decorator's ``estimate=``; else the call's own LLM request arguments (``model`` with ``messages``,
``input``, ``prompt`` or ``contents``, and ``max_tokens``/``max_output_tokens``/``max_completion_tokens``); else
the mean of recent calls of the same resource and model (``RecentCosts``, kept by each tracker); else nothing is
known (``None``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from decimal import Decimal
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


class _Window:
    """The last amounts of one (resource, model), in ``10**-18`` units (``atto_of``), and (once means are asked for)
    their sum."""

    __slots__ = ("amounts", "state")

    def __init__(self, size: int) -> None:
        #: Ints of 10**-18 USD; a ``Decimal`` appended while no sum is kept is made one by ``resync``.
        self.amounts: deque[int | Decimal] = deque(maxlen=size)
        #: (sum, count) of ``amounts``, replaced as one value so a reader never sees one without the other.
        self.state: tuple[int, int] = (0, 0)

    def resync(self) -> None:
        """Sum ``amounts`` afresh, each an int now (caller holds the sums' token)."""
        amounts = self.amounts
        values = tuple(amounts)  # one C-level copy: an append racing with it is either in or out
        while any(isinstance(value, Decimal) for value in values):
            ints = [atto_of(value) if isinstance(value, Decimal) else value for value in values]
            # (An append racing with the copy and these two, by a thread that has not seen the sums switched on, is
            # lost or lands first: one sample fewer or older. The sum below is of what the window then holds.)
            amounts.clear()
            amounts.extend(ints)
            values = tuple(amounts)
        self.state = (sum(values), len(values))  # type: ignore[arg-type]  # (ints: converted above)


class RecentCosts:
    """The mean cost of the last few calls per (resource, model), kept by each tracker: the fallback estimate.

    Amounts are kept as ints of ``10**-MONEY_SCALE`` USD (``atto_of``; the tracker's pricing gives most calls' so):
    sums of them are exact in any decimal context, and a quarter of the instructions of Decimal sums. Until a mean
    is first asked for (a budget estimating a call), recording only appends the amount. From then on each window
    also keeps its running sum, so a mean costs one division. Recording threads never wait for each other: a
    thread that finds the sums being updated by another leaves its amount out (one sample fewer; the mean stays the
    mean of the amounts kept).

    Who updates the sums holds the one token of ``_sums`` (a list holding it, or empty): a recording thread tries
    to ``pop`` it, a C-level step that either takes it or raises ``IndexError``, and gives it back with ``append``.
    That is a quarter of the instructions of a ``Lock``'s ``acquire(False)`` and ``release`` (whose argument parsing
    is most of them), on every recorded call once means are asked for. The rarer steps that must have the sums
    (switching them on, summing a window afresh) wait for the token (``_take_sums``); a forked child is given a
    token back (``forked``).

    >>> recent = RecentCosts()
    >>> for amount in ("0.01", "0.02", "0.02"):
    ...     recent.observe_call("answer", "gpt-4o", Decimal(amount))
    >>> recent.mean("answer", None), recent.mean_atto("answer", "gpt-4o")
    (Decimal('0.016666666666666667'), 16666666666666667)
    """

    __slots__ = ("__weakref__", "_by_key", "_lock", "_of_resource", "_sums", "_window", "summing")

    def __init__(self, window: int = 20) -> None:
        self._window = window
        self._by_key: dict[tuple[str | None, str | None], _Window] = {}
        self._of_resource: dict[str | None, tuple[_Window, ...]] = {}  # resource -> the windows of its models
        self._lock = _state.new_lock()  # the windows' dictionaries (free again in a forked child)
        self._sums: list[bool] = [True]  # the token of the running sums (see the class's docstring)
        #: Whether the windows keep running sums (from the first mean asked for on): recording then counts ints.
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
            window.amounts.append(amount if atto is None else atto)
            if self.summing:  # means were switched on meanwhile: the sums may have missed this amount
                self._take_sums()
                try:
                    window.resync()
                finally:
                    self._sums.append(True)
            return
        if atto is None:
            atto = atto_of(amount)
        sums = self._sums
        try:
            sums.pop()
        except IndexError:
            return  # another thread is updating: skip this sample rather than wait on the per-call path
        try:
            amounts = window.amounts
            total, count = window.state
            if count == self._window:
                out = amounts[0]  # the amount the append below pushes out
                if type(out) is not int:
                    # (Rare) a Decimal a thread appended as the sums switched on, before it summed its window afresh
                    # (it waits for this token to): the window summed afresh here, its amounts made ints.
                    amounts.append(atto)
                    window.resync()
                    return
                total -= out
                count -= 1
            amounts.append(atto)
            window.state = (total + atto, count + 1)
        finally:
            sums.append(True)

    def _take_sums(self) -> None:
        """Wait for the token of the running sums (give it back with ``self._sums.append(True)``)."""
        sums = self._sums
        while True:
            try:
                sums.pop()
                return
            except IndexError:
                time.sleep(0)  # another thread is updating them: let it finish (a few hundred ns)

    def forked(self) -> None:
        """In a forked child: the token back (a parent thread may have held it), and the sums afresh (that thread
        may have been between an append and its sum)."""
        self._sums[:] = [True]
        if self.summing:
            for window in tuple(self._by_key.values()):
                window.resync()

    def _add_window(self, key: tuple[str | None, str | None]) -> _Window:
        with self._lock:
            window = self._by_key.get(key)
            if window is None:
                window = self._by_key[key] = _Window(self._window)
                resource = key[0]
                self._of_resource[resource] = (*self._of_resource.get(resource, ()), window)
            return window

    def mean(self, resource: str | None, model: str | None) -> Decimal | None:
        """The mean cost of the recent calls of ``resource`` and ``model`` (``None``: of every model of the
        resource), rounded half-even to money's 18 places; ``None`` when there are none."""
        atto = self.mean_atto(resource, model)
        return None if atto is None else from_atto(atto)

    def mean_atto(self, resource: str | None, model: str | None) -> int | None:
        """``mean`` in 10**-18 units (the per-call path: budgets reserve ints)."""
        if not self.summing:
            with self._lock:
                self._take_sums()
                try:
                    self.summing = True
                    for window in tuple(self._by_key.values()):
                        window.resync()
                finally:
                    self._sums.append(True)
        if model is not None:
            found = self._by_key.get((resource, model))
            if found is None:
                return None
            total, count = found.state
        else:
            # A decorator often knows no model before the call: then the recent calls of every model of the
            # resource count.
            windows = self._of_resource.get(resource)
            if windows is None:
                return None
            if len(windows) == 1:  # the usual case: one model
                total, count = windows[0].state
            else:
                total, count = 0, 0
                for window in windows:
                    part, n = window.state
                    total, count = total + part, count + n
        if not count:
            return None
        # Rounded half-even to a whole unit (money's 18 places), as ``round_money`` rounds: a budget adds the
        # estimate to what it has committed and takes it away as the call settles.
        mean, rest = divmod(total, count)
        if rest and (2 * rest > count or (2 * rest == count and mean & 1)):
            mean += 1
        return mean
