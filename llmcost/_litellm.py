"""``instrument(litellm)``: a LiteLLM callback (a ``CustomLogger`` in ``litellm.callbacks``) that records every
``completion``/``acompletion``/``embedding`` call, streams included, as ``@track_cost`` would.

LiteLLM runs success callbacks on a worker thread or task, away from the caller's context, so the caller's context
(its ``llmcost.tags`` and active budgets) is captured when LiteLLM announces the call (``log_pre_api_call``) and the
entry is recorded inside it. LiteLLM swallows exceptions raised by callbacks, so a callback cannot refuse a call:
budgets count this spend, but refusing before the request needs ``@track_cost`` around the call.
litellm is imported only here, when ``instrument(litellm)`` is called.
"""

from __future__ import annotations

import contextvars
import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any

from ._decorator import recorder

__all__ = ["instrument_litellm", "uninstrument_litellm"]

_PENDING_MAX = 10_000  # calls announced and not yet finished, remembered at most (a failure may never report)


def _latency_ms(start: Any, end: Any) -> float:
    if isinstance(start, datetime) and isinstance(end, datetime):
        return max((end - start).total_seconds() * 1000.0, 0.0)
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        return max((end - start) * 1000.0, 0.0)
    return 0.0


def _callback_class() -> type:
    try:
        from litellm.integrations.custom_logger import CustomLogger
    except ImportError as exc:
        raise ImportError(
            "llmcost.instrument(litellm) needs the litellm package (litellm.integrations.custom_logger): "
            "pip install litellm"
        ) from exc

    class LlmcostCallback(CustomLogger):  # type: ignore[misc, valid-type]
        """Records each successful LiteLLM call with llmcost, in the caller's context."""

        def __init__(self, options: dict[str, Any]) -> None:
            super().__init__()
            self.record = recorder("litellm", **{"resource": "litellm", **options})
            self.lock = threading.Lock()
            self.pending: OrderedDict[str, contextvars.Context] = OrderedDict()
            self.recorded: OrderedDict[str, None] = OrderedDict()

        def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
            call_id = kwargs.get("litellm_call_id") if isinstance(kwargs, dict) else None
            if call_id is None:
                return
            with self.lock:
                self.pending[call_id] = contextvars.copy_context()
                while len(self.pending) > _PENDING_MAX:
                    self.pending.popitem(last=False)

        def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            self.on_success(kwargs, response_obj, start_time, end_time)

        async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            self.on_success(kwargs, response_obj, start_time, end_time)

        def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            self.forget(kwargs)

        async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            self.forget(kwargs)

        def forget(self, kwargs: Any) -> None:
            call_id = kwargs.get("litellm_call_id") if isinstance(kwargs, dict) else None
            if call_id is not None:
                with self.lock:
                    self.pending.pop(call_id, None)

        def on_success(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            kwargs = kwargs if isinstance(kwargs, dict) else {}
            call_id = kwargs.get("litellm_call_id")
            with self.lock:
                if call_id is not None:
                    # LiteLLM may report one call through both its sync and async hooks: it is recorded once.
                    if call_id in self.recorded:
                        return
                    self.recorded[call_id] = None
                    while len(self.recorded) > _PENDING_MAX:
                        self.recorded.popitem(last=False)
                context = None if call_id is None else self.pending.pop(call_id, None)
            # A stream reports the response LiteLLM assembled from its chunks (with the usage) once it ends.
            response = kwargs.get("complete_streaming_response") or response_obj
            request = {k: kwargs[k] for k in ("model", "messages", "input") if k in kwargs}
            latency = _latency_ms(start_time, end_time)
            (context or contextvars.copy_context()).run(self.record, response, latency, (), request)

    return LlmcostCallback


def _is_ours(callback: object) -> bool:
    return type(callback).__name__ == "LlmcostCallback" and type(callback).__module__ == __name__


def instrument_litellm(litellm: Any, options: dict[str, Any]) -> None:
    """Put one llmcost callback in ``litellm.callbacks`` (replacing an earlier one, so calls are recorded once)."""
    handler = _callback_class()(options)
    callbacks = getattr(litellm, "callbacks", None)
    if not isinstance(callbacks, list):
        callbacks = []
    litellm.callbacks = [c for c in callbacks if not _is_ours(c)] + [handler]


def uninstrument_litellm(litellm: Any) -> None:
    """Take llmcost's callback out of ``litellm.callbacks``."""
    callbacks = getattr(litellm, "callbacks", None)
    if isinstance(callbacks, list):
        litellm.callbacks = [c for c in callbacks if not _is_ours(c)]
