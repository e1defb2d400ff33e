"""Every bill priced as the provider bills it (issue 13): billing units, service tiers, hosts and streams read from
real SDK objects (OpenAI and Anthropic clients over canned HTTP; google-genai and LangChain message objects) and
from the exact JSON shapes of SDKs too heavy for the dev extra (LiteLLM, Bedrock, Cohere).

Each expected amount is worked out from the provider's published prices, the rule cited beside it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from datetime import datetime, timezone
from decimal import Decimal

import anthropic
import httpx2
import openai
import pytest

import llmcost
from llmcost import CostTracker, Usage, _decorator, cost_of, track_cost
from llmcost._extract import extract_usage

AT = datetime(2025, 9, 1, tzinfo=timezone.utc)


def transport(body, content_type="application/json"):
    text = body if isinstance(body, str) else json.dumps(body)

    def handler(request):
        return httpx2.Response(200, text=text, headers={"content-type": content_type})

    return httpx2.Client(transport=httpx2.MockTransport(handler))


def sse(events):
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


@pytest.fixture
def tracker():
    with CostTracker(clock=lambda: AT) as t:
        yield t


# -- Anthropic ------------------------------------------------------------------------------------------------------
CLAUDE_USAGE = {
    "input_tokens": 1000,  # uncached input only
    "cache_creation_input_tokens": 5000,
    "cache_read_input_tokens": 4000,
    "cache_creation": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 3000},
    "output_tokens": 500,
    "output_tokens_details": {"thinking_tokens": 120},
    "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 0},
    "service_tier": "standard",
}
CLAUDE_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-20250514",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": CLAUDE_USAGE,
}
CLAUDE_UNITS = {"cache_write_5m_tokens": 2000, "cache_write_1h_tokens": 3000, "web_searches": 3}
# claude-sonnet-4-20250514: $3 input, $15 output; cache reads 0.1x ($0.30), 5-minute writes 1.25x ($3.75), 1-hour
# writes 2x ($6) (https://docs.claude.com/en/docs/build-with-claude/prompt-caching#pricing); web search $10 per
# 1,000 (https://docs.claude.com/en/docs/agents-and-tools/tool-use/web-search-tool):
# 1000*3 + 2000*3.75 + 3000*6 + 4000*0.3 = 29,700e-6; 500*15 = 7,500e-6; 3 * 10 / 1000 = 0.03
CLAUDE_AMOUNT = Decimal("0.0672")


def _ask_claude(client, tracker, **options):
    @track_cost(tracker=tracker, **options)
    def ask():
        return client.messages.create(
            model="claude-sonnet-4-20250514", max_tokens=100, messages=[{"role": "user", "content": "x"}]
        )

    return ask


def test_anthropic_one_hour_writes_web_searches_and_thinking(tracker):
    client = anthropic.Anthropic(api_key="k", http_client=transport(CLAUDE_MESSAGE))
    _ask_claude(client, tracker)()
    (entry,) = tracker.entries()
    assert entry.usage == Usage(10_000, 500, 4000, 5000, 120, units=CLAUDE_UNITS)
    assert (entry.amount, entry.pricing, entry.service_tier) == (CLAUDE_AMOUNT, "catalog@0.2.3", None)


@pytest.mark.parametrize("as_sdk", [False, True], ids=["dict", "sdk"])
@pytest.mark.parametrize(
    ("part", "expected"),
    [
        (
            {"server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 0}},
            Usage(1000, 500, units={"web_searches": 3}),
        ),
        (
            {"cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 0}},
            Usage(1200, 500, cache_write_tokens=200, units={"cache_write_5m_tokens": 200}),
        ),
        ({"output_tokens_details": {"thinking_tokens": 120}}, Usage(1000, 500, reasoning_tokens=120)),
    ],
    ids=["web searches", "ttl split", "thinking"],
)
def test_anthropic_usage_without_cache_counts_is_still_read_as_anthropic(part, expected, as_sdk):
    # Cache counts missing (not 0): the web searches, TTL split and thinking are still Anthropic's and billed as
    # such (they were once read as an OpenAI Responses usage, which has none of them).
    body = {**CLAUDE_MESSAGE, "usage": {"input_tokens": 1000, "output_tokens": 500, **part}}
    response = anthropic.types.Message.model_validate(body) if as_sdk else body
    found = extract_usage(response)
    assert (found.provider, found.usage) == ("anthropic", expected)


def test_anthropic_batch_tier_is_half_price_by_the_published_rule(tracker):
    body = {**CLAUDE_MESSAGE, "usage": {**CLAUDE_USAGE, "service_tier": "batch"}}
    client = anthropic.Anthropic(api_key="k", http_client=transport(body))
    _ask_claude(client, tracker)()
    (entry,) = tracker.entries()
    # Message Batches: 50% of every token rate, cache included; web search not discounted
    # (https://docs.claude.com/en/docs/build-with-claude/batch-processing#pricing): (29,700 + 7,500)e-6 / 2 + 0.03
    assert (entry.amount, entry.pricing, entry.service_tier) == (Decimal("0.0486"), "catalog@0.2.3+batch-rule", "batch")


def _streamed_claude(tracker, body, model):
    """The event types of a tracked Anthropic stream of ``model`` whose server sends ``body`` (SSE), read to its end."""
    client = anthropic.Anthropic(api_key="k", http_client=transport(body, "text/event-stream"))

    @track_cost(tracker=tracker)
    def ask():
        return client.messages.create(
            model=model, max_tokens=100, messages=[{"role": "user", "content": "x"}], stream=True
        )

    return [event.type for event in ask()]


def _claude_stream_body(message, start_usage, delta_usage):
    """The SSE body of the shortest Anthropic stream: ``message_start`` (``message`` with ``start_usage``), one
    ``message_delta`` with ``delta_usage``, ``message_stop``."""
    return sse(
        [
            ("message_start", {"type": "message_start", "message": {**message, "content": [], "usage": start_usage}}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": delta_usage}),  # noqa: E501
            ("message_stop", {"type": "message_stop"}),
        ]
    )  # fmt: skip


def test_anthropic_stream_takes_ttl_split_and_tier_from_message_start_and_counts_from_the_last_delta(tracker):
    start_usage = {**CLAUDE_USAGE, "output_tokens": 1, "service_tier": "batch"}
    del start_usage["output_tokens_details"]
    delta_usage = {  # MessageDeltaUsage: cumulative counts, no TTL split, no service tier
        "input_tokens": 1000,
        "cache_creation_input_tokens": 5000,
        "cache_read_input_tokens": 4000,
        "output_tokens": 500,
        "output_tokens_details": {"thinking_tokens": 120},
        "server_tool_use": {"web_search_requests": 3},
    }
    body = sse(
        [
            ("message_start", {"type": "message_start", "message": {**CLAUDE_MESSAGE, "content": [], "usage": start_usage}}),  # noqa: E501
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),  # noqa: E501
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}),  # noqa: E501
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {**delta_usage, "output_tokens": 200}}),  # noqa: E501
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": delta_usage}),  # noqa: E501
            ("message_stop", {"type": "message_stop"}),
        ]
    )  # fmt: skip
    assert _streamed_claude(tracker, body, "claude-sonnet-4-20250514")[-1] == "message_stop"
    (entry,) = tracker.entries()
    assert entry.usage == Usage(10_000, 500, 4000, 5000, 120, units=CLAUDE_UNITS)
    assert (entry.amount, entry.service_tier) == (Decimal("0.0486"), "batch")  # as the batch case above


COMPACTED = {
    **CLAUDE_MESSAGE,
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "compaction", "content": "Summary of the conversation"}, {"type": "text", "text": "hi"}],
    "usage": {
        "input_tokens": 23_000,
        "output_tokens": 1000,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "iterations": [
            {"type": "compaction", "input_tokens": 180_000, "output_tokens": 3500,
             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 4000},
            {"type": "message", "input_tokens": 23_000, "output_tokens": 1000,
             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        ],
    },
}  # fmt: skip
# A compaction's "tokens are not included in the top-level usage fields" (the SDK's BetaUsage.iterations): a
# request of the message's model of its own. claude-sonnet-4-5: $3 input, $0.30 cache reads, $15 output below 200K
# input a request: the message 23000*3 + 1000*15 = 84,000e-6; the compaction 180000*3 + 4000*0.3 + 3500*15 =
# 593,700e-6 (its 184,000 input tokens below 200K, though the two requests' 207,000 are past it).
COMPACTED_AMOUNT = Decimal("0.6777")


@pytest.mark.parametrize("how", ["client", "dict", "stream"])
def test_anthropic_compaction_is_billed_as_a_request_of_its_own(tracker, how):
    model = "claude-sonnet-4-6"  # (asked for; the response names the model that answered, which is priced)
    if how == "stream":
        start = {**COMPACTED, "content": [], "usage": {"input_tokens": 23_000, "output_tokens": 1}}
        delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": COMPACTED["usage"]}
        body = sse([("message_start", {"type": "message_start", "message": start}), ("message_delta", delta),
                    ("message_stop", {"type": "message_stop"})])  # fmt: skip
        client = anthropic.Anthropic(api_key="k", http_client=transport(body, "text/event-stream"))
        ask = track_cost(tracker=tracker)(
            lambda: client.beta.messages.create(model=model, max_tokens=9, messages=[], stream=True)
        )
        list(ask())
    elif how == "client":
        client = anthropic.Anthropic(api_key="k", http_client=transport(COMPACTED))
        track_cost(tracker=tracker)(lambda: client.beta.messages.create(model=model, max_tokens=9, messages=[]))()
    else:
        track_cost(tracker=tracker)(lambda: COMPACTED)()
    (entry,) = tracker.entries()
    assert entry.usage == Usage(207_000, 4500, 4000, units={"requests": 2})
    assert entry.amount == COMPACTED_AMOUNT


def test_anthropic_iterations_without_a_compaction_are_the_top_level_usage():
    message = {**COMPACTED, "usage": {**COMPACTED["usage"], "iterations": COMPACTED["usage"]["iterations"][1:]}}
    beta = anthropic.types.beta.BetaMessage.model_validate(message)
    assert extract_usage(beta).usage == extract_usage(message).usage == Usage(23_000, 1000)


# -- OpenAI ---------------------------------------------------------------------------------------------------------
def _chat(model, usage, **extra):
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
        "usage": usage,
        **extra,
    }


def _tracked_chat(tracker, model, usage):
    """The one entry of a tracked OpenAI chat call of ``model`` whose server answers with ``usage``."""
    client = openai.OpenAI(api_key="k", http_client=transport(_chat(model, usage)))

    @track_cost(tracker=tracker)
    def ask():
        return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])

    ask()
    (entry,) = tracker.entries()
    return entry


def test_openai_cache_writes_are_read_and_billed_at_the_models_write_price(tracker):
    usage = {
        "prompt_tokens": 10_000,  # includes cached reads and writes
        "completion_tokens": 1000,
        "total_tokens": 11_000,
        "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 3000, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 200, "audio_tokens": 0},
    }
    entry = _tracked_chat(tracker, "gpt-5.6-sol", usage)
    assert entry.usage == Usage(10_000, 1000, 2000, 3000, 200)
    # gpt-5.6-sol: $5 input, $0.50 cached, cache writes 1.25x input ($6.25), $30 output (catalog, from
    # https://developers.openai.com/api/docs/pricing): 5000*5 + 2000*0.5 + 3000*6.25 + 1000*30 = 74,750e-6
    assert entry.amount == Decimal("0.07475")


def test_openai_audio_tokens_are_priced_at_audio_rates(tracker):
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 600},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 400},
    }
    client = openai.OpenAI(api_key="k", http_client=transport(_chat("gpt-audio", usage)))
    response = client.chat.completions.create(model="gpt-audio", messages=[{"role": "user", "content": "x"}])
    found = extract_usage(response)
    assert found.usage.units == {"input_audio_tokens": 600, "output_audio_tokens": 400}
    # gpt-audio: text $2.50 in / $10 out, audio $32 in / $64 out (https://developers.openai.com/api/docs/pricing):
    # 400*2.5 + 600*32 + 100*10 + 400*64 = 46,800e-6
    tracker.record(model=found.model, usage=found.usage)
    assert tracker.entries()[0].amount == Decimal("0.0468")


def test_openai_images_image_tokens_are_priced_at_image_rates(tracker):
    body = {
        "created": 0,
        "data": [{"b64_json": "aGk="}],
        "usage": {
            "input_tokens": 1050,
            "output_tokens": 4160,
            "total_tokens": 5210,
            "input_tokens_details": {"text_tokens": 50, "image_tokens": 1000},
            "output_tokens_details": {"text_tokens": 0, "image_tokens": 4160},
        },
    }
    client = openai.OpenAI(api_key="k", http_client=transport(body))

    @track_cost(tracker=tracker, model="gpt-image-1.5")
    def draw():
        return client.images.generate(model="gpt-image-1.5", prompt="a cat")

    draw()
    (entry,) = tracker.entries()
    assert entry.usage.units == {"input_image_tokens": 1000, "output_image_tokens": 4160}
    # gpt-image-1.5: text $5 in / $10 out, image $8 in / $32 out per MTok (https://developers.openai.com/api/docs/pricing):
    # 50*5 + 1000*8 + 4160*32 = 141,370e-6 (read as text tokens it was 0.04685)
    assert entry.amount == Decimal("0.14137")


def test_openai_transcription_audio_tokens_are_priced_at_audio_rates(tracker):
    # Transcriptions (and Realtime) name the details ``input_token_details``, singular.
    body = {
        "text": "hello",
        "usage": {
            "type": "tokens",
            "input_tokens": 1000,
            "output_tokens": 100,
            "total_tokens": 1100,
            "input_token_details": {"text_tokens": 20, "audio_tokens": 980},
        },
    }
    client = openai.OpenAI(api_key="k", http_client=transport(body))

    @track_cost(tracker=tracker, model="gpt-4o-transcribe")
    def transcribe():
        return client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("a.wav", b"RIFF"))

    transcribe()
    (entry,) = tracker.entries()
    assert entry.usage.units == {"input_audio_tokens": 980}
    # gpt-4o-transcribe: $2.50 text in, $6 audio in, $10 out per MTok: 20*2.5 + 980*6 + 100*10 = 6,930e-6
    assert entry.amount == Decimal("0.00693")


# grok-4: $3 input, $15 output (catalog, https://docs.x.ai/docs/models). xAI counts reasoning apart from
# completion_tokens: "The reasoning token count is outputted in the reasoning_tokens field, separated from the
# completion_tokens" (total_tokens = prompt + completion + reasoning), and bills it as output.
@pytest.mark.parametrize(
    ("completion", "reasoning", "amount"),
    [
        (50, 2000, Decimal("0.03375")),  # 1000*3 + (50 + 2000)*15 = 33,750e-6 (reasoning past the completion)
        (3000, 500, Decimal("0.0555")),  # 1000*3 + (3000 + 500)*15 = 55,500e-6 (the compiled reader's plain case)
    ],
)
def test_xai_reasoning_outside_completion_tokens_is_billed_as_output(tracker, completion, reasoning, amount):
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": completion,
        "total_tokens": 1000 + completion + reasoning,
        "prompt_tokens_details": {"text_tokens": 1000, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0},
    }
    client = openai.OpenAI(api_key="k", base_url="https://api.x.ai/v1", http_client=transport(_chat("grok-4", usage)))
    llmcost.instrument(client, tracker=tracker)
    client.chat.completions.create(model="grok-4", messages=[{"role": "user", "content": "x"}])
    track_cost(tracker=tracker, provider="x-ai")(lambda: _chat("grok-4", usage))()  # the JSON body, read as a dict
    for entry in tracker.entries():
        assert (entry.provider, entry.amount) == ("x-ai", amount)
        assert entry.usage == Usage(1000, completion + reasoning, reasoning_tokens=reasoning)


def test_openai_reasoning_inside_completion_tokens_is_not_added_again(tracker):
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 3000,
        "total_tokens": 4000,  # prompt + completion: the reasoning is a part of the completion
        "completion_tokens_details": {"reasoning_tokens": 500},
    }
    assert _tracked_chat(tracker, "o3", usage).usage == Usage(1000, 3000, reasoning_tokens=500)


def _genai_prices_total(model, provider, **counts):
    """genai-prices' own price of ``counts``: the reference the overlap tests price against."""
    import genai_prices
    from genai_prices import types as gp

    return genai_prices.calc_price(
        gp.Usage(**counts), model, provider_id=provider, genai_request_timestamp=AT
    ).total_price


def test_openai_cached_audio_reported_without_its_split_is_recorded_at_the_overlap_the_counts_imply(tracker):
    # A long spoken conversation: 9,000 audio and 1,000 text prompt tokens, 8,000 of them cached. OpenAI's chat usage
    # does not say how many cached tokens are audio; at least 7,000 must be (the text is 1,000). genai-prices refuses
    # the usage as reported, and llmcost recorded nothing at all.
    usage = {
        "prompt_tokens": 10_000,
        "completion_tokens": 200,
        "total_tokens": 10_200,
        "prompt_tokens_details": {"cached_tokens": 8_000, "audio_tokens": 9_000, "text_tokens": 1_000},
        "completion_tokens_details": {"audio_tokens": 150, "text_tokens": 50},
    }
    entry = _tracked_chat(tracker, "gpt-realtime", usage)
    assert entry.usage.cache_read_tokens == 8_000
    assert entry.usage.units == {
        "input_audio_tokens": 9_000,
        "output_audio_tokens": 150,
        "cache_audio_read_tokens": 7_000,
    }
    # gpt-realtime: text $4 in, cached $0.40, $16 out; audio $32 in, cached $0.40, $64 out
    # (https://developers.openai.com/api/docs/pricing): 7000*0.4 cached audio + 1000*0.4 cached text + 2000*32 audio
    # + 150*64 + 50*16 = 77,600e-6
    assert entry.amount == Decimal("0.0776")
    assert entry.amount == _genai_prices_total(
        "gpt-realtime", "openai", input_tokens=10_000, cache_read_tokens=8_000, input_audio_tokens=9_000,
        cache_audio_read_tokens=7_000, output_tokens=200, output_audio_tokens=150,
    )  # fmt: skip


def test_gemini_cached_audio_without_cache_details_is_recorded_at_the_overlap_the_counts_imply():
    response, entry = _tracked_gemini(
        {
            "promptTokenCount": 10_000,
            "cachedContentTokenCount": 8_000,
            "candidatesTokenCount": 100,
            "promptTokensDetails": [
                {"modality": "AUDIO", "tokenCount": 9_000},
                {"modality": "TEXT", "tokenCount": 1_000},
            ],
        }
    )
    assert entry.usage.units == {"input_audio_tokens": 9_000, "cache_audio_read_tokens": 7_000}
    # gemini-2.5-flash: audio $1.00 in, cached audio $0.10, cached text $0.03, $2.50 out: 2000*1.0 + 7000*0.1
    # + 1000*0.03 + 100*2.5 = 2,980e-6
    assert entry.amount == Decimal("0.00298")
    assert entry.amount == _genai_prices_total(
        "gemini-2.5-flash", "google", input_tokens=10_000, cache_read_tokens=8_000, input_audio_tokens=9_000,
        cache_audio_read_tokens=7_000, output_tokens=100,
    )  # fmt: skip
    # The compiled reader of the SDK's type and the general reader of its JSON agree.
    assert extract_usage(response.model_dump(mode="json", by_alias=True)).usage == entry.usage


def test_a_usage_function_whose_parts_overlap_is_recorded_fitted(tracker):
    reported = Usage(
        input_tokens=10_000, output_tokens=200, cache_read_tokens=8_000, units={"input_audio_tokens": 9_000}
    )
    track_cost(tracker=tracker, model="gpt-realtime", usage=lambda _: reported)(lambda: None)()
    (entry,) = tracker.entries()
    assert entry.usage.units == {"input_audio_tokens": 9_000, "cache_audio_read_tokens": 7_000}
    # 7000*0.4 + 1000*0.4 + 2000*32 + 200*16 = 70,400e-6
    assert entry.amount == Decimal("0.0704")


RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "created_at": 0,
    "model": "o3-2025-04-16",
    "service_tier": "flex",
    "output": [],
    "status": "completed",
    "parallel_tool_calls": False,
    "tool_choice": "auto",
    "tools": [],
    "usage": {
        "input_tokens": 5000,
        "input_tokens_details": {"cached_tokens": 4096},
        "output_tokens": 800,
        "output_tokens_details": {"reasoning_tokens": 512},
        "total_tokens": 5800,
    },
}
# o3 from 2025-06-10: $2 input, $0.50 cached, $8 output; Flex "at Batch API rates", half
# (https://platform.openai.com/docs/guides/flex-processing): (904*2 + 4096*0.5 + 800*8) / 2 = 5,128e-6
O3_FLEX = Decimal("0.005128")


def test_openai_responses_flex_tier(tracker):
    client = openai.OpenAI(api_key="k", http_client=transport(RESPONSE))

    @track_cost(tracker=tracker)
    def ask():
        return client.responses.create(model="o3", input="x", service_tier="flex")

    ask()
    (entry,) = tracker.entries()
    assert (entry.amount, entry.service_tier, entry.pricing) == (O3_FLEX, "flex", "catalog@0.2.3+flex-rule")


def test_openai_responses_stream_keeps_the_model_of_response_completed(tracker):
    created = {**RESPONSE, "status": "in_progress", "usage": None}
    body = sse(
        [
            ("response.created", {"type": "response.created", "sequence_number": 0, "response": created}),
            ("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 1, "item_id": "m", "output_index": 0, "content_index": 0, "delta": "hi", "logprobs": []}),  # noqa: E501
            ("response.completed", {"type": "response.completed", "sequence_number": 2, "response": RESPONSE}),
        ]
    )  # fmt: skip
    client = openai.OpenAI(api_key="k", http_client=transport(body, "text/event-stream"))

    @track_cost(tracker=tracker)
    def ask():
        return client.responses.create(model="o3", input="x", stream=True, service_tier="flex")

    assert len(list(ask())) == 3
    (entry,) = tracker.entries()
    assert (entry.model, entry.amount, entry.service_tier) == ("o3-2025-04-16", O3_FLEX, "flex")


SEARCHED = {
    **RESPONSE,
    "model": "gpt-4.1-2025-04-14",
    "service_tier": "default",
    "tools": [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]}],
    "output": [
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "a"}},
        {"type": "web_search_call", "id": "ws_2", "status": "completed", "action": {"type": "search", "query": "b"}},
        {"type": "web_search_call", "id": "ws_3", "status": "completed", "action": {"type": "open_page", "url": "u"}},
        {"type": "file_search_call", "id": "fs_1", "status": "completed", "queries": ["c"], "results": None},
        {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Hello", "annotations": []}]},
    ],
    "usage": {"input_tokens": 2000, "output_tokens": 100, "total_tokens": 2100,
              "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
              "output_tokens_details": {"reasoning_tokens": 0}},
}  # fmt: skip
# gpt-4.1: $2 input, $8 output; web search $10 and file search $2.50 per 1,000 calls ("Search actions incur a tool
# call cost": opening a page does not; https://platform.openai.com/docs/pricing#built-in-tools):
# 2000*2e-6 + 100*8e-6 + 2*0.01 + 0.0025 = 0.0273
SEARCHED_AMOUNT = Decimal("0.0273")


@pytest.mark.parametrize("how", ["client", "dict", "stream"])
def test_openai_responses_hosted_tool_calls_are_billed_per_call(tracker, how):
    if how == "stream":  # the calls of response.completed's response
        created = {"type": "response.created", "sequence_number": 0, "response": {**SEARCHED, "usage": None}}
        completed = {"type": "response.completed", "sequence_number": 1, "response": SEARCHED}
        body = sse([("response.created", created), ("response.completed", completed)])
        client = openai.OpenAI(api_key="k", http_client=transport(body, "text/event-stream"))
        list(track_cost(tracker=tracker)(lambda: client.responses.create(model="gpt-4.1", input="x", stream=True))())
    elif how == "client":
        client = openai.OpenAI(api_key="k", http_client=transport(SEARCHED))
        track_cost(tracker=tracker)(lambda: client.responses.create(model="gpt-4.1", input="x"))()
    else:
        track_cost(tracker=tracker)(lambda: SEARCHED)()
    (entry,) = tracker.entries()
    assert entry.usage == Usage(2000, 100, units={"web_searches": 2, "storage_searches": 1})
    assert entry.amount == SEARCHED_AMOUNT


def test_openai_responses_without_hosted_tools_reads_no_calls():
    plain = openai.types.responses.Response.model_validate({**SEARCHED, "tools": [{"type": "function", "name": "f",
        "parameters": {}, "strict": True}], "output": SEARCHED["output"][-1:]})  # fmt: skip
    assert extract_usage(plain).usage == Usage(2000, 100)


def _chat_chunks(model, usage=None):
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model}
    events = [{**chunk, "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}]
    if usage is not None:
        events.append({**chunk, "choices": [], "usage": usage})
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def test_openai_stream_without_include_usage_says_to_pass_it(tracker, caplog):
    client = openai.OpenAI(api_key="k", http_client=transport(_chat_chunks("gpt-4o"), "text/event-stream"))

    @track_cost(tracker=tracker)
    def ask():
        return client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True)

    with caplog.at_level(logging.WARNING, logger="llmcost"):
        list(ask())
    assert tracker.entries() == []
    assert 'stream_options={"include_usage": True}' in caplog.text and "NoneType" not in caplog.text


@pytest.mark.parametrize("how", ["closed", "dropped"])
def test_an_openai_stream_cut_short_before_its_usage_does_not_say_to_pass_include_usage(tracker, caplog, how):
    # A consumer that stops reading (closes the stream, or drops it) before the last chunk gets no usage though it
    # passed include_usage: saying to pass it was wrong, and, logged once per function, hid the warning a later
    # stream that really lacked it then gives.
    with_usage = _chat_chunks("gpt-4o", {"prompt_tokens": 10, "completion_tokens": 1})
    clients = [openai.OpenAI(api_key="k", http_client=transport(body, "text/event-stream"))
               for body in (with_usage, _chat_chunks("gpt-4o"))]  # fmt: skip

    @track_cost(tracker=tracker)
    def ask(client, **options):
        messages = [{"role": "user", "content": "x"}]
        return client.chat.completions.create(model="gpt-4o", messages=messages, stream=True, **options)

    with caplog.at_level(logging.WARNING, logger="llmcost"):
        stream = ask(clients[0], stream_options={"include_usage": True})
        next(iter(stream))
        if how == "closed":
            stream.close()
        else:
            del stream
            gc.collect()
        assert tracker.entries() == [] and "include_usage" not in caplog.text
        list(ask(clients[1]))  # read to its end without usage: the option is missing
    assert tracker.entries() == []
    assert 'stream_options={"include_usage": True}' in caplog.text


@pytest.mark.parametrize("provider", [None, "groq"])
def test_a_stream_from_an_openai_compatible_host_is_billed_by_that_host(tracker, monkeypatch, provider):
    looked_up = []
    found = _decorator.provider_for_url
    monkeypatch.setattr(_decorator, "provider_for_url", lambda url: looked_up.append(url) or found(url))
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000, "total_tokens": 2_000_000}
    body = _chat_chunks("openai/gpt-oss-120b", usage)
    client = openai.OpenAI(
        api_key="k", base_url="https://api.groq.com/openai/v1", http_client=transport(body, "text/event-stream")
    )

    @track_cost(tracker=tracker, provider=provider)
    def ask():
        return client.chat.completions.create(
            model="openai/gpt-oss-120b", messages=[{"role": "user", "content": "x"}], stream=True
        )

    list(ask())
    (entry,) = tracker.entries()
    # Groq: gpt-oss-120b $0.15 input, $0.60 output per million (https://groq.com/pricing)
    assert (entry.provider, entry.amount) == ("groq", Decimal("0.75"))
    # The stream's URL names the host unless provider= says who bills: then it is not read.
    assert len(looked_up) == (1 if provider is None else 0)


def test_provider_on_track_cost_names_the_host(tracker):
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 0, "total_tokens": 1_000_000}
    client = openai.OpenAI(api_key="k", http_client=transport(_chat("gpt-oss-120b", usage)))

    @track_cost(tracker=tracker, provider="groq")
    def ask():
        return client.chat.completions.create(model="gpt-oss-120b", messages=[{"role": "user", "content": "x"}])

    ask()
    assert tracker.entries()[0].amount == Decimal("0.15")  # Groq's $0.15/M, not OpenAI's entry


def test_a_generator_of_complete_responses_records_their_sum(tracker):
    client = openai.OpenAI(api_key="k", http_client=transport(RESPONSE))

    @track_cost(tracker=tracker)
    def three():
        for _ in range(3):
            yield client.responses.create(model="o3", input="x")

    list(three())
    (entry,) = tracker.entries()
    assert entry.usage == Usage(15_000, 2400, 3 * 4096, 0, 3 * 512, units={"requests": 3})
    assert entry.amount == 3 * O3_FLEX


# sonar: $1/M input, $1/M output and $12 per 1,000 requests (genai-prices' requests_kcount = 12;
# https://docs.perplexity.ai/getting-started/pricing): 1000*1e-6 + 100*1e-6 + 0.012 = 0.0131 a request
SONAR_CALL = Decimal("0.0131")


def _sonar(i):
    usage = {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}
    return openai.types.chat.ChatCompletion.model_validate(
        {"id": f"r{i}", "object": "chat.completion", "created": 1, "model": "sonar", "choices": [], "usage": usage}
    )


@pytest.mark.parametrize("as_sdk", [False, True], ids=["dict", "sdk"])
def test_perplexity_reasoning_citations_and_searches_are_billed(tracker, as_sdk):
    # sonar-deep-research reports these beside completion_tokens (total = prompt + completion + citations +
    # reasoning), as genai-prices' perplexity reader reads them.
    usage = {
        "prompt_tokens": 20,
        "completion_tokens": 3000,
        "total_tokens": 63_020,
        "citation_tokens": 10_000,
        "num_search_queries": 20,
        "reasoning_tokens": 50_000,
        "search_context_size": "low",
    }
    body = _chat("sonar-deep-research", usage)
    response = openai.types.chat.ChatCompletion.model_validate(body) if as_sdk else body
    track_cost(tracker=tracker, provider="perplexity")(lambda: response)()
    (entry,) = tracker.entries()
    assert entry.usage == Usage(
        20, 63_000, reasoning_tokens=50_000, units={"output_citation_tokens": 10_000, "web_searches": 20}
    )
    # sonar-deep-research: $2/M input, $8/M output, $3/M reasoning, $2/M citations, $5 per 1,000 searches
    # (https://docs.perplexity.ai/getting-started/pricing): 20*2e-6 + 3000*8e-6 + 50000*3e-6 + 10000*2e-6 + 20*5e-3
    assert entry.amount == Decimal("0.29404")
    counts = {"output_reasoning_tokens": 50_000, "output_citation_tokens": 10_000, "web_searches": 20}
    reference = _genai_prices_total(
        "sonar-deep-research", "perplexity", input_tokens=20, output_tokens=63_000, **counts
    )
    assert reference == entry.amount


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # Perplexity's shape without a total: its reasoning is outside the completion (genai-prices' reader)
        ({"prompt_tokens": 20, "completion_tokens": 3000, "reasoning_tokens": 500, "num_search_queries": 1},
         Usage(20, 3500, reasoning_tokens=500, units={"web_searches": 1})),
        # Perplexity's documented shape: its total is prompt + completion, its reasoning and citations apart from both
        # (reasoning smaller than completion + citations was taken as a part of them, and the citations cut)
        ({"prompt_tokens": 19, "completion_tokens": 6667, "total_tokens": 6686, "citation_tokens": 8263,
          "num_search_queries": 18, "reasoning_tokens": 10_000},
         Usage(19, 24_930, reasoning_tokens=10_000, units={"output_citation_tokens": 8263, "web_searches": 18})),
        ({"prompt_tokens": 19, "completion_tokens": 6667, "total_tokens": 6686, "citation_tokens": 8263,
          "num_search_queries": 18, "reasoning_tokens": 73_997},
         Usage(19, 88_927, reasoning_tokens=73_997, units={"output_citation_tokens": 8263, "web_searches": 18})),
        # Databricks' and Modal's top-level reasoning is a part of the completion, as the total says
        ({"prompt_tokens": 20, "completion_tokens": 3000, "total_tokens": 3020, "reasoning_tokens": 500},
         Usage(20, 3000, reasoning_tokens=500)),
    ],
)  # fmt: skip
def test_a_top_level_reasoning_count_is_outside_the_completion_only_where_the_usage_says_so(usage, expected):
    assert extract_usage(_chat("m", usage)).usage == expected


def test_a_generator_of_two_perplexity_responses_records_the_request_fee_of_each(tracker):
    @track_cost(tracker=tracker, provider="perplexity")
    def agent():
        yield _sonar(1)
        yield _sonar(2)

    list(agent())
    (entry,) = tracker.entries()
    assert entry.usage == Usage(2000, 200, units={"requests": 2})
    assert entry.amount == 2 * SONAR_CALL  # two requests, two fees: as two tracked calls would record
    track_cost(tracker=tracker, provider="perplexity")(lambda: _sonar(3))()
    assert tracker.entries()[-1].amount == SONAR_CALL  # one response, one fee: the per-call path as before
    assert tracker.entries()[-1].usage == Usage(1000, 100)


def test_one_anthropic_stream_is_one_request_and_two_streams_are_two(tracker):
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 500}}
    start_usage = {"input_tokens": 1000, "output_tokens": 1}

    def stream(message_id):
        start = {**CLAUDE_MESSAGE, "id": message_id, "content": [], "usage": start_usage}
        return [{"type": "message_start", "message": start}, {**delta, "usage": {"output_tokens": 200}}, delta]

    @track_cost(tracker=tracker, model="sonar", provider="perplexity")  # a per-request fee shows a request counted
    def one():
        yield from stream("msg_1")

    @track_cost(tracker=tracker, model="sonar", provider="perplexity")
    def two():
        yield from stream("msg_1")
        yield from stream("msg_2")

    list(one())
    list(two())
    first, second = tracker.entries()
    # message_start and the cumulative message_deltas are one request: its counts, one fee, no request count
    assert first.usage == Usage(1000, 500)
    assert first.amount == Decimal("0.0135")  # 1000*1e-6 + 500*1e-6 + 0.012
    # two streams (two message ids) are two requests
    assert second.usage == Usage(2000, 1000, units={"requests": 2})
    assert second.amount == 2 * Decimal("0.0135")


def test_a_generator_of_responses_without_a_request_fee_costs_what_it_did(tracker):
    @track_cost(tracker=tracker)
    def two():
        for i in range(2):
            yield {"id": f"c{i}", "model": "gpt-4o", "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 0}}

    list(two())
    (entry,) = tracker.entries()
    assert entry.amount == Decimal("5")  # gpt-4o $2.50/M input, twice: no fee to count
    assert entry.usage.units == {"requests": 2}


def _sonnet_message(i):
    usage = {"input_tokens": 150_000, "output_tokens": 1000, "cache_creation_input_tokens": 0}
    return anthropic.types.Message.model_validate({**CLAUDE_MESSAGE, "id": f"msg_{i}", "usage": usage})


@pytest.mark.parametrize("tier", [None, "batch"])
def test_separate_responses_of_a_generator_are_each_priced_in_their_own_long_context_tier(tracker, tier):
    # Two requests of 150K input tokens each: neither past Claude Sonnet 4.5's 200K long-context threshold, which
    # applies "when a request's input exceeds 200K" (https://docs.claude.com/en/docs/about-claude/pricing); their
    # sum is past it, and was priced so ($1.845 for $0.93).
    @track_cost(tracker=tracker, model="claude-sonnet-4-5", service_tier=tier)
    def agent():
        yield _sonnet_message(1)
        yield _sonnet_message(2)

    list(agent())
    (entry,) = tracker.entries()
    assert entry.usage == Usage(300_000, 2000, units={"requests": 2})
    one = cost_of("claude-sonnet-4-5", Usage(150_000, 1000), service_tier=tier)
    assert one == (Decimal("0.465") if tier is None else Decimal("0.2325"))  # 150000*3 + 1000*15, batch at half
    assert entry.amount == 2 * one


def test_track_cost_service_tier_applies_when_the_response_does_not_say(tracker):
    @track_cost(tracker=tracker, service_tier="batch")
    def ask():
        return {"model": "gpt-4o", "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 0}}

    ask()
    # gpt-4o $2.50/M input; Batch API "50% cost discount" (https://platform.openai.com/docs/guides/batch)
    assert (tracker.entries()[0].amount, tracker.entries()[0].service_tier) == (Decimal("1.25"), "batch")


def test_a_tier_the_response_reports_wins_over_the_one_given():
    # service_tier= applies "when the result does not say": a response that reports its tier was billed at it.
    tracker = CostTracker(clock=lambda: datetime(2026, 11, 1, tzinfo=timezone.utc))
    usage = {"input_tokens": 100_000, "output_tokens": 0}

    @track_cost(tracker=tracker, service_tier="flex")
    def ask_gpt():
        return {
            "model": "gpt-5",
            "service_tier": "priority",
            "usage": {"prompt_tokens": 100_000, "completion_tokens": 0},
        }

    # A US-only tier given keeps the reported tier US-only: Batch's half price, then the 1.1x of US-only inference.
    @track_cost(tracker=tracker, service_tier="us")
    def ask_claude(tier):
        return {"type": "message", "model": "claude-opus-4-6", "usage": {**usage, "service_tier": tier}}

    ask_gpt(), ask_claude("batch"), ask_claude(None)
    # gpt-5 priority: $2.50/M input (flex would be $0.625); claude-opus-4-6 $5/M: batch 50% = $2.50, US-only 1.1x
    assert [(e.service_tier, e.amount) for e in tracker.entries()] == [
        ("priority", Decimal("0.25")),
        ("batch+us", Decimal("0.275")),
        ("us", Decimal("0.55")),
    ]


# -- Google GenAI (real SDK objects) ----------------------------------------------------------------------------------
def _tracked_gemini(usage_metadata):
    """A google-genai response of gemini-2.5-flash with ``usage_metadata`` (its JSON), and the one entry of a tracked
    call returning it."""
    from google.genai import types

    response = types.GenerateContentResponse.model_validate(
        {"modelVersion": "gemini-2.5-flash", "responseId": "r1", "usageMetadata": usage_metadata}
    )
    tracker = CostTracker(clock=lambda: AT)
    track_cost(tracker=tracker)(lambda: response)()
    (entry,) = tracker.entries()
    return response, entry


def test_gemini_audio_input_and_thoughts():
    _, entry = _tracked_gemini(
        {
            "promptTokenCount": 1500,
            "candidatesTokenCount": 200,
            "thoughtsTokenCount": 300,
            "promptTokensDetails": [
                {"modality": "TEXT", "tokenCount": 500},
                {"modality": "AUDIO", "tokenCount": 1000},
            ],
        }
    )
    # gemini-2.5-flash: text $0.30, audio $1.00 input, $2.50 output, thoughts billed as output
    # (https://ai.google.dev/gemini-api/docs/pricing): 500*0.3 + 1000*1.0 + (200 + 300)*2.5 = 2,400e-6
    assert entry.amount == Decimal("0.0024")
    assert entry.usage.units == {"input_audio_tokens": 1000}


def test_gemini_tool_use_prompt_modalities_are_billed_at_their_rates():
    meta = {
        "promptTokenCount": 1000,
        "candidatesTokenCount": 100,
        "toolUsePromptTokenCount": 20_000,  # the input of tool use (audio here), outside the prompt's count
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1000}],
        "toolUsePromptTokensDetails": [{"modality": "AUDIO", "tokenCount": 20_000}],
    }
    response, entry = _tracked_gemini(meta)
    # gemini-2.5-flash: text $0.30, audio $1.00 input, $2.50 output: 1000*0.3 + 20000*1.0 + 100*2.5 = 20,550e-6
    assert entry.usage == Usage(21_000, 100, units={"input_audio_tokens": 20_000})
    assert entry.amount == Decimal("0.02055")
    assert extract_usage(response.model_dump(mode="json", by_alias=True)).usage == entry.usage  # the JSON alike


def test_gemini_image_output_and_cached_audio():
    from google.genai import types

    image = types.GenerateContentResponse.model_validate(
        {
            "modelVersion": "gemini-2.5-flash-image",
            "usageMetadata": {
                "promptTokenCount": 10,
                "candidatesTokenCount": 1290,
                "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}],
            },
        }
    )
    found = extract_usage(image)
    # gemini-2.5-flash-image: $0.30 input, image output $30/M ("1024x1024 image = 1290 tokens = $0.039/image"):
    # 10*0.3 + 1290*30 = 38,703e-6
    tracker = CostTracker(clock=lambda: AT)
    assert tracker.record(model=found.model, usage=found.usage).amount == Decimal("0.038703")
    cached = types.GenerateContentResponse.model_validate(
        {
            "modelVersion": "gemini-2.5-flash",
            "usageMetadata": {
                "promptTokenCount": 1_000_000,
                "cachedContentTokenCount": 200_000,
                "promptTokensDetails": [
                    {"modality": "TEXT", "tokenCount": 600_000},
                    {"modality": "AUDIO", "tokenCount": 400_000},
                ],
                "cacheTokensDetails": [
                    {"modality": "TEXT", "tokenCount": 100_000},
                    {"modality": "AUDIO", "tokenCount": 100_000},
                ],
            },
        }
    )
    found = extract_usage(cached)
    # 500K text*0.3 + 100K cached text*0.03 + 300K audio*1.0 + 100K cached audio*0.1 = 0.463 (cached audio $0.10)
    assert tracker.record(model=found.model, usage=found.usage).amount == Decimal("0.463")


def test_gemini_stream_keeps_model_version(tracker):
    from google.genai import types

    def chunk(candidates):
        return types.GenerateContentResponse.model_validate(
            {
                "modelVersion": "gemini-2.5-flash",
                "responseId": "r1",
                "usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": candidates},
            }
        )

    @track_cost(tracker=tracker)
    def stream():
        yield chunk(10)
        yield chunk(100)  # cumulative: the last chunk's counts, not the sum

    list(stream())
    (entry,) = tracker.entries()
    # 1000*0.3 + 100*2.5 = 550e-6
    assert (entry.model, entry.usage, entry.amount) == ("gemini-2.5-flash", Usage(1000, 100), Decimal("0.00055"))


@pytest.mark.parametrize(
    "body",
    [
        {"modelVersion": "gemini-2.5-pro", "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 5}},
        {
            "modelVersion": "gemini-2.5-flash",
            "usageMetadata": {
                "promptTokenCount": 2000,
                "candidatesTokenCount": 300,
                "thoughtsTokenCount": 40,
                "cachedContentTokenCount": 500,
                "toolUsePromptTokenCount": 7,
                "trafficType": "ON_DEMAND",
                "promptTokensDetails": [
                    {"modality": "TEXT", "tokenCount": 1500},
                    {"modality": "AUDIO", "tokenCount": 500},
                ],
                "cacheTokensDetails": [{"modality": "AUDIO", "tokenCount": 200}],
                "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 290}],
            },
        },
        {"usageMetadata": {"candidatesTokenCount": 5}},  # no prompt count: not Gemini's usage (nothing found)
    ],
    ids=["plain", "every-part", "no-prompt"],
)
def test_gemini_sdk_objects_read_as_their_json_does(body):
    # google-genai responses have a reader of their own (fields read from the objects), which must find what the
    # general reading of the same response as JSON finds.
    from google.genai import types

    assert extract_usage(types.GenerateContentResponse.model_validate(body)) == extract_usage(body)


def test_vertex_embed_content_response_sums_the_tokens_of_its_embeddings(tracker):
    # On Vertex AI, embed_content reports the tokens of each embedding (statistics.token_count), no usage_metadata.
    from google.genai import types

    response = types.EmbedContentResponse(
        embeddings=[
            types.ContentEmbedding(values=[0.1], statistics=types.ContentEmbeddingStatistics(token_count=17)),
            types.ContentEmbedding(values=[0.2], statistics=types.ContentEmbeddingStatistics(token_count=25)),
        ],
        metadata=types.EmbedContentMetadata(billable_character_count=180),
    )
    track_cost(tracker=tracker, model="gemini-embedding-001")(lambda: response)()
    (entry,) = tracker.entries()
    assert (entry.category, entry.usage) == (llmcost.CostCategory.LLM_EMBEDDING, Usage(42))
    assert entry.amount == cost_of("gemini-embedding-001", input_tokens=42) > 0
    assert extract_usage(types.EmbedContentResponse(embeddings=[types.ContentEmbedding(values=[0.1])])) is None


# -- LangChain (real message objects) ---------------------------------------------------------------------------------
def test_langchain_anthropic_ttl_split_batch_and_web_search():
    from langchain_core.messages import AIMessage

    message = AIMessage(
        content="hi",
        usage_metadata={
            "input_tokens": 10_000,  # includes cache
            "output_tokens": 500,
            "total_tokens": 10_500,
            # langchain-anthropic sets cache_creation to 0 when it reports the TTL split
            "input_token_details": {
                "cache_read": 4000,
                "cache_creation": 0,
                "ephemeral_5m_input_tokens": 2000,
                "ephemeral_1h_input_tokens": 3000,
            },
            "output_token_details": {"reasoning": 120},
        },
        response_metadata={
            "model_name": "claude-sonnet-4-20250514",
            "usage": {"service_tier": "batch", "server_tool_use": {"web_search_requests": 3}},
        },
    )
    tracker = CostTracker(clock=lambda: AT)
    track_cost(tracker=tracker)(lambda: message)()
    (entry,) = tracker.entries()
    assert entry.usage == Usage(10_000, 500, 4000, 5000, 120, units=CLAUDE_UNITS)
    assert (entry.amount, entry.service_tier) == (Decimal("0.0486"), "batch")  # as the Anthropic batch case


def test_langchain_openai_flex_prefixed_counts():
    from langchain_core.messages import AIMessage

    message = AIMessage(
        content="hi",
        usage_metadata={
            "input_tokens": 5000,
            "output_tokens": 800,
            "total_tokens": 5800,
            "input_token_details": {"flex_cache_read": 4096, "flex": 904},
            "output_token_details": {"flex_reasoning": 512, "flex": 288},
        },
        response_metadata={"model_name": "o3-2025-04-16", "service_tier": "flex"},
    )
    found = extract_usage(message)
    assert (found.usage, found.service_tier) == (Usage(5000, 800, 4096, 0, 512), "flex")
    tracker = CostTracker(clock=lambda: AT)
    assert tracker.record(model=found.model, usage=found.usage, service_tier="flex").amount == O3_FLEX


@pytest.mark.parametrize("tier", ["flex", "priority"])
def test_langchain_openai_prefixed_cache_writes_count(tier):
    # langchain-openai prefixes every input detail of a flex or priority call, cache writes too
    # (``flex_cache_creation``): they were priced as plain input.
    from langchain_core.messages import AIMessage

    message = AIMessage(
        content="hi",
        usage_metadata={
            "input_tokens": 10_000,
            "output_tokens": 1000,
            "total_tokens": 11_000,
            "input_token_details": {f"{tier}_cache_read": 2000, f"{tier}_cache_creation": 4000, tier: 4000},
            "output_token_details": {tier: 1000},
        },
        response_metadata={"model_name": "gpt-5.6-sol", "service_tier": tier},
    )
    found = extract_usage(message)
    assert (found.usage, found.service_tier) == (Usage(10_000, 1000, 2000, 4000), tier)


def test_langchain_openai_responses_hosted_tool_calls_are_billed_per_call():
    # langchain-openai keeps a Responses call's web searches as content blocks; the SDK's own Response of the same
    # call is billed $10 per 1,000 searches (an opened page is not a search).
    from langchain_core.messages import AIMessage

    message = AIMessage(
        content=[
            {
                "type": "web_search_call",
                "id": "ws_1",
                "status": "completed",
                "action": {"type": "search", "query": "x"},
            },
            {"type": "web_search_call", "id": "ws_2", "status": "completed", "action": {"type": "open_page"}},
            {"type": "text", "text": "hi", "annotations": []},
        ],
        usage_metadata={"input_tokens": 1000, "output_tokens": 100, "total_tokens": 1100},
        response_metadata={"model_name": "gpt-4.1-2025-04-14"},
    )
    found = extract_usage(message)
    assert dict(found.usage.units) == {"web_searches": 1}
    assert cost_of(found.model, found.usage) == Decimal("0.0128")  # 1000*2 + 100*8 per million, + 1 search at $0.01


def _llm_result(*prompts, llm_output=None):
    """LangChain's ``LLMResult`` of ``chat_model.generate()``: per prompt, its candidates' usage (``None``: none)."""
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, LLMResult

    def message(usage):
        meta = {"model_name": "gpt-4o-2024-08-06"}
        if usage is None:
            return AIMessage(content="hi", response_metadata=meta)
        inp, out = usage
        return AIMessage(
            content="hi",
            usage_metadata={"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out},
            response_metadata=meta,
        )

    generations = [[ChatGeneration(message=message(u)) for u in candidates] for candidates in prompts]
    return LLMResult(generations=generations, llm_output=llm_output)


def test_langchain_llm_result_reads_each_prompts_usage_once(tracker):
    pytest.importorskip("langchain_core")
    # Two candidates of one request carry its whole usage each (langchain-openai with n=2): counted once.
    track_cost(tracker=tracker)(lambda: _llm_result([(1000, 300), (1000, 300)]))()
    (entry,) = tracker.entries()
    assert (entry.model, entry.usage) == ("gpt-4o-2024-08-06", Usage(1000, 300))
    assert entry.amount == cost_of("gpt-4o-2024-08-06", input_tokens=1000, output_tokens=300)
    # Two prompts are two requests, added up into the call's entry.
    found = extract_usage(_llm_result([(1000, 300)], [(500, 100)]))
    assert found.usage == Usage(1000, 300) + Usage(500, 100)
    # Messages without usage: llm_output's token_usage.
    token_usage = {"prompt_tokens": 70, "completion_tokens": 7, "total_tokens": 77}
    found = extract_usage(_llm_result([None], llm_output={"token_usage": token_usage, "model_name": "gpt-4o"}))
    assert (found.model, found.usage) == ("gpt-4o", Usage(70, 7))
    assert extract_usage(_llm_result([None])) is None


def test_langchain_chunk_stream_keeps_the_model_name(tracker):
    from langchain_core.messages import AIMessageChunk

    @track_cost(tracker=tracker)
    def stream():
        yield AIMessageChunk(content="", id="run-1", response_metadata={"model_name": "claude-sonnet-4-20250514"})
        yield AIMessageChunk(content="hi", id="run-1")
        yield AIMessageChunk(
            content="",
            id="run-1",
            usage_metadata={"input_tokens": 1000, "output_tokens": 100, "total_tokens": 1100},
        )

    list(stream())
    (entry,) = tracker.entries()
    assert (entry.model, entry.amount) == ("claude-sonnet-4-20250514", Decimal("0.0045"))  # 1000*3 + 100*15


def test_langchain_chunks_of_one_run_add_up_their_usage(tracker):
    from langchain_core.messages import AIMessageChunk

    # What ChatGoogleGenerativeAI.stream() yields for a Gemini stream whose cumulative usage goes (1000 in, 10 out),
    # (1000, 30), (1000, 60): each chunk's difference from the last, which LangChain adds (AIMessageChunk.__add__).
    parts = [(1000, 10), (0, 20), (0, 30)]
    chunks = [
        AIMessageChunk(
            content="x",
            id="lc_run--1",
            usage_metadata={"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out},
            response_metadata={"model_name": "gemini-2.5-flash"} if i == 2 else {},
        )
        for i, (inp, out) in enumerate(parts)
    ]

    @track_cost(tracker=tracker)
    def stream():
        yield from chunks

    list(stream())
    (entry,) = tracker.entries()
    total = chunks[0] + chunks[1] + chunks[2]
    assert total.usage_metadata["output_tokens"] == 60  # LangChain's own sum
    assert entry.usage == Usage(1000, 60)
    assert entry.amount == Decimal("0.00045")  # gemini-2.5-flash: 1000*0.30 + 60*2.50 (catalog, per million)


def _mistral_chunks(prompt_tokens, completion_tokens):
    """The JSON of a mistral-large-latest chat stream's three chunks, the usage on the last one."""
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    return [
        {
            "id": "cmpl-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "mistral-large-latest",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None if text else "stop"}],
            **({} if text else {"usage": usage}),
        }
        for text in ("Bon", "jour", "")
    ]


def _mistral_events(how):
    """What mistralai's ``client.chat.stream()`` yields: ``CompletionEvent(data=CompletionChunk(...))``, the usage on
    the last one's chunk (as SDK objects, when mistralai is installed, or as their JSON)."""
    events = [{"data": chunk} for chunk in _mistral_chunks(1000, 200)]
    if how == "dict":
        return events
    models = pytest.importorskip("mistralai.client.models")
    return [models.CompletionEvent.model_validate(event) for event in events]


@pytest.mark.parametrize("how", ["dict", "sdk"])
def test_mistral_stream_events_are_read_through_their_data(tracker, how):
    events = _mistral_events(how)

    @track_cost(tracker=tracker)
    def stream():
        yield from events

    list(stream())
    (entry,) = tracker.entries()
    assert (entry.model, entry.usage) == ("mistral-large-latest", Usage(1000, 200))
    assert entry.amount == Decimal("0.0032")  # mistral-large-latest: 1000*2 + 200*6 (catalog, per million)


def _mistral_client():
    """mistralai's client over canned HTTP: a chat stream of mistral-large-latest, its usage on the last chunk."""
    mistralai = pytest.importorskip("mistralai.client")
    chunks = _mistral_chunks(10_000, 500)
    body = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"

    def handler(request):
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())

    return mistralai.Mistral(
        api_key="k",
        client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        async_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
    )


def test_mistral_sdk_streams_returned_by_a_tracked_function_are_recorded(tracker):
    # client.chat.stream() and stream_async() return mistralai's EventStream / EventStreamAsync (iterator classes, not
    # generators): they were taken for results without usage, and nothing was recorded.
    client = _mistral_client()
    messages = [{"role": "user", "content": "x"}]

    @track_cost(tracker=tracker)
    def ask():
        return client.chat.stream(model="mistral-large-latest", messages=messages)

    @track_cost(tracker=tracker)
    async def ask_async():
        return await client.chat.stream_async(model="mistral-large-latest", messages=messages)

    stream = ask()
    assert type(stream).__name__ == "EventStream"  # the SDK's own object, iterating as before
    assert [e.data.choices[0].delta.content for e in stream] == ["Bon", "jour", ""]
    with ask() as stream:  # closed after one event: recorded with what it read by then (no usage yet)
        next(stream)

    async def read_async():
        async for _ in await ask_async():
            pass

    asyncio.run(read_async())
    # mistral-large-latest: $2 input, $6 output per MTok: 10000*2 + 500*6 = 23,000e-6
    assert [(e.model, e.usage, e.amount) for e in tracker.entries()] == [
        ("mistral-large-latest", Usage(10_000, 500), Decimal("0.023"))
    ] * 2


# -- LiteLLM, Bedrock, Cohere (exact JSON shapes) ---------------------------------------------------------------------
# LiteLLM is not in the dev extra (a large install); this is ModelResponse.model_dump(exclude_none=True) for an
# Anthropic call as litellm 1.110 builds it (AnthropicConfig.calculate_usage), with _hidden_params beside it.
LITELLM = {
    "id": "chatcmpl-l",
    "object": "chat.completion",
    "model": "claude-sonnet-4-20250514",
    "usage": {
        "prompt_tokens": 10_000,  # includes cache (OpenAI semantics)
        "completion_tokens": 500,
        "total_tokens": 10_500,
        "prompt_tokens_details": {
            "cached_tokens": 4000,
            "cache_write_tokens": 5000,
            "cache_creation_tokens": 5000,
            "text_tokens": 1000,
            "cache_creation_token_details": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 3000},
        },
        "completion_tokens_details": {"reasoning_tokens": 0, "text_tokens": 500},
        "server_tool_use": {"web_search_requests": 3},
        "cache_creation_input_tokens": 5000,
        "cache_read_input_tokens": 4000,
        "service_tier": "standard",
    },
    "_hidden_params": {"custom_llm_provider": "anthropic", "api_base": None},
}


def test_litellm_cache_writes_ttl_split_and_web_searches(tracker):
    track_cost(tracker=tracker)(lambda: LITELLM)()
    (entry,) = tracker.entries()
    assert (entry.provider, entry.usage) == ("anthropic", Usage(10_000, 500, 4000, 5000, units=CLAUDE_UNITS))
    assert entry.amount == CLAUDE_AMOUNT


def test_litellm_gemini_cached_audio_is_priced_as_cached_audio(tracker):
    # LiteLLM carries Gemini's cache reads by modality (``cached_tokens_details``); the cached audio was priced as
    # uncached audio (0.00478 where Gemini bills 0.00415).
    body = {
        "id": "r1",
        "object": "chat.completion",
        "model": "gemini-2.5-flash",
        "usage": {
            "prompt_tokens": 10_000,
            "completion_tokens": 800,
            "total_tokens": 10_800,
            "prompt_tokens_details": {
                "cached_tokens": 6000,
                "audio_tokens": 2000,
                "text_tokens": 8000,
                "cached_tokens_details": {"audio_tokens": 1000, "text_tokens": 5000},
            },
        },
        "_hidden_params": {"custom_llm_provider": "gemini", "api_base": None},
    }
    track_cost(tracker=tracker)(lambda: body)()
    (entry,) = tracker.entries()
    assert dict(entry.usage.units) == {"input_audio_tokens": 2000, "cache_audio_read_tokens": 1000}
    # text 3000*0.30 + audio 1000*1.00 + cached text 5000*0.03 + cached audio 1000*0.10 + out 800*2.50, per million
    assert entry.amount == Decimal("0.00415")


def test_litellm_api_base_names_the_host():
    body = {
        **LITELLM,
        "model": "openai/gpt-oss-120b",
        "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 0, "total_tokens": 1_000_000},
        "_hidden_params": {"custom_llm_provider": "openai", "api_base": "https://api.groq.com/openai/v1"},
    }
    assert extract_usage(body).provider == "groq"


def test_bedrock_converse_body_with_the_model_on_the_decorator(tracker):
    body = {  # bedrock-runtime converse(): no model in the body
        "output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": 1000,  # excludes cache reads and writes
            "outputTokens": 100,
            "totalTokens": 4100,
            "cacheReadInputTokens": 2000,
            "cacheWriteInputTokens": 1000,
            "cacheDetails": [{"ttl": "1h", "inputTokens": 1000}],
        },
        "metrics": {"latencyMs": 300},
    }
    track_cost(tracker=tracker, model="us.anthropic.claude-sonnet-4-5-20250929-v1:0")(lambda: body)()
    (entry,) = tracker.entries()
    assert entry.usage == Usage(4000, 100, 2000, 1000, units={"cache_write_1h_tokens": 1000})
    # Bedrock regional (us.) Claude Sonnet 4.5: 10% over Anthropic's prices, $3.30 in, $0.33 cached, 1-hour writes
    # $6.60, $16.50 out (https://aws.amazon.com/bedrock/pricing/): 1000*3.3 + 2000*0.33 + 1000*6.6 + 100*16.5
    assert (entry.provider, entry.amount) == ("aws", Decimal("0.01221"))


def test_a_generator_of_bedrock_converse_responses_records_their_sum(tracker):
    # An agent loop yielding each turn's converse() body: whole responses without an id, each a request of its own
    # (their usage was merged as one response's, field by field: 1500/200 recorded for 2500/300).
    def turn(inp, out):
        return {
            "ResponseMetadata": {"RequestId": f"req-{inp}", "HTTPStatusCode": 200},
            "output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": inp, "outputTokens": out, "totalTokens": inp + out},
        }

    @track_cost(tracker=tracker, model="anthropic.claude-3-5-haiku-20241022-v1:0", provider="aws")
    def agent():
        yield turn(1000, 100)
        yield turn(1500, 200)

    list(agent())
    (entry,) = tracker.entries()
    assert entry.usage == Usage(2500, 300, units={"requests": 2})
    # Claude 3.5 Haiku on Bedrock: $0.80 in, $4 out per MTok (https://aws.amazon.com/bedrock/pricing/):
    # 2500*0.8 + 300*4 = 3,200e-6
    assert entry.amount == Decimal("0.0032")


def test_bedrock_converse_stream_metadata_event(tracker):
    @track_cost(tracker=tracker, model="us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    def stream():
        yield {"contentBlockDelta": {"delta": {"text": "hi"}, "contentBlockIndex": 0}}
        yield {"metadata": {"usage": {"inputTokens": 1000, "outputTokens": 100, "totalTokens": 1100}, "metrics": {}}}

    list(stream())
    assert tracker.entries()[0].amount == Decimal("0.00495")  # 1000*3.3 + 100*16.5


@pytest.mark.parametrize(
    "body",
    [
        # Cohere v2 chat: bill on usage.billed_units (https://docs.cohere.com/v2/docs/how-does-cohere-pricing-work)
        {"id": "c", "usage": {"billed_units": {"input_tokens": 1000, "output_tokens": 200}, "tokens": {"input_tokens": 1200, "output_tokens": 200}}},  # noqa: E501
        # Cohere v1 chat: meta.billed_units
        {"text": "hi", "meta": {"billed_units": {"input_tokens": 1000, "output_tokens": 200}}},
    ],
)  # fmt: skip
def test_cohere_billed_units(tracker, body):
    track_cost(tracker=tracker, model="command-a-03-2025")(lambda: body)()
    (entry,) = tracker.entries()
    # Command A: $2.50 input, $10 output per million (https://cohere.com/pricing): 1000*2.5 + 200*10
    assert (entry.provider, entry.usage, entry.amount) == ("cohere", Usage(1000, 200), Decimal("0.0045"))


# -- Anthropic fast mode (``usage.speed == "fast"``) -----------------------------------------------------------------
# claude-opus-5 fast mode: $10 input / $50 output, prompt caching multipliers on top (cache reads $1), against $5 /
# $25 standard (https://platform.claude.com/docs/en/about-claude/pricing#fast-mode-pricing, genai-prices' price
# variant ``{"speed": "fast"}``): 8000*10 + 2000*1 + 1000*50 = 132,000e-6, twice the standard 66,000e-6.
FAST_USAGE = {
    "input_tokens": 8000,  # uncached input only
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 2000,
    "output_tokens": 1000,
    "service_tier": "standard",
    "speed": "fast",
}
FAST_MESSAGE = {**CLAUDE_MESSAGE, "model": "claude-opus-5", "usage": FAST_USAGE}


def _fast_message(how, body):
    if how == "sdk object":
        return lambda: anthropic.types.Message.model_validate(body)
    if how == "dict":
        return lambda: body
    client = anthropic.Anthropic(api_key="k", http_client=transport(body))
    create = client.beta.messages.create if how == "beta client" else client.messages.create
    return lambda: create(model=body["model"], max_tokens=100, messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize("how", ["sdk object", "dict", "client", "beta client"])
def test_anthropic_fast_mode_message_records_the_catalogs_fast_price(tracker, how):
    track_cost(tracker=tracker)(_fast_message(how, FAST_MESSAGE))()
    (entry,) = tracker.entries()
    assert entry.usage == Usage(10_000, 1000, 2000)
    assert (entry.amount, entry.pricing, entry.service_tier) == (Decimal("0.132"), "catalog@0.2.3", "fast")


@pytest.mark.parametrize("how", ["sdk object", "dict", "client"])
def test_anthropic_standard_speed_records_the_standard_price(tracker, how):
    body = {**FAST_MESSAGE, "usage": {**FAST_USAGE, "speed": "standard"}}
    track_cost(tracker=tracker)(_fast_message(how, body))()
    (entry,) = tracker.entries()
    assert (entry.amount, entry.pricing, entry.service_tier) == (Decimal("0.066"), "catalog@0.2.3", None)


@pytest.mark.parametrize("how", ["sdk object", "dict"])
def test_anthropic_fast_mode_on_a_model_without_a_fast_price_records_the_standard_price_and_says_so(tracker, how):
    # claude-haiku-4-5 has no fast price in the catalog and fast mode no published rule: priced as a priority call
    # without a priority price is, at the standard $1 / $5 (cache reads $0.10), the label saying so:
    # 8000*1 + 2000*0.1 + 1000*5 = 13,200e-6.
    body = {**FAST_MESSAGE, "model": "claude-haiku-4-5"}
    track_cost(tracker=tracker)(_fast_message(how, body))()
    (entry,) = tracker.entries()
    assert (entry.amount, entry.pricing, entry.service_tier) == (
        Decimal("0.0132"),
        "catalog@0.2.3+fast-at-standard",
        "fast",
    )


def test_anthropic_fast_mode_stream_records_the_fast_price(tracker):
    start_usage = {**FAST_USAGE, "output_tokens": 1}
    delta_usage = {
        "input_tokens": 8000,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 2000,
        "output_tokens": 1000,
    }
    body = _claude_stream_body(FAST_MESSAGE, start_usage, delta_usage)
    assert _streamed_claude(tracker, body, "claude-opus-5")[-1] == "message_stop"
    (entry,) = tracker.entries()
    assert entry.usage == Usage(10_000, 1000, 2000)
    assert (entry.amount, entry.pricing, entry.service_tier) == (Decimal("0.132"), "catalog@0.2.3", "fast")


def test_anthropic_fast_mode_said_only_in_a_message_delta_is_read():
    from llmcost._extract import StreamAccumulator

    acc = StreamAccumulator()
    start = {**FAST_USAGE, "output_tokens": 1}
    del start["speed"]
    acc.add({"type": "message_start", "message": {**FAST_MESSAGE, "content": [], "usage": start}})
    acc.add({"type": "message_delta", "delta": {}, "usage": {"output_tokens": 1000, "speed": "fast"}})
    found = acc.result()
    assert (found.model, found.usage, found.service_tier) == ("claude-opus-5", Usage(10_000, 1000, 2000), "fast")


# -- Anthropic US-only inference (``usage.inference_geo == "us"``) ---------------------------------------------------
# "For Claude Opus 4.6 and newer models, specifying US-only inference via the inference_geo parameter incurs a 1.1x
# multiplier on all token pricing categories, including input tokens, output tokens, cache writes, and cache reads"
# (https://platform.claude.com/docs/en/about-claude/pricing, "Data residency pricing"); web search is no token price.
# claude-opus-4-6: $5 input, $25 output, cache reads $0.50, 5-minute writes $6.25, 1-hour writes $10, web search $10
# per 1,000. Standard: 8000*5 + 1000*6.25 + 2000*10 + 2000*0.5 + 1000*25 = 92,250e-6 in tokens, + 2 * 10 / 1000:
# 0.11225. US-only: 92,250e-6 * 1.1 = 101,475e-6, + 0.02: 0.121475.
US_USAGE = {
    "input_tokens": 8000,  # uncached input only
    "cache_creation_input_tokens": 3000,
    "cache_read_input_tokens": 2000,
    "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
    "output_tokens": 1000,
    "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0},
    "service_tier": "standard",
    "inference_geo": "us",
}
US_MESSAGE = {**CLAUDE_MESSAGE, "model": "claude-opus-4-6", "usage": US_USAGE}
US_UNITS = {"cache_write_5m_tokens": 1000, "cache_write_1h_tokens": 2000, "web_searches": 2}


@pytest.mark.parametrize("how", ["sdk object", "dict", "client", "beta client"])
def test_anthropic_us_only_inference_records_1_1_times_every_token_price(tracker, how):
    track_cost(tracker=tracker)(_fast_message(how, US_MESSAGE))()
    (entry,) = tracker.entries()
    assert entry.usage == Usage(13_000, 1000, 2000, 3000, units=US_UNITS)
    assert (entry.amount, entry.pricing, entry.service_tier) == (
        Decimal("0.121475"),
        "catalog@0.2.3+us-inference",
        "us",
    )


@pytest.mark.parametrize("geo", ["global", None, "missing"])
@pytest.mark.parametrize("how", ["sdk object", "dict", "client"])
def test_anthropic_global_or_unsaid_inference_records_the_standard_price(tracker, how, geo):
    usage = {**US_USAGE, "inference_geo": geo}
    if geo == "missing":
        del usage["inference_geo"]
    track_cost(tracker=tracker)(_fast_message(how, {**US_MESSAGE, "usage": usage}))()
    (entry,) = tracker.entries()
    assert (entry.amount, entry.pricing, entry.service_tier) == (Decimal("0.11225"), "catalog@0.2.3", None)


@pytest.mark.parametrize("how", ["sdk object", "dict"])
def test_anthropic_us_only_inference_of_a_model_before_opus_4_6_records_the_standard_price(tracker, how):
    # The rule covers Claude Opus 4.6 and newer models only; claude-opus-4-5 has the same prices as claude-opus-4-6
    # (https://platform.claude.com/docs/en/about-claude/pricing), so the standard 0.11225.
    track_cost(tracker=tracker)(_fast_message(how, {**US_MESSAGE, "model": "claude-opus-4-5"}))()
    (entry,) = tracker.entries()
    assert (entry.amount, entry.pricing, entry.service_tier) == (Decimal("0.11225"), "catalog@0.2.3", "us")


@pytest.mark.parametrize("how", ["sdk object", "dict", "client"])
def test_anthropic_us_only_inference_stacks_with_fast_mode_and_batch(tracker, how):
    # Fast mode: claude-opus-5's fast price (0.132, as above) times 1.1: 0.1452. Batch: the Batch API's 50% discount
    # on every token price (no batch price in the catalog: the published rule), then 1.1x: 92,250e-6 / 2 * 1.1 =
    # 50,737.5e-6, + 0.02 for the searches (not discounted): 0.0707375.
    fast = {**FAST_MESSAGE, "usage": {**FAST_USAGE, "inference_geo": "us"}}
    batch = {**US_MESSAGE, "usage": {**US_USAGE, "service_tier": "batch"}}
    track_cost(tracker=tracker)(_fast_message(how, fast))()
    track_cost(tracker=tracker)(_fast_message(how, batch))()
    assert [(e.amount, e.pricing, e.service_tier) for e in tracker.entries()] == [
        (Decimal("0.1452"), "catalog@0.2.3+us-inference", "fast+us"),
        (Decimal("0.0707375"), "catalog@0.2.3+batch-rule+us-inference", "batch+us"),
    ]


def test_anthropic_us_only_inference_stream_records_1_1_times_the_price(tracker):
    start_usage = {**US_USAGE, "output_tokens": 1}
    delta_usage = {  # MessageDeltaUsage: cumulative counts, without the TTL split, the tier or the geo
        "input_tokens": 8000,
        "cache_creation_input_tokens": 3000,
        "cache_read_input_tokens": 2000,
        "output_tokens": 1000,
        "server_tool_use": {"web_search_requests": 2},
    }
    body = _claude_stream_body(US_MESSAGE, start_usage, delta_usage)
    assert _streamed_claude(tracker, body, "claude-opus-4-6")[-1] == "message_stop"
    (entry,) = tracker.entries()
    assert entry.usage == Usage(13_000, 1000, 2000, 3000, units=US_UNITS)
    assert (entry.amount, entry.pricing, entry.service_tier) == (
        Decimal("0.121475"),
        "catalog@0.2.3+us-inference",
        "us",
    )


def test_anthropic_us_only_inference_and_fast_mode_said_in_a_message_delta_are_kept_together():
    from llmcost._extract import StreamAccumulator

    acc = StreamAccumulator()
    start = {**FAST_USAGE, "output_tokens": 1, "inference_geo": "us"}
    del start["speed"]
    acc.add({"type": "message_start", "message": {**FAST_MESSAGE, "content": [], "usage": start}})
    acc.add({"type": "message_delta", "delta": {}, "usage": {"output_tokens": 1000, "speed": "fast"}})
    assert acc.result().service_tier == "fast+us"
    acc = StreamAccumulator()  # fast mode said first, the geo after
    acc.add({"type": "message_start", "message": {**FAST_MESSAGE, "content": [], "usage": {**FAST_USAGE}}})
    acc.add({"type": "message_delta", "delta": {}, "usage": {"output_tokens": 1000, "inference_geo": "us"}})
    assert acc.result().service_tier == "fast+us"


def test_langchain_anthropic_us_only_inference():
    from langchain_core.messages import AIMessage

    message = AIMessage(
        content="hi",
        usage_metadata={"input_tokens": 100_000, "output_tokens": 10_000, "total_tokens": 110_000},
        response_metadata={"model_name": "claude-opus-4-6", "usage": {"inference_geo": "us"}},
    )
    found = extract_usage(message)
    assert found.service_tier == "us"
    # 100,000 * 5 + 10,000 * 25 = 0.75, times 1.1
    assert cost_of(found.model, found.usage, service_tier=found.service_tier) == Decimal("0.825")


@pytest.mark.parametrize(
    ("tier", "amount", "pricing"),
    [
        (None, "0.75", "catalog@0.2.3"),
        ("us", "0.825", "catalog@0.2.3+us-inference"),  # 100,000 * 5 + 10,000 * 25 = 0.75, times 1.1
        ("batch+us", "0.4125", "catalog@0.2.3+batch-rule+us-inference"),  # 0.75 / 2 * 1.1
    ],
)
def test_us_only_inference_asked_of_cost_of_and_record(tracker, tier, amount, pricing):
    assert cost_of("claude-opus-4-6", 100_000, 10_000, service_tier=tier) == Decimal(amount)
    entry = tracker.record(model="claude-opus-4-6", input_tokens=100_000, output_tokens=10_000, service_tier=tier)
    assert (entry.amount, entry.pricing, entry.service_tier) == (Decimal(amount), pricing, tier)
    # Past 200K input tokens claude-opus-4-6 was billed at its long-context $10 / $37.50 until 2026-03-13 (the
    # catalog's tier), 1.1x too where US-only: 300,000 * 10 + 10,000 * 37.5 = 3.375, US-only 3.7125, batch and
    # US-only 1.85625.
    long = {None: "3.375", "us": "3.7125", "batch+us": "1.85625"}[tier]
    assert cost_of("claude-opus-4-6", 300_000, 10_000, service_tier=tier, at=AT) == Decimal(long)
    # A model the rule does not cover: the standard price.
    plain = {None: None, "us": None, "batch+us": "batch"}[tier]
    assert cost_of("claude-sonnet-4-5", 100_000, 10_000, service_tier=tier) == cost_of(
        "claude-sonnet-4-5", 100_000, 10_000, service_tier=plain
    )


@pytest.mark.parametrize("tier", ["eu", "us+batch", "+us", "global"])
def test_an_unknown_us_only_tier_is_refused(tier):
    with pytest.raises(ValueError, match="service_tier"):
        cost_of("claude-opus-4-6", 100, 10, service_tier=tier)
