"""``Filters``: which entries a store query covers, validated once where the keyword filters come in."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import attrs

from .._entry import CostEntry, FrozenTags, to_category, to_tags
from .._money import to_utc

__all__ = ["NO_FILTERS", "Filters"]


def _names(field: str, value: object) -> frozenset[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Iterable):
        raise TypeError(f"{field} must be a str or a collection of str, got {value!r}")
    out = []
    for item in items:
        if field == "category":
            out.append(to_category(item).value)
        elif isinstance(item, str):
            out.append(item)
        else:
            raise TypeError(f"{field} must be a str or a collection of str, got {value!r}")
    return frozenset(out)


def _categories(value: object) -> frozenset[str] | None:
    return _names("category", value)


def _resources(value: object) -> frozenset[str] | None:
    return _names("resource", value)


def _models(value: object) -> frozenset[str] | None:
    return _names("model", value)


def _providers(value: object) -> frozenset[str] | None:
    return _names("provider", value)


def _since(value: object) -> datetime | None:
    return None if value is None else to_utc(value, "since")  # type: ignore[arg-type]


def _until(value: object) -> datetime | None:
    return None if value is None else to_utc(value, "until")  # type: ignore[arg-type]


def _tag_filter(value: object) -> FrozenTags | None:
    return None if value is None else to_tags(value)


def _limit(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"limit must be a non-negative int or None, got {value!r}")
    return value


@attrs.frozen
class Filters:
    """Which entries a query covers. Every field is optional; set fields must all match.

    ``since`` is inclusive and ``until`` exclusive. ``category``, ``resource``, ``model`` and ``provider`` take one
    value or a collection of values (any of them matches). ``tags`` matches entries that carry every given key with
    the given value. ``limit`` keeps the first rows in time order. ``model`` matches an entry's ``model`` (the id
    as returned) or its ``canonical_model`` (the catalog's id).

    Example::

        Filters(since=datetime(2024, 5, 1), category="llm_inference", tags={"team": "search"})
    """

    since: datetime | None = attrs.field(default=None, converter=_since)
    until: datetime | None = attrs.field(default=None, converter=_until)
    category: frozenset[str] | None = attrs.field(default=None, converter=_categories)
    resource: frozenset[str] | None = attrs.field(default=None, converter=_resources)
    model: frozenset[str] | None = attrs.field(default=None, converter=_models)
    provider: frozenset[str] | None = attrs.field(default=None, converter=_providers)
    tags: FrozenTags | None = attrs.field(default=None, converter=_tag_filter)
    limit: int | None = attrs.field(default=None, converter=_limit)

    def matches(self, entry: CostEntry) -> bool:
        """Whether ``entry`` passes every filter but ``limit``: how a backend that keeps entries as objects filters.

        Example::

            found = [e for e in sorted(rows, key=lambda e: (e.timestamp, e.id)) if filters.matches(e)]
        """
        if self.since is not None and entry.timestamp < self.since:
            return False
        if self.until is not None and entry.timestamp >= self.until:
            return False
        if self.category is not None and entry.category.value not in self.category:
            return False
        if self.resource is not None and entry.resource not in self.resource:
            return False
        if self.model is not None and entry.model not in self.model and entry.canonical_model not in self.model:
            return False
        if self.provider is not None and entry.provider not in self.provider:
            return False
        if self.tags:
            tags = entry.tags
            for key, value in self.tags.items():
                if tags.get(key) != value:
                    return False
        return True

    @property
    def is_empty(self) -> bool:
        """True when no filter is set (``limit`` included)."""
        return self == NO_FILTERS


NO_FILTERS = Filters()
