"""The repricing and reconciliation figures for people: terminal tables and the HTML report's sections.

Example::

    >>> print(reprice_text(analytics.reprice(store, {"gpt-4o": "gpt-4o-mini"}, by="resource")), end="")
    resource       calls  recorded  repriced   delta  delta %
    -------------  -----  --------  --------  ------  -------
    gpu-box           10    $24.00    $24.00   $0.00       0%
    support-bot       50     $3.19   $0.2928  -$2.90     -91%
    search-rerank     20     $2.10   $0.1260  -$1.97     -94%
    summarize         10     $1.20     $1.20   $0.00       0%
    recorded $30.49, repriced $25.62 (-16.0%)
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from .._money import wide_context
from ._format import escape, format_table, money
from ._html import html_table

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["reconcile_section", "reconcile_text", "reprice_section", "reprice_text"]

_REPRICE = [
    ("calls", "calls", "int"),
    ("recorded", "recorded", "money"),
    ("repriced", "repriced", "money"),
    ("delta", "delta", "money"),
    ("delta_pct", "delta %", "pct"),
]
_RECONCILE = [
    ("day", "day", "text"),
    ("model", "model", "text"),
    ("project", "project", "text"),
    ("recorded", "recorded", "money"),
    ("billed", "billed", "money"),
    ("delta", "delta", "money"),
    ("status", "status", "text"),
]


def _shown(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a NaN ``delta_pct`` (nothing recorded) as ``None``, shown as "-"."""
    return frame.assign(delta_pct=[None if v != v else v for v in frame["delta_pct"]]) if not frame.empty else frame


def _keys(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ("calls", "recorded", "repriced", "delta", "delta_pct", "kept")]


def _total(frame: pd.DataFrame, column: str) -> Decimal:
    with wide_context():  # exact, whatever the caller's decimal context
        return sum(frame[column], Decimal(0))


def _spec(frame: pd.DataFrame, spec: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return [s for s in spec if s[0] != "project" or frame["project"].notna().any()]


def reprice_text(frame: pd.DataFrame) -> str:
    """A ``reprice`` frame as a terminal table with a total line.

    >>> print(reprice_text(analytics.reprice(store, "new-prices.toml")), end="")
    model              calls  recorded  repriced   delta  delta %
    -----------------  -----  --------  --------  ------  -------
    (none)                10    $24.00    $24.00   $0.00       0%
    gpt-4o                40     $5.18     $2.59  -$2.59     -50%
    claude-3-5-sonnet     10     $1.20     $1.20   $0.00       0%
    gpt-4o-mini           30   $0.1080   $0.1080   $0.00       0%
    recorded $30.49, repriced $27.90 (-8.5%)
    """
    if frame.empty:
        return "No entries to reprice for this selection.\n"
    spec = [(k, k, "text") for k in _keys(frame)] + _REPRICE
    rows = [tuple(rec[c] for c, _, _ in spec) for rec in _shown(frame).to_dict("records")]
    recorded, repriced = _total(frame, "recorded"), _total(frame, "repriced")
    table = format_table(rows, [(h, k) for _, h, k in spec])
    pct = f" ({(repriced - recorded) / recorded:+.1%})" if recorded else ""
    return f"{table}\nrecorded {money(recorded)}, repriced {money(repriced)}{pct}\n"


def reconcile_text(frame: pd.DataFrame) -> str:
    """A ``reconcile`` frame as a terminal table, then the likely causes of the rows that do not match.

    >>> print(reconcile_text(analytics.reconcile(store, "openai-costs.json")), end="")
    day         model                   recorded   billed       delta  status
    ----------  ----------------------  --------  -------  ----------  ------
    2024-05-14  gpt-4o-2024-08-06          $3.29    $3.29       $0.00  match
    2024-05-14  gpt-4o-mini-2024-07-18   $0.0108  $0.0108       $0.00  match
    2024-05-15  gpt-4o-2024-08-06        $0.2100  $0.2100       $0.00  match
    2024-05-15  gpt-4o-mini-2024-07-18   $0.0108  $0.0144  -$0.003600  under
    recorded $3.52, billed $3.53
    Likely causes:
    - 2024-05-15 gpt-4o-mini-2024-07-18: billed more than the recorded calls cost at catalog prices: calls made ...
    """
    if frame.empty:
        return "Nothing recorded or billed in the invoice's period.\n"
    spec = _spec(frame, _RECONCILE)
    rows = [tuple(str(rec[c]) if c == "day" else rec[c] for c, _, _ in spec) for rec in frame.to_dict("records")]
    lines = [format_table(rows, [(h, k) for _, h, k in spec])]
    recorded, billed = _total(frame, "recorded"), _total(frame, "billed")
    lines.append(f"recorded {money(recorded)}, billed {money(billed)}")
    causes = [rec for rec in frame.to_dict("records") if rec["likely_cause"]]
    if causes:
        lines.append("Likely causes:")
        for rec in causes:
            lines.append(f"- {rec['day']} {rec['model'] or '(no model)'}: {rec['likely_cause']}")
    return "\n".join(lines) + "\n"


def reprice_section(frame: pd.DataFrame, *, title: str = "What if: repriced") -> str:
    """A ``reprice`` frame as an HTML report section.

    >>> html = reprice_section(analytics.reprice(store, "new-prices.toml"))
    >>> html[:100]
    '<section class="wide"><h2>What if: repriced</h2><p class="muted">recorded $30.49, repriced $27.90</p'
    """
    spec = [(k, k, "text") for k in _keys(frame)] + _REPRICE
    recorded, repriced = _total(frame, "recorded"), _total(frame, "repriced")
    return (
        f'<section class="wide"><h2>{escape(title)}</h2>'
        f'<p class="muted">recorded {escape(money(recorded))}, repriced {escape(money(repriced))}</p>'
        f"{html_table(_shown(frame), spec)}</section>"
    )


def reconcile_section(frame: pd.DataFrame, *, title: str = "Reconciliation against the invoice") -> str:
    """A ``reconcile`` frame as an HTML report section, likely causes included.

    >>> html = reconcile_section(analytics.reconcile(store, "openai-costs.json"))
    >>> html[:100]
    '<section class="wide"><h2>Reconciliation against the invoice</h2><p class="muted">recorded $3.52, bi'
    """
    shown = frame.assign(day=[str(d) for d in frame["day"]]) if not frame.empty else frame
    spec = [*(_spec(frame, _RECONCILE) if not frame.empty else _RECONCILE), ("likely_cause", "likely cause", "text")]
    recorded, billed = _total(frame, "recorded"), _total(frame, "billed")
    return (
        f'<section class="wide"><h2>{escape(title)}</h2>'
        f'<p class="muted">recorded {escape(money(recorded))}, billed {escape(money(billed))}</p>'
        f"{html_table(shown, spec)}</section>"
    )
