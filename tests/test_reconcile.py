"""analytics.reconcile: recorded spend against the invoice, from the OpenAI organization costs API, the Anthropic
cost report (JSON and the console's CSV export) and a plain CSV; statuses, likely causes, and clear errors for bad
invoices.

The invoices below are shaped exactly as the providers document them (field names and nesting):
OpenAI ``GET /v1/organization/costs`` (https://platform.openai.com/docs/api-reference/usage/costs) and Anthropic
``GET /v1/organizations/cost_report`` (https://platform.claude.com/docs/en/api/admin/cost_report; ``amount`` in
cents as a decimal string). History is recorded with the real tracker and a clock; expected figures are worked out
by hand in the comments (catalog prices in USD per million tokens)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from llmcost import CostTracker, analytics
from llmcost.stores import DuckDBStore
from tests.conftest import Clock

D = Decimal
AUG_1 = datetime(2025, 8, 1, tzinfo=timezone.utc)
DAY = 86_400
T0 = int(AUG_1.timestamp())  # 1754006400


def result(value: Any, line_item: str | None, project_id: str | None, currency: str = "usd") -> dict[str, Any]:
    return {
        "object": "organization.costs.result",
        "amount": {"value": value, "currency": currency},
        "line_item": line_item,
        "project_id": project_id,
        "organization_id": "org-8Jk2",
    }


def openai_page(*buckets: tuple[int, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "object": "page",
        "data": [
            {"object": "bucket", "start_time": start, "end_time": start + DAY, "results": results}
            for start, results in buckets
        ],
        "has_more": False,
        "next_page": None,
    }


OPENAI = openai_page(
    (
        T0,  # 2025-08-01
        [
            result(2.5, "gpt-4o-2024-08-06, input", "proj_search"),
            result(1.0, "gpt-4o-2024-08-06, output", "proj_search"),
            result(0.45, "gpt-4o-mini-2024-07-18, input", "proj_search"),
            result(0.18, "gpt-4o-mini-2024-07-18, output", "proj_search"),
            result(0.25, "web search tool calls", "proj_search"),
            result(1.25, "gpt-4o-2024-08-06, input", "proj_ads"),
            result(0.5, "gpt-4o-2024-08-06, output", "proj_ads"),
        ],
    ),
    (T0 + DAY, []),  # 2025-08-02: nothing billed
)


@pytest.fixture
def openai_history(clock: Clock) -> CostTracker:
    tracker = CostTracker(clock=clock)
    clock.now = AUG_1 + timedelta(hours=9)
    search = {"project": "proj_search"}
    # gpt-4o: 1M x $2.5 + 0.1M x $10 = 3.5, as billed (2.5 + 1.0)
    tracker.record(model="gpt-4o-2024-08-06", input_tokens=1_000_000, output_tokens=100_000, tags=search)
    # gpt-4o-mini: 1M x $0.15 + 0.1M x $0.6 = 0.21; billed 0.45 + 0.18 = 0.63, three such calls
    tracker.record(model="gpt-4o-mini-2024-07-18", input_tokens=1_000_000, output_tokens=100_000, tags=search)
    clock.now = AUG_1 + timedelta(days=1, hours=3)
    # 2025-08-02, not billed: 0.1M x $2.5 = 0.25
    tracker.record(model="gpt-4o", input_tokens=100_000, output_tokens=0, tags=search)
    clock.now = AUG_1 + timedelta(days=4)
    tracker.record(model="gpt-4o", input_tokens=100_000, output_tokens=0, tags=search)  # after the invoice
    tracker.record(model="claude-3-5-haiku", input_tokens=100_000, output_tokens=0)  # another provider
    return tracker


def table(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    return list(frame[["day", "model", "project", "recorded", "billed", "delta", "status"]].itertuples(index=False))


def test_openai_costs_api_by_day_model_and_project(openai_history: CostTracker, tmp_path: Path) -> None:
    path = tmp_path / "costs.json"
    path.write_text(json.dumps(OPENAI), encoding="utf-8")
    frame = analytics.reconcile(openai_history, path)
    assert list(frame.columns) == [
        "day",
        "model",
        "project",
        "calls",
        "recorded",
        "billed",
        "delta",
        "delta_pct",
        "status",
        "likely_cause",
        "repriced",
    ]
    aug1, aug2 = date(2025, 8, 1), date(2025, 8, 2)
    assert table(frame) == [
        (aug1, "gpt-4o-2024-08-06", "proj_ads", D("0"), D("1.75"), D("-1.75"), "unrecorded"),
        (aug1, "gpt-4o-2024-08-06", "proj_search", D("3.5"), D("3.5"), D("0"), "match"),
        (aug1, "gpt-4o-mini-2024-07-18", "proj_search", D("0.21"), D("0.63"), D("-0.42"), "under"),
        (aug1, None, "proj_search", D("0"), D("0.25"), D("-0.25"), "unrecorded"),
        (aug2, "gpt-4o", "proj_search", D("0.25"), D("0"), D("0.25"), "unbilled"),
    ]
    causes = dict(zip(frame["status"] + " " + frame["model"].fillna("-"), frame["likely_cause"], strict=True))
    assert causes["match gpt-4o-2024-08-06"] is None
    assert "outside tracking (about 2 more calls" in causes["under gpt-4o-mini-2024-07-18"]
    assert "outside tracking" in causes["unrecorded gpt-4o-2024-08-06"]
    assert "not a per-token model charge (web search tool calls)" in causes["unrecorded -"]
    assert "not on the invoice" in causes["unbilled gpt-4o"]
    assert frame["delta_pct"].iloc[2] == pytest.approx(-0.42 / 0.63)  # delta over billed


def test_since_and_until_narrow_both_sides_to_those_days(openai_history: CostTracker, tmp_path: Path) -> None:
    path = tmp_path / "costs.json"
    path.write_text(json.dumps(OPENAI), encoding="utf-8")
    aug2 = analytics.reconcile(openai_history, path, since="2025-08-02")
    assert [(r.day, r.model, r.status) for r in aug2.itertuples()] == [(date(2025, 8, 2), "gpt-4o", "unbilled")]
    aug1 = analytics.reconcile(openai_history, path, until="2025-08-01")  # a date as until includes that day
    assert {r.day for r in aug1.itertuples()} == {date(2025, 8, 1)} and len(aug1) == 4
    repriced = analytics.reprice(openai_history, since="2025-08-02", by=())
    assert repriced["calls"].tolist() == [len(openai_history.entries(since=datetime(2025, 8, 2, tzinfo=timezone.utc)))]


def test_a_since_or_until_within_a_day_compares_that_whole_day(clock: Clock, tmp_path: Path) -> None:
    # Two gpt-4o calls on 2025-08-01, at 01:00 and 18:00, $3.50 each (1M x $2.5 + 0.1M x $10); the invoice bills
    # the day's 7.00. A since or until inside the day keeps the whole day on both sides.
    store = DuckDBStore(tmp_path / "costs.duckdb")
    with CostTracker(store, clock=clock) as tracker:
        for hour in (1, 18):
            clock.now = AUG_1 + timedelta(hours=hour)
            tracker.record(model="gpt-4o-2024-08-06", input_tokens=1_000_000, output_tokens=100_000)
        invoice = pd.DataFrame({"date": ["2025-08-01"], "model": ["gpt-4o"], "amount": ["7.00"]})
        whole = [(date(2025, 8, 1), "gpt-4o-2024-08-06", None, D("7"), D("7"), D("0"), "match")]
        clock.now = AUG_1 + timedelta(days=1, hours=12)
        assert table(analytics.reconcile(tracker, invoice, since="30h")) == whole  # since 2025-08-01 06:00
        assert table(analytics.reconcile(store, invoice, since=AUG_1 + timedelta(hours=6))) == whole
        assert table(analytics.reconcile(store, invoice, until=AUG_1 + timedelta(hours=6))) == whole
        assert analytics.reconcile(store, invoice, since=AUG_1 + timedelta(days=1)).empty


def test_the_documented_example_without_line_items_reconciles_by_day(clock: Clock) -> None:
    # The API reference's own example response: no group_by, so no line_item and no project_id.
    page = {
        "object": "page",
        "data": [
            {
                "object": "bucket",
                "start_time": 1730419200,
                "end_time": 1730505600,
                "results": [
                    {
                        "object": "organization.costs.result",
                        "amount": {"value": 0.06, "currency": "usd"},
                        "line_item": None,
                        "project_id": None,
                    }
                ],
            }
        ],
        "has_more": False,
        "next_page": None,
    }
    clock.now = datetime(2024, 11, 1, 10, tzinfo=timezone.utc)
    tracker = CostTracker(clock=clock)
    tracker.record(model="gpt-4o", input_tokens=20_000, output_tokens=1_000)  # 0.05 + 0.01 = 0.06
    tracker.record(model="gpt-4o-mini", input_tokens=10_000)  # 0.0015
    frame = analytics.reconcile(tracker, page)
    # Every model of the day together: 0.0615 against 0.06. "0.06" has two decimals, so it may hide up to half a
    # cent of rounding: 0.0015 <= 0.005 + 0.1% x 0.06 is a match.
    assert table(frame) == [(date(2024, 11, 1), None, None, D("0.0615"), D("0.06"), D("0.0015"), "match")]
    assert frame["calls"].item() == 2


def test_several_pages_as_a_list_and_a_store_source(openai_history: CostTracker, tmp_path: Path) -> None:
    first = dict(openai_page(*[(b["start_time"], b["results"]) for b in OPENAI["data"][:1]]), has_more=True)
    first["next_page"] = "page_AAAAAGdGxdEATdHO"
    second = openai_page((T0 + DAY, []))
    path = tmp_path / "pages.json"
    path.write_text(json.dumps([first, second]), encoding="utf-8")
    store = DuckDBStore(tmp_path / "costs.duckdb")
    store.append(openai_history.entries())
    try:
        frame = analytics.reconcile(store, path)
    finally:
        store.close()
    assert frame["status"].tolist() == ["unrecorded", "match", "under", "unrecorded", "unbilled"]


ANTHROPIC = {
    "data": [
        {
            "starting_at": "2025-09-01T00:00:00Z",
            "ending_at": "2025-09-02T00:00:00Z",
            "results": [
                # Batch calls: $3/$15 at half price: 1M in -> 150.00 cents, 0.1M out -> 75.00 cents
                {
                    "currency": "USD",
                    "amount": "150.00",
                    "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
                    "description": "Claude Sonnet 3.5 Usage - Input Tokens, Batch",
                    "cost_type": "tokens",
                    "context_window": "0-200k",
                    "model": "claude-3-5-sonnet-20241022",
                    "service_tier": "batch",
                    "token_type": "uncached_input_tokens",
                },
                {
                    "currency": "USD",
                    "amount": "75.00",
                    "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
                    "description": "Claude Sonnet 3.5 Usage - Output Tokens, Batch",
                    "cost_type": "tokens",
                    "context_window": "0-200k",
                    "model": "claude-3-5-sonnet-20241022",
                    "service_tier": "batch",
                    "token_type": "output_tokens",
                },
                # Haiku 3.5 with cache reads: 0.2M uncached x $0.8 = 16.00 cents; 0.8M cached x $0.08 = 6.40 cents
                {
                    "currency": "USD",
                    "amount": "16.00",
                    "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
                    "description": "Claude Haiku 3.5 Usage - Input Tokens",
                    "cost_type": "tokens",
                    "context_window": "0-200k",
                    "model": "claude-3-5-haiku-20241022",
                    "service_tier": "standard",
                    "token_type": "uncached_input_tokens",
                },
                {
                    "currency": "USD",
                    "amount": "6.40",
                    "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
                    "description": "Claude Haiku 3.5 Usage - Cache Read",
                    "cost_type": "tokens",
                    "context_window": "0-200k",
                    "model": "claude-3-5-haiku-20241022",
                    "service_tier": "standard",
                    "token_type": "cache_read_input_tokens",
                },
                # Sonnet 4.5, 0.1M in x $3 = 30.00 cents
                {
                    "currency": "USD",
                    "amount": "30.00",
                    "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
                    "description": "Claude Sonnet 4.5 Usage - Input Tokens",
                    "cost_type": "tokens",
                    "context_window": "0-200k",
                    "model": "claude-sonnet-4-5-20250929",
                    "service_tier": "standard",
                    "token_type": "uncached_input_tokens",
                },
                # A model llmcost has no price for: $1.00
                {
                    "currency": "USD",
                    "amount": "100.00",
                    "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
                    "description": "Claude Opus 9 Usage - Input Tokens",
                    "cost_type": "tokens",
                    "context_window": "0-200k",
                    "model": "claude-opus-9",
                    "service_tier": "standard",
                    "token_type": "uncached_input_tokens",
                },
                # Web search in the default workspace: 1.00 cent
                {
                    "currency": "USD",
                    "amount": "1.00",
                    "workspace_id": None,
                    "description": "Web Search",
                    "cost_type": "web_search",
                    "context_window": None,
                    "model": None,
                    "service_tier": None,
                    "token_type": None,
                },
            ],
        }
    ],
    "has_more": False,
    "next_page": None,
}


def test_anthropic_cost_report_tells_the_likely_causes(clock: Clock, tmp_path: Path) -> None:
    tracker = CostTracker(clock=clock, on_unknown_model="ignore")
    clock.now = datetime(2025, 9, 1, 15, tzinfo=timezone.utc)
    ws = {"workspace": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ"}
    # Sent through the Batch API but recorded at standard prices: 3 + 1.5 = 4.5, billed 2.25
    tracker.record(model="claude-3-5-sonnet-20241022", input_tokens=1_000_000, output_tokens=100_000, tags=ws)
    # Recorded with the cache reads at the plain input rate: 1M x $0.8 = 0.8; billed 0.16 + 0.064 = 0.224
    tracker.record(
        model="claude-3-5-haiku-20241022", input_tokens=1_000_000, cache_read_tokens=800_000, amount="0.8", tags=ws
    )
    # Recorded at an old user price of $5/M: 0.5; the catalog (and the bill) say 0.1M x $3 = 0.3
    tracker.record(model="claude-sonnet-4-5-20250929", input_tokens=100_000, amount="0.5", tags=ws)
    # Unknown to the catalog: recorded unpriced (0), billed 1.00
    tracker.record(model="claude-opus-9", provider="anthropic", input_tokens=100_000, tags=ws)
    path = tmp_path / "cost_report.json"
    path.write_text(json.dumps(ANTHROPIC), encoding="utf-8")

    frame = analytics.reconcile(tracker, path, project_tag="workspace")
    got = {row.model: row for row in frame.itertuples()}
    sonnet = got["claude-3-5-sonnet-20241022"]
    assert (sonnet.recorded, sonnet.billed, sonnet.delta, sonnet.status) == (D("4.5"), D("2.25"), D("2.25"), "over")
    assert "Batch" in sonnet.likely_cause and "service tier not applied" in sonnet.likely_cause
    haiku = got["claude-3-5-haiku-20241022"]
    assert (haiku.recorded, haiku.billed, haiku.repriced, haiku.status) == (D("0.8"), D("0.224"), D("0.224"), "over")
    assert "cache rate not applied" in haiku.likely_cause
    stale = got["claude-sonnet-4-5-20250929"]
    assert (stale.recorded, stale.billed, stale.status) == (D("0.5"), D("0.3"), "over")
    assert "not the catalog's prices" in stale.likely_cause
    opus = got["claude-opus-9"]
    assert (opus.recorded, opus.billed, opus.status) == (D("0"), D("1"), "under")
    assert "1 call(s) recorded unpriced" in opus.likely_cause
    web = got[None]
    assert (web.project, web.billed, web.status) == (None, D("0.01"), "unrecorded")
    assert "web_search" in web.likely_cause


CONSOLE_CSV = """\
usage_date_utc,model,workspace,api_key,usage_type,context_window,token_type,cost_usd,list_price_usd,cost_type,inference_geo,speed
2025-10-01,Claude Sonnet 4.5,Default,prod-key,message,≤ 200k,input_no_cache,0.30,0.30,token,global,
2025-10-01,Claude Sonnet 4.5,Default,prod-key,message,≤ 200k,output,0.15,0.15,token,global,
2025-10-01,Claude Haiku 4.5,Default,prod-key,message,≤ 200k,output,0.00,0.00,token,global,
2025-10-02,Claude Haiku 4.5,Default,prod-key,message,≤ 200k,input_no_cache,0.50,0.50,token,global,
"""


def test_anthropic_console_csv_export(clock: Clock, tmp_path: Path) -> None:
    tracker = CostTracker(clock=clock)
    clock.now = datetime(2025, 10, 1, 8, tzinfo=timezone.utc)
    # 101,633 x $3/M = 0.304899 (the export rounds it to 0.30) + 10,000 x $15/M = 0.15
    tracker.record(
        model="claude-sonnet-4-5-20250929", input_tokens=101_633, output_tokens=10_000, tags={"workspace": "Default"}
    )
    clock.now = datetime(2025, 10, 2, 8, tzinfo=timezone.utc)
    # 0.5M x $1 = 0.5, as billed
    tracker.record(model="claude-haiku-4-5", input_tokens=500_000, tags={"workspace": "Default"})
    path = tmp_path / "cost.csv"
    path.write_text(CONSOLE_CSV, encoding="utf-8")
    frame = analytics.reconcile(tracker, path, project_tag="workspace")
    # The free Haiku line of 10-01 with nothing recorded is left out. Every line is of the default workspace (the
    # cost report's ``workspace_id: null``): the invoice has no projects to match, whatever the entries' tags.
    assert table(frame) == [
        (date(2025, 10, 1), "claude-sonnet-4-5-20250929", None, D("0.454899"), D("0.45"), D("0.004899"), "match"),
        (date(2025, 10, 2), "claude-haiku-4-5", None, D("0.5"), D("0.5"), D("0"), "match"),
    ]


def test_the_console_csv_default_workspace_is_the_entries_without_a_workspace_tag(clock: Clock, tmp_path: Path) -> None:
    # As the cost report JSON has it (``workspace_id: null``): the same usage reconciles alike from both exports.
    tracker = CostTracker(clock=clock)
    clock.now = datetime(2025, 10, 1, 8, tzinfo=timezone.utc)
    tracker.record(model="claude-haiku-4-5", input_tokens=300_000)  # 0.3, untagged: the default workspace
    tracker.record(model="claude-haiku-4-5", input_tokens=200_000, tags={"workspace": "wrkspc_ads"})  # 0.2
    path = tmp_path / "cost.csv"
    path.write_text(
        "usage_date_utc,model,workspace,api_key,usage_type,context_window,token_type,cost_usd\n"
        "2025-10-01,Claude Haiku 4.5,Default,k,message,≤ 200k,input_no_cache,0.30\n"
        "2025-10-01,Claude Haiku 4.5,wrkspc_ads,k,message,≤ 200k,input_no_cache,0.20\n",
        encoding="utf-8",
    )
    report = {
        "data": [
            {
                "starting_at": "2025-10-01T00:00:00Z",
                "ending_at": "2025-10-02T00:00:00Z",
                "results": [
                    {"currency": "USD", "amount": "30", "model": "claude-haiku-4-5", "workspace_id": None},
                    {"currency": "USD", "amount": "20", "model": "claude-haiku-4-5", "workspace_id": "wrkspc_ads"},
                ],
            }
        ]
    }
    for invoice in (path, report):
        frame = analytics.reconcile(tracker, invoice, project_tag="workspace")
        assert table(frame) == [
            (date(2025, 10, 1), "claude-haiku-4-5", "wrkspc_ads", D("0.2"), D("0.2"), D("0"), "match"),
            (date(2025, 10, 1), "claude-haiku-4-5", None, D("0.3"), D("0.3"), D("0"), "match"),
        ], invoice


def test_console_names_of_claude_3_models_match_their_entries(clock: Clock, tmp_path: Path) -> None:
    # The console names Claude 3.x models family first, as it names later ones ("Claude Haiku 3.5"); their ids put
    # the version first (claude-3-5-haiku).
    tracker = CostTracker(clock=clock)
    clock.now = datetime(2025, 10, 1, 12, tzinfo=timezone.utc)
    tracker.record(model="claude-3-7-sonnet-20250219", input_tokens=100_000)  # 0.3
    tracker.record(model="claude-3-5-haiku-20241022", input_tokens=625_000)  # 0.5
    tracker.record(model="claude-3-opus-20240229", input_tokens=100_000)  # 1.5
    tracker.record(model="claude-3-haiku-20240307", input_tokens=400_000)  # 0.1
    path = tmp_path / "cost.csv"
    path.write_text(
        "usage_date_utc,model,workspace,api_key,usage_type,context_window,token_type,cost_usd\n"
        "2025-10-01,Claude Sonnet 3.7,,k,message,≤ 200k,input_no_cache,0.30\n"
        "2025-10-01,Claude Haiku 3.5,,k,message,≤ 200k,input_no_cache,0.50\n"
        "2025-10-01,Claude Opus 3,,k,message,≤ 200k,input_no_cache,1.50\n"
        "2025-10-01,Claude Haiku 3,,k,message,≤ 200k,input_no_cache,0.10\n",
        encoding="utf-8",
    )
    frame = analytics.reconcile(tracker, path)
    assert sorted(zip(frame["model"], frame["status"], strict=True)) == [
        ("claude-3-5-haiku-20241022", "match"),
        ("claude-3-7-sonnet-20250219", "match"),
        ("claude-3-haiku-20240307", "match"),
        ("claude-3-opus-20240229", "match"),
    ]


def test_a_billed_only_row_names_the_model_as_the_invoice_does(clock: Clock, tmp_path: Path) -> None:
    # Not llmcost's matching key: gpt-4o-2024-05-13 is not the gpt-4o of today, and "Claude Sonnet 4.5" is what the
    # console shows.
    tracker = CostTracker(clock=clock)
    page = openai_page((T0, [result(1, "gpt-4o-2024-05-13, input", None)]))
    assert analytics.reconcile(tracker, page)["model"].tolist() == ["gpt-4o-2024-05-13"]
    path = tmp_path / "cost.csv"
    path.write_text(
        "usage_date_utc,model,workspace,api_key,usage_type,context_window,token_type,cost_usd\n"
        "2025-10-01,Claude Sonnet 4.5,,k,message,≤ 200k,input_no_cache,0.30\n",
        encoding="utf-8",
    )
    frame = analytics.reconcile(tracker, path)
    assert frame[["model", "status"]].values.tolist() == [["Claude Sonnet 4.5", "unrecorded"]]


def test_a_charge_without_a_model_reconciles_once_recorded_as_the_advice_says(clock: Clock) -> None:
    tracker = CostTracker(clock=clock)
    clock.now = AUG_1 + timedelta(hours=9)
    search = {"project": "proj_search"}
    page = openai_page(
        (T0, [result(0.25, "web search tool calls", "proj_search"), result(2.5, "gpt-4o-2024-08-06, input", None)])
    )
    tracker.record(model="gpt-4o-2024-08-06", input_tokens=1_000_000)  # 2.5, untagged
    before = analytics.reconcile(tracker, page)
    cause = before.loc[before["model"].isna(), "likely_cause"].item()
    assert "record it with amount= and provider='openai' to track it" in cause
    tracker.record(amount="0.25", category="api_calls", provider="openai", tags=search)
    # Neither a model nor a provider: no one's charge, not compared.
    tracker.record(amount="9", category="compute", tags=search)
    # Another provider's charge without a model: not this invoice's.
    tracker.record(amount="7", provider="anthropic", tags=search)
    after = analytics.reconcile(tracker, page)
    assert table(after) == [
        (date(2025, 8, 1), "gpt-4o-2024-08-06", None, D("2.5"), D("2.5"), D("0"), "match"),
        (date(2025, 8, 1), None, "proj_search", D("0.25"), D("0.25"), D("0"), "match"),
    ]


DAY_TOTALS = {
    # GET /v1/organization/costs without group_by=line_item: one line a day, no model. gpt-4o 3.50 + web search 0.25.
    "openai": openai_page((T0, [result(3.75, None, None)])),
    # GET /v1/organizations/cost_report without group_by[]=description: model and the rest null. 0.45 + 0.01, in cents.
    "anthropic": {
        "data": [
            {
                "starting_at": "2025-08-01T00:00:00Z",
                "ending_at": "2025-08-02T00:00:00Z",
                "results": [{"currency": "USD", "amount": "46.00", "workspace_id": None, "model": None}],
            }
        ],
        "has_more": False,
        "next_page": None,
    },
}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_day_total_invoice_counts_the_entries_without_a_model(provider: str, clock: Clock, tmp_path: Path) -> None:
    # Without a per-model breakdown every line of a day is the whole day's bill, web searches included: it is
    # compared with every entry of the provider that day, the one recorded with amount= and no model too.
    clock.now = AUG_1 + timedelta(hours=9)
    with CostTracker(DuckDBStore(tmp_path / "costs.duckdb"), clock=clock) as tracker:
        if provider == "openai":
            tracker.record(model="gpt-4o-2024-08-06", input_tokens=1_000_000, output_tokens=100_000)  # 2.5 + 1 = 3.5
            tracker.record(amount="0.25", provider="openai", category="api_calls", description="web search tool calls")
        else:
            tracker.record(model="claude-sonnet-4-5", input_tokens=100_000, output_tokens=10_000)  # 0.3 + 0.15 = 0.45
            tracker.record(amount="0.01", provider="anthropic", category="api_calls", description="web search")
        tracker.record(amount="7", provider="mistral")  # another provider's charge without a model: not this bill
        tracker.record(amount="9", category="compute")  # neither a model nor a provider: no one's
        frame = analytics.reconcile(tracker, DAY_TOTALS[provider])
    total = D("3.75") if provider == "openai" else D("0.46")
    assert table(frame) == [(date(2025, 8, 1), None, None, total, total, D("0"), "match")]
    assert frame["calls"].item() == 2


def test_a_gap_smaller_than_a_call_is_not_called_about_0_more_calls(clock: Clock) -> None:
    # The day's 3.75 against one recorded 3.50 call: the 0.25 missing is less than a call like it.
    clock.now = AUG_1 + timedelta(hours=9)
    tracker = CostTracker(clock=clock)
    tracker.record(model="gpt-4o-2024-08-06", input_tokens=1_000_000, output_tokens=100_000)
    frame = analytics.reconcile(tracker, DAY_TOTALS["openai"])
    assert frame["status"].item() == "under"
    assert frame["likely_cause"].item() == (
        "billed more than the recorded calls cost at catalog prices: calls made outside tracking "
        "(less than one call like these)"
    )
    # 3.75 against a 1.25 call (0.5M x $2.5): 2.5 missing, two more; against a 1.5 call (0.6M): 2.25, one and a half.
    tracker = CostTracker(clock=clock)
    tracker.record(model="gpt-4o-2024-08-06", input_tokens=500_000)
    cause = analytics.reconcile(tracker, DAY_TOTALS["openai"])["likely_cause"].item()
    assert cause.endswith("(about 2 more calls like these)")
    tracker = CostTracker(clock=clock)
    tracker.record(model="gpt-4o-2024-08-06", input_tokens=600_000)
    cause = analytics.reconcile(tracker, DAY_TOTALS["openai"])["likely_cause"].item()
    assert cause.endswith("(about 1 more call like these)")


@pytest.mark.parametrize(
    ("tolerance", "error"),
    [
        ("abc", ValueError("tolerance must be a number, got 'abc'")),
        ("NaN", ValueError("tolerance must be a finite number, got 'NaN'")),
        (None, TypeError("tolerance must be a Decimal, int, float or numeric string, got None")),
        ("-1", ValueError("tolerance must be a fraction of the billed amount, 0 or more, got '-1'")),
    ],
)
def test_a_bad_tolerance_is_refused_naming_it(tolerance: Any, error: Exception, clock: Clock) -> None:
    with pytest.raises(type(error)) as raised:
        analytics.reconcile(CostTracker(clock=clock), OPENAI, tolerance=tolerance)
    assert str(raised.value) == str(error)


def test_plain_csv_and_a_frame(openai_history: CostTracker, tmp_path: Path) -> None:
    path = tmp_path / "invoice.csv"
    path.write_text(
        "date,model,amount,project\n2025-08-01,gpt-4o,3.50,proj_search\n2025-08-01,gpt-4o-mini,0.21,proj_search\n",
        encoding="utf-8",
    )
    frame = analytics.reconcile(openai_history, path, provider="openai")
    # 08-01 only: the 08-02 entry is outside the invoice's period; claude is another provider.
    assert frame["status"].tolist() == ["match", "match"]
    plain = pd.DataFrame({"date": ["2025-08-01"], "model": ["gpt-4o"], "amount": ["4.00"]})
    frame = analytics.reconcile(openai_history, plain, provider="openai")
    # No project column: every project counts; gpt-4o-mini was recorded but is not on this invoice.
    assert table(frame) == [
        (date(2025, 8, 1), "gpt-4o-2024-08-06", None, D("3.5"), D("4"), D("-0.5"), "under"),
        (date(2025, 8, 1), "gpt-4o-mini-2024-07-18", None, D("0.21"), D("0"), D("0.21"), "unbilled"),
    ]


def test_a_frame_read_by_pandas_keeps_the_rounding_allowance_of_the_file(clock: Clock, tmp_path: Path) -> None:
    # pd.read_csv reads "3.50" as the float 3.5, which no longer says it was printed to the cent: a float's
    # allowance is at most half a cent, so a $0.04 gap is 'under' from the frame as from the file. A float printed
    # finer (0.0144) keeps its own, finer allowance.
    path = tmp_path / "invoice.csv"
    path.write_text("date,model,amount\n2025-08-01,gpt-4o,3.50\n2025-08-01,gpt-4o-mini,0.0144\n", encoding="utf-8")
    clock.now = AUG_1 + timedelta(hours=9)
    with CostTracker(DuckDBStore(tmp_path / "costs.duckdb"), clock=clock) as tracker:
        tracker.record(model="gpt-4o", amount="3.46", input_tokens=1_000_000, output_tokens=96_000)
        tracker.record(model="gpt-4o-mini", amount="0.0108", input_tokens=72_000)
        from_file = table(analytics.reconcile(tracker, path))
        from_frame = table(analytics.reconcile(tracker, pd.read_csv(path)))
    assert from_frame == from_file
    assert [row[-1] for row in from_frame] == ["under", "under"]


def test_a_json_number_amount_may_hide_at_most_half_a_cent_of_rounding(clock: Clock, tmp_path: Path) -> None:
    # The costs API's amount.value is a JSON number, a float: "2.5" says nothing of the places it was rounded to
    # (the API prints 2.50000001 as readily). Like a float pd.read_csv makes, it may hide at most half a cent, so
    # 3.41 recorded against 2.5 + 1.0 billed is 'under' (half a unit of the printed digit let 0.05 a line pass), as
    # it is against the same bill printed with more digits, or given as parsed JSON. A number printed finer keeps
    # its finer allowance: 0.0144 may hide 0.00005.
    clock.now = AUG_1 + timedelta(hours=9)
    short, long = (
        openai_page(
            (T0, [result(inp, "gpt-4o-2024-08-06, input", None), result(out, "gpt-4o-2024-08-06, output", None)])
        )
        for inp, out in ((2.5, 1.0), (2.50000001, 0.99999999))
    )
    fine = openai_page((T0, [result(0.0144, "gpt-4o-mini-2024-07-18, input", None)]))
    with CostTracker(DuckDBStore(tmp_path / "costs.duckdb"), clock=clock) as tracker:
        tracker.record(model="gpt-4o-2024-08-06", amount="3.41", input_tokens=1_000_000, output_tokens=100_000)
        for name, page in (("short", short), ("long", long)):
            path = tmp_path / f"{name}.json"
            path.write_text(json.dumps(page), encoding="utf-8")
            for invoice in (path, page):
                frame = analytics.reconcile(tracker, invoice)
                assert frame[["recorded", "status"]].values.tolist() == [[D("3.41"), "under"]], (name, invoice)
        path = tmp_path / "fine.json"
        path.write_text(json.dumps(fine), encoding="utf-8")
        tracker.record(model="gpt-4o-mini-2024-07-18", amount="0.01435", input_tokens=96_000)
        assert analytics.reconcile(tracker, path)["status"].tolist() == ["unbilled", "match"]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (
            json.dumps(openai_page((T0, [result(1, "gpt-4o, input", None, currency="eur")]))),
            r"data\[0\]\.results\[0\]\.amount\.currency is 'eur'",
        ),
        (json.dumps([OPENAI, OPENAI]), r"periods overlap: \[1\]data\[0\] starts at 2025-08-01 00:00"),
        (
            json.dumps({"data": [{"start_time": T0, "end_time": T0 + 2 * DAY, "results": []}]}),
            r"data\[0\] runs from 2025-08-01 00:00 to 2025-08-03 00:00 UTC; reconcile reads daily buckets",
        ),
        (
            # A day long, fetched from a local midnight (00:00 PDT): across a UTC midnight.
            json.dumps({"data": [{"start_time": T0 + 7 * 3600, "end_time": T0 + 7 * 3600 + DAY, "results": []}]}),
            r"data\[0\] runs from 2025-08-01 07:00 to 2025-08-02 07:00 UTC, across a UTC midnight; reconcile reads "
            r"buckets of whole UTC days: fetch the report with its start at 00:00 UTC",
        ),
        (
            json.dumps(
                openai_page(
                    (T0, [{"object": "organization.costs.result", "amount": {"value": "lots", "currency": "usd"}}])
                )
            ),
            r"data\[0\]\.results\[0\]\.amount\.value must be a number, got 'lots'",
        ),
        (
            json.dumps(
                {
                    "data": [
                        {
                            "starting_at": "2025-09-01T00:00:00Z",
                            "ending_at": "2025-09-02T00:00:00Z",
                            "results": [{"currency": "USD", "model": "claude-3-5-haiku"}],
                        }
                    ]
                }
            ),
            r"data\[0\]\.results\[0\]\.amount is missing",
        ),
        (json.dumps({"object": "list", "items": []}), r"no 'data' list of buckets"),
        (
            "day,model,cost\n2025-08-01,gpt-4o,1\n",
            r"no 'date', 'amount' column \(columns: \['day', 'model', 'cost'\]\)",
        ),
        (
            "date,model,amount\n08/01/2025,gpt-4o,1\n",
            r"date \(line 2\) must be a date such as 2025-08-01, got '08/01/2025'",
        ),
        ("date,model,amount,currency\n2025-08-01,gpt-4o,1,EUR\n", r"currency \(line 2\) is 'EUR'"),
        ("this is not an invoice\njust text\n", r"neither JSON nor CSV \(first line 'this is not an invoice'\)"),
        ("{not json", r"is not valid JSON"),
    ],
)
def test_bad_invoices_name_the_field_and_value(content: str, error: str, tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "invoice.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=error):
        analytics.reconcile(CostTracker(clock=clock), path)


def test_a_binary_file_is_neither_json_nor_csv(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "invoice.pdf"
    path.write_bytes(b"%PDF-1.7\n\xff\xfe\x00\x01")
    with pytest.raises(ValueError, match="neither JSON nor CSV"):
        analytics.reconcile(CostTracker(clock=clock), path)


def test_the_provider_must_match_the_invoice(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "costs.json"
    path.write_text(json.dumps(OPENAI), encoding="utf-8")
    with pytest.raises(ValueError, match="provider is 'anthropic' but the invoice is 'openai'"):
        analytics.reconcile(CostTracker(clock=clock), path, provider="anthropic")


def test_an_unknown_provider_is_refused_naming_the_known_ones(openai_history: CostTracker, tmp_path: Path) -> None:
    path = tmp_path / "invoice.csv"
    path.write_text("date,model,amount\n2025-08-01,gpt-4o,3.50\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"provider 'opnai' is unknown: .*known providers: .*anthropic, .*openai"):
        analytics.reconcile(openai_history, path, provider="opnai")
    with pytest.raises(TypeError, match=r"provider must be .* got 5"):
        analytics.reconcile(openai_history, path, provider=5)  # type: ignore[arg-type]
    # A provider with no price of its own is known by the entries recorded with it (amounts given).
    with CostTracker(clock=Clock(datetime(2025, 8, 1, 12, tzinfo=timezone.utc))) as tracker:
        tracker.record(amount="2", model="acme-large", provider="Acme")
        acme = tmp_path / "acme.csv"
        acme.write_text("date,model,amount\n2025-08-01,acme-large,2\n", encoding="utf-8")
        assert analytics.reconcile(tracker, acme, provider="acme")["status"].tolist() == ["match"]
    # A known provider with nothing recorded is no error: its lines are unrecorded.
    assert analytics.reconcile(CostTracker(), path, provider="mistral")["status"].tolist() == ["unrecorded"]


EXAMPLES = Path(__file__).parent.parent / "docs" / "examples"


@pytest.mark.parametrize("example", sorted([*EXAMPLES.glob("*.json"), *EXAMPLES.glob("*.csv")]), ids=lambda p: p.name)
def test_the_shipped_example_invoices_read(example: Path, clock: Clock) -> None:
    frame = analytics.reconcile(CostTracker(clock=clock), example)
    assert not frame.empty and set(frame["status"]) == {"unrecorded"}


@pytest.mark.parametrize("prec", [28, 8])
def test_recorded_billed_and_delta_keep_every_digit_whatever_the_context(tmp_path: Path, prec: int) -> None:
    from decimal import Context, localcontext

    from llmcost import CostEntry

    store = DuckDBStore(tmp_path / "large.duckdb")
    store.append(  # 29 significant digits recorded on 2025-08-01; the invoice bills 1E-18 less
        [
            CostEntry(id="e1", timestamp=AUG_1, amount=D("12345678901.123456789012345678"), model="gpt-4o"),
            CostEntry(id="e2", timestamp=AUG_1 + timedelta(hours=1), amount=D("1E-18"), model="gpt-4o"),
        ]
    )
    invoice = pd.DataFrame({"date": ["2025-08-01"], "model": ["gpt-4o"], "amount": ["12345678901.123456789012345678"]})
    with localcontext(Context(prec=prec)):
        frame = analytics.reconcile(store, invoice, provider="openai")
    assert table(frame) == [
        (
            date(2025, 8, 1),
            "gpt-4o",
            None,
            D("12345678901.123456789012345679"),
            D("12345678901.123456789012345678"),
            D("1E-18"),
            "match",
        )
    ]
    store.close()
