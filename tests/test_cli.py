"""The llmcost command: report, export, prices, budgets and demo, run in-process on real store files, plus one
real subprocess. Errors must be one line on stderr with exit status 2, never a traceback."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from llmcost import CostEntry, Usage
from llmcost.cli import main
from llmcost.cli._args import parse_when
from llmcost.stores import DuckDBStore

NOW = datetime.now(timezone.utc).replace(microsecond=0)
DAY = NOW.replace(hour=0, minute=0, second=0) - timedelta(days=5)


def make_entries() -> list[CostEntry]:
    out = []
    for i in range(60):
        model, team = [("gpt-4o", "search"), ("claude-3-5-sonnet", "docs"), ("gpt-4o-mini", "support")][i % 3]
        out.append(
            CostEntry(
                id=f"{i:026x}",
                timestamp=DAY + timedelta(hours=2 * i),
                amount=Decimal("0.125") * (1 + i % 3),
                resource=f"service-{i % 4}",
                model=model,
                provider="anthropic" if model.startswith("claude") else "openai",
                usage=Usage(1000 + i, 100),
                tags={"team": team, "env": "prod" if i % 2 else "dev"},
            )
        )
    out.append(CostEntry(id=f"{99:026x}", timestamp=DAY, amount="2.5", category="compute", resource="gpu-box"))
    return out


ENTRIES = make_entries()
TOTAL = sum((e.amount for e in ENTRIES), Decimal(0))


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    path = tmp_path / "costs.duckdb"
    store = DuckDBStore(path)
    store.append(ENTRIES)
    store.close()
    return f"duckdb://{path}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    for needle in needles:
        assert needle in err, err


def assert_fits_80_columns(text: str) -> None:
    too_wide = [line for line in text.splitlines() if len(line) > 80]
    assert not too_wide, too_wide


# -- report -------------------------------------------------------------------------------------------------------


def test_report_overview(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    code, out, err = run(capsys, "report", "--store", store_url)
    assert code == 0, err
    for heading in ("By category", "By model", "By resource", "By tag", "Daily spend", "Forecast"):
        assert f"\n{heading}" in out
    assert f"${TOTAL:,.2f} over {len(ENTRIES)} calls" in out
    assert "gpt-4o-mini" in out and "search" in out
    assert "Cheaper models for the same work" in out  # gpt-4o -> gpt-4o-mini, claude-3-5-sonnet -> haiku
    assert_fits_80_columns(out)


def test_report_by_keys_as_csv(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    code, out, _ = run(capsys, "report", "--store", store_url, "--by", "model,tag:team", "--format", "csv")
    assert code == 0
    records = list(csv.DictReader(io.StringIO(out)))
    assert list(records[0]) == [
        "model",
        "tag:team",
        "cost",
        "calls",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
    ]
    by_model = {r["model"]: r for r in records}
    assert by_model["claude-3-5-sonnet"]["tag:team"] == "docs"
    assert Decimal(by_model["claude-3-5-sonnet"]["cost"]) == Decimal("0.25") * 20
    assert by_model[""]["calls"] == "1"  # the GPU bill: no model, no team
    assert sum(Decimal(r["cost"]) for r in records) == TOTAL


def test_report_json_with_filters(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    since = (DAY + timedelta(days=1)).strftime("%Y-%m-%d")
    code, out, _ = run(
        capsys,
        "report",
        "--store",
        store_url,
        "--by",
        "resource",
        "--tag",
        "team=search",
        "--since",
        since,
        "--format",
        "json",
    )
    assert code == 0
    records = json.loads(out)
    expected = [e for e in ENTRIES if e.tags.get("team") == "search" and e.timestamp >= DAY + timedelta(days=1)]
    assert sum(r["calls"] for r in records) == len(expected)
    assert sum(Decimal(str(r["cost"])) for r in records) == sum(e.amount for e in expected)


def test_report_by_period(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    code, out, _ = run(capsys, "report", "--store", store_url, "--by", "category", "--freq", "D", "--format", "json")
    assert code == 0
    records = json.loads(out)
    assert {r["period"][:10] for r in records} == {(DAY + timedelta(days=d)).strftime("%Y-%m-%d") for d in range(5)}
    assert records[0]["period"].endswith("+00:00")


def test_report_table_by_key_fits_80_columns(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    code, out, _ = run(capsys, "report", "--store", store_url, "--by", "resource,model,tag:team,tag:env")
    assert code == 0
    assert "service-1" in out
    assert_fits_80_columns(out)


def test_report_of_an_empty_selection(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    code, out, _ = run(capsys, "report", "--store", store_url, "--tag", "team=nobody")
    assert code == 0 and "No entries" in out


def test_report_writes_html(capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    code, _, err = run(capsys, "report", "--store", store_url, "--html", str(page), "--format", "json")
    assert code == 0 and str(page) in err
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text and "By category" in text


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["report", "--since", "last tuesday"], ["cannot read the time 'last tuesday'"]),
        (["report", "--since", "2024-02-30"], ["2024-02-30"]),
        (["report", "--since", "2024-05-02", "--until", "2024-05-01"], ["must be before --until"]),
        (["report", "--by", "colour"], ["by must name"]),
        (["report", "--freq", "fortnightly"], ["freq must be one of"]),
        (["report", "--tag", "team"], ["expected KEY=VALUE"]),
        (["report", "--format", "xml"], ["invalid choice"]),
        (["export", "--format", "xlsx"], ["invalid choice"]),
    ],
)
def test_bad_arguments_are_one_line(
    capsys: pytest.CaptureFixture[str], store_url: str, argv: list[str], needles: list[str]
) -> None:
    try:
        code, _, err = run(capsys, *argv, "--store", store_url)
    except SystemExit as exc:  # argparse's own errors
        code, err = int(exc.code or 0), capsys.readouterr().err
    assert_one_line_error(code, err, *needles)


def test_bad_store_urls_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "report", "--store", "ftp://example.com/costs")
    assert_one_line_error(code, err, "unknown scheme 'ftp'")
    code, _, err = run(capsys, "report", "--store", f"duckdb://{tmp_path}/nope.duckdb")
    assert_one_line_error(code, err, "does not exist", "nope.duckdb", "llmcost demo")
    assert not (tmp_path / "nope.duckdb").exists()  # reading never creates a store
    garbage = tmp_path / "garbage.duckdb"
    garbage.write_text("not a database")
    code, _, err = run(capsys, "report", "--store", str(garbage))
    assert_one_line_error(code, err, "llmcost report: error:")


def test_store_defaults_to_env_then_local_file(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLMCOST_STORE", store_url)
    code, out, _ = run(capsys, "report", "--by", "category", "--format", "json")
    assert code == 0 and sum(r["calls"] for r in json.loads(out)) == len(ENTRIES)
    monkeypatch.delenv("LLMCOST_STORE")
    code, _, err = run(capsys, "report")
    assert_one_line_error(code, err, "llmcost.duckdb", "does not exist")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=timezone.utc)),
        ("2024-05-01T12:30", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)),
        ("2024-05-01T12:30:00+02:00", datetime(2024, 5, 1, 10, 30, tzinfo=timezone.utc)),
        ("2024-05-01T12:30:00Z", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)),
        ("7d", datetime(2024, 5, 10, 15, 0, tzinfo=timezone.utc)),
        ("24h", datetime(2024, 5, 16, 15, 0, tzinfo=timezone.utc)),
        ("90m", datetime(2024, 5, 17, 13, 30, tzinfo=timezone.utc)),
        ("2w", datetime(2024, 5, 3, 15, 0, tzinfo=timezone.utc)),
        ("today", datetime(2024, 5, 17, tzinfo=timezone.utc)),
        ("yesterday", datetime(2024, 5, 16, tzinfo=timezone.utc)),
    ],
)
def test_parse_when(text: str, expected: datetime) -> None:
    assert parse_when(text, now=datetime(2024, 5, 17, 15, 0, tzinfo=timezone.utc)) == expected


def test_until_a_date_includes_that_day() -> None:
    now = datetime(2024, 5, 17, tzinfo=timezone.utc)
    assert parse_when("2024-05-31", now=now, end_of_day=True) == datetime(2024, 6, 1, tzinfo=timezone.utc)
    assert parse_when("24h", now=now, end_of_day=True) == datetime(2024, 5, 16, tzinfo=timezone.utc)


# -- export -------------------------------------------------------------------------------------------------------


def test_export_csv_with_forced_progress(capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path) -> None:
    target = tmp_path / "costs.csv"
    code, out, err = run(capsys, "export", str(target), "--store", store_url, "--progress")
    assert code == 0
    assert f"wrote {len(ENTRIES)} entries to {target}" in out
    assert "exporting costs.csv [" in err and "100%" in err
    assert all(len(chunk) <= 80 for chunk in err.split("\r"))
    with target.open(newline="") as f:
        records = list(csv.DictReader(f))
    assert sum(Decimal(r["amount"]) for r in records) == TOTAL


def test_export_format_option_and_filters(capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path) -> None:
    target = tmp_path / "costs.data"
    code, _, err = run(
        capsys, "export", str(target), "--store", store_url, "--format", "json", "--tag", "team=docs", "--no-progress"
    )
    assert code == 0 and err == ""
    records = json.loads(target.read_text())
    assert len(records) == 20 and {r["tags"]["team"] for r in records} == {"docs"}


def test_export_errors(capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path) -> None:
    code, _, err = run(capsys, "export", str(tmp_path / "no" / "such" / "dir.csv"), "--store", store_url)
    assert_one_line_error(code, err, "does not exist")
    code, _, err = run(capsys, "export", str(tmp_path / "costs.xlsx"), "--store", store_url)
    assert_one_line_error(code, err, "cannot tell the export format")
    code, _, err = run(capsys, "export", str(tmp_path), "--store", store_url)
    assert_one_line_error(code, err, "is a directory")


# -- prices -------------------------------------------------------------------------------------------------------


def test_prices_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "prices", "gpt-4o-mini")
    assert code == 0
    # one row per provider that sells the model, each at its own price
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("gpt-4o-mini ")]
    assert ["gpt-4o-mini", "openai", "0.15", "0.60", "0.075", "-", "128,000"] in rows
    assert "per million tokens" in out
    assert_fits_80_columns(out)


def test_prices_glob_provider_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "prices", "claude-3-5-*", "--provider", "anthropic", "--format", "json")
    assert code == 0
    records = json.loads(out)
    assert records and all(r["model"].startswith("claude-3-5-") and r["provider"] == "anthropic" for r in records)
    sonnet = next(r for r in records if r["model"] == "claude-3-5-sonnet")
    # money as exact strings in JSON, as everywhere in machine output
    assert (sonnet["input_per_mtok"], sonnet["output_per_mtok"], sonnet["context_window"]) == ("3", "15", 200000)


def test_prices_without_a_match(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "prices", "no-such-model-anywhere")
    assert_one_line_error(code, err, "no model matching 'no-such-model-anywhere'")


# -- demo and budgets ---------------------------------------------------------------------------------------------


def test_demo_then_report_and_budgets(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"duckdb://{tmp_path}/demo.duckdb"
    code, out, err = run(capsys, "demo", "--store", url, "--days", "7")
    assert code == 0, err
    assert "BudgetExceeded" in out and "nightly-batch" in out
    assert "By model" in out and "gpt-4o-mini" in out and "claude-3-5-sonnet" in out
    assert_fits_80_columns(out)
    code, out, _ = run(capsys, "report", "--store", url, "--by", "tag:team", "--format", "json")
    teams = {r["tag:team"] for r in json.loads(out)}
    assert {"support", "search", "docs", "legal"} <= teams
    code, out, _ = run(capsys, "budgets", "--store", url)
    assert code == 0 and "support-monthly" in out and "search-daily" in out
    code, out, _ = run(capsys, "budgets", "list", "--store", url, "--format", "json")
    assert code == 0 and {r["name"] for r in json.loads(out)} >= {"support-monthly", "search-daily", "llm-monthly"}


JSON = ("--format", "json")


def test_demo_is_deterministic_per_seed(capsys: pytest.CaptureFixture[str]) -> None:
    import pandas  # noqa: F401 - imported before freezegun patches time (pandas must not be first imported under it)
    from freezegun import freeze_time

    outs = []
    for _ in range(2):
        # The demo's history ends at the real "now", so two runs seconds apart may cut the last day at different
        # calls: both run at the same frozen moment.
        with freeze_time("2024-05-17 12:00:00"):
            code, out, _ = run(capsys, "demo", "--store", "memory://", "--days", "3", "--seed", "11", *JSON)
        assert code == 0
        outs.append([(r["category"], r["calls"], r["input_tokens"]) for r in json.loads(out)])
    assert outs[0] == outs[1]
    assert sum(calls for _, calls, _ in outs[0]) > 100


def test_budgets_in_a_store_without_any(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    code, out, _ = run(capsys, "budgets", "--store", store_url)
    assert code == 0 and "No budgets" in out


# -- the real command ---------------------------------------------------------------------------------------------


def test_python_dash_m_llmcost(tmp_path: Path, store_url: str) -> None:
    env = {**os.environ, "LLMCOST_STORE": store_url}
    done = subprocess.run(
        [sys.executable, "-m", "llmcost", "report", "--by", "model", "--format", "csv"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("model,cost,calls")
    bad = subprocess.run(
        [sys.executable, "-m", "llmcost", "report", "--since", "soon"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert_one_line_error(bad.returncode, bad.stderr, "cannot read the time 'soon'")
    helped = subprocess.run([sys.executable, "-m", "llmcost", "--help"], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0
    for command in ("demo", "report", "export", "prices", "budgets"):
        assert command in helped.stdout


@pytest.mark.parametrize("command", ["demo", "report", "export", "prices", "budgets"])
def test_every_command_has_help_with_store_and_format(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--store URL" in text and "--format" in text


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == 2 and "demo" in out
