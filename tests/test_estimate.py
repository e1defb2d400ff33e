"""The estimates a budget makes before a call: the mean of recent calls (``RecentCosts``) and the cost read off the
call's request arguments (``request_estimate``), with what they keep between calls."""

from __future__ import annotations

import decimal
import itertools
from decimal import Decimal

from llmcost._estimate import RecentCosts
from tests.conftest import in_threads


def _means_on(window: int) -> RecentCosts:
    recent = RecentCosts(window)
    assert recent.mean("f", None) is None  # (the first mean switches the running sums on)
    return recent


def test_a_full_window_of_one_amount_keeps_its_mean_as_the_running_sum_writes_it():
    # The sum keeps the places of an amount it no longer holds (0.0060's four): the mean is written with them,
    # before and after the window fills with one amount, and whether asked for by model or by resource.
    recent = _means_on(3)
    for amount in ["0.0060", "0.006", "0.006", "0.006", "0.006"]:
        recent.observe_call("f", "m", Decimal(amount))
    assert str(recent.mean("f", None)) == str(recent.mean("f", "m")) == "0.0060"
    recent.observe_call("f", "m", Decimal("0.0060"))  # the same value written otherwise: not the same amount
    assert str(recent.mean("f", "m")) == "0.0060"
    for amount in ["0.009", "0.009", "0.009"]:
        recent.observe_call("f", "m", Decimal(amount))
    assert str(recent.mean("f", "m")) == "0.0090"


def test_zeros_of_either_sign_and_any_places_are_no_one_amount():
    recent = _means_on(2)
    means = []
    for amount in ["-0", "0E-5", "0E-5", "0E-5"]:
        recent.observe_call("z", None, Decimal(amount))
        means.append(str(recent.mean("z", None)))
    assert means == ["0", "0.00000", "0.00000", "0.00000"]


def test_the_kept_mean_of_one_amount_is_divided_again_in_a_context_of_other_precision_or_rounding():
    recent = _means_on(3)
    for _ in range(4):
        recent.observe_call("g", None, Decimal("0.00416667"))
    assert recent.mean("g", None) == Decimal("0.00416667")
    with decimal.localcontext() as context:
        context.prec = 5
        assert recent.mean("g", None) == Decimal("0.0041667")
    assert recent.mean("g", None) == Decimal("0.00416667")
    with decimal.localcontext() as context:
        context.prec, context.rounding = 5, decimal.ROUND_DOWN
        assert recent.mean("g", None) == Decimal("0.0041666")


def test_threads_recording_one_amount_and_others_leave_the_sums_as_the_amounts_kept():
    # Recording the window's one amount takes no lock while other threads update the sums: afterwards the window
    # refilled with one amount has exactly that mean (a running sum out of step with the amounts would show).
    recent = _means_on(20)
    amounts = [Decimal("0.0025"), Decimal("0.0025"), Decimal("0.0025"), Decimal("0.005"), Decimal("1.5")]

    def work() -> None:
        for amount in itertools.islice(itertools.cycle(amounts), 3000):
            recent.observe_call("r", "m", amount)
            recent.mean("r", None)

    in_threads(work)
    for _ in range(20):
        recent.observe_call("r", "m", Decimal("0.0031"))
    assert str(recent.mean("r", "m")) == "0.0031"
