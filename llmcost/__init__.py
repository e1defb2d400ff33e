"""llmcost: what every LLM call costs, exactly, and budgets that stop overspend before it happens.

Example::

    import llmcost

    @llmcost.track_cost(resource="support-bot")
    def answer(question):
        return client.chat.completions.create(model="gpt-4o-mini", messages=[...])

    with llmcost.budget("5.00", name="nightly-batch"):
        for q in questions:
            answer(q)

    print(llmcost.get_tracker().summary(period="daily").total)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._budget import Budget, BudgetAlert, budget
from ._config import configure, get_tracker
from ._context import is_active, set_active, tags
from ._decorator import track_cost
from ._entry import CostCategory, CostEntry
from ._errors import BudgetExceeded, LlmcostError, PricingError, StoreError, UnknownModelError
from ._instrument import instrument, uninstrument
from ._manager import BudgetGuard, BudgetManager
from ._periods import BudgetPeriod
from ._prices import MODEL_PRICING, ModelPrice, PriceTier, cost_of, get_price, load_prices, register_price
from ._summary import CostSummary
from ._tokens import Estimate, count_tokens, estimate_cost
from ._tracker import CostTracker
from ._usage import Usage
from .stores import CostStore, MemoryStore, open_store

if TYPE_CHECKING:
    from .stores import DuckDBStore, ParquetStore, PostgresStore

__all__ = [
    "MODEL_PRICING",
    "Budget",
    "BudgetAlert",
    "BudgetExceeded",
    "BudgetGuard",
    "BudgetManager",
    "BudgetPeriod",
    "CostCategory",
    "CostEntry",
    "CostStore",
    "CostSummary",
    "CostTracker",
    "DuckDBStore",
    "Estimate",
    "LlmcostError",
    "MemoryStore",
    "ModelPrice",
    "ParquetStore",
    "PostgresStore",
    "PriceTier",
    "PricingError",
    "StoreError",
    "UnknownModelError",
    "Usage",
    "budget",
    "configure",
    "cost_of",
    "count_tokens",
    "estimate_cost",
    "get_price",
    "get_tracker",
    "instrument",
    "is_active",
    "load_prices",
    "open_store",
    "register_price",
    "set_active",
    "tags",
    "track_cost",
    "uninstrument",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("llmcost")
    if name in ("DuckDBStore", "ParquetStore", "PostgresStore"):  # loaded on first use: DuckDB/psycopg-facing
        from . import stores

        return getattr(stores, name)
    raise AttributeError(f"module 'llmcost' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
