"""``llmcost demo``: a realistic simulated workload, recorded through the real ``@track_cost`` and ``budget`` code.

Four teams call OpenAI and Anthropic models over the past days: a support bot (gpt-4o-mini, with prompt caching),
search reranking and embeddings (gpt-4o, text-embedding-3-small), document summaries (Claude 3.5 Sonnet, with
cache reads and writes) and contract review (Claude 3 Opus), plus a GPU box and a vector database billed per day.
One day the support bot's retry loop runs away (an anomaly), and last night's ticket-classification batch runs
under a budget that stops it part-way with ``BudgetExceeded``.

No network and no API key: the "SDK calls" are functions returning dicts of the OpenAI and Anthropic response
shapes, with token counts drawn from a seeded random generator, so the same seed gives the same tokens and costs.
Time is simulated with the tracker's ``clock``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import attrs

from ._money import ZERO, to_utc
from .stores import CostStore

__all__ = ["DemoStory", "run_demo"]

BATCH_LIMIT = Decimal("1.00")
_LOGGER = logging.getLogger("llmcost")


def _usd(amount: Decimal) -> str:
    """The batch story's amounts, all with the same four decimals (they are fractions of a dollar)."""
    return f"${amount:,.4f}"


class _BatchAlertsFilter(logging.Filter):
    """Keeps the batch budget's alerts off the log while the demo runs: the story tells every one of them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "'nightly-batch'" not in record.getMessage()


BATCH_SIZE = 400


class _SimClock:
    """The simulated "now" the tracker reads."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@attrs.frozen
class DemoStory:
    """What the demo did, for the command to tell."""

    store: str
    calls: int
    days: int
    start: datetime
    end: datetime
    total: Decimal
    batch_done: int
    batch_total: int
    batch_spent: Decimal
    batch_limit: Decimal
    stop_message: str
    alerts: tuple[str, ...]
    budgets: tuple[str, ...]
    runaway: datetime | None = None  #: the day the support bot's retry loop ran away, if the history has one

    def text(self) -> str:
        lines = [
            f"Simulated {self.days} days of LLM traffic ({self.start:%Y-%m-%d} to {self.end:%Y-%m-%d}) into "
            f"{self.store}: {self.calls:,} tracked calls costing ${self.total:,.2f}.",
        ]
        if self.runaway is not None:
            lines.append(
                f"On {self.runaway:%Y-%m-%d} the support bot's retry loop ran away, re-sending whole threads to "
                "gpt-4o (see Anomalies below)."
            )
        lines += [
            f"Last night's batch job classified {self.batch_done} of {self.batch_total} tickets before its "
            f"budget of {_usd(self.batch_limit)} stopped it:",
            f"  BudgetExceeded: {self.stop_message}",
        ]
        if self.alerts:
            lines.append("  alerts on the way: " + "; ".join(self.alerts))
        if self.budgets:
            lines.append("Saved budgets (see 'llmcost budgets'): " + ", ".join(self.budgets))
        import textwrap

        # Readable in an 80-column terminal, whatever the store path.
        return "\n".join(
            textwrap.fill(line, 80, subsequent_indent="    ", break_long_words=True, break_on_hyphens=False)
            for line in lines
        )


# ---------------------------------------------------------------------------------------------------------------
# Provider-shaped responses


def _openai_chat(model: str, prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    return {
        "id": "chatcmpl-demo",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "..."}, "finish_reason": "stop"},
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }


def _openai_embedding(model: str, prompt: int) -> dict[str, Any]:
    return {
        "object": "list",
        "model": model,
        "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 0.0, 0.0]}],
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }


def _anthropic_message(
    model: str, fresh: int, output: int, cache_read: int = 0, cache_write: int = 0
) -> dict[str, Any]:
    # Anthropic reports cache tokens outside input_tokens; llmcost folds them in on extraction.
    return {
        "id": "msg_demo",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "..."}],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": fresh,
            "output_tokens": output,
            "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_write,
        },
    }


# ---------------------------------------------------------------------------------------------------------------
# The workload


def _workload(tracker: Any, rng: random.Random) -> dict[str, Callable[..., Any]]:
    """The team's "SDK calls", each tracked by the real decorator on ``tracker``."""
    from ._decorator import track_cost

    @track_cost(tracker=tracker, resource="support-bot", tags={"team": "support"})
    def answer_ticket() -> dict[str, Any]:
        prompt = rng.randint(900, 3200)
        cached = 1024 if rng.random() < 0.55 else 0
        return _openai_chat("gpt-4o-mini-2024-07-18", prompt, rng.randint(90, 420), cached)

    @track_cost(tracker=tracker, resource="support-bot", tags={"team": "support"})
    def retry_ticket() -> dict[str, Any]:
        # The runaway retry loop: each retry falls back to gpt-4o and re-sends the whole, growing thread.
        return _openai_chat("gpt-4o-2024-08-06", rng.randint(6000, 9000), rng.randint(200, 400))

    @track_cost(tracker=tracker, resource="search-rerank", tags={"team": "search"})
    def rerank() -> dict[str, Any]:
        return _openai_chat("gpt-4o-2024-08-06", rng.randint(1800, 5200), rng.randint(40, 160))

    @track_cost(tracker=tracker, resource="search-embed", tags={"team": "search"})
    def embed() -> dict[str, Any]:
        return _openai_embedding("text-embedding-3-small", rng.randint(150, 900))

    @track_cost(tracker=tracker, resource="doc-summarize", tags={"team": "docs"})
    def summarize(first_of_day: bool) -> dict[str, Any]:
        shared = rng.randint(2500, 6000)
        fresh = rng.randint(1500, 7000)
        if first_of_day:
            return _anthropic_message("claude-3-5-sonnet-20241022", fresh, rng.randint(300, 900), 0, shared)
        return _anthropic_message("claude-3-5-sonnet-20241022", fresh, rng.randint(300, 900), shared, 0)

    @track_cost(tracker=tracker, resource="contract-review", tags={"team": "legal"})
    def review_contract() -> dict[str, Any]:
        return _anthropic_message("claude-3-opus-20240229", rng.randint(12000, 28000), rng.randint(800, 2200))

    @track_cost(tracker=tracker, resource="ticket-classifier", tags={"team": "support", "job": "nightly"})
    def classify(ticket: int) -> dict[str, Any]:
        return _openai_chat("gpt-4o-2024-08-06", rng.randint(1200, 1900), rng.randint(120, 260))

    return {
        "answer": answer_ticket,
        "retry": retry_ticket,
        "rerank": rerank,
        "embed": embed,
        "summarize": summarize,
        "review": review_contract,
        "classify": classify,
    }


def _day_plan(rng: random.Random, day: datetime, weekend: bool, runaway: bool) -> list[tuple[datetime, str]]:
    """(time, call) pairs for one day, in time order: busier in working hours, quieter at weekends."""
    scale = 0.45 if weekend else 1.0
    counts = {
        "answer": int(rng.randint(110, 170) * scale),
        "retry": rng.randint(1100, 1300) if runaway else 0,
        "rerank": int(rng.randint(40, 70) * scale),
        "embed": int(rng.randint(180, 320) * scale),
        "summarize": int(rng.randint(18, 40) * scale),
        "review": 0 if weekend else rng.randint(4, 11),
    }
    plan = []
    for call, count in counts.items():
        for _ in range(count):
            hour = rng.triangular(6.0, 22.0, 14.0)
            plan.append((day + timedelta(hours=hour), call))
    plan.sort(key=lambda item: item[0])
    return plan


def run_demo(
    store: CostStore,
    *,
    days: int = 14,
    seed: int = 7,
    now: datetime | None = None,
    batch_limit: Decimal = BATCH_LIMIT,
    progress: Callable[[int, int], object] | None = None,
) -> DemoStory:
    """Record ``days`` days of simulated traffic ending at ``now`` into ``store``; return what happened (its figures
    are this run's, whatever the store held before). ``progress(done, total)`` is called as the days are simulated.

    The budget alerts of the batch job are told in the story, so they are kept off the ``llmcost`` logger while
    it runs.

    Example::

        story = run_demo(llmcost.MemoryStore(), days=7)
        print(story.text())
    """
    from . import _context
    from ._budget import budget
    from ._errors import BudgetExceeded
    from ._manager import BudgetManager
    from ._tracker import CostTracker

    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a positive int, got {days!r}")
    end = to_utc(now) if now is not None else datetime.now(timezone.utc)
    today = end.replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=days - 1)
    rng = random.Random(seed)
    clock = _SimClock(first)
    tracker = CostTracker(store, clock=clock)
    was_active = _context.is_active()
    _context.set_active(True)
    calls = 0
    steps = days + 1
    before = store.total()
    quiet = _BatchAlertsFilter()
    try:
        api = _workload(tracker, rng)
        runaway_day = max(days - 4, 0)
        runaway = first + timedelta(days=runaway_day) if days >= 5 else None
        for index in range(days):
            day = first + timedelta(days=index)
            weekend = day.weekday() >= 5
            summarized = False
            for when, call in _day_plan(rng, day, weekend, runaway=index == runaway_day and days >= 5):
                if when >= end:
                    break
                clock.now = when
                if call == "summarize":
                    api[call](not summarized)
                    summarized = True
                else:
                    api[call]()
                calls += 1
            # Per-day bills that are not LLM calls: recorded with their amounts as given, once the day they bill is
            # over (a whole day's GPU bill recorded two hours into today would make today's run-rate a wild one).
            billed = day + timedelta(hours=23, minutes=59)
            if billed <= end:
                clock.now = billed
                tracker.record(
                    amount="4.80",
                    category="compute",
                    resource="gpu-reranker",
                    tags={"team": "search"},
                    description="1 x L4 GPU, 24 h",
                )
                tracker.record(amount="0.35", category="storage", resource="vector-db", tags={"team": "search"})
                calls += 2
            if progress is not None:
                progress(index + 1, steps)

        # Last night's batch: classify tickets until the budget says no.
        night = today + timedelta(hours=2)
        clock.now = night if night + timedelta(hours=1) <= end else night - timedelta(days=1)
        alerts: list[str] = []
        done = 0
        stop_message = ""
        batch = budget(
            batch_limit,
            name="nightly-batch",
            tracker=tracker,
            on_alert=lambda alert: alerts.append(f"{alert.threshold:.0%} at {_usd(alert.spent)}"),
        )
        _LOGGER.addFilter(quiet)
        try:
            with batch:
                for ticket in range(BATCH_SIZE):
                    clock.now += timedelta(seconds=2)
                    api["classify"](ticket)
                    done += 1
                    calls += 1
        except BudgetExceeded as exc:
            stop_message = (
                f"{exc.budget!r} had spent {_usd(exc.spent)} of {_usd(exc.limit)}; "
                f"the next call needed about {_usd(exc.requested)}"
            )
        finally:
            _LOGGER.removeFilter(quiet)
        tracker.flush()

        # Budgets saved in the store, for `llmcost budgets`.
        clock.now = end
        manager = BudgetManager(tracker)
        saved = []
        for name, amount, period, filters in (
            ("support-monthly", "400", "monthly", {"tags": {"team": "support"}}),
            ("search-daily", "40", "daily", {"tags": {"team": "search"}}),
            ("llm-monthly", "1500", "monthly", {"category": "llm_inference"}),
        ):
            manager.delete(name)  # a second demo run on the same store replaces its budgets
            manager.create(name, amount, period, **filters)
            saved.append(name)
        tracker.flush()
        total = store.total() - before
        batch_spent = batch.spent
        if progress is not None:
            progress(steps, steps)
    finally:
        _context.set_active(was_active)
    return DemoStory(
        store=store.url,
        calls=calls,
        days=days,
        start=first,
        end=end,
        total=total if total is not None else ZERO,
        batch_done=done,
        batch_total=BATCH_SIZE,
        batch_spent=batch_spent,
        batch_limit=Decimal(batch_limit),
        stop_message=stop_message or "(the batch finished within its budget)",
        alerts=tuple(alerts),
        budgets=tuple(saved),
        runaway=runaway,
    )
