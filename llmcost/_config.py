"""The process-wide default tracker: ``configure``, ``get_tracker`` and, for tests, ``reset``.

All global state of llmcost lives here, behind one lock.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ._tracker import CostTracker
from .stores import CostStore

__all__ = ["configure", "get_tracker", "reset"]

_lock = threading.RLock()
_default: CostTracker | None = None

#: Environment variables that put a process-wide budget on the default tracker at first use.
LIMIT_VARIABLES = {
    "LLMCOST_DAILY_LIMIT": "daily",
    "LLMCOST_MONTHLY_LIMIT": "monthly",
    "LLMCOST_TOTAL_LIMIT": "total",
}


def configure(store: str | CostStore = "memory://", **kwargs: Any) -> CostTracker:
    """Set the process-wide default tracker, on ``store`` (a URL or a ``CostStore``); returns it.

    ``kwargs`` go to ``CostTracker`` (``clock``, ``on_unknown_model``...). The previous default tracker is flushed
    and closed.

    Example::

        llmcost.configure("duckdb:///var/lib/app/costs.duckdb")
    """
    global _default
    tracker = CostTracker(store, **kwargs)
    with _lock:
        previous, _default = _default, tracker
    if previous is not None:
        previous.close()
    _install_env_budgets(tracker)
    return tracker


def get_tracker() -> CostTracker:
    """The default tracker: the one ``configure`` set, else one on ``LLMCOST_STORE`` (a store URL), else memory.

    Example::

        llmcost.get_tracker().summary(period="daily").total
    """
    tracker = _default
    if tracker is not None:
        return tracker
    with _lock:
        if _default is None:
            return configure(os.environ.get("LLMCOST_STORE") or "memory://")
        return _default


def _install_env_budgets(tracker: CostTracker) -> None:
    limits = {period: os.environ[name] for name, period in LIMIT_VARIABLES.items() if os.environ.get(name)}
    if limits:
        from ._budget import install_env_budgets

        install_env_budgets(tracker, limits)


def reset() -> None:
    """Forget the default tracker (closing it), registered prices and switches: a fresh process, for tests."""
    global _default
    from ._context import set_active
    from ._prices import _reset_user_prices
    from ._tracker import _logged

    with _lock:
        previous, _default = _default, None
    if previous is not None:
        previous.close()
    _reset_user_prices()
    _logged.clear()
    set_active(True)
