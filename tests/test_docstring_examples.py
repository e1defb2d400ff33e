"""Every ``>>>`` example in the package's docstrings runs, and shows what it really gives (STYLE.md rule 15).

Each module of ``llmcost`` is imported and its examples found with ``doctest.DocTestFinder``; each example is one
test, named by the example (``llmcost.analytics._spend.by_model``). A module whose optional extra is not installed
is skipped, as the suite's own tests of it are. Examples run in the module's namespace plus what examples may
assume (see ``namespace``), in a temporary working directory holding the small files they read:

* ``tracker``: a ``CostTracker`` whose clock stands at ``NOW`` (Friday 2024-05-17 12:00 UTC), over ``store``;
* ``store``: a ``DuckDBStore`` holding ``_entries()``: ten days of a support bot on gpt-4o-mini, search reranking
  on gpt-4o, summaries on Claude 3.5 Sonnet without a team tag and a GPU box billed per day, plus one day
  (2024-05-14) when the support bot's retry loop ran away on gpt-4o; their ids are fixed too; one budget is saved
  in it, ``llm-total`` ($50 of LLM calls, ever). Examples share it and must only read it;
* in the working directory, a copy of that store as ``llmcost.duckdb`` (the command line's default store),
  ``prices.toml`` (a user price), ``new-prices.toml`` (a what-if price for gpt-4o), ``openai-costs.json`` (the
  OpenAI costs API, 14-15 May) and ``anthropic-costs.csv`` (the Anthropic console's export, 14-15 May);
* ``llmcost``, ``analytics``, ``Decimal``, ``date``, ``datetime``, ``timedelta``, ``timezone``, ``io``, ``json``,
  ``sys``.

No network; the store is built once per run and copied for each example.
"""

from __future__ import annotations

import doctest
import importlib
import io
import json
import pkgutil
import shutil
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest

import llmcost
from llmcost import analytics

NOW = datetime(2024, 5, 17, 12, 0, tzinfo=timezone.utc)
FIRST_DAY = datetime(2024, 5, 8, tzinfo=timezone.utc)
RUNAWAY_DAY = datetime(2024, 5, 14, tzinfo=timezone.utc)

# Modules whose examples are not collected: running ``__main__`` runs the command line.
NOT_COLLECTED = ("llmcost.__main__",)


def _entry_kwargs() -> list[dict[str, Any]]:
    """``CostTracker.build`` arguments of every entry, in time order."""
    items: list[dict[str, Any]] = []
    for index in range(10):
        day = FIRST_DAY + timedelta(days=index)
        for minute in (0, 20, 40):
            items.append(
                {
                    "timestamp": day + timedelta(hours=9, minutes=minute),
                    "model": "gpt-4o-mini-2024-07-18",
                    "input_tokens": 20_000,
                    "output_tokens": 1_000,
                    "resource": "support-bot",
                    "tags": {"team": "support"},
                }
            )
        for minute in (0, 30):
            items.append(
                {
                    "timestamp": day + timedelta(hours=10, minutes=minute),
                    "model": "gpt-4o-2024-08-06",
                    "input_tokens": 40_000,
                    "output_tokens": 500,
                    "resource": "search-rerank",
                    "tags": {"team": "search"},
                }
            )
        items.append(
            {
                "timestamp": day + timedelta(hours=11),
                "model": "claude-3-5-sonnet-20241022",
                "input_tokens": 30_000,
                "output_tokens": 2_000,
                "resource": "summarize",
            }
        )
        items.append(
            {
                "timestamp": day + timedelta(hours=11, minutes=30),
                "amount": "2.40",
                "category": "compute",
                "resource": "gpu-box",
                "description": "1 x L4 GPU, 24 h",
                "tags": {"team": "search"},
            }
        )
        if day == RUNAWAY_DAY:
            for minute in range(20):
                items.append(
                    {
                        "timestamp": day + timedelta(hours=14, minutes=minute),
                        "model": "gpt-4o-2024-08-06",
                        "input_tokens": 60_000,
                        "output_tokens": 400,
                        "resource": "support-bot",
                        "tags": {"team": "support"},
                    }
                )
    items.sort(key=lambda item: item["timestamp"])
    return items


def _entries() -> list[llmcost.CostEntry]:
    """``ENTRIES``: priced as a tracker prices them, with ids fixed (time, then a counter) instead of random ones."""
    builder = llmcost.CostTracker(clock=lambda: NOW)
    entries = []
    for seq, kwargs in enumerate(_entry_kwargs(), start=1):
        entry = builder.build(**kwargs)
        micros = (entry.timestamp - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
        entries.append(attrs.evolve(entry, id=f"{micros:014x}{0:06x}{seq:06x}"))
    builder.close()
    return entries


FILES = {
    "prices.toml": """\
[[price]]
model = "acme-large"
provider = "acme"
input_per_mtok = "2"
output_per_mtok = "8"
""",
    "new-prices.toml": """\
[[price]]
model = "gpt-4o"
provider = "openai"
input_per_mtok = "1.25"
output_per_mtok = "5"
""",
    "anthropic-costs.csv": """\
usage_date_utc,model,usage_type,context_window,token_type,cost_usd
2024-05-14,Claude 3.5 Sonnet,message,0-200k,input_no_cache,0.09
2024-05-14,Claude 3.5 Sonnet,message,0-200k,output,0.03
2024-05-15,Claude 3.5 Sonnet,message,0-200k,input_no_cache,0.09
2024-05-15,Claude 3.5 Sonnet,message,0-200k,output,0.03
""",
}


def _openai_costs() -> dict[str, Any]:
    """The OpenAI costs API page for 14 and 15 May, grouped by line item: gpt-4o as recorded, and more gpt-4o-mini
    on the 15th than was recorded (calls made outside tracking)."""

    def bucket(day: date, items: dict[str, str]) -> dict[str, Any]:
        start = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())
        return {
            "object": "bucket",
            "start_time": start,
            "end_time": start + 86_400,
            "results": [
                {
                    "object": "organization.costs.result",
                    "amount": {"value": float(value), "currency": "usd"},
                    "line_item": item,
                    "project_id": None,
                    "organization_id": "org-demo",
                }
                for item, value in items.items()
            ],
        }

    return {
        "object": "page",
        "data": [
            bucket(
                date(2024, 5, 14),
                {
                    "gpt-4o-2024-08-06, input": "3.2",
                    "gpt-4o-2024-08-06, output": "0.09",
                    "gpt-4o-mini-2024-07-18, input": "0.009",
                    "gpt-4o-mini-2024-07-18, output": "0.0018",
                },
            ),
            bucket(
                date(2024, 5, 15),
                {
                    "gpt-4o-2024-08-06, input": "0.2",
                    "gpt-4o-2024-08-06, output": "0.01",
                    "gpt-4o-mini-2024-07-18, input": "0.012",
                    "gpt-4o-mini-2024-07-18, output": "0.0024",
                },
            ),
        ],
        "has_more": False,
        "next_page": None,
    }


# -- the examples ------------------------------------------------------------------------------------------------


def _modules() -> Iterator[tuple[str, Any]]:
    """``(name, module or skip reason)`` of every module of the package."""
    names = ["llmcost", *(m.name for m in pkgutil.walk_packages(llmcost.__path__, "llmcost."))]
    for name in sorted(names):
        if name in NOT_COLLECTED:
            continue
        try:
            yield name, importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] == "llmcost":
                raise
            yield name, f"{name} needs {exc.name}, an optional extra that is not installed"


def _examples() -> list[Any]:
    finder = doctest.DocTestFinder()
    params = []
    for name, module in _modules():
        if isinstance(module, str):
            params.append(pytest.param(None, id=name, marks=pytest.mark.skip(reason=module)))
            continue
        for test in finder.find(module):
            if not test.examples:
                continue
            params.append(pytest.param(test, id=test.name))
    return params


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The working directory's files, made once, and the shared ``store`` and ``tracker`` (over a copy of the same
    store file: opening a store costs more than most examples, so examples share one and must only read it)."""
    pristine = tmp_path_factory.mktemp("examples")
    shared = tmp_path_factory.mktemp("shared")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
        made = llmcost.DuckDBStore(pristine / "llmcost.duckdb")
        made.append(_entries())
        with llmcost.CostTracker(made, clock=lambda: NOW) as maker:
            llmcost.BudgetManager(maker).create("llm-total", "50", "total", category="llm_inference")
        for name, text in FILES.items():
            (pristine / name).write_text(text)
        (pristine / "openai-costs.json").write_text(json.dumps(_openai_costs(), indent=1))
        shutil.copy(pristine / "llmcost.duckdb", shared / "llmcost.duckdb")
        store = llmcost.DuckDBStore(shared / "llmcost.duckdb")
        tracker = llmcost.CostTracker(store, clock=lambda: NOW)
        total = store.total()
        yield pristine, {"store": store, "tracker": tracker}
        unchanged = store.total() == total and len(store.entries()) == len(_entry_kwargs())
        tracker.close()
        store.close()
    assert unchanged, "an example recorded into the shared store: give it a tracker of its own"


@pytest.fixture
def namespace(world: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What examples may assume, in a working directory of their own."""
    pristine, shared = world
    work = tmp_path / "work"
    shutil.copytree(pristine, work)
    monkeypatch.chdir(work)
    return {
        "Decimal": Decimal,
        "analytics": analytics,
        "date": date,
        "datetime": datetime,
        "io": io,
        "json": json,
        "llmcost": llmcost,
        "sys": sys,
        "timedelta": timedelta,
        "timezone": timezone,
        **shared,
    }


@pytest.mark.parametrize("example", _examples())
def test_example(example: doctest.DocTest, namespace: dict[str, Any]) -> None:
    # The module's own names win, as when its examples run alone (``pytest --doctest-modules``).
    test = doctest.DocTest(
        example.examples,
        {**namespace, **example.globs},
        example.name,
        example.filename,
        example.lineno,
        example.docstring,
    )
    report = io.StringIO()
    result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS).run(test, out=report.write)
    if result.failed:
        pytest.fail(report.getvalue(), pytrace=False)


@pytest.mark.parametrize(
    "obj",
    [type(llmcost.MODEL_PRICING), llmcost.is_active, llmcost.UnknownModelError, llmcost.ModelPrice.cost,
     llmcost.alerts.webhook, llmcost.alerts.email, llmcost.alerts.log],
    ids=lambda obj: obj.__qualname__,
)  # fmt: skip
def test_these_public_names_show_a_runnable_example(obj: Any) -> None:
    # Each had none (or, UnknownModelError, one whose output it does not give); test_example runs them.
    assert ">>>" in (obj.__doc__ or "")
