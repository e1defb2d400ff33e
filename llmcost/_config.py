"""The process-wide default tracker: ``configure`` and ``get_tracker``.

The tracker itself is process state, kept in ``_state`` (whose ``reset()`` forgets it). Modules above this one that
put something on every new default tracker (``_budget``: the ``LLMCOST_*_LIMIT`` budgets) register a hook with
``on_new_default``, so this module never imports upward.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from . import _state
from ._tracker import CostTracker
from .stores import CostStore

__all__ = ["configure", "get_tracker", "on_new_default", "swap_default"]


def configure(store: str | CostStore = "memory://", **kwargs: Any) -> CostTracker:
    """Set the process-wide default tracker, on ``store`` (a URL or a ``CostStore``); returns it.

    ``kwargs`` go to ``CostTracker`` (``clock``, ``on_unknown_model``...). The previous default tracker is flushed
    and closed. A bad ``LLMCOST_*_LIMIT`` raises ``SettingError`` (a ``ValueError``) and leaves the default as it was.

    Example::

        llmcost.configure("duckdb:///var/lib/app/costs.duckdb")
    """
    tracker = CostTracker(store, **kwargs)
    try:
        # The hooks first (the environment's budgets): a tracker they refuse (``SettingError``) never becomes the
        # default, so no later use finds one without the limits asked for; every use raises again instead.
        for hook in tuple(_state.default_tracker_hooks):
            hook(tracker)
    except BaseException:
        tracker.close()
        raise
    previous = _state.swap_default_tracker(tracker)
    if previous is not None:
        previous.close()
    return tracker


def get_tracker() -> CostTracker:
    """The default tracker: the one ``configure`` set, else one on ``LLMCOST_STORE`` (a store URL), else memory.

    Example::

        llmcost.get_tracker().summary(period="daily").total
    """
    tracker: CostTracker | None = _state.default_tracker
    if tracker is not None:
        return tracker
    with _state.lock:
        tracker = _state.default_tracker
        if tracker is None:
            return configure(os.environ.get("LLMCOST_STORE") or "memory://")
        return tracker


def on_new_default(hook: Callable[[CostTracker], object]) -> None:
    """Call ``hook`` with every tracker about to become the default (by ``configure`` or on first use); an exception
    it raises propagates from ``configure``/``get_tracker``, and the tracker does not become the default."""
    with _state.lock:
        if hook not in _state.default_tracker_hooks:
            _state.default_tracker_hooks.append(hook)


def swap_default(tracker: CostTracker | None) -> CostTracker | None:
    """Make ``tracker`` the default without closing the previous one, which is returned (``llmcost.testing``)."""
    previous: CostTracker | None = _state.swap_default_tracker(tracker)
    return previous
