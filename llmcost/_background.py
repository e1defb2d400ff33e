"""OpenAI Responses in background mode: ``responses.create(background=True)`` answers at once, ``"queued"`` and
with no usage, and the billed response is fetched later (``responses.retrieve(id)``, or
``responses.stream(response_id=...)``, which retrieves it). The tracked create records nothing then, releases its
reservation, and leaves here how to record the response; the first retrieve (by an instrumented client) that finds
it finished, with its usage, records it, once.

Only responses created in this process are recorded so: a retrieve is not a billed request, and responses created
elsewhere (or read back again later, after a restart, by any worker of a pool) would be counted again each time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import _state
from ._extract import Extracted

__all__ = ["claim", "expect", "is_pending", "queued_id", "settled_id"]

logger = logging.getLogger("llmcost")

#: How many background responses wait at once, at most: the oldest are forgotten beyond (with a debug log).
_KEPT = 4096
#: Response id -> what records it, for background responses created here and not recorded yet (in ``_state``, so
#: ``reset()`` and a fork forget them).
_pending = _state.background_responses
_lock = _state.new_lock()
_WAITING = frozenset({"queued", "in_progress"})


def queued_id(result: Any) -> str | None:
    """The id of ``result`` if it is a background Responses response not finished yet (nothing to bill so far)."""
    if getattr(result, "object", None) != "response" or getattr(result, "background", None) is not True:
        return None
    found = getattr(result, "id", None)
    return found if type(found) is str and getattr(result, "status", None) in _WAITING else None


def settled_id(result: Any) -> str | None:
    """The id of ``result`` if it is a Responses response that has finished with its usage (``completed``,
    ``incomplete``, ``failed`` or ``cancelled``, its tokens counted): what is billed."""
    if getattr(result, "object", None) != "response" or getattr(result, "usage", None) is None:
        return None
    found = getattr(result, "id", None)
    return found if type(found) is str and getattr(result, "status", None) not in _WAITING else None


def expect(response_id: str, record: Callable[[Extracted], object]) -> None:
    """A background response was created here: ``record`` it (once) when it is retrieved finished."""
    with _lock:
        _pending[response_id] = record
        _pending.move_to_end(response_id)
        while len(_pending) > _KEPT:
            forgotten, _ = _pending.popitem(last=False)
            logger.debug("llmcost: too many background responses waiting; %s will not be recorded", forgotten)


def is_pending(response_id: object) -> bool:
    """Whether ``response_id`` is a background response created here and not recorded yet."""
    return type(response_id) is str and response_id in _pending


def claim(response_id: object) -> Callable[[Extracted], object] | None:
    """What records ``response_id``, taken out (so it is recorded once), or ``None`` if it is not waiting here."""
    if type(response_id) is not str:
        return None
    with _lock:
        return _pending.pop(response_id, None)
