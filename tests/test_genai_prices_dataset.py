"""genai-prices' public dataset of real response bodies as a regression suite: every body that llmcost and
genai-prices both price is priced alike, to the last digit llmcost keeps, or the difference is cited here.

``tests/data/genai_prices_usages.jsonl`` holds the 515 response bodies of ``tests/dataset/usages.json`` in
pydantic/genai-prices (commit 0169618, MIT, licence beside it): pydantic-ai's recorded calls to Anthropic, OpenAI
(chat and Responses), Gemini, Bedrock Converse, Cohere, Mistral, Groq, Cerebras, Hugging Face, OpenRouter and
others. Each line is one entry with its ``"extracted"`` part (genai-prices' own output) left out, since both
libraries are run on the bodies here, with the installed catalog.

For each body and each (provider, API flavour) genai-prices can extract and price, three things are checked:

1. llmcost reads the body at all (``extract_usage`` recognises every shape genai-prices does);
2. where genai-prices' extractor read the same tokens as llmcost (input, cached input, output: an extractor of
   another wire format also "reads" a body, a Responses extractor finding an Anthropic body's uncached
   ``input_tokens`` only, and those readings are skipped), the billed usage is the same, except for the cited gap
   of genai-prices' Azure extractors below;
3. llmcost's amount for that provider equals genai-prices' total for the same usage, rounded as llmcost keeps
   amounts (``MONEY_SCALE`` places).

Bodies only llmcost prices (``models/gemini-2.5-pro``: genai-prices does not strip Gemini's ``models/`` prefix)
are checked against genai-prices' price of the id llmcost resolved. Bodies with no model in them (Bedrock
Converse and Cohere v2 answers, where the model is in the request) are read without a model and skipped for price.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmcost._errors import UnknownModelError
from llmcost._extract import extract_usage
from llmcost._money import to_money
from llmcost._prices import priced
from llmcost._usage import Usage

DATASET = Path(__file__).parent / "data" / "genai_prices_usages.jsonl"
ROWS = [json.loads(line) for line in DATASET.read_text().splitlines()]

# Before most of the bodies' dates and after the catalog's latest price changes (a 2026-10-19 Hugging Face price,
# the 2026-10 tier variants), so both the old and the new prices are compared.
MOMENTS = [datetime(2025, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 29, tzinfo=timezone.utc)]

# genai-prices 0.2.3's extractors of Anthropic's wire format served by another host (flavour "anthropic" of aws,
# azure, google and baseten) map neither ``usage.server_tool_use.web_search_requests`` nor
# ``output_tokens_details.thinking_tokens``, though its anthropic/default extractor maps both and its catalog prices
# web searches on those hosts (Claude on Bedrock, Azure AI Foundry and Vertex bills them at Anthropic's $10 per 1,000
# searches). llmcost reads such a body as the host bills it, so genai-prices' usage lacks these units there and its
# total is short by the searches' price. The test checks that the gap is still there (the extractor still maps
# neither), so the entry goes once genai-prices fixes it.
EXTRACTOR_GAPS = {"anthropic": {"web_searches", "output_reasoning_tokens"}}

# Parts genai-prices reports that llmcost does not keep, since no price depends on them: text (the remainder of each
# whole once the other modalities are taken out, billed at the whole's price) and Gemini's tool-use prompt tokens
# (``toolUsePromptTokenCount``, inside the input and billed as input). Checked per body: leaving them out does not
# change genai-prices' own total.
UNPRICED_PARTS = ("_text_tokens", "input_tool_tokens", "_tool_tokens")


def _body(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row["body"].items() if key != "file"}


def _theirs(body: dict[str, Any], model: str | None, at: datetime) -> list[tuple[str, str, str, Any, Decimal]]:
    """Every (provider, flavour, model, usage, total) genai-prices extracts from ``body`` and prices."""
    import genai_prices
    from genai_prices import data_snapshot

    found = []
    for provider in data_snapshot.get_snapshot().providers:
        for flavor in sorted({extractor.api_flavor for extractor in provider.extractors or ()}):
            try:
                extracted = genai_prices.extract_usage(body, provider_id=provider.id, api_flavor=flavor)
            except (ValueError, KeyError, TypeError, LookupError):
                continue
            model_ref = extracted.model.id if extracted.model is not None else model
            if model_ref is None:
                continue
            try:
                total = genai_prices.calc_price(
                    extracted.usage, model_ref=model_ref, provider_id=provider.id, genai_request_timestamp=at
                ).total_price
            except LookupError:
                continue
            found.append((provider.id, flavor, model_ref, extracted.usage, total))
    return found


def _as_theirs(usage: Usage) -> dict[str, int]:
    """llmcost's ``usage`` in genai-prices' vocabulary, zero counts left out."""
    counts = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "output_reasoning_tokens": usage.reasoning_tokens,
        **usage.units,
    }
    return {key: count for key, count in counts.items() if count}


def _nonzero(usage: Any) -> dict[str, int]:
    return {key: count for key, count in vars(usage).items() if count}


def _priced_parts(counts: dict[str, int], model: str, provider: str, at: datetime) -> dict[str, int]:
    """``counts`` without the parts no price depends on, checked against genai-prices' own total."""
    kept = {key: count for key, count in counts.items() if not key.endswith(UNPRICED_PARTS)}
    if kept != counts:
        assert _their_total(kept, model, provider, at) == _their_total(counts, model, provider, at), counts
    return kept


def _their_total(counts: dict[str, int], model: str, provider: str, at: datetime) -> Decimal:
    import genai_prices

    usage = genai_prices.Usage(**counts)  # type: ignore[arg-type]
    return genai_prices.calc_price(usage, model_ref=model, provider_id=provider, genai_request_timestamp=at).total_price


def _same_reading(theirs: dict[str, int], ours: dict[str, int]) -> bool:
    keys = ("input_tokens", "cache_read_tokens", "output_tokens")
    return all(theirs.get(key, 0) == ours.get(key, 0) for key in keys)


def _compare(row: dict[str, Any], at: datetime, tally: Counter[str]) -> None:
    body = _body(row)
    theirs = _theirs(body, row.get("model"), at)
    found = extract_usage(body)
    if theirs:
        assert found is not None, "genai-prices reads this body and llmcost does not"
    if found is None:
        tally["read by neither"] += 1
        return
    ours = _as_theirs(found.usage)
    model = found.model or row.get("model")
    if model is None:
        tally["no model in the body"] += 1
        return
    if not theirs:
        # Only llmcost prices it: genai-prices must agree on the id llmcost resolved.
        try:
            amount, _label, provider, resolved, *_ = priced(model, found.provider, found.usage, at, found.service_tier)
        except UnknownModelError:
            tally["priced by neither"] += 1  # groq/compound: billed by the models and tools it ran
            return
        assert provider is not None
        assert amount == to_money(_their_total(ours, resolved, provider, at)), (model, resolved)
        tally["priced by llmcost only, agreeing on the resolved id"] += 1
        return
    by_provider: dict[str, list[tuple[str, dict[str, int], Decimal]]] = {}
    for provider, flavor, their_model, their_usage, total in theirs:
        counts = _priced_parts(_nonzero(their_usage), their_model, provider, at)
        if _same_reading(counts, ours):
            by_provider.setdefault(provider, []).append((flavor, counts, total))
        else:
            tally["another wire format's extractor (skipped)"] += 1
    # llmcost's reading is one genai-prices makes, and the one of the provider whose wire format it recognised.
    assert by_provider, f"no genai-prices extractor reads {ours}"
    if found.provider is not None and any(provider == found.provider for provider, *_ in theirs):
        assert found.provider in by_provider, f"{found.provider} reads otherwise than {ours}"
    for provider, readings in by_provider.items():
        amount, label, *_ = priced(model, provider, found.usage, at, found.service_tier)
        if label.startswith("correction:"):
            # A cited fix of the catalog's data (``llmcost._corrections``: GPT-4o audio-preview's audio rates) priced
            # it: by design not genai-prices' total, and only where the correction changed the amount.
            from llmcost._corrections import CORRECTIONS

            assert label.split(":", 1)[1].split("+")[0] in {c.id for c in CORRECTIONS}, label
            assert all(amount != to_money(total) for _, _, total in readings), (provider, label)
            tally["priced by a cited correction"] += 1
            continue
        exact = [(flavor, total) for flavor, counts, total in readings if counts == ours]
        if exact:
            # Another flavour of the provider may read the body less fully (a Responses extractor reading an
            # Anthropic body without cache tokens reads the same input and output): the full reading is compared.
            assert all(amount == to_money(total) for _, total in exact), (provider, exact, amount, label)
            tally["agree"] += 1
            continue
        flavor, counts, total = readings[0]
        gaps = EXTRACTOR_GAPS.get(flavor, set())
        assert counts == {key: count for key, count in ours.items() if key not in gaps}, (provider, flavor, counts)
        assert _mapped(provider, flavor).isdisjoint(gaps), "genai-prices now maps these: drop the gap"
        # genai-prices' own total of the units its extractor missed is exactly the difference.
        assert amount == to_money(_their_total(ours, model, provider, at)), (provider, flavor)
        tally["agree once genai-prices' extractor gap is filled"] += 1


def _mapped(provider_id: str, flavor: str) -> set[str]:
    from genai_prices import data_snapshot

    (provider,) = (p for p in data_snapshot.get_snapshot().providers if p.id == provider_id)
    return {m.dest for e in provider.extractors or () if e.api_flavor == flavor for m in e.mappings}


@pytest.mark.parametrize("at", MOMENTS, ids=lambda at: at.date().isoformat())
def test_every_dataset_body_is_priced_as_genai_prices_prices_it(at: datetime) -> None:
    tally: Counter[str] = Counter()
    failures = []
    for number, row in enumerate(ROWS):
        try:
            _compare(row, at, tally)
        except AssertionError as error:
            failures.append(f"line {number + 1} ({row['body']['file']}): {error}")
    assert not failures, "\n".join(failures[:20]) + f"\n{len(failures)} bodies disagree"
    # The suite compares what it says it compares (figures of genai-prices 0.2.3, bounds for later catalogs): all
    # 515 bodies, over a thousand (body, provider) prices agreeing outright; the rest are told apart above.
    assert len(ROWS) == 515
    assert tally["agree"] >= 1000, tally
    assert tally["no model in the body"] <= 37, tally
