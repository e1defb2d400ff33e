"""The estimates a budget makes before a call: the mean of recent calls (``RecentCosts``) and the cost read off the
call's request arguments (``request_estimate``), with what they keep between calls."""

from __future__ import annotations

import decimal
import itertools
import os
import threading
from decimal import Decimal
from typing import Any

import pytest

import llmcost
from llmcost import _state, count_tokens
from llmcost._estimate import RecentCosts, request_estimate
from llmcost._money import atto_of, from_atto, round_money
from llmcost._prices import money_cost_of
from llmcost._tokens import _TEXT_CHARS_KEPT, _TEXTS_KEPT, estimated_amount
from tests.conftest import answer_of_forked_child, in_threads


def _means_on(window: int) -> RecentCosts:
    recent = RecentCosts(window)
    assert recent.mean("f", None) is None  # (the first mean switches the running sums on)
    return recent


def test_a_mean_is_written_without_trailing_zeros_whatever_the_amounts_places():
    # The windows keep ints of 10**-18 USD: a mean is the value, in one form (``from_atto``), before and after the
    # window fills with one amount, and whether asked for by model or by resource.
    recent = _means_on(3)
    for amount in ["0.0060", "0.006", "0.006", "0.006", "0.006"]:
        recent.observe_call("f", "m", Decimal(amount))
    assert str(recent.mean("f", None)) == str(recent.mean("f", "m")) == "0.006"
    recent.observe_call("f", "m", Decimal("0.0060"))
    assert str(recent.mean("f", "m")) == "0.006"
    recent.observe_call("f", "m", Decimal("0.009"))  # (a window of 3: half the way to each new amount)
    assert str(recent.mean("f", "m")) == "0.0075"
    for _ in range(60):  # a run of one amount ends at it exactly (the distance halves, rounded down, each call)
        recent.observe_call("f", "m", Decimal("0.009"))
    assert str(recent.mean("f", "m")) == "0.009"
    assert recent.mean_atto("f", "m") == 9 * 10**15


def test_after_the_first_calls_each_call_moves_the_estimate_part_of_the_way_to_its_amount():
    # The first ``window`` calls are averaged; then each call keeps (window - 1)/(window + 1) of the distance, which
    # follows a change of cost about as the mean of the last ``window`` calls does (the weights' center of mass).
    recent = _means_on(20)
    for _ in range(20):
        recent.observe_call("f", "m", Decimal("0.002"))
    recent.observe_call("f", "m", Decimal("0.023"))  # 0.021 away: 2/21 of it is 0.002
    assert recent.mean("f", "m") == Decimal("0.004")
    recent.observe_call("f", "m", Decimal("0.004"))  # an amount equal to the estimate leaves it as it is
    assert recent.mean("f", "m") == Decimal("0.004")
    recent.observe_call("f", "m", Decimal("-0.017"))  # (below it, alike: 0.021 away, 0.019 kept)
    assert recent.mean("f", "m") == Decimal("0.002")
    for _ in range(19):  # a step to a new cost: after 20 calls, (19/21)**20 = 13.5% of the step is left
        recent.observe_call("f", "m", Decimal("0.012"))
    recent.observe_call("f", "m", Decimal("0.012"))
    assert Decimal("0.0105") < recent.mean("f", "m") < Decimal("0.0107")


def test_zeros_of_either_sign_and_any_places_are_a_mean_of_zero():
    recent = _means_on(2)
    means = []
    for amount in ["-0", "0E-5", "0E-5", "0E-5"]:
        recent.observe_call("z", None, Decimal(amount))
        means.append(str(recent.mean("z", None)))
    assert means == ["0", "0", "0", "0"]


def test_a_mean_is_the_same_in_a_context_of_any_precision_or_rounding():
    recent = _means_on(3)
    for _ in range(4):
        recent.observe_call("g", None, Decimal("0.00416667"))
    assert recent.mean("g", None) == Decimal("0.00416667")
    for prec, rounding in [(5, decimal.ROUND_HALF_EVEN), (5, decimal.ROUND_DOWN), (3, decimal.ROUND_CEILING)]:
        with decimal.localcontext() as context:
            context.prec, context.rounding = prec, rounding
            assert str(recent.mean("g", None)) == "0.00416667"


def test_calls_recorded_in_a_context_of_few_digits_leave_the_running_sum_exact():
    recent = RecentCosts()
    amounts = [Decimal("0.0060925"), Decimal("0.0061850"), Decimal("0.0062775")]
    recent.observe_call("f", "m", amounts[0])
    recent.mean("f", "m")  # the running sums on
    with decimal.localcontext() as context:
        context.prec = 5  # the user's own context: adding 0.0060925 and 0.0061850 in it rounds
        for amount in amounts[1:]:
            recent.observe_call("f", "m", amount)
    assert recent.mean("f", "m") == sum(amounts) / 3 == Decimal("0.006185")


def test_threads_recording_at_once_leave_a_mean_among_their_amounts_which_a_run_of_one_amount_ends_at():
    # Recording takes no lock once a window has counted its first calls: threads recording the same key at the same
    # instant may leave a sample out, never a mean outside the amounts recorded, nor one that stops following them.
    recent = _means_on(20)
    amounts = [Decimal("0.0025"), Decimal("0.0025"), Decimal("0.0025"), Decimal("0.005"), Decimal("1.5")]
    means: list[Decimal] = []

    def work() -> None:
        for amount in itertools.islice(itertools.cycle(amounts), 3000):
            recent.observe_call("r", "m", amount)
            means.append(recent.mean("r", None))  # type: ignore[arg-type]  # (one recorded: never None)

    in_threads(work)
    assert all(min(amounts) <= mean <= max(amounts) for mean in means)
    assert type(recent.mean_atto("r", "m")) is int
    for _ in range(500):  # 1.5 to 0.0031 at most: (19/21)**k * 1.5e18 atto falls below 10 by k = 400
        recent.observe_call("r", "m", Decimal("0.0031"))
    assert str(recent.mean("r", "m")) == "0.0031"


def _exact_mean(amounts: list[Decimal]) -> Decimal:
    """The mean of ``amounts`` rounded half-even to money's 18 places, without trailing zeros (``100``, not
    ``1E+2``), computed in a context wide enough never to round on the way."""
    with decimal.localcontext(decimal.Context(prec=80)):
        mean = round_money(sum(amounts, Decimal(0)) / len(amounts))
        return mean.quantize(Decimal(1)) if mean == mean.to_integral_value() else mean.normalize()


@pytest.mark.parametrize(
    "amounts",
    [
        ["0.0060925", "0.0061850"],  # an exact mean: nothing past 18 places
        ["0.000000000000000001", "0.000000000000000002"],  # 1.5e-18: one digit past 18 places, a tie
        ["0.000000000000000003"] * 3 + ["0.000000000000000004"],  # 3.25e-18
        ["0.0025", "0.005", "0.005"],  # an inexact mean
        ["-0.0025", "0.0001", "0.0001"],  # and a negative one
        ["0", "-0"],
        ["12345678901.5", "1", "1"],  # a mean too large for 28 digits at 18 places
        ["4.99999999999999999", "0.000000000000000001"],  # 2.4999999999999999995 in 28 digits rounds to 2.5
    ],
)
def test_a_mean_is_the_exact_mean_rounded_half_even_to_money_places_in_every_context(amounts):
    # The same value and figures in contexts of several precisions and roundings, also one that does not trap an
    # invalid operation: the window's sums are ints, and so is the division.
    values = [Decimal(a) for a in amounts]
    recent = _means_on(len(values))
    for value in values:
        recent.observe_call("m", "x", value)
    for prec, rounding, trapping in [
        (28, decimal.ROUND_HALF_EVEN, True),
        (40, decimal.ROUND_DOWN, True),
        (9, decimal.ROUND_CEILING, True),
        (5, decimal.ROUND_HALF_EVEN, True),
        (28, decimal.ROUND_UP, False),
    ]:
        with decimal.localcontext() as context:
            context.prec, context.rounding = prec, rounding
            context.traps[decimal.InvalidOperation] = trapping
            want = _exact_mean(values)
            got = recent.mean("m", None)
            assert str(got) == str(want), (prec, rounding, trapping)


def test_threads_recording_varying_amounts_while_means_switch_on_leave_int_means_among_their_amounts():
    # Threads recording amounts of varying cost and places while means are first asked for, then asked for all
    # along: each window's mean stays an int among the amounts recorded, and a window refilled afterwards counts as
    # one whose calls came one at a time (the key's estimate weighted by its calls for a resource's mean).
    recent = RecentCosts(7)
    amounts = [Decimal(1200 + 37 * i) * Decimal("0.0000025") + Decimal("0.003") for i in range(8)]
    amounts += [Decimal("0.004166666666666667"), Decimal("1.5"), Decimal("-0.0001")]
    started = threading.Barrier(5)

    def work() -> None:
        started.wait()
        for i, amount in enumerate(itertools.islice(itertools.cycle(amounts), 4000)):
            recent.observe_call("r", "m" if i % 3 else "n", amount)
            if i % 2:
                recent.mean("r", None)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    recent.mean("r", "m")  # the first mean: estimates switch on while the threads record
    for thread in threads:
        thread.join()
    for model in ("m", "n"):
        mean = recent.mean_atto("r", model)
        assert type(mean) is int and atto_of(min(amounts)) <= mean <= atto_of(max(amounts))
    for _ in range(500):  # (each key's run of one amount ends at it exactly)
        recent.observe_call("r", "m", Decimal("0.0031"))
        recent.observe_call("r", "n", Decimal("0.0047"))
    assert recent.mean("r", "m") == Decimal("0.0031")
    assert recent.mean("r", "n") == Decimal("0.0047")
    assert recent.mean("r", None) == Decimal("0.0039")  # both windows full: each weighs 7 calls
    recent.observe_call("r", "o", Decimal("0.001"))  # a third model with one call: 1 in 15
    assert recent.mean("r", None) == _exact_mean([Decimal("0.0031")] * 7 + [Decimal("0.0047")] * 7 + [Decimal("0.001")])


class _HeldAtto(int):
    """An amount's 10**-18 units that hold the recording thread inside its window's sum (the windows' lock held, as
    while a window counts its first calls)."""

    held = threading.Event()
    release = threading.Event()

    def __radd__(self, other: object) -> int:
        type(self).held.set()
        type(self).release.wait(10)
        return int(self) + other  # type: ignore[operator]


def _forked_while_held(atto: int, held: type[Any]) -> list[str]:
    """The means a child forked while a thread records ``atto`` (0.006 after 0.003, in a window of 3) and is held by
    ``held`` (its ``held``/``release`` events) gives: before and after it records 0.009; then the parent's after its
    thread is let go."""
    recent = _means_on(3)
    recent.observe_call("f", None, Decimal("0.003"))
    thread = threading.Thread(target=recent.observe_call, args=("f", None, Decimal("0.006"), atto))
    thread.start()
    assert held.held.wait(10)

    def in_child() -> list[str]:
        before = recent.mean("f", None)
        recent.observe_call("f", None, Decimal("0.009"))
        return [str(before), str(recent.mean("f", None))]

    answer = answer_of_forked_child(in_child)
    held.release.set()
    thread.join()
    return [*answer, str(recent.mean("f", None))]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_a_thread_counts_a_windows_first_calls_records_and_means_as_usual():
    # The parent thread holding the windows' lock never releases it in the child: the child finds it free, its window
    # as it was before that thread's amount (which is the parent's), and records and means as usual; the parent's
    # thread counts its amount on release.
    assert _forked_while_held(_HeldAtto(6 * 10**15), _HeldAtto) == ["0.003", "0.006", "0.0045"]


class _HeldSum(int):
    """A window's first calls' sum that holds the recording thread as their mean is taken (the sum stored already)."""

    held = threading.Event()
    release = threading.Event()

    def __divmod__(self, other: int) -> tuple[int, int]:  # type: ignore[override]
        if not type(self).held.is_set():  # (the first time only: the stored sum is this object too)
            type(self).held.set()
            type(self).release.wait(10)
        return divmod(int(self), other)


class _SummedHeld(int):
    def __radd__(self, other: object) -> int:
        return _HeldSum(int(other) + int(self))  # type: ignore[call-overload]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_as_a_thread_takes_a_first_calls_mean_finds_the_sum_and_count_together():
    # The thread has stored the first calls' new sum and count, and not yet their mean: the child's window is made
    # whole from them (its mean of the two amounts), and its next call counts as the third, never with a sum that
    # holds an amount its count does not.
    assert _forked_while_held(_SummedHeld(6 * 10**15), _HeldSum) == ["0.0045", "0.006", "0.0045"]


MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Summarize in three bullet points: " + "lorem ipsum dolor sit amet " * 40},
]


@pytest.mark.parametrize(
    "prompt",
    [
        MESSAGES,
        "déjà vu " * 30,
        [*MESSAGES, {"role": "user", "content": "日本語のテキスト", "name": "bob"}],
        [{"role": "user", "content": [{"type": "text", "text": "déjà vu"}, "x" * 40]}],
    ],
    ids=["ascii-messages", "text", "named-non-ascii", "parts"],
)
def test_an_estimate_found_again_is_the_amount_priced_in_the_callers_context(prompt):
    first = estimated_amount("claude-3-5-haiku-latest", prompt, 300)
    tokens = count_tokens(prompt, "claude-3-5-haiku-latest")
    assert estimated_amount("claude-3-5-haiku-latest", prompt, 300) == first
    assert str(first) == str(money_cost_of("claude-3-5-haiku-latest", tokens, 300))
    with decimal.localcontext() as context:
        context.prec = 3
        assert str(estimated_amount("claude-3-5-haiku-latest", prompt, 300)) == str(
            money_cost_of("claude-3-5-haiku-latest", tokens, 300)
        )


def test_a_request_estimate_follows_a_price_registered_since():
    request = {"model": "gpt-4o", "messages": MESSAGES, "max_tokens": 300}
    before = request_estimate(request, None)
    llmcost.register_price(llmcost.ModelPrice("gpt-4o", "openai", input_per_mtok="7.77", output_per_mtok="11"))
    after = request_estimate(request, None)
    assert after != before
    tokens = count_tokens(MESSAGES, "gpt-4o")
    assert after == (Decimal(tokens) * Decimal("7.77") + 300 * Decimal(11)) / 1_000_000


def test_text_counts_are_kept_within_bounds_and_never_for_a_str_subclass():
    class Odd(str):
        def encode(self, *args, **kwargs):  # counts its non-ASCII characters otherwise than a str would
            return b""

    text = "é" + "a" * 35
    assert count_tokens(text, "claude-3-5-haiku-latest") == 1 + 10
    assert count_tokens(Odd(text), "claude-3-5-haiku-latest") == len(text)  # its own way, not the kept count
    assert count_tokens(text, "claude-3-5-haiku-latest") == 1 + 10  # kept, and the same
    for i in range(3 * _TEXTS_KEPT):
        assert count_tokens(f"é{i}", "claude-3-5-haiku-latest") == 1 + 1
    long = "é" * (_TEXT_CHARS_KEPT + 1)
    assert count_tokens(long, "claude-3-5-haiku-latest") == len(long)
    for counts in _state.token_counts.values():
        assert len(counts) <= _TEXTS_KEPT
        assert long not in counts and all(type(t) is str for t in counts)


def test_threads_counting_many_texts_at_once_each_get_the_texts_count():
    wrong = []

    def work() -> None:
        name = threading.current_thread().name
        for i in range(2 * _TEXTS_KEPT):
            text = f"ü{name}{i}"
            ascii_chars = len(text) - 1
            if count_tokens(text, "claude-3-5-haiku-latest") != -(-ascii_chars * 2 // 7) + 1:  # 3.5 a token
                wrong.append(text)

    in_threads(work)
    assert not wrong


def test_a_window_counts_amounts_given_with_their_units_and_without_alike():
    # The tracker gives most amounts with their 10**-18 units, others (an entry recorded otherwise, say) come as
    # Decimals, kept as they are until estimates switch on and converted then (or as they come, after).
    amounts = [Decimal("0.0061025"), Decimal("0.000000000000000003"), Decimal("12.5"), Decimal("-0.0025")]
    recent = RecentCosts(3)
    for i, amount in enumerate(amounts[:3]):
        recent.observe_call("f", "m", amount, atto_of(amount) if i % 2 else None)
    first = atto_of(_exact_mean(amounts[:3]))
    assert recent.mean_atto("f", "m") == first  # (estimates switch on here)
    recent.observe_call("f", "m", amounts[3])
    recent.observe_call("f", "m", amounts[0], atto_of(amounts[0]))
    # A window of 3: each call keeps half the distance to its amount, rounded down.
    second = atto_of(amounts[3]) + (first - atto_of(amounts[3])) // 2
    third = atto_of(amounts[0]) + (second - atto_of(amounts[0])) // 2
    assert recent.mean_atto("f", "m") == recent.mean_atto("f", None) == third
    assert str(recent.mean("f", "m")) == str(from_atto(third))


def test_an_amount_appended_as_estimates_switch_on_never_reaches_a_mean_as_a_decimal():
    # A thread that read ``summing`` false appends its amount, as a Decimal, to a window whose amounts were read
    # already: it is one sample left out, never a Decimal in the means (which would turn the budgets counting them
    # into Decimals).
    recent = _means_on(3)
    for _ in range(3):
        recent.observe_call("f", "m", Decimal("0.003"), 3 * 10**15)
    window = recent._add_window(("f", "m"))
    window.amounts.append(Decimal("0.006"))  # the late thread's append
    for atto in (9 * 10**15, 12 * 10**15, 15 * 10**15):
        recent.observe_call("f", "m", from_atto(atto), atto)
        assert type(recent.mean_atto("f", "m")) is int
    assert recent.mean_atto("f", "m") == 12 * 10**15  # 3 -> 6 -> 9 -> 12: half the way each call


@pytest.mark.parametrize("summing", [False, True])
def test_recent_costs_keep_a_bounded_number_of_keys_the_newest(summing):
    # A tracker recording a resource per tenant (or per request) must not grow without end: past ``max_keys`` the
    # older half of the (resource, model) keys is forgotten, and their estimates start again from their next calls.
    recent = RecentCosts(window=2, max_keys=4)
    if summing:
        assert recent.mean("r0", None) is None  # (estimates asked for: the means are kept as calls come)
    for i in range(4):
        recent.observe_call(f"r{i}", "m", Decimal(i + 1))
    recent.observe_call("r1", "other", Decimal(7))  # a fifth key: r0/m and r1/m forgotten
    assert len(recent._by_key) == 3
    assert [recent.mean(f"r{i}", "m") for i in range(4)] == [None, None, Decimal(3), Decimal(4)]
    assert recent.mean("r1", None) == Decimal(7)  # (by resource: the models it still keeps)
    recent.observe_call("r0", "m", Decimal(5))  # counted again from its next call
    assert recent.mean("r0", "m") == Decimal(5)
    for i in range(100):
        recent.observe_call(f"tenant-{i}", None, Decimal("0.01"))
    assert len(recent._by_key) <= 4
    assert recent.mean("tenant-99", None) == Decimal("0.01")
