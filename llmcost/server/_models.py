"""The JSON bodies of ``llmcost serve``, as pydantic models: they shape the requests and responses and the OpenAPI
document, and nothing more. Values are checked where the library checks them (``CostTracker.record``,
``BudgetManager.create``, ``analytics.forecast_tasks``), so the server never has rules of its own.

Money is a string in every response (``"0.0123"``); requests take a string or a number (a float is read through
``str()``, so 0.1 stays 0.1).

Example::

    >>> RecordIn(model="gpt-4o", usage=UsageIn(input_tokens=1000, output_tokens=200)).model
    'gpt-4o'
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator
from pydantic_core import PydanticCustomError

__all__ = [
    "BudgetIn",
    "BudgetOut",
    "CheckOut",
    "Count",
    "ErrorOut",
    "ForecastIn",
    "ForecastOut",
    "Money",
    "Number",
    "RecordIn",
    "RecordOut",
    "RecordsPage",
    "ReservationIn",
    "ReservationOut",
    "SettleIn",
    "SettleOut",
    "SummaryOut",
    "UsageIn",
]


def _as_sent(value: object) -> object:
    # Checked where the library checks money (``to_money``), so that JSON true is refused as record(amount=True)
    # is, with its message; a union of str, int and float would take true as 1.
    return value


def _not_bool(value: object) -> object:
    # The library takes no bool for a count or a number (record(input_tokens=True) raises); pydantic would take
    # true as 1 and false as 0.
    if isinstance(value, bool):
        raise PydanticCustomError("number_type", "Input should be a number, not a boolean")
    return value


#: Money on the way in: a decimal string (exact) or a JSON number, checked by the library where it is used.
Money = Annotated[str | int | float, PlainValidator(_as_sent, json_schema_input_type=str | int | float)]
#: A count (tokens, units, tasks) or a number on the way in: anything pydantic reads as one, but a JSON boolean.
Count = Annotated[int, BeforeValidator(_not_bool)]
Number = Annotated[float, BeforeValidator(_not_bool)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class UsageIn(_Strict):
    """Token counts (the genai-prices convention: ``input_tokens`` includes cached ones)."""

    input_tokens: Count = 0
    output_tokens: Count = 0
    cache_read_tokens: Count = 0
    cache_write_tokens: Count = 0
    reasoning_tokens: Count = 0
    units: dict[str, Count] | None = Field(
        default=None,
        description="further counts by genai-prices usage name (cache_write_1h_tokens, web_searches...), each a part "
        "of its whole (a 1-hour cache write is part of cache_write_tokens)",
    )


class RecordIn(_Strict):
    """One cost to record: priced on the server from ``model`` and ``usage``, or ``amount`` as given."""

    model: str | None = None
    usage: UsageIn | None = None
    amount: Money | None = Field(default=None, description="USD; when given, recorded as is (pricing 'given')")
    category: str = "llm_inference"
    resource: str | None = None
    description: str = ""
    provider: str | None = None
    tags: dict[str, str] | None = None
    latency_ms: Number | None = None
    timestamp: datetime | None = Field(default=None, description="ISO 8601; naive is UTC; default: now")
    service_tier: str | None = Field(
        default=None,
        description="null (standard), batch, flex, priority or fast; us, or a tier with +us (Anthropic's US-only "
        "inference)",
    )


class UsageOut(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    units: dict[str, int]


class RecordOut(BaseModel):
    """A recorded entry."""

    model_config = ConfigDict(protected_namespaces=())

    id: str
    timestamp: datetime
    amount: str
    currency: str
    category: str
    resource: str | None
    description: str
    model: str | None
    canonical_model: str | None = Field(description="the catalog's id of the model that priced it; null when unpriced")
    provider: str | None
    usage: UsageOut
    latency_ms: float | None
    tags: dict[str, str]
    pricing: str
    service_tier: str | None


class RecordsPage(BaseModel):
    """Entries oldest first; ``next_cursor`` fetches the next page (``null`` on the last)."""

    records: list[RecordOut]
    next_cursor: str | None


class RecordsCreated(BaseModel):
    records: list[RecordOut]


class SummaryOut(BaseModel):
    """Spend grouped by ``by`` (and per period with ``freq``): each row has the keys, then ``cost`` (a string),
    ``calls`` and the token counts."""

    by: list[str]
    freq: str | None
    since: datetime | None
    until: datetime | None
    total: str
    calls: int
    input_tokens: int
    output_tokens: int
    rows: list[dict[str, Any]]


class ErrorOut(BaseModel):
    """Every error the server answers (any 4xx, and 503 when the store cannot be reached): what was wrong, with the
    value, and the field it concerns as the request wrote it (``usage.input_tokens``), or null."""

    error: str
    field: str | None


class BudgetIn(_Strict):
    """A named budget, saved in the store (``BudgetManager.create``)."""

    name: str
    amount: Money = Field(description="the limit in USD per period")
    period: str = Field(description="hourly, daily, weekly, monthly or total")
    category: str | None = None
    resource: str | None = None
    model: str | None = Field(default=None, description="a per-model limit: this model's entries (by catalog id)")
    tags: dict[str, str] | None = None
    thresholds: list[Number] | None = None


class BudgetOut(BaseModel):
    name: str
    period: str | None
    limit: str
    spent: str
    reserved: str
    remaining: str
    utilization: float
    level: str
    period_start: datetime | None
    period_end: datetime | None
    category: str | None
    resource: str | None
    model: str | None
    tags: dict[str, str]


class CheckOut(BaseModel):
    """Whether ``amount`` fits in what remains of the budget ``name`` (of every budget when no name is given)."""

    name: str | None
    amount: str
    can_spend: bool
    remaining: str | None
    utilization: float | None


class ReservationIn(_Strict):
    amount: Money = Field(description="USD to hold under the budget until settled")
    lease_seconds: Number = Field(default=60.0, gt=0, le=86400, description="released unsettled after this")


class ReservationOut(BaseModel):
    id: str
    budget: str
    amount: str
    remaining: str
    expires_at: datetime


class SettleIn(RecordIn):
    """What the call cost, as for ``POST /records`` (``amount``, or ``model`` and ``usage``); category, resource,
    model and tags default to the budget's (so ``usage`` alone is priced at a per-model budget's model). An empty
    body records nothing and just releases the hold."""

    category: str | None = None  # type: ignore[assignment]


class SettleOut(BaseModel):
    id: str
    budget: str
    settled: bool
    record: RecordOut | None
    remaining: str


class ForecastIn(_Strict):
    """Pending work: ``pending_task_count`` tasks on ``model``, of ``avg_input_tokens`` and ``avg_output_tokens``
    each (or, instead, ``avg_tokens_per_task``, priced at the dearer of the input and output rates), times
    ``buffer``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    pending_task_count: Count
    model: str
    avg_input_tokens: Number | None = None
    avg_output_tokens: Number | None = None
    avg_tokens_per_task: Number | None = None
    buffer: Money = "1.2"


class ForecastOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    pending_task_count: int
    avg_input_tokens: float
    avg_output_tokens: float
    buffer: str
    estimated_cost: str
    cost_per_task: str
