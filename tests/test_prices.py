"""Prices: catalog agreement with genai-prices, dated prices, tiers, overrides, files, errors."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone
from decimal import Decimal

import pytest

import llmcost
from llmcost import ModelPrice, PricingError, UnknownModelError, Usage, cost_of, get_price

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
            assert ours == expected, (provider.id, model.id, kwargs)
            compared += 1
    assert compared > 1500


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
