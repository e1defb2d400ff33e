"""The public face matches API.md: every promised name is exported, and nothing private leaks."""

import subprocess
import sys

import llmcost

PROMISED = [
    "Usage",
    "ModelPrice",
    "CostEntry",
    "CostCategory",
    "BudgetPeriod",
    "CostSummary",
    "BudgetAlert",
    "Budget",
    "Estimate",
    "get_price",
    "cost_of",
    "register_price",
    "load_prices",
    "count_tokens",
    "estimate_cost",
    "MODEL_PRICING",
    "CostTracker",
    "configure",
    "get_tracker",
    "track_cost",
    "tags",
    "budget",
    "BudgetManager",
    "BudgetGuard",
    "CostStore",
    "MemoryStore",
    "DuckDBStore",
    "ParquetStore",
    "PostgresStore",
    "open_store",
    "LlmcostError",
    "UnknownModelError",
    "BudgetExceeded",
    "StoreError",
    "PricingError",
    "instrument",
    "uninstrument",
]


def test_all_promised_names_are_exported():
    missing = [n for n in PROMISED if n not in llmcost.__all__ or not hasattr(llmcost, n)]
    assert missing == []


def test_all_lists_only_public_existing_names():
    for name in llmcost.__all__:
        assert not name.startswith("_")
        assert hasattr(llmcost, name), name


def test_errors_share_one_base():
    for exc in (llmcost.UnknownModelError, llmcost.BudgetExceeded, llmcost.StoreError, llmcost.PricingError):
        assert issubclass(exc, llmcost.LlmcostError)
    assert issubclass(llmcost.UnknownModelError, KeyError)


def test_import_is_light():
    heavy = ("pandas", "duckdb", "genai_prices", "llmcost.stores._duckdb", "llmcost.stores._parquet")
    code = f"import sys, llmcost; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_durable_stores_load_on_first_use():
    code = (
        "import sys, llmcost; from llmcost import DuckDBStore; import llmcost.stores as s; "
        "print(DuckDBStore.__name__, s.ParquetStore.__name__, 'DuckDBStore' in dir(llmcost))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["DuckDBStore", "ParquetStore", "True"]


def test_version_is_lazy_metadata():
    assert llmcost.__version__
