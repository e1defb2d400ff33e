"""Recorded spend against what a provider billed: ``reconcile``.

The invoice is read by ``_invoice.read_invoice``; recorded entries of the invoice's provider and period are summed
per UTC day, model (the catalog id both sides share, see ``_reprice.model_key``) and, where the invoice has projects
or workspaces, the value of a tag (``project`` by default). Each group is also repriced at the catalog prices in
force when its calls were made, and with cache tokens billed as plain input, which is how a likely cause is told.

Example::

    >>> reconcile(tracker, "openai-costs.json")[["day", "model", "recorded", "billed", "status"]]
              day                   model recorded  billed status
    0  2024-05-14       gpt-4o-2024-08-06     3.29    3.29  match
    1  2024-05-14  gpt-4o-mini-2024-07-18   0.0108  0.0108  match
    2  2024-05-15       gpt-4o-2024-08-06     0.21    0.21  match
    3  2024-05-15  gpt-4o-mini-2024-07-18   0.0108  0.0144  under
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from .._catalog import catalog_models
from .._errors import UnknownModelError
from .._model_price import tidy
from .._money import ZERO, to_money, wide_context
from .._prices import price_for, registered_prices
from .._time import When
from ._invoice import Invoice, read_invoice
from ._reprice import Priced, PriceTable, model_key, priced_groups
from ._source import Source, as_source

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RECONCILE_COLUMNS", "STATUSES", "reconcile"]

#: What ``reconcile`` returns, in order.
RECONCILE_COLUMNS = (
    "day",
    "model",
    "project",
    "calls",
    "recorded",
    "billed",
    "delta",
    "delta_pct",
    "status",
    "likely_cause",
    "repriced",
)
#: The statuses, from agreeing to missing on one side.
STATUSES = ("match", "under", "over", "unrecorded", "unbilled")


@attrs.define
class _Billed:
    amount: Decimal = ZERO
    allowance: Decimal = ZERO
    kinds: set[str] = attrs.field(factory=set)
    tiers: set[str] = attrs.field(factory=set)
    names: set[str] = attrs.field(factory=set)  #: the invoice's names of the model


def _money(value: Decimal) -> str:
    return f"${value:,.4f}".rstrip("0").rstrip(".") if value else "$0"


def reconcile(
    source: Any,
    invoice: Any,
    *,
    provider: str | None = None,
    project_tag: str = "project",
    tolerance: Decimal | str = "0.001",
    since: When | None = None,
    until: When | None = None,
) -> pd.DataFrame:
    """Recorded spend against a provider's invoice, one row per UTC day × model (× project, when the invoice has
    projects or workspaces): ``day``, ``model``, ``project``, ``calls``, ``recorded``, ``billed``, ``delta``
    (recorded minus billed), ``delta_pct`` (delta over billed), ``status``, ``likely_cause`` and ``repriced`` (the
    recorded usage at the catalog prices of its days). Money columns hold exact ``Decimal`` values.

    ``invoice`` is a path or a DataFrame: the OpenAI organization costs API JSON (one page, or a list of pages),
    the Anthropic cost report JSON, the Anthropic console's cost CSV export, or a plain CSV with ``date, model,
    amount`` and optionally ``project``. Only entries of the invoice's provider (``provider`` for a plain CSV;
    ``None``: every provider; one no price is of and no entry of the period was recorded with raises ``ValueError``
    listing the known ones) and period count. Model ids are matched as the catalog matches them
    (``gpt-4o-2024-08-06`` is ``gpt-4o``; the console's ``Claude Sonnet 4.5`` is ``claude-sonnet-4-5``). The
    invoice's project (OpenAI ``project_id``, Anthropic ``workspace_id`` or ``workspace``, a plain ``project``)
    is matched with the entries' ``project_tag`` tag. Entries of the invoice's provider without a model (a web
    search recorded with ``amount=``) are compared with its charges without a model; on an invoice of day totals
    (no line names a model: fetched without a per-model breakdown) every entry of the day is in its one row.

    ``status``: ``match`` when the two differ by no more than the invoice's rounding plus ``tolerance`` (a
    fraction of the billed amount), else ``under`` (recorded less than billed) or ``over``; ``unrecorded`` when
    billed but nothing was recorded, ``unbilled`` when recorded but not on the invoice. ``likely_cause`` says why,
    where it can tell: entries recorded unpriced, a Batch tier or a cache rate not applied, recorded prices that
    are not the catalog's, or calls made outside tracking; otherwise ``None``.

    ``since``/``until`` narrow the comparison to those UTC days, on both sides (the forms every analytics function
    takes: ``"30d"``, ``"2024-05-01"``, datetimes); a moment within a day takes in the whole day, as it is billed.

    Example::

        >>> found = reconcile(store, "openai-costs.json")
        >>> found = found[found["status"] != "match"]
        >>> found[["day", "model", "calls", "recorded", "billed", "delta"]]
                  day                   model  calls recorded  billed    delta
        3  2024-05-15  gpt-4o-mini-2024-07-18      3   0.0108  0.0144  -0.0036
        >>> found["likely_cause"].iloc[0]
        'billed more than the recorded calls cost at catalog prices: calls made outside tracking...'
    """
    import pandas as pd

    if provider is not None and not isinstance(provider, str):
        raise TypeError(f"provider must be a provider id (str) or None, got {provider!r}")
    # Sums, deltas and tidy's form in a context that never rounds them: the caller's (28 digits by default, fewer
    # where a notebook set them) would round a large exact amount.
    with wide_context():
        found = read_invoice(invoice, provider=provider)
        allowed = to_money(tolerance, "tolerance")
        if allowed < 0:
            raise ValueError(f"tolerance must be a fraction of the billed amount, 0 or more, got {tolerance!r}")
        billed = _billed(found)
        cache: dict[str, str] = {}
        with as_source(source) as base:
            first_day, end_day = _whole_days(base, since, until)
            src = base.where(since=found.start, until=found.end).where(since=first_day, until=end_day)
            window = src.bounds()
            keys = ["CAST(date_trunc('day', timezone('UTC', e.timestamp)) AS DATE)", "e.model", "lower(e.provider)"]
            params: list[Any] = []
            if found.has_project:
                keys.append("e.tags[?]")
                params.append(project_tag)
            where = "e.model IS NOT NULL"
            where_params: list[Any] = []
            if found.provider is not None:
                # An entry recorded with an amount given may carry no provider: its model's maker decides (below).
                # One with neither a model nor a provider is no one's; one with the provider and no model (a web
                # search recorded with ``amount=``, as ``_judge`` advises) is compared with the invoice's charges
                # without a model, or, on an invoice of day totals (no line names a model), with the day's total,
                # which bills it too.
                where = (
                    "(e.model IS NOT NULL AND (e.provider IS NULL OR lower(e.provider) = ?))"
                    " OR (e.model IS NULL AND lower(e.provider) = ?)"
                )
                where_params.extend((found.provider, found.provider))
            groups = priced_groups(
                src, keys, params, PriceTable(), None, no_cache=True, where=where, where_params=where_params
            )
        if found.provider is not None and not any(key[2] == found.provider for key in groups):
            _known_provider(found.provider)
        recorded: dict[tuple[date, str | None, str | None], Priced] = {}
        for key, group in groups.items():
            day, model, maker = _as_date(key[0]), key[1], key[2]
            if found.provider is not None and maker is None and _maker(model) not in (None, found.provider):
                continue
            project = key[3] if found.has_project else None
            merged_key = (day, model_key(model, cache) if found.has_model and model is not None else None, project)
            into = recorded.setdefault(merged_key, Priced())
            into.calls += group.calls
            into.recorded += group.recorded
            into.repriced += group.repriced
            into.no_cache += group.no_cache
            into.unpriced += group.unpriced
            into.models |= group.models
        rows = []
        for key in sorted(set(recorded) | set(billed), key=_order):
            day, model, project = key
            if not _in_window(day, window):
                continue
            got = recorded.get(key)
            bill = billed.get(key)
            if got is None and bill is not None and bill.amount == 0:
                continue  # free lines (the console export is full of them) with nothing recorded: nothing to say
            rec = got.recorded if got is not None else ZERO
            amount = bill.amount if bill is not None else ZERO
            delta = tidy(rec - amount)
            status, cause = _judge(model, got, bill, found, allowed, project_tag)
            # The model as the entries hold it, else as the invoice names it (the key both share where neither
            # has one name). A row without a model stays without one: on an invoice of day totals it is the whole
            # day, charges without a model included, even when the day's calls were of one model.
            shown = model
            if model is not None and got is not None and len(got.models) == 1:
                shown = next(iter(got.models))
            elif got is None and bill is not None and len(bill.names) == 1:
                shown = next(iter(bill.names))
            rows.append(
                (
                    day,
                    shown,
                    project,
                    got.calls if got is not None else 0,
                    tidy(rec),
                    tidy(amount),
                    delta,
                    float(delta / amount) if amount else float("nan"),
                    status,
                    cause,
                    tidy(got.repriced) if got is not None else ZERO,
                )
            )
    frame = pd.DataFrame.from_records(rows, columns=list(RECONCILE_COLUMNS))
    for column in ("day", "model", "project", "recorded", "billed", "delta", "status", "likely_cause", "repriced"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    frame["calls"] = frame["calls"].astype("int64")
    frame["delta_pct"] = frame["delta_pct"].astype("float64")
    return frame


def _whole_days(base: Source, since: When | None, until: When | None) -> tuple[datetime | None, datetime | None]:
    """``since`` rounded down and ``until`` rounded up to UTC midnights: the invoice bills whole UTC days, so the
    recorded side of a day counts the whole day too (``since="30h"`` compares all of the day it falls in)."""
    start, end = base.where(since=since, until=until).bounds()
    first = None if since is None or start is None else datetime.combine(start.date(), time(0), tzinfo=timezone.utc)
    last = None
    if until is not None and end is not None:
        last = datetime.combine(end.date(), time(0), tzinfo=timezone.utc)
        if last < end:
            # The midnight after; an ``until`` within the last day a datetime holds leaves the end open.
            last = last + timedelta(days=1) if end.date() < date.max else None
    return first, last


def _in_window(day: date, window: tuple[datetime | None, datetime | None]) -> bool:
    """Whether the UTC day ``day`` lies in ``[since, until)`` (a day counts when any part of it does)."""
    since, until = window
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return (since is None or start + timedelta(days=1) > since) and (until is None or start < until)


def _known_provider(provider: str) -> None:
    """Refuse ``provider`` (lowercased) when nothing knows it: no catalog or registered price is of it, and (the
    caller found) no entry recorded in the invoice's period. A misspelt provider used to report every invoice line
    as ``unrecorded``."""
    known = {prov for prov, _, _ in catalog_models()}
    known.update(price.provider.lower() for price in registered_prices() if price.provider)
    if provider not in known:
        raise ValueError(
            f"provider {provider!r} is unknown: no price is of it and no entry in the invoice's period was recorded "
            f"with it; known providers: {', '.join(sorted(known))}"
        )


def _maker(model: str) -> str | None:
    """The provider the catalog prices ``model`` for, ``None`` when it does not know the model."""
    try:
        return price_for(model)[0].provider
    except (UnknownModelError, ValueError):
        return None


def _as_date(value: Any) -> date:
    if hasattr(value, "date") and callable(value.date):
        return value.date()  # type: ignore[no-any-return]
    return value  # type: ignore[no-any-return]


def _order(key: tuple[date, str | None, str | None]) -> tuple[Any, ...]:
    day, model, project = key
    return (day, model is None, model or "", project is None, project or "")


def _billed(found: Invoice) -> dict[tuple[date, str | None, str | None], _Billed]:
    cache: dict[str, str] = {}
    out: dict[tuple[date, str | None, str | None], _Billed] = {}
    for line in found.lines:
        model = model_key(line.model, cache) if (found.has_model and line.model is not None) else None
        key = (line.day, model, line.project if found.has_project else None)
        into = out.setdefault(key, _Billed())
        into.amount += line.amount
        into.allowance += line.allowance
        if line.kind:
            into.kinds.add(line.kind)
        if line.tier and line.tier != "standard":
            into.tiers.add(line.tier)
        if model is not None and line.model is not None:
            into.names.add(line.model)
    return out


def _judge(
    model: str | None, got: Priced | None, bill: _Billed | None, found: Invoice, tolerance: Decimal, project_tag: str
) -> tuple[str, str | None]:
    """The status of one row and, where it can be told, its likely cause."""
    if got is None:
        assert bill is not None
        if found.has_model and model is None:
            kinds = ", ".join(sorted(bill.kinds)) or "a charge without a model"
            if found.provider is None:
                return "unrecorded", (
                    f"not a per-token model charge ({kinds}): entries without a model are compared with it only "
                    "for an invoice of one provider (provider=)"
                )
            return "unrecorded", (
                f"not a per-token model charge ({kinds}): record it with amount= and provider={found.provider!r} "
                "to track it"
            )
        where = f" under this {project_tag} tag" if found.has_project else ""
        return "unrecorded", (
            f"billed but nothing recorded{where}: calls made outside tracking (another service, the console or "
            "playground, a code path without @track_cost)"
        )
    if bill is None:
        hint = f", or a {project_tag!r} tag that does not match the invoice's project" if found.has_project else ""
        return "unbilled", f"recorded but not on the invoice: calls billed to another account{hint}, or test entries"

    def near(a: Decimal, b: Decimal) -> bool:
        return abs(a - b) <= bill.allowance + tolerance * abs(b)

    if near(got.recorded, bill.amount):
        return "match", None
    status = "under" if got.recorded < bill.amount else "over"
    if got.unpriced and status == "under":
        models = ", ".join(sorted(got.models))
        return status, (
            f"{got.unpriced} call(s) recorded unpriced (amount 0): register a price for {models} "
            f"(repriced at the catalog: {_money(got.repriced)})"
        )
    half = got.repriced / 2
    if near(half, bill.amount):  # the Batch API's published rule: half the standard price
        return status, (
            f"billed at the Batch tier's half price ({_money(half)}): the calls went through the Batch API but "
            "were recorded at standard prices (service tier not applied)"
        )
    if got.no_cache != got.repriced and near(got.recorded, got.no_cache) and near(got.repriced, bill.amount):
        return status, (
            "cache reads/writes recorded at the plain input rate (cache rate not applied when recording); at the "
            f"cache rates the calls cost {_money(got.repriced)}, as billed"
        )
    if near(got.repriced, bill.amount):
        return status, (
            f"recorded amounts are not the catalog's prices for those days (a stale price table or a user price); "
            f"repriced at the catalog: {_money(got.repriced)}, as billed"
        )
    if status == "under" and near(got.recorded, got.repriced):
        missing = bill.amount - got.recorded
        per_call = got.recorded / got.calls if got.calls else ZERO
        more = ""
        if per_call:
            # Whole calls, as a count of calls is: a gap smaller than the mean call (a day's total with a charge
            # that has no model) is no call at all, not "about 0".
            count = int(missing / per_call)
            if count == 0:
                more = " (less than one call like these)"
            else:
                more = f" (about {count:,} more call{'s' if count > 1 else ''} like these)"
        return status, f"billed more than the recorded calls cost at catalog prices: calls made outside tracking{more}"
    return status, None
