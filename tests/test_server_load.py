"""``llmcost serve`` under concurrent load, and a budget shared by the server's reservations and a library process.

Both run a real server process on 127.0.0.1 with a DuckDB store; the load is bounded in time and clients."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="llmcost[server] is not installed")
httpx = pytest.importorskip("httpx")

import llmcost  # noqa: E402
from benchmarks.bench_serve import load, serve_process  # noqa: E402

#: Seconds of load in the test (the benchmark runs 20: python -m benchmarks serve).
LOAD_SECONDS = 5.0


def test_fifty_clients_posting_lose_nothing_and_get_only_2xx(tmp_path: Path) -> None:
    with serve_process(f"duckdb://{tmp_path / 'costs.duckdb'}") as base:
        result = load(base, clients=50, seconds=LOAD_SECONDS)
    assert result.errors == 0
    assert set(result.statuses) == {201}, result.statuses
    assert result.ok > 50
    assert result.stored == result.ok and result.lost == 0


def test_server_reservations_and_a_library_budget_share_one_limit(tmp_path: Path) -> None:
    """One $1.00 budget over one store, spent from two processes at once: services reserving and settling through
    the server, and tracked calls in this process under the same ``BudgetManager`` budget. Together they never pass
    the limit (every estimate here is exact, so the allowed overshoot is zero)."""
    url = f"duckdb://{tmp_path / 'costs.duckdb'}"
    # One input token of this model costs exactly $0.10: estimates equal costs.
    llmcost.register_price(llmcost.ModelPrice("shared-test-model", "test", input_per_mtok=100_000, output_per_mtok=0))
    response = {
        "object": "chat.completion",
        "model": "shared-test-model",
        "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1},
    }
    with serve_process(url) as base, httpx.Client(base_url=base, timeout=30.0) as client:
        budgets = "/api/v1/costs/budgets"
        client.post(
            budgets, json={"name": "shared", "amount": "1.00", "period": "total", "resource": "shared"}
        ).raise_for_status()
        tracker = llmcost.CostTracker(url)
        try:
            llmcost.BudgetManager(tracker)  # enforces the saved "shared" budget on this tracker's calls

            @llmcost.track_cost(resource="shared", tracker=tracker, estimate=Decimal("0.10"))
            def call() -> dict:
                return response

            # The server holds $0.95 for a service's call in flight: this process must not spend $0.10 meanwhile.
            held = client.post(f"{budgets}/shared/reservations", json={"amount": "0.95"})
            assert held.status_code == 201
            with pytest.raises(llmcost.BudgetExceeded):
                call()
            client.post(f"{budgets}/shared/reservations/{held.json()['id']}/settle").raise_for_status()  # released

            # Both sides at once, until the budget refuses them all.
            def library_side() -> None:
                for _ in range(20):
                    try:
                        call()
                    except llmcost.BudgetExceeded:
                        return

            def server_side() -> None:
                with httpx.Client(base_url=base, timeout=30.0) as own:
                    for _ in range(20):
                        r = own.post(f"{budgets}/shared/reservations", json={"amount": "0.10"})
                        if r.status_code == 409:
                            return
                        r.raise_for_status()
                        own.post(
                            f"{budgets}/shared/reservations/{r.json()['id']}/settle",
                            json={"model": "shared-test-model", "usage": {"input_tokens": 1}},
                        ).raise_for_status()

            workers = [threading.Thread(target=f) for f in (library_side, library_side, server_side, server_side)]
            for w in workers:
                w.start()
            for w in workers:
                w.join(timeout=120)
            tracker.flush()
            spent = tracker.store.total(resource="shared")
            assert spent <= Decimal("1.00")
        finally:
            tracker.close()
