"""The readers compiled per SDK response type (``_extract._compiled_reader``, ``_extract._google_reader``) give exactly
what the general readers give, on every variation of the OpenAI chat, OpenAI Responses, Anthropic message and
google-genai response shapes; the plain case takes them, and anything else falls back to the general reader."""

from __future__ import annotations

import itertools
from typing import Any, Optional
from unittest import mock

import anthropic.types as anthropic_types
import pydantic
import pytest
from anthropic.types.beta import BetaMessage
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.completion_usage import CompletionTokensDetails, CompletionUsage, PromptTokensDetails
from openai.types.responses import Response
from openai.types.responses.response_usage import ResponseUsage

import llmcost
from llmcost import _extract
from llmcost._extract import (
    _anthropic_units_kept,
    _compiled_reader,
    _general,
    _general_sdk_reader,
    _google_reader,
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
    # Fast mode (``usage.speed``), with every service tier; and beside an extra field (the general reader).
    for cls, speed, tier, extra in itertools.product(
        [anthropic_types.Message, BetaMessage], [None, "standard", "fast", "FAST", "slow"],
        [None, "standard", "batch", "priority"], [{}, {"extra": 1}],
    ):  # fmt: skip
        usage = {"input_tokens": 100, "output_tokens": 300, "cache_read_input_tokens": 10, **extra}
        for key, value in [("speed", speed), ("service_tier", tier)]:
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
    # Extra fields on a part, on the usage and on the message (the message reader ignores a part's own: every
    # count it reads is declared), and counts a thinking part makes impossible (clamped by the general reader).
    split = {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 500}
    tools = {"web_search_requests": 1, "web_fetch_requests": 0}
    plain = {"input_tokens": 176, "output_tokens": 300, "cache_read_input_tokens": 1024,
             "cache_creation_input_tokens": 500, "service_tier": "standard"}  # fmt: skip
    for usage, fields in [
        ({**plain, "cache_creation": {**split, "ephemeral_1h_input_tokens_x": 9}, "server_tool_use": tools}, {}),
        ({**plain, "cache_creation": split, "server_tool_use": {**tools, "web_fetch_requests": 4, "other": 1}}, {}),
        ({**plain, "cache_creation": split, "server_tool_use": tools, "extra": 3}, {}),
        ({**plain, "cache_creation": split, "server_tool_use": tools}, {"object": "list"}),
        ({**plain, "cache_creation": split, "server_tool_use": tools}, {"service_tier": "batch"}),
        ({**plain, "cache_creation": split, "output_tokens_details": {"thinking_tokens": 301}}, {}),
        ({**plain, "cache_creation": {**split, "ephemeral_5m_input_tokens": 600}}, {}),  # a split over the write
    ]:
        cases.extend(_message(usage, cls, **fields) for cls in (anthropic_types.Message, BetaMessage))
        validated = {"id": "m", "type": "message", "role": "assistant", "model": "claude-sonnet-4-0", "content": []}
        cases.append(anthropic_types.Message.model_validate({**validated, **fields, "usage": usage}))
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
    fast = _same(_message({"input_tokens": 100, "output_tokens": 30, "speed": "fast", "service_tier": "standard"}))
    assert (fast.provider, fast.service_tier) == ("anthropic", "fast")
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


# -- google-genai (``_google_reader``) --------------------------------------------------------------------------------
def _gemini(meta: dict[str, Any] | None, model: Any = "gemini-2.5-flash") -> Any:
    """A google-genai response as the SDK validates it from the API's JSON (camel case)."""
    from google.genai import types

    return types.GenerateContentResponse.model_validate({"modelVersion": model, "usageMetadata": meta})


def _gemini_built(model: Any = "gemini-2.5-flash", **counts: Any) -> Any:
    """An unvalidated google-genai response (``model_construct``): counts and details of any type."""
    from google.genai import types

    meta = types.GenerateContentResponseUsageMetadata.model_construct(**counts)
    return types.GenerateContentResponse.model_construct(model_version=model, usage_metadata=meta)


def _same_gemini(result: Any) -> Any:
    """What ``extract_usage`` reads from a google-genai response, checked equal to what ``_general`` reads (the
    units in the same order)."""
    found = _google_reader(type(result))(result)
    general = _general(result)
    assert found == general, (result, found, general)
    assert found is None or list(found.usage.units.items()) == list(general.usage.units.items())
    assert extract_usage(result) == general
    return found


def _gemini_plain(result: Any) -> bool:
    """Whether the google-genai reader reads ``result`` itself (rather than handing it to ``_general``)."""
    reader = _google_reader(type(result))
    assert reader is not None
    with mock.patch("llmcost._extract._general", return_value=_GENERAL):
        return reader(result) is not _GENERAL


def _modality(modality: Any, count: Any) -> Any:
    from google.genai import types

    return types.ModalityTokenCount.model_construct(modality=modality, token_count=count)


def _gemini_cases() -> list[Any]:
    cases = []
    text, audio, image = ({"modality": m, "tokenCount": 400} for m in ("TEXT", "AUDIO", "IMAGE"))
    details = [None, [], [text], [text, audio], [audio, {"modality": "AUDIO", "tokenCount": 100}],
               [{"modality": "DOCUMENT", "tokenCount": 30}, {"modality": "VIDEO", "tokenCount": 50}],
               [{"modality": "AUDIO"}], [{"tokenCount": 5}], [{"modality": "AUDIO", "tokenCount": 0}]]  # fmt: skip
    for prompt_details, cache_details, out_details in itertools.product(details, details[:4], [None, [text], [image]]):
        meta: dict[str, Any] = {"promptTokenCount": 2000, "candidatesTokenCount": 300, "cachedContentTokenCount": 500}
        for key, value in [("promptTokensDetails", prompt_details), ("cacheTokensDetails", cache_details),
                           ("candidatesTokensDetails", out_details)]:  # fmt: skip
            if value is not None:
                meta[key] = value
        cases.append(_gemini(meta))
    for thoughts, cached, tool, tier in itertools.product(
        [None, 0, 40], [None, 0, 500, 2100], [None, 0, 7], [None, "ON_DEMAND", "ON_DEMAND_FLEX", "ON_DEMAND_PRIORITY"]
    ):
        meta = {"promptTokenCount": 2000, "candidatesTokenCount": 300, "thoughtsTokenCount": thoughts,
                "cachedContentTokenCount": cached, "toolUsePromptTokenCount": tool, "trafficType": tier}  # fmt: skip
        cases.append(_gemini({k: v for k, v in meta.items() if v is not None}))
    # Units past their wholes (cut to them, as ``_clamped_units`` cuts them), and within them
    for prompt_audio, cached_audio, out_image in itertools.product([None, 100, 1500, 2500], [None, 80, 300, 600],
                                                                    [None, 200, 340, 400]):  # fmt: skip
        meta = {"promptTokenCount": 2000, "cachedContentTokenCount": 500, "candidatesTokenCount": 300,
                "thoughtsTokenCount": 40}  # fmt: skip
        for key, modality, count in [("promptTokensDetails", "AUDIO", prompt_audio),
                                     ("cacheTokensDetails", "AUDIO", cached_audio),
                                     ("candidatesTokensDetails", "IMAGE", out_image)]:  # fmt: skip
            if count is not None:
                meta[key] = [{"modality": modality, "tokenCount": count}, {"modality": "TEXT", "tokenCount": 5}]
        cases.append(_gemini(meta))
    cases += [_gemini(None), _gemini({"candidatesTokenCount": 5}), _gemini({"promptTokenCount": 0})]
    cases += [_gemini({"promptTokenCount": 10}, model) for model in [None, ""]]
    # Odd values, as only unvalidated objects hold them (each handed to ``_general``, or read as it reads them)
    for value in [-1, True, False, 1.0, 1.5, "7", 2**63, 2**63 - 1, None, [3]]:
        for key in ["prompt_token_count", "candidates_token_count", "thoughts_token_count",
                    "cached_content_token_count", "tool_use_prompt_token_count"]:  # fmt: skip
            cases.append(_gemini_built(**{"prompt_token_count": 100, "candidates_token_count": 5, key: value}))
        cases.append(_gemini_built(prompt_token_count=100, prompt_tokens_details=[_modality("AUDIO", value)]))
        cases.append(_gemini_built(prompt_token_count=100, cache_tokens_details=[_modality(value, 10)]))
    cases.append(_gemini_built(prompt_token_count=2**62, tool_use_prompt_token_count=2**62))  # a sum past 2**63 - 1
    cases.append(_gemini_built(prompt_token_count=10, cached_content_token_count=20))  # a cache read to clamp
    cases.append(_gemini_built(prompt_token_count=10, prompt_tokens_details=[_modality("audio", 20)]))
    cases.append(_gemini_built(prompt_token_count=10, prompt_tokens_details=[{"modality": "AUDIO", "tokenCount": 4}]))
    cases.append(_gemini_built(prompt_token_count=10, prompt_tokens_details=(_modality("AUDIO", 4),)))
    cases.append(_gemini_built(prompt_token_count=10, prompt_tokens_details="AUDIO"))
    cases.append(_gemini_built(prompt_token_count=10, traffic_type="on_demand_flex"))
    cases.append(_gemini_built(model=7, prompt_token_count=10))
    # Extra fields (each read by ``_general``: a count in camel case, a model in LangChain's place)
    extra = _gemini_built(prompt_token_count=10, prompt_tokens_details=[_modality("AUDIO", None)])
    object.__setattr__(extra.usage_metadata.prompt_tokens_details[0], "__pydantic_extra__", {"tokenCount": 9})
    cases.append(extra)
    extra = _gemini_built(candidates_token_count=10)
    object.__setattr__(extra.usage_metadata, "__pydantic_extra__", {"promptTokenCount": 50})
    cases.append(extra)
    extra = _gemini_built(prompt_token_count=10, candidates_token_count=3)
    object.__setattr__(extra.usage_metadata, "__pydantic_extra__", {"thoughtsTokenCount": 5})
    cases.append(extra)
    extra = _gemini_built(prompt_token_count=10)
    object.__setattr__(extra, "__pydantic_extra__", {"response_metadata": {"model_name": "gemini-2.0-flash"}})
    cases.append(extra)
    missing = _gemini_built(prompt_token_count=10, candidates_token_count=3)
    del missing.usage_metadata.__dict__["thoughts_token_count"]  # a field left out of __dict__
    cases.append(missing)
    return cases


def test_the_google_genai_reader_reads_every_variation_as_the_general_reader():
    built = _gemini_cases()
    taken = [_gemini_plain(result) for result in built]
    for result in built:
        _same_gemini(result)
    assert any(taken) and not all(taken)  # both ways were exercised


def test_plain_google_genai_responses_take_their_reader_and_are_read_as_their_json():
    body = {
        "modelVersion": "gemini-2.5-flash",
        "usageMetadata": {
            "promptTokenCount": 2000,
            "candidatesTokenCount": 300,
            "thoughtsTokenCount": 40,
            "cachedContentTokenCount": 500,
            "toolUsePromptTokenCount": 7,
            "trafficType": "ON_DEMAND_FLEX",
            "promptTokensDetails": [
                {"modality": "TEXT", "tokenCount": 1200},
                {"modality": "AUDIO", "tokenCount": 500},
                {"modality": "DOCUMENT", "tokenCount": 200},
                {"modality": "IMAGE", "tokenCount": 100},
            ],
            "cacheTokensDetails": [{"modality": "AUDIO", "tokenCount": 200}, {"modality": "TEXT", "tokenCount": 300}],
            "candidatesTokensDetails": [
                {"modality": "IMAGE", "tokenCount": 290},
                {"modality": "TEXT", "tokenCount": 10},
            ],
        },
    }
    result = _gemini(body["usageMetadata"])
    assert _gemini_plain(result)
    found = _same_gemini(result)
    assert found == extract_usage(body)
    assert (found.model, found.provider, found.category, found.service_tier) == ("gemini-2.5-flash", "google", None,
                                                                                  "flex")  # fmt: skip
    usage = found.usage
    # input: the prompt and the tool-use prompt; output: candidates and thoughts (reasoning)
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        2007,
        340,
        500,
        0,
    )
    assert usage.reasoning_tokens == 40
    # documents are billed as images, and add up with them
    assert list(usage.units.items()) == [
        ("input_audio_tokens", 500),
        ("input_image_tokens", 300),
        ("cache_audio_read_tokens", 200),
        ("output_image_tokens", 290),
    ]
    text = {"modality": "TEXT", "tokenCount": 1200}
    plain = _gemini({"promptTokenCount": 1200, "cachedContentTokenCount": 1024, "candidatesTokenCount": 300,
                     "promptTokensDetails": [text], "candidatesTokensDetails": [text]})  # fmt: skip
    assert _gemini_plain(plain)
    plain = _same_gemini(plain)
    assert (plain.usage.input_tokens, plain.usage.output_tokens, plain.usage.cache_read_tokens) == (1200, 300, 1024)
    assert not plain.usage.units


def test_google_genai_units_past_their_wholes_are_cut_to_them():
    # 2500 audio tokens of a 2000-token prompt; 600 cached audio tokens of a 500-token cache read (and of the
    # prompt's audio, once cut); 400 image tokens of 340 output tokens (candidates and thoughts), cut to 300: the
    # output less its 40 reasoning tokens (images and reasoning together past the output could not be priced)
    meta = {"promptTokenCount": 2000, "cachedContentTokenCount": 500, "candidatesTokenCount": 300,
            "thoughtsTokenCount": 40, "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 2500}],
            "cacheTokensDetails": [{"modality": "AUDIO", "tokenCount": 600}],
            "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 400}]}  # fmt: skip
    found = _same_gemini(_gemini(meta))
    assert found == extract_usage({"modelVersion": "gemini-2.5-flash", "usageMetadata": meta})
    assert list(found.usage.units.items()) == [
        ("input_audio_tokens", 2000),
        ("cache_audio_read_tokens", 500),
        ("output_image_tokens", 300),
    ]
    # Within them: read as reported (the images cut as above)
    meta = {**meta, "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 300}]}
    found = _same_gemini(_gemini(meta))
    assert dict(found.usage.units) == {"input_audio_tokens": 300, "cache_audio_read_tokens": 300,
                                       "output_image_tokens": 300}  # fmt: skip


def test_google_genai_details_that_are_not_a_list_are_read_once_by_the_general_reader():
    # An iterator of details can be read once: the reader must not start on it and then hand it to ``_general``.
    def result() -> Any:
        return _gemini_built(prompt_token_count=10, prompt_tokens_details=iter([_modality("AUDIO", 4), _modality(
            "AUDIO", 2.0)]))  # fmt: skip

    assert not _gemini_plain(result())
    assert dict(extract_usage(result()).usage.units) == {"input_audio_tokens": 6}


def test_the_live_apis_output_is_read_from_its_response_count_and_details():
    # The Live API's ``UsageMetadata`` names the output ``response_token_count`` (and its modalities
    # ``response_tokens_details``) where GenerateContentResponse says ``candidates_*``: it was read as no output.
    from google.genai import types

    body = {"usageMetadata": {"promptTokenCount": 100, "responseTokenCount": 40, "thoughtsTokenCount": 5,
                              "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 30},
                                                        {"modality": "TEXT", "tokenCount": 10}]}}  # fmt: skip
    live = types.LiveServerMessage.model_validate(body)
    assert _gemini_plain(live)  # the compiled reader's own path, checked against ``_general``
    for shape in (live, body, live.model_dump(exclude_none=True)):
        found = extract_usage(shape)
        assert (found.usage.input_tokens, found.usage.output_tokens, found.usage.reasoning_tokens) == (100, 45, 5)
        assert dict(found.usage.units) == {"output_audio_tokens": 30}
    tracker = llmcost.CostTracker()
    llmcost.track_cost(tracker=tracker, model="gemini-2.0-flash")(lambda: live)()
    [entry] = tracker.entries()
    assert entry.usage.output_tokens == 45
    assert entry.amount > llmcost.cost_of("gemini-2.0-flash", 100, 0)  # the output is billed


def test_the_google_genai_reader_reads_the_fields_declared_and_needs_a_prompt_count():
    from google.genai import types

    assert _google_reader(types.GenerateContentResponse) is not None
    # The Live API's messages declare fewer counts (and no model): read as ``_general`` reads them
    live = types.LiveServerMessage.model_validate(
        {"usageMetadata": {"promptTokenCount": 100, "responseTokenCount": 20, "thoughtsTokenCount": 5,
                           "cachedContentTokenCount": 30, "promptTokensDetails": [{"modality": "AUDIO",
                                                                                   "tokenCount": 60}]}}
    )  # fmt: skip
    assert _gemini_plain(live)
    found = _same_gemini(live)
    assert (found.model, found.provider, found.usage.input_tokens, found.usage.cache_read_tokens) == (
        None,
        "google",
        100,
        30,
    )
    assert (found.usage.reasoning_tokens, dict(found.usage.units)) == (5, {"input_audio_tokens": 60})

    class Meta(pydantic.BaseModel):  # an SDK version without thoughts, details or tiers
        prompt_token_count: Optional[int] = None  # noqa: UP045
        candidates_token_count: Optional[int] = None  # noqa: UP045

    class Response(pydantic.BaseModel):
        usage_metadata: Optional[Meta] = None  # noqa: UP045
        model_version: Optional[str] = None  # noqa: UP045

    result = Response(usage_metadata=Meta(prompt_token_count=10, candidates_token_count=2), model_version="gemini")
    assert _gemini_plain(result)
    found = _same_gemini(result)
    assert (found.model, found.provider, found.usage.input_tokens, found.usage.output_tokens) == ("gemini", "google",
                                                                                                  10, 2)  # fmt: skip

    class Counts(pydantic.BaseModel):  # no prompt count: not Gemini's usage
        candidates_token_count: Optional[int] = None  # noqa: UP045

    class Other(pydantic.BaseModel):
        usage_metadata: Optional[Counts] = None  # noqa: UP045

    assert _google_reader(Other) is None


def test_anthropic_units_are_found_by_their_counts_and_never_mixed_up():
    # Each distinct (5-minute write, 1-hour write, web searches) counts has one Units, found again by value: equal
    # counts give that very object, any other counts (the same numbers in other places too) their own.
    _extract._anthropic_units.clear()
    seen = {}
    for w5, w1, searches in itertools.product([0, 1, 500, 2**63 - 1], [0, 1, 500], [0, 1, 2]):
        usage = {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 0,
                 "cache_creation_input_tokens": 0, "server_tool_use": {"web_search_requests": searches},
                 "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1}}  # fmt: skip
        first, again = _same(_message(usage)).usage, _same(_message(usage)).usage
        expected = {"cache_write_5m_tokens": w5, "cache_write_1h_tokens": w1, "web_searches": searches}
        assert list(first.units.items()) == [(k, v) for k, v in expected.items() if v]
        assert first.cache_write_tokens == w5 + w1 and first.input_tokens == 10 + w5 + w1
        assert again.units is first.units
        seen[(w5, w1, searches)] = first.units
    assert seen[(0, 0, 0)] is llmcost.Usage().units  # no units: NO_UNITS, never a found one
    assert len({id(units) for key, units in seen.items() if any(key)}) == len(seen) - 1


def test_the_units_found_by_value_are_bounded():
    _extract._anthropic_units.clear()
    kept = _extract._ANTHROPIC_UNITS_KEPT
    for w1 in range(1, kept + 50):
        usage = {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 0,
                 "cache_creation_input_tokens": w1, "server_tool_use": None,
                 "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": w1}}  # fmt: skip
        assert dict(extract_usage(_message(usage)).usage.units) == {"cache_write_1h_tokens": w1}
        assert len(_extract._anthropic_units) <= kept


def test_current_anthropic_messages_take_the_message_reader():
    for cls in (anthropic_types.Message, BetaMessage):
        assert _sdk_reader(cls).__name__ == "read_message"
        usage = {"input_tokens": 176, "output_tokens": 300, "cache_read_input_tokens": 1024,
                 "cache_creation_input_tokens": 500, "server_tool_use": {"web_search_requests": 1},
                 "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 500}}  # fmt: skip
        assert _plain(_message(usage, cls))
        assert not _plain(_message(usage, cls, extra_field=1))  # extra fields: the general reader
