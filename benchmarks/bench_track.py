"""@track_cost overhead per call against the bare function, and `import llmcost` time.

Run: python -m benchmarks track      (or: python benchmarks/bench_track.py)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Sequence

from benchmarks._util import machine, per_call_us, table
from benchmarks.plot import write_results


def _import_us(module: str) -> float:
    """Cumulative `python -X importtime` microseconds of ``module``, best of 3 fresh interpreters."""
    best = float("inf")
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True
        ).stderr
        match = [ln for ln in out.splitlines() if re.search(rf"\|\s+{re.escape(module)}$", ln)]
        if match:
            best = min(best, float(match[-1].split("|")[1]))
    return best


def _sdk_objects(response: dict) -> list[tuple[str, object]]:
    """The same response as the real SDKs' objects (OpenAI ChatCompletion, Anthropic Message), where installed."""
    found: list[tuple[str, object]] = []
    try:
        from openai.types.chat import ChatCompletion
    except ImportError:
        print("openai not installed: its object figure is skipped")
    else:
        found.append(("OpenAI ChatCompletion", ChatCompletion.model_validate({**response, "id": "c", "created": 0})))
    try:
        from anthropic.types import Message
    except ImportError:
        print("anthropic not installed: its object figure is skipped")
    else:
        message = {
            "id": "msg",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-sonnet-20241022",
            "content": [],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 176, "output_tokens": 300, "cache_read_input_tokens": 1024},
        }
        found.append(("Anthropic Message", Message.model_validate(message)))
    return found


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    number = 200 if args.quick else 50_000

    import llmcost
    from llmcost import CostTracker, track_cost

    response = {
        "object": "chat.completion",
        "model": "gpt-4o-2024-08-06",
        "choices": [],
        "usage": {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 1024},
        },
    }

    def bare() -> dict:
        return response

    rows = []
    base = per_call_us(bare, number)
    cases: list[tuple[str, dict, dict | None, object]] = [
        ("@track_cost (MemoryStore), dict", {}, None, response),
        ("@track_cost + tags", {"tags": {"team": "search"}}, None, response),
        ("@track_cost in tags() block", {}, {"env": "prod"}, response),
    ]
    cases += [(f"@track_cost, {name}", {}, None, obj) for name, obj in _sdk_objects(response)]
    for name, options, context, result in cases:
        fn = track_cost(tracker=CostTracker(), **options)(lambda result=result: result)  # a fresh store per figure
        fn()  # warm the price cache
        if context:
            with llmcost.tags(**context):
                t = per_call_us(fn, number)
        else:
            t = per_call_us(fn, number)
        rows.append((name, t, t - base, t / base))
    rows.insert(0, ("bare function", base, 0.0, 1.0))
    print(f"machine: {machine()}; {number} calls per figure, best of 5")
    print(table(["call", "us/call", "overhead us", "x bare"], rows))
    print()
    imports = [(m, _import_us(m) / 1000) for m in ("llmcost", "genai_prices", "pandas", "duckdb")]
    print(table(["import", "ms (cumulative)"], imports))
    if args.json:
        records = [{"figure": "track_cost overhead", "series": r[0], "value": r[2], "unit": "us/call"} for r in rows]
        records += [{"figure": "import", "series": m, "value": ms, "unit": "ms"} for m, ms in imports]
        write_results(args.json, "track", records)


if __name__ == "__main__":
    main(sys.argv[1:])
