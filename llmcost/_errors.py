"""The exceptions llmcost raises, all in one place.

The whole tree::

    LlmcostError                  base of everything llmcost raises on purpose
    ├── UnknownModelError         (also a KeyError) no price is known for a model id
    ├── PricingError              a price exists but cannot be applied (bad price file, impossible usage)
    ├── BudgetExceeded            a budget refused a call before it was made
    ├── StoreError                a cost store could not be opened, read or written
    └── SettingError              (also a ValueError) a bad ``LLMCOST_*`` environment setting, such as a limit

Bad arguments raise the built-in ``ValueError`` or ``TypeError`` with a message that names the field and the
value; they are programming errors, not conditions to handle.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from ._money import dollars

__all__ = ["BudgetExceeded", "LlmcostError", "PricingError", "SettingError", "StoreError", "UnknownModelError"]


class LlmcostError(Exception):
    """Base class of every error llmcost raises on purpose.

    Example::

        try:
            llmcost.cost_of("no-such-model", input_tokens=10)
        except llmcost.LlmcostError as exc:
            print("llmcost says:", exc)
    """


class UnknownModelError(LlmcostError, KeyError):
    """No price is known for ``model``; ``suggestions`` lists the closest known ids.

    It is also a ``KeyError``, so ``MODEL_PRICING[model]`` behaves like any mapping.

    Example::

        >>> try:
        ...     llmcost.get_price("gpt-4o-mni")
        ... except llmcost.UnknownModelError as exc:
        ...     print(exc.suggestions[:2])
        ['gpt-4o-mini', 'ft:gpt-4o-mini']
    """

    def __init__(self, model: str, suggestions: Sequence[str] = (), provider: str | None = None) -> None:
        self.model = model
        self.provider = provider
        self.suggestions = list(suggestions)
        super().__init__(model)

    def __str__(self) -> str:
        where = f" from provider {self.provider!r}" if self.provider else ""
        hint = (
            f"; closest known ids: {', '.join(self.suggestions)}"
            if self.suggestions
            else "; register a price with llmcost.register_price(...)"
        )
        return f"unknown model {self.model!r}{where}{hint}"


class PricingError(LlmcostError):
    """A price could not be read or applied, e.g. a malformed price file.

    Example::

        try:
            llmcost.load_prices("prices.toml")
        except llmcost.PricingError as exc:
            print(exc)
    """


class BudgetExceeded(LlmcostError):
    """A budget refused a call; the call was not made.

    ``budget`` is the budget's name, ``spent`` and ``limit`` its state when it refused, ``reserved`` what calls in
    flight held of it then (their estimates), and ``requested`` the estimate of the refused call (``Decimal(0)``
    when the budget was already used up).

    Example::

        try:
            with llmcost.budget("5.00", name="nightly"):
                run_batch()
        except llmcost.BudgetExceeded as exc:
            print(f"{exc.budget} stopped at {exc.spent} of {exc.limit}")
    """

    def __init__(
        self,
        budget: str,
        spent: Decimal,
        limit: Decimal,
        requested: Decimal = Decimal(0),
        reserved: Decimal = Decimal(0),
    ) -> None:
        self.budget = budget
        self.spent = spent
        self.limit = limit
        self.requested = requested
        self.reserved = reserved
        super().__init__(budget, spent, limit, requested, reserved)

    def __str__(self) -> str:
        spent, limit, remaining, requested, reserved = dollars(
            self.spent, self.limit, self.limit - self.spent - self.reserved, self.requested, self.reserved
        )
        held = f", {reserved} held by calls in flight" if self.reserved else ""
        return (
            f"budget {self.budget!r} exceeded: spent {spent} of {limit}{held}"
            f" (remaining {remaining}); the call needed about {requested}"
        )


class StoreError(LlmcostError):
    """A cost store could not be opened, read or written, or its URL is not understood.

    Example::

        try:
            llmcost.open_store("ftp://nowhere")
        except llmcost.StoreError as exc:
            print(exc)
    """


class SettingError(LlmcostError, ValueError):
    """A bad ``LLMCOST_*`` environment setting (``LLMCOST_DAILY_LIMIT=$5``), named with its value.

    Raised wherever the setting is first read, and again at every later use until it is fixed: from
    ``get_tracker()``, and from a tracked call on the default tracker too, since going on without it would run the
    process with no limit where one was asked for. Catch it as ``ValueError``.

    Example::

        >>> raise SettingError("LLMCOST_DAILY_LIMIT must be a positive amount in USD, got '$5'")
        Traceback (most recent call last):
        ...
        llmcost._errors.SettingError: LLMCOST_DAILY_LIMIT must be a positive amount in USD, got '$5'
    """
