"""What a budget adds to @track_cost, in machine instructions counted by callgrind: ``bench_budget``'s per-call rows,
each a ratio that does not move with the machine's load.

Run: python -m benchmarks.budget_instructions [--calls N] [--kinds dict|openai ...] [--rows I ...]

CPU time on a shared machine swings by +-0.1x between runs of ``bench_budget`` (a row at 1.23x in one run reads
1.37x in the next), so a goal near its line (issue 15: a budget adds at most 25%) cannot be read off it. Callgrind
counts the instructions the interpreter executes instead: the same count for the same code, inputs and
``PYTHONHASHSEED``, whatever else the machine runs. Each variant of ``bench_budget.budget_variants`` runs in a child
process of its own under ``valgrind --tool=callgrind``, inside its budgets, warmed up by ``--calls`` calls; then
``--calls`` more calls are counted between two markers (``os.getppid()``, where callgrind dumps its counts:
``--dump-before=os_getppid``), so neither start-up nor imports nor the warm-up count. The children run side by side,
one per core: instruction counts do not depend on what runs beside them.

Instructions are not time: a cache miss costs no more instructions than a hit, so wall-time effects (a lock another
thread holds, memory traffic) are not in these figures; ``bench_budget`` still gives the time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from pathlib import Path

from benchmarks._util import machine, table

#: The response kinds ``bench_budget._responses`` gives, by the name ``--kinds`` takes.
KINDS = {"dict": 0, "openai": 1}
#: The marker the counted calls lie between: callgrind dumps its counts as the function behind ``os.getppid`` starts.
MARKER = "os_getppid"


def _child(kind: int, index: int, calls: int) -> None:
    """In the child under callgrind: variant ``index`` of response kind ``kind``, warmed up, then ``calls`` calls
    between the two markers."""
    import llmcost
    from benchmarks.bench_budget import _responses, budget_variants

    responses = _responses(sdk=kind > 0)[kind][1]  # (the SDK imported only for its own responses)
    variants, filters = budget_variants(responses)
    _, fn, budgets, _ = variants[index]
    with contextlib.ExitStack() as stack:
        for _ in range(budgets):
            stack.enter_context(llmcost.budget(10**9, **filters[index]))  # type: ignore[arg-type]
        for _ in range(calls):
            fn()
        os.getppid()
        for _ in range(calls):
            fn()
        os.getppid()


def count(kind: int, index: int, calls: int, valgrind: str) -> int:
    """Instructions of ``calls`` calls of variant ``index`` of response kind ``kind`` (see the module's text)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        done = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                f"--dump-before={MARKER}",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "benchmarks.budget_instructions",
                "--child",
                str(kind),
                str(index),
                str(calls),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            cwd=Path(__file__).resolve().parent.parent,  # (where ``-m benchmarks...`` is found)
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"callgrind run of variant {index} failed ({done.returncode}): {done.stderr[-2000:]}")
        # Part 1 runs up to the first marker, part 2 from it to the second (the counted calls), part 3 the rest.
        return _totals(Path(f"{out}.2"))


def _totals(path: Path) -> int:
    """The instruction count a callgrind output file gives on its ``totals:`` line."""
    for line in path.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise ValueError(f"{path} has no totals: line")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4_096, help="calls counted per variant (default 4,096)")
    parser.add_argument("--kinds", nargs="+", choices=sorted(KINDS), default=sorted(KINDS), help="response kinds")
    parser.add_argument("--rows", type=int, nargs="+", help="only these rows of the table (indices from 0)")
    parser.add_argument("--child", type=int, nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind not found: nothing counted (Debian: apt-get install valgrind)")
        return
    from benchmarks.bench_budget import _responses, budget_variants

    found = _responses()
    kinds = sorted({KINDS[name] for name in args.kinds if KINDS[name] < len(found)})
    print(f"machine: {machine()}; instructions per call (callgrind), {args.calls:,} calls counted per variant")
    for kind in kinds:
        variants, _ = budget_variants(found[kind][1])
        wanted = sorted(set(args.rows or range(len(variants))))
        bases = sorted({variants[i][3] for i in wanted} - set(wanted))  # (each row is read against its own baseline)
        jobs = [*wanted, *bases]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            counts = pool.map(count, repeat(kind), jobs, repeat(args.calls), repeat(valgrind))
            counted = dict(zip(jobs, counts, strict=True))
        per_call = {i: n / args.calls for i, n in counted.items()}
        rows = []
        for i in wanted:
            label, _, budgets, base = variants[i]
            adds = f"{per_call[i] - per_call[base]:,.0f}" if budgets else "-"
            rows.append((label, f"{per_call[i]:,.0f}", adds, f"{per_call[i] / per_call[base]:.3f}"))
        print(f"\n{found[kind][0]}")
        print(table(["call", "instructions/call", "budget adds", "x the call unbudgeted"], rows))


if __name__ == "__main__":
    main()
