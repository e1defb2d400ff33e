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
from typing import Any, Protocol

from ._entry import CostEntry
from ._money import ZERO, to_money
from ._tokens import estimate_cost

__all__ = ["DEFAULT_OUTPUT_TOKENS", "CallFacts", "RecentCostSource", "RecentCosts", "estimate_call"]

#: Output tokens assumed for a request that sets no output limit.
DEFAULT_OUTPUT_TOKENS = 500
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


def _request(pending: CallFacts) -> Decimal | None:
    kwargs = pending.kwargs
    model = kwargs.get("model") if isinstance(kwargs.get("model"), str) else pending.model
    if not model:
        return None
    prompt = next((kwargs[k] for k in _PROMPT_KEYS if k in kwargs), None)
    if prompt is None:
        return None
    config = kwargs.get("config")
    limit = next((kwargs[k] for k in _LIMIT_KEYS if isinstance(kwargs.get(k), int)), None)
    if limit is None and isinstance(config, Mapping):
        limit = config.get("max_output_tokens")
    output = limit if isinstance(limit, int) and limit >= 0 else DEFAULT_OUTPUT_TOKENS
    if isinstance(prompt, Mapping):
        prompt = [prompt]
    return estimate_cost(model, prompt, output_tokens=output).amount


def estimate_call(pending: CallFacts) -> Decimal | None:
    """The expected cost of ``pending`` in USD, or ``None`` when nothing is known.

    An ``estimate=`` that fails raises (it is the user's own code); an unreadable request falls through to the
    recent-calls statistic.
    """
    if pending.explicit_estimate is not None:
        return _explicit(pending.explicit_estimate, pending)
    try:
        found = _request(pending)
    except (TypeError, ValueError, KeyError):
        found = None
    if found is not None:
        return found
    return pending.tracker.recent_cost(pending.resource, pending.model)


class RecentCosts:
    """The mean cost of the last few calls per (resource, model), kept by each tracker: the fallback estimate."""

    __slots__ = ("_by_key", "_models", "_window")

    def __init__(self, window: int = 20) -> None:
        self._window = window
        self._by_key: dict[tuple[str | None, str | None], deque[Decimal]] = {}
        self._models: dict[str | None, list[str | None]] = {}  # resource -> models seen with it

    def observe(self, entry: CostEntry) -> None:
        key = (entry.resource, entry.model)
        amounts = self._by_key.get(key)
        if amounts is None:
            amounts = self._by_key[key] = deque(maxlen=self._window)
            self._models.setdefault(entry.resource, []).append(entry.model)
        amounts.append(entry.amount)

    def mean(self, resource: str | None, model: str | None) -> Decimal | None:
        if model is not None:
            values = list(self._by_key.get((resource, model), ()))
        else:
            # A decorator often knows no model before the call: then the recent calls of every model of the
            # resource count (gathered here, under a budget, rather than kept twice on every call).
            values = [a for m in list(self._models.get(resource, ())) for a in self._by_key[(resource, m)]]
        if not values:
            return None
        return sum(values, ZERO) / len(values)
