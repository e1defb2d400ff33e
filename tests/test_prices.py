"""Prices: catalog agreement with genai-prices, dated prices, tiers, overrides, files, errors."""

from __future__ import annotations

import json
import random
import re
from datetime import datetime, timezone
from decimal import Decimal

import pytest

import llmcost
import llmcost.analytics
from llmcost import ModelPrice, PricingError, UnknownModelError, Usage, cost_of, get_price
from llmcost._corrections import corrections_for
from llmcost._model_price import money_cost
from llmcost._money import atto_of
from llmcost._prices import price_for, priced

AT = datetime(2025, 9, 1, tzinfo=timezone.utc)


def test_every_catalog_model_agrees_with_genai_prices():
    from genai_prices import Usage as GUsage
    from genai_prices import calc_price, data_snapshot

    rng = random.Random(7)
    compared = 0
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            inp = rng.choice([0, 10, 1000, 150_000, 250_000, 1_200_000])
            cr = rng.randint(0, inp // 2)
            cw = rng.randint(0, (inp - cr) // 2)
            out = rng.randint(0, 5000)
            rs = rng.randint(0, out)
            kwargs = {"input_tokens": inp, "cache_read_tokens": cr, "cache_write_tokens": cw, "output_tokens": out}
            if rs:
                kwargs["output_reasoning_tokens"] = rs
            try:
                expected = calc_price(
                    GUsage(**kwargs), model.id, provider_id=provider.id, genai_request_timestamp=AT
                ).total_price
            except (ValueError, LookupError):
                continue  # units genai-prices itself cannot price from token counts alone
            ours = cost_of(model.id, Usage(inp, out, cr, cw, rs), provider=provider.id, at=AT)
            label = priced(model.id, provider.id, Usage(inp, out, cr, cw, rs), AT)[1]
            if label.startswith("correction:"):  # a cited catalog correction (llmcost._corrections) priced it
                assert corrections_for(provider.id, model.id) and ours != expected, (provider.id, model.id)
                continue
            assert ours == expected, (provider.id, model.id, kwargs)
            compared += 1
    assert compared > 1500


def test_the_tracker_path_gives_each_amount_in_atto_units_when_asked_and_the_same_amount():
    # ``priced(..., atto=True)``: what budgets and the recent-calls sums count, the amount's exact 10**-18 units; the
    # amount itself and its label as without it. Over every catalog model.
    from genai_prices import data_snapshot

    rng = random.Random(11)
    given = 0
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            inp = rng.randint(0, 300_000)
            usage = Usage(inp, rng.randint(0, 5000), rng.randint(0, inp))
            try:
                plain = priced(model.id, provider.id, usage, _micros(AT))
            except (UnknownModelError, PricingError, ValueError):
                continue
            asked = priced(model.id, provider.id, usage, _micros(AT), None, True)
            assert plain[:4] == asked[:4] and plain[4] is None, (provider.id, model.id)
            assert asked[4] is None or asked[4] == atto_of(asked[0]), (provider.id, model.id, usage)
            given += asked[4] is not None
    assert given > 500


def test_dated_ids_and_dated_prices():
    assert get_price("gpt-4o-2024-08-06").model == "gpt-4o"
    assert get_price("claude-3-5-sonnet-20241022").cache_write_per_mtok == Decimal("3.75")
    assert get_price("o3", at=datetime(2025, 6, 9, tzinfo=timezone.utc)).input_per_mtok == Decimal(10)
    assert get_price("o3", at=datetime(2025, 6, 10, tzinfo=timezone.utc)).input_per_mtok == Decimal(2)


def test_long_context_tier_applies_to_the_whole_call():
    price = get_price("claude-sonnet-4-5")
    assert cost_of("claude-sonnet-4-5", input_tokens=200_000) == Decimal("0.6")  # at $3
    assert cost_of("claude-sonnet-4-5", input_tokens=200_001) == Decimal("1.200006")  # all at $6
    assert price.tiers[0].start == 200_000


def test_registered_prices_win_and_are_exact():
    llmcost.register_price(ModelPrice("gpt-4o", "openai", input_per_mtok="1", output_per_mtok="2"))
    assert cost_of("gpt-4o", input_tokens=1_000_000) == Decimal(1)
    assert llmcost.MODEL_PRICING["gpt-4o"].input_per_mtok == Decimal(1)


def test_a_registered_price_wins_for_the_dated_and_aliased_ids_of_its_model():
    # docs/prices.md: "Dated and aliased ids resolve to their catalog model" and registered prices "win over the
    # catalog". A response carries the dated id (gpt-4o-2024-08-06); a budget estimates the request's (gpt-4o).
    from anthropic.types import Message
    from openai.types.chat import ChatCompletion

    mtok = 1_000_000
    before = cost_of("gpt-4o-2024-08-06", mtok, mtok)  # resolved (and cached) before the price is registered
    assert before == Decimal("12.5")
    llmcost.register_price(ModelPrice("gpt-4o", "openai", input_per_mtok="1", output_per_mtok="4"))
    llmcost.register_price(ModelPrice("claude-sonnet-4-5", "anthropic", input_per_mtok="1", output_per_mtok="5"))
    for model, provider in [
        ("gpt-4o-2024-08-06", None),
        ("gpt-4o-2024-08-06", "openai"),
        ("GPT-4o-2024-08-06", None),
        ("openai/gpt-4o", None),
        ("gpt-4o", None),
    ]:
        assert cost_of(model, mtok, mtok, provider=provider) == Decimal(5), (model, provider)
        assert price_for(model, provider)[1] == "user"
    assert cost_of("claude-sonnet-4-5-20250929", mtok, mtok) == Decimal(6)
    assert llmcost.MODEL_PRICING["openai/gpt-4o"] == get_price("openai/gpt-4o") == get_price("gpt-4o")
    assert cost_of("gpt-4o-mini-2024-07-18", mtok, 0) == Decimal("0.15")  # another model: the catalog's

    chat = ChatCompletion.model_validate(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "x"}}],
            "usage": {"prompt_tokens": mtok, "completion_tokens": mtok, "total_tokens": 2 * mtok},
        }
    )
    message = Message.model_validate(
        {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": mtok, "output_tokens": mtok},
        }
    )
    tracker = llmcost.CostTracker()
    for response in (chat, message):
        llmcost.track_cost(tracker=tracker)(lambda response=response: response)()
    gpt, claude = tracker.entries()
    assert (gpt.amount, gpt.pricing, gpt.canonical_model) == (Decimal(5), "user", "gpt-4o")
    assert (claude.amount, claude.pricing, claude.canonical_model) == (Decimal(6), "user", "claude-sonnet-4-5")
    # The budget's estimate of the request (model="gpt-4o") is at the same price as the call it settles.
    estimate = llmcost.estimate_cost("gpt-4o", [{"role": "user", "content": "hi"}], output_tokens=mtok)
    assert Decimal(4) < estimate.amount < Decimal("4.001")


def test_load_prices_toml_and_json(tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text(
        '[[price]]\nmodel = "acme-large"\nprovider = "acme"\ninput_per_mtok = "0.1"\noutput_per_mtok = "0.3"\n'
    )
    (loaded,) = llmcost.load_prices(toml)
    assert loaded.input_per_mtok == Decimal("0.1")
    assert cost_of("acme-large", input_tokens=10, output_tokens=10) == Decimal("0.000004")
    js = tmp_path / "p.json"
    js.write_text(json.dumps([{"model": "acme-small", "input_per_mtok": "0.01", "output_per_mtok": "0.02"}]))
    llmcost.load_prices(js)
    assert get_price("acme-small").output_per_mtok == Decimal("0.02")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[[price]]\nmodel = "x"\ninput_per_mtok = "-1"\noutput_per_mtok = "1"\n', "input_per_mtok"),
        ('[[price]]\nmodel = "x"\ninput_per_mtok = "1"\noutput_per_mtok = "1"\ncolour = "red"\n', "colour"),
        ("[[price]\n", "not valid"),
        (  # a str tier start was accepted, then broke every call of the model with a bare TypeError
            '[[price]]\nmodel = "x"\ninput_per_mtok = "1"\noutput_per_mtok = "1"\n'
            'tiers = [{ start = "200000", input_per_mtok = "2" }]\n',
            r"bad.toml.*entry 0 \('x'\): tiers\[0\]: start .*'200000'",
        ),
    ],
)
def test_bad_price_files_name_file_entry_and_field(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(PricingError, match=match):
        llmcost.load_prices(path)


def test_unknown_model_suggests_close_ids_and_is_a_key_error():
    with pytest.raises(UnknownModelError) as info:
        get_price("gpt-4o-mni")
    assert "gpt-4o-mini" in info.value.suggestions
    assert isinstance(info.value, KeyError)
    with pytest.raises(KeyError):
        llmcost.MODEL_PRICING["no-such-model-anywhere"]


def test_model_pricing_is_a_read_only_view_of_the_catalog():
    assert len(llmcost.MODEL_PRICING) > 1000
    assert "gpt-4o" in llmcost.MODEL_PRICING
    with pytest.raises(TypeError):
        llmcost.MODEL_PRICING["gpt-4o"] = None  # type: ignore[index]


@pytest.mark.parametrize("field", ["input_per_mtok", "output_per_mtok", "cache_read_per_mtok"])
@pytest.mark.parametrize("value", ["-1", "nan"])
def test_model_price_rejects_bad_prices_naming_the_field(field, value):
    kwargs = {"model": "m", "provider": None, "input_per_mtok": "1", "output_per_mtok": "1", field: value}
    with pytest.raises(ValueError, match=field):
        ModelPrice(**kwargs)


def test_catalog_models_and_registered_prices_for_the_cli_and_the_recommender():
    from llmcost._catalog import catalog_models
    from llmcost._model_price import tidy
    from llmcost._prices import registered_prices

    models = catalog_models()
    assert ("openai", "gpt-4o", False) in models
    assert any(deprecated for _, _, deprecated in models)  # deprecated ones are listed, and say so
    assert registered_prices() == []
    price = ModelPrice("ft:acme", "openai", input_per_mtok="1", output_per_mtok="2")
    llmcost.register_price(price)
    assert registered_prices() == [price]  # registered under two keys, listed once
    assert repr(tidy(Decimal("0.3240000"))) == "Decimal('0.324')"
    assert repr(tidy(Decimal("100.00"))) == "Decimal('100')"


def test_cost_of_takes_token_counts_by_position():
    assert cost_of("gpt-4o", 1_000_000, 100_000) == cost_of("gpt-4o", input_tokens=1_000_000, output_tokens=100_000)
    assert cost_of("gpt-4o", 1000) == cost_of("gpt-4o", input_tokens=1000)
    assert cost_of("gpt-4o", Usage(1000, 100)) == cost_of("gpt-4o", usage=Usage(1000, 100))
    assert cost_of("gpt-4o", 1000, 100, cache_read_tokens=500) == cost_of(
        "gpt-4o", usage=Usage(1000, 100, cache_read_tokens=500)
    )
    with pytest.raises(TypeError, match="at most two token counts"):
        cost_of("gpt-4o", 1000, 100, 50)
    with pytest.raises(TypeError, match=r"cost_of\(model, input_tokens, output_tokens\)"):
        cost_of("gpt-4o", Usage(1, 1), 100)
    with pytest.raises(TypeError, match="Usage or the input token count"):
        cost_of("gpt-4o", "1000")


# -- billing units, service tiers, corrections (issue 13) -----------------------------------------------------------
NOV_2026 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def test_anthropic_one_hour_cache_writes_and_web_searches_are_priced_per_unit():
    # claude-sonnet-4-20250514: $3 input, $15 output, $0.30 cache read, 5-minute writes 1.25x ($3.75), 1-hour
    # writes 2x ($6) (https://docs.claude.com/en/docs/build-with-claude/prompt-caching#pricing); web search $10 per
    # 1,000 (https://docs.claude.com/en/docs/agents-and-tools/tool-use/web-search-tool).
    usage = Usage(
        10_000, 500, 4000, 5000, units={"cache_write_5m_tokens": 2000, "cache_write_1h_tokens": 3000, "web_searches": 3}
    )
    # 1000*3 + 2000*3.75 + 3000*6 + 4000*0.3 = 29,700e-6; 500*15 = 7,500e-6; 3*10/1000 = 0.03
    assert cost_of("claude-sonnet-4-20250514", usage, at=AT) == Decimal("0.0672")
    without_1h = Usage(10_000, 500, 4000, 5000)  # all writes at the 5-minute rate: what llmcost charged before
    # 1000*3 + 5000*3.75 + 4000*0.3 + 500*15 = 30,450e-6
    assert cost_of("claude-sonnet-4-20250514", without_1h, at=AT) == Decimal("0.03045")


@pytest.mark.parametrize(
    ("model", "units", "tokens", "expected"),
    [
        # gemini-2.5-flash: text input $0.30, audio input $1.00, cache read $0.03, cached audio $0.10
        # (https://ai.google.dev/gemini-api/docs/pricing): 600K*0.3 + 400K*1.0
        ("gemini-2.5-flash", {"input_audio_tokens": 400_000}, (1_000_000, 0, 0), Decimal("0.58")),
        # 500K*0.3 + 100K*0.03 + 300K*1.0 + 100K*0.1 (200K cached, 100K of it audio)
        (
            "gemini-2.5-flash",
            {"input_audio_tokens": 400_000, "cache_audio_read_tokens": 100_000},
            (1_000_000, 0, 200_000),
            Decimal("0.463"),
        ),
        # gemini-2.5-flash-image: image output $30/M ("1024x1024 image = 1290 tokens = $0.039/image"):
        # 10*0.3 + 1290*30 = 38,703e-6
        ("gemini-2.5-flash-image", {"output_image_tokens": 1290}, (10, 1290, 0), Decimal("0.038703")),
    ],
)
def test_modalities_are_priced_at_their_own_rates(model, units, tokens, expected):
    from genai_prices import Usage as GUsage
    from genai_prices import calc_price

    inp, out, cached = tokens
    usage = Usage(inp, out, cached, units=units)
    assert cost_of(model, usage, at=AT) == expected
    theirs = GUsage(input_tokens=inp, output_tokens=out, cache_read_tokens=cached, **units)
    assert calc_price(theirs, model, genai_request_timestamp=AT).total_price == expected


def test_unit_prices_follow_the_long_context_tier_of_each_call():
    # Priced units are planned once per tier of a price and reused: calls alternating below and above Sonnet 4's
    # 200K threshold each get their own tier's rates. Below: 50K plain input at $3 plus 50K 1-hour cache writes at
    # $6; above: 200K at $6 plus 100K at $12.
    below = Usage(100_000, 0, 0, 50_000, units={"cache_write_1h_tokens": 50_000, "web_searches": 2})
    above = Usage(300_000, 0, 0, 100_000, units={"cache_write_1h_tokens": 100_000})
    for _ in range(2):
        assert cost_of("claude-sonnet-4-20250514", below, at=AT) == Decimal("0.47")  # + 2 searches at $10/1000
        assert cost_of("claude-sonnet-4-20250514", above, at=AT) == Decimal("2.4")


def _micros(when: datetime) -> int:
    return int((when - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds()) * 1_000_000 + when.microsecond


def test_the_tracker_path_quotes_each_day_as_the_dated_path_does():
    # ``priced`` given microseconds (the tracker's default clock) keeps a model's quote for a UTC day: across the
    # midnight an o3 correction ends at, back again, and through a day of a model with off-peak prices (quoted
    # afresh every time), each amount and label is the one a datetime gives.
    usage = Usage(10_000, 1_000, 8_000)
    with_units = Usage(10_000, 1_000, 4_000, 3_000, units={"cache_write_1h_tokens": 2_000, "web_searches": 2})
    end = datetime(2025, 6, 10, tzinfo=timezone.utc)
    times = [end.replace(day=9, hour=23, minute=59, second=59, microsecond=999_999), end, end.replace(day=9, hour=12)]
    times += [datetime(2025, 9, 1, hour, 45, tzinfo=timezone.utc) for hour in range(24)]
    for model in ("o3", "deepseek-chat", "claude-sonnet-4-20250514"):
        for when in times:
            for one in (usage, with_units):
                assert priced(model, None, one, _micros(when)) == priced(model, None, one, when), (model, when)
    before, after = (priced("o3", None, usage, _micros(t))[:2] for t in times[:2])
    assert before == (Decimal("0.08"), "correction:o3-cached-input-before-2025-06-10")  # 2000*10 + 8000*2.5 + 1000*40
    assert after == (Decimal("0.016"), "catalog@0.2.3")  # 2000*2 + 8000*0.5 + 1000*8
    off_peak = {priced("deepseek-chat", None, usage, _micros(t))[0] for t in times[3:]}
    assert len(off_peak) == 2  # peak and off-peak prices on one day


def test_units_are_summed_exactly_and_a_sum_too_long_is_rounded_as_the_decimal_rule_rounds():
    # A call with units is summed in integers at one exponent; a sum of 27 digits or more is taken by the Decimal
    # rule in the default context, as it always was: rounded to 28 digits.
    price = ModelPrice(
        "long-units", None, input_per_mtok="1.23456789", output_per_mtok=1, unit_prices={"web_searches_kcount": "10"}
    )
    small = Usage(1_000_000, 0, units={"web_searches": 3})
    assert price.cost(small) == Decimal("1.26456789")  # 1.23456789 + 3 * 10 / 1000
    huge = Usage(2**63 - 1, 0, units={"web_searches": 2**62})
    expected = (Decimal("1.23456789") * (2**63 - 1)).scaleb(-6) + (Decimal(10) * 2**62).scaleb(-3)
    assert price.cost(huge) == expected.normalize()
    assert len(expected.as_tuple().digits) == 28  # rounded, as the rule rounds


def test_long_context_correction_for_claude_sonnet_4():
    # Anthropic bills Sonnet 4 requests over 200K input at $6 / $22.50 for all their tokens
    # (https://docs.claude.com/en/docs/about-claude/pricing#long-context-pricing); the catalog lacks the tier.
    assert priced("claude-sonnet-4-20250514", None, Usage(250_000, 1000), AT)[:2] == (
        Decimal("1.5225"),  # 250000*6 + 1000*22.5
        "correction:claude-sonnet-4-long-context",
    )
    # At exactly 200K the base rates apply, and the catalog priced it: 200000*3 + 1000*15.
    assert priced("claude-sonnet-4-20250514", None, Usage(200_000, 1000), AT)[:2] == (Decimal("0.615"), "catalog@0.2.3")
    # Cache multipliers stack on the premium input rate: 1-hour writes 2 x $6.
    usage = Usage(300_000, 0, 0, 100_000, units={"cache_write_1h_tokens": 100_000})
    assert cost_of("claude-sonnet-4-20250514", usage, at=AT) == Decimal("2.4")  # 200000*6 + 100000*12


def test_a_corrected_price_prices_units_in_integers_and_labels_only_calls_it_changes():
    # Sonnet 4's long-context correction (a tier over 200K input) with a 1-hour cache write and web searches: the
    # amount is the one money_cost gives at the corrected price, and the label the catalog's up to 200K, the
    # correction's above, for calls in the tracker's way (microseconds) and with a datetime.
    units = {"cache_write_1h_tokens": 50_000, "web_searches": 2}
    for inp, label in [(200_000, "catalog@0.2.3"), (200_001, "correction:claude-sonnet-4-long-context")]:
        usage = Usage(inp, 1000, 10_000, 50_000, units=units)
        expected = money_cost(price_for("claude-sonnet-4-20250514", None, AT)[0], usage)
        for at in (AT, _micros(AT)):
            assert priced("claude-sonnet-4-20250514", None, usage, at)[:2] == (expected, label)
    below = Usage(200_000, 1000, 10_000, 50_000, units=units)  # 140000*3 + 10000*0.3 + 50000*6 + 1000*15 + 2*10/1000
    assert priced("claude-sonnet-4-20250514", None, below, AT)[0] == Decimal("0.758")


def test_o3_cached_input_before_the_june_2025_price_cut_is_corrected():
    # o3 launched at $10 input, $2.50 cached, $40 output; cut to $2 / $0.50 / $8 on 2025-06-10
    # (https://github.com/langfuse/langfuse/pull/7223). The catalog had $0.50 cached before the cut.
    may = datetime(2025, 5, 1, tzinfo=timezone.utc)
    assert priced("o3", None, Usage(1_000_000, 0, 1_000_000), may)[:2] == (
        Decimal("2.5"),
        "correction:o3-cached-input-before-2025-06-10",
    )
    assert priced("o3", None, Usage(1_000_000, 1_000_000), may)[:2] == (Decimal("50"), "catalog@0.2.3")
    june = datetime(2025, 6, 10, tzinfo=timezone.utc)
    assert priced("o3", None, Usage(1_000_000, 0, 1_000_000), june)[:2] == (Decimal("0.5"), "catalog@0.2.3")
    assert get_price("o3", at=may).cache_read_per_mtok == Decimal("2.5")


@pytest.mark.parametrize(
    ("model", "at", "expected", "label"),
    [
        # 3,000 text and 2,000 audio input tokens, 500 text and 2,500 audio output tokens. Since 2024-12-17 OpenAI
        # bills GPT-4o audio at $40 / $80 per 1M audio tokens: 3000*2.5 + 2000*40 + 500*10 + 2500*80.
        ("gpt-4o-audio-preview-2024-12-17", AT, Decimal("0.2925"), "correction:gpt-4o-audio-preview-audio"),
        ("gpt-4o-audio-preview", AT, Decimal("0.2925"), "correction:gpt-4o-audio-preview-audio"),
        # Before that day the undated id was the 2024-10-01 snapshot, at $100 / $200: 3000*2.5 + 2000*100 + 500*10
        # + 2500*200.
        (
            "gpt-4o-audio-preview",
            datetime(2024, 12, 16, 23, 59, tzinfo=timezone.utc),
            Decimal("0.7125"),
            "correction:gpt-4o-audio-preview-audio-before-2024-12-17",
        ),
        # The Realtime API's GPT-4o before the 2024-12-17 snapshot: audio $100 / $200, its text $5 / $20: 3000*5 +
        # 2000*100 + 500*20 + 2500*200. The catalog has only the later $40 / $80 (0.3 where OpenAI billed 0.725).
        (
            "gpt-4o-realtime-preview-2024-10-01",
            datetime(2024, 11, 1, tzinfo=timezone.utc),
            Decimal("0.725"),
            "correction:gpt-4o-realtime-preview-audio-before-2024-12-17",
        ),
        # GPT-4o mini audio at $10 / $20: 3000*0.15 + 2000*10 + 500*0.6 + 2500*20.
        ("gpt-4o-mini-audio-preview-2024-12-17", AT, Decimal("0.07075"), "correction:gpt-4o-mini-audio-preview-audio"),
    ],
)
def test_gpt_4o_audio_tokens_are_priced_at_the_audio_rates(model: str, at: datetime, expected: Decimal, label: str):
    # The catalog prices only text for these models, so their audio was billed at the text rate ($0.0425 for the
    # first call here, a seventh of OpenAI's bill).
    usage = Usage(5_000, 3_000, units={"input_audio_tokens": 2_000, "output_audio_tokens": 2_500})
    assert priced(model, None, usage, at)[:2] == (expected, label)
    assert priced(model, None, usage, _micros(at))[:2] == (expected, label)  # the tracker's way, as microseconds
    # Text alone is the catalog's price, and labelled so.
    assert priced(model, None, Usage(5_000, 3_000), at)[1] == "catalog@0.2.3"


def test_a_tracked_openai_audio_response_is_billed_its_audio_tokens():
    from openai.types.chat import ChatCompletion

    response = ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_760_000_000,
            "model": "gpt-4o-audio-preview-2025-06-03",
            "choices": [],
            "usage": {
                "prompt_tokens": 5_000,
                "completion_tokens": 3_000,
                "total_tokens": 8_000,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 2_000},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 2_500},
            },
        }
    )
    tracker = llmcost.CostTracker()
    llmcost.track_cost(tracker=tracker)(lambda: response)()
    (entry,) = tracker.entries()
    assert (entry.amount, entry.pricing) == (Decimal("0.2925"), "correction:gpt-4o-audio-preview-audio")


@pytest.mark.parametrize(
    ("model", "tier", "at", "expected", "label"),
    [
        # The catalog's batch price from 2026-10-14 (haiku-4-5: $0.50 / $2.50 per M in batch).
        ("claude-haiku-4-5", "batch", NOV_2026, Decimal("3"), "catalog@0.2.3"),
        # Before that date the published rule: the Message Batches API costs 50% of standard ($1 / $5).
        ("claude-haiku-4-5", "batch", AT, Decimal("3"), "catalog@0.2.3+batch-rule"),
        # Sonnet 4 has no batch price in the catalog at all: half of its long-context $6 / $22.50 (1M input is
        # over 200K), the rule applied to the corrected price.
        (
            "claude-sonnet-4-20250514",
            "batch",
            NOV_2026,
            Decimal("14.25"),
            "correction:claude-sonnet-4-long-context+batch-rule",
        ),
        # gpt-5 flex: the catalog's price from 2026-10-12 ($0.625 / $5), before that Flex "at Batch API rates"
        # (https://platform.openai.com/docs/guides/flex-processing): half of $1.25 / $10.
        ("gpt-5", "flex", NOV_2026, Decimal("5.625"), "catalog@0.2.3"),
        ("gpt-5", "flex", AT, Decimal("5.625"), "catalog@0.2.3+flex-rule"),
        # gpt-5 priority: the catalog's $2.50 / $20 from 2026-10-12; no published rule before: standard, said so.
        ("gpt-5", "priority", NOV_2026, Decimal("22.5"), "catalog@0.2.3"),
        ("gpt-5", "priority", AT, Decimal("11.25"), "catalog@0.2.3+priority-at-standard"),
        ("gpt-5", None, AT, Decimal("11.25"), "catalog@0.2.3"),
    ],
)
def test_service_tiers_use_the_catalogs_tier_price_else_the_published_rule(model, tier, at, expected, label):
    usage = Usage(1_000_000, 1_000_000)
    assert priced(model, None, usage, at, tier)[:2] == (expected, label)
    assert cost_of(model, usage, service_tier=tier, at=at) == expected


def test_batch_rule_keeps_web_search_fees_and_halves_cache_writes():
    # Batch: 50% of all token rates, cache writes too; web search is not discounted.
    usage = Usage(10_000, 500, 4000, 5000, units={"cache_write_1h_tokens": 3000, "web_searches": 3})
    # (1000*3 + 2000*3.75 + 3000*6 + 4000*0.3 + 500*15) / 2 = 0.0186; + 0.03
    assert cost_of("claude-sonnet-4-20250514", usage, service_tier="batch", at=AT) == Decimal("0.0486")
    with pytest.raises(ValueError, match="service_tier"):
        cost_of("gpt-5", input_tokens=1, service_tier="scale")


def test_user_prices_take_the_batch_rule_and_unit_prices():
    llmcost.register_price(
        ModelPrice("acme", "acme", input_per_mtok="2", output_per_mtok="8", unit_prices={"input_audio_mtok": "10"})
    )
    usage = Usage(1_000_000, 0, units={"input_audio_tokens": 100_000})
    assert priced("acme", None, usage, AT)[:2] == (Decimal("2.8"), "user")  # 900K*2 + 100K*10
    assert priced("acme", None, usage, AT, "batch")[:2] == (Decimal("1.4"), "user+batch-rule")
    with pytest.raises(ValueError, match="unknown price key 'audio_mtok'"):
        ModelPrice("x", None, input_per_mtok=1, output_per_mtok=1, unit_prices={"audio_mtok": 1})
    with pytest.raises(ValueError, match="cache_read_per_mtok="):
        ModelPrice("x", None, input_per_mtok=1, output_per_mtok=1, unit_prices={"cache_read_mtok": 1})


def test_load_prices_accepts_unit_prices_and_tiers(tmp_path):
    path = tmp_path / "prices.toml"
    path.write_text(
        """
[[price]]
model = "acme-long"
input_per_mtok = "1"
output_per_mtok = "4"
unit_prices = { cache_write_1h_mtok = "2", web_searches_kcount = "5" }
tiers = [{ start = 100000, input_per_mtok = "2", unit_prices = { cache_write_1h_mtok = "4" } }]
"""
    )
    (price,) = llmcost.load_prices(path)
    assert price.unit_prices == {"cache_write_1h_mtok": Decimal(2), "web_searches_kcount": Decimal(5)}
    usage = Usage(200_000, 0, 0, 50_000, units={"cache_write_1h_tokens": 50_000, "web_searches": 2})
    assert cost_of("acme-long", usage) == Decimal("0.51")  # 150000*2 + 50000*4 (tier) + 2*5/1000


def test_model_pricing_get_price_and_cost_of_agree_on_the_model_makers_price():
    for model in ("gpt-4o-mini", "gpt-4o", "gpt-4.1"):
        assert llmcost.MODEL_PRICING[model].provider == "openai"  # not github-copilot's $0 entry
        assert llmcost.MODEL_PRICING[model].input_per_mtok > 0
    usage = Usage(1000, 100)
    for model, price in llmcost.MODEL_PRICING.items():
        assert get_price(model) == price, model
        assert cost_of(model, usage) == price.cost(usage), model


def test_provider_prefixed_ids_and_hosts():
    gpt4o = cost_of("gpt-4o", input_tokens=1_000_000)
    assert cost_of("openai/gpt-4o", input_tokens=1_000_000, provider="openai") == gpt4o
    assert cost_of("openai/gpt-4o", input_tokens=1_000_000) == gpt4o
    # Groq lists gpt-oss under its maker's prefix and bills $0.15/M input; OpenAI's entry differs.
    assert cost_of("gpt-oss-120b", input_tokens=1_000_000, provider="groq") == Decimal("0.15")
    assert cost_of("openai/gpt-oss-120b", input_tokens=1_000_000, provider="groq") == Decimal("0.15")
    # OpenRouter's ":free" variants cost nothing, listed or not.
    assert cost_of("meta-llama/llama-3.3-70b-instruct:free", input_tokens=1_000_000) == 0
    assert priced("openai/gpt-4o-mini:free", "openrouter", Usage(1000), AT)[:2] == (0, "catalog@0.2.3+openrouter-free")


def test_unknown_models_are_remembered_until_prices_change():
    import time

    with pytest.raises(UnknownModelError):
        get_price("acme-unknown-7")
    assert ("acme-unknown-7", None) in llmcost._state.unknown_models

    tracker = llmcost.CostTracker(on_unknown_model="ignore")

    @llmcost.track_cost(tracker=tracker)
    def call():
        return {"model": "acme-unknown-7", "usage": {"prompt_tokens": 10, "completion_tokens": 2}}

    call()
    best = min(_timed(call, time.perf_counter) for _ in range(200))
    assert best < 50e-6, f"a tracked call to an unknown model took {best * 1e6:.1f} us"
    assert {e.pricing for e in tracker.entries()} == {"unpriced"}
    llmcost.register_price(ModelPrice("acme-unknown-7", None, input_per_mtok="1", output_per_mtok="1"))
    assert not llmcost._state.unknown_models
    call()
    assert tracker.entries()[-1].amount == Decimal("0.000012")


def _timed(fn, now):
    started = now()
    fn()
    return now() - started


YAML_PRICES = """\
providers:
  openai:
    gpt-4-turbo-acme:
      prompt_token_cost: 0.00001
      completion_token_cost: 0.00003
  anthropic:
    claude-acme:
      prompt_token_cost: 3.0e-6
      completion_token_cost: "1.5e-5"
      cache_read_input_token_cost: 0.0000003
      cache_creation_input_token_cost: 0.00000375
      max_tokens: 8192
"""


def test_load_prices_reads_yaml_per_token_costs_as_exact_per_million_prices(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(YAML_PRICES)
    turbo, claude = llmcost.load_prices(path)
    assert (turbo.model, turbo.provider) == ("gpt-4-turbo-acme", "openai")
    assert (turbo.input_per_mtok, turbo.output_per_mtok) == (Decimal(10), Decimal(30))
    assert (claude.input_per_mtok, claude.output_per_mtok) == (Decimal(3), Decimal(15))
    assert (claude.cache_read_per_mtok, claude.cache_write_per_mtok) == (Decimal("0.3"), Decimal("3.75"))
    assert cost_of("gpt-4-turbo-acme", 1000, 100) == Decimal("0.013")
    assert cost_of("claude-acme", Usage(3000, 100, 2000, 400)) == Decimal("0.0054")
    with llmcost.CostTracker() as tracker:  # analytics.reprice reads the same file as a what-if table
        tracker.record(model="gpt-4-turbo-acme", input_tokens=1000, output_tokens=100)
        frame = llmcost.analytics.reprice(tracker, path)
    assert frame["repriced"].tolist() == [Decimal("0.013")]


def test_read_prices_takes_yaml_lists_and_names_unknown_costs(tmp_path):
    from llmcost._prices import read_prices, registered_prices

    listed = tmp_path / "prices.yml"
    listed.write_text("price:\n  - model: acme-y\n    input_per_mtok: '2'\n    output_per_mtok: '8'\n")
    (price,) = read_prices(listed)
    assert (price.model, price.input_per_mtok) == ("acme-y", Decimal(2))
    assert registered_prices() == []  # read, not registered
    typo = tmp_path / "typo.yaml"
    typo.write_text("providers:\n  openai:\n    m:\n      prompt_token_costs: 0.1\n")
    with pytest.raises(PricingError, match=r"typo.yaml.*unknown costs \['prompt_token_costs'\]"):
        read_prices(typo)
    (tmp_path / "bad.yaml").write_text("providers: [1\n")
    with pytest.raises(PricingError, match="not valid YAML"):
        read_prices(tmp_path / "bad.yaml")


def test_yaml_prices_without_pyyaml_say_how_to_install_it(tmp_path, monkeypatch):
    path = tmp_path / "prices.yaml"
    path.write_text(YAML_PRICES)
    monkeypatch.setitem(__import__("sys").modules, "yaml", None)
    with pytest.raises(PricingError, match=r"needs PyYAML: pip install pyyaml .*llmcost\[yaml\]"):
        llmcost.load_prices(path)


# -- pricing per token in integers (issue 15) -----------------------------------------------------------------------


def _decimal_rule(price: ModelPrice, usage: Usage) -> Decimal:
    """The cost as plain Decimal arithmetic (the rule ``ModelPrice.cost`` had before it priced in integers)."""
    inp, out, cr, cw, rs = (
        price.input_per_mtok,
        price.output_per_mtok,
        price.cache_read_per_mtok,
        price.cache_write_per_mtok,
        price.reasoning_per_mtok,
    )
    for tier in reversed(price.tiers):
        if usage.input_tokens > tier.start:
            inp = tier.input_per_mtok if tier.input_per_mtok is not None else inp
            out = tier.output_per_mtok if tier.output_per_mtok is not None else out
            cr = tier.cache_read_per_mtok if tier.cache_read_per_mtok is not None else cr
            cw = tier.cache_write_per_mtok if tier.cache_write_per_mtok is not None else cw
            rs = tier.reasoning_per_mtok if tier.reasoning_per_mtok is not None else rs
            break
    plain_in, plain_out, total = usage.input_tokens, usage.output_tokens, Decimal(0)
    if usage.cache_read_tokens and cr is not None:
        plain_in -= usage.cache_read_tokens
        total += cr * usage.cache_read_tokens
    if usage.cache_write_tokens and cw is not None:
        plain_in -= usage.cache_write_tokens
        total += cw * usage.cache_write_tokens
    if usage.reasoning_tokens and rs is not None:
        plain_out -= usage.reasoning_tokens
        total += rs * usage.reasoning_tokens
    if plain_in:
        total += inp * plain_in
    if plain_out:
        total += out * plain_out
    total = total.scaleb(-6) + (price.request_price or 0)
    return total.quantize(Decimal(1)) if total == total.to_integral_value() else total.normalize()


PARTS = ("input", "output", "cache_read", "cache_write", "reasoning")


def test_integer_pricing_gives_the_decimal_rules_digits():
    rng = random.Random(15)
    listed = ["0", "1", "2.5", "0.075", "15", "0.0000001", "3.000", "1E+1", "12.3456789012", "0.30", "100"]

    def price() -> Decimal:
        if rng.random() < 0.8:
            return Decimal(rng.choice(listed))
        return Decimal(rng.randint(0, 10 ** rng.randint(0, 8))).scaleb(-rng.randint(0, 12))

    def maybe() -> Decimal | None:
        return None if rng.random() < 0.4 else price()

    for _ in range(3000):
        tiers = [
            {
                "start": rng.choice([0, 1000, 128_000, 200_000, 200_000]),
                **{f"{part}_per_mtok": maybe() for part in PARTS},
            }
            for _ in range(rng.randint(0, 3) if rng.random() < 0.3 else 0)
        ]
        model_price = ModelPrice(
            "m",
            None,
            input_per_mtok=price(),
            output_per_mtok=price(),
            cache_read_per_mtok=maybe(),
            cache_write_per_mtok=maybe(),
            reasoning_per_mtok=maybe(),
            request_price=maybe() if rng.random() < 0.2 else None,
            tiers=tiers,
        )
        most = 2**63 - 1 if rng.random() < 0.05 else 500_000  # now and then an amount past 27 digits
        inp = rng.randint(0, most)
        cr = rng.randint(0, inp)
        cw = rng.randint(0, inp - cr)
        out = rng.randint(0, most)
        usage = Usage(inp, out, cr, cw, rng.randint(0, out))
        ours, expected = model_price.cost(usage), _decimal_rule(model_price, usage)
        assert ours.as_tuple() == expected.as_tuple(), (model_price, usage)  # the same digits and exponent


def test_cost_of_checks_counts_as_usage_does():
    assert cost_of("gpt-4o", input_tokens=1200, output_tokens=300) == Decimal("0.006")  # resolved: the fast path
    assert cost_of("gpt-4o", input_tokens=1_000_000) == Decimal(3) - Decimal("0.5")
    assert cost_of("gpt-4o", input_tokens=400_000).as_tuple() == Decimal(1).as_tuple()  # whole: 1, not 1E+0
    assert cost_of("gpt-4o", input_tokens=1200.0, output_tokens=300) == Decimal("0.006")  # a whole float, as Usage
    bad = [
        ({"input_tokens": -1}, ValueError),
        ({"output_tokens": True}, TypeError),
        ({"input_tokens": 10, "cache_read_tokens": 8, "cache_write_tokens": 3}, ValueError),
        ({"input_tokens": 2**63}, ValueError),
        ({"input_tokens": 10, "cache_read_tokens": -1}, ValueError),
    ]
    for kwargs, error in bad:
        with pytest.raises(error):
            cost_of("gpt-4o", **kwargs)
    huge = cost_of("gpt-4o", input_tokens=2**63 - 1, output_tokens=2**63 - 1)  # past 27 digits: the Decimal rule
    assert huge == _decimal_rule(get_price("gpt-4o"), Usage(2**63 - 1, 2**63 - 1))


def test_priced_rounds_to_the_stores_scale_only_where_needed():
    from llmcost._money import to_money

    usage = Usage(333, 7, cache_read_tokens=100)
    fine = ModelPrice("acme-fine", "acme", input_per_mtok="0.123456789012345", output_per_mtok="1")  # 15 places
    plain = ModelPrice("acme-plain", "acme", input_per_mtok="2.5", output_per_mtok="10", cache_read_per_mtok="1.25")
    for price in (fine, plain):
        llmcost.register_price(price)
        amount = priced(price.model, "acme", usage, AT)[0]
        assert amount.as_tuple() == to_money(price.cost(usage)).as_tuple()
    assert fine.cost(usage) != priced("acme-fine", "acme", usage, AT)[0]  # 21 places, rounded to 18


def test_a_quote_that_holds_at_every_time_is_kept_for_every_call():
    # Sonnet 4's catalog price never changes and its correction has no dates: once quoted, its quote is taken for
    # any time (``Resolved.standing``), and prices every call as the dated path does, on any day. o3's correction
    # ends on a date, so its quote stays kept by day.
    from llmcost._prices import _resolved_for

    usage = Usage(10_000, 1_000, 4_000, 3_000, units={"cache_write_1h_tokens": 2_000, "web_searches": 2})
    long = Usage(250_000, 1_000, 4_000, 3_000, units={"cache_write_1h_tokens": 2_000, "web_searches": 2})
    days = [datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2025, 6, 10, 12, tzinfo=timezone.utc), AT]
    sonnet, o3 = _resolved_for("claude-sonnet-4-20250514", None), _resolved_for("o3", None)
    assert sonnet.standing is None and sonnet.price is None
    for model in ("claude-sonnet-4-20250514", "o3"):
        for when in days:
            for one in (usage, long, Usage(10_000, 1_000)):
                assert priced(model, None, one, _micros(when)) == priced(model, None, one, when), (model, when)
                assert priced(model, None, one, _micros(when), "batch") == priced(model, None, one, when, "batch")
    assert sonnet.standing is sonnet.quote(AT, None) and o3.standing is None
    assert priced("claude-sonnet-4-20250514", None, long, _micros(AT))[1] == "correction:claude-sonnet-4-long-context"


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("typo.toml", '[[prices]]\nmodel = "gpt-4o"\ninput_per_mtok = "1"\noutput_per_mtok = "2"\n',
         r"typo.toml' has unknown top-level keys \['prices'\]; it must hold \[\[price\]\] tables"),
        ("extra.toml", 'version = 1\n[[price]]\nmodel = "x"\ninput_per_mtok = "1"\noutput_per_mtok = "2"\n',
         r"unknown top-level keys \['version'\]"),
        ("empty.toml", "", "empty.toml' holds no prices"),
        ("typo.yaml", "prices:\n  - model: gpt-4o\n", r"unknown top-level keys \['prices'\]"),
        ("empty.yaml", "", "empty.yaml' holds no prices"),
    ],
)  # fmt: skip
def test_a_price_file_without_its_price_tables_is_refused_not_read_as_no_prices(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PricingError, match=match):
        llmcost.load_prices(path)
    assert cost_of("gpt-4o", input_tokens=1_000_000) == Decimal("2.5")  # the catalog's price, nothing registered


def test_a_toml_price_file_may_hold_an_empty_list_of_prices(tmp_path):
    path = tmp_path / "none.toml"
    path.write_text("price = []\n")
    assert llmcost.load_prices(path) == []


@pytest.mark.parametrize("model", ["gpt-4o", "claude-opus-4-6"])  # a fixed price and one that changes over time
@pytest.mark.parametrize("at", ["garbage", 5, 1.5, "2025-09-01"])
def test_at_must_be_a_datetime_for_every_model(model, at):
    pattern = rf"at must be a datetime .*{re.escape(repr(at))}"
    with pytest.raises(TypeError, match=pattern):
        get_price(model, at=at)
    with pytest.raises(TypeError, match=pattern):
        cost_of(model, 1000, at=at)
    with pytest.raises(TypeError, match=pattern):
        cost_of(model, Usage(1000), at=at)


def test_a_naive_at_is_taken_as_utc():
    naive = datetime(2025, 9, 1)
    assert cost_of("claude-opus-4-6", 1000, at=naive) == cost_of("claude-opus-4-6", 1000, at=AT)
    assert get_price("gpt-4o", at=naive) == get_price("gpt-4o", at=AT)


@pytest.mark.parametrize("keyword", ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"])
def test_cost_of_refuses_usage_with_token_keywords_rather_than_dropping_them(keyword):
    with pytest.raises(TypeError, match=rf"usage= or the token keywords, not both: got usage=Usage\(.*{keyword}=5"):
        cost_of("gpt-4o", Usage(10, 10), **{keyword: 5})
    assert cost_of("gpt-4o", Usage(1_000_000), input_tokens=0) == Decimal("2.5")
