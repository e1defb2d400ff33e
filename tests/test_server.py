"""``llmcost serve`` as a user runs it: a real ``python -m llmcost serve`` process on 127.0.0.1 with a DuckDB store,
driven over HTTP by httpx. Each test writes under a resource of its own, so they share one server."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="llmcost[server] is not installed")
httpx = pytest.importorskip("httpx")

import llmcost  # noqa: E402
from benchmarks.bench_serve import serve_process  # noqa: E402
from llmcost import analytics  # noqa: E402

TOKEN = "test-token-1b8f"
PREFIX = "/api/v1/costs"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve") / "costs.duckdb"


@pytest.fixture(scope="module")
def base(store_path: Path) -> Iterator[str]:
    with serve_process(f"duckdb://{store_path}") as url:
        yield url


@pytest.fixture
def client(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=30.0) as c:
        yield c


@pytest.fixture
def name() -> str:
    """A resource (and budget) name of this test's own."""
    return f"t-{uuid.uuid4().hex[:10]}"


def _error(response: httpx.Response, status: int, field: str | None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "field"}, body
    assert body["field"] == field, body
    assert "Traceback" not in body["error"]
    return str(body["error"])


# -- records --------------------------------------------------------------------------------------------------------


def test_a_record_is_priced_on_the_server_from_model_and_usage(client: httpx.Client, name: str) -> None:
    sent = {"model": "gpt-4o", "usage": {"input_tokens": 1200, "output_tokens": 300}, "resource": name}
    response = client.post(f"{PREFIX}/records", json=sent)
    assert response.status_code == 201, response.text
    (record,) = response.json()["records"]
    assert record["amount"] == str(llmcost.cost_of("gpt-4o", input_tokens=1200, output_tokens=300))
    assert record["pricing"].startswith("catalog@")
    assert record["usage"]["input_tokens"] == 1200
    (read,) = client.get(f"{PREFIX}/records", params={"resource": name}).json()["records"]
    assert read == record


def test_a_record_takes_a_service_tier_and_units_and_reads_back_whole(client: httpx.Client, name: str) -> None:
    units = {"cache_write_1h_tokens": 5000, "web_searches": 2}
    model = "claude-sonnet-4-20250514"
    usage = {"input_tokens": 10000, "output_tokens": 100, "cache_write_tokens": 5000, "units": units}
    response = client.post(
        f"{PREFIX}/records", json={"model": model, "usage": usage, "service_tier": "batch", "resource": name}
    )
    assert response.status_code == 201, response.text
    (record,) = response.json()["records"]
    expected = llmcost.CostTracker().record(
        model=model, usage=llmcost.Usage(10000, 100, 0, 5000, units=units), service_tier="batch"
    )
    assert record["amount"] == str(expected.amount) and record["pricing"] == expected.pricing
    assert (record["service_tier"], record["canonical_model"]) == ("batch", expected.canonical_model)
    assert record["usage"]["units"] == units
    standard = {"model": "gpt-4o", "usage": {"input_tokens": 1}, "resource": name}
    (plain,) = client.post(f"{PREFIX}/records", json=standard).json()["records"]
    assert (plain["service_tier"], plain["canonical_model"], plain["usage"]["units"]) == (None, "gpt-4o", {})
    assert client.get(f"{PREFIX}/records", params={"resource": name}).json()["records"] == [record, plain]


def test_a_list_is_recorded_whole_or_not_at_all(client: httpx.Client, name: str) -> None:
    good = {"amount": "0.10", "category": "compute", "resource": name}
    bad = {"amount": "ten dollars", "resource": name}
    message = _error(client.post(f"{PREFIX}/records", json=[good, bad]), 400, "amount")
    assert "record 1" in message and "'ten dollars'" in message
    assert client.get(f"{PREFIX}/records", params={"resource": name}).json()["records"] == []
    created = client.post(f"{PREFIX}/records", json=[good, {**good, "amount": 0.2}])
    assert created.status_code == 201
    assert [r["amount"] for r in created.json()["records"]] == ["0.1", "0.2"]  # a float goes through str()
    assert all(r["pricing"] == "given" for r in created.json()["records"])


def test_a_read_only_store_refuses_records_with_503_as_it_refuses_budgets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read-only store's appends spill on this host: the 201 came for an entry that the server's next read did not
    # show (docs/serve.md promises 201 once entries are in the store). The server runs without root's power over
    # file permissions, as a user who may only read the store.
    from llmcost.stores import DuckDBStore
    from tests.stores.conftest import make_entry
    from tests.stores.test_durability import _bound_by_permissions, _chmod_tree

    folder = tmp_path / "store"
    folder.mkdir()
    path = folder / "costs.duckdb"
    store = DuckDBStore(path)
    store.append([make_entry(0, resource="before")])
    store.close()
    _chmod_tree(folder, writable=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # where a spill would go: nothing may
    try:
        with (
            serve_process(f"duckdb://{path}", preexec_fn=_bound_by_permissions) as base,
            httpx.Client(base_url=base, timeout=30.0) as c,
        ):
            for body in ({"amount": "2", "resource": "after"}, [{"amount": "3", "resource": "after"}]):
                message = _error(c.post(f"{PREFIX}/records", json=body), 503, None)
                assert "read-only" in message and str(path) in message, message
            budget = c.post(f"{PREFIX}/budgets", json={"name": "b", "amount": "1", "period": "monthly"})
            _error(budget, 503, None)  # (the other writes, as before)
            assert [r["resource"] for r in c.get(f"{PREFIX}/records").json()["records"]] == ["before"]
    finally:
        _chmod_tree(folder, writable=True)
    assert not (tmp_path / "state").exists()  # refused before recording: no spill file to replay later
    assert [e.resource for e in DuckDBStore(path).entries()] == ["before"]


def test_records_filter_and_page_with_a_cursor(client: httpx.Client, name: str) -> None:
    items = [
        {
            "amount": f"0.{i:02d}",
            "category": "llm_inference" if i % 2 else "compute",
            "resource": name,
            "tags": {"team": "a" if i < 15 else "b"},
            "timestamp": f"2026-01-01T00:00:{i:02d}Z",
        }
        for i in range(25)
    ]
    assert client.post(f"{PREFIX}/records", json=items).status_code == 201
    seen: list[dict] = []
    cursor = None
    pages = 0
    while True:
        params = {"resource": name, "limit": 10, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{PREFIX}/records", params=params).json()
        seen.extend(page["records"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    # oldest first, none twice, none missed (the store keeps the value, not the trailing zeros)
    assert [Decimal(r["amount"]) for r in seen] == [Decimal(i["amount"]) for i in items]
    team_b = client.get(f"{PREFIX}/records", params={"resource": name, "tag": "team:b"}).json()["records"]
    assert len(team_b) == 10
    compute = client.get(f"{PREFIX}/records", params={"resource": name, "category": "compute"}).json()["records"]
    assert {r["category"] for r in compute} == {"compute"} and len(compute) == 13
    window = {"resource": name, "since": "2026-01-01T00:00:05Z", "until": "2026-01-01T00:00:07Z"}
    in_window = client.get(f"{PREFIX}/records", params=window).json()["records"]
    assert [Decimal(r["amount"]) for r in in_window] == [Decimal("0.05"), Decimal("0.06")]


@pytest.mark.parametrize("day", ["2026-11-28", "20261128", "2026-W48-6"])
def test_a_date_alone_as_until_takes_in_that_whole_day(client: httpx.Client, name: str, day: str) -> None:
    # As the CLI and llmcost.analytics read it (parse_when): until=2026-11-28 was its midnight, so that since and
    # until of the same day were a 400, and an until of the 28th left the 28th out.
    stamps = ["2026-11-27T23:59:59Z", "2026-11-28T00:00:00Z", "2026-11-28T23:59:59.999999Z", "2026-11-29T00:00:00Z"]
    body = [{"amount": str(n + 1), "resource": f"{name}-{day}", "timestamp": at} for n, at in enumerate(stamps)]
    client.post(f"{PREFIX}/records", json=body).raise_for_status()
    window = {"resource": f"{name}-{day}", "since": day, "until": day}
    got = client.get(f"{PREFIX}/records", params=window)
    assert got.status_code == 200, got.text
    assert [r["amount"] for r in got.json()["records"]] == ["2", "3"]
    summary = client.get(f"{PREFIX}/summary", params=window).json()
    assert (summary["total"], summary["until"]) == ("5", "2026-11-29T00:00:00Z")
    exclusive = {**window, "until": "2026-11-28T23:59:59.999999Z"}  # a datetime until stays exclusive
    assert [r["amount"] for r in client.get(f"{PREFIX}/records", params=exclusive).json()["records"]] == ["2"]


@pytest.mark.parametrize(
    ("method", "path", "payload", "field", "shown"),
    [
        ("GET", "/records", {"since": "yesterday"}, "since", "'yesterday'"),
        ("GET", "/records", {"tag": "team"}, "tag", "'team'"),
        ("GET", "/records", {"limit": "0"}, "limit", "0"),
        ("GET", "/records", {"cursor": "not-a-cursor!"}, "cursor", "'not-a-cursor!'"),
        ("POST", "/records", {"amount": "1", "category": "beer"}, "category", "'beer'"),
        ("POST", "/records", {"model": "gpt-4o", "usage": {"input_tokens": -5}}, "usage.input_tokens", "-5"),
        ("POST", "/records", {"amount": "1", "colour": "red"}, "colour", "'red'"),
        ("POST", "/records", {"resource": "x"}, "model", "model="),
        ("POST", "/records", 5, None, "or a valid list, got 5"),
        ("POST", "/records", [{"amount": "1"}, {"amount": "1", "usage": {"input_tokens": "x"}}], "usage.input_tokens",
         "record 1: usage.input_tokens: "),
        ("POST", "/records", [{"amount": "1"}, {"amount": "1", "colour": "red"}], "colour", "record 1: colour: "),
        ("POST", "/records", {"amount": [1]}, "amount", "[1]"),
        ("POST", "/records", {"model": "gpt-4o", "usage": {"output_tokens": 2, "reasoning_tokens": 3}},
         "usage.reasoning_tokens", "3"),
        ("POST", "/budgets", {"amount": "1", "period": "daily"}, "name", "name: Field required"),
        ("POST", "/records", {"model": "gpt-4o", "service_tier": "premium"}, "service_tier", "'premium'"),
        ("GET", "/summary", {"by": "Model"}, "by", "got 'Model' (did you mean 'model'?)"),
        ("POST", "/records", {"amount": True}, "amount", "True"),
        ("POST", "/records", {"model": "gpt-4o", "usage": {"input_tokens": True}}, "usage.input_tokens", "True"),
        ("POST", "/records", {"amount": "1", "latency_ms": False}, "latency_ms", "False"),
        ("POST", "/budgets", {"name": "x", "amount": True, "period": "daily"}, "amount", "True"),
        ("POST", "/budgets", {"name": "x", "amount": "1", "period": "daily", "model": ""}, "model", "''"),
        ("POST", "/budgets/nobody/reservations", {"amount": True}, "amount", "True"),
        ("POST", "/forecast", {"pending_task_count": True, "model": "gpt-4o", "avg_input_tokens": 9},
         "pending_task_count", "True"),
        ("POST", "/forecast", {"pending_task_count": 3, "model": "gpt-4o", "avg_input_tokens": 9, "buffer": True},
         "buffer", "True"),
        ("POST", "/records", {"model": "gpt-4o", "usage": {"input_tokens": 5, "units": {"moon_rocks": 1}}},
         "usage.units", "'moon_rocks'"),
        ("POST", "/records", {"model": "gpt-4o", "usage": {"input_tokens": 5, "units": {"cache_write_1h_tokens": 9}}},
         "usage.units", "(9)"),
        ("GET", "/summary", {"by": "colour"}, "by", "'colour'"),
        ("GET", "/summary", {"freq": "fortnight"}, "freq", "'fortnight'"),
        ("GET", "/summary", {"model": "gpt-4o"}, "model", "by=model"),
        ("GET", "/summary", {"by": "model", "resorce": "search"}, "resorce", "resource"),
        ("POST", "/budgets", {"name": "x", "amount": "-1", "period": "daily"}, "amount", "-1"),
        ("POST", "/budgets", {"name": "x", "amount": "1", "period": "fortnightly"}, "period", "'fortnightly'"),
        ("GET", "/budgets/check", {"amount": "lots"}, "amount", "'lots'"),
        ("GET", "/budgets/check", {"amount": "1e9999999"}, "amount", "'1e9999999'"),
        ("POST", "/budgets", {"name": "x", "amount": "1e30", "period": "daily"}, "amount", "'1e30'"),
        ("GET", "/summary", {"since": "0001-01-01T00:00:00+01:00"}, "since", "0001-01-01T00:00:00+01:00"),
        ("GET", "/records", {"until": "9999-12-31T23:59:59-01:00"}, "until", "9999-12-31T23:59:59-01:00"),
        ("POST", "/records", {"amount": "1", "timestamp": "0001-01-01T00:00:00+01:00"}, "timestamp",
         "0001-01-01T00:00:00+01:00"),
        ("POST", "/forecast", {"pending_task_count": 3, "model": "gpt-99-imaginary", "avg_tokens_per_task": 9}, "model",
         "gpt-99-imaginary"),
        ("POST", "/forecast", {"pending_task_count": -3, "model": "gpt-4o", "avg_input_tokens": 9},
         "pending_task_count", "-3"),
        ("POST", "/forecast", {"pending_task_count": 3, "model": "gpt-4o", "avg_input_tokens": 9,
                               "avg_output_tokens": 2, "avg_tokens_per_task": 11}, "avg_tokens_per_task",
         "avg_input_tokens=9.0, avg_output_tokens=2.0 and avg_tokens_per_task=11.0"),
        ("POST", "/forecast", {"pending_task_count": 3, "model": "gpt-4o", "avg_output_tokens": 2,
                               "avg_tokens_per_task": 11}, "avg_tokens_per_task", "not both"),
        ("POST", "/forecast", {"pending_task_count": 3, "model": "gpt-4o", "avg_input_tokens": -1,
                               "avg_output_tokens": 5}, "avg_input_tokens", "avg_input_tokens must not be negative"),
        ("POST", "/forecast", {"pending_task_count": 3, "model": "gpt-4o", "avg_input_tokens": 5,
                               "avg_output_tokens": -1}, "avg_output_tokens", "avg_output_tokens must not be negative"),
        ("POST", "/forecast", {"pending_task_count": 3, "model": "gpt-4o", "avg_output_tokens": 1e300},
         "avg_output_tokens", "avg_output_tokens must be at most 2**63 - 1 (stores keep 64-bit counts), got 1e+300"),
        ("POST", "/forecast", {"pending_task_count": 3, "model": "gpt-4o", "avg_tokens_per_task": -3},
         "avg_tokens_per_task", "avg_tokens_per_task must not be negative, got -3.0"),
        ("POST", "/forecast", {"pending_task_count": 3, "model": "gpt-4o", "avg_tokens_per_task": 1e300},
         "avg_tokens_per_task", "avg_tokens_per_task must be at most 2**63 - 1 (stores keep 64-bit counts)"),
        ("POST", "/forecast", {"pending_task_count": 3, "model": "gpt-4o", "avg_input_tokens": 9, "buffer": "-1"},
         "buffer", "'-1'"),
    ],
)  # fmt: skip
def test_bad_input_is_a_4xx_naming_the_field_and_value(
    client: httpx.Client, method: str, path: str, payload: Any, field: str | None, shown: str
) -> None:
    if method == "GET":
        response = client.get(PREFIX + path, params=payload)
    else:
        response = client.post(PREFIX + path, json=payload)
    assert shown in _error(response, 400, field)


def test_a_reservation_too_large_to_store_is_a_400_naming_the_amount(client: httpx.Client, name: str) -> None:
    client.post(f"{PREFIX}/budgets", json={"name": name, "amount": "10", "period": "daily"}).raise_for_status()
    response = client.post(f"{PREFIX}/budgets/{name}/reservations", json={"amount": "1e26"})
    assert "'1e26'" in _error(response, 400, "amount")
    response = client.post(f"{PREFIX}/budgets/{name}/reservations", json={"amount": "99999999999999999999"})
    assert "$99,999,999,999,999,999,999.00" in _error(response, 409, "amount")


def test_unknown_routes_and_bodies_that_are_not_json_answer_in_the_error_shape(client: httpx.Client) -> None:
    _error(client.get("/api/v1/nothing"), 404, None)
    _error(client.put(f"{PREFIX}/records"), 405, None)
    response = client.post(f"{PREFIX}/records", content=b"{not json", headers={"content-type": "application/json"})
    assert "not valid JSON" in _error(response, 400, None)


def test_a_body_over_the_limit_is_refused_with_413(client: httpx.Client, name: str) -> None:
    items = [{"amount": "0.01", "resource": name, "description": "x" * 500}] * 2500  # about 1.4 MB
    assert "limit" in _error(client.post(f"{PREFIX}/records", json=items), 413, "body")
    assert client.get(f"{PREFIX}/records", params={"resource": name}).json()["records"] == []


def test_a_chunked_body_over_the_limit_is_refused_with_413(client: httpx.Client, name: str) -> None:
    # No Content-Length (chunked transfer encoding, as streaming clients and proxies send it): counted as it is read.
    items = [{"amount": "0.01", "resource": name, "description": "x" * 500}] * 2500  # about 1.4 MB
    raw = json.dumps(items).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(raw), 65536):
            yield raw[i : i + 65536]

    response = client.post(f"{PREFIX}/records", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert "limit" in _error(response, 413, "body")
    assert client.get(f"{PREFIX}/records", params={"resource": name}).json()["records"] == []
    small = json.dumps([{"amount": "0.01", "resource": name}]).encode()
    chunked = iter([small[:10], small[10:]])  # under the limit: recorded
    response = client.post(f"{PREFIX}/records", content=chunked, headers={"content-type": "application/json"})
    assert response.status_code == 201, response.text


# -- summary --------------------------------------------------------------------------------------------------------


def test_summary_groups_exactly_with_money_as_strings(client: httpx.Client, name: str) -> None:
    amounts = ["0.1", "0.2", "0.000000001", "3"]
    items = [
        {"amount": a, "resource": name, "category": c, "tags": {"team": t}, "timestamp": f"2026-02-0{d}T12:00:00Z"}
        for a, c, t, d in zip(amounts, ["compute", "compute", "storage", "storage"], "aabb", [1, 1, 2, 3], strict=True)
    ]
    client.post(f"{PREFIX}/records", json=items).raise_for_status()
    body = client.get(f"{PREFIX}/summary", params={"by": "category", "resource": name}).json()
    assert body["total"] == "3.300000001" and body["calls"] == 4
    assert {r["category"]: r["cost"] for r in body["rows"]} == {"compute": "0.3", "storage": "3.000000001"}
    by_tag = client.get(f"{PREFIX}/summary", params={"by": "tag:team,category", "resource": name}).json()
    assert {(r["tag:team"], r["category"]): r["calls"] for r in by_tag["rows"]} == {
        ("a", "compute"): 2,
        ("b", "storage"): 2,
    }
    daily = client.get(
        f"{PREFIX}/summary", params={"by": "category", "freq": "D", "resource": name, "since": "2026-02-02"}
    ).json()
    assert sorted((r["period"][:10], r["cost"]) for r in daily["rows"]) == [
        ("2026-02-02", "0.000000001"),
        ("2026-02-03", "3"),
    ]
    assert sum(Decimal(r["cost"]) for r in daily["rows"]) == Decimal(daily["total"])


@pytest.mark.parametrize("freq", ["h", "D", "W", "MS"])
def test_summary_periods_are_written_as_every_other_time_is(client: httpx.Client, name: str, freq: str) -> None:
    at = "2026-05-01T10:00:00Z"
    client.post(f"{PREFIX}/records", json={"amount": "1", "resource": name, "timestamp": at}).raise_for_status()
    body = client.get(f"{PREFIX}/summary", params={"resource": name, "since": "2026-04-01", "freq": freq}).json()
    (record,) = client.get(f"{PREFIX}/records", params={"resource": name}).json()["records"]
    assert record["timestamp"] == at and body["since"] == "2026-04-01T00:00:00Z"
    (row,) = body["rows"]
    start = {"h": "2026-05-01T10", "D": "2026-05-01T00", "W": "2026-04-27T00", "MS": "2026-05-01T00"}[freq]
    assert row["period"] == f"{start}:00:00Z"


# -- budgets and reservations ---------------------------------------------------------------------------------------


@pytest.mark.on_system_clock("monthly")  # (the server's budgets count the current period, by the system clock)
def test_budgets_are_created_read_checked_and_deleted(client: httpx.Client, name: str) -> None:
    made = client.post(
        f"{PREFIX}/budgets", json={"name": name, "amount": "2.00", "period": "monthly", "resource": name}
    )
    assert made.status_code == 201, made.text
    assert made.json()["limit"] == "2" and made.json()["remaining"] == "2"  # money without trailing zeros
    client.post(f"{PREFIX}/records", json={"amount": "0.50", "resource": name}).raise_for_status()
    got = client.get(f"{PREFIX}/budgets/{name}").json()
    assert (Decimal(got["spent"]), Decimal(got["remaining"]), got["utilization"]) == (
        Decimal("0.5"),
        Decimal("1.5"),
        0.25,
    )
    assert name in [b["name"] for b in client.get(f"{PREFIX}/budgets").json()]
    fits = client.get(f"{PREFIX}/budgets/check", params={"name": name, "amount": "1.50"}).json()
    assert fits["can_spend"] is True and Decimal(fits["remaining"]) == Decimal("1.5") and fits["utilization"] == 0.25
    assert client.get(f"{PREFIX}/budgets/check", params={"name": name, "amount": "1.51"}).json()["can_spend"] is False
    assert llmcost.BudgetManager(llmcost.CostTracker()).list() == []  # another store knows nothing of it
    assert client.delete(f"{PREFIX}/budgets/{name}").json() == {"deleted": name}
    _error(client.get(f"{PREFIX}/budgets/{name}"), 404, "name")
    _error(client.delete(f"{PREFIX}/budgets/{name}"), 404, "name")
    _error(client.get(f"{PREFIX}/budgets/check", params={"name": name, "amount": "1"}), 404, "name")


@pytest.mark.on_system_clock("daily")
@pytest.mark.parametrize("period", ["daily", "total"])
def test_budget_money_keeps_one_shape_through_a_reservation(client: httpx.Client, name: str, period: str) -> None:
    # A period budget holds reservations in the store's ledger, at 18 places: "0.99", never "0.990000000000000000".
    spec = {"name": name, "amount": "1.00", "period": period, "resource": name}
    made = client.post(f"{PREFIX}/budgets", json=spec).json()
    assert (made["limit"], made["spent"], made["reserved"], made["remaining"]) == ("1", "0", "0", "1")
    held = client.post(f"{PREFIX}/budgets/{name}/reservations", json={"amount": "0.010"}).json()
    assert (held["amount"], held["remaining"]) == ("0.01", "0.99")
    got = client.get(f"{PREFIX}/budgets/{name}").json()
    assert (got["reserved"], got["remaining"]) == ("0.01", "0.99")
    assert [b["remaining"] for b in client.get(f"{PREFIX}/budgets").json() if b["name"] == name] == ["0.99"]
    check = client.get(f"{PREFIX}/budgets/check", params={"name": name, "amount": "0.50"}).json()
    assert (check["amount"], check["remaining"]) == ("0.5", "0.99")
    settled = client.post(f"{PREFIX}/budgets/{name}/reservations/{held['id']}/settle", json={"amount": "0.250"})
    assert (settled.json()["remaining"], settled.json()["record"]["amount"]) == ("0.75", "0.25")
    got = client.get(f"{PREFIX}/budgets/{name}").json()
    assert (got["spent"], got["reserved"], got["remaining"]) == ("0.25", "0", "0.75")
    client.delete(f"{PREFIX}/budgets/{name}").raise_for_status()


def test_a_budget_may_be_scoped_to_a_model_and_reads_back_with_it(client: httpx.Client, name: str) -> None:
    spec = {"name": name, "amount": "1", "period": "total", "resource": name, "model": "gpt-4o"}
    made = client.post(f"{PREFIX}/budgets", json=spec)
    assert made.status_code == 201, made.text
    assert made.json()["model"] == "gpt-4o"
    usage = {"input_tokens": 1000, "output_tokens": 100}
    records = [{"model": m, "usage": usage, "resource": name} for m in ("gpt-4o-2024-08-06", "gpt-4o-mini")]
    client.post(f"{PREFIX}/records", json=records).raise_for_status()
    dated = llmcost.cost_of("gpt-4o-2024-08-06", input_tokens=1000, output_tokens=100)
    got = client.get(f"{PREFIX}/budgets/{name}").json()
    assert (got["model"], Decimal(got["spent"])) == ("gpt-4o", dated)  # the dated id counts, the other model not
    assert [b["model"] for b in client.get(f"{PREFIX}/budgets").json() if b["name"] == name] == ["gpt-4o"]

    held = client.post(f"{PREFIX}/budgets/{name}/reservations", json={"amount": "0.01"}).json()
    settled = client.post(f"{PREFIX}/budgets/{name}/reservations/{held['id']}/settle", json={"usage": usage})
    assert settled.status_code == 200, settled.text
    record = settled.json()["record"]
    assert record is not None and record["model"] == "gpt-4o"  # usage alone is priced at the budget's model
    assert Decimal(client.get(f"{PREFIX}/budgets/{name}").json()["spent"]) == dated + Decimal(record["amount"])

    other = {"name": f"{name}-all", "amount": "1", "period": "daily", "resource": name}
    assert client.post(f"{PREFIX}/budgets", json=other).json()["model"] is None  # counts every model
    client.delete(f"{PREFIX}/budgets/{name}-all").raise_for_status()


def test_a_budget_name_that_its_routes_could_not_reach_is_refused(client: httpx.Client, name: str) -> None:
    from urllib.parse import quote

    for bad in (f"{name}/search", "..", "check"):
        assert repr(bad) in _error(
            client.post(f"{PREFIX}/budgets", json={"name": bad, "amount": "1", "period": "daily"}), 400, "name"
        )
        assert bad not in [b["name"] for b in client.get(f"{PREFIX}/budgets").json()]
    odd = f"{name} ?#%\\é"  # any other text works, percent-encoded
    made = client.post(f"{PREFIX}/budgets", json={"name": odd, "amount": "1", "period": "daily", "resource": name})
    assert made.status_code == 201, made.text
    path = f"{PREFIX}/budgets/{quote(odd, safe='')}"
    assert client.get(path).json()["name"] == odd
    assert client.post(f"{path}/reservations", json={"amount": "0.5"}).status_code == 201
    assert client.delete(path).json() == {"deleted": odd}


def test_reservations_hold_the_limit_and_settling_frees_the_rest(client: httpx.Client, name: str) -> None:
    client.post(
        f"{PREFIX}/budgets", json={"name": name, "amount": "1.00", "period": "total", "resource": name}
    ).raise_for_status()
    reserve = f"{PREFIX}/budgets/{name}/reservations"
    first = client.post(reserve, json={"amount": "0.60"})
    assert first.status_code == 201, first.text
    assert first.json()["remaining"] == "0.4"
    message = _error(client.post(reserve, json={"amount": "0.60"}), 409, "amount")
    assert name in message
    assert client.get(f"{PREFIX}/budgets/check", params={"name": name, "amount": "0.5"}).json()["can_spend"] is False

    settled = client.post(f"{reserve}/{first.json()['id']}/settle", json={"amount": "0.25", "model": "gpt-4o"})
    assert settled.status_code == 200, settled.text
    body = settled.json()
    assert Decimal(body["remaining"]) == Decimal("0.75")
    assert body["record"]["resource"] == name and body["record"]["amount"] == "0.25"  # the budget's resource
    assert Decimal(client.get(f"{PREFIX}/budgets/{name}").json()["spent"]) == Decimal("0.25")
    _error(client.post(f"{reserve}/{first.json()['id']}/settle", json={"amount": "0.25"}), 404, "id")

    second = client.post(reserve, json={"amount": "0.75"})
    assert second.status_code == 201 and Decimal(second.json()["remaining"]) == 0
    _error(client.post(reserve, json={"amount": "0.01"}), 409, "amount")
    released = client.post(f"{reserve}/{second.json()['id']}/settle")  # no cost: the call was not made
    assert released.json()["record"] is None and Decimal(released.json()["remaining"]) == Decimal("0.75")
    assert Decimal(client.get(f"{PREFIX}/budgets/{name}").json()["spent"]) == Decimal("0.25")  # no double count
    _error(client.post(f"{PREFIX}/budgets/no-such-{name}/reservations", json={"amount": "1"}), 404, "name")
    assert "-1" in _error(client.post(reserve, json={"amount": "-1"}), 400, "amount")


_WATCH_HOLD = """
import sys, time
from llmcost import BudgetManager, CostTracker
tracker = CostTracker(sys.argv[1])
budget = BudgetManager(tracker).get(sys.argv[2])
first, until = None, float(sys.argv[3])
while time.time() < until:
    budget.sync(force=True)
    first = budget.reserved if first is None else first
    if budget.reserved == 0:
        print(first, time.time())
        break
    time.sleep(0.01)
else:
    print(first, "never")
tracker.close()
"""


@pytest.mark.on_system_clock("daily")  # (across midnight UTC the watcher's budget sees the new day's: no hold)
def test_an_unsettled_hold_is_released_when_its_lease_runs_out(
    client: httpx.Client, name: str, store_path: Path
) -> None:
    # No request reaches the server after the reservation: another process sharing the store sees the hold go at its
    # deadline, and the server's own reads do not count it after that.
    spec = {"name": name, "amount": "1", "period": "daily", "resource": name}
    client.post(f"{PREFIX}/budgets", json=spec).raise_for_status()
    held = client.post(f"{PREFIX}/budgets/{name}/reservations", json={"amount": "0.6", "lease_seconds": 1.5})
    deadline = time.time() + 1.5
    assert held.status_code == 201, held.text
    watch = [sys.executable, "-c", _WATCH_HOLD, f"duckdb://{store_path}", name, str(deadline + 3)]
    first, released = subprocess.run(watch, capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert released != "never", "the hold was still counted 3 s after its lease ran out"
    assert Decimal(first) in (Decimal("0.6"), 0)  # (0 if the process took longer than the lease to start)
    assert deadline - 0.2 <= float(released) <= deadline + 2.5  # (the watcher polls; a loaded machine is late)
    got = client.get(f"{PREFIX}/budgets/{name}").json()
    assert (got["reserved"], got["remaining"]) == ("0", "1")
    check = client.get(f"{PREFIX}/budgets/check", params={"name": name, "amount": "0.6"}).json()
    assert check["can_spend"] is True
    metrics = client.get("/metrics").text
    assert f'llmcost_budget_remaining_usd{{budget="{name}",period="daily"}} 1.0' in metrics
    late = client.post(f"{PREFIX}/budgets/{name}/reservations/{held.json()['id']}/settle", json={"amount": "0.5"})
    assert "lease ran out" in _error(late, 404, "id")
    assert client.get(f"{PREFIX}/budgets/{name}").json()["spent"] == "0"  # nothing recorded for it
    client.delete(f"{PREFIX}/budgets/{name}").raise_for_status()


def test_forecast_prices_pending_work_with_the_library(client: httpx.Client) -> None:
    body = {"pending_task_count": 500, "avg_input_tokens": 2000, "avg_output_tokens": 400, "model": "gpt-4o-mini"}
    got = client.post(f"{PREFIX}/forecast", json={**body, "buffer": "1.5"}).json()
    expected = analytics.forecast_tasks(500, 2000, 400, "gpt-4o-mini", buffer=Decimal("1.5"))
    assert got["estimated_cost"] == str(expected)
    assert Decimal(got["cost_per_task"]) * 500 == expected
    total_only = {"pending_task_count": 10, "avg_tokens_per_task": 1000, "model": "gpt-4o-mini"}
    priced = client.post(f"{PREFIX}/forecast", json=total_only).json()
    assert priced["estimated_cost"] == str(analytics.forecast_tasks(10, 0, 1000, "gpt-4o-mini"))


# -- operations -----------------------------------------------------------------------------------------------------


@pytest.mark.on_system_clock("daily")
def test_metrics_are_prometheus_text_read_from_the_store(client: httpx.Client, name: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    client.post(
        f"{PREFIX}/records",
        json=[{"model": "gpt-4o-mini", "usage": {"input_tokens": 1000, "output_tokens": 10}, "resource": name}] * 3,
    ).raise_for_status()
    client.post(f"{PREFIX}/budgets", json={"name": name, "amount": "10", "period": "daily", "resource": name})
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    ours = {"category": "llm_inference", "model": "gpt-4o-mini", "resource": name}

    def sample(family: str, **labels: str) -> float:
        (found,) = [s.value for s in families[family].samples if s.labels == {**ours, **labels}]
        return found

    assert sample("llmcost_calls") == 3
    assert sample("llmcost_tokens", kind="input") == 3000
    each = llmcost.cost_of("gpt-4o-mini", input_tokens=1000, output_tokens=10)
    assert sample("llmcost_spend_usd") == pytest.approx(float(each * 3))
    (used,) = [s.value for s in families["llmcost_budget_utilization_ratio"].samples if s.labels["budget"] == name]
    assert used == pytest.approx(float(each * 3 / 10))


def test_metrics_merge_a_missing_and_an_empty_label_into_one_series(client: httpx.Client, name: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    # Entries without a resource and with an empty one both carry resource="": one series, their sums (likewise
    # for the model), so that a Prometheus server, which keeps one sample per series, keeps all of the spend.
    records = [
        {"amount": "0.5", "category": "network", "model": name, "resource": "", "usage": {"input_tokens": 7}},
        {"amount": "0.25", "category": "network", "model": name, "usage": {"input_tokens": 3}},
        {"amount": "0.125", "category": "network", "model": "", "resource": name},
        {"amount": "0.0625", "category": "network", "resource": name},
    ]
    client.post(f"{PREFIX}/records", json=records).raise_for_status()
    text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def samples(family: str, **labels: str) -> list[float]:
        return [s.value for s in families[family].samples if s.labels == {"category": "network", **labels}]

    assert samples("llmcost_spend_usd", model=name, resource="") == [0.75]
    assert samples("llmcost_calls", model=name, resource="") == [2]
    assert samples("llmcost_tokens", model=name, resource="", kind="input") == [10]
    assert samples("llmcost_spend_usd", model="", resource=name) == [0.1875]
    assert samples("llmcost_calls", model="", resource=name) == [2]


def test_a_credit_without_a_resource_is_counted_beside_one_with_a_resource(client: httpx.Client, name: str) -> None:
    # The credits query gave NaN for a missing resource where another credit had one, and that credit matched no
    # series: its spend counter fell from 2 to 1 (a reset, to Prometheus) and its credits stayed 0.
    from prometheus_client.parser import text_string_to_metric_families

    def scrape() -> dict[str, float]:
        return {
            family.name: sample.value
            for family in text_string_to_metric_families(client.get("/metrics").text)
            for sample in family.samples
            if sample.labels.get("model") == name and sample.labels.get("resource") == ""
            and sample.name.endswith("_total")
        }  # fmt: skip

    client.post(f"{PREFIX}/records", json={"amount": "2", "category": "compute", "model": name}).raise_for_status()
    credits = [
        {"amount": "-1", "category": "compute", "model": name},
        {"amount": "-1", "category": "compute", "model": name, "resource": name},
    ]
    client.post(f"{PREFIX}/records", json=credits).raise_for_status()
    got = scrape()
    assert (got["llmcost_spend_usd"], got["llmcost_credits_usd"]) == (2, 1)


def test_credits_never_take_a_counter_down(client: httpx.Client, name: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def scrape() -> dict[tuple[str, str], float]:
        text = client.get("/metrics").text
        return {
            (family.name, sample.labels["category"]): sample.value
            for family in text_string_to_metric_families(text)
            if family.type == "counter"
            for sample in family.samples
            if sample.labels.get("resource") == name and sample.name.endswith("_total")
        }

    post = [
        [{"amount": "100", "category": "compute", "resource": name}],
        [{"amount": "-30", "category": "compute", "resource": name, "description": "refund"}],
        [{"amount": "-5", "category": "storage", "resource": name}],
    ]
    post[2].append({"amount": "0.5", "category": "compute", "resource": name})
    seen = []
    for batch in post:
        client.post(f"{PREFIX}/records", json=batch).raise_for_status()
        seen.append(scrape())
    assert [s[("llmcost_spend_usd", "compute")] for s in seen] == [100, 100, 100.5]
    assert [s[("llmcost_credits_usd", "compute")] for s in seen] == [0, 30, 30]
    assert (seen[2][("llmcost_spend_usd", "storage")], seen[2][("llmcost_credits_usd", "storage")]) == (0, 5)
    assert [s[("llmcost_calls", "compute")] for s in seen] == [1, 2, 3]
    for before, after in itertools.pairwise(seen):  # no counter goes down
        assert all(after[key] >= value for key, value in before.items()), (before, after)


def test_openapi_lists_every_route_of_the_contract(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    routes = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert routes >= {
        (f"{PREFIX}/records", "get"),
        (f"{PREFIX}/records", "post"),
        (f"{PREFIX}/summary", "get"),
        (f"{PREFIX}/budgets", "get"),
        (f"{PREFIX}/budgets", "post"),
        (f"{PREFIX}/budgets/{{name}}", "get"),
        (f"{PREFIX}/budgets/{{name}}", "delete"),
        (f"{PREFIX}/budgets/check", "get"),
        (f"{PREFIX}/budgets/{{name}}/reservations", "post"),
        (f"{PREFIX}/budgets/{{name}}/reservations/{{reservation_id}}/settle", "post"),
        (f"{PREFIX}/forecast", "post"),
        ("/metrics", "get"),
        ("/healthz", "get"),
        ("/", "get"),
    }
    assert client.get("/healthz").json() == {"status": "ok"}


def test_openapi_declares_the_errors_the_server_answers(client: httpx.Client, name: str) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert schemas["ErrorOut"]["required"] == ["error", "field"]

    def errors(path: str, method: str) -> set[int]:
        responses = spec["paths"][path][method]["responses"]
        assert "422" not in responses, (path, method)  # the server never answers 422
        found = set()
        for status, response in responses.items():
            if not status.startswith(("4", "5")):
                continue
            found.add(int(status))
            if (path, status) == ("/", "401"):  # a browser gets a sign-in page
                assert "text/html" in response["content"]
                continue
            shape = response["content"]["application/json"]["schema"]
            assert shape == {"$ref": "#/components/schemas/ErrorOut"}, (path, method, status)
        return found

    for path, operations in spec["paths"].items():
        for method in operations:
            if path != "/healthz":
                assert {401, 503} <= errors(path, method)
    reserve = f"{PREFIX}/budgets/{{name}}/reservations"
    assert {400, 404, 409, 413} <= errors(reserve, "post")
    assert {400, 404} <= errors(f"{reserve}/{{reservation_id}}/settle", "post")
    assert {400, 413} <= errors(f"{PREFIX}/records", "post")
    assert 404 in errors(f"{PREFIX}/budgets/{{name}}", "get")
    # ... and what it declares is what it answers:
    client.post(f"{PREFIX}/budgets", json={"name": name, "amount": "1", "period": "daily"}).raise_for_status()
    answers = [
        client.post(f"{PREFIX}/records", json={"amount": 1, "usage": {"input_tokens": "x"}}),
        client.post(reserve.replace("{name}", name), json={"amount": "2"}),
        client.post(reserve.replace("{name}", f"no-{name}"), json={"amount": "0.1"}),
    ]
    expected = [(400, "usage.input_tokens"), (409, "amount"), (404, "name")]
    assert [(r.status_code, r.json()["field"]) for r in answers] == expected
    client.delete(f"{PREFIX}/budgets/{name}").raise_for_status()


def test_the_dashboard_is_the_report_with_filters_and_no_outside_urls(client: httpx.Client, name: str) -> None:
    client.post(f"{PREFIX}/records", json={"amount": "1.25", "resource": name, "category": "storage"})
    page = client.get("/", params={"resource": name})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<form id="filters"' in html and "<svg" in html and "$1.25" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    fragment = client.get("/", params={"resource": name, "fragment": "1"}).text
    assert fragment.startswith('<div class="cards">') and "$1.25" in fragment
    _error(client.get("/", params={"period": "forever"}), 400, "period")
    assert "'beer'" in _error(client.get("/", params={"category": "beer"}), 400, "category")
    assert "'beer'" in _error(client.get("/", params={"category": "beer", "fragment": "1"}), 400, "category")
    assert "':x'" in _error(client.get("/", params={"tag": ":x"}), 400, "tag")


# -- auth, binding, and staying light -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("secured") / "costs.duckdb"
    with serve_process(f"duckdb://{path}", token=TOKEN) as url:
        yield url


@pytest.mark.parametrize(
    "path", ["/api/v1/costs/records", "/api/v1/costs/summary", "/api/v1/costs/budgets", "/metrics", "/openapi.json"]
)
def test_a_token_guards_every_route_but_healthz(secured: str, path: str) -> None:
    assert httpx.get(f"{secured}/healthz").status_code == 200
    missing = httpx.get(secured + path)
    assert "no token" in _error(missing, 401, "authorization")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "wrong token" in _error(
        httpx.get(secured + path, headers={"Authorization": "Bearer nope"}), 401, "authorization"
    )
    assert httpx.get(secured + path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_the_dashboard_asks_a_browser_for_the_token_and_takes_it_as_a_cookie(secured: str) -> None:
    sign_in = httpx.get(f"{secured}/")
    assert sign_in.status_code == 401 and "<form" in sign_in.text
    assert httpx.get(f"{secured}/", cookies={"llmcost_token": TOKEN}).status_code == 200
    posted = httpx.post(f"{secured}/api/v1/costs/records", json={"amount": "1"}, cookies={"llmcost_token": "x"})
    _error(posted, 401, "authorization")


@pytest.mark.parametrize(
    "others",
    ['prefs={"theme":"dark"}', "msg=hello world", "path=C:\\tmp", "flag", 'quoted="a b"', "llmcost_token_x=1"],
)
def test_the_token_cookie_is_read_beside_cookies_other_apps_set(secured: str, others: str) -> None:
    # Cookies are shared by every port of a host: another app's cookie that http.cookies cannot parse must not hide
    # the token (the sign-in form came back forever).
    for cookie in (f"{others}; llmcost_token={TOKEN}", f"llmcost_token={TOKEN}; {others}"):
        for path in ("/", "/api/v1/costs/summary"):
            assert httpx.get(secured + path, headers={"Cookie": cookie}).status_code == 200, (cookie, path)
    _error(httpx.get(f"{secured}/metrics", headers={"Cookie": f"{others}; llmcost_token=nope"}), 401, "authorization")


def test_serving_another_host_without_a_token_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "llmcost", "serve", "--store", "memory://", "--host", "0.0.0.0", "--port", "9"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in __import__("os").environ.items() if k != "LLMCOST_API_TOKEN"},
    )
    assert done.returncode == 2
    assert "without a token" in done.stderr and "LLMCOST_API_TOKEN" in done.stderr


def test_a_port_in_use_or_out_of_range_is_one_line_and_no_banner(tmp_path: Path) -> None:
    # uvicorn bound the port itself: the banner "serving on..." came first, then its log and exit status 3.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for argv, needle in (
            (["--port", str(port)], f"cannot listen on 127.0.0.1:{port}: address already in use"),
            (["--port", "99999"], "--port must be between 0 and 65535, got 99999"),
        ):
            done = subprocess.run(
                [sys.executable, "-m", "llmcost", "serve", "--store", f"duckdb://{tmp_path / 'c.duckdb'}", *argv],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert (done.returncode, done.stdout) == (2, ""), done.stderr
            assert done.stderr == f"llmcost serve: error: {needle}\n"
    assert not (tmp_path / "c.duckdb").exists()  # refused before the store is made


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_an_ipv6_host_is_in_brackets_in_the_banner_url(host: str) -> None:
    # The banner said http://::1:18784/, which no browser or client reads as a host and a port.
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("this host has no IPv6 loopback")
    command = [sys.executable, "-m", "llmcost", "serve", "--store", "memory://", "--host", host, "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            banner = proc.stderr.readline()
            url = banner.split(" on ", 1)[1].split(" ", 1)[0]
            assert url.startswith("http://[::1]:") and url.endswith("/"), banner
            deadline = time.monotonic() + 30
            while True:  # the printed URL is one a client can use
                try:
                    assert httpx.get(f"{url}healthz", timeout=2.0).status_code == 200
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            proc.terminate()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.4", False), ("example.com", False)],
)  # fmt: skip
def test_only_loopback_hosts_may_serve_without_a_token(host: str, loopback: bool) -> None:
    from llmcost.server._security import check_bind, is_loopback

    assert is_loopback(host) is loopback
    check_bind(host, token="t")
    if not loopback:
        with pytest.raises(ValueError, match="without a token"):
            check_bind(host, token=None)


def test_import_llmcost_and_the_cli_leave_the_server_stack_unloaded() -> None:
    code = (
        "import sys, llmcost, llmcost.cli\n"
        "loaded = [m for m in ('fastapi', 'starlette', 'uvicorn', 'prometheus_client', 'llmcost.server') "
        "if m in sys.modules]\n"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.on_system_clock("daily")  # (its daily budget's remaining after the call it records, by the system clock)
def test_every_python_block_of_the_serving_guide_runs_as_pasted(capsys: pytest.CaptureFixture[str]) -> None:
    import re

    guide = (Path(__file__).parent.parent / "docs" / "serve.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", guide, re.DOTALL)
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "docs/serve.md", "exec"), {"__name__": "docs"})
    out = capsys.readouterr().out
    assert "0.25\n" in out and "0.00054 4.99946\n" in out  # what the guide's comments say they print


def test_holds_whose_release_fails_are_kept_and_released_at_the_next_try(monkeypatch, clock) -> None:
    # The sweeper took due holds out before releasing them: one whose release failed (the store down) was lost, and
    # its headroom stayed taken in the store's ledger for as long as the server ran.
    from decimal import Decimal

    import llmcost
    from llmcost import StoreError
    from llmcost.server._reservations import BudgetReservations

    tracker = llmcost.CostTracker(clock=clock)  # (a day of its own: the hold is of the day it reads)
    manager = llmcost.BudgetManager(tracker)
    manager.create("daily", 1, "daily")
    reservations = BudgetReservations(manager)
    try:
        reservations.reserve("daily", Decimal("0.6"), lease=0.01)
        assert manager.get("daily").remaining == Decimal("0.4")
        get = manager.get
        monkeypatch.setattr(manager, "get", lambda name: (_ for _ in ()).throw(StoreError("the store is down")))
        time.sleep(0.02)
        with pytest.raises(StoreError):
            reservations.expire()
        monkeypatch.setattr(manager, "get", get)
        reservations.expire()  # (or the sweeper, at its next try)
        assert manager.get("daily").remaining == 1
    finally:
        reservations.close()
        tracker.close()
