"""Run every benchmark (or the named ones): ``python -m benchmarks [--quick] [--json DIR] [track stores ...]``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path

import benchmarks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the suite still runs")
    parser.add_argument("--json", metavar="DIR", help="also write each benchmark's figures to DIR/NAME.json")
    parser.add_argument("names", nargs="*", help="benchmarks to run (bench_NAME.py); default: all")
    args = parser.parse_args(argv)
    found = sorted(
        m.name[len("bench_") :] for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )
    names = args.names or found
    unknown = set(names) - set(found)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; choose from {found}")
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"\n== {name} ==", flush=True)
        started = time.perf_counter()
        options = ["--quick"] if args.quick else []
        if args.json:
            options += ["--json", str(Path(args.json) / f"{name}.json")]
        module.main(options)
        print(f"({name}: {time.perf_counter() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
