"""Provider invoices read into one shape: ``read_invoice`` turns the OpenAI organization costs API JSON, the Anthropic
Admin API cost report JSON, the Anthropic console's cost CSV export, or a plain CSV into daily ``InvoiceLine`` s.

The shapes, as the providers document them:

* OpenAI ``GET /v1/organization/costs`` (https://platform.openai.com/docs/api-reference/usage/costs): a page
  ``{"object": "page", "data": [bucket...], "has_more", "next_page"}``; each bucket
  ``{"object": "bucket", "start_time", "end_time" (unix seconds, one day), "results": [...]}``; each result
  ``{"object": "organization.costs.result", "amount": {"value": number, "currency": "usd"}, "line_item",
  "project_id", "organization_id"}``. ``line_item`` (with ``group_by=line_item``) names the model and the part billed:
  ``"gpt-4o-2024-08-06, input"``, ``"gpt-4o-2024-08-06, output"``; other line items name other services.
  Several pages (``has_more``) may be given as a JSON list of pages.
* Anthropic ``GET /v1/organizations/cost_report`` (https://platform.claude.com/docs/en/api/admin/cost_report):
  ``{"data": [bucket...], "has_more", "next_page"}``; each bucket ``{"starting_at", "ending_at" (RFC 3339),
  "results": [...]}``; each result ``{"currency": "USD", "amount": "123.45"`` (lowest currency units, cents, as a
  decimal string: $1.2345), ``"workspace_id", "description", "cost_type", "model", "service_tier",
  "context_window", "token_type"}`` (``model`` and the rest null unless grouped by description).
* The Anthropic console's cost CSV export (Console, Cost, Export): columns ``usage_date_utc, model, workspace,
  api_key, usage_type, context_window, token_type, cost_usd, ...``; ``model`` is a display name
  (``Claude Sonnet 4.5``) and ``cost_usd`` is in dollars.
* A plain CSV: ``date, model, amount`` and optionally ``project`` and ``currency`` (USD only).

Example::

    >>> invoice = read_invoice("openai-costs.json")
    >>> invoice.provider, invoice.start, len(invoice.lines)
    ('openai', datetime.datetime(2024, 5, 14, 0, 0, tzinfo=datetime.timezone.utc), 8)
    >>> line = invoice.lines[0]
    >>> line.day, line.model, line.kind, line.amount
    (datetime.date(2024, 5, 14), 'gpt-4o-2024-08-06', 'input', Decimal('3.2'))
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from itertools import pairwise
from os import PathLike
from pathlib import Path
from typing import Any

import attrs

from .._money import ZERO, to_amount

__all__ = ["Invoice", "InvoiceLine", "read_invoice"]

_DAY = timedelta(days=1)


@attrs.frozen
class InvoiceLine:
    """One billed amount: the UTC day, the model as the invoice names it (``None`` when it names none), the
    project or workspace, the amount in USD, half a unit of its last printed digit (what rounding may hide; at most
    half a cent for a JSON number or a float, whose printed places say nothing), what was billed (``"input"``,
    ``"output"``, a token or cost type) and the service tier where the invoice says."""

    day: date
    model: str | None
    project: str | None
    amount: Decimal
    allowance: Decimal
    kind: str | None = None
    tier: str | None = None


@attrs.frozen
class Invoice:
    """An invoice's lines and what it covers: ``start`` (inclusive) to ``end`` (exclusive), UTC."""

    format: str  #: "openai", "anthropic", "anthropic-csv" or "csv"
    provider: str | None
    start: datetime
    end: datetime
    lines: tuple[InvoiceLine, ...]
    has_model: bool
    has_project: bool


_HALF_CENT = Decimal("0.005")


def _allowance(amount: Decimal, value: object, unit: Decimal = Decimal(1), *, number: bool = False) -> Decimal:
    """What rounding may hide of ``amount`` (read from ``value``, in units of ``unit`` dollars), in dollars: half a
    unit of its last printed digit. A float (a DataFrame's column, as ``pd.read_csv`` makes it) has lost the places
    it was printed with ("3.50" reads as 3.5), and a JSON number (``number``: the OpenAI costs API's
    ``amount.value``, a float the API prints as briefly as it reads back, ``2.5`` for 2.50 or 2.5000000001) never
    said them, so their allowance is at most half a cent: invoices bill dollars to the cent or finer.

    >>> _allowance(Decimal("2.5"), "2.5"), _allowance(Decimal("2.5"), Decimal("2.5"), number=True)
    (Decimal('0.05'), Decimal('0.005'))
    """
    exponent = amount.as_tuple().exponent
    found = Decimal(5).scaleb(exponent - 1) * unit if isinstance(exponent, int) and exponent < 0 else ZERO
    return min(found, _HALF_CENT) if number or isinstance(value, float) else found


def _decimal(value: object, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal, float)):
        raise ValueError(f"invoice field {field} must be a number, got {value!r}")
    # Finite and within what money can hold, as every amount recorded is: an amount of 1e400 would otherwise
    # fail deep in the reconciliation's sums with a bare decimal.InvalidOperation.
    return to_amount(str(value), f"invoice field {field}")


def _currency(value: object, field: str) -> None:
    if not isinstance(value, str) or value.strip().upper() != "USD":
        raise ValueError(f"invoice field {field} is {value!r}: llmcost records USD, so only USD invoices reconcile")


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None


def read_invoice(invoice: Any, *, provider: str | None = None) -> Invoice:
    """``invoice`` (a path, a DataFrame, or already-parsed JSON) as an ``Invoice``; see the module docstring for
    the shapes. A file that is neither, a missing field or column, a non-USD currency, buckets longer than a day
    or overlapping ones raise ``ValueError`` naming the field and the value.

    Example::

        >>> read_invoice("anthropic-costs.csv").format
        'anthropic-csv'
        >>> read_invoice("anthropic-costs.csv").lines[0].model
        'Claude 3.5 Sonnet'
    """
    import pandas as pd

    if isinstance(invoice, pd.DataFrame):
        return _checked(
            _from_rows(list(invoice.columns), invoice.itertuples(index=False, name=None), "frame"), provider
        )
    if isinstance(invoice, (Mapping, list)):
        return _checked(_from_json(invoice, "invoice"), provider)
    if not isinstance(invoice, (str, PathLike)):
        raise TypeError(f"invoice must be a path, a DataFrame or parsed JSON, got {type(invoice)!r}")
    path = Path(invoice)
    name = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"invoice {name!r} is neither JSON nor CSV: it is not UTF-8 text") from None
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" or stripped.startswith(("{", "[")):
        try:
            data = json.loads(text, parse_float=Decimal)
        except ValueError as exc:
            raise ValueError(f"invoice {name!r} is not valid JSON: {exc}") from None
        return _checked(_from_json(data, name), provider)
    first = stripped.splitlines()[0] if stripped else ""
    if "," not in first:
        raise ValueError(
            f"invoice {name!r} is neither JSON nor CSV (first line {first[:60]!r}); give the provider's costs JSON, "
            "the Anthropic console cost CSV, or a CSV with date, model, amount"
        )
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    return _checked(_from_rows(header, reader, name), provider)


def _checked(found: Invoice, provider: str | None) -> Invoice:
    if provider is not None and found.provider is not None and provider.lower() != found.provider:
        raise ValueError(f"provider is {provider!r} but the invoice is {found.provider!r}'s ({found.format} format)")
    if provider is not None and found.provider is None:
        found = attrs.evolve(found, provider=provider.lower())
    return found


# -- JSON -----------------------------------------------------------------------------------------------------------
def _from_json(data: Any, name: str) -> Invoice:
    pages = data if isinstance(data, list) else [data]
    buckets: list[tuple[str, Mapping[str, Any]]] = []
    for p, page in enumerate(pages):
        where = f"[{p}]" if isinstance(data, list) else ""
        if not isinstance(page, Mapping) or not isinstance(page.get("data"), list):
            raise ValueError(
                f"invoice {name!r}{where} has no 'data' list of buckets: expected the OpenAI organization costs or "
                f"the Anthropic cost report response, got {_shape(page)}"
            )
        buckets.extend((f"{where}data[{i}]", b) for i, b in enumerate(page["data"]))
    openai = any(isinstance(b, Mapping) and "start_time" in b for _, b in buckets)
    anthropic = any(isinstance(b, Mapping) and "starting_at" in b for _, b in buckets)
    if openai and anthropic:
        raise ValueError(f"invoice {name!r} mixes OpenAI buckets (start_time) and Anthropic ones (starting_at)")
    lines: list[InvoiceLine] = []
    spans: list[tuple[datetime, datetime, str]] = []
    for where, bucket in buckets:
        if not isinstance(bucket, Mapping):
            raise ValueError(f"invoice {name!r}: {where} must be a bucket object, got {bucket!r}")
        if anthropic:
            start = _rfc3339(bucket.get("starting_at"), f"{where}.starting_at")
            end = _rfc3339(bucket.get("ending_at"), f"{where}.ending_at")
        else:
            start = _unix(bucket.get("start_time"), f"{where}.start_time")
            end = _unix(bucket.get("end_time"), f"{where}.end_time")
        if not start < end <= start + _DAY:
            raise ValueError(
                f"invoice {name!r}: {where} runs from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC; "
                "reconcile reads daily buckets (bucket_width=1d)"
            )
        if (end - timedelta(microseconds=1)).date() != start.date():
            # A day long, but across a UTC midnight: fetched from a local midnight (the API aligns its buckets to
            # the start time asked for), so its amounts cannot be told to the UTC days entries are summed by.
            raise ValueError(
                f"invoice {name!r}: {where} runs from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, across a UTC "
                "midnight; reconcile reads buckets of whole UTC days: fetch the report with its start at 00:00 UTC"
            )
        spans.append((start, end, where))
        results = bucket.get("results")
        if not isinstance(results, list):
            raise ValueError(f"invoice {name!r}: {where}.results must be a list, got {results!r}")
        for j, result in enumerate(results):
            field = f"{where}.results[{j}]"
            if not isinstance(result, Mapping):
                raise ValueError(f"invoice {name!r}: {field} must be an object, got {result!r}")
            lines.append(_anthropic_line(result, start, field) if anthropic else _openai_line(result, start, field))
    spans.sort()
    for (_, e1, w1), (s2, _, w2) in pairwise(spans):
        if s2 < e1:
            raise ValueError(
                f"invoice {name!r}: periods overlap: {w2} starts at {s2:%Y-%m-%d %H:%M} before {w1} ends at "
                f"{e1:%Y-%m-%d %H:%M} (the same page given twice?)"
            )
    if not spans:
        raise ValueError(f"invoice {name!r} has no buckets in 'data'")
    return Invoice(
        format="anthropic" if anthropic else "openai",
        provider="anthropic" if anthropic else "openai",
        start=spans[0][0],
        end=max(e for _, e, _ in spans),
        lines=tuple(lines),
        has_model=any(line.model is not None for line in lines),
        has_project=any(line.project is not None for line in lines),
    )


def _shape(value: Any) -> str:
    if isinstance(value, Mapping):
        return f"an object with keys {sorted(map(str, value))[:8]}"
    return type(value).__name__


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def _unix(value: object, field: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValueError(f"invoice field {field} must be unix seconds (an integer), got {value!r}")
    try:
        return datetime.fromtimestamp(int(value), tz=timezone.utc)
    except (OverflowError, OSError, ValueError):  # "year 3170843 is out of range" named neither field nor value
        raise ValueError(
            f"invoice field {field} must be unix seconds within 0001-01-01 to 9999-12-31 UTC, got {value!r}"
        ) from None


def _rfc3339(value: object, field: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"invoice field {field} must be an RFC 3339 timestamp, got {value!r}")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"invoice field {field} must be an RFC 3339 timestamp, got {value!r}") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _openai_line(result: Mapping[str, Any], start: datetime, field: str) -> InvoiceLine:
    kind = result.get("object")
    if kind is not None and kind != "organization.costs.result":
        raise ValueError(f"invoice field {field}.object is {kind!r}, expected 'organization.costs.result'")
    amount = result.get("amount")
    if not isinstance(amount, Mapping) or "value" not in amount:
        raise ValueError(f"invoice field {field}.amount must be {{'value': ..., 'currency': 'usd'}}, got {amount!r}")
    _currency(amount.get("currency"), f"{field}.amount.currency")
    value = _decimal(amount["value"], f"{field}.amount.value")
    line_item = _text(result.get("line_item"))
    model = part = None
    if line_item is not None and "," in line_item:
        # "gpt-4o-2024-08-06, input": the model, then what was billed (", cached input", ", output"...).
        model, _, rest = line_item.partition(",")
        model, part = model.strip(), (rest.strip() or None)
    elif line_item is not None:
        part = line_item  # a charge without a model part ("web search tool calls", storage...)
    tier = next((t for t in ("batch", "flex", "priority") if part and t in part.lower()), None)
    # A JSON number (parsed as a Decimal, or a float where the caller parsed the JSON), not a string of digits.
    number = not isinstance(amount["value"], str)
    allowance = _allowance(value, amount["value"], number=number)
    return InvoiceLine(start.date(), model, _text(result.get("project_id")), value, allowance, part, tier)


def _anthropic_line(result: Mapping[str, Any], start: datetime, field: str) -> InvoiceLine:
    if "amount" not in result:
        raise ValueError(f"invoice field {field}.amount is missing (cost in cents, as a decimal string)")
    _currency(result.get("currency", "USD"), f"{field}.currency")
    cents = _decimal(result["amount"], f"{field}.amount")
    dollars = cents.scaleb(-2)
    model = _text(result.get("model"))
    kind = _text(result.get("token_type")) or _text(result.get("cost_type"))
    return InvoiceLine(
        start.date(),
        model,
        _text(result.get("workspace_id")),
        dollars,
        # A decimal string, as documented, keeps its printed places; a JSON number is capped as OpenAI's are.
        _allowance(cents, result["amount"], Decimal("0.01"), number=not isinstance(result["amount"], str)),
        kind,
        _text(result.get("service_tier")),
    )


# -- CSV ------------------------------------------------------------------------------------------------------------
_ANTHROPIC_CSV = ("usage_date_utc", "model", "cost_usd")
_PLAIN_CSV = ("date", "model", "amount")


def _from_rows(header: Sequence[Any], rows: Iterable[Sequence[Any]], name: str) -> Invoice:
    columns = [str(c).strip().lower() for c in header]
    if all(c in columns for c in _ANTHROPIC_CSV):
        fmt, wanted, project, provider = "anthropic-csv", _ANTHROPIC_CSV, "workspace", "anthropic"
    elif all(c in columns for c in _PLAIN_CSV):
        fmt, wanted, project, provider = "csv", _PLAIN_CSV, "project", None
    else:
        missing = [c for c in _PLAIN_CSV if c not in columns]
        raise ValueError(
            f"invoice {name!r} has no {', '.join(repr(c) for c in missing)} column (columns: {columns}); expected "
            "date, model, amount [, project] or the Anthropic console cost export (usage_date_utc, model, cost_usd)"
        )
    at = {c: columns.index(c) for c in columns}
    lines = []
    for n, row in enumerate(rows, start=2):
        if not any(_text(v) for v in row):
            continue
        cells = list(row) + [None] * (len(columns) - len(row))
        day_col, model_col, amount_col = wanted
        if "currency" in at:
            _currency(cells[at["currency"]], f"currency (line {n})")
        day = _day(cells[at[day_col]], f"{day_col} (line {n})")
        amount = _decimal(cells[at[amount_col]], f"{amount_col} (line {n})")
        kind = _text(cells[at["token_type"]]) if "token_type" in at else None
        usage = (_text(cells[at["usage_type"]]) or "") if "usage_type" in at else ""
        lines.append(
            InvoiceLine(
                day,
                _text(cells[at[model_col]]),
                _project(cells[at[project]], fmt) if project in at else None,
                amount,
                _allowance(amount, cells[at[amount_col]]),
                kind,
                "batch" if "batch" in usage.lower() else None,
            )
        )
    if not lines:
        raise ValueError(f"invoice {name!r} has a header but no rows")
    first = min(line.day for line in lines)
    last = max(line.day for line in lines)
    return Invoice(
        format=fmt,
        provider=provider,
        start=_midnight(first),
        end=_midnight(last) + _DAY,
        lines=tuple(lines),
        has_model=any(line.model is not None for line in lines),
        has_project=any(line.project is not None for line in lines),
    )


def _project(value: object, fmt: str) -> str | None:
    """A line's project or workspace. The console export names the default workspace ``Default``, where the cost
    report API has ``workspace_id: null``: both are the entries without a project tag."""
    text = _text(value)
    return None if fmt == "anthropic-csv" and text == "Default" else text


def _day(value: object, field: str) -> date:
    if isinstance(value, datetime):
        return value.date() if value.tzinfo is None else value.astimezone(timezone.utc).date()
    if isinstance(value, date):
        return value
    text = _text(value) or ""
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"invoice column {field} must be a date such as 2025-08-01, got {value!r}") from None
    return moment.date() if moment.tzinfo is None else moment.astimezone(timezone.utc).date()
