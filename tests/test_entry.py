import pickle
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import attrs
import pytest

from llmcost import CostCategory, CostEntry, Usage
from llmcost._entry import FrozenTags, new_entry_id

T0 = datetime(2024, 5, 17, 12, tzinfo=timezone.utc)


def entry(**kw):
    base = {"id": "x", "timestamp": T0, "amount": "0.25"}
    return CostEntry(**{**base, **kw})


def test_entry_converts_money_time_category_and_tags():
    e = entry(amount=0.1, timestamp=datetime(2024, 5, 17, 12), category="compute", tags={"team": "a"})
    assert e.amount == Decimal("0.1") and isinstance(e.amount, Decimal)
    assert e.timestamp == T0 and e.timestamp.tzinfo is timezone.utc
    assert e.category is CostCategory.COMPUTE
    assert e.tags == {"team": "a"}
    assert e.currency == "USD" and e.usage == Usage()
    assert pickle.loads(pickle.dumps(e)) == e
    assert hash(e) == hash(pickle.loads(pickle.dumps(e)))


def test_entry_tags_are_read_only():
    e = entry(tags={"team": "a"})
    with pytest.raises(TypeError):
        e.tags["team"] = "b"  # type: ignore[index]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        e.amount = Decimal(1)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kw", "exc", "field"),
    [
        ({"amount": "nan"}, ValueError, "amount"),
        ({"amount": float("inf")}, ValueError, "amount"),
        ({"category": "beer"}, ValueError, "category"),
        ({"tags": {"team": 3}}, TypeError, "tags"),
        ({"tags": {3: "x"}}, TypeError, "tags"),
        ({"tags": {"": "x"}}, ValueError, "tags"),
        ({"tags": ["team"]}, TypeError, "tags"),
        ({"latency_ms": -1.0}, ValueError, "latency_ms"),
        ({"latency_ms": float("nan")}, ValueError, "latency_ms"),
        ({"latency_ms": 10**400}, ValueError, "latency_ms"),  # (beyond a float: it raised OverflowError)
        ({"usage": {"input_tokens": 1}}, TypeError, "usage"),
        ({"resource": 5}, TypeError, "resource"),
    ],
)
def test_entry_rejects_bad_fields_naming_them(kw, exc, field):
    with pytest.raises(exc, match=field):
        entry(**kw)


def test_category_accepts_plain_strings_and_prints_its_value():
    assert CostCategory("llm_embedding") is CostCategory.LLM_EMBEDDING
    assert str(CostCategory.STORAGE) == "storage"
    assert {c.value for c in CostCategory} == {
        "llm_inference",
        "llm_embedding",
        "compute",
        "storage",
        "network",
        "api_calls",
        "other",
    }


def test_ids_are_unique_and_sort_by_time():
    times = [T0 + timedelta(microseconds=i * 7) for i in range(2000)]
    ids = [new_entry_id(t) for t in times]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    same = [new_entry_id(T0) for _ in range(1000)]
    assert len(set(same)) == 1000


def test_frozen_tags_equality_and_hash():
    assert FrozenTags({"a": "1"}) == {"a": "1"}
    assert hash(FrozenTags({"a": "1", "b": "2"})) == hash(FrozenTags({"b": "2", "a": "1"}))


def test_equal_tag_maps_share_one_object_and_the_table_stays_bounded(monkeypatch):
    from llmcost import _entry, _state

    a = CostEntry(id="a", timestamp=datetime(2024, 1, 1), amount=1, tags={"team": "x", "env": "prod"})
    b = CostEntry(id="b", timestamp=datetime(2024, 1, 1), amount=1, tags={"team": "x", "env": "prod"})
    assert a.tags is b.tags
    assert CostEntry(id="c", timestamp=datetime(2024, 1, 1), amount=1, tags={}).tags is _entry.EMPTY_TAGS
    monkeypatch.setattr(_entry, "_INTERNED_TAGS", 3)
    for k in range(10):
        _entry.intern_tags({"k": str(k)})
    assert len(_state.interned_tags) <= 3
    assert _entry.intern_tags({"k": "9"}) == {"k": "9"}


def test_trusted_construction_matches_the_validating_one():
    ts = datetime(2024, 5, 1, tzinfo=timezone.utc)
    usage = Usage._trusted(10, 5, 3, 2, 1)
    assert usage == Usage(10, 5, 3, 2, 1)
    fields = {
        "id": "x",
        "timestamp": ts,
        "amount": Decimal("1.5"),
        "category": CostCategory.COMPUTE,
        "resource": "r",
        "description": "d",
        "model": "m",
        "provider": "p",
        "usage": usage,
        "latency_ms": 2.0,
        "tags": FrozenTags({"a": "b"}),
        "pricing": "user",
    }
    assert CostEntry._trusted(**fields) == CostEntry(**fields, currency="USD")
    assert CostEntry._trusted(**fields, currency="EUR") == CostEntry(**fields, currency="EUR")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"amount": "1e20"}, r"amount must be below 10\*\*20"),
        ({"amount": 1, "resource": "\ud800"}, "resource must be valid Unicode text"),
        ({"amount": 1, "description": "\ud800"}, "description must be valid Unicode text"),
        ({"amount": 1, "currency": "\ud800"}, "currency must be valid Unicode text"),
        ({"amount": 1, "tags": {"k": "\ud800"}}, r"tags\['k'\] must be valid Unicode text"),
    ],
)
def test_entries_refuse_values_no_store_can_keep(fields, message):
    with pytest.raises(ValueError, match=message):
        CostEntry(id="x", timestamp=datetime(2024, 1, 1, tzinfo=timezone.utc), **fields)
