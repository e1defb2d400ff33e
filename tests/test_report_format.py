"""llmcost._report._format: the one way figures become text, for the terminal tables and the HTML report alike."""

from __future__ import annotations

from datetime import datetime

import pytest

from llmcost._report._format import cell, count, escape, format_table, label, money, per_mtok, shorten, when


def test_format_table_cuts_text_to_the_width() -> None:
    rows = [("a" * 70, "b" * 40, 1234.5, 12_345_678)]
    text = format_table(rows, [("first", "text"), ("second", "text"), ("cost", "money"), ("tokens", "count")])
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "…" in lines[2] and "$1,234.50" in lines[2] and "12.3M" in lines[2]
    assert lines[2].endswith("12.3M")  # numbers right-aligned


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "$0.00"), (1234.5, "$1,234.50"), (0.042, "$0.0420"), (0.00054, "$0.000540"), (-2.5, "-$2.50")],
)
def test_money(value: float, text: str) -> None:
    assert money(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("2.675", "$2.68"),  # a float is 2.67499999..., shown as $2.67
        ("2.665", "$2.66"),  # half even, as ``dollars`` and stores round
        ("1.005", "$1.00"),
        ("12345678901234567890.123456789", "$12,345,678,901,234,567,890.12"),  # a float: ...567,168.00
        ("0.00999995", "$0.0100"),  # rounds into the cents range: shown with its places, not as $0.010000
        ("0.999996", "$1.00"),
        ("0.0123455", "$0.0123"),
        ("0.000540000", "$0.000540"),
        ("-0.0000000001", "$0.000000"),  # no minus on a figure shown as zero
        ("-1234.565", "-$1,234.56"),
        ("1E+3", "$1,000.00"),
    ],
)
def test_money_formats_decimals_exactly(value: str, text: str) -> None:
    from decimal import Context, Decimal, localcontext

    with localcontext(Context(prec=8)):  # a notebook's narrow context changes nothing
        assert money(Decimal(value)) == cell(Decimal(value), "money") == text


def test_missing_values() -> None:
    assert money(float("nan")) == count(float("nan")) == "-"
    assert cell(None, "money") == cell(None, "int") == "-"
    assert cell(None, "text") == cell(float("nan"), "text") == label(None) == label(float("nan")) == "(none)"


def test_counts_times_prices_and_escaping() -> None:
    assert (count(9_999), count(12_345), count(4_500_000), count(1.2e9)) == ("9,999", "12.3k", "4.5M", "1.2G")
    assert when(datetime(2024, 5, 1)) == "2024-05-01"
    assert when(datetime(2024, 5, 1, 13, 30)) == "2024-05-01 13:30"
    assert (per_mtok(0.075), per_mtok(15.0), per_mtok(None)) == ("0.075", "15.00", "-")
    assert shorten("summarize-ticket", 10) == "summarize…"
    assert escape('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;" and escape(None) == ""


@pytest.mark.parametrize("prec", [28, 8])
def test_decimal_text_keeps_every_digit_whatever_the_context(prec: int) -> None:
    from decimal import Context, Decimal, localcontext

    from llmcost._report._format import decimal_text

    # 30 significant digits: the default context's 28 (or a notebook's 8) would round them.
    with localcontext(Context(prec=prec)):
        assert decimal_text(Decimal("12345678901.123456789012345679")) == "12345678901.123456789012345679"
        assert decimal_text(Decimal("123456789012345678901234567890")) == "123456789012345678901234567890.00"


def test_whole_columns_wrap_the_fewest_values_and_stay_within_the_width() -> None:
    # The widest whole column alone giving way wrapped every row of it, and a wrapped value ran past 80 columns.
    rows = [(f"budget-{i}", "monthly", 100, "team=support", "50/80/90/100%") for i in range(4)]
    rows.append(("a-very-long-budget-name-of-thirty-two", "weekly", 5, "model=gpt-4o " * 5, "50%"))
    spec = [("name", "text"), ("period", "text"), ("limit", "money"), ("counts", "text"), ("alerts_at", "text")]
    text = format_table(rows, spec, whole=(0, 3, 4))
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines) and "…" not in text
    assert len(lines) == 2 + 5 + 2  # only the last row's name and counts have lines of their own
