"""The readers compiled per SDK response type (``_extract._compiled_reader``) give exactly what the general SDK reader
gives, on every variation of the OpenAI chat, OpenAI Responses and Anthropic message shapes; the plain case takes
them, and anything else falls back to the general reader."""

from __future__ import annotations

import itertools
from typing import Any, Optional

import anthropic.types as anthropic_types
import pydantic
import pytest
from anthropic.types.beta import BetaMessage
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.completion_usage import CompletionTokensDetails, CompletionUsage, PromptTokensDetails
from openai.types.responses import Response
from openai.types.responses.response_usage import ResponseUsage

from llmcost._extract import (
    _anthropic_units_kept,
    _compiled_reader,
    _general_sdk_reader,
    _NoCompiledReader,
    _part_class,
    _sdk_reader,
    extract_usage,
)


def _chat(usage: dict[str, Any] | None, **fields: Any) -> ChatCompletion:
    body = {"id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4o", "choices": [], "usage": usage}
    return ChatCompletion.construct(**{**body, **fields})  # as the SDK builds its responses


def _response(usage: dict[str, Any] | None, **fields: Any) -> Response:
    body = {
        "id": "r",
        "object": "response",
        "created_at": 0,
        "model": "gpt-4o",
        "output": [],
        "parallel_tool_calls": False,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }
    return Response.construct(**{**body, **fields})


def _message(usage: dict[str, Any], cls: Any = anthropic_types.Message, **fields: Any) -> Any:
    body = {
        "id": "m",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-sonnet-20241022",
        "content": [],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    return cls.construct(**{**body, **fields})


def _same(result: Any) -> Any:
    """What ``extract_usage`` reads from ``result``, checked equal to the general reader's reading."""
    general = _general_sdk_reader(type(result))(result)
    found = _sdk_reader(type(result))(result)
    assert found == general, (result, found, general)
    assert type(found) is type(general)
    assert extract_usage(result) == general
    return found


_GENERAL = object()


def _plain(result: Any) -> bool:
    """Whether the reader compiled for ``result``'s type reads it itself (rather than handing it to the general
    reader)."""
    compiled = _compiled_reader(type(result), lambda result: _GENERAL)
    return compiled is not None and compiled(result) is not _GENERAL


def _chat_cases() -> list[ChatCompletion]:
    cases = []
    details = [None, {}, {"cached_tokens": 0}, {"cached_tokens": 1024}, {"cached_tokens": None},
               {"cache_write_tokens": 100}, {"cached_tokens": 500, "cache_write_tokens": 600}, {"audio_tokens": 10},
               {"audio_tokens": 0, "cached_tokens": 5}, {"cached_tokens": 5000}, {"cache_creation_tokens": 7},
               {"cached_tokens": 3, "cache_creation_token_details": {"ephemeral_1h_input_tokens": 3}}]  # fmt: skip
    out_details = [None, {}, {"reasoning_tokens": 100}, {"reasoning_tokens": 0}, {"reasoning_tokens": 400},
                   {"audio_tokens": 5}, {"image_tokens": 3},
                   {"reasoning_tokens": 2, "accepted_prediction_tokens": 1}]  # fmt: skip
    extras = [{}, {"server_tool_use": {"web_search_requests": 2}}, {"server_tool_use": {}}, {"service_tier": "flex"}]
    for d, o, e in itertools.product(details, out_details, extras):
        usage = {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500, **e}
        if d is not None:
            usage["prompt_tokens_details"] = d
        if o is not None:
            usage["completion_tokens_details"] = o
        cases.append(_chat(usage))
    for tier, model in itertools.product([None, "default", "flex", "priority", "scale", "auto"], ["gpt-4o", ""]):
        cases.append(_chat({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}, service_tier=tier,
                           model=model))  # fmt: skip
    cases.append(_chat({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}))
    cases.append(_chat(None))
    cases.append(_chat({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}, extra_field=1))
    return cases


def _constructed_chat_cases() -> list[Any]:
    """Unvalidated objects (``model_construct``): odd counts, missing fields, details of other types."""
    usages = []
    usage = CompletionUsage.model_construct
    for value in [-1, True, 1.0, 1.5, "7", 2**63, 2**63 - 1, None]:
        usages.append(usage(prompt_tokens=value, completion_tokens=1, total_tokens=1))
        usages.append(usage(prompt_tokens=10, completion_tokens=value, total_tokens=1))
        for key in ["cached_tokens", "cache_write_tokens"]:
            counts = {"cached_tokens": None, "cache_write_tokens": None, "audio_tokens": None, key: value}
            details = PromptTokensDetails.model_construct(**counts)
            usages.append(usage(prompt_tokens=10, completion_tokens=1, prompt_tokens_details=details))
        out = CompletionTokensDetails.model_construct(reasoning_tokens=value, audio_tokens=None)
        usages.append(usage(prompt_tokens=10, completion_tokens=5, completion_tokens_details=out))
    usages.append(usage(prompt_tokens=10))  # fields left out of __dict__
    usages.append(usage(prompt_tokens=10, completion_tokens=1, prompt_tokens_details={"cached_tokens": 4}))
    usages.append(usage(prompt_tokens=10, completion_tokens=1, completion_tokens_details=[1]))
    built = [
        ChatCompletion.model_construct(id="c", object="chat.completion", model="gpt-4o", usage=usage)
        for usage in usages
    ]
    built.append(ChatCompletion.model_construct(id="c", object="chat.completion", usage=usages[0]))  # no model
    built.append(ChatCompletion.model_construct(id="c", model=7, usage=usages[-4], service_tier=3))
    return built


def _responses_cases() -> list[Any]:
    cases = []
    in_details = [None, {"cached_tokens": 0}, {"cached_tokens": 1024},
                  {"cached_tokens": 1024, "cache_write_tokens": 50}, {"cached_tokens": 2000},
                  {"cached_tokens": 1, "audio_tokens": 3}]  # fmt: skip
    out_details = [None, {"reasoning_tokens": 0}, {"reasoning_tokens": 100}, {"reasoning_tokens": 400}]
    for d, o, tier in itertools.product(in_details, out_details, [None, "default", "flex", "priority"]):
        usage: dict[str, Any] = {"input_tokens": 1200, "output_tokens": 300, "total_tokens": 1500}
        usage["input_tokens_details"] = d if d is not None else {"cached_tokens": 0}
        usage["output_tokens_details"] = o if o is not None else {"reasoning_tokens": 0}
        cases.append(_response(usage, service_tier=tier))
    plain = {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 1,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 6}  # fmt: skip
    cases.append(_response(plain, object="list"))
    cases.append(_response({**plain, "service_tier": "flex"}))
    cases.append(_response(None))
    for value in [-1, True, 1.5, 2**63, None]:
        usage = ResponseUsage.model_construct(input_tokens=value, output_tokens=1, total_tokens=1)
        cases.append(Response.model_construct(id="r", object="response", model="gpt-4o", usage=usage))
        usage = ResponseUsage.model_construct(input_tokens=4, output_tokens=value, input_tokens_details=None,
                                              output_tokens_details=None)  # fmt: skip
        cases.append(Response.model_construct(id="r", object="response", model="gpt-4o", usage=usage))
    usage = ResponseUsage.model_construct(input_tokens=4, output_tokens=1)
    cases.append(Response.model_construct(id="r", object="response", model="gpt-4o", usage=usage))
    return cases


def _anthropic_cases() -> list[Any]:
    cases = []
    for cls, write, read, split, tools, thinking, tier in itertools.product(
        [anthropic_types.Message, BetaMessage],
        [None, 0, 200],
        [None, 0, 1000],
        [None, {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
         {"ephemeral_5m_input_tokens": 150, "ephemeral_1h_input_tokens": 50}],
        [None, {"web_search_requests": 0}, {"web_search_requests": 2}],
        [None, {"thinking_tokens": 40}, {"thinking_tokens": 400}],
        [None, "standard", "batch", "priority"],
    ):  # fmt: skip
        usage: dict[str, Any] = {"input_tokens": 100, "output_tokens": 300}
        for key, value in [("cache_creation_input_tokens", write), ("cache_read_input_tokens", read),
                           ("cache_creation", split), ("server_tool_use", tools), ("output_tokens_details", thinking),
                           ("service_tier", tier)]:  # fmt: skip
            if value is not None:
                usage[key] = value
        cases.append(_message(usage, cls))
    cases.append(_message({"input_tokens": 1, "output_tokens": 1, "cache_read_input_tokens": 0, "extra": 1}))
    for value in [-1, True, 1.5, 2**63, None]:
        for key in ["input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"]:
            counts = {"input_tokens": 4, "output_tokens": 1, "cache_read_input_tokens": 0, key: value}
            usage = anthropic_types.Usage.model_construct(**counts)
            cases.append(anthropic_types.Message.model_construct(id="m", type="message", model="claude", usage=usage))
        # Odd unit counts (the compiled reader hands them to the general one), beside a plain one
        for part, key in [
            ("cache_creation", "ephemeral_5m_input_tokens"),
            ("cache_creation", "ephemeral_1h_input_tokens"),
            ("server_tool_use", "web_search_requests"),
        ]:
            split = {"ephemeral_5m_input_tokens": 7, "ephemeral_1h_input_tokens": 9}
            parts = {
                "cache_creation": anthropic_types.CacheCreation.model_construct(**split),
                "server_tool_use": anthropic_types.ServerToolUsage.model_construct(web_search_requests=2),
            }
            parts[part] = type(parts[part]).model_construct(**{**parts[part].__dict__, key: value})
            usage = anthropic_types.Usage.model_construct(
                input_tokens=4, output_tokens=1, cache_read_input_tokens=0, cache_creation_input_tokens=10, **parts
            )
            cases.append(anthropic_types.Message.model_construct(id="m", type="message", model="claude", usage=usage))
    return cases


@pytest.mark.parametrize(
    "cases", [_chat_cases, _constructed_chat_cases, _responses_cases, _anthropic_cases], ids=lambda f: f.__name__
)
def test_the_compiled_readers_read_every_variation_as_the_general_reader(cases):
    built = cases()
    taken = [_plain(result) for result in built]
    for result in built:
        _same(result)
    assert any(taken) and not all(taken)  # both ways were exercised


@pytest.mark.parametrize(
    "result",
    [
        _chat({"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
               "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 100}}, service_tier="default"),
        _chat({"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}),
        _response({"input_tokens": 1200, "output_tokens": 300, "total_tokens": 1500,
                   "input_tokens_details": {"cached_tokens": 1024}, "output_tokens_details": {"reasoning_tokens": 9}},
                  service_tier="flex"),
        _message({"input_tokens": 176, "output_tokens": 300, "cache_read_input_tokens": 1024,
                  "cache_creation_input_tokens": 0, "service_tier": "standard",
                  "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}}),
        _message({"input_tokens": 1, "output_tokens": 2, "cache_read_input_tokens": 0}, BetaMessage),
    ],
    ids=["chat", "chat without details", "responses", "anthropic", "anthropic beta"],
)  # fmt: skip
def test_plain_responses_take_the_compiled_reader(result):
    assert _plain(result)
    assert _same(result) is not None


def test_the_usual_shapes_are_read_as_before():
    chat = _same(_chat({"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
                        "prompt_tokens_details": {"cached_tokens": 1024}}, service_tier="priority"))  # fmt: skip
    assert (chat.model, chat.provider, chat.service_tier) == ("gpt-4o", "openai", "priority")
    assert (chat.usage.input_tokens, chat.usage.cache_read_tokens, chat.usage.output_tokens) == (1200, 1024, 300)
    message = _same(_message({"input_tokens": 100, "output_tokens": 30, "cache_read_input_tokens": 1000,
                              "cache_creation_input_tokens": 200, "service_tier": "batch"}))  # fmt: skip
    assert (message.provider, message.service_tier) == ("anthropic", "batch")
    assert (message.usage.input_tokens, message.usage.cache_read_tokens, message.usage.cache_write_tokens) == (
        1300,
        1000,
        200,
    )


def test_embeddings_and_unknown_usage_types_keep_the_general_reader():
    usage = {"prompt_tokens": 8, "total_tokens": 8}
    embedding = CreateEmbeddingResponse.construct(object="list", model="text-embedding-3-small", data=[], usage=usage)
    assert not _plain(embedding)
    assert _same(embedding).category == "llm_embedding"


class _Part(pydantic.BaseModel):
    n: int = 0


class _Other(pydantic.BaseModel):
    m: int = 0


class _Holder(pydantic.BaseModel):
    one: _Part | None = None
    plain: _Part = _Part()
    optional: Optional[_Part] = None  # noqa: UP045 - the typing spelling, as the SDKs write it
    many: list[_Part] = []
    either: _Part | _Other | None = None
    mapping: dict[str, int] = {}
    number: int = 0


def test_a_part_is_compiled_only_when_its_field_holds_one_pydantic_class():
    fields = _Holder.__pydantic_fields__
    assert _part_class(fields, "one") is _Part
    assert _part_class(fields, "plain") is _Part
    assert _part_class(fields, "optional") is _Part
    assert _part_class(fields, "absent") is None
    for name in ["many", "either", "mapping", "number"]:
        with pytest.raises(_NoCompiledReader):
            _part_class(fields, name)


def test_anthropic_units_are_read_by_the_compiled_reader_as_the_general_reader_reads_them():
    # A 1-hour cache write and web searches: read by the compiled reader itself (no clamp needed once the cache
    # write is at least its split by TTL), the units in the order the general reader keeps them.
    assert _anthropic_units_kept()
    usage = {"input_tokens": 176, "output_tokens": 300, "cache_read_input_tokens": 1024,
             "cache_creation_input_tokens": 500, "server_tool_use": {"web_search_requests": 2},
             "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 400}}  # fmt: skip
    for cls in (anthropic_types.Message, BetaMessage):
        result = _message(usage, cls)
        assert _plain(result)
        found = _same(result).usage
        assert (found.input_tokens, found.cache_read_tokens, found.cache_write_tokens) == (1700, 1024, 500)
        assert list(found.units.items()) == [
            ("cache_write_5m_tokens", 100),
            ("cache_write_1h_tokens", 400),
            ("web_searches", 2),
        ]
    # A split over the cache write reported: the cache write is the split, as the general reader makes it
    over = _same(_message({**usage, "cache_creation_input_tokens": 0}))
    assert (over.usage.input_tokens, over.usage.cache_write_tokens) == (1700, 500)
