"""``llmcost reprice``, ``llmcost reconcile`` and the report's ``--invoice``/``--reprice`` sections, run in-process on
a real DuckDB file recorded with the tracker. Money in JSON is exact strings; errors are one line."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from llmcost import CostTracker
from llmcost.cli import main
from llmcost.stores import DuckDBStore
from tests.conftest import Clock

EXAMPLES = Path(__file__).parent.parent / "docs" / "examples"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    path = tmp_path / "costs.duckdb"
    clock = Clock(datetime(2025, 8, 1, 9, tzinfo=timezone.utc))
    with CostTracker(DuckDBStore(path), clock=clock) as tracker:
        search = {"project": "proj_search", "team": "search"}
        tracker.record(model="gpt-4o-2024-08-06", input_tokens=1_000_000, output_tokens=100_000, tags=search)  # 3.5
        tracker.record(model="gpt-4o-mini-2024-07-18", input_tokens=1_000_000, output_tokens=100_000, tags=search)
        clock.now += timedelta(days=1)
        tracker.record(model="gpt-4o", input_tokens=500_000, output_tokens=0, tags={"project": "proj_search"})  # 1.25
    return f"duckdb://{path}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_reprice_table_has_a_total_and_fits_80_columns(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    code, out, _ = run(capsys, "reprice", "--store", store_url, "--swap", "gpt-4o=gpt-4o-mini")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["model", "calls", "recorded", "repriced", "delta", "delta", "%"]
    # gpt-4o 3.5 + 1.25 = 4.75 -> at gpt-4o-mini: (0.15 + 0.06) + 0.075 = 0.285; gpt-4o-mini 0.21 unchanged
    assert lines[-1] == "recorded $4.96, repriced $0.4950 (-90.0%)"
    assert all(len(line) <= 80 for line in lines)


def test_reprice_prices_a_price_that_changed_and_changed_back_by_day(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # OpenRouter's google/gemini-3.8-flash: $0.75/M input, $0.825/M from 2026-10-19, $0.75/M again from 2026-11-03.
    path = tmp_path / "aba.duckdb"
    clock = Clock(datetime(2026, 10, 10, tzinfo=timezone.utc))
    with CostTracker(DuckDBStore(path), clock=clock) as tracker:
        for day in (0, 15, 31):  # 10-10, 10-25, 11-10
            clock.now = datetime(2026, 10, 10, tzinfo=timezone.utc) + timedelta(days=day)
            tracker.record(model="google/gemini-3.8-flash", provider="openrouter", input_tokens=1_000_000)
    code, out, _ = run(capsys, "reprice", "--store", f"duckdb://{path}", "--format", "json")
    assert code == 0
    (row,) = json.loads(out)
    assert (row["recorded"], row["repriced"], row["delta"]) == ("2.325", "2.325", "0.00")


def test_reprice_json_keeps_money_exact(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    code, out, _ = run(
        capsys,
        "reprice",
        "--store",
        store_url,
        "--prices",
        str(EXAMPLES / "new-prices.toml"),
        "--by",
        "tag:team",
        "--format",
        "json",
    )
    assert code == 0
    records = {r["tag:team"]: r for r in json.loads(out)}
    # team search: gpt-4o 1M x $2 + 0.1M x $8 = 2.8 (was 3.5), gpt-4o-mini 0.21 -> 3.01
    assert records["search"]["recorded"] == "3.71" and records["search"]["repriced"] == "3.01"
    assert records["search"]["delta"] == "-0.70"  # money in JSON: exact, at least two decimals
    # the 08-02 call carries no team: 0.5M x $2 = 1 (was 1.25)
    assert (records[None]["recorded"], records[None]["repriced"]) == ("1.25", "1.00")


def test_reprice_by_model_is_by_the_canonical_id(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    code, out, _ = run(capsys, "reprice", "--store", store_url, "--format", "json")
    assert code == 0
    # gpt-4o-2024-08-06 (3.5) and gpt-4o (1.25) are one model, as in llmcost report --by model
    assert [(r["model"], r["calls"], r["recorded"]) for r in json.loads(out)] == [
        ("gpt-4o", 2, "4.75"),
        ("gpt-4o-mini", 1, "0.21"),
    ]


def test_reprice_at_a_date_as_csv(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    code, out, _ = run(
        capsys,
        "reprice",
        "--store",
        store_url,
        "--at",
        "2025-07-01",
        "--by",
        "model,provider",
        "--format",
        "csv",
        "--since",
        "2025-08-02",
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["model"], r["provider"], r["recorded"], r["repriced"]) for r in rows] == [
        ("gpt-4o", "openai", "1.25", "1.25")
    ]


def test_reconcile_text_and_json(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    invoice = str(EXAMPLES / "openai-costs.json")
    code, out, _ = run(capsys, "reconcile", invoice, "--store", store_url)
    assert code == 0
    assert "under" in out and "Likely causes:" in out and "recorded $4.96, billed $5.63" in out
    code, out, _ = run(capsys, "reconcile", invoice, "--store", store_url, "--format", "json")
    records = json.loads(out)
    assert [(r["day"], r["model"], r["recorded"], r["billed"], r["status"]) for r in records] == [
        ("2025-08-01", "gpt-4o-2024-08-06", "3.50", "3.50", "match"),
        ("2025-08-01", "gpt-4o-mini-2024-07-18", "0.21", "0.63", "under"),
        ("2025-08-01", None, "0.00", "0.25", "unrecorded"),
        ("2025-08-02", "gpt-4o", "1.25", "1.25", "match"),
    ]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["reconcile", "{tmp}/bad.csv"], "no 'date', 'amount' column"),
        (["reconcile", "{tmp}/missing.json"], "INVOICE: no file"),
        (["reprice", "--swap", "gpt-4o"], "--swap expects FROM=TO"),
        (["reprice", "--swap", "gpt-4o=gpt-9-turbo-x"], "gpt-9-turbo-x"),
        (["reprice", "--prices", "{tmp}/bad.csv", "--swap", "a=b"], "not both"),
        (["report", "--invoice", "{tmp}/bad.csv"], "give --html FILE too"),
        (
            ["report", "--html", "{tmp}/r.html", "--invoice", "{tmp}/bad.csv", "--tag", "team=search"],
            "cannot be narrowed by --tag",
        ),
    ],
)
def test_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path, argv: list[str], needle: str
) -> None:
    (tmp_path / "bad.csv").write_text("day,model,cost\n2025-08-01,gpt-4o,1\n", encoding="utf-8")
    code, _, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv], "--store", store_url)
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert needle in err, err


def test_report_html_with_invoice_and_reprice_sections(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    code, _, err = run(
        capsys,
        "report",
        "--store",
        store_url,
        "--html",
        str(page),
        "--invoice",
        str(EXAMPLES / "openai-costs.json"),
        "--reprice",
        str(EXAMPLES / "new-prices.toml"),
        "--format",
        "csv",
    )
    assert code == 0 and "wrote" in err
    html = page.read_text(encoding="utf-8")
    assert "<h2>Reconciliation against the invoice</h2>" in html
    assert "recorded $4.96, billed $5.63" in html and ">unrecorded<" in html and ">under<" in html
    assert "What if: " in html and "new-prices.toml" in html
    assert html.index("What if") < html.index("Reconciliation")


def test_report_reconciles_the_whole_days_since_falls_in(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path
) -> None:
    # The 2025-08-01 calls were made at 09:00 (gpt-4o 3.5, gpt-4o-mini 0.21): a --since at noon still compares the
    # whole day with the invoice, as the invoice bills it.
    invoice = tmp_path / "invoice.csv"
    invoice.write_text("date,model,amount\n2025-08-01,gpt-4o,3.50\n2025-08-01,gpt-4o-mini,0.21\n", encoding="utf-8")
    page = tmp_path / "report.html"
    argv = ["report", "--store", store_url, "--html", str(page), "--invoice", str(invoice), "--format", "csv"]
    code, _, err = run(capsys, *argv, "--since", "2025-08-01T12:00:00Z", "--until", "2025-08-02")
    assert code == 0, err
    html = page.read_text(encoding="utf-8")
    assert ">unrecorded<" not in html and ">under<" not in html, html
    assert html.count(">match<") == 2, html


# -- numbers too large for money (review B2) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "argv", "needles"),
    [
        (
            "huge.csv",
            "date,model,amount\n2025-08-01,gpt-4o,1e400\n",
            ["reconcile", "{file}"],
            ["amount (line 2)", "'1e400'"],
        ),
        (
            "huge.json",
            '{"data": [{"start_time": 1754006400, "end_time": 1754092800, "results": '
            '[{"amount": {"value": "-1e25", "currency": "usd"}}]}]}',
            ["reconcile", "{file}"],
            ["data[0].results[0].amount.value", "'-1e25'"],
        ),
        (
            "huge.toml",
            '[[price]]\nmodel = "gpt-4o"\nprovider = "openai"\ninput_per_mtok = "1e400"\noutput_per_mtok = "1"\n',
            ["reprice", "--prices", "{file}"],
            ["'{file}'", "input_per_mtok", "'1e400'"],
        ),
        (
            "huge.yaml",
            "providers:\n  openai:\n    gpt-4o:\n      prompt_token_cost: 1e400\n",
            ["reprice", "--prices", "{file}"],
            ["'{file}'", "providers.openai.gpt-4o.prompt_token_cost"],
        ),
    ],
)
def test_amounts_and_prices_too_large_for_money_are_refused_where_read(
    store_url: str, tmp_path: Path, name: str, text: str, argv: list[str], needles: list[str]
) -> None:
    # A real child process: the traceback this guards against reached stderr past main's handlers.
    file = tmp_path / name
    file.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "llmcost", *[a.format(file=file) for a in argv], "--store", store_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    for needle in (*needles, "below 10**20"):
        assert needle.format(file=file) in done.stderr, done.stderr


def test_an_arithmetic_error_past_validation_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    # Whatever a validator misses still ends as one line: decimal's own text is a list of signal classes.
    from llmcost.cli import _main

    def overflowing(args: object, out: object) -> int:
        return int(Decimal("1e400").quantize(Decimal(1)))

    monkeypatch.setitem(_main._COMMANDS, "reprice", overflowing)
    code, _, err = run(capsys, "reprice", "--store", store_url)
    assert code == 2 and err == (
        "llmcost reprice: error: a figure is too large to compute exactly (decimal.InvalidOperation); check the "
        "amounts and prices given\n"
    )


def test_a_binary_price_file_is_named(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    # It said "'utf-8' codec can't decode byte 0xe5 in position 2...", naming no file.
    store_file = store_url.removeprefix("duckdb://")
    code, _, err = run(capsys, "reprice", "--store", store_url, "--prices", store_file)
    assert code == 2 and err == (
        f"llmcost reprice: error: price file {store_file!r} is not UTF-8 text; give a TOML, JSON or YAML price file\n"
    )


def test_an_invoice_time_past_the_calendar_names_the_field(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path
) -> None:
    # It said "year 3170843 is out of range", naming neither the field nor the value.
    invoice = tmp_path / "far.json"
    invoice.write_text('{"data": [{"start_time": 99999999999999, "end_time": 99999999999999, "results": []}]}')
    code, _, err = run(capsys, "reconcile", str(invoice), "--store", store_url)
    assert code == 2 and err.count("\n") == 1
    assert "data[0].start_time" in err and "99999999999999" in err, err
