"""The ``llmcost serve`` application: FastAPI routes over one ``CostTracker``, its ``BudgetManager`` and
``llmcost.analytics``, so that HTTP clients read and write exactly what library users do.

Every error is JSON ``{"error": message, "field": name or null}`` with a 4xx status: 400 for a bad value (the
message names the field and the value), 401 without the bearer token, 404 for an unknown budget, reservation or
route, 409 when a reservation does not fit its budget, 413 for a body over the limit; 503 when the store cannot be
reached. No stack trace ever reaches a client.

Example::

    app = create_app("duckdb:///var/lib/costs.duckdb", token="s3cret")
    uvicorn.run(app, host="127.0.0.1", port=8765)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Annotated, Any

import duckdb
from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._budget import Budget, alert_level
from .._entry import CostEntry
from .._errors import BudgetExceeded, LlmcostError, StoreError, UnknownModelError
from .._manager import BudgetManager
from .._model_price import tidy
from .._money import to_amount, to_money, to_utc
from .._time import parse_when
from .._tracker import CostTracker
from .._usage import NO_UNITS, Usage
from ..analytics import forecast_tasks
from ..analytics._spend import exact_spend
from ..stores import CostStore
from ._dashboard import FilterError, Filters, dashboard_fragment, dashboard_page
from ._metrics import metrics_registry
from ._models import (
    BudgetIn,
    BudgetOut,
    CheckOut,
    ErrorOut,
    ForecastIn,
    ForecastOut,
    RecordIn,
    RecordsCreated,
    RecordsPage,
    ReservationIn,
    ReservationOut,
    SettleIn,
    SettleOut,
    SummaryOut,
    UsageIn,
)
from ._reservations import UnknownReservation, reservations_for
from ._security import BearerAuth, BodyLimit
from ._validation import client_error
from ._writer import GroupWriter

__all__ = ["DEFAULT_MAX_BODY", "ApiError", "create_app"]

logger = logging.getLogger("llmcost.server")

#: Request bodies above this many bytes are refused with 413.
DEFAULT_MAX_BODY = 1024 * 1024
#: Records a page of ``GET /records`` holds at most, and by default.
MAX_PAGE = 10_000
DEFAULT_PAGE = 100

_FIELDS = (
    "amount", "model", "usage", "category", "resource", "description", "provider", "tags", "latency_ms",
    "timestamp", "name", "period", "thresholds", "limit", "buffer", "by", "freq", "since", "until", "tag", "cursor",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "key",
    "service_tier", "units",
)  # fmt: skip


class ApiError(Exception):
    """An error for the client: ``status``, a message naming the value, and the ``field`` it concerns."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def _field_of(message: str, default: str | None = None) -> str | None:
    """The field a library error message names (its messages start with the field: "amount must be ...")."""
    head = re.match(r"\s*([A-Za-z_]+)", message)
    if head and head.group(1) in _FIELDS:
        return head.group(1)
    for name in _FIELDS:
        if re.search(rf"\b{name}\b", message):
            return name
    return default


def _bad(exc: Exception, field: str | None = None) -> ApiError:
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, UnknownModelError):
        return ApiError(400, message, "model")
    return ApiError(400, message, field or _field_of(message))


# -- JSON shapes --------------------------------------------------------------------------------------------------


def _money(value: Decimal) -> str:
    """Money as a string in plain notation (``0.000000001``, never ``1E-9``) without trailing zeros (``0.99``, never
    ``0.990000000000000000``), so that an amount has one shape however it was figured: a budget's ``remaining``
    comes through the store's ledger at 18 places once it has held a reservation."""
    return format(tidy(value), "f")


def record_json(entry: CostEntry) -> dict[str, Any]:
    """An entry as the API shows it: money as a string, time as ISO 8601 UTC."""
    u = entry.usage
    return {
        "id": entry.id,
        "timestamp": entry.timestamp.isoformat(),
        "amount": _money(entry.amount),
        "currency": entry.currency,
        "category": entry.category.value,
        "resource": entry.resource,
        "description": entry.description,
        "model": entry.model,
        "canonical_model": entry.canonical_model,
        "provider": entry.provider,
        "usage": {
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cache_read_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
            "reasoning_tokens": u.reasoning_tokens,
            "units": dict(u.units),
        },
        "latency_ms": entry.latency_ms,
        "tags": dict(entry.tags),
        "pricing": entry.pricing,
        "service_tier": entry.service_tier,
    }


def budget_json(b: Budget) -> dict[str, Any]:
    """A budget and its state in the current period."""
    b.sync(force=True)
    utilization = b.utilization
    return {
        "name": b.name,
        "period": b.period.value if b.period else None,
        "limit": _money(b.limit),
        "spent": _money(b.spent),
        "reserved": _money(b.reserved),
        "remaining": _money(b.remaining),
        "utilization": utilization,
        "level": alert_level(utilization),
        "period_start": b.period_start.isoformat() if b.period_start else None,
        "period_end": b.period_end.isoformat() if b.period_end else None,
        "category": b.category,
        "resource": b.resource,
        "model": b.model,
        "tags": dict(b.tags),
    }


# -- reading query parameters -------------------------------------------------------------------------------------


def _when(value: str | None, field: str) -> datetime | None:
    """An ISO 8601 date or datetime (naive is UTC). A date alone is a whole UTC day, as the CLI and
    ``llmcost.analytics`` read it (``parse_when``): a ``since`` starts at its midnight, an ``until`` takes the day in
    (it ends at the next midnight); a datetime ``until`` is exclusive."""
    if value is None or value == "":
        return None
    text = value.strip()
    try:
        day = date.fromisoformat(text)  # any ISO form of a date alone: 2026-11-28, 20261128, 2026-W48-6
    except ValueError:
        pass
    else:
        return parse_when(day, now=datetime.now(timezone.utc), end_of_day=field == "until", field=field)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{field} must be an ISO 8601 date or datetime, got {value!r}", field) from None
    try:
        return to_utc(moment, field)
    except ValueError as exc:  # a valid datetime whose UTC time falls outside the years 1 to 9999
        raise _bad(exc, field) from None


def _tag_filter(values: Sequence[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    out: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition(":")
        if not sep or not key:
            raise ApiError(400, f"tag must be key:value, got {value!r}", "tag")
        out[key] = rest
    return out


def _window(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    start, end = _when(since, "since"), _when(until, "until")
    if start is not None and end is not None and start >= end:
        raise ApiError(400, f"since ({start.isoformat()}) must be before until ({end.isoformat()})", "since")
    return start, end


#: Budget names that no ``/budgets/{name}`` route can reach: clients drop dot segments from a path, and
#: ``/budgets/check`` is the check route.
_UNREACHABLE_NAMES = (".", "..", "check")


def _addressable(name: str) -> None:
    """Refuse a budget name that its own routes could never reach, rather than save a budget no client can read,
    reserve under or delete by name (a ``/`` splits the path, even sent as ``%2F``)."""
    if "/" in name or name in _UNREACHABLE_NAMES:
        raise ApiError(
            400,
            "name must not contain '/' nor be '.', '..' or 'check' (a budget is reached at "
            f"/api/v1/costs/budgets/{{name}}), got {name!r}",
            "name",
        )


#: The query parameters of ``GET /summary``: anything else (a ``model=``, a misspelt filter) is refused, not
#: ignored, since a filter silently dropped answers with the spend of everything.
_SUMMARY_PARAMS = ("by", "since", "until", "freq", "category", "resource", "tag")


def _only_known(request: Request, known: Sequence[str], *, hint: str = "") -> None:
    for key in request.query_params:
        if key not in known:
            raise ApiError(
                400, f"{key} is not a parameter of {request.url.path}; it takes {', '.join(known)}{hint}", key
            )


def _cursor(entry: CostEntry) -> str:
    raw = f"{entry.timestamp.isoformat()}|{entry.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, entry_id = raw.partition("|")
        return to_utc(datetime.fromisoformat(stamp)), entry_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, f"cursor {cursor!r} is not one this server gave out; start without it", "cursor") from None


def _rows(frame: Any) -> list[dict[str, Any]]:
    rows = []
    for record in frame.to_dict("records"):
        row: dict[str, Any] = {}
        for key, value in record.items():
            if key == "cost":
                row[key] = _money(value)
            elif key == "period":
                # A datetime, written by the response model as it writes ``since`` and every record's timestamp
                # ("2026-05-01T00:00:00Z"), not pandas' isoformat ("...+00:00").
                row[key] = value.to_pydatetime()
            elif isinstance(value, float) and value != value:  # NaN: a missing key
                row[key] = None
            elif hasattr(value, "item"):
                row[key] = value.item()
            else:
                row[key] = value
        rows.append(row)
    return rows


# -- the OpenAPI document's errors ----------------------------------------------------------------------------------

_ERROR_TEXT = {
    400: "A bad value: the message names the field and the value",
    401: "No token, or a wrong one (only when the server has LLMCOST_API_TOKEN)",
    404: "No such budget (field name) or open reservation (field id)",
    409: "The amount does not fit in what the budget has left",
    413: "The request body is over the server's limit (field body)",
    503: "The store cannot be reached",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error responses of a route for the OpenAPI document: 401 and 503 on every route, and ``statuses``; each
    in the one error shape ``{"error", "field"}``."""
    return {status: {"model": ErrorOut, "description": _ERROR_TEXT[status]} for status in (*statuses, 401, 503)}


#: ... and the dashboard's: its errors are JSON as everywhere (named here, or FastAPI would list them as the page's
#: text/html), but to a browser without the token it answers 401 with a sign-in page.
_DASHBOARD_ERRORS: dict[int | str, dict[str, Any]] = {
    **{
        status: {
            "description": _ERROR_TEXT[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
        }
        for status in (400, 503)
    },
    401: {
        "description": "No token, or a wrong one: a sign-in page (only when the server has LLMCOST_API_TOKEN)",
        "content": {"text/html": {"schema": {"type": "string"}}},
    },
}


def _without_422(app: FastAPI) -> None:
    """Make the OpenAPI document leave out FastAPI's 422 ``HTTPValidationError``: this server answers a request that
    fails validation with 400 in its own error shape (``_handlers``), which each route declares."""
    made = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = made()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        shapes = schema.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            shapes.pop(unused, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# -- the application ----------------------------------------------------------------------------------------------


def create_app(
    store: str | CostStore,
    *,
    token: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    refresh_seconds: float = 5.0,
) -> FastAPI:
    """The ``llmcost serve`` application over ``store`` (a URL or a ``CostStore``).

    ``token``: when set, every route but ``/healthz`` needs ``Authorization: Bearer <token>`` (or the dashboard's
    ``llmcost_token`` cookie). ``max_body``: bytes a request body may have (413 above). ``refresh_seconds``: how
    often the dashboard polls.

    Example::

        app = create_app("duckdb:///tmp/costs.duckdb")
    """
    tracker = CostTracker(store)
    manager = BudgetManager(tracker)
    reservations = reservations_for(manager)
    registry = metrics_registry(tracker, manager)
    writer = GroupWriter(tracker)
    store_url = tracker.store.url or repr(tracker.store)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            reservations.close()
            writer.close()
            tracker.close()

    app = FastAPI(
        title="llmcost",
        summary="What LLM calls cost: records, summaries, budgets, reservations, forecasts and metrics.",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.tracker = tracker
    app.state.manager = manager
    _handlers(app)
    _without_422(app)

    def _budget(name: str) -> Budget:
        try:
            return manager.get(name)
        except KeyError:
            raise ApiError(404, f"no budget named {name!r}", "name") from None

    # -- records ------------------------------------------------------------------------------------------------
    @app.get("/api/v1/costs/records", response_model=RecordsPage, tags=["records"], responses=_errors(400))
    def list_records(
        since: str | None = None,
        until: str | None = None,
        category: str | None = None,
        resource: str | None = None,
        model: str | None = None,
        tag: Annotated[list[str] | None, Query(description="key:value, repeatable")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Recorded entries that match every filter, oldest first, a page at a time."""
        start, end = _window(since, until)
        tags = _tag_filter(tag)
        after = _after(cursor) if cursor else None
        if after is not None and (start is None or after[0] > start):
            start = after[0]
        want = limit + 1
        while True:
            try:
                found = tracker.entries(
                    since=start, until=end, category=category, resource=resource, model=model, tags=tags, limit=want
                )
            except (TypeError, ValueError) as exc:
                raise _bad(exc) from None
            page = [e for e in found if after is None or (e.timestamp, e.id) > after]
            if len(page) > limit or len(found) < want:
                break
            want *= 2  # many entries share the cursor's timestamp: read further
        more = len(page) > limit
        page = page[:limit]
        return {"records": [record_json(e) for e in page], "next_cursor": _cursor(page[-1]) if more else None}

    @app.post(
        "/api/v1/costs/records",
        status_code=201,
        response_model=RecordsCreated,
        tags=["records"],
        responses=_errors(400, 413),
    )
    async def post_records(body: Annotated[RecordIn | list[RecordIn], Body()]) -> dict[str, Any]:
        """Record one entry or a list of them: priced on the server from ``model`` and ``usage``, or ``amount`` as
        given. A list is checked whole before any of it is recorded. The answer comes once they are in the store."""
        items = body if isinstance(body, list) else [body]
        if not items:
            raise ApiError(400, "the list of records is empty; send one record or more", None)
        entries = []
        for n, item in enumerate(items):
            try:
                entries.append(_build(tracker, item))
            except (TypeError, ValueError, LlmcostError) as exc:
                err = _bad(exc)
                if len(items) > 1:
                    err.message = f"record {n}: {err.message}"
                raise err from None
        writer.check_writable()  # a 503, as a budget write gets: not a 201 for entries only spilled on this host
        await writer.write_async(entries)  # pricing is quick; only the store write is waited for, off the loop
        return {"records": [record_json(e) for e in entries]}

    # -- summary ------------------------------------------------------------------------------------------------
    @app.get("/api/v1/costs/summary", response_model=SummaryOut, tags=["summary"], responses=_errors(400))
    def summary(
        request: Request,
        by: Annotated[
            list[str] | None, Query(description="category, resource, model, provider or tag:KEY; comma-separated")
        ] = None,
        since: str | None = None,
        until: str | None = None,
        freq: str | None = None,
        category: str | None = None,
        resource: str | None = None,
        tag: Annotated[list[str] | None, Query(description="key:value, repeatable")] = None,
    ) -> dict[str, Any]:
        """Spend grouped by ``by`` (default category), per period with ``freq`` (h, D, W, MS), exact."""
        _only_known(request, _SUMMARY_PARAMS, hint=" (for one model's spend, group with by=model)")
        keys = [k.strip() for value in (by or ["category"]) for k in value.split(",") if k.strip()]
        start, end = _window(since, until)
        tags = _tag_filter(tag)
        try:
            frame = exact_spend(
                tracker, by=keys, since=start, until=end, freq=freq, category=category, resource=resource, tags=tags
            )
            total = exact_spend(tracker, by=(), since=start, until=end, category=category, resource=resource, tags=tags)
        except (TypeError, ValueError) as exc:
            raise _bad(exc) from None
        head = total.iloc[0] if len(total) else None
        return {
            "by": keys,
            "freq": freq,
            "since": start,
            "until": end,
            "total": _money(head.cost) if head is not None else "0",
            "calls": int(head.calls) if head is not None else 0,
            "input_tokens": int(head.input_tokens) if head is not None else 0,
            "output_tokens": int(head.output_tokens) if head is not None else 0,
            "rows": _rows(frame),
        }

    # -- budgets ------------------------------------------------------------------------------------------------
    @app.get("/api/v1/costs/budgets", response_model=list[BudgetOut], tags=["budgets"], responses=_errors())
    def list_budgets() -> list[dict[str, Any]]:
        """Every budget saved in the store, with its state in the current period."""
        reservations.expire()
        return [budget_json(b) for b in manager.list()]

    @app.post(
        "/api/v1/costs/budgets",
        status_code=201,
        response_model=BudgetOut,
        tags=["budgets"],
        responses=_errors(400, 413),
    )
    def create_budget(body: BudgetIn) -> dict[str, Any]:
        """Create (or replace) a named budget; it is saved in the store and enforced wherever the store is used."""
        _addressable(body.name)
        options: dict[str, Any] = {
            "category": body.category,
            "resource": body.resource,
            "model": body.model,
            "tags": body.tags,
        }
        if body.thresholds is not None:
            options["thresholds"] = body.thresholds
        try:
            # Bounded as records are, so that no answer about the budget grows to the size of its number.
            limit = to_amount(body.amount, "amount")
            made = manager.create(body.name, limit, body.period, **options)
        except (TypeError, ValueError) as exc:
            raise _bad(exc) from None
        return budget_json(made)

    @app.get("/api/v1/costs/budgets/check", response_model=CheckOut, tags=["budgets"], responses=_errors(400, 404))
    def check_budget(amount: str, name: str | None = None) -> dict[str, Any]:
        """Whether ``amount`` fits in what remains of budget ``name`` (of every budget when no name is given)."""
        try:
            needed = to_amount(amount, "amount")
        except (TypeError, ValueError) as exc:
            raise _bad(exc, "amount") from None
        reservations.expire()
        targets = [_budget(name)] if name else manager.list()
        for b in targets:
            b.sync(force=True)
        tightest = min(targets, key=lambda b: b.remaining, default=None)
        fits = all(b.remaining > 0 and needed <= b.remaining for b in targets)
        return {
            "name": name,
            "amount": _money(needed),
            "can_spend": fits,
            "remaining": _money(tightest.remaining) if tightest else None,
            "utilization": tightest.utilization if tightest else None,
        }

    @app.get("/api/v1/costs/budgets/{name}", response_model=BudgetOut, tags=["budgets"], responses=_errors(404))
    def get_budget(name: str) -> dict[str, Any]:
        """One budget and its state in the current period."""
        reservations.expire()
        return budget_json(_budget(name))

    @app.delete("/api/v1/costs/budgets/{name}", tags=["budgets"], responses=_errors(404))
    def delete_budget(name: str) -> dict[str, Any]:
        """Stop enforcing and forget the budget ``name``."""
        if not manager.delete(name):
            raise ApiError(404, f"no budget named {name!r}", "name")
        return {"deleted": name}

    @app.post(
        "/api/v1/costs/budgets/{name}/reservations",
        status_code=201,
        response_model=ReservationOut,
        tags=["budgets"],
        responses=_errors(400, 404, 409, 413),
    )
    def reserve(name: str, body: ReservationIn) -> dict[str, Any]:
        """Hold ``amount`` under the budget before a call (409 when it does not fit); settle it after the call."""
        try:
            amount = to_amount(body.amount, "amount")
        except (TypeError, ValueError) as exc:
            raise _bad(exc, "amount") from None
        if amount < 0:
            raise ApiError(400, f"amount must not be negative, got {body.amount!r}", "amount")
        _budget(name)
        try:
            held = reservations.reserve(name, amount, lease=body.lease_seconds)
        except KeyError:
            raise ApiError(404, f"no budget named {name!r}", "name") from None
        except BudgetExceeded as exc:
            raise ApiError(409, str(exc), "amount") from None
        return {
            "id": held.id,
            "budget": held.budget,
            "amount": _money(held.amount),
            "remaining": _money(held.remaining),
            "expires_at": held.expires_at,
        }

    @app.post(
        "/api/v1/costs/budgets/{name}/reservations/{reservation_id}/settle",
        response_model=SettleOut,
        tags=["budgets"],
        responses=_errors(400, 404, 413),
    )
    def settle(name: str, reservation_id: str, body: Annotated[SettleIn | None, Body()] = None) -> dict[str, Any]:
        """Record what the call cost (as ``POST /records``; category, resource, model and tags default to the
        budget's) and release the hold. No ``amount`` or ``model`` (nor ``usage`` under a per-model budget): nothing
        is recorded, the hold is released."""
        target = _budget(name)
        entry = None
        # Usage alone is priced at a per-model budget's model, as a body naming that model would be.
        if body is not None and (
            body.amount is not None or body.model is not None or (body.usage is not None and target.model is not None)
        ):
            defaults = {
                "category": body.category or target.category or "llm_inference",
                "resource": body.resource if body.resource is not None else target.resource,
                "model": body.model if body.model is not None else target.model,  # so that it counts against it
                "tags": {**dict(target.tags), **(body.tags or {})},
            }
            try:
                entry = _build(tracker, body, **defaults)  # a bad body is refused before the hold is touched
            except (TypeError, ValueError, LlmcostError) as exc:
                raise _bad(exc) from None
        try:
            reservations.claim(reservation_id, name)
        except UnknownReservation:
            raise ApiError(
                404,
                f"no open reservation {reservation_id!r} under budget {name!r} (settled already, or its lease ran out)",
                "id",
            ) from None
        try:
            if entry is not None:
                writer.write([entry])  # recorded (and counted) before the hold goes: never counted by neither
        finally:
            # Settled even if the store failed (the tracker keeps the entry buffered and writes it later).
            remaining = reservations.settle(reservation_id, entry.amount if entry is not None else Decimal(0))
        return {
            "id": reservation_id,
            "budget": name,
            "settled": True,
            "record": record_json(entry) if entry is not None else None,
            "remaining": _money(remaining),
        }

    # -- forecast -----------------------------------------------------------------------------------------------
    @app.post("/api/v1/costs/forecast", response_model=ForecastOut, tags=["forecast"], responses=_errors(400, 413))
    def forecast(body: ForecastIn) -> dict[str, Any]:
        """The cost of pending work (``analytics.forecast_tasks``)."""
        per_part = {"avg_input_tokens": body.avg_input_tokens, "avg_output_tokens": body.avg_output_tokens}
        given = [f"{k}={v!r}" for k, v in per_part.items() if v is not None]
        if given and body.avg_tokens_per_task is not None:  # which to price would be a guess: neither is
            raise ApiError(
                400,
                "give avg_input_tokens and avg_output_tokens, or avg_tokens_per_task, not both; got "
                f"{', '.join(given)} and avg_tokens_per_task={body.avg_tokens_per_task!r}",
                "avg_tokens_per_task",
            )
        try:
            buffer = to_money(body.buffer, "buffer")
            if body.avg_input_tokens is None and body.avg_output_tokens is None:
                if body.avg_tokens_per_task is None:
                    raise ApiError(
                        400, "give avg_input_tokens and avg_output_tokens, or avg_tokens_per_task", "avg_input_tokens"
                    )
                each = body.avg_tokens_per_task
                as_input = forecast_tasks(body.pending_task_count, each, 0, body.model, buffer=buffer)
                as_output = forecast_tasks(body.pending_task_count, 0, each, body.model, buffer=buffer)
                inputs, outputs = (each, 0.0) if as_input >= as_output else (0.0, each)
                cost = max(as_input, as_output)
            else:
                inputs, outputs = body.avg_input_tokens or 0.0, body.avg_output_tokens or 0.0
                cost = forecast_tasks(body.pending_task_count, inputs, outputs, body.model, buffer=buffer)
        except UnknownModelError as exc:
            raise ApiError(400, str(exc), "model") from None
        except (TypeError, ValueError) as exc:
            raise _forecast_error(exc, body) from None
        count = body.pending_task_count
        return {
            "model": body.model,
            "pending_task_count": count,
            "avg_input_tokens": inputs,
            "avg_output_tokens": outputs,
            "buffer": _money(buffer),
            "estimated_cost": _money(cost),
            "cost_per_task": _money(cost / count if count else Decimal(0)),
        }

    # -- operations ---------------------------------------------------------------------------------------------
    @app.get("/metrics", tags=["operations"], response_class=Response, responses=_errors())
    def metrics() -> Response:
        """Spend, calls, tokens and budgets in the Prometheus text format, read from the store on each scrape."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        tracker.flush()
        reservations.expire()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, Any]:
        """Liveness: no token needed; says nothing about the data."""
        return {"status": "ok"}

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)  # browsers ask for it; the dashboard has none

    @app.get("/", response_class=HTMLResponse, tags=["dashboard"], responses=_DASHBOARD_ERRORS)
    def dashboard(
        period: str | None = None,
        category: str | None = None,
        resource: str | None = None,
        tag: str | None = None,
        fragment: bool = False,
    ) -> HTMLResponse:
        """The dashboard: the HTML report, live, with filters for period, category, resource and tag."""
        try:
            filters = Filters.parse(period=period, category=category, resource=resource, tag=tag)
        except FilterError as exc:
            raise _bad(exc, exc.field) from None
        if fragment:
            return HTMLResponse(dashboard_fragment(tracker, filters, store=store_url))
        page = dashboard_page(tracker, filters, store=store_url, refresh_seconds=refresh_seconds)
        return HTMLResponse(page)

    app.add_middleware(BearerAuth, token=token, open_paths=("/healthz",))  # type: ignore[arg-type]
    app.add_middleware(BodyLimit, max_bytes=max_body)  # type: ignore[arg-type]
    return app


def _build(tracker: CostTracker, item: RecordIn, **defaults: Any) -> CostEntry:
    given = {
        "category": item.category,
        "resource": item.resource,
        "model": item.model,
        "tags": item.tags,
        **{k: v for k, v in defaults.items() if v is not None},
    }
    if item.amount is None and given["model"] is None:
        raise ApiError(400, "a record needs model= (with usage) to be priced on the server, or amount=", "model")
    return tracker.build(
        amount=item.amount,
        description=item.description,
        provider=item.provider,
        latency_ms=item.latency_ms,
        timestamp=item.timestamp,
        service_tier=item.service_tier,
        usage=_usage(item.usage),
        **given,
    )


def _usage(given: UsageIn | None) -> Usage | None:
    """The ``Usage`` of a record's ``usage``, checked by ``Usage`` as ``record`` checks it."""
    if given is None:
        return None
    try:
        return Usage(
            given.input_tokens,
            given.output_tokens,
            given.cache_read_tokens,
            given.cache_write_tokens,
            given.reasoning_tokens,
            units=given.units or NO_UNITS,
        )
    except (TypeError, ValueError) as exc:
        err = _bad(exc)
        err.field = f"usage.{err.field}" if err.field else "usage"  # where the client wrote it
        raise err from None


#: The library's names, in ``forecast_tasks`` and ``cost_of`` errors, of the averages a forecast request sends.
_FORECAST_NAMES = {
    "count": "pending_task_count",
    "avg_input_tokens": "avg_input_tokens",
    "input_tokens": "avg_input_tokens",
    "avg_output_tokens": "avg_output_tokens",
    "output_tokens": "avg_output_tokens",
}


def _forecast_error(exc: Exception, body: ForecastIn) -> ApiError:
    """An error of ``forecast_tasks`` (or the ``cost_of`` it calls) in the request's words: the field the client
    sent and the value as sent. ``avg_tokens_per_task`` is priced as input or as output tokens, so an error about
    either is about it."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    head = re.match(r"([A-Za-z_]+)(.*?)(?:, got .*)?$", message)
    if head is None or head.group(1) not in _FORECAST_NAMES:
        return ApiError(400, message, _field_of(message))
    field = _FORECAST_NAMES[head.group(1)]
    if field != "pending_task_count" and body.avg_tokens_per_task is not None:
        field = "avg_tokens_per_task"
    return ApiError(400, f"{field}{head.group(2)}, got {getattr(body, field)!r}", field)


def _error(status: int, message: str, field: str | None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


def _handlers(app: FastAPI) -> None:
    """Every failure as ``{"error", "field"}``; nothing leaks a stack trace."""

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error(exc.status, exc.message, exc.field)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        if errors and errors[0].get("type") == "json_invalid":
            return _error(400, "the body is not valid JSON", None)
        message, field = client_error(errors, exc.body)
        return _error(400, message, field)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return _error(404, f"no route {request.method} {request.url.path}", None)
        if exc.status_code == 405:
            return _error(405, f"{request.method} is not allowed on {request.url.path}", None)
        return _error(exc.status_code, str(exc.detail), None)

    async def store_down(request: Request, exc: Exception) -> Response:
        logger.warning("llmcost serve: store error on %s %s: %s", request.method, request.url.path, exc)
        return _error(503, f"the store cannot be reached: {' '.join(str(exc).split())}", None)

    async def unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("llmcost serve: %s %s failed", request.method, request.url.path)
        return _error(500, "internal error; the server log has the details", None)

    handlers: dict[Any, Callable[[Request, Exception], Any]] = {
        ApiError: api_error,
        RequestValidationError: invalid,
        StarletteHTTPException: http_error,
        StoreError: store_down,
        OSError: store_down,
        duckdb.Error: store_down,
        Exception: unexpected,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)
