"""Usage extraction: real OpenAI and Anthropic clients over canned HTTP, and dict shapes of every provider."""

from __future__ import annotations

import json
from decimal import Decimal

import anthropic
import httpx2
import openai
import pytest

import llmcost
from llmcost import CostCategory, CostTracker, Usage, track_cost
from llmcost._extract import StreamAccumulator, extract_usage, is_sdk_stream


def transport(body, content_type="application/json"):
    text = body if isinstance(body, str) else json.dumps(body)

    def handler(request):
        return httpx2.Response(200, text=text, headers={"content-type": content_type})

    return httpx2.Client(transport=httpx2.MockTransport(handler))


CHAT = {
    "id": "c",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
    "usage": {
        "prompt_tokens": 2000,
        "completion_tokens": 300,
        "total_tokens": 2300,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 100},
    },
}

ANTHROPIC_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-3-5-sonnet-20241022",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 100,
        "output_tokens": 50,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 200,
    },
}


def test_openai_chat_completion_object():
    client = openai.OpenAI(api_key="k", http_client=transport(CHAT))
    response = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    found = extract_usage(response)
    assert found.model == "gpt-4o-2024-08-06" and found.provider == "openai"
    assert found.usage == Usage(2000, 300, cache_read_tokens=1024, reasoning_tokens=100)


def test_openai_responses_api_object():
    body = {
        "id": "resp_1",
        "object": "response",
        "created_at": 0,
        "model": "gpt-4o-mini",
        "output": [],
        "status": "completed",
        "parallel_tool_calls": False,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 500,
            "output_tokens": 80,
            "total_tokens": 580,
            "input_tokens_details": {"cached_tokens": 128},
            "output_tokens_details": {"reasoning_tokens": 16},
        },
    }
    client = openai.OpenAI(api_key="k", http_client=transport(body))
    response = client.responses.create(model="gpt-4o-mini", input="x")
    assert extract_usage(response).usage == Usage(500, 80, cache_read_tokens=128, reasoning_tokens=16)


def test_openai_embeddings_are_an_embedding_category():
    body = {
        "object": "list",
        "model": "text-embedding-3-small",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
        "usage": {"prompt_tokens": 1_000_000, "total_tokens": 1_000_000},
    }
    client = openai.OpenAI(api_key="k", http_client=transport(body))
    tracker = CostTracker()

    @track_cost(tracker=tracker)
    def embed():
        return client.embeddings.create(model="text-embedding-3-small", input="x")

    embed()
    (entry,) = tracker.entries()
    assert entry.category is CostCategory.LLM_EMBEDDING
    assert entry.amount == Decimal("0.02")


LITELLM_EMBEDDING = {  # LiteLLM's EmbeddingResponse of an OpenAI embeddings reply: its Usage fills completion_tokens=0
    "object": "list",
    "model": "text-embedding-3-small",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}],
    "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 0, "total_tokens": 1_000_000},
}


def _litellm_embedding_object():
    """``LITELLM_EMBEDDING`` as pydantic models, as LiteLLM's response classes are (read by the general path)."""
    import pydantic

    class Embedding(pydantic.BaseModel):
        object: str
        index: int
        embedding: list[float]

    class EmbeddingUsage(pydantic.BaseModel):
        prompt_tokens: int
        completion_tokens: int
        total_tokens: int

    class EmbeddingResponse(pydantic.BaseModel):
        object: str
        model: str
        data: list[Embedding]
        usage: EmbeddingUsage

    return EmbeddingResponse.model_validate(LITELLM_EMBEDDING)


@pytest.mark.parametrize("shape", ["dict", "object"])
def test_litellm_embeddings_with_zero_completion_tokens_are_an_embedding_category(shape):
    result = LITELLM_EMBEDDING if shape == "dict" else _litellm_embedding_object()
    tracker = CostTracker()

    @track_cost(tracker=tracker)
    def embed():
        return result

    with llmcost.budget("1", category="llm_embedding", tracker=tracker) as b:
        embed()
    (entry,) = tracker.entries()
    assert entry.category is CostCategory.LLM_EMBEDDING
    assert b.spent == entry.amount == Decimal("0.02")


def test_a_list_of_zero_completion_tokens_without_embedding_items_is_not_an_embedding():
    found = extract_usage({**LITELLM_EMBEDDING, "data": [{"object": "chat.completion"}]})
    assert found is not None and found.category is None


def test_anthropic_message_normalises_cache_tokens_into_input():
    client = anthropic.Anthropic(api_key="k", http_client=transport(ANTHROPIC_MESSAGE))
    message = client.messages.create(
        model="claude-3-5-sonnet-20241022", max_tokens=100, messages=[{"role": "user", "content": "x"}]
    )
    found = extract_usage(message)
    assert found.provider == "anthropic"
    assert found.usage == Usage(input_tokens=1300, output_tokens=50, cache_read_tokens=1000, cache_write_tokens=200)


def anthropic_sse():
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    **ANTHROPIC_MESSAGE,
                    "content": [],
                    "usage": {**ANTHROPIC_MESSAGE["usage"], "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        ),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": None, "stop_sequence": None},
                "usage": {"output_tokens": 30},
            },
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 50},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


def test_anthropic_stream_output_count_is_cumulative_not_added():
    client = anthropic.Anthropic(api_key="k", http_client=transport(anthropic_sse(), "text/event-stream"))
    tracker = CostTracker()

    @track_cost(tracker=tracker)
    def ask():
        return client.messages.create(
            model="claude-3-5-sonnet-20241022",
            max_tokens=100,
            stream=True,
            messages=[{"role": "user", "content": "x"}],
        )

    stream = ask()
    assert is_sdk_stream(stream) and isinstance(stream, anthropic.Stream)
    text = "".join(e.delta.text for e in stream if e.type == "content_block_delta")
    assert text == "Hello"
    (entry,) = tracker.entries()
    assert entry.usage == Usage(input_tokens=1300, output_tokens=50, cache_read_tokens=1000, cache_write_tokens=200)
    # 100 plain input at $3, 1000 cache reads at $0.30, 200 cache writes at $3.75, 50 output at $15 per MTok
    assert entry.amount == Decimal("0.0003") + Decimal("0.0003") + Decimal("0.00075") + Decimal("0.00075")


@pytest.mark.parametrize(
    ("shape", "model", "usage"),
    [
        pytest.param(CHAT, "gpt-4o-2024-08-06", Usage(2000, 300, 1024, 0, 100), id="openai-chat-dict"),
        pytest.param(ANTHROPIC_MESSAGE, "claude-3-5-sonnet-20241022", Usage(1300, 50, 1000, 200), id="anthropic"),
        pytest.param(
            {
                "modelVersion": "gemini-2.0-flash",
                "usageMetadata": {
                    "promptTokenCount": 900,
                    "candidatesTokenCount": 40,
                    "thoughtsTokenCount": 60,
                    "cachedContentTokenCount": 500,
                },
            },
            "gemini-2.0-flash",
            Usage(900, 100, 500, 0, 60),
            id="google-rest",
        ),
        pytest.param(
            {
                "model_version": "gemini-2.5-pro",
                "usage_metadata": {"prompt_token_count": 10, "candidates_token_count": 5, "thoughts_token_count": 7},
            },
            "gemini-2.5-pro",
            Usage(10, 12, 0, 0, 7),
            id="google-sdk-dict",
        ),
        pytest.param(
            {
                "id": "m",
                "object": "chat.completion",
                "model": "mistral-large-latest",
                "usage": {"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34},
            },
            "mistral-large-latest",
            Usage(30, 4),
            id="mistral",
        ),
        pytest.param(
            {
                "response_metadata": {"model_name": "gpt-4o"},
                "usage_metadata": {
                    "input_tokens": 350,
                    "output_tokens": 240,
                    "total_tokens": 590,
                    "input_token_details": {"cache_read": 100, "cache_creation": 200},
                    "output_token_details": {"reasoning": 200},
                },
            },
            "gpt-4o",
            Usage(350, 240, 100, 200, 200),
            id="langchain",
        ),
    ],
)
def test_dict_shapes(shape, model, usage):
    found = extract_usage(shape)
    assert found.model == model
    assert found.usage == usage


def test_litellm_provider_from_hidden_params():
    class ModelResponse:  # LiteLLM's shape: OpenAI-like usage, provider in _hidden_params
        def __init__(self):
            self.model = "claude-3-5-haiku-20241022"
            self.usage = {"prompt_tokens": 10, "completion_tokens": 2}
            self._hidden_params = {"custom_llm_provider": "anthropic"}

    found = extract_usage(ModelResponse())
    assert found.provider == "anthropic" and found.usage == Usage(10, 2)


def test_pydantic_models_outside_the_sdks_are_read_field_property_extra_and_private():
    import pydantic

    class Usage_(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")
        prompt_tokens: int

    class WithExtra(pydantic.BaseModel):  # usage only as an extra field
        model_config = pydantic.ConfigDict(extra="allow")
        model: str

    class WithProperty(pydantic.BaseModel):
        model: str

        @property
        def usage(self):
            return {"input_tokens": 7, "output_tokens": 1, "cache_read_input_tokens": 3}

    class LiteLLMLike(pydantic.BaseModel):  # provider in a private attribute, as LiteLLM keeps it
        model: str
        usage: Usage_
        _hidden_params: dict = pydantic.PrivateAttr(default_factory=lambda: {"custom_llm_provider": "anthropic"})

    found = extract_usage(WithExtra(model="gpt-4o", usage={"prompt_tokens": 5, "completion_tokens": 2}))
    assert (found.model, found.usage) == ("gpt-4o", Usage(5, 2))
    found = extract_usage(WithProperty(model="claude-3-5-haiku"))
    assert (found.model, found.provider, found.usage) == ("claude-3-5-haiku", "anthropic", Usage(10, 1, 3))
    usage = Usage_(prompt_tokens=9, completion_tokens=4, prompt_tokens_details={"cached_tokens": 2})
    found = extract_usage(LiteLLMLike(model="claude-3-5-haiku-20241022", usage=usage))
    assert (found.provider, found.usage) == ("anthropic", Usage(9, 4, 2))


def test_pydantic_details_with_a_property_named_like_a_count_are_read_through_it():
    import pydantic

    class Details(pydantic.BaseModel):
        cached: int

        @property
        def cached_tokens(self):  # a class attribute named like a key extraction reads: asked, not skipped
            return self.cached

    class ChatUsage(pydantic.BaseModel):
        prompt_tokens: int
        completion_tokens: int
        prompt_tokens_details: Details

    class ResponsesUsage(pydantic.BaseModel):
        input_tokens: int
        output_tokens: int
        input_tokens_details: Details

    class Response(pydantic.BaseModel):
        model: str
        usage: ChatUsage | ResponsesUsage

    chat = ChatUsage(prompt_tokens=10, completion_tokens=2, prompt_tokens_details=Details(cached=4))
    assert extract_usage(Response(model="gpt-4o", usage=chat)).usage == Usage(10, 2, 4)
    responses = ResponsesUsage(input_tokens=10, output_tokens=2, input_tokens_details=Details(cached=3))
    assert extract_usage(Response(model="gpt-4o", usage=responses)).usage == Usage(10, 2, 3)


def test_mappings_that_are_not_dicts_are_read_as_dicts():
    from types import MappingProxyType

    details = MappingProxyType({"cached_tokens": 1000, "cache_creation_input_tokens": 0})
    usage = MappingProxyType({"input_tokens": 2000, "output_tokens": 30, "input_tokens_details": details})
    found = extract_usage(MappingProxyType({"object": "response", "model": "gpt-4o", "usage": usage}))
    assert (found.model, found.usage) == ("gpt-4o", Usage(2000, 30, 1000))


def test_sdk_objects_with_extra_fields_are_read():
    # OpenAI-compatible servers add fields the SDK does not declare; the SDK keeps them as pydantic extras.
    body = {**CHAT, "usage": {**CHAT["usage"], "prompt_cache_hit_tokens": 5}, "x_vendor": {"a": 1}}
    response = openai.types.chat.ChatCompletion.model_validate(body)
    found = extract_usage(response)
    assert (found.model, found.provider) == ("gpt-4o-2024-08-06", "openai")
    assert found.usage == Usage(2000, 300, 1024, 0, 100)


class _RaisingUsage:
    """An object whose ``usage`` attribute fails when read, as a half-built SDK object can."""

    @property
    def usage(self):
        raise ValueError("not loaded")


class _OddObject:
    model = 5  # not a str: no model
    usage = property(lambda self: {"prompt_tokens": 7, "completion_tokens": "x"})


@pytest.mark.parametrize(
    ("garbage", "expected"),
    [
        (None, None),
        (3, None),
        ("text", None),
        (b"x", None),
        ([1, 2], None),
        ({"usage": None}, None),
        ({"usage": "many"}, None),
        (object(), None),
        (_RaisingUsage(), None),
        # Impossible or odd counts are read as 0 rather than failing the call; the rest of the usage is kept.
        ({"usage": {"prompt_tokens": -5}}, Usage()),
        ({"usage": {"prompt_tokens": 2**64, "completion_tokens": 5}}, Usage(0, 5)),  # no store keeps 2**64
        ({"usage": {"prompt_tokens": "12", "completion_tokens": 2.5}}, Usage()),
        (_OddObject(), Usage(7, 0)),
        ({"model": 7, "usage": {"prompt_tokens": 3, "completion_tokens": 1}}, Usage(3, 1)),
        ({"usage": {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": -1}}, Usage(10, 3)),
    ],
)
def test_garbage_never_raises(garbage, expected):
    found = extract_usage(garbage)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert found.usage == expected
        assert found.model is None


def test_accumulator_takes_the_last_openai_usage_and_ignores_noise():
    acc = StreamAccumulator()
    for chunk in [
        "text",
        None,
        {"model": "gpt-4o", "choices": []},
        {"model": "gpt-4o", "usage": {"prompt_tokens": 10, "completion_tokens": 3}},
    ]:
        acc.add(chunk)
    assert acc.result().usage == Usage(10, 3)
    assert StreamAccumulator().result() is None


def _text_completion(text, usage=None, response_id="cmpl-1"):
    """A legacy completions object: a chunk of its stream or a whole response, named alike."""
    choices = [] if text is None else [{"index": 0, "text": text, "finish_reason": None, "logprobs": None}]
    found = {"object": "text_completion", "created": 0, "model": "gpt-3.5-turbo-instruct", "choices": choices}
    if response_id is not None:
        found["id"] = response_id
    if usage is not None:
        found["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
    return found


@pytest.mark.parametrize("cumulative", [True, False], ids=["usage-on-every-chunk", "usage-last"])
def test_a_legacy_completions_stream_is_one_request_however_often_it_reports_usage(cumulative):
    # vLLM (continuous_usage_stats) reports the counts so far on every chunk of one response: the latest wins, as for
    # chat chunks, and the stream is one request.
    chunks = [
        _text_completion("a", (1000, 1) if cumulative else None),
        _text_completion("b", (1000, 2) if cumulative else None),
        _text_completion(None, (1000, 100)),
    ]
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    tracker = CostTracker()
    client = llmcost.instrument(
        openai.OpenAI(api_key="k", http_client=transport(body, "text/event-stream")), tracker=tracker
    )
    texts = [
        c.choices[0].text
        for c in client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi", stream=True)
        if c.choices
    ]
    assert texts == ["a", "b"]
    (entry,) = tracker.entries()
    assert entry.usage == Usage(1000, 100) and not entry.usage.units
    assert entry.amount == llmcost.cost_of("gpt-3.5-turbo-instruct", Usage(1000, 100))


def test_whole_legacy_completions_are_separate_requests():
    # Responses of their own (other ids, or none) are still added up, each a request.
    for ids in (["cmpl-1", "cmpl-2"], [None, None]):
        acc = StreamAccumulator()
        for response_id in ids:
            acc.add(_text_completion("a", (1000, 100), response_id))
        usage = acc.result().usage
        assert (usage.input_tokens, usage.output_tokens, usage.units["requests"]) == (2000, 200, 2)


def _stream_ask(client, tracker, **options):
    @track_cost(tracker=tracker, **options)
    def ask():
        return client.messages.stream(
            model="claude-3-5-sonnet-20241022", max_tokens=100, messages=[{"role": "user", "content": "x"}]
        )

    return ask


STREAMED = Usage(input_tokens=1300, output_tokens=50, cache_read_tokens=1000, cache_write_tokens=200)


def test_anthropic_stream_manager_is_tracked_when_its_stream_ends():
    client = anthropic.Anthropic(api_key="k", http_client=transport(anthropic_sse(), "text/event-stream"))
    tracker = CostTracker()
    with _stream_ask(client, tracker)() as stream:
        assert isinstance(stream, anthropic.lib.streaming.MessageStream)
        assert stream.get_final_text() == "Hello"
    (entry,) = tracker.entries()
    assert (entry.model, entry.provider, entry.usage) == ("claude-3-5-sonnet-20241022", "anthropic", STREAMED)
    assert entry.amount == Decimal("0.0021")


def test_anthropic_stream_manager_left_early_records_what_it_saw():
    client = anthropic.Anthropic(api_key="k", http_client=transport(anthropic_sse(), "text/event-stream"))
    tracker = CostTracker()
    with _stream_ask(client, tracker)() as stream:
        next(iter(stream))  # message_start only
    (entry,) = tracker.entries()
    assert entry.usage == Usage(input_tokens=1300, output_tokens=1, cache_read_tokens=1000, cache_write_tokens=200)


def test_async_anthropic_stream_manager_is_tracked():
    import asyncio

    body = anthropic_sse()

    async def handler(request):
        return httpx2.Response(200, text=body, headers={"content-type": "text/event-stream"})

    client = anthropic.AsyncAnthropic(
        api_key="k", http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    )
    tracker = CostTracker()

    @track_cost(tracker=tracker)
    def ask():
        return client.messages.stream(
            model="claude-3-5-sonnet-20241022", max_tokens=100, messages=[{"role": "user", "content": "x"}]
        )

    async def main():
        async with ask() as stream:
            return await stream.get_final_text()

    assert asyncio.run(main()) == "Hello"
    (entry,) = tracker.entries()
    assert entry.usage == STREAMED


def test_a_stream_manager_never_entered_releases_its_reservation():
    import gc

    client = anthropic.Anthropic(api_key="k", http_client=transport(anthropic_sse(), "text/event-stream"))
    tracker = CostTracker()
    ask = _stream_ask(client, tracker, estimate=Decimal("0.01"))
    with llmcost.budget("1", tracker=tracker) as b:
        manager = ask()
        assert b.reserved == Decimal("0.01")
        del manager
        gc.collect()
        assert b.reserved == 0
    assert tracker.entries() == []
