"""``ModelPrice``'s integer pricing of usages with units (``usage_pricer``), of the five counts in 10**-18 units
(``atto_pricer``), in any decimal context, and ``same_rates_up_to``."""

from __future__ import annotations

import decimal
import random
import re
from decimal import Decimal

import pytest

from llmcost import ModelPrice, PriceTier, Usage
from llmcost._model_price import atto_pricer, counts_pricer, money_cost, same_rates_up_to, usage_pricer
from llmcost._money import atto_of
from llmcost._usage import FIELD_UNITS, MAX_COUNT, unit_registry

# Price keys a unit may be priced by, and units a usage may report: the Anthropic and Gemini ones, nested parts
# (a cached audio read is part of the cache read and of the audio input), units billed per hour (no power of ten).
UNIT_KEYS = [
    "cache_write_1h_mtok", "cache_write_5m_mtok", "web_searches_kcount", "input_audio_mtok", "cache_audio_read_mtok",
    "output_image_mtok", "input_text_mtok", "output_text_reasoning_mtok", "cache_audio_write_1h_mtok",
    "audio_hours", "code_executions_kcount",
]  # fmt: skip
PRICES = ["0", "1", "2.5", "0.075", "15", "3.75", "6", "10", "0.30", "1E+1", "12.3456789012", "0.0000000000001"]


def _units_of(keys: list[str]) -> list[str]:
    by_key = {u.price_key: name for name, u in unit_registry().items()}
    return [by_key[k] for k in keys]


def _random_price(rng: random.Random) -> ModelPrice:
    def price() -> Decimal:
        return Decimal(rng.choice(PRICES[:-1]) if rng.random() < 0.97 else PRICES[-1])

    def unit_prices() -> dict[str, Decimal]:
        return {k: price() for k in rng.sample(UNIT_KEYS, rng.randint(0, 4))}

    tiers = [
        {"start": rng.choice([0, 1000, 200_000]), "input_per_mtok": price(), "unit_prices": unit_prices()}
        for _ in range(rng.randint(0, 2))
    ]
    return ModelPrice(
        "m",
        None,
        input_per_mtok=price(),
        output_per_mtok=price(),
        cache_read_per_mtok=price() if rng.random() < 0.7 else None,
        cache_write_per_mtok=price() if rng.random() < 0.7 else None,
        reasoning_per_mtok=price() if rng.random() < 0.3 else None,
        request_price=price() if rng.random() < 0.15 else None,
        tiers=tiers,
        unit_prices=unit_prices(),
    )


def _random_usage(rng: random.Random) -> Usage:
    most = 2**63 - 1 if rng.random() < 0.05 else rng.choice([1000, 300_000])
    inp, out = rng.randint(0, most), rng.randint(0, most)
    cr = rng.randint(0, inp) if rng.random() < 0.5 else 0
    cw = rng.randint(0, inp - cr) if rng.random() < 0.5 else 0
    rs = rng.randint(0, out) if rng.random() < 0.3 else 0
    names = _units_of(rng.sample(UNIT_KEYS, rng.randint(1, 4))) + (["requests"] if rng.random() < 0.1 else [])
    units: dict[str, int] = {}
    for name in sorted(names, key=lambda n: len(_ancestors(n))):  # each within its wholes here (not their sum)
        wholes = [getattr(Usage(inp, out, cr, cw, rs), f) for f, u in FIELD_UNITS.items() if u in _ancestors(name)]
        wholes += [units[whole] for whole in _ancestors(name) if whole in units]
        units[name] = rng.randint(0, min(wholes, default=1000))
    return Usage(inp, out, cr, cw, rs, units=units)


def _ancestors(name: str) -> tuple[str, ...]:
    return unit_registry()[name].ancestors


def test_usages_with_units_are_priced_in_integers_to_money_costs_digits():
    rng = random.Random(15)
    taken = refused = 0
    for _ in range(4000):
        price, usage = _random_price(rng), _random_usage(rng)
        ours = usage_pricer(price)(usage)
        try:
            expected = money_cost(price, usage)
        except ValueError:  # a part over its whole: left to money_cost, which says so
            assert ours is None, (price, usage)
            refused += 1
            continue
        if ours is not None:
            assert ours.as_tuple() == expected.as_tuple(), (price, usage)  # the same digits and exponent
            taken += 1
    assert taken > 2000 and refused > 100  # the integer path priced most, and parts over wholes were met


@pytest.mark.parametrize(
    ("unit_prices", "units", "why"),
    [
        ({"audio_hours": "0.5"}, {"audio_seconds": 7200}, "a divisor that is no power of ten"),
        ({"web_searches_kcount": "0.000000000000000001"}, {"web_searches": 3}, "an exponent past MONEY_SCALE"),
    ],
)
def test_plans_not_summed_in_integers_are_left_to_money_cost(unit_prices, units, why):
    price = ModelPrice("m", None, input_per_mtok=1, output_per_mtok=2, unit_prices=unit_prices)
    usage = Usage(10, 0, units=units)
    assert usage_pricer(price)(usage) is None, why
    assert money_cost(price, usage) > 0


@pytest.mark.parametrize(
    ("unit_prices", "usage"),
    [
        # A cached audio read without the audio input it is part of (a whole not reported is not checked by Usage)
        ({"input_audio_mtok": 1, "cache_audio_read_mtok": "0.1"},
         Usage(100, 0, 50, units={"cache_audio_read_tokens": 50})),
        # Both cache writes by TTL priced apart from the cache write, each within it, together over it
        ({"cache_write_5m_mtok": "3.75", "cache_write_1h_mtok": 6},
         Usage(100, 0, 0, 60, units={"cache_write_5m_tokens": 40, "cache_write_1h_tokens": 30})),
    ],
)  # fmt: skip
def test_a_part_over_its_whole_is_refused_as_money_cost_refuses_it(unit_prices, usage):
    price = ModelPrice("m", None, input_per_mtok=3, output_per_mtok=15, cache_write_per_mtok=4, unit_prices=unit_prices)
    assert usage_pricer(price)(usage) is None
    with pytest.raises(ValueError, match="add up to more than it"):
        money_cost(price, usage)


def test_the_usual_plan_and_the_others_price_alike():
    # Two priced units, no request price: the usual plan (summed inside the pricer); with a request price or a third
    # unit, the general one. Both give money_cost's digits; a unit whose price equals its whole's adds nothing.
    units = {"cache_write_1h_tokens": 500, "web_searches": 3, "input_audio_tokens": 7}
    usage = Usage(1700, 300, 1024, 500, units=units)
    for extra in ({}, {"request_price": "0.01"}, {"unit_prices": {"input_audio_mtok": 3}}):
        fields = {"unit_prices": {"cache_write_1h_mtok": 6, "web_searches_kcount": 10}, **extra}
        if "unit_prices" in extra:
            fields["unit_prices"] = {"cache_write_1h_mtok": 6, "web_searches_kcount": 10, **extra["unit_prices"]}
        price = ModelPrice("m", None, input_per_mtok=3, output_per_mtok=15, cache_read_per_mtok="0.3",
                           cache_write_per_mtok="3.75", **fields)  # fmt: skip
        assert usage_pricer(price)(usage) == money_cost(price, usage)
    price = ModelPrice("m", None, input_per_mtok=3, output_per_mtok=15, unit_prices={"cache_write_1h_mtok": 3})
    assert usage_pricer(price)(usage) == Decimal("0.0096")  # 1700*3 + 300*15: the 1-hour writes at input's price


def test_a_usage_without_units_is_priced_by_the_per_token_integers_where_they_fit():
    usage = Usage(10_000, 500, 8000)
    fits = ModelPrice("m", None, input_per_mtok=3, output_per_mtok=15, cache_read_per_mtok="0.3")
    assert usage_pricer(fits)(usage) == Decimal("0.0159")
    past = ModelPrice("m", None, input_per_mtok="0.0000000000001", output_per_mtok=1)  # 19 places: money_cost rounds
    assert usage_pricer(past)(usage) is None


def test_same_rates_up_to_finds_where_a_correction_changes_the_rates():
    base = ModelPrice("m", None, input_per_mtok=3, output_per_mtok=15, unit_prices={"cache_write_1h_mtok": 6})
    long_context = ModelPrice("m", None, input_per_mtok=3, output_per_mtok=15, unit_prices={"cache_write_1h_mtok": 6},
                              tiers=[{"start": 200_000, "input_per_mtok": 6}])  # fmt: skip
    assert same_rates_up_to(long_context, base) == 200_000
    assert same_rates_up_to(base, base) == MAX_COUNT
    cheaper = ModelPrice("m", None, input_per_mtok=2, output_per_mtok=15, unit_prices={"cache_write_1h_mtok": 6})
    assert same_rates_up_to(cheaper, base) == -1
    # A tier of the same rates (at 128K) changes nothing; a unit price of a later tier does.
    same_tier = ModelPrice("m", None, input_per_mtok=3, output_per_mtok=15, unit_prices={"cache_write_1h_mtok": 6},
                           tiers=[{"start": 128_000, "input_per_mtok": 3},
                                  {"start": 300_000, "unit_prices": {"cache_write_1h_mtok": 12}}])  # fmt: skip
    assert same_rates_up_to(same_tier, base) == 300_000
    at_zero = ModelPrice("m", None, input_per_mtok=3, output_per_mtok=15, tiers=[{"start": 0, "input_per_mtok": 4}])
    assert same_rates_up_to(at_zero, ModelPrice("m", None, input_per_mtok=3, output_per_mtok=15)) == 0
    for inp in (0, 1, 199_999, 200_000, 200_001, 10**9):  # every count up to it has the same rates, the next not
        same = long_context.rates(inp) == base.rates(inp)
        assert same == (inp <= same_rates_up_to(long_context, base))


@pytest.mark.parametrize("inp", [0, 999, 1000, 1001, 199_999, 200_000, 200_001, MAX_COUNT // 2])
def test_a_call_below_every_tier_and_at_each_start_takes_its_tiers_prices(inp):
    # The units pricer tells a call below the lowest tier by one comparison, and looks for the tier only above it:
    # at each start and either side of it, a usage with units costs what ``money_cost`` says.
    price = ModelPrice(
        "m", None, input_per_mtok=3, output_per_mtok=15, cache_write_per_mtok="3.75",
        unit_prices={"cache_write_1h_mtok": 6, "web_searches_kcount": 10},
        tiers=[{"start": 200_000, "input_per_mtok": 6, "unit_prices": {"cache_write_1h_mtok": 12}},
               {"start": 1000, "input_per_mtok": 4}],
    )  # fmt: skip
    usage = Usage(inp, 7, 0, inp // 2, units={"cache_write_1h_tokens": inp // 3, "web_searches": 2})
    assert usage_pricer(price)(usage).as_tuple() == money_cost(price, usage).as_tuple()


def test_the_atto_pricer_gives_the_amount_and_its_exact_units_of_every_flat_price_that_fits_money_scale():
    rng = random.Random(7)
    priced = skipped = 0
    for _ in range(3000):
        price, usage = _random_price(rng), _random_usage(rng)
        pricer = atto_pricer(price)
        if price.tiers or any(p is not None and -p.as_tuple().exponent > 12 for p in _per_mtok(price)):
            assert pricer is None, price  # (tiers, or places past money's 18 once per token: the Decimal only)
            skipped += 1
            continue
        assert pricer is not None, price
        counts = (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens,
                  usage.reasoning_tokens)  # fmt: skip
        found, amount = pricer(*counts), counts_pricer(price)(*counts)
        if amount is None:
            assert found is None  # (a total too large for the integers: the Decimal rule prices it)
            continue
        assert found is not None
        assert found[0].as_tuple() == amount.as_tuple() and found[1] == atto_of(amount), (price, usage)
        priced += 1
    assert priced > 500 and skipped > 500


def _per_mtok(price: ModelPrice) -> list[Decimal | None]:
    fields = ["input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok", "reasoning_per_mtok"]
    return [getattr(price, f) for f in fields] + [
        None if price.request_price is None else price.request_price.scaleb(6)  # (a fee: places as a per-mtok price)
    ]


@pytest.mark.parametrize("prec", [2, 5, 9])
def test_prices_are_exact_in_a_narrow_decimal_context(prec):
    # A caller's ``localcontext(prec=...)`` (finance code) must not round what a call cost: the integers are made a
    # Decimal in a context of their own, and the Decimal rules run in a wide one.
    rng = random.Random(prec)
    cases = [(_random_price(rng), _random_usage(rng)) for _ in range(300)]
    plain = [(p, u) for p, u in cases if u.units]
    plain += [(p, Usage(u.input_tokens, u.output_tokens, u.cache_read_tokens)) for p, u in cases]
    wanted = []
    for price, usage in plain:
        try:
            wanted.append((price.cost(usage), money_cost(price, usage), usage_pricer(price)(usage)))
        except ValueError:
            wanted.append(None)
    with decimal.localcontext() as context:
        context.prec, context.rounding = prec, decimal.ROUND_DOWN
        for (price, usage), want in zip(plain, wanted, strict=True):
            if want is None:
                continue
            got = (price.cost(usage), money_cost(price, usage), usage_pricer(price)(usage))
            assert [str(g) for g in got] == [str(w) for w in want], (price, usage)


@pytest.mark.parametrize(
    ("start", "error"), [("200k", TypeError), ("200000", TypeError), (None, TypeError), (1.5, TypeError),
                         (True, TypeError), (-5, ValueError)]
)  # fmt: skip
def test_a_tier_start_that_is_not_a_count_of_tokens_is_refused_naming_start_and_the_value(start, error):
    with pytest.raises(error, match=rf"start .*{re.escape(repr(start))}"):
        PriceTier(start=start, input_per_mtok="2")
    with pytest.raises(error, match=rf"tiers\[1\]: start .*{re.escape(repr(start))}"):
        ModelPrice("x", None, input_per_mtok=1, output_per_mtok=1, tiers=[{"start": 10}, {"start": start}])
    assert PriceTier(start=0).start == 0


@pytest.mark.parametrize("usage", [{"input_tokens": 1}, 1000, None])
def test_cost_of_something_not_a_usage_is_a_type_error_naming_it(usage):
    with pytest.raises(TypeError, match=rf"usage must be a llmcost.Usage, got {re.escape(repr(usage))}"):
        ModelPrice("x", None, input_per_mtok=1, output_per_mtok=1).cost(usage)


def test_tiers_that_are_not_a_sequence_of_tiers_are_refused():
    with pytest.raises(TypeError, match="tiers must be a sequence"):
        ModelPrice("x", None, input_per_mtok=1, output_per_mtok=1, tiers=5)
    with pytest.raises(TypeError, match=r"tiers\[0\] must be a PriceTier"):
        ModelPrice("x", None, input_per_mtok=1, output_per_mtok=1, tiers=[200_000])
