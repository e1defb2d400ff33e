"""``@track_cost``: one tracking engine, four thin wrappers (sync, async, generator, async generator) picked once
at decoration time. SDK stream objects returned by the wrapped function are hooked by ``_streams``."""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping, Sequence
from decimal import Decimal, getcontext
from types import AsyncGeneratorType, GeneratorType
from typing import Any, TypeVar, overload

from . import _state
from ._background import expect, queued_id
from ._catalog import provider_for_url
from ._config import get_tracker
from ._context import (
    NOT_CHECKED,
    ONE_FILTERED,
    ONE_UNFILTERED,
    PendingCall,
    active_guards,
    current_tags,
    is_active,
    joined,
)
from ._entry import (
    EMPTY_TAGS,
    TO_US_TIER,
    US_TIERS,
    CostCategory,
    CostEntry,
    FrozenTags,
    intern_tags,
    to_category,
    to_service_tier,
    to_tags,
)
from ._errors import BudgetExceeded, SettingError
from ._estimate import request_estimate, request_estimate_atto
from ._extract import (
    Extracted,
    StreamAccumulator,
    extract_usage,
    is_sdk_stream,
    is_stream_manager,
    may_be_stream,
)
from ._money import EXACT_DIGITS, ZERO, atto_of, to_money, wide_context
from ._streams import ManagerProxy, hook_raw_response, hook_stream, read_later
from ._tracker import CostTracker, log_once
from ._usage import Usage

__all__ = ["recorder", "requested_model", "track_cost", "wanting_requested"]

logger = logging.getLogger("llmcost")
F = TypeVar("F", bound=Callable[..., Any])

TagsArg = Mapping[str, str] | Callable[..., Mapping[str, str]] | None
UsageArg = Callable[[Any], Usage | None] | None


def to_estimate(value: Any) -> Decimal:
    """A fixed ``estimate=`` (a Decimal, number, numeric string or ``Estimate``) as budgets reserve it; a value that
    is no finite amount, or is negative, raises ``TypeError``/``ValueError`` naming ``estimate`` and the value (a
    bad estimate would turn budgets off, and a negative one would make room for other calls)."""
    amount = to_money(getattr(value, "amount", value), "estimate")
    if amount < 0:
        raise ValueError(f"estimate must be >= 0, got {value!r}")
    return amount


_perf_counter = time.perf_counter
_getcontext = getcontext
# Bound once: reading an enum member off its class costs more than a dict lookup, and this is on every call.
_INFERENCE = CostCategory.LLM_INFERENCE
#: The model asked for by the tracked call whose entry is being recorded, as the tracker's ``cost.recorded``
#: subscribers see it (``llmcost.otel`` exports it as ``gen_ai.request.model``; an entry keeps the model the response
#: named). ``None``: not known, or no tracked call recording.
requested_model: contextvars.ContextVar[str | None] = contextvars.ContextVar("llmcost_requested_model", default=None)
#: The trackers whose exports want ``requested_model`` (added and removed by ``llmcost.otel`` under its lock; never
#: rebound). A tracked call of one of them sets it; while the list is empty, no call pays anything for it, and a call of
#: another tracker pays one look at the list.
wanting_requested: list[object] = _state.requested_wanted
_wanting = wanting_requested


class _Requested:
    """The tracker of a call whose requested model an export wants (``wanting_requested``): its ``record_call`` runs
    with ``requested_model`` set to it, so the ``cost.recorded`` subscribers called there can read it."""

    __slots__ = ("model", "tracker")

    def __init__(self, tracker: CostTracker | _WideRecording | _Requested, model: str) -> None:
        self.tracker, self.model = tracker, model

    def record_call(self, *args: Any, **kwargs: Any) -> CostEntry | None:
        token = requested_model.set(self.model)
        try:
            return self.tracker.record_call(*args, **kwargs)
        finally:
            requested_model.reset(token)


class _WideRecording:
    """The tracker of a call begun in a narrow decimal context (``_Engine.begin``), as ``finish`` uses it: its
    ``record_call``, where budgets settle the call, runs in a wide context too. (Only such calls pay for it: the
    others are settled in the context they run in, which ``begin`` found wide enough.)"""

    __slots__ = ("tracker",)

    def __init__(self, tracker: CostTracker) -> None:
        self.tracker = tracker

    def record_call(self, *args: Any, **kwargs: Any) -> CostEntry | None:
        with wide_context():
            return self.tracker.record_call(*args, **kwargs)


#: One call in flight, as a plain tuple (made per tracked call: a tuple display, and unpacked in one specialized
#: step; a named tuple's subclass is unpacked item by item):
#:
#: - ``tracker``: where to record; ``tags``: the call's own tags;
#: - ``reservations``: ``(guard, token)`` of each guard's ``before_call``, the call's own list, from which a guard
#:   that settles its reservation as the entry is counted takes it out (a call under no guard, or under one guard
#:   alone, has an empty tuple);
#: - ``started``: ``time.perf_counter()`` as it started;
#: - ``checked``: the context tags (``current_tags()``) under which its guards matched the call's resource, category
#:   and tags with ``checks_call``; ``None`` when they did not (or need not) match them;
#: - ``guard``, ``token``: the one guard that reserved for the call when it is alone (a ``GuardSet`` of kind
#:   ``ONE_UNFILTERED`` or ``ONE_FILTERED``) and its token: two values, not a list of one pair (the tracker settles
#:   it as it counts the row, ``Guard.settle_row``); ``None`` otherwise.
_Call = tuple[
    "CostTracker | _WideRecording | _Requested",
    FrozenTags,
    "list[tuple[Any, object]] | tuple[()]",
    float,
    "FrozenTags | None",
    Any,
    object,
]


_NOT_FOUND_YET = object()  # (``_Engine.model_position`` before it is looked for)


def _model_position(func: Callable[..., Any]) -> int | None:
    """The position of ``func``'s ``model`` parameter among the arguments it takes positionally, or ``None``.

    >>> _model_position(lambda prompt, model="gpt-4o": None), _model_position(lambda *, model: None)
    (1, None)
    """
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):  # (a builtin or a callable object without a signature)
        return None
    for position, parameter in enumerate(parameters):
        if parameter.kind not in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            return None
        if parameter.name == "model":
            return position
    return None


class _Engine:
    """What every wrapper of one decorated function shares: settings, and the begin/finish/fail steps."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        model: str | None,
        provider: str | None,
        category: CostCategory | None,
        resource: str | None,
        tags: TagsArg,
        usage: UsageArg,
        estimate: Any,
        tracker: CostTracker | None,
        service_tier: str | None = None,
    ) -> None:
        self.name = getattr(func, "__qualname__", repr(func))
        self.model = model
        self.provider = provider
        self.category = category
        #: The category's text, as budgets match it before the call (found once, not per call).
        self.category_value = (category or CostCategory.LLM_INFERENCE).value
        #: The category guards match a call by before it is made (an entry of another, read off the response, is
        #: matched again as it is counted).
        self.checked_category = category or CostCategory.LLM_INFERENCE
        self.resource = resource if resource is not None else self.name
        if tags is None or callable(tags):
            self.static_tags: FrozenTags = EMPTY_TAGS
            self.tags_fn = tags
        else:
            self.static_tags = to_tags(tags)
            self.tags_fn = None
        self.usage_fn = usage
        self.estimate = estimate
        # A fixed estimate (not a callable), found once here: budgets reserve it for every call.
        self.fixed_estimate: Decimal | None = None
        self.fixed_atto: int | None = None  # (the same in 10**-18 units: what block budgets count)
        if estimate is not None and not callable(estimate):
            self.fixed_estimate = to_estimate(estimate)
            self.fixed_atto = atto_of(self.fixed_estimate)
        self.tracker = tracker
        #: The tier a call is priced at when its result does not say (one it reports is what the provider billed).
        self.service_tier = service_tier
        #: Whether that tier is not a US-only one (which keeps a reported tier US-only: ``us_tier``).
        self.tier_plain = service_tier is None or service_tier not in US_TIERS
        self.func = func
        #: Where a ``model`` parameter of the function sits among its positional arguments (``None``: it has none),
        #: for the model a call asks for when it is passed positionally: found at the first such call
        #: (``_begin_requested``, only while an export wants it), not as the function is decorated.
        self.model_position: int | object | None = _NOT_FOUND_YET

    def call_tags(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> FrozenTags:
        """The tags of a call with a ``tags=`` callable: what it returns for the call's arguments. One that raises or
        returns what is no tags (a value that is not a str: ``None`` for an argument not given) is logged once and
        the call tracked with the static tags (none), so it is still recorded and checked against budgets."""
        tags_fn = self.tags_fn
        if tags_fn is None:
            return self.static_tags
        try:
            return to_tags(tags_fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - tracking must never break the user's call
            log_once(
                ("tags", self.name, type(exc)),
                "llmcost: the tags= callable of %s failed (%r); its calls are tracked without those tags",
                self.name,
                exc,
            )
            return self.static_tags

    def us_tier(self, found: str | None) -> str | None:
        """The tier of a call whose given tier is US-only (``"us"``, ``"batch+us"``...) and whose result reports
        ``found``: that tier run in the US only (``"batch"`` -> ``"batch+us"``); the given one when it reports none."""
        return self.service_tier if found is None else TO_US_TIER[found]

    def estimate_of(self, tracker: CostTracker, /, *args: Any, **kwargs: Any) -> Decimal:
        """What the ``estimate=`` callable says a call with these arguments will cost (the call's ``PendingCall``
        asks it once, when a budget checks the call). ``None`` says it does not know: the call is checked as with no
        ``estimate=``, from its request arguments, else recent calls, else nothing known (0: only an exhausted
        budget refuses it). One that raises, or returns no amount (not a finite number, or a negative one), is
        logged once and the call checked so too: a failing estimate never lets a call past a budget unchecked, nor
        makes room for others (a negative reservation would)."""
        try:
            value = self.estimate(*args, **kwargs)
            if value is not None:
                amount = to_money(getattr(value, "amount", value), "estimate")  # (an ``Estimate``: its amount)
                if amount >= 0:
                    return amount
                raise ValueError(f"estimate must be >= 0, got {value!r}")
        except Exception as exc:  # noqa: BLE001 - the user's code failing inside tracking: the call goes on
            log_once(
                ("estimate", self.name, type(exc)),
                "llmcost: the estimate= callable of %s failed (%r); its calls are checked as with no estimate",
                self.name,
                exc,
            )
        found = request_estimate(kwargs, self.model) if kwargs else None
        if found is None:
            found = tracker.recent_cost(self.resource, self.model)
        return ZERO if found is None else found

    # -- before the call ------------------------------------------------------------------------------------------
    def begin(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], known: tuple[CostTracker, FrozenTags] | None = None
    ) -> _Call | None:
        """Prepare a call; raise ``BudgetExceeded`` if a budget refuses it; ``None`` when tracking is off/broken.
        ``known``: the call's tracker and tags, found already (``begin`` again in a wide decimal context)."""
        if not _state.active:  # is_active(), read where it is kept: this runs before every tracked call
            return None
        if _wanting and known is None and (self.tracker is None or self.tracker in _wanting):
            return self._begin_requested(args, kwargs)  # (an OpenTelemetry export wants the model asked for: rarely)
        tracker = self.tracker
        call_tags = self.static_tags
        if tracker is None or self.tags_fn is not None:  # nothing here can fail for a given tracker and static tags
            if known is not None:
                tracker, call_tags = known
            else:
                if tracker is None:
                    try:
                        tracker = get_tracker()
                    except SettingError:
                        raise  # a limit asked for and unusable: refused, as a bad argument is (never run without it)
                    except Exception as exc:  # noqa: BLE001 - tracking must never break the user's call
                        log_once(("begin", self.name, type(exc)), "llmcost: cannot track %s: %r", self.name, exc)
                        return None
                if self.tags_fn is not None:
                    call_tags = self.call_tags(args, kwargs)
        guards = tracker.guards()
        entered = active_guards()
        if not guards and not entered:
            return (tracker, call_tags, (), _perf_counter(), None, None, None)
        guards = joined(guards, entered) if guards else entered  # (the usual case inline: no guards of the tracker)
        kind = type(guards)
        first = guards[0]  # (the one guard of the ``ONE_*`` kinds: read once, a tuple subclass's item is no quick read)
        if (
            (kind is not ONE_UNFILTERED and kind is not ONE_FILTERED) or not first.context_free
        ) and _getcontext().prec < EXACT_DIGITS:
            # A call made in a narrow decimal context: its estimate and the budgets' figures are found in a wide one
            # (``EXACT_DIGITS``), so they are exact (the user's function still runs in its own context). A call under
            # one block budget alone needs none: its figures and estimates are ints (``Guard.context_free``).
            with wide_context():
                call = self.begin(args, kwargs, (tracker, call_tags))
            if call is None:
                return None
            _, tags, held, started, checked, guard, token = call
            return (_WideRecording(tracker), tags, held, started, checked, guard, token)  # (and settled so)
        # A call under one guard alone (the usual budgeted call) keeps its ``(guard, token)`` as two values of the
        # ``_Call``, not a list of pairs: the tracker settles the token as it counts the row (``Guard.settle_row``).
        reservations: list[tuple[Any, object]]  # (made where more than one guard may reserve)
        needed = self.fixed_estimate
        context: FrozenTags | None
        if needed is not None:
            if kind is ONE_UNFILTERED:
                # The usual budgeted call: its guard needs only the estimate, known already.
                guard = first
                try:
                    token = guard.reserve_estimate(tracker, needed, self.fixed_atto)
                except BudgetExceeded:
                    raise
                except Exception as exc:  # noqa: BLE001 - a broken budget must not break the user's call
                    log_once(("guard", type(exc)), "llmcost: budget check failed, call let through: %r", exc)
                    return (tracker, call_tags, (), _perf_counter(), None, None, None)
                return (tracker, call_tags, (), _perf_counter(), None, guard, token)
            if kind is not ONE_FILTERED and guards.unfiltered:
                # As above, for each of several guards.
                reservations = []
                for guard in guards:
                    try:
                        reservations.append((guard, guard.reserve_estimate(tracker, needed, self.fixed_atto)))
                    except BudgetExceeded:
                        self._settle(reservations, None)
                        raise
                    except Exception as exc:  # noqa: BLE001 - a broken budget must not break the user's call
                        log_once(("guard", type(exc)), "llmcost: budget check failed, call let through: %r", exc)
                return (tracker, call_tags, reservations, _perf_counter(), None, None, None)
            # Guards that check only some calls say which from the call's fields, as ``before_call`` would
            # (``Guard.checks_call``), and each that checks it reserves the known estimate at once; a guard that fails
            # there is let through, as ``before_call`` lets it.
            context = current_tags()
            if context is EMPTY_TAGS or not context:  # (the usual case: no outer tags; matching reads values)
                tags = call_tags
            elif call_tags is not EMPTY_TAGS and call_tags:
                tags = intern_tags({**context, **call_tags})
            else:
                tags = context
            if kind is ONE_FILTERED:  # (one guard alone, as above)
                guard = first
                try:
                    token = guard.reserve_checked(
                        tracker, self.resource, self.category_value, tags, self.model, kwargs, needed, self.fixed_atto
                    )
                except BudgetExceeded:
                    raise
                except Exception as exc:  # noqa: BLE001 - a broken budget must not break the user's call
                    log_once(("guard", type(exc)), "llmcost: budget check failed, call let through: %r", exc)
                    token = NOT_CHECKED
                if token is NOT_CHECKED:
                    return (tracker, call_tags, (), _perf_counter(), context, None, None)
                return (tracker, call_tags, (), _perf_counter(), context, guard, token)
            reservations = []
            for guard in guards:
                try:
                    token = guard.reserve_checked(
                        tracker, self.resource, self.category_value, tags, self.model, kwargs, needed, self.fixed_atto
                    )
                except BudgetExceeded:
                    self._settle(reservations, None)
                    raise
                except Exception as exc:  # noqa: BLE001 - a broken budget must not break the user's call
                    log_once(("guard", type(exc)), "llmcost: budget check failed, call let through: %r", exc)
                    continue
                if token is not NOT_CHECKED:
                    reservations.append((guard, token))
            return (tracker, call_tags, reservations, _perf_counter(), context, None, None)
        if self.estimate is None:
            context = None
            checking: Sequence[Any] = guards
            if kind is not ONE_UNFILTERED and not guards.unfiltered:  # (the usual kind first: no flag read)
                # As above, the guards that check the call found from its fields first.
                context = current_tags()
                if context is EMPTY_TAGS or not context:
                    tags = call_tags
                elif call_tags is not EMPTY_TAGS and call_tags:
                    tags = intern_tags({**context, **call_tags})
                else:
                    tags = context
                checking = []
                for guard in guards:
                    try:
                        if guard.checks_call(tracker, self.resource, self.category_value, tags, self.model, kwargs):
                            checking.append(guard)
                    except Exception as exc:  # noqa: BLE001 - a broken budget must not break the user's call
                        log_once(("guard", type(exc)), "llmcost: budget check failed, call let through: %r", exc)
                if not checking:
                    return (tracker, call_tags, (), _perf_counter(), context, None, None)
            # Each guard checking the call needs only its estimate: found here once, as a ``PendingCall`` would find
            # it (``estimate_call``: with no ``estimate=``, from the call's request arguments, else the estimate
            # of recent calls), with its 10**-18 units where they are at hand (a budget finds them else).
            atto: int | None
            try:
                found = request_estimate_atto(kwargs, self.model) if kwargs else None
                if found is not None:
                    needed, atto = found  # (the amount, never None, and its 10**-18 units where kept)
                else:
                    atto = tracker.recent_atto(self.resource, self.model)  # (``needed`` stays None: ints only)
            except Exception as exc:  # noqa: BLE001 - as a failing estimate in ``before_call``: let through
                log_once(("guard", type(exc)), "llmcost: budget check failed, call let through: %r", exc)
                return (tracker, call_tags, (), _perf_counter(), None, None, None)
            if kind is ONE_UNFILTERED or kind is ONE_FILTERED:  # (one guard alone, as above: it checks the call)
                guard = first  # (the set's one guard: it checks the call)
                try:
                    token = guard.reserve_estimate(tracker, needed, atto)
                except BudgetExceeded:
                    raise
                except Exception as exc:  # noqa: BLE001 - a broken budget must not break the user's call
                    log_once(("guard", type(exc)), "llmcost: budget check failed, call let through: %r", exc)
                    return (tracker, call_tags, (), _perf_counter(), None, None, None)
                return (tracker, call_tags, (), _perf_counter(), context, guard, token)
            reservations = []
            for guard in checking:
                try:
                    reservations.append((guard, guard.reserve_estimate(tracker, needed, atto)))
                except BudgetExceeded:
                    self._settle(reservations, None)
                    raise
                except Exception as exc:  # noqa: BLE001 - a broken budget must not break the user's call
                    log_once(("guard", type(exc)), "llmcost: budget check failed, call let through: %r", exc)
            return (tracker, call_tags, reservations, _perf_counter(), context, None, None)
        context = current_tags()
        pending = PendingCall(  # positional: keywords cost more, and this runs for every call under a budget
            tracker,
            self.resource,
            self.model,
            self.category_value,
            intern_tags({**context, **call_tags}) if call_tags is not EMPTY_TAGS and call_tags else context,
            args,
            kwargs,
            functools.partial(self.estimate_of, tracker),  # (a fixed estimate took a shorter path above)
        )
        reservations = []
        for guard in guards:
            try:
                reservations.append((guard, guard.before_call(pending)))
            except BudgetExceeded:
                self._settle(reservations, None)
                raise
            except Exception as exc:  # noqa: BLE001 - a broken budget must not break the user's call
                log_once(("guard", type(exc)), "llmcost: budget check failed, call let through: %r", exc)
        return (tracker, call_tags, reservations, _perf_counter(), None, None, None)

    def _begin_requested(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Call | None:
        """``begin``, for a call whose entry is recorded with the model it asked for at hand (``_Requested``): the
        ``model=`` given, else the call's own ``model`` argument (an SDK request's)."""
        tracker = self.tracker
        if tracker is None:
            try:
                tracker = get_tracker()
            except SettingError:
                raise  # (as in ``begin``: never run without a limit asked for)
            except Exception as exc:  # noqa: BLE001 - tracking must never break the user's call
                log_once(("begin", self.name, type(exc)), "llmcost: cannot track %s: %r", self.name, exc)
                return None
        call = self.begin(args, kwargs, (tracker, self.call_tags(args, kwargs)))
        if tracker not in _wanting:  # (the default tracker, not exported: another tracker is)
            return call
        model = self.model
        if model is None:
            model = kwargs.get("model")
            if model is None and args:
                position = self.model_position
                if position is _NOT_FOUND_YET:
                    position = self.model_position = _model_position(self.func)
                if type(position) is int and len(args) > position:
                    model = args[position]  # (``ask("gpt-4o", prompt)`` as ``ask(model="gpt-4o", ...)``)
        if call is None or not isinstance(model, str) or not model:
            return call
        recording, tags, held, started, checked, guard, token = call
        return (_Requested(recording, model), tags, held, started, checked, guard, token)

    # -- after the call -------------------------------------------------------------------------------------------
    def finish(self, call: _Call | None, result: Any, extracted: Extracted | None = None) -> None:
        """Record what ``result`` (or the stream's ``extracted`` usage) cost and settle reservations."""
        if call is None:
            return
        tracker, tags, reservations, started, checked, guard, token = call
        latency = (_perf_counter() - started) * 1000.0
        if guard is not None:
            if extracted is None and self.usage_fn is None:
                # The usual call under one guard alone, in one pass as below: the tracker settles its token (as it
                # counts the row, else with ``after_call``), unless it raises (then it settled nothing).
                try:
                    extracted = extract_usage(result)
                    if extracted is not None:
                        found_model, found_provider, found_usage, found_category, found_tier = extracted
                        model = self.model or found_model
                        if found_usage is not None and model is not None:
                            category = (self.category if self.category is not None else found_category) or _INFERENCE
                            tier = (found_tier or self.service_tier) if self.tier_plain else self.us_tier(found_tier)
                            tracker.record_call(
                                model, self.provider or found_provider, found_usage, category, self.resource, tags,
                                latency, tier, self.provider is None, False, None,
                                checked if category is self.checked_category else None, guard, token,
                            )  # fmt: skip
                            return
                except Exception as exc:  # noqa: BLE001 - tracking must never break the user's call
                    self._record_failed(exc)
                    self._settle(((guard, token),), None)
                    return
            # Any other result: its reservation as a pair, as under several guards.
            reservations = [(guard, token)]
            call = (tracker, tags, reservations, started, checked, None, None)
        elif not reservations and extracted is None and self.usage_fn is None:
            # The usual call (a response with usage and a model, nothing to settle) in one pass: ``_record``'s
            # first steps inline, since this runs on every tracked call.
            try:
                extracted = extract_usage(result)
                if extracted is not None:
                    found_model, found_provider, found_usage, found_category, found_tier = extracted
                    model = self.model or found_model
                    if found_usage is not None and model is not None:
                        tier = (found_tier or self.service_tier) if self.tier_plain else self.us_tier(found_tier)
                        tracker.record_call(
                            model, self.provider or found_provider, found_usage,
                            (self.category if self.category is not None else found_category) or _INFERENCE,
                            self.resource, tags, latency, tier, self.provider is None,
                            False,
                        )  # fmt: skip
                        return
                self._record(call, result, extracted, latency, False)
            except Exception as exc:  # noqa: BLE001 - tracking must never break the user's call
                self._record_failed(exc)
            return
        entry: CostEntry | None = None
        try:
            if extracted is None and self.usage_fn is None:
                # The usual call under budgets, in one pass as above: the guards settle their reservations as they
                # count the entry, taking them out of ``reservations``.
                extracted = extract_usage(result)
                if extracted is not None:
                    found_model, found_provider, found_usage, found_category, found_tier = extracted
                    model = self.model or found_model
                    if found_usage is not None and model is not None:
                        category = (self.category if self.category is not None else found_category) or _INFERENCE
                        if checked is not None and category is not self.checked_category:
                            checked = None  # the guards matched another category: they match this one again
                        tier = (found_tier or self.service_tier) if self.tier_plain else self.us_tier(found_tier)
                        entry = tracker.record_call(
                            model, self.provider or found_provider, found_usage, category, self.resource, tags,
                            latency, tier, self.provider is None, False,
                            reservations or None, checked,
                        )  # fmt: skip
                        if reservations:
                            self._settle(reservations, entry)
                        return
            entry = self._record(call, result, extracted, latency, False)
        except Exception as exc:  # noqa: BLE001 - tracking must never break the user's call
            self._record_failed(exc)
        if reservations:
            self._settle(reservations, entry)

    def _record_failed(self, exc: Exception) -> None:
        log_once(
            ("record", self.name, type(exc), str(exc)), "llmcost: could not record the cost of %s: %r", self.name, exc
        )

    def fail(self, call: _Call | None) -> None:
        """The wrapped function raised: record nothing, release reservations."""
        if call is not None:
            _, _, reservations, _, _, guard, token = call
            if guard is not None:
                self._settle(((guard, token),), None)
            self._settle(reservations, None)

    def _settle(self, reservations: Sequence[tuple[Any, object]], entry: CostEntry | None) -> None:
        if reservations and _getcontext().prec < EXACT_DIGITS:
            with wide_context():  # (as in ``begin``)
                self._settle(reservations, entry)
            return
        for guard, token in reservations:
            try:
                guard.after_call(token, entry)
            except Exception as exc:  # noqa: BLE001
                log_once(("settle", type(exc)), "llmcost: budget settlement failed: %r", exc)

    def _record(
        self, call: _Call, result: Any, extracted: Extracted | None, latency: float, keep: bool = True
    ) -> CostEntry | None:
        """Record what ``result`` cost; the entry, or ``None`` when nothing was recorded (or, with ``keep=False``,
        when the tracker did not build it)."""
        if extracted is None and self.usage_fn is None:
            # The usual call, its steps below in one pass: a response with usage and a model.
            extracted = extract_usage(result)
            if extracted is not None:
                found_model, found_provider, found_usage, found_category, found_tier = extracted
                model = self.model or found_model
                if found_usage is not None and model is not None:
                    tracker, tags, reservations, _, checked, _, _ = call
                    kind = (self.category if self.category is not None else found_category) or _INFERENCE
                    tier = (found_tier or self.service_tier) if self.tier_plain else self.us_tier(found_tier)
                    return tracker.record_call(
                        model, self.provider or found_provider, found_usage, kind, self.resource, tags, latency,
                        tier, self.provider is None, keep,
                        reservations or None,  # settled by the guards as they count the entry
                        checked if kind is self.checked_category else None,  # (see ``finish``)
                    )  # fmt: skip
        usage: Usage | None = None
        streamed = type(result) is _Streamed  # (a hooked stream or raw response: its usage arrived as ``extracted``)
        if self.usage_fn is not None:
            given = result.read if streamed else result
            if not streamed or given is not None:  # (a stream seen only by its usage, a background response's:
                usage = self._usage_of(given)  # nothing to give; a function's result, ``None`` included, is given)
            if extracted is None and not streamed:
                # ``usage=`` overrides the usage only: the model, provider, service tier and category are still read
                # from the result (else a response that names its model would be recorded unpriced).
                extracted = extract_usage(result)
        if extracted is not None:
            found_model, found_provider, found_usage, found_category, found_tier = extracted
            if usage is None:
                usage = found_usage
            model = self.model or found_model
            provider = self.provider or found_provider
            tier = (found_tier or self.service_tier) if self.tier_plain else self.us_tier(found_tier)
            category = self.category if self.category is not None else found_category
        else:
            model, provider, category, tier = self.model, self.provider, self.category, self.service_tier
        if usage is None and streamed and result.waiting is not None:
            # A background response whose create's stream ended before it finished (the connection dropped): it runs
            # on, and is recorded when retrieved finished (``retrieve(id, stream=True, starting_after=...)`` resumes).
            self._expect(call, result.waiting)
            return None
        if usage is None and streamed and result.cut:
            logger.debug("llmcost: a stream returned by %s was closed before any usage; nothing recorded", self.name)
            return None
        if usage is None and streamed:
            log_once(
                ("no-stream-usage", self.name),
                "llmcost: the stream returned by %s carried no usage; nothing recorded.%s",
                self.name,
                # (a Responses stream reports it unasked, in its last event: one without it ended before that)
                ""
                if result.responses
                else ' For OpenAI, pass stream_options={"include_usage": True} to the '
                "create() call so the last chunk reports it.",
            )
            return None
        if usage is None:
            waiting = queued_id(result)
            if waiting is not None:  # a background response, not finished yet: recorded when retrieved finished
                self._expect(call, waiting)
                return None
            log_once(
                ("no-usage", self.name, type(result)),
                "llmcost: %s returned %s, which carries no usage llmcost can read; nothing recorded. "
                "Return the SDK response, or pass usage=callable to @track_cost.",
                self.name,
                type(result).__name__,
            )
            return None
        if model is None:
            # Recorded with amount 0 and pricing="unpriced" below: visible, never a silent $0.
            log_once(
                ("no-model", self.name),
                "llmcost: %s: no model in the result and none given to @track_cost(model=...); recorded unpriced",
                self.name,
            )
        tracker, tags, reservations, _, checked, _, _ = call
        kind = category or _INFERENCE
        return tracker.record_call(
            model, provider, usage, kind, self.resource, tags, latency, tier,
            self.provider is None,  # from the response: a guess the catalog may overrule
            keep, reservations or None,  # settled by the guards as they count the entry
            checked if kind is self.checked_category else None,
        )  # fmt: skip

    def _usage_of(self, given: Any) -> Usage | None:
        """What the ``usage=`` callable says ``given`` used; ``None`` if it says nothing. One that raises, or returns
        what is no ``Usage``, is logged once, as a failing ``tags=`` or ``estimate=`` callable is, and the call is
        recorded as with no ``usage=`` (with the usage read from the result, if any): never lost for it."""
        try:
            usage = self.usage_fn(given)  # type: ignore[misc]  # (only called with one set)
            if usage is None or isinstance(usage, Usage):
                return usage
            raise TypeError(f"usage= callable of {self.name} must return a llmcost.Usage, got {usage!r}")
        except Exception as exc:  # noqa: BLE001 - the user's code failing inside tracking: the call is still recorded
            log_once(
                ("usage", self.name, type(exc)),
                "llmcost: the usage= callable of %s failed (%r); its calls are recorded with the usage read from "
                "what they return",
                self.name,
                exc,
            )
            return None

    def _expect(self, call: _Call, response_id: str) -> None:
        """A background response (``"queued"``, no usage yet): left to be recorded, once, by the first retrieve that
        finds it finished (``_background``), as this call, in this call's context (its tags, its budgets)."""
        tracker, tags, _, started, _, _, _ = call
        later: _Call = (tracker, tags, (), started, None, None, None)  # (its reservations are released now)
        expect(response_id, functools.partial(self._finish_background, later, contextvars.copy_context()))
        logger.debug("llmcost: %s: background response %s is recorded when retrieved finished", self.name, response_id)

    def _finish_background(self, call: _Call, context: contextvars.Context, extracted: Extracted) -> None:
        context.run(self.finish, call, _STREAM, extracted)

    # -- streams --------------------------------------------------------------------------------------------------
    def hook_stream(self, call: _Call | None, stream: Any) -> Any:
        """Make an SDK stream record its usage once it ends or is closed; iterates exactly as before."""
        if call is None:
            return stream
        # The host bills the stream unless ``provider=`` names who does: then it is not looked up.
        host = _host_of(stream) if self.provider is None else None
        # Recorded in the context the call was made in (its ``llmcost.tags``, its budgets), wherever it is read: a web
        # handler returns the stream from inside ``with budget(...)``/``with tags(...)`` and the framework reads it
        # after, as a background response is recorded (``_expect``).
        # With ``usage=``, the chunks (events) read are kept for it, as a generator's are.
        chunks: list[Any] | None = [] if self.usage_fn is not None else None
        finish = functools.partial(self._finish_stream, call, host, contextvars.copy_context(), chunks)
        return hook_stream(stream, finish, chunks)

    def _finish_stream(
        self,
        call: _Call,
        host: str | None,
        context: contextvars.Context,
        chunks: list[Any] | None,
        extracted: Extracted | None,
        ended: bool = True,
        seen: StreamAccumulator | None = None,
    ) -> None:
        """A hooked SDK stream ended (``ended``: read to its end; else closed or freed before): record what it
        reported (``usage=`` gets the ``chunks`` read), in the ``context`` it was made in; the host it was read from
        bills it. Without usage, what else it ``seen`` says why: a background response it created runs on (left to
        be recorded when retrieved finished, as a background create's response is), or it is a Responses stream
        (whose usage needs no option)."""
        if extracted is not None and host is not None and self.provider is None:
            e = extracted
            extracted = Extracted(e.model, host, e.usage, e.category, e.service_tier)
        if extracted is None and seen is not None and (seen.responses or seen.background_id is not None):
            result = _Streamed(chunks, not ended, seen.background_id, seen.responses)
        elif chunks is None:
            result = _STREAM if ended else _STREAM_CUT
        else:
            result = _Streamed(chunks, not ended)
        context.run(self.finish, call, result, extracted)

    def hook_raw(self, call: _Call, response: Any) -> Any:
        """Record a raw response whose body is unread (``with_streaming_response``) once its body has been read or
        it is closed; release the call's reservations if it is closed unread."""
        host = _host_of_url(getattr(response, "url", None)) if self.provider is None else None
        sdk = type(response).__module__.split(".", 1)[0]
        finish = functools.partial(self._finish_raw, call, host, sdk, contextvars.copy_context())  # (as a stream's)
        keep = self.usage_fn is not None  # (the body as parsed is kept for ``usage=``)
        return hook_raw_response(response, finish, functools.partial(self._unread, call), keep=keep)

    def _finish_raw(
        self,
        call: _Call,
        host: str | None,
        sdk: str,
        context: contextvars.Context,
        extracted: Extracted | None,
        body: Any = None,
    ) -> None:
        """A raw response's body was read: record what it reported (``usage=`` gets the ``body`` as parsed, if
        kept), in the ``context`` it was made in. The host it came from bills it (as a stream's), else the provider
        the body names, else the SDK's (as ``with_raw_response``'s body)."""
        if extracted is not None and self.provider is None and (host is not None or extracted.provider is None):
            e = extracted
            extracted = Extracted(e.model, host or sdk, e.usage, e.category, e.service_tier)
        context.run(self.finish, call, _STREAM if body is None else _Streamed(body), extracted)

    def _unread(self, call: _Call) -> None:
        logger.debug("llmcost: a response of %s was closed with its body unread; nothing recorded", self.name)
        self.fail(call)

    def hook_generator(self, call: _Call, generator: Any) -> Any:
        """Track a generator (or async generator) the function returned (google-genai's ``generate_content_stream``)
        as a generator function is: recorded once, with the usage summed over what it yields, when it ends or is
        closed, in the context the call was made in (as a returned SDK stream); the call's reservations are released
        if it is dropped before it starts."""
        finish = functools.partial(self.finish_in, contextvars.copy_context())
        drop: list[Any] = []  # the release when dropped unstarted, cancelled as it starts

        def opened() -> Any:
            for release in drop:
                release.detach()
            return generator

        tracked: Generator[Any, Any, Any] | AsyncGenerator[Any, Any]
        if type(generator) is AsyncGeneratorType:
            tracked = _wrap_async_generator(opened, self, call, finish)()
        else:
            tracked = _wrap_generator(opened, self, call, finish)()
        drop.append(weakref.finalize(tracked, self.fail, call))
        return tracked

    def finish_in(
        self, context: contextvars.Context, call: _Call | None, result: Any, extracted: Extracted | None
    ) -> None:
        """``finish`` run in ``context`` (the call's own, copied as it began)."""
        context.run(self.finish, call, result, extracted)

    def hook_manager(self, call: _Call, manager: Any) -> Any:
        """Track the stream an SDK stream manager opens; release the call's reservations if it never does."""
        return ManagerProxy(
            manager, on_stream=functools.partial(self.hook_stream, call), on_drop=functools.partial(self.fail, call)
        )


class _Streamed:
    """The result of a hooked SDK stream or raw response, whose usage arrives as ``extracted``; ``read`` is what a
    ``usage=`` callable gets: the chunks (events) read, or the body as parsed (``None``: nothing to give it); ``cut``:
    a stream closed or freed before its end (its missing usage is no sign of a missing option). For a stream that saw
    no usage: ``waiting``, the id of the background response it created (it runs on, to be retrieved finished), and
    ``responses``, whether it was of OpenAI Responses events (which need no option to report usage)."""

    __slots__ = ("cut", "read", "responses", "waiting")

    def __init__(self, read: Any, cut: bool = False, waiting: str | None = None, responses: bool = False) -> None:
        self.read, self.cut, self.waiting, self.responses = read, cut, waiting, responses


#: The result of a hooked stream (or a background response) with nothing kept for ``usage=``; and of one cut short.
_STREAM = _Streamed(None)
_STREAM_CUT = _Streamed(None, True)


def _host_of(stream: Any) -> str | None:
    """The provider whose API served ``stream`` (its HTTP response's URL), for OpenAI-compatible hosts."""
    try:
        url = stream.response.url
    except Exception:  # noqa: BLE001 - an SDK stream without a response: the model decides
        return None
    return _host_of_url(url)


def _host_of_url(url: Any) -> str | None:
    """The provider of an API URL (``None`` for none, or a host no provider is known by)."""
    if url is None:
        return None
    url = str(url)
    try:
        found = provider_for_url(url)
    except Exception as exc:  # noqa: BLE001 - tracking must never break the user's call
        log_once(("host", type(exc)), "llmcost: cannot tell the provider of %s: %r", url, exc)
        return None
    return found


# -- the four wrappers ----------------------------------------------------------------------------------------------
def _wrap_sync(func: Callable[..., Any], engine: _Engine) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = engine.begin(args, kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException:
            engine.fail(call)
            raise
        if call is not None and may_be_stream(result):
            if is_sdk_stream(result):
                return engine.hook_stream(call, result)
            if is_stream_manager(result):
                return engine.hook_manager(call, result)
            if read_later(result):  # a raw response (``with_streaming_response``): recorded as its body is read
                return engine.hook_raw(call, result)
            if type(result) is GeneratorType or type(result) is AsyncGeneratorType:
                return engine.hook_generator(call, result)
        engine.finish(call, result)
        return result

    return wrapper


def _wrap_async(func: Callable[..., Awaitable[Any]], engine: _Engine) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = engine.begin(args, kwargs)
        try:
            result = await func(*args, **kwargs)
        except BaseException:
            engine.fail(call)
            raise
        if call is not None and may_be_stream(result):
            if is_sdk_stream(result):
                return engine.hook_stream(call, result)
            if is_stream_manager(result):
                return engine.hook_manager(call, result)
            if read_later(result):  # a raw response (``with_streaming_response``): recorded as its body is read
                return engine.hook_raw(call, result)
            if type(result) is GeneratorType or type(result) is AsyncGeneratorType:
                return engine.hook_generator(call, result)
        engine.finish(call, result)
        return result

    return wrapper


def _wrap_generator(
    func: Callable[..., Generator[Any, Any, Any]],
    engine: _Engine,
    begun: _Call | None = None,
    finish: Callable[[_Call | None, Any, Extracted | None], None] | None = None,
) -> Callable[..., Generator[Any, Any, Any]]:
    """A generator function tracked: its call begins as it starts, and is recorded in the context it began in (its
    tags, its budgets), wherever the rest is read. With ``begun`` (``_Engine.hook_generator``), ``func()`` gives the
    generator a call begun already returned, and ``finish`` records it.

    Ended otherwise than by running out (closed by its consumer, an exception thrown in or raised, a cancellation),
    it records the usage it had yielded, if any: the request was made. With none, the call's reservations are
    released and nothing is logged (the consumer stopped before the usage came)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        end: Callable[[_Call | None, Any, Extracted | None], None]
        if begun is None:
            call = engine.begin(args, kwargs)
            # (Read after the block that began it, say by a web framework: settled with the budgets that reserved.)
            end = functools.partial(engine.finish_in, contextvars.copy_context())
        else:
            call, end = begun, engine.finish if finish is None else finish
        acc = StreamAccumulator()
        chunks: list[Any] = []
        keep = engine.usage_fn is not None
        try:
            # ``yield from func(...)`` written out (PEP 380), to see each item as it passes: what the consumer sends
            # or throws reaches the user's generator, and its return value is the wrapper's.
            gen = func(*args, **kwargs)
            try:
                chunk = next(gen)
            except StopIteration as stop:
                value = stop.value
            else:
                while True:
                    acc.add(chunk)
                    if keep:
                        chunks.append(chunk)
                    try:
                        sent = yield chunk
                    except GeneratorExit:
                        gen.close()  # (should it raise, what was read is still recorded: ``_ended_early``)
                        raise
                    except BaseException as exc:  # noqa: BLE001 - thrown in: the user's generator decides
                        try:
                            chunk = gen.throw(exc)
                        except StopIteration as stop:
                            value = stop.value
                            break
                    else:
                        try:
                            chunk = gen.send(sent)
                        except StopIteration as stop:
                            value = stop.value
                            break
        except BaseException:
            _ended_early(engine, end, call, chunks, acc.result())
            raise
        end(call, chunks, acc.result())
        return value

    return wrapper


def _ended_early(
    engine: _Engine,
    end: Callable[[_Call | None, Any, Extracted | None], None],
    call: _Call | None,
    chunks: list[Any],
    seen: Extracted | None,
) -> None:
    """A tracked generator that ended otherwise than by running out: recorded with the usage it yielded (or, with
    ``usage=``, from the chunks it yielded), else its reservations released."""
    if seen is not None or chunks:
        end(call, chunks, seen)
    else:
        engine.fail(call)


def _wrap_async_generator(
    func: Callable[..., AsyncGenerator[Any, Any]],
    engine: _Engine,
    begun: _Call | None = None,
    finish: Callable[[_Call | None, Any, Extracted | None], None] | None = None,
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """An async generator function tracked, as ``_wrap_generator`` (``begun`` and ``finish`` as there)."""

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        end: Callable[[_Call | None, Any, Extracted | None], None]
        if begun is None:
            call = engine.begin(args, kwargs)
            end = functools.partial(engine.finish_in, contextvars.copy_context())  # (as in ``_wrap_generator``)
        else:
            call, end = begun, engine.finish if finish is None else finish
        acc = StreamAccumulator()
        chunks: list[Any] = []
        keep = engine.usage_fn is not None
        try:
            # As ``_wrap_generator`` delegates: ``asend``/``athrow``/``aclose`` reach the user's async generator.
            gen = func(*args, **kwargs)
            try:
                chunk = await gen.__anext__()
            except StopAsyncIteration:
                pass
            else:
                while True:
                    acc.add(chunk)
                    if keep:
                        chunks.append(chunk)
                    try:
                        sent = yield chunk
                    except GeneratorExit:
                        await gen.aclose()
                        raise
                    except BaseException as exc:  # noqa: BLE001 - thrown in: the user's generator decides
                        try:
                            chunk = await gen.athrow(exc)
                        except StopAsyncIteration:
                            break
                    else:
                        try:
                            chunk = await gen.asend(sent)
                        except StopAsyncIteration:
                            break
        except BaseException:
            _ended_early(engine, end, call, chunks, acc.result())
            raise
        end(call, chunks, acc.result())

    return wrapper


@overload
def track_cost(func: F, /) -> F: ...


@overload
def track_cost(
    func: None = None,
    /,
    *,
    model: str | None = None,
    category: CostCategory | str | None = None,
    resource: str | None = None,
    tags: TagsArg = None,
    usage: UsageArg = None,
    estimate: Any = None,
    tracker: CostTracker | None = None,
    provider: str | None = None,
    service_tier: str | None = None,
) -> Callable[[F], F]: ...


def track_cost(
    func: Callable[..., Any] | None = None,
    /,
    *,
    model: str | None = None,
    category: CostCategory | str | None = None,
    resource: str | None = None,
    tags: TagsArg = None,
    usage: UsageArg = None,
    estimate: Any = None,
    tracker: CostTracker | None = None,
    provider: str | None = None,
    service_tier: str | None = None,
) -> Any:
    """Record the cost of every call of the decorated function, read from what it returns.

    Works bare (``@track_cost``) or called; on sync and async functions, generators and async generators, and
    methods. Usage and model are read from OpenAI, Anthropic, Google GenAI, Mistral, LiteLLM and LangChain
    responses or dicts of their shapes; a returned SDK stream (OpenAI ``Stream``/``AsyncStream``, Anthropic
    ``Stream``) keeps iterating as before and is recorded once when it ends or is closed. Generators, and those a
    function returns (google-genai's ``generate_content_stream``), are recorded once, with usage summed over the
    chunks they yield.

    - ``model``/``provider``: used when the result does not say (and to price it); ``model`` given here wins.
    - ``category``: default ``llm_inference`` (``llm_embedding`` for embedding responses).
    - ``resource``: default the function's ``__qualname__``.
    - ``tags``: a dict, or ``callable(*args, **kwargs) -> dict`` evaluated per call.
    - ``usage``: ``callable(result) -> Usage`` that overrides the usage read from the result (the model, provider
      and service tier are still read from it); for generators it gets the chunk list.
    - ``estimate``: expected cost (Decimal, number, ``Estimate``, or ``callable(*args, **kwargs)``) for budgets,
      never negative. A bad fixed value raises here; a callable that fails for a call is logged, and the call is
      checked as with no ``estimate``.
    - ``tracker``: default ``llmcost.get_tracker()`` at call time.
    - ``provider``: who bills the calls (``"groq"``, ``"openrouter"``...), when the result does not say; an SDK
      stream tells it by the host it came from.
    - ``service_tier``: ``"batch"``, ``"flex"``, ``"priority"`` or ``"fast"`` when the result does not say
      (responses that report their tier, as OpenAI's and Anthropic's do, are priced at it); ``"us"`` or a tier
      with ``"+us"`` for Anthropic's US-only inference.

    The wrapped function's own exception propagates unchanged and records nothing. A failure inside tracking
    (unknown model, store down) is logged once and never breaks the call; a budget refusal raises
    ``BudgetExceeded`` before the function runs.

    Example::

        @track_cost(resource="support-bot", tags={"team": "support"})
        def answer(question: str):
            return client.chat.completions.create(model="gpt-4o-mini", messages=[...])
    """
    cat = None if category is None else to_category(category)
    if model is not None and not isinstance(model, str):
        raise TypeError(f"model must be a str or None, got {model!r}")
    if resource is not None and not isinstance(resource, str):
        raise TypeError(f"resource must be a str or None, got {resource!r}")
    if usage is not None and not callable(usage):
        raise TypeError(f"usage must be a callable(result) -> Usage, got {usage!r}")
    if tags is not None and not callable(tags):
        to_tags(tags)
    if provider is not None and not isinstance(provider, str):
        raise TypeError(f"provider must be a str or None, got {provider!r}")
    if tracker is not None and not isinstance(tracker, CostTracker):
        raise TypeError(f"tracker must be a CostTracker, got {tracker!r}")
    if estimate is not None and not callable(estimate):
        to_estimate(estimate)
    tier = to_service_tier(service_tier)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(fn):
            raise TypeError(f"track_cost decorates a callable, got {fn!r}")
        engine = _Engine(
            fn,
            model=model,
            provider=provider,
            category=cat,
            resource=resource,
            tags=tags,
            usage=usage,
            estimate=estimate,
            tracker=tracker,
            service_tier=tier,
        )
        if inspect.isasyncgenfunction(fn):
            return _wrap_async_generator(fn, engine)
        if inspect.iscoroutinefunction(fn):
            return _wrap_async(fn, engine)
        if inspect.isgeneratorfunction(fn):
            return _wrap_generator(fn, engine)
        return _wrap_sync(fn, engine)

    if func is not None:
        return decorate(func)
    return decorate


def recorder(
    name: str,
    *,
    model: str | None = None,
    category: CostCategory | str | None = None,
    resource: str | None = None,
    tags: TagsArg = None,
    usage: UsageArg = None,
    tracker: CostTracker | None = None,
    provider: str | None = None,
) -> Callable[..., CostEntry | None]:
    """For integrations that hear of a call only once it was made (a LiteLLM callback): returns
    ``record(result, latency_ms, args=(), kwargs=None)``, which records what ``result`` cost exactly as
    ``@track_cost(...)`` would, with no budget check (the request was sent already). It returns the entry, or
    ``None`` when tracking is off or nothing could be read; it never raises."""
    track_cost(
        model=model, category=category, resource=resource, tags=tags, usage=usage, tracker=tracker, provider=provider
    )

    def call() -> None: ...

    call.__qualname__ = name
    engine = _Engine(
        call,
        model=model,
        provider=provider,
        category=None if category is None else to_category(category),
        resource=resource,
        tags=tags,
        usage=usage,
        estimate=None,
        tracker=tracker,
    )

    def record(
        result: Any, latency_ms: float, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> CostEntry | None:
        if not is_active():
            return None
        try:
            call_tags = engine.static_tags
            if engine.tags_fn is not None:
                call_tags = engine.call_tags(args, kwargs or {})
            call: _Call = (engine.tracker or get_tracker(), call_tags, [], _perf_counter(), None, None, None)
            return engine._record(call, result, None, latency_ms)
        except Exception as exc:  # noqa: BLE001 - tracking must never break the user's call
            log_once(("record", name, type(exc), str(exc)), "llmcost: could not record the cost of %s: %r", name, exc)
            return None

    return record
