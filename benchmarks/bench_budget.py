"""What a budget check adds to @track_cost; a daily budget over a MemoryStore; a period budget's first and later
checks over a big DuckDB store; and per-user budgets entered per request over a MemoryStore, DuckDB and Parquet.

Run: python -m benchmarks budget      (or: python -m benchmarks.bench_budget [--rows N] [--quick])
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchmarks._util import machine, per_call_us, table
from benchmarks.plot import write_results

#: Entries in the store under the period budget for ``--quick`` (a smoke run, not a figure).
QUICK_ROWS = 2_000
#: The tag of the calls a filtered budget checks.
TEAM = {"team": "search"}
#: An OpenAI chat request's own arguments, as an instrumented client's ``create`` gets them: a budget with no
#: ``estimate=`` estimates the call from these (a system prompt and a ~1,100-character user message).
REQUEST = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Summarize in three bullet points: " + "lorem ipsum dolor sit amet " * 40},
    ],
    "max_tokens": 300,
}


def _responses(sdk: bool = True) -> list[tuple[str, list[object]]]:
    """The responses the tracked function returns: a chat completion as a dict, and (with ``sdk``) as the OpenAI
    SDK's object; each first as the benchmark's usual response, then in seven more of other prompt sizes (calls of
    varying cost)."""
    sizes = [1200 + 37 * i for i in range(8)]
    responses = [
        {
            "object": "chat.completion",
            "model": "gpt-4o-2024-08-06",
            "choices": [],
            "usage": {"prompt_tokens": size, "completion_tokens": 300, "total_tokens": size + 300},
        }
        for size in sizes
    ]
    found: list[tuple[str, list[object]]] = [("dict response", list(responses))]
    if not sdk:
        return found
    try:
        from openai.types.chat import ChatCompletion
    except ImportError:
        print("openai not installed: the ChatCompletion figures are skipped")
    else:
        found.append(
            (
                "OpenAI ChatCompletion",
                [ChatCompletion.model_validate({**response, "id": "c", "created": 0}) for response in responses],
            )
        )
    return found


#: A ``budget_variants`` row: (name, the call, how many block budgets it runs in, index of the row it is compared with).
Variant = tuple[str, Callable[[], object], int, int]


def _bare(response: object) -> Callable[..., object]:
    """The untracked function: it returns ``response`` at once, whatever it is asked."""

    def bare(response: object = response, **request: object) -> object:
        return response

    return bare


def budget_variants(
    responses: Sequence[object], estimate: Decimal = Decimal("0.0001")
) -> tuple[list[Variant], list[dict[str, object]]]:
    """The calls timed against each other (each tracked by a ``CostTracker`` of its own, called once already), and
    the filters of the budgets each runs in: the tag filter names the calls' tag, the per-model budget their model.
    ``responses``: the usual response first, then others of other prompt sizes (calls of varying cost).

    >>> variants, filters = budget_variants(_responses()[0][1])
    >>> variants[5][0], variants[5][2:], filters[8]
    ('  in budget (estimate from the request)', (1, 4), {'model': 'gpt-4o'})
    """
    from llmcost import CostTracker, track_cost

    bare = _bare(responses[0])
    turns = itertools.cycle(responses)

    def bare_varying(turns: Iterator[object] = turns, **request: object) -> object:
        return next(turns)

    def tracked(function: Callable[..., object] = bare, **options: object) -> Callable[[], object]:
        fn = track_cost(tracker=CostTracker(), **options)(function)  # type: ignore[call-overload]
        fn()
        return fn

    def asking(fn: Callable[..., object]) -> Callable[[], object]:
        """``fn`` called as an SDK method is, with the request's own arguments (the estimate read from them)."""
        return lambda: fn(**REQUEST)

    variants: list[Variant] = [
        ("@track_cost", tracked(), 0, 0),
        ("@track_cost in budget (estimate=)", tracked(estimate=estimate), 1, 0),
        ("@track_cost in budget (recent-calls estimate)", tracked(), 1, 0),
        ("@track_cost in 3 nested budgets (estimate=)", tracked(estimate=estimate), 3, 0),
        ("@track_cost, called with request arguments", asking(tracked()), 0, 4),
        ("  in budget (estimate from the request)", asking(tracked()), 1, 4),
        ("@track_cost(tags=...)", tracked(estimate=estimate, tags=TEAM), 0, 6),
        ("  in a budget with a tag filter", tracked(estimate=estimate, tags=TEAM), 1, 6),
        ("@track_cost in a per-model budget (estimate=)", tracked(estimate=estimate), 1, 0),
        # The recent-calls estimate again, over calls whose cost changes from call to call (eight prompt sizes in
        # turn): the mean then changes with every call.
        ("@track_cost, calls of varying cost", tracked(bare_varying), 0, 9),
        ("  in budget (recent-calls estimate)", tracked(bare_varying), 1, 9),
    ]
    filters: list[dict[str, object]] = [{} for _ in variants]
    filters[7], filters[8] = {"tags": TEAM}, {"model": "gpt-4o"}
    return variants, filters


def _interleaved(
    variants: Sequence[tuple[str, Callable[[], object], int]],
    block: int,
    rounds: int,
    filters: Sequence[dict[str, object]] | None = None,
) -> list[float]:
    """CPU microseconds per call of each ``(name, fn, budgets)`` variant, inside that many nested block budgets: the
    best of ``rounds`` rounds of ``block`` calls, every variant timed once per round (in turn, from a different one
    each round). CPU time of this thread, not
    wall time: on a shared machine the time other processes hold the CPU is not the call's (a MemoryStore has no
    background thread, so the thread's CPU time is all the work)."""
    import llmcost

    best = [float("inf")] * len(variants)
    for r in range(rounds):
        for i in [*range(r % len(variants), len(variants)), *range(r % len(variants))]:  # each round starts elsewhere
            _, fn, budgets = variants[i]
            with contextlib.ExitStack() as stack:
                for _ in range(budgets):
                    stack.enter_context(llmcost.budget(10**9, **(filters[i] if filters else {})))  # type: ignore[arg-type]
                started = time.thread_time()
                for _ in range(block):
                    fn()
                best[i] = min(best[i], (time.thread_time() - started) / block * 1e6)
    return best


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    parser.add_argument("--rows", type=int, default=1_000_000, help="entries in the DuckDB store")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    rows = QUICK_ROWS if args.quick else args.rows
    # A MemoryStore moves its entries into columns every 256 appends: blocks of 4,096 calls each hold sixteen such
    # moves, so no variant's best block is one that happened to miss them.
    block, rounds = (100, 2) if args.quick else (4_096, 12)

    import llmcost
    from llmcost import CostTracker, track_cost

    estimate = Decimal("0.0001")
    print(f"machine: {machine()}; MemoryStore; CPU time of the calling thread, each figure the best of {rounds}")
    print(f"rounds of {block} calls, the variants timed in turn within each round")
    records: list[dict[str, object]] = []
    for kind, responses in _responses():
        variants, filters = budget_variants(responses, estimate)
        bare = _bare(responses[0])
        times = _interleaved([(name, fn, n) for name, fn, n, _ in variants], block, rounds, filters)
        print(f"\n{kind}: bare function {per_call_us(bare, block * 5):.3g} us")
        measured = [(name, n, t, times[base]) for (name, _, n, base), t in zip(variants, times, strict=True)]
        print(
            table(
                ["call", "us/call", "budget adds us", "x the call unbudgeted"],
                [(name, t, t - plain if n else "-", t / plain) for name, n, t, plain in measured],
            )
        )
        records += [
            {"figure": f"budget adds ({kind})", "series": name, "value": t - plain, "unit": "us", "ratio": t / plain}
            for name, n, t, plain in measured
            if n
        ]

    # A daily budget over the default store (a MemoryStore: its ledger in this process, each call reserved exactly in
    # it) against the same call unbudgeted, timed in turn in this run.
    memory = CostTracker()
    in_memory = track_cost(tracker=memory, estimate=Decimal("0.0025"))(bare)
    in_memory()
    daily = llmcost.budget(10**9, period="daily", tracker=memory)
    memory_rounds = 2 if args.quick else 5
    alone = checked = float("inf")
    for _ in range(memory_rounds):  # (in turn: a burst of load on this shared machine hits both alike)
        alone = min(alone, per_call_us(in_memory, block, repeat=1))
        with daily:
            checked = min(checked, per_call_us(in_memory, block, repeat=1))
    # The same tracker's calls outside the budget's block: its account stays kept in the store's ledger for the day,
    # which counts their rows too (as the store moves its appends), against the calls of a tracker no budget used.
    fresh = track_cost(tracker=CostTracker(), estimate=Decimal("0.0025"))(bare)
    fresh()
    never = outside = float("inf")
    for _ in range(memory_rounds):
        never = min(never, per_call_us(fresh, block, repeat=1))
        outside = min(outside, per_call_us(in_memory, block, repeat=1))
    print()
    print(
        table(
            ["daily budget over a MemoryStore (ledger in process)", "figure"],
            [
                ("tracked call, no budget", f"{alone:.2f} us/call"),
                ("the same call, checked by the budget", f"{checked:.2f} us/call ({checked / alone:.2f}x)"),
                ("a call of a tracker no budget used", f"{never:.2f} us/call"),
                ("a call of the budget's tracker outside it", f"{outside:.2f} us/call ({outside / never:.2f}x)"),
            ],
        )
    )
    records += [
        {"figure": "period budget, MemoryStore", "series": "tracked call", "value": alone, "unit": "us"},
        {"figure": "period budget, MemoryStore", "series": "checked call", "value": checked, "unit": "us"},
        {"figure": "period budget, MemoryStore", "series": "call outside it", "value": outside, "unit": "us"},
    ]

    # Per-user daily budgets over a MemoryStore, as a web handler enters them (a budget and the user's tags a
    # request): a request's time with many users' budgets open today against with a few, in this run. Each user's
    # first request reads the user's spend from the store (once a day); later ones should not depend on how many
    # other users there are.
    def requests(users: range, tracker: CostTracker, timer: Callable[[], float] = time.thread_time) -> float:
        asked = track_cost(tracker=tracker, estimate=Decimal("0.0025"))(bare)
        started = timer()
        for user in users:
            user_tags = {"user": f"u{user}"}
            with llmcost.budget(10**6, period="daily", tracker=tracker, tags=user_tags), llmcost.tags(**user_tags):
                asked()
        return (timer() - started) / len(users) * 1e6

    many = 100 if args.quick else 3_000
    few_users, many_users = CostTracker(), CostTracker()  # (a store each: 30 users' accounts, and 3,000)
    requests(range(30), few_users)  # every user's first request of the day
    requests(range(many), many_users)
    few_us = many_us = float("inf")
    for _ in range(3):
        few_us = min(few_us, requests(range(30), few_users))
        many_us = min(many_us, requests(range(many), many_users))
    print()
    print(
        table(
            ["per-user daily budgets over a MemoryStore", "figure"],
            [
                ("a request, 30 users' budgets", f"{few_us:.1f} us"),
                (f"a request, {many:,} users' budgets", f"{many_us:.1f} us ({many_us / few_us:.2f}x)"),
            ],
        )
    )
    records += [
        {"figure": "per-user budgets, MemoryStore", "series": "30 users", "value": few_us, "unit": "us"},
        {"figure": "per-user budgets, MemoryStore", "series": f"{many} users", "value": many_us, "unit": "us"},
    ]

    # A daily budget over a DuckDB store that already holds `rows` entries of today.
    import duckdb
    import pandas as pd

    from llmcost._rows import ENTRIES_DDL, cast_select

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "costs.duckdb"
        now = datetime.now(timezone.utc)
        raw = pd.DataFrame(  # noqa: F841 - read by DuckDB below
            {
                "id": [f"{i:026x}" for i in range(rows)],
                "timestamp": pd.Timestamp(now.replace(hour=0, minute=0, second=1)),
                "amount": "0.0025",
                "currency": "USD",
                "category": "llm_inference",
                "resource": [f"r{i % 20}" for i in range(rows)],
                "description": "",
                "model": "gpt-4o",
                "provider": "openai",
                "input_tokens": 1000,
                "output_tokens": 0,
                "cache_read_tokens": 0,
                "cache_write_tokens": 0,
                "reasoning_tokens": 0,
                "latency_ms": 10.0,
                "tags": '{"team": "search"}',
                "pricing": "given",
                "units": None,
                "service_tier": None,
                "canonical_model": "gpt-4o",
            }
        )
        con = duckdb.connect(str(path))
        con.execute(ENTRIES_DDL)
        con.execute(f"INSERT INTO entries {cast_select('raw')}")
        con.close()
        tracker = CostTracker(f"duckdb://{path}")
        # Calls of the budget's team, so the budget checks each one (through the store's ledger, shared with every
        # process on the store: a reservation before the call and a settlement after it, each one transaction).
        fn = track_cost(tracker=tracker, estimate=Decimal("0.0025"), tags={"team": "search"})(bare)
        b = llmcost.budget(10**9, period="daily", tracker=tracker, tags={"team": "search"})
        started = time.perf_counter()
        first_spent = b.spent
        first = (time.perf_counter() - started) * 1000
        # In turn, as the MemoryStore's rows are: rounds of `block` calls, each figure the best round, so a burst of
        # load, or of the store's writer thread (which writes every call's entry beside the calls, on the other core
        # and under the same GIL), hits both alike. Inside each `with`, a few calls first: entering the budget leases
        # anew from the ledger (a transaction), which the round would otherwise time as a call.
        unbudgeted = later = float("inf")
        for _ in range(rounds):
            unbudgeted = min(unbudgeted, per_call_us(fn, block, repeat=1))
            with b:
                for _ in range(64):
                    fn()
                later = min(later, per_call_us(fn, block, repeat=1))
        tracker.close()
    print()
    print(
        table(
            ["daily budget over a DuckDB store", "figure"],
            [
                ("entries in the store", f"{rows:,}"),
                ("first check (one pushed-down total)", f"{first:.1f} ms"),
                ("spend found", f"${first_spent}"),
                ("tracked call of the team, no budget", f"{unbudgeted:.2f} us/call"),
                ("the same call, checked by the budget (ledger)", f"{later:.2f} us/call ({later / unbudgeted:.2f}x)"),
            ],
        )
    )

    # Per-user daily budgets over the stores other processes share, as above: each request enters a user's budget
    # (its account read in the ledger every process uses, a lease taken and released; the tracker's buffer written
    # first only when it holds an entry of that user's), in wall time (the store's writer and DuckDB's threads work
    # beside the request). The later rounds' requests one by one: their mean, median and slowest (a request that
    # writes the buffer, or reads spend many accounts need, is slower than the rest); the median of a user's request
    # right after the same user's (the call of the request before still buffered). Then a round after the buffer was
    # written (as the tracker's writer does every second): each request reads its user's spend again, which the
    # write made stale. With a PostgreSQL server (``bench_postgres``'s variables), over a PostgresStore too.
    from benchmarks.bench_postgres import fresh_database, server

    shared_users = 5 if args.quick else 30
    shared = []
    postgres_at, why_not = server()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as databases:
        places: list[tuple[str, Any]] = [
            ("DuckDB", f"duckdb://{tmp}/users.duckdb"),
            ("Parquet", f"parquet://{tmp}/users"),
        ]
        if postgres_at is not None:
            from llmcost.stores import PostgresStore

            dsn = databases.enter_context(fresh_database(postgres_at))  # (a libpq DSN, not a store URL)
            places.append(("PostgreSQL", PostgresStore(dsn, spill_dir=f"{tmp}/spill")))
        for kind, where in places:
            tracker = CostTracker(where)
            first_ms = requests(range(shared_users), tracker, time.perf_counter) / 1000
            each = sorted(
                requests(range(user, user + 1), tracker, time.perf_counter) / 1000
                for _ in range(3)
                for user in range(shared_users)
            )
            again = []  # (a user's request right after the same user's: a chat user's next message, say)
            for user in range(shared_users):
                requests(range(user, user + 1), tracker, time.perf_counter)
                again.append(requests(range(user, user + 1), tracker, time.perf_counter) / 1000)
            tracker.flush()
            written_ms = requests(range(shared_users), tracker, time.perf_counter) / 1000
            tracker.close()
            shared.append(
                (
                    kind,
                    first_ms,
                    statistics.fmean(each),
                    each[len(each) // 2],
                    each[-1],
                    statistics.median(again),
                    written_ms,
                )
            )
    print()
    print(
        table(
            [
                f"per-user daily budgets, {shared_users} users, over a",
                "first ms",
                "later ms",
                "median",
                "slowest",
                "same user again",
                "after a write ms",
            ],
            shared if postgres_at is not None else [*shared, ("PostgreSQL", f"skipped: {why_not}", *[""] * 5)],
        )
    )
    records += [
        {"figure": "per-user budgets, shared store", "series": kind, "value": later_ms, "unit": "ms"}
        for kind, _, later_ms, *_ in shared
    ]
    if args.json:
        records += [
            {"figure": "period budget", "series": "first check", "size": rows, "value": first, "unit": "ms"},
            {"figure": "period budget", "series": "tracked call", "size": rows, "value": unbudgeted, "unit": "us"},
            {"figure": "period budget", "series": "later tracked call", "size": rows, "value": later, "unit": "us"},
        ]
        write_results(args.json, "budget", records)


if __name__ == "__main__":
    main(sys.argv[1:])
