"""Pricing one call: llmcost against genai-prices, tokencost and LiteLLM, side by side; whether they agree on the
price (and why not, where they don't); and how long each takes to import and to price a first call.

Run: python -m benchmarks pricing      (or: python -m benchmarks.bench_pricing [--quick] [--json PATH])

Every library prices the same calls offline (LiteLLM with ``LITELLM_LOCAL_MODEL_COST_MAP=True``, set here, so it
reads its bundled price map instead of fetching one from GitHub at import). A library that is not installed gets a
"not installed" row; nothing here needs network.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import statistics
import subprocess
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NamedTuple

from benchmarks._util import machine, per_call_us, table
from benchmarks.plot import write_results

MODELS = ("gpt-4o", "claude-3-5-sonnet-20241022", "gemini-2.0-flash")


class Tokens(NamedTuple):
    """One call's usage in the genai-prices convention: input counts the cached parts, too."""

    input: int
    output: int
    cache_read: int = 0
    cache_write: int = 0


CASES = {
    "plain": Tokens(1200, 300),
    "cached": Tokens(3000, 300, cache_read=1500, cache_write=1000),
}

# Single-part usages that reveal a library's per-million-token price of each part (x10 -> $/Mtok).
_PARTS = {
    "input": Tokens(100_000, 0),
    "output": Tokens(0, 100_000),
    "cache read": Tokens(100_000, 0, cache_read=100_000),
    "cache write": Tokens(100_000, 0, cache_write=100_000),
}


@dataclass
class Pricer:
    """One library's way of pricing a call, with the model id it knows each of ``MODELS`` by."""

    name: str
    api: str
    offline: str
    price: Callable[[str, Tokens], Any]
    ids: dict[str, str | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    missing: str | None = None  # why the library cannot be measured ("not installed", an error)
    prepare: Callable[[str, Tokens], Any] | None = None  # builds the argument once (a response object)


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


# -- the libraries -------------------------------------------------------------------------------------------------


def _llmcost() -> list[Pricer]:
    from llmcost import cost_of

    def price(model: str, t: Tokens) -> Decimal:
        return cost_of(
            model,
            input_tokens=t.input,
            output_tokens=t.output,
            cache_read_tokens=t.cache_read,
            cache_write_tokens=t.cache_write,
        )

    offline = "yes: genai-prices data, bundled"
    return [Pricer("llmcost", "cost_of", offline, price, {m: m for m in MODELS})]


def _genai_prices() -> list[Pricer]:
    from genai_prices import Usage, calc_price

    def price(model: str, t: Tokens) -> Decimal:
        usage = Usage(
            input_tokens=t.input,
            output_tokens=t.output,
            cache_read_tokens=t.cache_read,
            cache_write_tokens=t.cache_write,
        )
        return calc_price(usage, model).total_price

    offline = "yes: bundled (update_prices() opt-in)"
    return [Pricer("genai-prices", "calc_price", offline, price, {m: m for m in MODELS})]


def _tokencost() -> list[Pricer]:
    import tokencost

    costs = tokencost.TOKEN_COSTS

    def price(model: str, t: Tokens) -> Decimal:
        # tokencost prices one token type per call and has no cache-write type: writes are billed as input.
        by = tokencost.calculate_cost_by_tokens
        total = by(t.input - t.cache_read, model, "input") + by(t.output, model, "output")
        if t.cache_read:
            total += by(t.cache_read, model, "cached")
        return total

    ids: dict[str, str | None] = {m: m if m in costs else None for m in MODELS}
    notes = {m: f"{m!r} not in tokencost's price table" for m, i in ids.items() if i is None}
    offline = "yes: bundled (refresh_prices() opt-in)"
    return [Pricer("tokencost", "calculate_cost_by_tokens x3", offline, price, ids, notes)]


# LiteLLM wants a provider prefix for non-OpenAI models; its bundled map has dropped some retired ids, in which case
# the Vertex AI listing of the same model is the closest it has.
_LITELLM_IDS = {
    "gpt-4o": ("gpt-4o",),
    "claude-3-5-sonnet-20241022": ("anthropic/claude-3-5-sonnet-20241022", "vertex_ai/claude-3-5-sonnet"),
    "gemini-2.0-flash": ("gemini/gemini-2.0-flash", "vertex_ai/gemini-2.0-flash"),
}


def _litellm() -> list[Pricer]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm
    from litellm import ModelResponse
    from litellm.types.utils import Usage

    litellm.suppress_debug_info = True

    def per_token(model: str, t: Tokens) -> float:
        prompt, completion = litellm.cost_per_token(
            model=model,
            prompt_tokens=t.input,
            completion_tokens=t.output,
            cache_read_input_tokens=t.cache_read,
            cache_creation_input_tokens=t.cache_write,
        )
        return prompt + completion

    def response(model: str, t: Tokens) -> Any:
        usage = Usage(
            prompt_tokens=t.input,
            completion_tokens=t.output,
            total_tokens=t.input + t.output,
            prompt_tokens_details={"cached_tokens": t.cache_read},
            cache_read_input_tokens=t.cache_read,
            cache_creation_input_tokens=t.cache_write,
        )
        return ModelResponse(model=model, usage=usage)

    def completion(model: str, t: Tokens, resp: Any = None) -> float:
        return litellm.completion_cost(completion_response=resp if resp is not None else response(model, t))

    ids: dict[str, str | None] = {}
    notes: dict[str, str] = {}
    for model, candidates in _LITELLM_IDS.items():
        ids[model] = None
        for n, candidate in enumerate(candidates):
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    per_token(candidate, CASES["plain"])
            except Exception:
                continue
            ids[model] = candidate
            if n:
                notes[model] = f"{candidates[0]!r} is not in LiteLLM's bundled map; priced as {candidate!r}"
            break
        else:
            notes[model] = f"none of {candidates} is in LiteLLM's bundled map"
    offline = "yes: bundled, with LITELLM_LOCAL_MODEL_COST_MAP=True *"
    return [
        Pricer("litellm", "cost_per_token", offline, per_token, ids, notes),
        Pricer("litellm", "completion_cost(response)", offline, completion, dict(ids), dict(notes), prepare=response),
    ]


_LIBRARIES: list[tuple[str, str, Callable[[], list[Pricer]], int]] = [
    ("llmcost", "llmcost", _llmcost, 1),
    ("genai-prices", "genai-prices", _genai_prices, 1),
    ("tokencost", "tokencost", _tokencost, 1),
    ("litellm", "litellm", _litellm, 2),
]


def load_pricers() -> list[Pricer]:
    """Every library's pricers; a library that is missing or fails to load gets a row saying so."""
    pricers: list[Pricer] = []
    for name, _dist, load, rows in _LIBRARIES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pricers.extend(load())
        except ImportError:
            pricers.extend(Pricer(name, "-", "-", _none, missing="not installed") for _ in range(rows))
        except Exception as exc:
            pricers.extend(Pricer(name, "-", "-", _none, missing=f"error: {exc!r}"[:80]) for _ in range(rows))
    return pricers


def _none(model: str, t: Tokens) -> None:
    return None


# -- agreement -----------------------------------------------------------------------------------------------------


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _same(a: Decimal | None, b: Decimal | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= abs(b) * Decimal("1e-9")  # LiteLLM's floats carry binary rounding (0.0135000...02)


def _quietly(fn: Callable[[], Any]) -> Any:
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    except Exception:
        return None


def _rates(p: Pricer, model: str) -> dict[str, Decimal | None]:
    """$/Mtok ``p`` charges for each part of a call to ``model`` (for a cached part: what it charges in its place)."""
    mid = p.ids.get(model)
    if mid is None:
        return dict.fromkeys(_PARTS)
    rates = {part: _dec(_quietly(lambda t=t: p.price(mid, t))) for part, t in _PARTS.items()}
    return {part: None if r is None else (r * 10).normalize() for part, r in rates.items()}


def _reason(p: Pricer, ref: Pricer, model: str) -> str:
    """Which parts of the price differ from ``ref``'s, and the likely cause."""
    ours, theirs = _rates(ref, model), _rates(p, model)
    causes = []
    for part in _PARTS:
        a, b = theirs[part], ours[part]
        if _same(a, b):
            continue
        plain_a = a is not None and _same(a, theirs["input"])
        plain_b = b is not None and _same(b, ours["input"])
        if part.startswith("cache") and plain_a and plain_b:
            continue  # both bill this part as plain input: the input price difference already says it
        why = f"no {part} price: billed as plain input" if part.startswith("cache") and plain_a else "list price"
        causes.append(f"{part} {a} vs {b} $/Mtok ({why})")
    if p.notes.get(model):
        causes.insert(0, p.notes[model])
    return "; ".join(causes) or "differs only in rounding"


# -- cost_of against its floor -------------------------------------------------------------------------------------


def _floor_of(prices: dict[str, tuple[Decimal, Decimal]]) -> Callable[..., Decimal]:
    """The floor: per-token prices looked up by model, two multiplies (and the sum)."""

    def floor(model: str, input_tokens: int = 0, output_tokens: int = 0) -> Decimal:
        inp, out = prices[model]
        return inp * input_tokens + out * output_tokens

    return floor


def _floor(rounds: int, records: list[dict[str, Any]]) -> None:
    """``cost_of`` on a resolved model against the least any exact pricing can do: a dict lookup of the model's
    per-token input and output prices plus two Decimal multiplies (issue 15's floor; goal: at most 4x).

    Short batches, alternated, minimum of each: on a shared machine a long batch is more likely to be preempted
    than a short one, which would favour whichever function is faster.
    """
    import timeit

    from llmcost import cost_of, get_price

    rows = []
    for model in MODELS:
        price = get_price(model)
        floor = _floor_of({model: (price.input_per_mtok.scaleb(-6), price.output_per_mtok.scaleb(-6))})
        t = CASES["plain"]
        calls = {
            "floor": lambda m=model, t=t, f=floor: f(m, input_tokens=t.input, output_tokens=t.output),
            "cost_of": lambda m=model, t=t: cost_of(m, input_tokens=t.input, output_tokens=t.output),
        }
        assert calls["floor"]() == calls["cost_of"](), model  # the same exact amount, so the floor is fair
        best = dict.fromkeys(calls, float("inf"))
        for _ in range(rounds):
            for name, call in calls.items():
                best[name] = min(best[name], timeit.timeit(call, number=1000) / 1000 * 1e6)
        ratio = best["cost_of"] / best["floor"]
        rows.append((model, best["floor"], best["cost_of"], f"{ratio:.2f}x"))
        records.append({"figure": "cost_of / floor", "series": model, "value": ratio, "unit": "x"})
    print(f"\ncost_of on a resolved model against its floor (dict lookup + two Decimal multiplies), plain call; "
          f"min of {rounds} alternated batches of 1000 calls; goal <= 4x")  # fmt: skip
    print(table(["model", "floor us", "cost_of us", "cost_of / floor"], rows))


# -- import and first price ----------------------------------------------------------------------------------------

_FIRST_PRICE = {
    "llmcost": "import llmcost; llmcost.cost_of('gpt-4o', input_tokens=1200, output_tokens=300)",
    "genai_prices": "from genai_prices import Usage, calc_price; "
    "calc_price(Usage(input_tokens=1200, output_tokens=300), 'gpt-4o')",
    "tokencost": "import tokencost; tokencost.calculate_cost_by_tokens(1200, 'gpt-4o', 'input')",
    "litellm": "import litellm; litellm.cost_per_token(model='gpt-4o', prompt_tokens=1200, completion_tokens=300)",
}


def _import_ms(module: str, runs: int) -> float | None:
    """Cumulative ``python -X importtime`` milliseconds of ``module``, best of ``runs`` fresh interpreters.

    The largest cumulative figure on a line naming the module is the top-level import: a module can show up again,
    nested and near zero, when a package re-imports itself (litellm does).
    """
    best = None
    for _ in range(runs):
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                             text=True).stderr  # fmt: skip
        lines = [ln for ln in err.splitlines() if re.search(rf"\|\s+{re.escape(module)}$", ln)]
        if not lines:
            return None
        us = max(float(ln.split("|")[1]) for ln in lines)
        best = us / 1000 if best is None else min(best, us / 1000)
    return best


def _first_price_ms(code: str, runs: int) -> tuple[float, float] | None:
    """Wall time of importing a library and pricing one call in a fresh interpreter: (median, best) of ``runs``."""
    timed = f"import time; _t = time.perf_counter(); {code}; print((time.perf_counter() - _t) * 1000)"
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", timed], capture_output=True, text=True, env=os.environ.copy()
        )
        if out.returncode != 0:
            return None
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times), min(times)


def _available(module: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except ValueError:  # in sys.modules as None: blocked, as good as absent
        return False


# -- main ----------------------------------------------------------------------------------------------------------


def _bound(p: Pricer, model: str, tokens: Tokens) -> Callable[[], Any]:
    """A no-argument call of ``p`` pricing ``tokens`` on ``model``, the thing timed."""
    if p.prepare is None:
        return lambda: p.price(model, tokens)
    prepared = p.prepare(model, tokens)  # a response object exists before anyone prices it: not timed
    return lambda: p.price(model, tokens, prepared)


def _speed(pricers: list[Pricer], number: int, records: list[dict[str, Any]]) -> None:
    """Time every library on the same six calls; the figure per case is the mean over the three models."""
    speed: list[dict[str, float | None]] = []
    for p in pricers:
        by_case: dict[str, float | None] = {}
        for case, tokens in CASES.items():
            times = []
            for model in MODELS:
                mid = p.ids.get(model)
                if p.missing or mid is None:
                    continue
                call = _bound(p, mid, tokens)
                with contextlib.redirect_stdout(io.StringIO()):
                    call()  # warm caches (model resolution), as in a long-running process
                    times.append(per_call_us(call, number))
            by_case[case] = sum(times) / len(times) if times else None
        speed.append(by_case)
    rows = []
    base = speed[0]
    for p, by_case in zip(pricers, speed, strict=True):
        if p.missing:
            rows.append((f"{p.name} {p.api}", p.missing, "-", "-", "-", "-"))
            continue
        cells: list[object] = [f"{p.name} {p.api}", p.offline]
        cells += ["-" if by_case[c] is None else by_case[c] for c in CASES]
        cells += [
            "-" if by_case[c] is None or not base[c] else f"{by_case[c] / base[c]:.1f}x"  # type: ignore[operator]
            for c in CASES
        ]
        rows.append(cells)
        records.extend(
            {"figure": "pricing", "series": f"{p.name} {p.api}", "case": c, "value": by_case[c], "unit": "us"}
            for c in CASES
            if by_case[c] is not None
        )
    print(f"\nPricing one call: us per call (mean over {', '.join(MODELS)}; best of 5 x {number} calls)")
    print(table(["library / API", "offline", "plain us", "cached us", "plain x llmcost", "cached x llmcost"], rows))
    print("* without it, `import litellm` first fetches its price map from GitHub (3 tries) and falls back to the")
    print("  bundled copy when that fails; tokencost's bundled table is LiteLLM's map as of its release.")


def _agreement(pricers: list[Pricer]) -> None:
    """The price each library puts on each call, and every disagreement with llmcost with its reason."""
    ref = pricers[0]
    prices: dict[tuple[int, str, str], Decimal | None] = {}
    for i, p in enumerate(pricers):
        for model in MODELS:
            for case, tokens in CASES.items():
                mid = p.ids.get(model)
                prices[i, model, case] = (
                    None if p.missing or mid is None else _dec(_quietly(lambda p=p, m=mid, t=tokens: p.price(m, t)))
                )
    live = [i for i, p in enumerate(pricers) if not p.missing]
    rows = []
    for model in MODELS:
        for case in CASES:
            row: list[object] = [f"{model} {case}"]
            for i in live:
                value = prices[i, model, case]
                mark = "" if _same(value, prices[0, model, case]) else " *"
                row.append("not priced" if value is None else f"{value:.8f}{mark}")
            rows.append(row)
    cached = CASES["cached"]
    print(
        f"\nPrice of each call, USD (* differs from llmcost). plain: {CASES['plain'].input} input, "
        f"{CASES['plain'].output} output tokens; cached: {cached.input} input of which {cached.cache_read} cache "
        f"reads and {cached.cache_write} cache writes, {cached.output} output"
    )
    print(table(["call", *(f"{pricers[i].name} {pricers[i].api}" for i in live)], rows))

    # One line per library and model: the calls it prices differently, and why.
    differing: dict[tuple[str, str], list[str]] = {}
    apis: dict[tuple[str, str], list[str]] = {}
    for i in live[1:]:
        p = pricers[i]
        for model in MODELS:
            for case in CASES:
                value, expected = prices[i, model, case], prices[0, model, case]
                if _same(value, expected):
                    continue
                key = (p.name, model)
                if p.api not in apis.setdefault(key, []):
                    apis[key].append(p.api)
                shown = "not priced" if value is None else f"{value:.8f}"
                text = f"{case} {shown} vs {expected:.8f}"
                if text not in differing.setdefault(key, []):
                    differing[key].append(text)
    lines = []
    for (name, model), texts in differing.items():
        p = next(q for q in pricers if q.name == name and q.api == apis[name, model][0])
        lines.append(f"- {name} ({', '.join(apis[name, model])}), {model}: {'; '.join(texts)}.")
        lines.append(f"  Why: {_reason(p, ref, model)}.")
    print("\nDisagreements with llmcost:" if lines else "\nAll libraries agree on every price.")
    print("\n".join(lines))


def _imports(quick: bool, records: list[dict[str, Any]]) -> None:
    """Import time (-X importtime, cumulative) and import + first price (wall), in fresh interpreters."""
    runs = 1 if quick else 3
    first_runs = 1 if quick else 9
    rows = []
    base_import = base_first = None
    for module, code in _FIRST_PRICE.items():
        if quick and module in ("litellm", "tokencost"):
            rows.append((module, "skipped (--quick)", "-", "-", "-", "-"))
            continue
        if not _available(module):
            rows.append((module, "not installed", "-", "-", "-", "-"))
            continue
        imported = _import_ms(module, runs)
        timed = _first_price_ms(code, first_runs)
        if imported is None:
            rows.append((module, "failed to import", "-", "-", "-", "-"))
            continue
        first = None if timed is None else timed[0]
        if module == "llmcost":
            base_import, base_first = imported, first
        rows.append(
            (
                module,
                imported,
                "-" if timed is None else timed[0],
                "-" if timed is None else timed[1],
                f"{imported / base_import:.1f}x" if base_import else "-",
                f"{first / base_first:.1f}x" if first and base_first else "-",
            )
        )
        records.append({"figure": "import", "series": module, "value": imported, "unit": "ms"})
        if first is not None:
            records.append({"figure": "import+first price", "series": module, "value": first, "unit": "ms"})
    print(
        f"\nImport (python -X importtime, cumulative ms, best of {runs}) and import + first price (wall ms, median "
        f"and best of {first_runs}), fresh interpreters; goal for llmcost: import + first price <= 250 ms"
    )
    headers = ["module", "import ms", "import+price ms", "best ms", "import x llmcost", "first price x llmcost"]
    print(table(headers, rows))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few calls; skip import timing of third parties")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    records: list[dict[str, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # third parties' deprecation and pydantic warnings are not ours to fix
        pricers = load_pricers()
        versions = {dist: _version(dist) for _, dist, _, _ in _LIBRARIES}
        print(f"machine: {machine()}; versions: " + ", ".join(f"{d} {v}" for d, v in versions.items()))
        _speed(pricers, 50 if args.quick else 5_000, records)
        _agreement(pricers)
        _floor(20 if args.quick else 300, records)
    _imports(args.quick, records)
    if args.json:
        write_results(args.json, "pricing", records, versions=versions)


if __name__ == "__main__":
    main(sys.argv[1:])
