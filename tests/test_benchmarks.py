"""The benchmark suite keeps running: each benchmark's ``--quick`` run prints a table (figures are never asserted),
comparisons with libraries that are not installed say so instead of crashing, and the results file and growth
chart round-trip."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import benchmarks
from benchmarks import bench_budget, bench_memory, bench_overhead, bench_pricing, budget_instructions
from benchmarks.plot import load_results, svg_chart, write_results

BENCHMARKS = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
RULE = re.compile(r"^-+(  -+)+$", re.MULTILINE)  # the line under a table's header (benchmarks._util.table)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_quick_run_prints_a_table(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    module.main(["--quick"])
    out = capsys.readouterr().out
    assert RULE.search(out), f"{name} --quick printed no table:\n{out}"


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_budget_instructions_counts_the_calls_between_the_markers(capsys: pytest.CaptureFixture[str]) -> None:
    # A real callgrind run (one child process, ~7 s of CPU), 64 calls of the unbudgeted row (its own baseline).
    budget_instructions.main(["--kinds", "dict", "--rows", "0", "--calls", "64"])
    out = capsys.readouterr().out
    assert RULE.search(out), out
    row = next(line for line in out.splitlines() if line.startswith("@track_cost "))
    each, adds, ratio = row.split()[-3:]
    # A tracked call's instructions: not start-up's nor the imports' (part 1 of the run, millions a call).
    assert 20_000 < float(each.replace(",", "")) < 200_000, row
    assert (adds, ratio) == ("-", "1.000"), row


def test_pricing_without_third_parties_says_not_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for module in ("tokencost", "litellm"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError, as if not installed
    bench_pricing.main(["--quick"])
    out = capsys.readouterr().out
    assert re.search(r"^tokencost -\s+not installed", out, re.MULTILINE)
    assert len(re.findall(r"^litellm -\s+not installed", out, re.MULTILINE)) == 2
    llmcost_row = re.search(r"^llmcost cost_of .*$", out, re.MULTILINE)
    assert llmcost_row is not None and "1.0x" in llmcost_row.group()
    assert re.search(r"^gpt-4o plain\s+0\.00600000\s+0\.00600000$", out, re.MULTILINE)  # llmcost, genai-prices


def test_pricing_explains_each_disagreement(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tokencost")
    bench_pricing.main(["--quick"])
    out = capsys.readouterr().out
    starred = re.findall(r"^(\S+) (?:plain|cached)\s.*\*", out, re.MULTILINE)
    if not starred:
        assert "All libraries agree on every price." in out
        return
    listed = out.split("Disagreements with llmcost:")[1]
    for model in set(starred):
        assert re.search(rf"^- .*, {re.escape(model)}: .*\n  Why: \S", listed, re.MULTILINE), model


def test_overhead_without_langchain_says_not_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for module in [m for m in sys.modules if m.startswith("langchain")] + ["langchain_core", "langchain_community"]:
        monkeypatch.setitem(sys.modules, module, None)  # imported or not, importing it now fails
    bench_overhead.main(["--quick"])
    out = capsys.readouterr().out
    assert "LangChain comparison: langchain-core / langchain-community not installed" in out
    assert re.search(r"^@track_cost, MemoryStore\s+8\s", out, re.MULTILINE)


@pytest.mark.parametrize("flag", ["--profile", "--profile-instrument"])
def test_overhead_profiles_tracked_calls(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    bench_overhead.main([flag, "50"])
    out = capsys.readouterr().out
    assert "function calls" in out
    assert "record_call" in out  # each call was tracked through to the tracker


def test_memory_writes_results_that_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "memory.json"
    bench_memory.main(["--sizes", "3000", "6000", "--json", str(results)])
    assert "Where the bytes go at 6,000 entries" in capsys.readouterr().out
    doc = json.loads(results.read_text())
    assert doc["bench"] == "memory"
    assert {(r["figure"], r["size"]) for r in doc["records"]} >= {
        ("memory", 3000),
        ("record, priced one call at a time", 6000),
    }
    svg = svg_chart(load_results([results]), ["memory"])
    assert len(ET.fromstring(svg).findall("{http://www.w3.org/2000/svg}polyline")) == 1


def test_deep_size_counts_shared_objects_once() -> None:
    shared = "x" * 1000
    once = bench_memory.deep_size([shared], set())
    twice = bench_memory.deep_size([shared, shared], set())
    assert twice - once == sys.getsizeof([shared, shared]) - sys.getsizeof([shared])
    assert once > 1000


def test_chart_has_a_panel_per_figure_and_a_line_per_series(tmp_path: Path) -> None:
    records = [
        {"figure": figure, "series": series, "size": size, "value": size * k / 1e5, "unit": "s"}
        for figure, k in (("ingest", 1.0), ("analytics", 0.1))
        for series in ("DuckDBStore", "ParquetStore")
        for size in (100_000, 1_000_000, 10_000_000)
    ] + [{"figure": "pricing", "series": "llmcost", "value": 2.0, "unit": "us"}]  # no size: not drawn
    write_results(tmp_path / "r.json", "stores", records)
    loaded = load_results([tmp_path / "r.json"])
    assert loaded[0]["bench"] == "stores"
    root = ET.fromstring(svg_chart(loaded, title="growth"))
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 4
    assert len(root.findall(f"{ns}circle")) == 12
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert {"ingest", "analytics", "growth", "1M", "10M"} <= set(texts)
    assert "pricing" not in texts


def test_chart_refuses_records_without_sizes() -> None:
    with pytest.raises(ValueError, match="no records with a size"):
        svg_chart([{"figure": "pricing", "series": "llmcost", "value": 2.0}])


def test_suite_writes_one_results_file_per_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.__main__ import main

    assert main(["--quick", "--json", str(tmp_path), "track", "budget"]) == 0
    assert "== track ==" in capsys.readouterr().out
    track = json.loads((tmp_path / "track.json").read_text())
    budget = json.loads((tmp_path / "budget.json").read_text())
    assert track["bench"] == "track" and budget["bench"] == "budget"
    assert {r["series"] for r in track["records"] if r["figure"] == "import"} == {
        "llmcost",
        "genai_prices",
        "pandas",
        "duckdb",
    }
    assert any(r["figure"] == "period budget" and r["size"] == bench_budget.QUICK_ROWS for r in budget["records"])


def test_stores_and_analytics_record_a_growth_series(tmp_path: Path) -> None:
    from benchmarks import bench_analytics, bench_stores

    bench_stores.main(["--sizes", "600", "1200", "--batch", "300", "--json", str(tmp_path / "stores.json")])
    bench_analytics.main(
        ["--sizes", "600", "1200", "--pandas-max", "600", "--repeat", "1", "--json", str(tmp_path / "analytics.json")]
    )
    records = load_results([tmp_path / "stores.json", tmp_path / "analytics.json"])
    sizes = {(r["figure"], r["series"]): set() for r in records}
    for r in records:
        sizes[(r["figure"], r["series"])].add(r.get("size"))
    assert sizes[("ingest", "ParquetStore.append, batches of 300")] == {600, 1200}
    assert sizes[("analytics", "DuckDBStore")] == {600, 1200}
    assert sizes[("analytics", "pandas float")] == {600}  # above --pandas-max: not timed
    root = ET.fromstring(svg_chart(records, ["ingest", "analytics"]))
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) >= 8
