import pickle
from decimal import Decimal

import attrs
import pytest

import llmcost
from llmcost import Usage, cost_of
from llmcost._usage import Units, fit_parts, fitted, requests_of, requests_sum


def test_usage_adds_and_totals():
    a = Usage(input_tokens=100, output_tokens=20, cache_read_tokens=50, reasoning_tokens=5)
    b = Usage(input_tokens=10, output_tokens=2, cache_write_tokens=3)
    total = a + b
    assert total == Usage(110, 22, 50, 3, 5, units={"requests": 2})  # two calls: two requests
    assert total.total_tokens == 132
    assert pickle.loads(pickle.dumps(total)) == total


def test_usages_added_count_a_request_each_so_a_per_request_fee_is_charged_for_each():
    one = Usage(1000, 100)
    two = one + one
    assert two == Usage(2000, 200, units={"requests": 2})
    # sonar: $1/M input and output, $0.012 a request (genai-prices' requests_kcount = 12)
    assert cost_of("sonar", one, provider="perplexity") == Decimal("0.0131")
    assert cost_of("sonar", two, provider="perplexity") == 2 * Decimal("0.0131")
    # a usage that says its requests counts them; one that does not is one request
    assert (two + one).units == {"requests": 3}
    assert (Usage(5, units={"requests": 4}) + two).units == {"requests": 6}
    assert ((one + one) + one) == (one + (one + one))


def test_the_empty_usage_adds_nothing_not_a_request():
    one = Usage(1000, 100, units={"web_searches": 1})
    assert one + Usage() == one
    assert Usage() + one == one
    assert Usage() + Usage() == Usage()
    assert sum([one, one], Usage()) == one + one
    assert sum([one, one], Usage()).units == {"web_searches": 2, "requests": 2}


def test_adding_usages_of_a_model_without_a_request_fee_costs_their_sum():
    a, b = Usage(1_000_000, 0), Usage(0, 1_000_000, units={"web_searches": 2})
    # gpt-4o: $2.50/M input, $10/M output, web searches $10 per 1,000, no request fee
    assert cost_of("gpt-4o", a + b) == cost_of("gpt-4o", a) + cost_of("gpt-4o", b) == Decimal("12.52")


def test_usage_is_frozen():
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Usage().input_tokens = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"input_tokens": -1}, "input_tokens"),
        ({"output_tokens": -5}, "output_tokens"),
        ({"input_tokens": 10, "cache_read_tokens": 8, "cache_write_tokens": 3}, "cache_read_tokens"),
        ({"output_tokens": 1, "reasoning_tokens": 2}, "reasoning_tokens"),
    ],
)
def test_usage_rejects_impossible_counts(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Usage(**kwargs)


@pytest.mark.parametrize("value", ["10", 1.5, None, True])
def test_usage_rejects_non_integers(value):
    with pytest.raises(TypeError, match="input_tokens"):
        Usage(input_tokens=value)


def test_usage_accepts_whole_floats_from_json():
    assert Usage(input_tokens=12.0).input_tokens == 12


def test_units_are_parts_of_their_wholes_as_genai_prices_defines_them():
    u = Usage(10_000, 500, 4000, 5000, units={"cache_write_5m_tokens": 2000, "cache_write_1h_tokens": 3000})
    assert u.units == {"cache_write_5m_tokens": 2000, "cache_write_1h_tokens": 3000}
    assert (u + u).units == {"cache_write_5m_tokens": 4000, "cache_write_1h_tokens": 6000, "requests": 2}
    assert (u + Usage(1, units={"web_searches": 2})).units["web_searches"] == 2
    assert hash(u) == hash(Usage(10_000, 500, 4000, 5000, units=dict(u.units)))
    with pytest.raises(TypeError):
        u.units["web_searches"] = 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("units", "message"),
    [
        ({"cache_write_1h_tokens": 6000}, r"cache_write_1h_tokens.*whole cache_write_tokens"),
        ({"input_audio_tokens": 20_000}, r"input_audio_tokens.*whole input_tokens"),
        ({"cache_audio_read_tokens": 5000}, r"cache_audio_read_tokens.*whole cache_read_tokens"),
        ({"output_image_tokens": 501}, r"output_image_tokens.*whole output_tokens"),
        ({"web_searches": -1}, r"web_searches.*negative"),
        ({"tokens_of_doom": 1}, r"unknown usage name 'tokens_of_doom'"),
        ({"output_reasoning_tokens": 1}, r"reasoning_tokens="),
    ],
)
def test_units_reject_unknown_negative_and_parts_larger_than_their_whole(units, message):
    with pytest.raises(ValueError, match=message):
        Usage(10_000, 500, 4000, 5000, units=units)


def test_trusted_units_hold_the_counts_given_as_units_keeps_them():
    from llmcost._usage import Units, trusted_units, unit_counts

    counts = {"cache_write_1h_tokens": 500, "web_searches": 1}
    held = trusted_units(counts)
    assert type(held) is Units and held == Units(counts) and hash(held) == hash(Units(counts))
    assert unit_counts(held) is counts  # no copy: extraction's dict, read by pricing as it is
    assert list(held.items()) == list(counts.items())


def test_fit_parts_counts_the_overlap_the_counts_imply_on_the_smaller_part_first():
    # 10,000 input: 8,000 cached, 9,000 audio, 500 image (so 500 text): at least 7,500 cached tokens are audio or
    # image; the image's 500 first, then audio's 7,000.
    units = {"input_audio_tokens": 9_000, "input_image_tokens": 500}
    fit_parts(units, {"input_tokens": 10_000, "cache_read_tokens": 8_000, "output_tokens": 10})
    assert units == {
        "input_audio_tokens": 9_000,
        "input_image_tokens": 500,
        "cache_image_read_tokens": 500,
        "cache_audio_read_tokens": 7_000,
    }


def test_fit_parts_cuts_units_no_overlap_explains_never_the_five_counts():
    fields = {"input_tokens": 1_000, "cache_write_tokens": 1_000, "output_tokens": 100}
    units = {"cache_write_5m_tokens": 700, "cache_write_1h_tokens": 600}  # writes of both TTLs past all writes
    fit_parts(units, fields)
    assert units == {"cache_write_5m_tokens": 400, "cache_write_1h_tokens": 600}
    units = {"input_audio_tokens": 600, "input_image_tokens": 700}  # audio and image never overlap: the larger cut
    fit_parts(units, {"input_tokens": 1_000, "output_tokens": 100})
    assert units == {"input_audio_tokens": 600, "input_image_tokens": 400}
    units = {"output_image_tokens": 340}  # output images are no reasoning: cut, not counted as images reasoned
    fit_parts(units, {"input_tokens": 10, "output_tokens": 340, "output_reasoning_tokens": 40})
    assert units == {"output_image_tokens": 300}
    assert fields == {"input_tokens": 1_000, "cache_write_tokens": 1_000, "output_tokens": 100}


def test_fit_parts_leaves_units_that_agree_with_the_counts_alone():
    agreeing = {"input_audio_tokens": 9_000, "cache_audio_read_tokens": 7_000, "output_audio_tokens": 150}
    units = dict(agreeing)
    fit_parts(units, {"input_tokens": 10_000, "cache_read_tokens": 8_000, "output_tokens": 200})
    assert units == agreeing
    usage = Usage(input_tokens=10_000, output_tokens=200, cache_read_tokens=8_000, units=agreeing)
    assert fitted(usage) is usage


def test_a_fitted_usage_prices_where_the_reported_one_is_refused():
    reported = Usage(
        input_tokens=10_000, output_tokens=200, cache_read_tokens=8_000, units={"input_audio_tokens": 9_000}
    )
    with pytest.raises(ValueError, match="parts of input_tokens"):
        llmcost.cost_of("gpt-realtime", reported)
    assert fitted(reported).units == {"input_audio_tokens": 9_000, "cache_audio_read_tokens": 7_000}
    assert llmcost.cost_of("gpt-realtime", fitted(reported)) == Decimal("0.0704")


# claude-sonnet-4-5: $3/$15 per million up to 200K input tokens a request, $6/$22.50 past it (catalog, from
# https://docs.claude.com/en/docs/about-claude/pricing#long-context-pricing): 150000*3 + 1000*15 = 465,000e-6
SONNET_REQUEST = Decimal("0.465")


def test_separate_requests_are_priced_each_in_its_own_long_context_tier():
    one = Usage(150_000, 1000)
    both = requests_sum([one, Usage(), one])  # (the empty usage is no request, as for +)
    assert both == one + one == Usage(300_000, 2000, units={"requests": 2})
    assert repr(both.units) == "Units({'requests': 2})"
    assert requests_of(both) == (one, one)
    assert cost_of("claude-sonnet-4-5", both) == 2 * SONNET_REQUEST
    assert cost_of("claude-sonnet-4-5", one + one) == Decimal("1.845")  # a usage added with +: one request's tier
    assert requests_sum([one]) is one and requests_of(one) is None
    assert requests_of(requests_sum([both, one])) == (one, one, one)


def test_a_sum_of_requests_stored_or_changed_is_priced_as_the_sum_it_says():
    both = requests_sum([Usage(150_000, 1000), Usage(150_000, 1000)])
    stored = pickle.loads(pickle.dumps(both))
    assert stored == both and type(stored.units) is Units and requests_of(stored) is None
    changed = attrs.evolve(both, output_tokens=0)
    assert requests_of(changed) is None
    assert cost_of("claude-sonnet-4-5", changed) == Decimal("1.8")  # 300000*6, no longer the requests' parts
