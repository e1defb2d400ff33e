"""The pre-built price table: exactly what the catalog gives, used only for the genai-prices it was built from, and
only until genai-prices is imported; prices users register still win."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal

import pytest

import llmcost
from llmcost import ModelPrice, Usage
from llmcost._catalog import _price_of_row, _row_of_price, build_price_table, find_in_catalog
from llmcost._price_table import TABLE_PATH, genai_prices_files
from llmcost._prices import priced
from llmcost._usage import unit_registry

with open(TABLE_PATH, encoding="utf-8") as _file:
    SHIPPED = json.load(_file)

needs_shipped_version = pytest.mark.skipif(
    genai_prices_files() != (SHIPPED["genai_prices"], SHIPPED["data_size"]),
    reason=f"the shipped price table is for genai-prices {SHIPPED['genai_prices']}, not the installed one "
    "(regenerate it: see llmcost/_price_table.py)",
)


@needs_shipped_version
def test_the_shipped_table_is_what_the_catalog_gives():
    assert build_price_table() == SHIPPED


def test_a_price_survives_the_table_digit_for_digit():
    table = build_price_table()
    for key, index in table["models"].items():
        model, provider = key.split("\t")
        found = find_in_catalog(model, provider or None)
        assert found is not None and found.price is not None and found.model is not None
        row = _row_of_price(found.price, found.provider.id, found.model.id)
        assert row == table["prices"][index]
        assert repr(_price_of_row(row)) == repr(found.price), key  # repr shows each Decimal's digits


def test_a_table_for_another_genai_prices_is_not_used(monkeypatch, tmp_path):
    from llmcost import _price_table

    monkeypatch.setattr(_price_table, "genai_prices_files", lambda: ("0.0.1", 1))
    assert _price_table._read() == {"usable": False}
    monkeypatch.undo()
    broken = tmp_path / "table.json"
    broken.write_text("{not json", encoding="utf-8")
    monkeypatch.setattr(_price_table, "TABLE_PATH", str(broken))
    assert _price_table._read() == {"usable": False}


# A fresh interpreter prices from the table without importing genai-prices; the parent (which has imported it)
# prices the same calls from the catalog.
CALLS = [
    ("gpt-4o", None, Usage(1200, 300)),
    ("gpt-4o-2024-08-06", None, Usage(3000, 300, cache_read_tokens=1500)),
    ("claude-sonnet-4-5", None, Usage(250_000, 900, cache_write_tokens=10_000, units={"cache_write_1h_tokens": 4000})),
    ("claude-3-5-haiku-latest", "anthropic", Usage(1000, 10, cache_read_tokens=100, cache_write_tokens=200)),
    ("gemini-2.5-pro", "google", Usage(300_000, 5000, reasoning_tokens=4000)),
    ("gemini-2.0-flash", None, Usage(1000, 10, units={"input_audio_tokens": 400})),
    # Not in the table, read from the catalog: a correction (long context) and dated prices (and a correction).
    ("claude-sonnet-4-20250514", None, Usage(250_000, 100, cache_read_tokens=10_000)),
    ("o3", None, Usage(1000, 100, cache_read_tokens=500)),
]
CHILD = """
import json, sys
from datetime import datetime, timezone
import llmcost
from llmcost import Usage
from llmcost._prices import priced
from llmcost._usage import unit_registry
AT = datetime(2025, 9, 1, tzinfo=timezone.utc)
calls = json.loads(sys.argv[1])
out = {"table_only": []}
for model, provider, counts, units in calls:
    usage = Usage(*counts, units=units)
    amount, label, prov, canonical, _atto = priced(model, provider, usage, AT)
    out["table_only"].append("genai_prices" not in sys.modules)
    out.setdefault("priced", []).append([str(amount), label, prov, canonical])
out["units"] = {k: [u.price_key, u.per, u.dimensions, list(u.ancestors)] for k, u in unit_registry().items()}
out["genai_prices_after_units"] = "genai_prices" in sys.modules
llmcost.register_price(llmcost.ModelPrice("gpt-4o", None, input_per_mtok="1", output_per_mtok="1"))
out["registered"] = str(llmcost.cost_of("gpt-4o", 1_000_000, 0))
out["flex"] = [str(a) for a in priced("gpt-5", None, Usage(1000, 100), AT, "flex")[:2]]
print(json.dumps(out))
"""


@needs_shipped_version
def test_a_fresh_process_prices_from_the_table_as_the_catalog_does():
    from datetime import datetime, timezone

    at = datetime(2025, 9, 1, tzinfo=timezone.utc)
    calls = [
        [m, p, [u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens],
         dict(u.units)]
        for m, p, u in CALLS
    ]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(calls)], capture_output=True, text=True, check=True)
    child = json.loads(done.stdout)
    assert child["table_only"] == [True] * (len(CALLS) - 2) + [False, False]  # the last two needed the catalog
    for (model, provider, usage), got in zip(CALLS, child["priced"], strict=True):
        amount, label, prov, canonical, _atto = priced(model, provider, usage, at)
        assert got == [str(amount), label, prov, canonical], model
    assert child["units"] == {
        k: [u.price_key, u.per, u.dimensions, list(u.ancestors)] for k, u in unit_registry().items()
    }
    assert child["registered"] == "1"  # a registered price wins over the table
    assert child["flex"] == [str(a) for a in priced("gpt-5", None, Usage(1000, 100), at, "flex")[:2]]


@needs_shipped_version
def test_a_table_price_quoted_at_a_service_tier_reads_the_catalogs_tier_prices():
    code = (
        "import sys, llmcost; from datetime import datetime, timezone; "
        "a = llmcost.cost_of('gpt-4o', 1000, 100); assert 'genai_prices' not in sys.modules; "
        "print(llmcost.cost_of('gpt-4o', 1000, 100, service_tier='priority', "
        "at=datetime(2026, 11, 1, tzinfo=timezone.utc)), a)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    from datetime import datetime, timezone

    at = datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert out == [
        str(llmcost.cost_of("gpt-4o", 1000, 100, service_tier="priority", at=at)),
        str(llmcost.cost_of("gpt-4o", 1000, 100)),
    ]
    assert Decimal(out[0]) > Decimal(out[1])  # the catalog's priority price, not the standard one


def test_registered_prices_win_over_the_table():
    llmcost.register_price(ModelPrice("gpt-4o", "openai", input_per_mtok="1", output_per_mtok="2"))
    assert llmcost.cost_of("gpt-4o", 1_000_000, 0, provider="openai") == Decimal(1)
