from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from llmcost._money import dollars, to_money, to_utc


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.1, Decimal("0.1")), (1, Decimal(1)), ("2.50", Decimal("2.50")), (Decimal("0.3"), Decimal("0.3"))],
)
def test_to_money_accepts_numbers_exactly(value, expected):
    assert to_money(value) == expected
    assert str(to_money(0.1)) == "0.1"  # floats go through str(), not binary expansion


@pytest.mark.parametrize("value", ["nan", float("inf"), Decimal("-Infinity"), "abc"])
def test_to_money_rejects_non_finite_and_garbage(value):
    with pytest.raises(ValueError, match="limit") as info:
        to_money(value, "limit")
    assert repr(value) in str(info.value) or str(value) in str(info.value)


@pytest.mark.parametrize("value", [None, True, [1], object()])
def test_to_money_rejects_wrong_types(value):
    with pytest.raises(TypeError, match="amount"):
        to_money(value)


def test_to_money_rounds_beyond_store_scale():
    assert to_money(Decimal("0.1234567890123456789")) == Decimal("0.123456789012345679")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12345678901.123456789012345678901", "12345678901.123456789012345679"),  # 32 digits: past 28
        ("1E+70", "1E+70"),  # too large to carry 18 places: kept as it is
        ("-0.0000000000000000015", "-0.000000000000000002"),
    ],
)
def test_to_money_rounds_large_amounts_without_error(value, expected):
    assert to_money(value) == Decimal(expected)


def test_to_utc_takes_naive_as_utc_and_converts_aware():
    assert to_utc(datetime(2024, 1, 1)) == datetime(2024, 1, 1, tzinfo=timezone.utc)
    plus2 = timezone(timedelta(hours=2))
    converted = to_utc(datetime(2024, 1, 1, 2, tzinfo=plus2))
    assert converted.tzinfo is timezone.utc
    assert converted.hour == 0
    with pytest.raises(TypeError, match="timestamp"):
        to_utc("2024-01-01")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-1))),
    ],
)
def test_to_utc_of_a_time_outside_the_utc_range_is_a_value_error_naming_the_field(value):
    with pytest.raises(ValueError, match=r"^since .* is out of range in UTC"):
        to_utc(value, "since")


@pytest.mark.parametrize(
    ("amounts", "expected"),
    [
        ((Decimal("1e26"), Decimal("0.5")), ("$100,000,000,000,000,000,000,000,000.00", "$0.50")),
        ((Decimal("123456789012345678901234567.125"),), ("$123,456,789,012,345,678,901,234,567.125",)),
    ],
)
def test_dollars_are_exact_for_amounts_beyond_the_default_precision(amounts, expected):
    assert dollars(*amounts) == expected


def test_amounts_are_checked_and_recorded_in_a_context_of_any_exponent_range():
    # The bounds were negated on each call, in the caller's context: one whose Emax is below 20 raised Overflow out of
    # record(), where every figure is promised exact in any context.
    import decimal

    import llmcost

    tracker = llmcost.CostTracker()
    with decimal.localcontext(decimal.Context(Emax=2, Emin=-2)):
        tracker.record(amount="0.001")
        tracker.record(model="gpt-4o", input_tokens=1000)
        with pytest.raises(ValueError, match="amount must be below 10\\*\\*20"):
            tracker.record(amount="1e21")
    assert [e.amount for e in tracker.entries()] == [Decimal("0.001"), Decimal("0.0025")]
