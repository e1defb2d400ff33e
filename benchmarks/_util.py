"""Shared timing helpers for the benchmark scripts."""

from __future__ import annotations

import platform
import timeit
from collections.abc import Callable, Sequence


def per_call_us(fn: Callable[[], object], number: int, repeat: int = 5) -> float:
    """Best-of-``repeat`` time of one call of ``fn``, in microseconds (the minimum is the least noisy)."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, columns right-aligned but the first."""
    cells = [[str(h) for h in headers], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(parts))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.3g}" if value < 1 else f"{value:.2f}"
    return str(value)


def machine() -> str:
    """One line naming the machine and Python, for the printed figures."""
    return f"{platform.machine()} {platform.processor() or ''} Python {platform.python_version()}".strip()
