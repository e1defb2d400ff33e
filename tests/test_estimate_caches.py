"""What the estimates keep between calls (review tests): a request's estimate priced once per (model, input tokens,
output tokens) while the model's price stays, token counts kept per text, and a window's mean kept while its
amounts stay. Each kept value must be what computing it afresh gives, whatever changed in between: a registered or
loaded price, a dated price's date passing, the decimal context, ``_state.reset()``, a fork, other threads."""

from __future__ import annotations

import decimal
import json
import math
import os
import random
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from fractions import Fraction

import pytest
from freezegun import freeze_time

import llmcost
from llmcost import _state, count_tokens
from llmcost._estimate import RecentCosts, request_estimate, request_estimate_atto
from llmcost._money import atto_of, round_money
from llmcost._prices import cost_of, money_cost_of
from llmcost._tokens import (
    _AMOUNTS_KEPT,
    _MODELS_PRICED,
    _TEXTS_KEPT,
    CEIL_TABLE_CHARS,
    CHARS_PER_TOKEN,
    estimated_amount,
    message_tokens_table,
)
from tests.conftest import answer_of_forked_child, in_threads_beside

UTC = timezone.utc
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Summarize: " + "lorem ipsum dolor sit amet " * 20},
]


def _afresh(model: str, prompt: object, output: int) -> Decimal:
    """The estimate as computed with nothing kept (the code before the caches)."""
    return money_cost_of(model, count_tokens(prompt, model), output)  # type: ignore[arg-type]


# -- estimates priced once --------------------------------------------------------------------------------------
def registering(model: str, prices: list[Decimal]) -> Callable[[threading.Event], None]:
    """A thread's work: register ``model`` at each of the two ``prices`` in turn until ``stop`` is set, then at the
    second (the price the estimates must end at)."""

    def register(stop: threading.Event) -> None:
        k = 0
        while not stop.is_set():
            k += 1
            price = prices[k % 2]
            llmcost.register_price(llmcost.ModelPrice(model, None, input_per_mtok=price, output_per_mtok=price))
        price = prices[1]
        llmcost.register_price(llmcost.ModelPrice(model, None, input_per_mtok=price, output_per_mtok=price))

    return register


def test_a_dated_price_is_estimated_at_the_price_in_force_as_the_clock_crosses_its_date():
    # o3-2025-04-16 cost $10/$40 per Mtok until 2025-06-10, $2/$8 from then: the same request estimated before and
    # after the date (nothing else changed) is priced at each day's price.
    model = "o3-2025-04-16"
    request = {"model": model, "messages": MESSAGES, "max_tokens": 200}
    tokens = count_tokens(MESSAGES, model)
    with freeze_time(datetime(2025, 6, 9, 23, 59, tzinfo=UTC)) as frozen:
        before = [request_estimate(request, None) for _ in range(3)]
        assert before == [round_money((tokens * Decimal(10) + 200 * Decimal(40)) / 1_000_000)] * 3
        frozen.move_to(datetime(2025, 6, 10, 0, 1, tzinfo=UTC))
        after = [request_estimate(request, None) for _ in range(3)]
        assert after == [round_money((tokens * Decimal(2) + 200 * Decimal(8)) / 1_000_000)] * 3
        frozen.move_to(datetime(2025, 6, 9, 12, tzinfo=UTC))  # (a clock set back: the old price again)
        assert request_estimate(request, None) == before[0]


@pytest.mark.parametrize("how", ["register", "load-toml", "load-json"])
def test_an_estimate_kept_gives_way_to_a_price_registered_or_loaded_since(tmp_path, how):
    model = "claude-3-5-haiku-latest"
    first = estimated_amount(model, MESSAGES, 300)
    assert estimated_amount(model, MESSAGES, 300) == first == _afresh(model, MESSAGES, 300)  # kept
    if how == "register":
        llmcost.register_price(llmcost.ModelPrice(model, "anthropic", input_per_mtok="1.11", output_per_mtok="2.22"))
    elif how == "load-toml":
        path = tmp_path / "prices.toml"
        path.write_text(
            f'[[price]]\nmodel = "{model}"\nprovider = "anthropic"\ninput_per_mtok = "1.11"\noutput_per_mtok = "2.22"\n'
        )
        llmcost.load_prices(path)
    else:
        path = tmp_path / "prices.json"
        path.write_text(
            json.dumps([{"model": model, "provider": "anthropic", "input_per_mtok": "1.11", "output_per_mtok": "2.22"}])
        )
        llmcost.load_prices(path)
    tokens = count_tokens(MESSAGES, model)
    want = round_money((tokens * Decimal("1.11") + 300 * Decimal("2.22")) / 1_000_000)
    assert estimated_amount(model, MESSAGES, 300) == want == _afresh(model, MESSAGES, 300) != first
    # A price registered for another model changes nothing here, and the estimate is right after it too.
    llmcost.register_price(llmcost.ModelPrice("some-other-model", "acme", input_per_mtok="9", output_per_mtok="9"))
    assert estimated_amount(model, MESSAGES, 300) == want


def test_reset_forgets_kept_estimates_and_counts_and_the_catalog_price_comes_back():
    model = "gpt-4o-mini"
    catalog = estimated_amount(model, "déjà vu " * 50, 100)
    llmcost.register_price(llmcost.ModelPrice(model, "openai", input_per_mtok="5", output_per_mtok="5"))
    registered = estimated_amount(model, "déjà vu " * 50, 100)
    assert estimated_amount(model, "déjà vu " * 50, 100) == registered != catalog  # (kept from the second on)
    assert _state.estimated_amounts and any(_state.token_counts.values())
    _state.reset()
    assert not _state.estimated_amounts and not _state.token_counts
    assert estimated_amount(model, "déjà vu " * 50, 100) == catalog == _afresh(model, "déjà vu " * 50, 100)


def test_the_estimate_kept_is_the_amount_priced_in_each_rounding_and_precision():
    model = "claude-3-5-haiku-latest"
    prompt = "x" * 1234
    for prec, rounding in [(28, decimal.ROUND_HALF_EVEN), (4, decimal.ROUND_DOWN), (4, decimal.ROUND_UP), (28, "x")]:
        with decimal.localcontext() as context:
            context.prec = prec
            if rounding != "x":
                context.rounding = rounding
            for _ in range(2):
                assert str(estimated_amount(model, prompt, 77)) == str(_afresh(model, prompt, 77))


def test_threads_estimating_while_prices_are_registered_get_a_price_in_force_and_the_last_one_after():
    # Estimates of many sizes (more than are kept: the table starts afresh under the threads) while another thread
    # registers one price, then another, in turn: each estimate is priced at one of them, none raises, the table stays
    # bounded, and once the registering stops every estimate is at the last price.
    model = "my-model"
    prices = [Decimal("1.5"), Decimal("4.25")]
    llmcost.register_price(llmcost.ModelPrice(model, None, input_per_mtok=prices[0], output_per_mtok=prices[0]))
    errors: list[BaseException] = []
    wrong: list[tuple[int, Decimal]] = []

    register = registering(model, prices)

    def work() -> None:
        rng = random.Random(threading.get_ident())
        try:
            for _ in range(1500):
                n = count_tokens(text := "y" * rng.randrange(4 * _AMOUNTS_KEPT), model)
                amount = estimated_amount(model, text, 10)
                if amount not in {round_money((n + 10) * p / 1_000_000) for p in prices}:
                    wrong.append((n, amount))
        except BaseException as exc:
            errors.append(exc)

    in_threads_beside(register, work, 6)
    assert not errors and not wrong
    assert all(len(kept[-1]) <= _AMOUNTS_KEPT for kept in _state.estimated_amounts.values())
    for size in range(0, 4 * _AMOUNTS_KEPT, 97):
        n = count_tokens("y" * size, model)
        assert estimated_amount(model, "y" * size, 10) == round_money((n + 10) * prices[1] / 1_000_000)


def test_threads_counting_texts_while_the_caches_are_reset_never_fail():
    errors: list[BaseException] = []

    def resetting(stop: threading.Event) -> None:
        while not stop.is_set():
            _state.token_counts.clear()
            _state.estimated_amounts.clear()
            _state.model_encodings.clear()

    def work() -> None:
        rng = random.Random(threading.get_ident())
        try:
            for i in range(3000):
                text = f"é{rng.randrange(4 * _TEXTS_KEPT)}"
                ascii_chars = len(text) - 1
                assert count_tokens(text, "claude-3-5-haiku-latest") == -(-ascii_chars * 2 // 7) + 1
                if i % 7 == 0:
                    assert estimated_amount("gpt-4o", text, 5) == _afresh("gpt-4o", text, 5)
        except BaseException as exc:
            errors.append(exc)

    in_threads_beside(resetting, work, 6)
    assert not errors
    assert all(len(counts) <= _TEXTS_KEPT for counts in _state.token_counts.values())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_estimates_at_the_prices_it_registers_and_the_parent_at_its_own():
    model = "claude-3-5-haiku-latest"
    parent = estimated_amount(model, MESSAGES, 300)  # kept in the parent before the fork

    def in_child() -> list[bool]:
        same = estimated_amount(model, MESSAGES, 300) == parent
        llmcost.register_price(llmcost.ModelPrice(model, "anthropic", input_per_mtok="3", output_per_mtok="3"))
        tokens = count_tokens(MESSAGES, model)
        moved = estimated_amount(model, MESSAGES, 300) == round_money((tokens + 300) * Decimal(3) / 1_000_000)
        return [same, moved]

    answer = answer_of_forked_child(in_child)
    assert answer == [True, True]
    assert estimated_amount(model, MESSAGES, 300) == parent == _afresh(model, MESSAGES, 300)


def test_a_price_that_changes_within_a_day_is_never_kept():
    # deepseek-chat has off-peak hours: its estimate is priced at the time of day, as ``cost_of`` prices it.
    model = "deepseek-chat"
    with freeze_time(datetime(2025, 7, 1, 3, 0, tzinfo=UTC)) as frozen:
        for hour in [3, 17, 3, 17, 18, 1]:
            frozen.move_to(datetime(2025, 7, 1, hour, 0, tzinfo=UTC))
            want = round_money(cost_of(model, count_tokens(MESSAGES, model), 100))
            assert estimated_amount(model, MESSAGES, 100) == want


def _reference_request_estimate(kwargs: dict[str, object], model: object) -> Decimal | None:
    """``request_estimate`` as the code before the kept estimates read a request (every key in turn) and priced it
    (``money_cost_of`` of ``count_tokens``), nothing kept."""
    try:
        found = kwargs.get("model")
        if isinstance(found, str):
            model = found
        if not model:
            return None
        prompt = next(
            (kwargs[k] for k in ("messages", "input", "prompt", "contents") if kwargs.get(k) is not None), None
        )
        if prompt is None:
            return None
        limit = next(
            (
                v
                for k in ("max_tokens", "max_output_tokens", "max_completion_tokens")
                if isinstance(v := kwargs.get(k), int)
            ),
            None,
        )
        config = kwargs.get("config")
        if limit is None and isinstance(config, dict):
            limit = config.get("max_output_tokens")
        output = limit if isinstance(limit, int) and limit >= 0 else 500
        if type(output) is bool:
            return None
        if isinstance(prompt, dict):
            prompt = [prompt]
        return _afresh(model, prompt, output)  # type: ignore[arg-type]
    except (TypeError, ValueError, KeyError):
        return None


class _Text(str):
    """A str subclass whose length is not its characters' (counted as it says, never read as a plain str)."""

    def __len__(self) -> int:
        return 3 * str.__len__(self)


def _generated_request(rng: random.Random) -> dict[str, object]:
    texts = [
        "",
        "hi",
        "You are terse.",
        "lorem ipsum " * 90,
        "déjà vu " * 20,
        "日本語",
        "x" * 9000,
        "🙂 ok",
        *("y" * n for n in (4095, 4096, 4097, 12345)),  # (each side of the lengths read off ``message_tokens_table``)
        _Text("abc " * 10),
    ]

    def content() -> object:
        return rng.choice([rng.choice(texts), [{"type": "text", "text": rng.choice(texts)}, "more"], None, 7])

    def message() -> object:
        found: dict[str, object] = {"role": "user", "content": content()}
        if rng.random() < 0.1:
            found["name"] = rng.choice(["bob", 5])
        if rng.random() < 0.05:
            del found["content"]
        return rng.choice([found] * 8 + [OrderedDict(found), "not a message", ["content", "x"]])

    prompt = rng.choice(
        [[message() for _ in range(rng.randrange(5))] for _ in range(4)]
        + [rng.choice(texts), message(), (message(),), 3]
    )
    request: dict[str, object] = {rng.choice(["messages", "messages", "input", "prompt", "contents"]): prompt}
    if rng.random() < 0.9:
        request["model"] = rng.choice(
            ["gpt-4o", "claude-3-5-haiku-latest", "gemini-2.5-pro", "o3-2025-04-16", "reg-model", "nope", ""]
        )
    for key in ("max_tokens", "max_output_tokens", "max_completion_tokens"):
        if rng.random() < 0.35:
            request[key] = rng.choice([300, 0, 4096, -5, True, 3.5, "300", None, 2**70])
    if rng.random() < 0.15:
        request["config"] = {"max_output_tokens": rng.choice([77, True, -1, None])}
    return request


@pytest.mark.parametrize("seed", range(4))
def test_request_estimates_are_what_reading_and_pricing_each_request_afresh_gives(seed):
    # Generated requests (chat messages of every shape, text prompts, Mapping prompts, each key of the output limit,
    # bad values), each estimated in turn several times (the kept amounts), some in a context of other precision or
    # rounding, while a price is registered now and then: each estimate is the amount, written alike, that reading
    # and pricing the request afresh gives.
    rng = random.Random(seed)
    llmcost.register_price(llmcost.ModelPrice("reg-model", "acme", input_per_mtok="1.234567", output_per_mtok="2.5"))
    requests = [_generated_request(rng) for _ in range(300)]
    for i in range(1500):
        if i % 250 == 0:
            price = f"{1 + i // 250}.5"
            llmcost.register_price(llmcost.ModelPrice("gpt-4o", "openai", input_per_mtok=price, output_per_mtok="2"))
        request, model = rng.choice(requests), rng.choice(["gpt-4o", None, "reg-model"])
        with decimal.localcontext() as context:
            if rng.random() < 0.2:
                context.prec = rng.choice([4, 9, 27, 28, 40])
                context.rounding = rng.choice([decimal.ROUND_DOWN, decimal.ROUND_CEILING])
            got, want = request_estimate(request, model), _reference_request_estimate(request, model)
            assert str(got) == str(want), (request, model, context)


@pytest.mark.parametrize("model", ["gpt-4o", "claude-3-5-haiku-latest", "mistral-large-latest", "reg-model"])
def test_chat_requests_of_every_text_length_are_estimated_as_counting_and_pricing_afresh_gives(model):
    # The text lengths read off ``message_tokens_table`` and those divided (each side of ``CEIL_TABLE_CHARS``), in
    # requests estimated again (the amounts kept), at each family's characters per token (3.5, 3.7 and 4).
    llmcost.register_price(llmcost.ModelPrice("reg-model", "acme", input_per_mtok="1.234567", output_per_mtok="2.5"))
    lengths = [*range(40), *range(CEIL_TABLE_CHARS - 20, CEIL_TABLE_CHARS + 20), 50_000, 1_000_003]
    for length in lengths:
        request = {
            "model": model,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "z" * length}],
            "max_tokens": 64,
        }
        want = _reference_request_estimate(request, None)
        for _ in range(3):
            got = request_estimate(request, None)
            assert str(got) == str(want), (model, length)


class _OtherGet(dict):  # type: ignore[type-arg]
    """A message that says another text than it holds (read by its own ``get``, as ``count_tokens`` reads it)."""

    def get(self, key: object, default: object = None) -> object:
        return "said otherwise " * 5 if key == "content" else dict.get(self, key, default)


class _NotAscii(_Text):
    """A text that says it is not ASCII, and is longer than its characters (counted as it says)."""

    def isascii(self) -> bool:
        return False


def _message(content: object, **more: object) -> dict[str, object]:
    return {"role": "user", "content": content, **more}


_SYSTEM = _message("Be brief.")
_SHAPES: dict[str, tuple[object, object]] = {  # (messages, max_tokens)
    "usual": ([_SYSTEM, _message("lorem ipsum " * 30)], 300),
    "one message": ([_message("hi")], 7),
    "empty text": ([_SYSTEM, _message("")], 300),
    "dict subclass": ([_SYSTEM, _OtherGet(_message("abc " * 9))], 300),
    "dict subclass first": ([_OtherGet(_message("abc " * 9)), _SYSTEM], 300),
    "ordered dict": ([_SYSTEM, OrderedDict(_message("abc " * 9))], 300),
    "a name": ([_SYSTEM, _message("abc " * 9, name="bob")], 300),
    "a name not a str": ([_SYSTEM, _message("abc " * 9, name=5)], 300),
    "no content": ([_SYSTEM, {"role": "user"}], 300),
    "content None": ([_SYSTEM, _message(None)], 300),
    "content parts": ([_SYSTEM, _message([{"type": "text", "text": "abc " * 9}, "more"])], 300),
    "content an int": ([_SYSTEM, _message(7)], 300),
    "not ASCII": ([_SYSTEM, _message("déjà vu " * 9)], 300),
    "not ASCII first": ([_message("日本語 " * 9), _SYSTEM], 300),
    "a str that says it is not ASCII": ([_SYSTEM, _message(_NotAscii("abc " * 9))], 300),
    "a str that counts itself": ([_SYSTEM, _message(_Text("abc " * 9))], 300),
    "longest in the table": ([_SYSTEM, _message("y" * (CEIL_TABLE_CHARS - 1))], 300),
    "longer than the table": ([_SYSTEM, _message("y" * CEIL_TABLE_CHARS)], 300),
    "much longer": ([_message("y" * 12345), _message("z" * 5000)], 300),
    "no messages": ([], 300),
    "a tuple": ((_SYSTEM, _message("abc " * 9)), 300),
    "a str message": ([_SYSTEM, "abc " * 9], 300),
    "a list message": ([_SYSTEM, ["content", "abc"]], 300),
    "max_tokens True": ([_SYSTEM, _message("abc " * 9)], True),
    "max_tokens False": ([_SYSTEM, _message("abc " * 9)], False),
    "max_tokens 0": ([_SYSTEM, _message("abc " * 9)], 0),
    "max_tokens negative": ([_SYSTEM, _message("abc " * 9)], -1),
}


@pytest.mark.parametrize("model", ["claude-3-5-haiku-latest", "gpt-4o", "reg-model"])
@pytest.mark.parametrize("shape", list(_SHAPES))
def test_a_chat_request_of_any_shape_is_estimated_as_counting_and_pricing_it_afresh_gives(model, shape):
    # ``request_estimate`` reads the usual chat request itself (plain dicts of ASCII text, read off a table) and
    # hands every other shape to ``estimated_amount``. With amounts kept for every count near the request's (so that
    # a request counted wrongly finds a wrong amount rather than none), each shape is estimated as counting and
    # pricing it afresh gives, in 10**-18 units too where they are given.
    llmcost.register_price(llmcost.ModelPrice("reg-model", "acme", input_per_mtok="1.234567", output_per_mtok="2.5"))
    messages, limit = _SHAPES[shape]
    request = {"model": model, "messages": messages, "max_tokens": limit}
    want = _reference_request_estimate(request, None)
    try:
        tokens = count_tokens(messages, model)  # type: ignore[arg-type]
    except TypeError:
        tokens = 0
    ratio = CHARS_PER_TOKEN["openai" if model == "gpt-4o" else "anthropic" if "claude" in model else "default"]
    output = int(limit)  # type: ignore[call-overload]  # (a bool's too: a wrong reading of one finds it)
    if output >= 0:
        for size in range(int(max(tokens - 60, 0) * ratio), int((tokens + 60) * ratio)):
            estimated_amount(model, "y" * size, output)  # (a kept amount for each count near the request's)
    for _ in range(3):
        found = request_estimate_atto(request, None)
        got = None if found is None else found[0]
        assert str(got) == str(want), (shape, model)
        assert found is None or found[1] is None or found[1] == atto_of(found[0])


def test_threads_estimating_chat_requests_while_prices_are_registered_get_a_price_in_force_and_the_last_after():
    # ``request_estimate``'s own reading of a chat request and its kept amounts, from several threads (lengths each
    # side of ``CEIL_TABLE_CHARS``) while another registers one price, then another: as for ``estimated_amount``.
    model = "my-chat-model"
    prices = [Decimal("1.5"), Decimal("4.25")]
    llmcost.register_price(llmcost.ModelPrice(model, None, input_per_mtok=prices[0], output_per_mtok=prices[0]))
    errors: list[BaseException] = []
    wrong: list[tuple[int, object]] = []

    def chat(size: int) -> dict[str, object]:
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "y" * size}]
        return {"model": model, "messages": messages, "max_tokens": 10}

    register = registering(model, prices)

    def work() -> None:
        rng = random.Random(threading.get_ident())
        try:
            for _ in range(1000):
                request = chat(rng.randrange(2 * CEIL_TABLE_CHARS))
                n = count_tokens(request["messages"], model)  # type: ignore[arg-type]
                amount = request_estimate(request, None)
                if amount not in {round_money((n + 10) * p / 1_000_000) for p in prices}:
                    wrong.append((n, amount))
        except BaseException as exc:
            errors.append(exc)

    in_threads_beside(register, work, 4)
    assert not errors and not wrong
    for size in range(0, 2 * CEIL_TABLE_CHARS, 301):
        n = count_tokens(chat(size)["messages"], model)  # type: ignore[arg-type]
        assert request_estimate(chat(size), None) == round_money((n + 10) * prices[1] / 1_000_000)


def test_message_tokens_table_is_the_overhead_and_the_ceiling_of_each_length_over_the_ratio():
    for ratio in (3.5, 3.7, 4.0, 2.9, 1.0):
        table = message_tokens_table(ratio)
        assert len(table) == CEIL_TABLE_CHARS
        assert table == [3 + math.ceil(n / ratio) for n in range(CEIL_TABLE_CHARS)]
        assert message_tokens_table(ratio) is table  # one per ratio


def test_amounts_kept_before_a_reset_are_not_found_after_it():
    # A thread that priced a request at a registered price and keeps its amount as ``reset()`` runs puts back amounts
    # of prices no longer in force: they must not be found.
    model = "claude-3-5-haiku-latest"
    llmcost.register_price(llmcost.ModelPrice(model, "anthropic", input_per_mtok="7", output_per_mtok="7"))
    registered = estimated_amount(model, MESSAGES, 300)
    assert estimated_amount(model, MESSAGES, 300) == registered  # kept
    kept = _state.estimated_amounts[model]
    _state.reset()
    _state.estimated_amounts[model] = kept  # (the racing thread's amounts)
    assert estimated_amount(model, MESSAGES, 300) == _afresh(model, MESSAGES, 300) != registered


def test_amounts_are_kept_for_a_bounded_number_of_models_and_counts():
    prices = {f"bounded-{i}": Decimal(i + 1) for i in range(_MODELS_PRICED + 8)}
    for model, price in prices.items():
        llmcost.register_price(llmcost.ModelPrice(model, "acme", input_per_mtok=price, output_per_mtok=price))
    for model, price in prices.items():
        for size in range(0, 4 * _AMOUNTS_KEPT, 3):
            tokens = count_tokens("y" * size, model)
            assert estimated_amount(model, "y" * size, 10) == round_money((tokens + 10) * price / 1_000_000)
            assert len(_state.estimated_amounts) <= _MODELS_PRICED
            assert all(len(kept[-1]) <= _AMOUNTS_KEPT for kept in _state.estimated_amounts.values())


# -- the mean of a window ---------------------------------------------------------------------------------------
class _Reference:
    """What ``RecentCosts`` promises, in exact fractions: the mean of the first ``size`` amounts, rounded half-even to
    money's 18 places; then each amount keeps (size - 1)/(size + 1) of the mean's distance from it, rounded down to
    a whole 10**-18 (toward the amount). Written without trailing zeros (the form ``from_atto`` writes)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.first: list[Decimal] = []
        self.atto: int | None = None  # (the mean in 10**-18 USD, once the first amounts are in)

    def observe(self, amount: Decimal) -> None:
        if len(self.first) < self.size:
            self.first.append(amount)
            mean = Fraction(sum(self.first, Decimal(0))) / len(self.first) * 10**18
            self.atto = round(mean)  # (Fraction's round: half to even)
            return
        assert self.atto is not None
        target = Fraction(amount) * 10**18
        distance = (self.atto - target) * Fraction(self.size - 1, self.size + 1)
        self.atto = int(target + (math.floor(distance) if distance >= 0 else math.ceil(distance)))

    def mean(self) -> Decimal | None:
        if self.atto is None:
            return None
        with decimal.localcontext(decimal.Context(prec=80)):
            mean = Decimal(self.atto).scaleb(-18)
            return mean.quantize(Decimal(1)) if mean == mean.to_integral_value() else mean.normalize()


@pytest.mark.parametrize("seed", range(8))
def test_the_mean_of_a_window_follows_its_amounts_through_runs_of_one_amount_and_context_changes(seed):
    # Long runs of one amount broken by other amounts, the same value written otherwise, zeros, large amounts; means
    # asked in contexts of several precisions and roundings. Each mean is the reference's, written as it writes it
    # (one form); a run of one amount long enough ends at it exactly.
    rng = random.Random(seed)
    size = rng.choice([1, 2, 3, 5, 20])
    recent = RecentCosts(size)
    reference = _Reference(size)
    choices = ["0.0025", "0.00250", "0.006", "0.0060", "0", "-0", "0E-5", "1.5", "0.00416667", "123456789.5"]
    assert recent.mean("r", "m") is None  # (estimates kept from the first amount on)
    amount = Decimal(rng.choice(choices))
    for _ in range(400):
        if rng.random() < 0.15:
            amount = Decimal(rng.choice(choices))
        recent.observe_call("r", "m", amount)
        reference.observe(amount)
        with decimal.localcontext() as context:
            context.prec = rng.choice([28, 28, 9, 5])
            context.rounding = rng.choice([decimal.ROUND_HALF_EVEN, decimal.ROUND_DOWN, decimal.ROUND_CEILING])
            for _ in range(rng.randint(1, 2)):
                got, want = recent.mean("r", "m"), reference.mean()
                assert got == want and str(got) == str(want), (reference.first, amount, context)
                assert str(recent.mean("r", None)) == str(want)
    amount = Decimal(rng.choice(["0", "0.0025", "123456789.5"]))
    for _ in range(1000):  # (123456789.5 to 0 at 19/21 a call is below 1e-18 in ~700 calls)
        recent.observe_call("r", "m", amount)
        reference.observe(amount)
    assert recent.mean("r", "m") == reference.mean() == amount


def test_a_price_registered_again_for_its_provider_is_the_one_estimated_from_then_on():
    # ``register_price``: "use ``price`` ... from now on". A model registered again for the same provider at a new
    # price is estimated (and priced) at the new one, also where no provider is named (the estimate's lookup); a price
    # registered for a second provider leaves the first provider's as the model's price without a provider.
    model = "acme-model"
    llmcost.register_price(llmcost.ModelPrice(model, "acme", input_per_mtok="1.5", output_per_mtok="1.5"))
    assert estimated_amount(model, "z" * 100, 10) == _afresh(model, "z" * 100, 10)
    llmcost.register_price(llmcost.ModelPrice(model, "acme", input_per_mtok="4.25", output_per_mtok="4.25"))
    tokens = count_tokens("z" * 100, model)
    want = round_money((tokens + 10) * Decimal("4.25") / 1_000_000)
    assert estimated_amount(model, "z" * 100, 10) == want == cost_of(model, tokens, 10)
    assert llmcost.get_price(model).input_per_mtok == Decimal("4.25")
    llmcost.register_price(llmcost.ModelPrice(model, "other", input_per_mtok="9", output_per_mtok="9"))
    assert llmcost.get_price(model).input_per_mtok == Decimal("4.25")
    assert llmcost.get_price(model, "other").input_per_mtok == Decimal("9")
    assert estimated_amount(model, "z" * 100, 10) == want
