"""The llmcost command: report, export, prices, budgets and demo, run in-process on real store files, plus one
real subprocess. Errors must be one line on stderr with exit status 2, never a traceback."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

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
        (["report", "--since", "999999d"], ["cannot read the time '999999d'", "0001-01-01 to 9999-12-31"]),
        (["report", "--since", "99999999999d"], ["cannot read the time '99999999999d'"]),
        (["report", "--since", "2024-05-02", "--until", "2024-05-01"], ["must be before --until"]),
        (["report", "--by", "colour"], ["--by must name"]),
        (["report", "--by", "model,Model"], ["--by must name", "got 'Model' (did you mean 'model'?)"]),
        (["reprice", "--by", "Resource"], ["--by must name", "(did you mean 'resource'?)"]),
        (["report", "--freq", "fortnightly"], ["--freq must be one of", "YS (Y, A, AS, year, yearly)"]),
        (
            ["report", "--html", "never.html", "--invoice", "/nonexistent/inv.csv"],
            ["--invoice: no file '/nonexistent/inv.csv'"],
        ),
        (["reconcile", "/nonexistent/inv.csv"], ["INVOICE: no file '/nonexistent/inv.csv'"]),
        (["reconcile", "/"], ["INVOICE: '/' is a directory"]),
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


@pytest.mark.parametrize("command", [["report"], ["export", "out.csv"]])
def test_reading_a_directory_that_is_not_a_store_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    monkeypatch.chdir(project)
    code, _, err = run(capsys, *command, "--store", ".")
    assert_one_line_error(code, err, "is not an llmcost Parquet store", "_llmcost.json")
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt"]


def test_making_a_store_in_a_directory_of_other_files_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # demo and serve made a store wherever they were pointed: a project's root gained _llmcost.json, _lock and
    # day=... directories among its files. An empty or new directory, or a store, is still taken. (serve opens its
    # store as demo does, through open_cli_store(create=True): checked there, so a regression cannot leave a
    # server running.)
    from llmcost.cli._args import CliError
    from llmcost.cli._store import open_cli_store

    project = tmp_path / "proj"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    monkeypatch.chdir(project)
    code, _, err = run(capsys, "demo", "--days", "2", "--store", ".")
    assert_one_line_error(code, err, "holds other files and is not an llmcost Parquet store")
    with pytest.raises(CliError, match="holds other files"):
        open_cli_store(f"parquet://{project}", create=True)
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(capsys, "demo", "--days", "2", "--store", str(empty))[0] == 0
    assert (empty / "_llmcost.json").exists()


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
    assert parse_when("20240531", now=now, end_of_day=True) == datetime(2024, 6, 1, tzinfo=timezone.utc)
    end = datetime.max.replace(tzinfo=timezone.utc)
    assert parse_when("9999-12-31", now=now, end_of_day=True) == end
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
    assert (sonnet["input_per_mtok"], sonnet["output_per_mtok"], sonnet["context_window"]) == ("3.00", "15.00", 200000)


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


def test_budgets_list_shows_what_each_budget_counts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # A tag- or model-scoped budget used to be listed exactly as a store-wide one (name, limit, period only).
    import llmcost

    tracker = llmcost.CostTracker(DuckDBStore(tmp_path / "b.duckdb"))
    manager = llmcost.BudgetManager(tracker)
    manager.create("search-daily", 50, "daily", tags={"team": "search"})
    manager.create("ranker-gpt4o", 20, "monthly", model="gpt-4o", resource="ranker", thresholds=(0.5, 0.9))
    manager.create("all", 100, "total")
    tracker.close()
    url = f"duckdb://{tmp_path}/b.duckdb"
    code, out, _ = run(capsys, "budgets", "list", "--store", url)
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert "team=search" in rows["search-daily"] and "50/80/90/100%" in rows["search-daily"]
    assert "model=gpt-4o resource=ranker" in rows["ranker-gpt4o"] and "50/90%" in rows["ranker-gpt4o"]
    assert "everything" in rows["all"]
    code, out, _ = run(capsys, "budgets", "list", "--store", url, *JSON)
    found = {r["name"]: r for r in json.loads(out)}
    assert found["search-daily"]["tags"] == {"team": "search"} and found["search-daily"]["model"] is None
    assert (found["ranker-gpt4o"]["model"], found["ranker-gpt4o"]["resource"]) == ("gpt-4o", "ranker")
    assert found["ranker-gpt4o"]["thresholds"] == [0.5, 0.9] and found["all"]["limit"] == "100.00"
    code, out, _ = run(capsys, "budgets", "list", "--store", url, "--format", "csv")
    assert out.splitlines()[0] == "name,period,limit,model,category,resource,tags,thresholds"
    assert 'search-daily,daily,50.00,,,,"{""team"": ""search""}",' in out


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
    # The same columns as with budgets (status gave period_start and period_end only when there were none).
    code, out, _ = run(capsys, "budgets", "--store", store_url, "--format", "csv")
    assert code == 0 and out == "name,period,limit,spent,remaining,utilization\n"


def test_budget_tables_never_cut_names_filters_or_thresholds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A name cut to "support-bot-producti…" names no budget; a filter cut short misstates what it counts.
    import llmcost

    tracker = llmcost.CostTracker(DuckDBStore(tmp_path / "b.duckdb"))
    manager = llmcost.BudgetManager(tracker)
    name = "support-bot-production-eu-west-1"
    manager.create(name, 25000, "monthly", tags={"team": "support"})
    manager.create(
        "search-reranker-staging",
        1500,
        "weekly",
        model="gpt-4o",
        resource="search-rerank",
        tags={"env": "staging", "team": "search"},
        thresholds=(0.25, 0.5, 0.75, 0.8, 0.9, 0.95, 1.0),
    )
    manager.create("llm-monthly", 1500, "monthly", category="llm_inference")
    tracker.close()
    url = f"duckdb://{tmp_path}/b.duckdb"
    for argv, whole in (
        (["budgets"], [name, "search-reranker-staging"]),
        (
            ["budgets", "list"],
            [
                name,
                "model=gpt-4o resource=search-rerank env=staging team=search",
                "25/50/75/80/90/95/100%",
                "category=llm_inference",
            ],
        ),
    ):
        code, out, err = run(capsys, *argv, "--store", url)
        assert code == 0, err
        assert_fits_80_columns(out)
        assert "…" not in out, out
        for text in whole:
            assert text in out, (text, out)
    code, out, _ = run(capsys, "budgets", "--store", url, "--format", "csv")
    assert out.splitlines()[0] == "name,period,limit,spent,remaining,utilization"


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


# -- what a new user trips over (issue 17) ------------------------------------------------------------------------


def _cli(*argv: str, cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "llmcost", *argv],
        capture_output=True,
        cwd=cwd,
        timeout=120,
        **kwargs,  # type: ignore[call-overload]
    )


def test_export_dash_and_no_path_stream_into_a_real_pipe(tmp_path: Path, store_url: str) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for argv in (["export", "-"], ["export"], ["export", "/dev/stdout", "--format", "csv"]):
        done = _cli(*argv, "--store", store_url, cwd=cwd)
        assert done.returncode == 0, done.stderr
        records = list(csv.DictReader(io.StringIO(done.stdout.decode())))
        assert len(records) == len(ENTRIES), argv
        assert sum(Decimal(r["amount"]) for r in records) == TOTAL
        assert b"wrote 61 entries" in done.stderr and b"wrote" not in done.stdout  # the note never mixes with data
    assert os.listdir(cwd) == []  # no file named "-" and no temporary file left behind
    parquet = _cli("export", "-", "--format", "parquet", "--store", store_url, cwd=cwd)
    assert parquet.returncode == 0 and parquet.stdout.startswith(b"PAR1") and parquet.stdout.endswith(b"PAR1")


def test_export_dash_writes_text_to_a_text_only_stdout(store_url: str) -> None:
    # (``redirect_stdout`` and notebooks give ``sys.stdout`` a text stream without ``buffer``.)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["export", "-", "--store", store_url]) == 0
        assert main(["export", "-", "--format", "parquet", "--store", store_url]) != 0
    records = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(records) == len(ENTRIES) and sum(Decimal(r["amount"]) for r in records) == TOTAL
    assert "standard output takes text here, and this format is binary" in err.getvalue()


def test_export_writes_through_a_named_pipe(capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path) -> None:
    import stat
    import threading

    fifo = tmp_path / "costs.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code, out, err = run(capsys, "export", str(fifo), "--format", "json", "--store", store_url)
    reader.join(timeout=30)
    assert code == 0, err
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still a pipe, not replaced by a plain file
    assert len(json.loads(received[0])) == len(ENTRIES)
    assert out == "" and "wrote 61 entries" in err


def test_export_and_html_write_through_a_symlink(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path
) -> None:
    real, link = tmp_path / "real.csv", tmp_path / "link.csv"
    real.write_text("old\n")
    link.symlink_to(real)
    code, _, err = run(capsys, "export", str(link), "--store", store_url)
    assert code == 0, err
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert len(list(csv.DictReader(io.StringIO(real.read_text())))) == len(ENTRIES)
    page, page_link = tmp_path / "page.html", tmp_path / "latest.html"
    page.write_text("")
    page_link.symlink_to(page)
    code, _, err = run(capsys, "report", "--store", store_url, "--html", str(page_link), "--format", "json")
    assert code == 0, err
    assert page_link.is_symlink() and page.read_text().startswith("<!DOCTYPE html>")


def test_written_files_follow_the_umask(capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        for name in ("a.csv", "a.json", "a.parquet"):
            code, _, err = run(capsys, "export", str(tmp_path / name), "--store", store_url)
            assert code == 0, err
        code, _, err = run(capsys, "report", "--store", store_url, "--html", str(tmp_path / "r.html"), *JSON)
        assert code == 0, err
    finally:
        os.umask(previous)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir() if p.name != "costs.duckdb"}
    assert modes == dict.fromkeys(("a.csv", "a.json", "a.parquet", "r.html"), "0o640")


def test_an_existing_file_keeps_its_permissions(store_url: str, tmp_path: Path) -> None:
    # As the shell's `>` does: a private 0600 file replaced by a 0644 one would show its figures to every user.
    # A real child process, under the usual umask, which would give a new file 0644.
    for argv in (["export", "{file}"], ["report", "--html", "{file}", *JSON]):
        file = tmp_path / ("private.csv" if argv[0] == "export" else "private.html")
        file.write_text("old\n")
        file.chmod(0o600)
        done = _cli(*[a.format(file=file) for a in argv], "--store", store_url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert file.read_text() != "old\n" and oct(file.stat().st_mode & 0o777) == "0o600", argv


def test_text_tables_show_money_exactly(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Through a float, 2.675 showed as $2.67 and a 20-digit total with made-up digits ($...567,168.00).
    path = tmp_path / "round.duckdb"
    store = DuckDBStore(path)
    amounts = {"a": "2.675", "b": "12345678901234567890.123456789", "c": "0.00999995"}
    store.append(
        [
            CostEntry(id=f"{i:026x}", timestamp=DAY, amount=amount, category="compute", resource=name)
            for i, (name, amount) in enumerate(amounts.items())
        ]
    )
    store.close()
    code, out, err = run(capsys, "report", "--store", f"duckdb://{path}", "--by", "resource")
    assert code == 0, err
    shown = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:]}
    assert shown == {"a": "$2.68", "b": "$12,345,678,901,234,567,890.12", "c": "$0.0100"}


def test_until_the_last_day_there_is_covers_every_entry(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    # The midnight after 9999-12-31 is no datetime: the day was refused with a message saying it was out of range.
    code, out, err = run(capsys, "report", "--store", store_url, "--until", "9999-12-31", "--by", "model", *JSON)
    assert code == 0, err
    assert sum(Decimal(row["cost"]) for row in json.loads(out)) == TOTAL
    assert parse_when("9999-12-31", now=NOW, end_of_day=True) == datetime.max.replace(tzinfo=timezone.utc)


def test_a_postgresql_store_that_cannot_be_reached_is_one_line_for_a_reading_command(tmp_path: Path) -> None:
    # The store logged "appends will spill to ... until it is back" first: a second line, about writes that a
    # report never makes. A real child process against a port nothing listens on.
    pytest.importorskip("psycopg", reason="llmcost[postgres] is not installed")
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: connections to it are refused
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}  # its spill directory, not the user's
    done = _cli("report", "--store", f"postgresql://nobody@127.0.0.1:{port}/costs", cwd=tmp_path, env=env)
    err = done.stderr.decode()
    assert_one_line_error(done.returncode, err, "llmcost report: error: could not read PostgreSQL")


def test_html_into_a_directory_or_a_read_only_place_is_one_line(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = run(capsys, "report", "--store", store_url, "--html", str(out_dir))
    assert_one_line_error(code, err, str(out_dir), "is a directory")
    assert "Errno" not in err and ".tmp" not in err
    assert list(out_dir.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["costs.duckdb", "out"]

    def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / ".report.html.x.tmp"))

    from llmcost.analytics import _output

    monkeypatch.setattr(_output.tempfile, "mkstemp", read_only)
    target = tmp_path / "report.html"
    code, _, err = run(capsys, "report", "--store", store_url, "--html", str(target))
    assert_one_line_error(code, err, f"cannot write {target}", "read-only file system")
    assert "Errno" not in err and ".tmp" not in err


@pytest.fixture
def month_store(tmp_path: Path) -> str:
    """A store at a frozen "now" of 2024-05-20 12:00 UTC: $100 on May 2, $1 six hours ago, $50 in April."""
    moment = datetime(2024, 5, 20, 12, tzinfo=timezone.utc)
    store = DuckDBStore(tmp_path / "month.duckdb")
    store.append(
        [
            CostEntry(id=f"{1:026x}", timestamp=datetime(2024, 4, 20, tzinfo=timezone.utc), amount="50"),
            CostEntry(id=f"{2:026x}", timestamp=datetime(2024, 5, 2, tzinfo=timezone.utc), amount="100"),
            CostEntry(id=f"{3:026x}", timestamp=moment - timedelta(hours=6), amount="1", tags={"team": "a"}),
        ]
    )
    store.close()
    return f"duckdb://{tmp_path}/month.duckdb"


def test_report_since_keeps_the_forecast_on_the_whole_month(
    capsys: pytest.CaptureFixture[str], month_store: str
) -> None:
    import pandas  # noqa: F401 - imported before freezegun patches time
    from freezegun import freeze_time

    with freeze_time("2024-05-20 12:00:00"):
        code, out, err = run(capsys, "report", "--store", month_store, "--since", "24h")
    assert code == 0, err
    assert "$1.00 over 1 calls" in out  # the selection
    assert "This month, 2024-05-01 to 2024-05-31 UTC:" in out
    assert "$101.00 so far" in out  # the whole month, not the 24 hours selected, and not April
    assert "(the whole month, not only the selection since 2024-05-19 12:00 UTC)" in out
    assert "Daily spend" not in out or "of the selection" in out
    assert_fits_80_columns(out)
    with freeze_time("2024-05-20 12:00:00"):
        code, out, _ = run(capsys, "report", "--store", month_store, "--tag", "team=a")
    assert "This month, 2024-05-01 to 2024-05-31 UTC, entries tagged team=a:" in out and "$1.00 so far" in out


def test_bars_heading_says_how_many_periods_it_shows(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    code, out, _ = run(capsys, "report", "--store", store_url, "--since", (DAY + timedelta(days=2)).isoformat())
    assert code == 0
    heading = next(line for line in out.splitlines() if line.startswith("Daily spend"))
    shown = len(out.split(heading + "\n")[1].split("\n\n")[0].splitlines())
    assert heading == f"Daily spend (last {shown} days of the selection)"


def test_every_line_of_text_output_fits_80_columns(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    for argv in (
        ["report"],
        # (The entries end at 22:00 UTC yesterday: a 24-hour window is empty from 22:00 UTC on, and then prints
        # the one-line "No entries" message instead of a report.)
        ["report", "--since", "3d"],
        ["report", "--since", "2d", "--tag", "team=search"],
        ["report", "--by", "model,tag:team,tag:env,provider"],
        ["report", "--by", "model", "--freq", "W"],
        ["budgets"],
    ):
        code, out, err = run(capsys, *argv, "--store", store_url)
        assert code == 0, err
        assert "No entries" not in out, argv  # a report to check, at any time of day
        assert_fits_80_columns(out)
    for pattern in ("claude-sonnet-4", "gpt", "gemini"):
        code, out, _ = run(capsys, "prices", pattern)
        assert code == 0
        # ids are never cut; a line is wider than 80 columns only when an id alone is
        assert all(len(line) <= 80 or " " not in line.strip() for line in out.splitlines())


def test_prices_keep_every_model_id_whole(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "prices", "claude-sonnet-4", *JSON)
    ids = [(r["model"], r["provider"]) for r in json.loads(out)]
    code, out, _ = run(capsys, "prices", "claude-sonnet-4")
    assert code == 0 and "…" not in out
    words = [line.split() for line in out.splitlines()[2:-1]]
    shown = []
    for line in words:  # an id too long for its column has a line of its own, then its row
        if len(line) == 1:
            shown.append(line[0])
        elif line[0] in {provider for _, provider in ids} and shown and len(shown[-1].split()) == 1:
            shown[-1] = f"{shown[-1]} {line[0]}"
        else:
            shown.append(f"{line[0]} {line[1]}")
    assert shown == [f"{model} {provider}" for model, provider in ids]
    assert len({m for m, _ in ids if m.startswith("global.anthropic.")}) >= 2  # ids that only differ at their ends


def test_database_errors_are_one_clean_line_about_the_store(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path
) -> None:
    csv_file = tmp_path / "all.csv"
    code, _, err = run(capsys, "export", str(csv_file), "--store", store_url)
    assert code == 0, err
    code, _, err = run(capsys, "report", "--store", f"duckdb://{csv_file}")
    assert_one_line_error(code, err, f"cannot read the store duckdb://{csv_file}", "not a DuckDB database", "--store")
    assert "Catalog Error" not in err and "in-memory" not in err
    junk = tmp_path / "pq" / "day=2024-05-01"
    junk.mkdir(parents=True)
    (junk / "part-0.parquet").write_bytes(b"not parquet at all, not at all")
    code, _, err = run(capsys, "report", "--store", f"parquet://{tmp_path / 'pq'}")
    assert_one_line_error(code, err, "could not read", "part-0.parquet", "damaged")  # the store's StoreError
    assert not re.search(r"\b[A-Z][a-z]+ Error:|LINE \d|\^|read_parquet|SELECT", err), err
    code, _, err = run(capsys, "export", str(tmp_path / "costs.xlsx"), "--store", store_url)
    assert_one_line_error(code, err, "--format")
    assert "format=" not in err


@pytest.mark.parametrize(
    "message",
    [
        "Binder Error: No files found that match the pattern\nLINE 1: SELECT * FROM read_parquet('x/*.parquet')\n"
        "                      ^",
        'Parser Error: syntax error at or near "x" LINE 1: SELECT x ^^^^',
        "IO Error: Could not open file: No such file or directory",
        "Out of Range Error: Overflow in SUM of DECIMAL: the result does not fit in DECIMAL(38)",
        "Not implemented Error: this",
    ],
)
def test_clean_message_drops_sql_and_error_kinds(message: str) -> None:
    from llmcost.cli._main import clean_message

    cleaned = clean_message(message)
    assert "\n" not in cleaned and "LINE" not in cleaned and "^" not in cleaned and " Error:" not in cleaned
    assert cleaned


def test_report_of_sums_past_10_to_the_20(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "big.duckdb")
    when = datetime(2024, 5, 17, 12, tzinfo=timezone.utc)
    store.append([CostEntry(id=f"{n:026x}", timestamp=when, amount="90000000000000000000") for n in range(3)])
    store.close()
    code, out, err = run(capsys, "report", "--store", str(tmp_path / "big.duckdb"), "--format", "csv")
    assert code == 0, err
    assert "270000000000000000000" in out


def test_an_overflow_is_not_blamed_on_the_store(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    import llmcost.cli._main as cli_main

    def overflow(args: object, out: object) -> int:
        raise duckdb.OutOfRangeException("Out of Range Error: Overflow in SUM of BIGINT")

    monkeypatch.setitem(cli_main._COMMANDS, "report", overflow)
    code, _, err = run(capsys, "report", "--store", "memory://")
    assert_one_line_error(code, err, "too large", "Overflow in SUM of BIGINT")
    assert "Out of Range" not in err and "cannot read the store" not in err


def test_report_by_key_and_freq_sorts_by_period_first(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    code, out, _ = run(capsys, "report", "--store", store_url, "--by", "model", "--freq", "D", *JSON)
    assert code == 0
    records = json.loads(out)
    periods = [r["period"] for r in records]
    assert periods == sorted(periods) and len(set(periods)) > 1
    for period in set(periods):  # within a period, the largest cost first
        costs = [Decimal(r["cost"]) for r in records if r["period"] == period]
        assert costs == sorted(costs, reverse=True)
    code, out, _ = run(capsys, "report", "--store", store_url, "--by", "model", "--freq", "D")
    shown = [line.split()[0] for line in out.splitlines()[2:]]
    assert shown == sorted(shown)


def test_money_in_json_is_exact_strings_everywhere(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    from llmcost import BudgetManager, CostTracker

    tracker = CostTracker(store_url)
    BudgetManager(tracker).create("search-daily", "40.50", "daily", tags={"team": "search"})
    tracker.close()
    code, out, err = run(capsys, "report", "--store", store_url, "--by", "model", *JSON)
    assert code == 0, err
    records = json.loads(out)
    assert all(isinstance(r["cost"], str) for r in records)
    assert sum(Decimal(r["cost"]) for r in records) == TOTAL
    _, out, _ = run(capsys, "report", "--store", store_url, "--by", "category", "--format", "csv")
    assert {r["cost"] for r in csv.DictReader(io.StringIO(out))} == {"2.50", "15.00"}
    _, out, _ = run(capsys, "budgets", "--store", store_url, *JSON)
    (budget,) = json.loads(out)
    assert budget["limit"] == "40.50" and isinstance(budget["spent"], str) and isinstance(budget["remaining"], str)
    _, out, _ = run(capsys, "prices", "gpt-4o-mini", "--provider", "openai", *JSON)
    assert all(isinstance(r["input_per_mtok"], str) for r in json.loads(out))


def test_one_label_for_a_missing_key_in_text_and_html(
    capsys: pytest.CaptureFixture[str], store_url: str, tmp_path: Path
) -> None:
    page = tmp_path / "r.html"
    code, out, _ = run(capsys, "report", "--store", store_url, "--html", str(page))
    assert code == 0 and "(none)" in out
    html = page.read_text()
    assert "(none)" in html
    assert not re.search(r"\(no [a-z]+( tag)?\)", html)


def test_text_report_always_has_an_anomalies_section(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    code, out, _ = run(capsys, "report", "--store", store_url)
    assert code == 0
    assert "\nAnomalies (per " in out and ("No day stands out." in out or "score" in out)


# -- the demo, as a new user meets it -----------------------------------------------------------------------------


def test_demo_tells_one_story_and_refuses_to_mix_histories(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"duckdb://{tmp_path}/demo.duckdb"
    code, out, err = run(capsys, "demo", "--store", url, "--days", "7")
    assert code == 0, err
    store = DuckDBStore(tmp_path / "demo.duckdb")
    total, calls = store.total(), len(store.entries())
    store.close()
    assert f"{calls:,} tracked calls costing ${total:,.2f}." in " ".join(out.split())
    # stderr: no alert lines (and no progress bar: this is not a terminal); stdout lists every threshold once
    assert err == ""
    batch = " ".join(out.split("Last night's batch")[1].split("Saved budgets")[0].split())
    for share in ("50%", "80%", "90%"):
        assert batch.count(f"{share} at $") == 1
    assert batch.count("needed") == 1 and batch.count("spent") == 1
    amounts = re.findall(r"\$[\d,]+\.\d+", batch)
    assert amounts and all(len(a.split(".")[1]) == 4 for a in amounts), amounts
    code, _, err = run(capsys, "demo", "--store", url, "--days", "7")
    assert_one_line_error(code, err, "already holds entries", "--append")
    code, out, err = run(capsys, "demo", "--store", url, "--days", "3", "--append")
    assert code == 0, err
    store = DuckDBStore(tmp_path / "demo.duckdb")
    grown = store.total()
    store.close()
    this_run = Decimal(re.search(r"costing \$([\d,.]+)\.", " ".join(out.split())).group(1).replace(",", ""))
    assert abs(this_run - (grown - total)) < Decimal("0.01")


def test_demo_on_memory_does_not_suggest_a_command_that_cannot_work(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "--store", "memory://", "--days", "2")
    assert code == 0
    assert "Next: llmcost report" not in out
    assert "llmcost demo --store demo.duckdb" in out and "--store demo.duckdb" in out.splitlines()[-1]
    assert_fits_80_columns(out)


def test_demo_shows_progress_on_a_terminal_only(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code = main(["demo", "--store", "memory://", "--days", "2", *JSON])
    assert code == 0
    assert "simulating 2 days [" in terminal.getvalue() and "100%" in terminal.getvalue()
    assert all(len(chunk) <= 80 for chunk in terminal.getvalue().split("\r"))
    monkeypatch.undo()
    code, _, err = run(capsys, "demo", "--store", "memory://", "--days", "2", *JSON)
    assert code == 0 and err == ""


def test_the_demo_runaway_day_is_an_anomaly_in_both_reports(tmp_path: Path) -> None:
    from llmcost import MemoryStore, analytics
    from llmcost._demo import run_demo
    from llmcost._report._html import render_html
    from llmcost._report._overview import compute_overview
    from llmcost._report._text import render_text

    now = datetime(2024, 5, 17, 15, tzinfo=timezone.utc)
    store = MemoryStore()
    story = run_demo(store, days=14, now=now)
    assert story.runaway is not None
    flagged = analytics.anomalies(store).query("anomaly")
    assert [p.to_pydatetime() for p in flagged["period"]] == [story.runaway]
    overview = compute_overview(store, now=now)
    text = render_text(overview)
    section = text.split("\nAnomalies (per day")[1].split("\n\n")[0]
    assert f"{story.runaway:%Y-%m-%d}" in section
    assert f"{story.runaway:%Y-%m-%d}" in render_html(overview).split("<h2>Anomalies")[1]
    assert "the support bot's retry loop ran away" in " ".join(story.text().split())


# -- a database URL's password is never printed ---------------------------------------------------------------------
SECRET_URL = "postgresql://app:s3cret-pw@db.example:5432/costs?sslmode=require"


def test_shown_url_drops_a_database_password_only() -> None:
    from llmcost.cli._store import shown_url

    assert shown_url(SECRET_URL) == "postgresql://app@db.example:5432/costs?sslmode=require"
    assert shown_url("postgres://app:pw@db/costs?password=pw") == "postgres://app@db/costs"
    assert shown_url("postgresql://app@db/costs") == "postgresql://app@db/costs"
    assert shown_url("postgresql://app:pw@[db/costs") == "postgresql://<url not shown>"
    for url in ("duckdb://costs.duckdb", "parquet:///srv/costs", "memory://"):
        assert shown_url(url) == url


@pytest.fixture
def database_url_opens_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """``--store postgresql://...`` opens a DuckDB file instead (no server here): what the CLI prints of the URL
    is a function of the URL alone."""
    from llmcost.cli import _commands

    path = tmp_path / "db.duckdb"

    def open_cli_store(url: str, *, create: bool) -> DuckDBStore:
        assert url == SECRET_URL  # the command connects with the URL as given, password and all
        return DuckDBStore(path)

    monkeypatch.setattr(_commands, "open_cli_store", open_cli_store)
    return path


def test_report_and_demo_never_print_the_password(
    capsys: pytest.CaptureFixture[str], database_url_opens_a_file: Path, tmp_path: Path
) -> None:
    code, out, err = run(capsys, "report", "--store", SECRET_URL)  # an empty store: "No entries in ..."
    assert code == 0 and "s3cret-pw" not in out + err
    code, out, err = run(capsys, "budgets", "--store", SECRET_URL)
    assert code == 0 and "No budgets saved in" in out and "s3cret-pw" not in out + err
    code, out, err = run(capsys, "demo", "--days", "2", "--store", SECRET_URL)
    assert code == 0 and "s3cret-pw" not in out + err
    assert "llmcost report: postgresql://app@db.example:5432/costs" in out
    assert "Next: llmcost report --html report.html, with the same --store" in out
    code, out, err = run(capsys, "demo", "--days", "2", "--store", SECRET_URL)  # "already holds entries"
    assert_one_line_error(code, err, "the store postgresql://app@db.example:5432/costs?sslmode=require already")
    assert "s3cret-pw" not in out + err
    code, out, err = run(capsys, "report", "--store", SECRET_URL)
    assert code == 0 and "postgresql://app@db.example" in out and "s3cret-pw" not in out + err
    page = tmp_path / "report.html"
    code, out, err = run(capsys, "report", "--html", str(page), "--store", SECRET_URL)
    assert code == 0 and "s3cret-pw" not in out + err
    html = page.read_text()
    assert "app@db.example" in html and "s3cret-pw" not in html


def test_serve_never_prints_the_password(
    capsys: pytest.CaptureFixture[str], database_url_opens_a_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("fastapi", reason="llmcost[server] is not installed")
    from llmcost.server import _run

    def serve_on(sock: Any, store: Any, **kwargs: Any) -> None:  # not until Ctrl-C here
        sock.close()
        store.close()

    monkeypatch.setattr(_run, "serve_on", serve_on)
    code, out, err = run(capsys, "serve", "--store", SECRET_URL, "--port", "0")
    assert code == 0 and "llmcost serve: postgresql://app@db.example:5432/costs" in err
    assert "s3cret-pw" not in out + err


def test_report_csv_and_json_money_keeps_every_digit(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "large.duckdb"
    store = DuckDBStore(path)
    store.append(  # 29 significant digits in all: more than the default decimal context's 28
        [
            CostEntry(id="e1", timestamp=DAY, amount=Decimal("12345678901.123456789012345678")),
            CostEntry(id="e2", timestamp=DAY, amount=Decimal("1E-18")),
        ]
    )
    store.close()
    code, out, _ = run(capsys, "report", "--format", "csv", "--store", f"duckdb://{path}")
    assert code == 0 and next(csv.DictReader(io.StringIO(out)))["cost"] == "12345678901.123456789012345679"
    code, out, _ = run(capsys, "report", "--format", "json", "--store", f"duckdb://{path}")
    assert code == 0 and json.loads(out)[0]["cost"] == "12345678901.123456789012345679"


def test_the_demo_run_early_in_a_month_bills_no_whole_day_ahead_and_projects_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import pandas  # noqa: F401 - imported before freezegun patches time
    from freezegun import freeze_time

    with freeze_time("2026-12-01 02:12:00"):
        code, out, _ = run(capsys, "demo", "--store", "memory://", "--days", "14")
    assert code == 0
    forecast = out.split("\nForecast\n")[1].split("\n\n")[0]
    # The day's GPU and storage bills are recorded when the day ends: two hours into 1 December, none of them yet.
    assert "$0.00 so far, 2 h into the month: too early for a run-rate" in forecast
    with freeze_time("2026-12-02 12:00:00"):
        code, out, _ = run(capsys, "demo", "--store", "memory://", "--days", "14")
    forecast = out.split("\nForecast\n")[1].split("\n\n")[0]
    assert code == 0 and "by month end at the current rate" in forecast and "too early" not in forecast


@pytest.mark.parametrize("raised", ["runtime", "interrupt"])
def test_ctrl_c_during_a_duckdb_query_is_interrupted_with_status_130(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], raised: str
) -> None:
    # A SIGINT that lands while DuckDB runs a query comes out of it as RuntimeError("Query interrupted") (or its
    # InterruptException), not KeyboardInterrupt: `llmcost export` of a big store ended in that traceback, exit 1.
    import duckdb

    from llmcost import analytics

    def interrupted(*args: object, **kwargs: object) -> int:
        if raised == "runtime":
            raise RuntimeError("Query interrupted")
        raise duckdb.InterruptException("INTERRUPT Error: Interrupted!")

    monkeypatch.setattr(analytics, "export", interrupted)
    code, out, err = run(capsys, "export", str(tmp_path / "out.csv"), "--store", store_url)
    assert (code, out, err) == (130, "", "llmcost export: interrupted\n")


def test_a_runtime_error_that_is_no_interruption_stays_a_traceback(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmcost import analytics

    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("dictionary changed size during iteration")

    monkeypatch.setattr(analytics, "export", broken)
    with pytest.raises(RuntimeError, match="dictionary changed size"):
        main(["export", str(tmp_path / "out.csv"), "--store", store_url])


def test_a_stdout_that_cannot_encode_the_ellipsis_gets_a_degraded_report(tmp_path: Path) -> None:
    # On PYTHONIOENCODING=ascii the whole report failed: "'ascii' codec can't encode character '\u2026'".
    model = "modèle-très-long-d'une-équipe-qui-nomme-ses-modèles-ainsi"
    store = DuckDBStore(tmp_path / "costs.duckdb")
    store.append([CostEntry(id=f"{1:026x}", timestamp=NOW - timedelta(hours=1), amount="1.5", model=model)])
    store.close()
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    report = _cli("report", "--store", "costs.duckdb", "--html", "r.html", cwd=tmp_path, env=env)
    demo = _cli("demo", "--days", "2", "--store", "demo.duckdb", cwd=tmp_path, env=env)
    for done in (report, demo):
        assert done.returncode == 0, done.stderr.decode()
        text = done.stdout.decode("ascii")  # nothing but ASCII came out
        assert "..." in text, text  # cut names end so, as with the ellipsis
    assert "mod?le-tr?s-long-d'une" in report.stdout.decode(), report.stdout.decode()
    page = (tmp_path / "r.html").read_text(encoding="utf-8")  # files stay UTF-8 whatever stdout is
    assert "modèle-très-long-d&#x27;une-équipe" in page


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("{tmp}/missing.duckdb", "does not exist"),
        ("notastore.txt", "has no scheme"),
        ("{tmp}/notduckdb.duckdb", "not a DuckDB database"),
    ],
)
def test_an_error_about_a_store_from_llmcost_store_says_so(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    store_url: str,
    value: str,
    needle: str,
) -> None:
    # A user who never typed the URL (it is in their shell profile) was not told where it came from.
    (tmp_path / "notduckdb.duckdb").write_text("hello")
    monkeypatch.chdir(tmp_path)
    url = value.format(tmp=tmp_path)
    monkeypatch.setenv("LLMCOST_STORE", url)
    code, _, err = run(capsys, "report")
    assert_one_line_error(code, err, needle, f"(the store URL came from $LLMCOST_STORE={url})")
    code, _, err = run(capsys, "report", "--store", str(tmp_path / "other.duckdb"))  # given: from --store
    assert_one_line_error(code, err, "other.duckdb")
    assert "LLMCOST_STORE=" not in err
    monkeypatch.setenv("LLMCOST_STORE", store_url)
    code, _, err = run(capsys, "report", "--since", "xyz")  # not about the store: no word of it
    assert_one_line_error(code, err, "cannot read the time 'xyz'")
    assert "LLMCOST_STORE=" not in err
