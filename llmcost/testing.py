"""Helpers for testing code that uses llmcost.

``capture_costs()`` swaps the process-wide default tracker for a fresh in-memory one for the length of a block,
so tests of budgeted or tracked code see exactly the entries they caused and leave no trace.

Example (pytest)::

    from llmcost.testing import capture_costs

    def test_summarize_is_cheap():
        with capture_costs() as tracker:
            summarize("...")
        assert tracker.summary().total < Decimal("0.01")
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from ._config import swap_default
from ._tracker import CostTracker

__all__ = ["capture_costs"]


@contextlib.contextmanager
def capture_costs(*, clock: Callable[[], datetime] | None = None, **kwargs: Any) -> Iterator[CostTracker]:
    """Make a fresh in-memory ``CostTracker`` the default for the block, then put the previous one back.

    ``clock`` and other ``kwargs`` go to ``CostTracker``. The tracker is yielded, so the test can read
    ``entries()`` and ``summary()``.

    >>> from llmcost.testing import capture_costs
    >>> with capture_costs() as costs:
    ...     _ = llmcost.get_tracker().record(model="gpt-4o", input_tokens=1000, output_tokens=100)
    >>> costs.summary().total
    Decimal('0.0035')
    """
    tracker = CostTracker(None, clock=clock, **kwargs)
    previous = swap_default(tracker)
    try:
        yield tracker
    finally:
        swap_default(previous)
        tracker.close()
