"""``instrument(client)``: real OpenAI and Anthropic clients over canned HTTP, sync and async, every request kind,
budgets refusing before anything is sent, idempotence, ``uninstrument``, threads; and the LiteLLM callback."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import sys
import threading
import types
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import anthropic
import httpx2
import openai
import pytest

import llmcost
from llmcost import BudgetExceeded, CostCategory, Usage
from tests.conftest import answer_of_forked_child, in_threads

MESSAGES = [{"role": "user", "content": "hi"}]

CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
}
CHAT_COST = Decimal("0.00045")  # 100 input at $2.50 + 20 output at $10 per MTok


def chat_chunk(content=None, usage=None):
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-4o-2024-08-06",
        "choices": [] if usage else [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
        "usage": usage,
    }


CHAT_SSE = (
    "".join(
        f"data: {json.dumps(c)}\n\n"
        for c in (
            chat_chunk("Hel"),
            chat_chunk("lo"),
            chat_chunk(usage={"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}),
        )
    )
    + "data: [DONE]\n\n"
)
CHAT_SSE_COST = Decimal("0.0035")

EMBEDDING = {
    "object": "list",
    "model": "text-embedding-3-small",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
    "usage": {"prompt_tokens": 1_000_000, "total_tokens": 1_000_000},
}

RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "created_at": 0,
    "model": "gpt-4o-mini",
    "output": [
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
        }
    ],
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
RESPONSE_USAGE = Usage(500, 80, cache_read_tokens=128, reasoning_tokens=16)
RESPONSE_SSE = "".join(
    f"event: {e['type']}\ndata: {json.dumps(e)}\n\n"
    for e in (
        {
            "type": "response.created",
            "sequence_number": 0,
            "response": {**RESPONSE, "status": "in_progress", "output": [], "usage": None},
        },
        {"type": "response.completed", "sequence_number": 1, "response": RESPONSE},
    )
)

# OpenAI's ``responses.compact``: a compaction pass, billed by its usage; the response names no model.
COMPACTED = {
    "id": "cmp_1",
    "object": "response.compaction",
    "created_at": 0,
    "output": [],
    "usage": RESPONSE["usage"],
}

MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-3-5-sonnet-20241022",
    "content": [{"type": "text", "text": "Hello"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 100,
        "output_tokens": 50,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 0,
    },
}
MESSAGE_USAGE = Usage(input_tokens=1100, output_tokens=50, cache_read_tokens=1000)


def _anthropic_sse():
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {**MESSAGE, "content": [], "usage": {**MESSAGE["usage"], "output_tokens": 1}},
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
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


MESSAGE_SSE = _anthropic_sse()


class Server:
    """Canned HTTP for both SDKs: answers by path and by ``"stream": true`` in the body; counts requests."""

    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        with self._lock:
            self.requests.append(request)
        body = json.loads(request.content or b"{}")
        path = request.url.path
        streaming = bool(body.get("stream"))
        if path.endswith("/chat/completions"):
            return self._answer(CHAT_SSE if streaming else CHAT, streaming)
        if path.endswith("/embeddings"):
            return self._answer(EMBEDDING, False)
        if path.endswith("/responses"):
            return self._answer(RESPONSE_SSE if streaming else RESPONSE, streaming)
        if path.endswith("/responses/compact"):
            return self._answer(COMPACTED, False)
        if path.endswith("/messages"):
            return self._answer(MESSAGE_SSE if streaming else MESSAGE, streaming)
        return httpx2.Response(404, json={"error": path})

    @staticmethod
    def _answer(payload: object, streaming: bool) -> httpx2.Response:
        if streaming:
            return httpx2.Response(200, text=str(payload), headers={"content-type": "text/event-stream"})
        return httpx2.Response(200, json=payload)

    @property
    def count(self) -> int:
        return len(self.requests)


@pytest.fixture
def server() -> Server:
    return Server()


def make(kind: str, server: Server):
    sync = not kind.startswith("async")
    http = httpx2.Client if sync else httpx2.AsyncClient
    client_class = {
        "openai": openai.OpenAI,
        "async-openai": openai.AsyncOpenAI,
        "anthropic": anthropic.Anthropic,
        "async-anthropic": anthropic.AsyncAnthropic,
    }[kind]
    return client_class(api_key="k", http_client=http(transport=httpx2.MockTransport(server)))


def run(value):
    return asyncio.run(value) if asyncio.iscoroutine(value) else value


# -- every request kind ---------------------------------------------------------------------------------------------
def test_chat_completion_returning_only_the_text_is_recorded(server, tracker):
    client = llmcost.instrument(make("openai", server), tracker=tracker)

    def ask(question: str) -> str:  # the most common helper: not a response in sight
        r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": question}])
        return r.choices[0].message.content

    assert ask("hi") == "Hello"
    (entry,) = tracker.entries()
    assert (entry.model, entry.provider, entry.amount) == ("gpt-4o-2024-08-06", "openai", CHAT_COST)
    assert entry.usage == Usage(100, 20)
    assert entry.resource == "openai.chat.completions.create"
    assert entry.category is CostCategory.LLM_INFERENCE
    assert entry.latency_ms is not None and entry.latency_ms >= 0


def test_async_chat_completion(server, tracker):
    client = llmcost.instrument(make("async-openai", server), tracker=tracker)

    async def ask():
        r = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        return r.choices[0].message.content

    assert asyncio.run(ask()) == "Hello"
    (entry,) = tracker.entries()
    assert entry.amount == CHAT_COST and entry.resource == "openai.chat.completions.create"


@pytest.mark.parametrize("kind", ["openai", "async-openai"])
def test_chat_parse(server, tracker, kind):
    client = llmcost.instrument(make(kind, server), tracker=tracker)
    parsed = run(client.chat.completions.parse(model="gpt-4o", messages=MESSAGES))
    assert parsed.choices[0].message.content == "Hello"
    (entry,) = tracker.entries()
    assert (entry.amount, entry.resource) == (CHAT_COST, "openai.chat.completions.parse")
    assert server.count == 1


def test_chat_stream_true_is_recorded_when_it_ends(server, tracker):
    client = llmcost.instrument(make("openai", server), tracker=tracker)
    stream = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert isinstance(stream, openai.Stream)
    assert tracker.entries() == []
    assert "".join(c.choices[0].delta.content for c in stream if c.choices) == "Hello"
    (entry,) = tracker.entries()
    assert (entry.usage, entry.amount) == (Usage(1000, 100), CHAT_SSE_COST)


def test_async_chat_stream_true(server, tracker):
    client = llmcost.instrument(make("async-openai", server), tracker=tracker)

    async def go():
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        return "".join([c.choices[0].delta.content async for c in stream if c.choices])

    assert asyncio.run(go()) == "Hello"
    (entry,) = tracker.entries()
    assert entry.amount == CHAT_SSE_COST


def test_chat_stream_manager(server, tracker):
    client = llmcost.instrument(make("openai", server), tracker=tracker)
    with client.chat.completions.stream(
        model="gpt-4o", messages=MESSAGES, stream_options={"include_usage": True}
    ) as stream:
        text = "".join(e.delta for e in stream if e.type == "content.delta")
    assert text == "Hello"
    (entry,) = tracker.entries()
    assert (entry.amount, entry.resource) == (CHAT_SSE_COST, "openai.chat.completions.create")
    assert server.count == 1


def test_async_chat_stream_manager(server, tracker):
    client = llmcost.instrument(make("async-openai", server), tracker=tracker)

    async def go():
        async with client.chat.completions.stream(
            model="gpt-4o", messages=MESSAGES, stream_options={"include_usage": True}
        ) as stream:
            return "".join([e.delta async for e in stream if e.type == "content.delta"])

    assert asyncio.run(go()) == "Hello"
    (entry,) = tracker.entries()
    assert entry.amount == CHAT_SSE_COST and server.count == 1


@pytest.mark.parametrize("kind", ["openai", "async-openai"])
def test_embeddings(server, tracker, kind):
    client = llmcost.instrument(make(kind, server), tracker=tracker)
    result = run(client.embeddings.create(model="text-embedding-3-small", input="x"))
    assert result.data[0].embedding == [0.1, 0.2]
    (entry,) = tracker.entries()
    assert entry.category is CostCategory.LLM_EMBEDDING
    assert (entry.amount, entry.resource) == (Decimal("0.02"), "openai.embeddings.create")


@pytest.mark.parametrize("kind", ["openai", "async-openai"])
def test_responses_create_and_parse(server, tracker, kind):
    client = llmcost.instrument(make(kind, server), tracker=tracker)
    assert run(client.responses.create(model="gpt-4o-mini", input="hi")).output_text == "Hello"
    assert run(client.responses.parse(model="gpt-4o-mini", input="hi")).output_text == "Hello"
    created, parsed = tracker.entries()
    assert created.usage == parsed.usage == RESPONSE_USAGE
    assert (created.model, created.resource, parsed.resource) == (
        "gpt-4o-mini",
        "openai.responses.create",
        "openai.responses.parse",
    )
    assert created.amount > 0


def test_responses_stream_true_and_stream_manager(server, tracker):
    client = llmcost.instrument(make("openai", server), tracker=tracker)
    events = [e.type for e in client.responses.create(model="gpt-4o-mini", input="hi", stream=True)]
    assert events == ["response.created", "response.completed"]
    with client.responses.stream(model="gpt-4o-mini", input="hi") as stream:
        for _ in stream:
            pass
        assert stream.get_final_response().output_text == "Hello"
    first, second = tracker.entries()
    assert first.usage == second.usage == RESPONSE_USAGE
    assert server.count == 2


def test_async_responses_stream_manager(server, tracker):
    client = llmcost.instrument(make("async-openai", server), tracker=tracker)

    async def go():
        async with client.responses.stream(model="gpt-4o-mini", input="hi") as stream:
            async for _ in stream:
                pass
            return (await stream.get_final_response()).output_text

    assert asyncio.run(go()) == "Hello"
    (entry,) = tracker.entries()
    assert entry.usage == RESPONSE_USAGE


def test_async_methods_that_are_coroutine_functions_are_tracked_as_they_are(server, tracker):
    # ``AsyncResponses.create``, every ``parse``, ``AsyncEmbeddings.create`` are ``async def``: tracked with no
    # coroutine of llmcost's around them (a step more per request), those behind a plain def (``required_args``)
    # with one; each streams, is budget-checked before sending, and gives a tags callable the request.
    client = llmcost.instrument(
        make("async-openai", server), tracker=tracker, tags=lambda **request: {"asked": request["model"]}
    )
    responses = client.responses
    assert inspect.iscoroutinefunction(type(responses).create)
    assert responses.create.__wrapped__ == responses.__class__.create.__get__(responses)
    chat = client.chat.completions
    assert not inspect.iscoroutinefunction(type(chat).create)
    assert inspect.iscoroutinefunction(chat.create.__wrapped__)  # the coroutine around it

    async def go():
        stream = await responses.create(model="gpt-4o-mini", input="hi", stream=True)
        events = [event.type async for event in stream]
        with llmcost.budget("0.01", tracker=tracker), pytest.raises(BudgetExceeded):
            await responses.create(model="gpt-4o", input=BIG[0]["content"])
        return events

    assert asyncio.run(go()) == ["response.created", "response.completed"]
    (entry,) = tracker.entries()
    assert (entry.usage, entry.resource, dict(entry.tags)) == (
        RESPONSE_USAGE,
        "openai.responses.create",
        {"asked": "gpt-4o-mini"},
    )
    assert server.count == 1


@pytest.mark.parametrize("kind", ["anthropic", "async-anthropic"])
def test_anthropic_messages_create(server, tracker, kind):
    client = llmcost.instrument(make(kind, server), tracker=tracker)
    message = run(client.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=100, messages=MESSAGES))
    assert message.content[0].text == "Hello"
    (entry,) = tracker.entries()
    assert (entry.provider, entry.usage, entry.resource) == ("anthropic", MESSAGE_USAGE, "anthropic.messages.create")
    assert entry.amount == Decimal("0.00135")  # 100 at $3 + 1000 cache reads at $0.30 + 50 at $15 per MTok


@pytest.mark.parametrize("kind", ["openai", "async-openai", "anthropic", "async-anthropic"])
def test_raw_responses_are_recorded_from_their_body_and_still_parse(server, tracker, kind):
    client = llmcost.instrument(make(kind, server), tracker=tracker)
    if "openai" in kind:
        raw = run(client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES))
        expected = ("gpt-4o-2024-08-06", "openai", Usage(100, 20), CHAT_COST)
    else:
        raw = run(client.messages.with_raw_response.create(model="claude-3-5-sonnet-20241022", max_tokens=100,
                                                           messages=MESSAGES))  # fmt: skip
        expected = ("claude-3-5-sonnet-20241022", "anthropic", MESSAGE_USAGE, Decimal("0.00135"))
    (entry,) = tracker.entries()
    assert (entry.model, entry.provider, entry.usage, entry.amount) == expected
    parsed = run(raw.parse())  # the caller's own parse is untouched
    assert parsed.usage is not None and type(parsed).__name__ in ("ChatCompletion", "Message")


def test_a_raw_streaming_response_is_recorded_as_the_caller_reads_it(server, tracker):
    client = llmcost.instrument(make("openai", server), tracker=tracker)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES, stream=True)
    assert tracker.entries() == []  # its body is a stream the caller has not read: not read here
    chunks = list(raw.parse())
    assert [c.choices[0].delta.content for c in chunks if c.choices] == ["Hel", "lo"]
    (entry,) = tracker.entries()  # recorded once the caller has read it
    assert (entry.usage, entry.amount) == (Usage(1000, 100), CHAT_SSE_COST)


def test_a_usage_callable_gets_what_a_stream_or_a_streamed_body_was_read_as(network, tracker):
    """Over the network (bodies read as the caller reads them): the chunks (events) a stream read, the JSON value of
    a body read later (``with_streaming_response``), the events' JSON values of a streamed raw body."""
    got = []

    def usage(read):
        got.append(read)
        if isinstance(read, dict):  # a JSON body, parsed
            return Usage(input_tokens=read["usage"]["prompt_tokens"])
        return Usage(input_tokens=10 * len(read))  # the chunks (events) read

    openai_client = llmcost.instrument(make("openai", network), tracker=tracker, usage=usage)
    anthropic_client = llmcost.instrument(make("anthropic", network), tracker=tracker, usage=usage)
    stream_usage = {"stream_options": {"include_usage": True}}
    for _ in openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True, **stream_usage):
        pass
    with anthropic_client.messages.stream(model="claude-3-5-sonnet-20241022", max_tokens=9, messages=MESSAGES) as s:
        s.get_final_message()
    with openai_client.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MESSAGES) as r:
        r.parse()
    list(
        openai_client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES, stream=True).parse()
    )
    assert network.count == 4
    assert [type(read).__name__ for read in got] == ["list", "list", "dict", "list"]
    assert [type(chunk).__name__ for chunk in got[0]] == ["ChatCompletionChunk"] * 3
    assert [event.type for event in got[1]][0::5] == ["message_start", "message_stop"]
    assert got[2] == CHAT and [chunk["object"] for chunk in got[3]] == ["chat.completion.chunk"] * 3
    assert [(e.model, e.usage) for e in tracker.entries()] == [
        ("gpt-4o-2024-08-06", Usage(30)),
        ("claude-3-5-sonnet-20241022", Usage(60)),
        ("gpt-4o-2024-08-06", Usage(100)),
        ("gpt-4o-2024-08-06", Usage(30)),
    ]


def test_a_failing_usage_callable_falls_back_to_the_usage_read(server, tracker, caplog):
    client = llmcost.instrument(make("openai", server), tracker=tracker, usage=lambda read: read.no_such_field)
    with caplog.at_level("WARNING", logger="llmcost"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        for _ in client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        ):
            pass
    assert [(e.usage, e.amount) for e in tracker.entries()] == [
        (Usage(100, 20), CHAT_COST),
        (Usage(1000, 100), CHAT_SSE_COST),
    ]
    assert sum("usage= callable" in r.getMessage() for r in caplog.records) == 1  # once per cause


def test_anthropic_stream_true(server, tracker):
    client = llmcost.instrument(make("anthropic", server), tracker=tracker)
    stream = client.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=100, messages=MESSAGES, stream=True)
    assert isinstance(stream, anthropic.Stream)
    assert [e.type for e in stream][-1] == "message_stop"
    (entry,) = tracker.entries()
    assert entry.usage == MESSAGE_USAGE


def test_anthropic_stream_manager(server, tracker):
    client = llmcost.instrument(make("anthropic", server), tracker=tracker)
    with client.messages.stream(model="claude-3-5-sonnet-20241022", max_tokens=100, messages=MESSAGES) as stream:
        assert "".join(stream.text_stream) == "Hello"
    (entry,) = tracker.entries()
    assert (entry.usage, entry.resource) == (MESSAGE_USAGE, "anthropic.messages.stream")
    assert server.count == 1


def test_async_anthropic_stream_true_and_stream_manager(server, tracker):
    client = llmcost.instrument(make("async-anthropic", server), tracker=tracker)

    async def go():
        stream = await client.messages.create(
            model="claude-3-5-sonnet-20241022", max_tokens=100, messages=MESSAGES, stream=True
        )
        async for _ in stream:
            pass
        async with client.messages.stream(
            model="claude-3-5-sonnet-20241022", max_tokens=100, messages=MESSAGES
        ) as managed:
            return "".join([t async for t in managed.text_stream])

    assert asyncio.run(go()) == "Hello"
    assert [e.usage for e in tracker.entries()] == [MESSAGE_USAGE, MESSAGE_USAGE]
    assert server.count == 2


@pytest.mark.parametrize("kind", ["anthropic", "async-anthropic"])
def test_anthropic_parse_and_beta_messages(tracker, kind):
    from pydantic import BaseModel

    class Answer(BaseModel):
        text: str

    answer = {**MESSAGE, "content": [{"type": "text", "text": '{"text": "Hello"}'}]}
    server = Server()
    http = httpx2.Client if kind == "anthropic" else httpx2.AsyncClient
    client_class = anthropic.Anthropic if kind == "anthropic" else anthropic.AsyncAnthropic

    def handler(request):
        server(request)
        return httpx2.Response(200, json=answer)

    client = llmcost.instrument(
        client_class(api_key="k", http_client=http(transport=httpx2.MockTransport(handler))), tracker=tracker
    )
    request = {"model": "claude-3-5-sonnet-20241022", "max_tokens": 100, "messages": MESSAGES}
    parsed = run(client.messages.parse(**request, output_format=Answer))
    assert parsed.parsed_output == Answer(text="Hello")
    run(client.beta.messages.create(**request))
    assert [(e.resource, e.usage) for e in tracker.entries()] == [
        ("anthropic.messages.parse", MESSAGE_USAGE),
        ("anthropic.beta.messages.create", MESSAGE_USAGE),
    ]
    assert server.count == 2


# -- budgets --------------------------------------------------------------------------------------------------------
BIG = [{"role": "user", "content": "word " * 20_000}]  # ~20k tokens: about $0.05 of gpt-4o input


@pytest.mark.parametrize("kind", ["openai", "async-openai"])
def test_budget_refuses_before_any_request_is_sent(server, tracker, kind):
    client = llmcost.instrument(make(kind, server), tracker=tracker)
    with llmcost.budget("0.01", tracker=tracker), pytest.raises(BudgetExceeded) as refused:
        run(client.chat.completions.create(model="gpt-4o", messages=BIG, max_tokens=100))
    assert server.count == 0
    assert refused.value.requested is not None and refused.value.requested > Decimal("0.01")
    assert tracker.entries() == []


def test_budget_refuses_stream_managers_and_streams_before_sending(server, tracker):
    openai_client = llmcost.instrument(make("openai", server), tracker=tracker)
    anthropic_client = llmcost.instrument(make("anthropic", server), tracker=tracker)
    with llmcost.budget("0.01", tracker=tracker):
        with pytest.raises(BudgetExceeded):
            openai_client.chat.completions.create(model="gpt-4o", messages=BIG, stream=True)
        with pytest.raises(BudgetExceeded), openai_client.chat.completions.stream(model="gpt-4o", messages=BIG):
            pass
        with pytest.raises(BudgetExceeded):
            openai_client.responses.create(model="gpt-4o", input=BIG[0]["content"])
        with (
            pytest.raises(BudgetExceeded),
            anthropic_client.messages.stream(model="claude-3-5-sonnet-20241022", max_tokens=100, messages=BIG),
        ):
            pass
    assert server.count == 0


@pytest.mark.parametrize("path", ["messages", "beta.messages"])
@pytest.mark.parametrize("kind", ["anthropic", "async-anthropic"])
def test_anthropic_stream_managers_are_checked_and_tracked_as_they_are_entered(server, tracker, kind, path):
    """The request is sent as the manager is entered: that is where budgets refuse it and whose tags and budgets count
    it, as for OpenAI's ``.stream()`` helpers (whose ``create`` runs then), wherever the manager was made."""
    client = llmcost.instrument(make(kind, server), tracker=tracker)
    messages = client.messages if path == "messages" else client.beta.messages
    request = {"model": "claude-3-5-sonnet-20241022", "max_tokens": 100, "messages": MESSAGES}

    async def enter(manager):
        if kind == "anthropic":
            with manager as stream:
                return stream.get_final_message()
        async with manager as stream:
            return await stream.get_final_message()

    made_outside = messages.stream(**request)  # (A) made outside a budget that cannot afford it, entered inside
    with llmcost.budget("0.0000001", tracker=tracker) as tiny, pytest.raises(BudgetExceeded):
        asyncio.run(enter(made_outside))
    assert server.count == 0 and tiny.spent == 0
    with llmcost.budget("1", tracker=tracker) as made_in, llmcost.tags(user="made"):
        made_inside = messages.stream(**request)  # (B) made inside a budget and tags, entered after them
    with llmcost.budget("1", tracker=tracker) as entered_in, llmcost.tags(user="entered"):
        asyncio.run(enter(made_inside))
    (entry,) = tracker.entries()
    assert (dict(entry.tags), entry.usage, server.count) == ({"user": "entered"}, MESSAGE_USAGE, 1)
    assert (made_in.spent, entered_in.spent) == (0, entry.amount)
    never_entered = messages.stream(**request)  # made, never entered: no request, nothing reserved nor recorded
    del never_entered
    assert server.count == 1 and len(tracker.entries()) == 1
    with pytest.raises(TypeError):
        messages.stream(model="claude-3-5-sonnet-20241022", messages=MESSAGES, no_such_argument=1)


def test_budget_counts_instrumented_calls_then_refuses(server, tracker):
    client = llmcost.instrument(make("openai", server), tracker=tracker)
    with llmcost.budget(CHAT_COST * 2, tracker=tracker) as b:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=1)
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=1)
        assert b.spent == CHAT_COST * 2
        with pytest.raises(BudgetExceeded):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=1)
    assert server.count == 2


# -- patching -------------------------------------------------------------------------------------------------------
def test_instrumenting_twice_records_once_and_the_latest_options_win(server, tracker):
    client = make("openai", server)
    llmcost.instrument(client, tracker=tracker, tags={"n": "1"})
    assert llmcost.instrument(client, tracker=tracker, tags={"n": "2"}) is client
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    (entry,) = tracker.entries()
    assert dict(entry.tags) == {"n": "2"}


@pytest.mark.parametrize("kind", ["openai", "async-openai", "anthropic", "async-anthropic"])
def test_uninstrument_restores_the_originals(server, tracker, kind):
    client = make(kind, server)
    if "openai" in kind:
        resources = [client.chat.completions, client.embeddings, client.responses]
    else:
        resources = [client.messages]
    before = [dict(vars(r)) for r in resources]
    client_before = dict(vars(client))
    llmcost.instrument(client, tracker=tracker)
    assert "create" in vars(resources[0]) and "with_options" in vars(client)
    assert llmcost.uninstrument(client) is client
    assert [dict(vars(r)) for r in resources] == before
    # The client only gained the resource objects it caches on first use; nothing of llmcost's is left.
    assert client_before.items() <= vars(client).items()
    assert not any(hasattr(v, "__llmcost_instrumented__") for v in vars(client).values())
    assert llmcost.uninstrument(client) is client  # not instrumented: unchanged
    if "openai" in kind:
        run(client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
    else:
        run(client.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=10, messages=MESSAGES))
    assert server.count == 1 and tracker.entries() == []


def test_only_the_instance_is_patched(server, tracker):
    instrumented = llmcost.instrument(make("openai", server), tracker=tracker)
    plain = make("openai", server)
    plain.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert tracker.entries() == []
    assert "create" not in vars(type(instrumented.chat.completions)) or not hasattr(
        vars(type(instrumented.chat.completions))["create"], "__llmcost_instrumented__"
    )
    instrumented.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(tracker.entries()) == 1


def test_with_options_copies_stay_instrumented(server, tracker):
    client = llmcost.instrument(make("openai", server), tracker=tracker, tags={"via": "copy"})
    client.with_options(timeout=5).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    client.copy(max_retries=0).embeddings.create(model="text-embedding-3-small", input="x")
    assert [dict(e.tags) for e in tracker.entries()] == [{"via": "copy"}, {"via": "copy"}]


def test_options_reach_the_engine(server, tracker):
    client = llmcost.instrument(
        make("openai", server),
        tracker=tracker,
        resource="search",
        tags=lambda **request: {"asked": request["model"]},
    )
    with llmcost.tags(team="a"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    (entry,) = tracker.entries()
    assert (entry.resource, dict(entry.tags)) == ("search", {"team": "a", "asked": "gpt-4o"})


def test_a_tags_callable_that_fails_for_a_request_leaves_it_recorded_and_checked(server, tracker, caplog):
    # ``request.get("user")`` is None for a request without ``user=``: no tag value; the request is still tracked.
    client = llmcost.instrument(
        make("openai", server), tracker=tracker, tags=lambda **request: {"user": request.get("user")}
    )
    with caplog.at_level("WARNING", logger="llmcost"):
        with llmcost.budget(CHAT_COST * 2, tracker=tracker) as b:
            for _ in range(2):
                client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=1)
            with pytest.raises(BudgetExceeded):
                client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=1)
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, user="ann")
    assert server.count == 3 and b.spent == CHAT_COST * 2
    assert [dict(e.tags) for e in tracker.entries()] == [{}, {}, {"user": "ann"}]
    assert sum("tags= callable" in r.getMessage() for r in caplog.records) == 1


def test_a_usage_callable_overrides_the_usage_only_the_model_is_read_from_the_response(server, tracker, caplog):
    def usage(response):
        return Usage(input_tokens=response.usage.prompt_tokens, output_tokens=response.usage.completion_tokens)

    client = llmcost.instrument(make("openai", server), tracker=tracker, usage=usage)
    with caplog.at_level("WARNING", logger="llmcost"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    (entry,) = tracker.entries()
    assert (entry.model, entry.provider, entry.usage, entry.amount) == (
        "gpt-4o-2024-08-06",
        "openai",
        Usage(100, 20),
        CHAT_COST,
    )
    assert entry.pricing.startswith("catalog@")
    assert not [r for r in caplog.records if "no model" in r.getMessage()]


@pytest.mark.parametrize("bad", [object(), openai, {"chat": 1}])
def test_only_sdk_clients_and_litellm_are_accepted(bad):
    with pytest.raises(TypeError, match="OpenAI or Anthropic client"):
        llmcost.instrument(bad)


@pytest.mark.parametrize(
    ("kind", "part", "named"),
    [
        ("openai", "chat.completions", "openai.resources.chat.completions.completions.Completions"),
        ("openai", "chat", "openai.resources.chat.chat.Chat"),  # (was patched as the legacy ``completions.create``)
        ("async-openai", "responses", "openai.resources.responses.responses.AsyncResponses"),
        ("anthropic", "messages", "anthropic.resources.messages.messages.Messages"),
    ],
)
@pytest.mark.parametrize("function", ["instrument", "uninstrument"])
def test_a_part_of_a_client_is_refused_naming_it_and_the_client_to_pass(server, kind, part, named, function):
    resource = make(kind, server)
    for name in part.split("."):
        resource = getattr(resource, name)
    message = rf"{function}\(\) takes an OpenAI or Anthropic client, not a part of one; got {named}: pass the client"
    with pytest.raises(TypeError, match=rf"{message} it belongs to \({function}\(client\)"):
        getattr(llmcost, function)(resource)
    assert not [name for name in ("create", "parse") if name in vars(resource)]  # nothing patched


def test_bad_options_fail_before_anything_is_patched(server):
    client = make("openai", server)
    with pytest.raises(TypeError):
        llmcost.instrument(client, model=3)
    with pytest.raises(ValueError, match="estimate must be >= 0, got '-5'"):
        llmcost.instrument(client, estimate="-5")
    assert "create" not in vars(client.chat.completions)


def test_the_sdk_errors_propagate_and_record_nothing(tracker):
    def failing(request):
        return httpx2.Response(400, json={"error": {"message": "bad", "type": "invalid_request_error"}})

    http = httpx2.Client(transport=httpx2.MockTransport(failing))
    client = openai.OpenAI(api_key="k", max_retries=0, http_client=http)
    llmcost.instrument(client, tracker=tracker)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert tracker.entries() == []


def test_set_active_false_turns_it_off(server, tracker):
    client = llmcost.instrument(make("openai", server), tracker=tracker)
    llmcost.set_active(False)
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert tracker.entries() == [] and server.count == 1


def test_many_threads_share_one_instrumented_client(server, tracker):
    client = llmcost.instrument(make("openai", server), tracker=tracker)
    per_thread = 25
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(n: int) -> None:
        try:
            start.wait()
            with llmcost.tags(thread=str(n)):
                for _ in range(per_thread):
                    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    entries = tracker.entries()
    assert len(entries) == server.count == 8 * per_thread
    assert sum(e.amount for e in entries) == CHAT_COST * 8 * per_thread
    assert {e.tags["thread"] for e in entries} == {str(n) for n in range(8)}


def test_instrumenting_from_many_threads_at_once_records_each_request_once(server, tracker):
    client = make("openai", server)
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        llmcost.instrument(client, tracker=tracker)

    in_threads(work)
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(tracker.entries()) == 1


# -- LiteLLM --------------------------------------------------------------------------------------------------------
# litellm is not in the dev extra (a large dependency tree), so these tests drive the callback the way LiteLLM
# documents it (the last one runs against the real litellm when it is installed): a
# ``litellm.integrations.custom_logger.CustomLogger`` subclass put in ``litellm.callbacks``, called with
# ``log_pre_api_call(model, messages, kwargs)`` in the caller's thread, then
# ``log_success_event(kwargs, response_obj, start_time, end_time)`` (``async_log_success_event`` for async calls) on
# a worker, ``kwargs`` carrying ``litellm_call_id``, ``model``, ``messages`` and, for streams,
# ``complete_streaming_response``.
@pytest.fixture
def fake_litellm(monkeypatch):
    litellm = types.ModuleType("litellm")
    integrations = types.ModuleType("litellm.integrations")
    custom_logger = types.ModuleType("litellm.integrations.custom_logger")

    class CustomLogger:
        def __init__(self, *args, **kwargs):
            pass

    custom_logger.CustomLogger = CustomLogger
    litellm.callbacks = []
    litellm.integrations = integrations
    integrations.custom_logger = custom_logger
    monkeypatch.setitem(sys.modules, "litellm", litellm)
    monkeypatch.setitem(sys.modules, "litellm.integrations", integrations)
    monkeypatch.setitem(sys.modules, "litellm.integrations.custom_logger", custom_logger)
    return litellm


def litellm_response(model="gpt-4o", prompt=100, completion=20):
    # LiteLLM's ModelResponse, as a dict (its model_dump() shape).
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


def test_litellm_callback_records_in_the_callers_context(fake_litellm, tracker):
    assert llmcost.instrument(fake_litellm, tracker=tracker) is fake_litellm
    (handler,) = fake_litellm.callbacks
    kwargs = {"litellm_call_id": "call-1", "model": "gpt-4o", "messages": MESSAGES}
    with llmcost.tags(team="a"), llmcost.budget("1", tracker=tracker) as b:
        handler.log_pre_api_call("gpt-4o", MESSAGES, kwargs)
    start = datetime(2024, 5, 17, tzinfo=timezone.utc)
    # LiteLLM calls success handlers on a worker thread, outside the caller's context.
    worker = threading.Thread(
        target=handler.log_success_event, args=(kwargs, litellm_response(), start, start + timedelta(seconds=1.5))
    )
    worker.start()
    worker.join()
    (entry,) = tracker.entries()
    assert (entry.amount, entry.resource, dict(entry.tags)) == (CHAT_COST, "litellm", {"team": "a"})
    assert entry.latency_ms == 1500.0
    assert b.spent == CHAT_COST  # the budget active at the call counted it


def test_litellm_async_hook_stream_and_reporting_once(fake_litellm, tracker):
    llmcost.instrument(fake_litellm, tracker=tracker)
    llmcost.instrument(fake_litellm, tracker=tracker)  # again: still one callback
    (handler,) = fake_litellm.callbacks
    kwargs = {
        "litellm_call_id": "call-2",
        "model": "gpt-4o",
        "messages": MESSAGES,
        "complete_streaming_response": litellm_response(prompt=1000, completion=100),
    }
    handler.log_pre_api_call("gpt-4o", MESSAGES, kwargs)
    asyncio.run(handler.async_log_success_event(kwargs, None, 0.0, 0.25))
    handler.log_success_event(kwargs, None, 0.0, 0.25)  # the same call reported twice: recorded once
    (entry,) = tracker.entries()
    assert (entry.amount, entry.latency_ms) == (CHAT_SSE_COST, 250.0)


def test_litellm_failure_records_nothing_and_uninstrument_removes_the_callback(fake_litellm, tracker):
    other = object()
    fake_litellm.callbacks = [other]
    llmcost.instrument(fake_litellm, tracker=tracker)
    handler = fake_litellm.callbacks[-1]
    kwargs = {"litellm_call_id": "call-3", "model": "gpt-4o", "messages": MESSAGES}
    handler.log_pre_api_call("gpt-4o", MESSAGES, kwargs)
    handler.log_failure_event(kwargs, None, 0.0, 1.0)
    assert tracker.entries() == [] and handler.pending == {}
    llmcost.uninstrument(fake_litellm)
    assert fake_litellm.callbacks == [other]


def test_litellm_without_its_integrations_says_which_package(monkeypatch):
    litellm = types.ModuleType("litellm")
    monkeypatch.setitem(sys.modules, "litellm", litellm)
    monkeypatch.setitem(sys.modules, "litellm.integrations", None)
    monkeypatch.setitem(sys.modules, "litellm.integrations.custom_logger", None)
    with pytest.raises(ImportError, match="needs the litellm package"):
        llmcost.instrument(litellm)


def _eventually(condition, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


@pytest.mark.filterwarnings("ignore")  # litellm's own import and calls warn (pydantic, deprecations)
def test_real_litellm_sync_async_and_stream(monkeypatch, tracker):
    """With litellm installed (not in the dev extra; ``pip install litellm``), its own ``mock_response`` calls go
    through its real callback machinery."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
    litellm = pytest.importorskip("litellm")
    monkeypatch.setattr(litellm, "callbacks", [])
    llmcost.instrument(litellm, tracker=tracker)
    with llmcost.tags(team="a"), llmcost.budget("1", tracker=tracker) as b:
        litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response="Hello")
        assert _eventually(lambda: len(tracker.entries()) == 1)
        assert b.spent == tracker.entries()[0].amount > 0

    async def acall():
        await litellm.acompletion(model="gpt-4o", messages=MESSAGES, mock_response="Hello")
        for _ in range(500):  # LiteLLM logs async calls from a task of the same event loop
            if len(tracker.entries()) == 2:
                return
            await asyncio.sleep(0.02)

    asyncio.run(acall())
    assert len(tracker.entries()) == 2
    for _ in litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response="Hello there", stream=True):
        pass
    assert _eventually(lambda: len(tracker.entries()) == 3)
    first, second, streamed = tracker.entries()
    assert dict(first.tags) == {"team": "a"} and first.resource == "litellm"
    assert first.usage == second.usage == Usage(10, 20)  # litellm's mock usage
    assert streamed.usage.output_tokens > 0
    litellm.embedding(model="text-embedding-3-small", input=["hello"], mock_response=[0.1, 0.2])
    assert _eventually(lambda: len(tracker.entries()) == 4)
    assert tracker.entries()[3].category is CostCategory.LLM_EMBEDDING  # (LiteLLM's completion_tokens=0)
    llmcost.uninstrument(litellm)
    assert litellm.callbacks == []


@pytest.mark.filterwarnings("ignore")  # litellm's own import and calls warn (pydantic, deprecations)
def test_real_litellm_embedding_is_an_embedding(monkeypatch, tracker):
    """LiteLLM's embedding usage fills ``completion_tokens=0``: still an ``llm_embedding``, which an embeddings budget
    counts (``instrument(litellm)``'s embeddings: ``test_real_litellm_sync_async_and_stream``)."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
    litellm = pytest.importorskip("litellm")
    monkeypatch.setattr(litellm, "callbacks", [])
    response = litellm.EmbeddingResponse(
        model="text-embedding-3-small",
        data=[{"object": "embedding", "index": 0, "embedding": [0.1]}],
        usage=litellm.Usage(prompt_tokens=10, total_tokens=10),
    )

    @llmcost.track_cost(tracker=tracker)
    def embed():
        return response

    with llmcost.budget("1", category="llm_embedding", tracker=tracker) as b:
        embed()
    (entry,) = tracker.entries()
    assert entry.category is CostCategory.LLM_EMBEDDING and b.spent == entry.amount > 0


def test_import_llmcost_imports_no_sdk_nor_litellm():
    import subprocess

    code = "import sys, llmcost; print(sorted(m for m in ('openai', 'anthropic', 'litellm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_client_base_url_names_the_host_that_bills(server, tracker):
    # Groq answers in OpenAI's shape; its client is an openai.OpenAI with Groq's base URL. gpt-oss-120b on Groq costs
    # $0.15 per million input tokens (genai-prices' groq entry), not OpenAI's price for the same id.
    def groq(request: httpx2.Request) -> httpx2.Response:
        server.requests.append(request)
        body = dict(CHAT, model="openai/gpt-oss-120b", usage={"prompt_tokens": 1_000_000, "completion_tokens": 0})
        return httpx2.Response(200, json=body)

    http = httpx2.Client(transport=httpx2.MockTransport(groq))
    client = openai.OpenAI(api_key="k", base_url="https://api.groq.com/openai/v1", http_client=http)
    llmcost.instrument(client, tracker=tracker)
    client.chat.completions.create(model="openai/gpt-oss-120b", messages=[{"role": "user", "content": "hi"}])
    (entry,) = tracker.entries()
    assert (entry.provider, entry.amount) == ("groq", Decimal("0.15"))
    assert llmcost.cost_of("gpt-oss-120b", input_tokens=1_000_000) != Decimal("0.15")  # the OpenAI price differs
    # An explicit provider= still wins over the URL.
    llmcost.instrument(client, tracker=tracker, provider="openai")
    client.chat.completions.create(model="openai/gpt-oss-120b", messages=[{"role": "user", "content": "hi"}])
    assert tracker.entries()[-1].provider == "openai"


# -- with_streaming_response: recorded as the body is read -----------------------------------------------------------
class Pieces(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A body that arrives from the network in small pieces (read only as the caller reads it), sync or async."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self):
        for start in range(0, len(self.data), 7):
            yield self.data[start : start + 7]

    async def __aiter__(self):
        for piece in self:
            yield piece


class NetworkServer(Server):
    """``Server`` whose bodies are read from the network as a real response's are (not held in memory at once)."""

    @staticmethod
    def _answer(payload: object, streaming: bool) -> httpx2.Response:
        data, kind = (str(payload), "text/event-stream") if streaming else (json.dumps(payload), "application/json")
        return httpx2.Response(200, headers={"content-type": kind}, stream=Pieces(data.encode()))


@pytest.fixture
def network() -> NetworkServer:
    return NetworkServer()


def streaming_response(client, kind: str, **extra):
    """The ``with_streaming_response.create`` context manager of ``client`` (chat, or Anthropic messages)."""
    if "openai" in kind:
        return client.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MESSAGES, **extra)
    return client.messages.with_streaming_response.create(
        model="claude-3-5-sonnet-20241022", max_tokens=100, messages=MESSAGES, **extra
    )


async def read_async(response, how: str) -> None:
    if how.startswith("iter"):
        async for _ in getattr(response, how)():
            pass
    else:
        await getattr(response, how)()


def read_sync(response, how: str) -> None:
    if how.startswith("iter"):
        for _ in getattr(response, how)():
            pass
    else:
        getattr(response, how)()


ALL_KINDS = ["openai", "async-openai", "anthropic", "async-anthropic"]


@pytest.mark.parametrize("how", ["parse", "json", "read", "text", "iter_bytes", "iter_lines"])
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_with_streaming_response_is_recorded_once_its_body_is_read(network, tracker, kind, how):
    client = llmcost.instrument(make(kind, network), tracker=tracker)
    expected = ("gpt-4o-2024-08-06", "openai", Usage(100, 20), CHAT_COST) if "openai" in kind else (
        "claude-3-5-sonnet-20241022", "anthropic", MESSAGE_USAGE, Decimal("0.00135"))  # fmt: skip

    if kind.startswith("async"):

        async def go() -> None:
            async with streaming_response(client, kind) as response:
                assert tracker.entries() == []  # nothing read yet
                await read_async(response, how)
                assert len(tracker.entries()) == 1  # recorded as the body was read, not later
                if how == "parse":
                    assert (await response.parse()).usage is not None  # the caller's parse is the SDK's

        asyncio.run(go())
        (entry,) = tracker.entries()  # closing recorded nothing more
    else:
        with streaming_response(client, kind) as response:
            assert tracker.entries() == []
            read_sync(response, how)
            (entry,) = tracker.entries()
            if how == "parse":
                assert response.parse().usage is not None
        assert tracker.entries() == [entry]
    assert (entry.model, entry.provider, entry.usage, entry.amount) == expected
    assert entry.resource == ("openai.chat.completions.create" if "openai" in kind else "anthropic.messages.create")


@pytest.mark.parametrize("how", ["parse", "iter_lines"])
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_streamed_with_streaming_response_is_recorded_when_its_events_are_read(network, tracker, kind, how):
    client = llmcost.instrument(make(kind, network), tracker=tracker)
    extra = {"stream_options": {"include_usage": True}} if "openai" in kind else {}
    expected = (Usage(1000, 100), CHAT_SSE_COST) if "openai" in kind else (MESSAGE_USAGE, Decimal("0.00135"))

    if kind.startswith("async"):

        async def go() -> None:
            async with streaming_response(client, kind, stream=True, **extra) as response:
                if how == "parse":
                    async for _ in await response.parse():
                        pass
                else:
                    await read_async(response, how)

        asyncio.run(go())
    else:
        with streaming_response(client, kind, stream=True, **extra) as response:
            if how == "parse":
                for _ in response.parse():
                    pass
            else:
                read_sync(response, how)
    (entry,) = tracker.entries()
    assert (entry.usage, entry.amount) == expected


@pytest.mark.parametrize("then", [None, "iter_bytes", "read"])
@pytest.mark.parametrize("how", ["read", "text", "parse", "iter_lines"])
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_streamed_body_loaded_already_is_recorded_once_however_it_is_read(server, tracker, kind, how, then):
    # ``server`` answers through httpx's MockTransport, which holds each body whole (so do respx and pytest-httpx):
    # ``read()`` (and ``text()``, which reads) give it at once, without the byte iterator the other ways go through.
    client = llmcost.instrument(make(kind, server), tracker=tracker)
    extra = {"stream_options": {"include_usage": True}} if "openai" in kind else {}
    expected = (Usage(1000, 100), CHAT_SSE_COST) if "openai" in kind else (MESSAGE_USAGE, Decimal("0.00135"))

    async def read_async_twice(response) -> None:
        if how == "parse":
            async for _ in await response.parse():
                pass
        else:
            await read_async(response, how)
        if then is not None:  # read again, another way: the body is the same, recorded once
            await read_async(response, then)

    with llmcost.budget("1", tracker=tracker) as limit:
        if kind.startswith("async"):

            async def go() -> None:
                async with streaming_response(client, kind, stream=True, **extra) as response:
                    assert tracker.entries() == []  # not read yet
                    await read_async_twice(response)
                    assert len(tracker.entries()) == 1  # recorded as it was read

            asyncio.run(go())
        else:
            with streaming_response(client, kind, stream=True, **extra) as response:
                assert tracker.entries() == []
                if how == "parse":
                    for _ in response.parse():
                        pass
                else:
                    read_sync(response, how)
                if then is not None:
                    read_sync(response, then)
                assert len(tracker.entries()) == 1
        (entry,) = tracker.entries()
        assert (entry.usage, entry.amount) == expected
        assert (limit.spent, limit.reserved) == (entry.amount, 0)


@pytest.mark.parametrize("kind", ["openai", "async-openai"])
def test_with_streaming_response_settles_its_reservation_once_as_the_body_is_read(network, tracker, kind):
    client = llmcost.instrument(make(kind, network), tracker=tracker)
    with llmcost.budget("1", tracker=tracker) as limit:
        if kind.startswith("async"):

            async def go() -> None:
                async with streaming_response(client, kind) as response:
                    assert limit.reserved > 0 and limit.spent == 0  # the request's estimate, held until it is read
                    await response.parse()
                    assert (limit.reserved, limit.spent) == (0, CHAT_COST)
                    await response.json()  # read again: nothing more

            asyncio.run(go())
        else:
            with streaming_response(client, kind) as response:
                assert limit.reserved > 0 and limit.spent == 0
                response.parse()
                assert (limit.reserved, limit.spent) == (0, CHAT_COST)
                response.json()
        assert (limit.reserved, limit.spent) == (0, CHAT_COST)
    assert len(tracker.entries()) == 1


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_with_streaming_response_closed_unread_releases_its_reservation(network, tracker, kind, caplog):
    client = llmcost.instrument(make(kind, network), tracker=tracker)
    with caplog.at_level("DEBUG", logger="llmcost"), llmcost.budget("1", tracker=tracker) as limit:
        if kind.startswith("async"):

            async def go() -> None:
                async with streaming_response(client, kind):
                    assert limit.reserved > 0

            asyncio.run(go())
        else:
            with streaming_response(client, kind):
                assert limit.reserved > 0
        assert (limit.reserved, limit.spent) == (0, 0)
    assert tracker.entries() == []
    assert "body unread; nothing recorded" in caplog.text
    assert network.count == 1


def test_a_stream_left_before_its_usage_records_nothing_and_releases(network, tracker):
    client = llmcost.instrument(make("openai", network), tracker=tracker)
    with llmcost.budget("1", tracker=tracker) as limit:
        with streaming_response(client, "openai", stream=True, stream_options={"include_usage": True}) as response:
            for _ in response.parse():
                break  # the first chunk only: the usage comes in the last
        assert (limit.reserved, limit.spent) == (0, 0)
    assert tracker.entries() == []


def test_with_streaming_response_made_before_instrument_is_tracked_and_after_uninstrument_not(network, tracker):
    client = make("openai", network)
    wrapper = client.chat.completions.with_streaming_response  # made (and kept by the SDK) around the bare create
    llmcost.instrument(client, tracker=tracker)
    assert client.chat.completions.with_streaming_response is not wrapper
    with client.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MESSAGES) as response:
        response.parse()
    client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert len(tracker.entries()) == 2
    llmcost.uninstrument(client)
    with client.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MESSAGES) as response:
        response.parse()
    client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert len(tracker.entries()) == 2


# -- Responses in background mode: recorded when retrieved finished ---------------------------------------------------
BACKGROUND_DONE = {**RESPONSE, "id": "resp_bg", "background": True}


class BackgroundServer:
    """OpenAI's Responses in background mode: ``create(background=True)`` answers ``"queued"`` with no usage (asked
    for a stream, its stream is cut after ``response.created`` and ``response.in_progress``, as a dropped connection
    leaves it); each retrieve of the id answers the next of ``states`` (the last one again once they run out), as a
    stream when asked (``stream=true``), from after ``starting_after`` if given."""

    def __init__(self, *states: dict) -> None:
        self.states = list(states) or [BACKGROUND_DONE]
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        queued = {**BACKGROUND_DONE, "status": "queued", "output": [], "usage": None}
        if request.method == "POST":
            body = json.loads(request.content)
            assert body.get("background") is True
            if body.get("stream"):
                return self._events([("response.created", queued), ("response.in_progress", queued)], -1)
            return httpx2.Response(200, json=queued)
        if not request.url.path.endswith("/resp_bg"):
            return httpx2.Response(200, json={**RESPONSE, "id": request.url.path.rsplit("/", 1)[-1]})
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if request.url.params.get("stream") == "true":
            started = {**state, "status": "in_progress", "usage": None}
            events = [
                ("response.created", queued),
                ("response.in_progress", started),
                (f"response.{state['status']}", state),
            ]
            return self._events(events, int(request.url.params.get("starting_after", -1)))
        return httpx2.Response(200, json=state)

    @staticmethod
    def _events(events: list[tuple[str, dict]], starting_after: int) -> httpx2.Response:
        text = "".join(
            f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': number, 'response': response})}\n\n"
            for number, (kind, response) in enumerate(events)
            if number > starting_after
        )
        return httpx2.Response(200, text=text, headers={"content-type": "text/event-stream"})


def background_client(kind: str, server: BackgroundServer, tracker, **options):
    http = (httpx2.Client if kind == "openai" else httpx2.AsyncClient)(transport=httpx2.MockTransport(server))
    client = (openai.OpenAI if kind == "openai" else openai.AsyncOpenAI)(api_key="k", http_client=http)
    return llmcost.instrument(client, tracker=tracker, **options)


@pytest.mark.parametrize("kind", ["openai", "async-openai"])
def test_a_background_response_is_recorded_once_when_retrieved_finished(tracker, kind):
    in_progress = {**BACKGROUND_DONE, "status": "in_progress", "output": [], "usage": None}
    server = BackgroundServer(in_progress, BACKGROUND_DONE)
    client = background_client(kind, server, tracker)
    with llmcost.budget("1", tracker=tracker) as limit:
        created = run(client.responses.create(model="gpt-4o-mini", input="hi", background=True))
        assert created.status == "queued"
        assert tracker.entries() == [] and (limit.reserved, limit.spent) == (0, 0)  # nothing billed yet: released
        assert run(client.responses.retrieve(created.id)).status == "in_progress"
        assert tracker.entries() == []
        assert run(client.responses.retrieve(created.id)).status == "completed"
        (entry,) = tracker.entries()
        assert run(client.responses.retrieve(created.id)).status == "completed"  # retrieved again: not billed again
        assert run(client.responses.retrieve(response_id=created.id)).status == "completed"
        assert tracker.entries() == [entry]
        assert limit.spent == entry.amount  # counted by the budget of the create
    assert (entry.model, entry.usage, entry.resource) == ("gpt-4o-mini", RESPONSE_USAGE, "openai.responses.create")
    assert entry.amount == llmcost.cost_of("gpt-4o-mini", usage=RESPONSE_USAGE)
    assert len(server.requests) == 5


@pytest.mark.parametrize("status", ["incomplete", "failed", "cancelled"])
def test_a_background_response_ended_otherwise_is_recorded_with_the_usage_it_reports(tracker, status):
    server = BackgroundServer({**BACKGROUND_DONE, "status": status})
    client = background_client("openai", server, tracker)
    client.responses.retrieve(client.responses.create(model="gpt-4o-mini", input="hi", background=True).id)
    (entry,) = tracker.entries()
    assert entry.usage == RESPONSE_USAGE


def test_a_background_response_is_recorded_with_the_tags_and_context_of_its_create(tracker):
    server = BackgroundServer()
    client = background_client("openai", server, tracker, tags=lambda **kwargs: {"input": kwargs["input"]})
    with llmcost.tags(team="search"):
        created = client.responses.create(model="gpt-4o-mini", input="hi", background=True)
    with llmcost.tags(team="other"):
        client.responses.retrieve(created.id)
    (entry,) = tracker.entries()
    assert dict(entry.tags) == {"team": "search", "input": "hi"}


def test_a_background_response_streamed_when_retrieved_is_recorded_once_it_ends(tracker):
    server = BackgroundServer()
    client = background_client("openai", server, tracker)
    created = client.responses.create(model="gpt-4o-mini", input="hi", background=True)
    with client.responses.stream(response_id=created.id) as stream:
        for _ in stream:
            pass
    (entry,) = tracker.entries()
    assert entry.usage == RESPONSE_USAGE
    client.responses.retrieve(created.id)
    for _ in client.responses.retrieve(created.id, stream=True):
        pass
    assert tracker.entries() == [entry]


def test_a_background_stream_cut_before_the_end_is_recorded_by_a_later_retrieve(tracker):
    server = BackgroundServer()
    client = background_client("async-openai", server, tracker)

    async def go() -> None:
        created = await client.responses.create(model="gpt-4o-mini", input="hi", background=True)
        stream = await client.responses.retrieve(created.id, stream=True)
        async for _ in stream:
            break  # left before the response finished: nothing to bill yet
        await stream.close()
        assert tracker.entries() == []
        await client.responses.retrieve(created.id)

    asyncio.run(go())
    (entry,) = tracker.entries()
    assert entry.usage == RESPONSE_USAGE


@pytest.mark.parametrize("resume", ["retrieve-stream", "stream-helper", "retrieve"])
@pytest.mark.parametrize("kind", ["openai", "async-openai"])
def test_a_background_stream_cut_before_its_response_finished_is_recorded_once_when_resumed(
    tracker, kind, resume, caplog
):
    # OpenAI's resumable streaming: the create's stream (``background=True, stream=True``) drops after its first
    # events; the response runs on, and a retrieve (a stream resumed ``starting_after`` the last event seen, or not)
    # finds it finished.
    server = BackgroundServer()
    client = background_client(kind, server, tracker)
    request = {"model": "gpt-4o-mini", "input": "hi", "background": True, "stream": True}

    async def go_async() -> None:
        last = [event.sequence_number async for event in await client.responses.create(**request)][-1]
        assert tracker.entries() == [] and (limit.reserved, limit.spent) == (0, 0)  # nothing billed yet: released
        if resume == "retrieve":
            await client.responses.retrieve("resp_bg")
        elif resume == "stream-helper":
            async with client.responses.stream(response_id="resp_bg", starting_after=last) as stream:
                async for _ in stream:
                    pass
        else:
            async for _ in await client.responses.retrieve("resp_bg", stream=True, starting_after=last):
                pass
        await client.responses.retrieve("resp_bg")  # retrieved again: not billed again

    def go() -> None:
        last = [event.sequence_number for event in client.responses.create(**request)][-1]
        assert tracker.entries() == [] and (limit.reserved, limit.spent) == (0, 0)
        if resume == "retrieve":
            client.responses.retrieve("resp_bg")
        elif resume == "stream-helper":
            with client.responses.stream(response_id="resp_bg", starting_after=last) as stream:
                for _ in stream:
                    pass
        else:
            for _ in client.responses.retrieve("resp_bg", stream=True, starting_after=last):
                pass
        client.responses.retrieve("resp_bg")

    with llmcost.budget("1", tracker=tracker) as limit:
        if kind.startswith("async"):
            asyncio.run(go_async())
        else:
            go()
        (entry,) = tracker.entries()
        assert limit.spent == entry.amount  # counted by the budget of the create
    assert (entry.model, entry.usage, entry.resource) == ("gpt-4o-mini", RESPONSE_USAGE, "openai.responses.create")
    assert not [r for r in caplog.records if "usage" in r.getMessage()]  # (no word of a missing include_usage)


def test_a_background_stream_left_by_its_reader_is_recorded_when_retrieved_finished(tracker):
    # Left after ``response.created`` (closed by its ``with``): in background mode the response runs on all the same.
    client = background_client("openai", BackgroundServer(), tracker)
    with client.responses.create(model="gpt-4o-mini", input="hi", background=True, stream=True) as stream:
        assert next(iter(stream)).type == "response.created"
    assert tracker.entries() == []
    client.responses.retrieve("resp_bg")
    (entry,) = tracker.entries()
    assert entry.usage == RESPONSE_USAGE


@pytest.mark.parametrize("ended", ["read out", "closed"])
def test_a_responses_stream_ended_without_usage_is_not_said_to_need_include_usage(tracker, caplog, ended):
    # A Responses stream reports usage unasked, in its last event: one that ended before it (not in background
    # mode, so nothing runs on to be fetched) records nothing, with no advice about chat's stream_options.
    created = {**RESPONSE, "status": "in_progress", "output": [], "usage": None}
    text = f"event: response.created\ndata: {json.dumps({'type': 'response.created', 'response': created})}\n\n"
    answer = httpx2.Response(200, text=text, headers={"content-type": "text/event-stream"})
    client = openai.OpenAI(api_key="k", http_client=httpx2.Client(transport=httpx2.MockTransport(lambda _: answer)))
    llmcost.instrument(client, tracker=tracker)
    with llmcost.budget("1", tracker=tracker) as limit:
        with client.responses.create(model="gpt-4o-mini", input="hi", stream=True) as stream:
            if ended == "read out":
                assert [event.type for event in stream] == ["response.created"]
        assert (limit.reserved, limit.spent) == (0, 0)
    assert tracker.entries() == []
    assert not llmcost._background.is_pending(RESPONSE["id"])  # (not in background mode: nothing waits for it)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "usage" in r.getMessage()]
    assert len(said) == (ended == "read out")  # (one closed before its end: a debug line)
    assert not [message for message in said if "include_usage" in message]


def test_a_response_not_created_in_background_here_is_not_recorded_when_retrieved(tracker):
    server = BackgroundServer()
    client = background_client("openai", server, tracker)
    assert client.responses.retrieve("resp_bg").status == "completed"  # created elsewhere: billed there
    assert client.responses.retrieve("resp_other").usage is not None
    assert tracker.entries() == []


def test_uninstrument_restores_retrieve(tracker):
    server = BackgroundServer()
    client = openai.OpenAI(api_key="k", http_client=httpx2.Client(transport=httpx2.MockTransport(server)))
    original = client.responses.retrieve
    llmcost.instrument(client, tracker=tracker)
    assert client.responses.retrieve != original
    llmcost.uninstrument(client)
    assert client.responses.retrieve == original and "retrieve" not in vars(client.responses)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_does_not_record_its_parents_background_responses(tracker):
    server = BackgroundServer()
    client = background_client("openai", server, tracker)
    created = client.responses.create(model="gpt-4o-mini", input="hi", background=True)

    def in_child() -> int:
        client.responses.retrieve(created.id)  # the parent's: its own retrieve records it
        return len(tracker.entries())

    assert answer_of_forked_child(in_child) == 0
    client.responses.retrieve(created.id)
    assert len(tracker.entries()) == 1


# -- instrumenting again, cached wrappers, copies, endpoints (found by review) ------------------------------------
def test_instrumenting_again_while_threads_use_the_client_records_every_request(server, tracker):
    # Instrumenting again undid every patch before patching anew: a request from another thread in between reached
    # the bare SDK method, unrecorded and unchecked by budgets (114-152 of ~800 requests). Each method is now
    # replaced in one step.
    client = llmcost.instrument(make("openai", server), tracker=tracker)
    stop = threading.Event()

    def call() -> None:
        while not stop.is_set():
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    workers = [threading.Thread(target=call) for _ in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # (the threads switch often: some land between two steps of instrument())
    try:
        for worker in workers:
            worker.start()
        for i in range(1500):
            llmcost.instrument(client, tracker=tracker, tags={"round": str(i % 2)})
    finally:
        stop.set()
        sys.setswitchinterval(interval)
        for worker in workers:
            worker.join()
    assert server.count > 0
    assert len(tracker.entries()) == server.count


@pytest.mark.parametrize(
    "path", [("with_raw_response", "chat", "completions"), ("chat", "with_raw_response", "completions")]
)
def test_raw_response_wrappers_of_the_client_made_before_instrumenting_are_made_again(server, tracker, path):
    # The SDKs make a client's and a resource's with_raw_response once (a cached property) around the methods as
    # they were: reached before instrument() from the client or from client.chat, it sent requests unrecorded and
    # unchecked; reached while instrumented, it kept recording after uninstrument().
    client = make("openai", server)

    def create() -> None:
        wrapped = client
        for part in path:
            wrapped = getattr(wrapped, part)
        wrapped.create(model="gpt-4o", messages=MESSAGES).parse()

    create()  # (the wrappers made, before instrumenting)
    llmcost.instrument(client, tracker=tracker)
    create()
    assert len(tracker.entries()) == 1
    llmcost.uninstrument(client)
    create()
    assert len(tracker.entries()) == 1
    assert server.count == 3


def test_anthropic_client_level_raw_wrappers_made_before_instrumenting_are_made_again(server, tracker):
    client = make("anthropic", server)
    client.with_raw_response.messages  # noqa: B018 - (made before instrumenting)
    client.beta.with_raw_response.messages  # noqa: B018
    llmcost.instrument(client, tracker=tracker)
    client.with_raw_response.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=10, messages=MESSAGES)
    client.beta.with_raw_response.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=10, messages=MESSAGES)
    assert len(tracker.entries()) == server.count == 2


def test_a_copy_with_another_base_url_is_priced_as_its_own_host(server, tracker):
    # The copy got the original client's host as if the user had named it (provider="openai"): Groq's model then
    # read unpriced ($0, and budgets never counted it). Each copy finds its own host from its own base URL.
    def any_host(request: httpx2.Request) -> httpx2.Response:
        server.requests.append(request)
        body = dict(CHAT, model="openai/gpt-oss-120b", usage={"prompt_tokens": 1_000_000, "completion_tokens": 0})
        return httpx2.Response(200, json=body)

    client = openai.OpenAI(api_key="k", http_client=httpx2.Client(transport=httpx2.MockTransport(any_host)))
    llmcost.instrument(client, tracker=tracker)
    groq = client.with_options(base_url="https://api.groq.com/openai/v1")
    groq.chat.completions.create(model="openai/gpt-oss-120b", messages=[{"role": "user", "content": "hi"}])
    (entry,) = tracker.entries()
    assert (entry.provider, entry.amount) == ("groq", Decimal("0.15"))
    assert str(server.requests[0].url).startswith("https://api.groq.com/")


@pytest.mark.parametrize("kind", ["openai", "async-openai"])
def test_responses_compact_and_beta_responses_are_recorded_and_checked(server, tracker, kind):
    # A compaction pass is billed by its usage and names no model: priced as the request's model. The beta
    # Responses resource posts to the same endpoint as responses.create.
    client = llmcost.instrument(make(kind, server), tracker=tracker)
    if not hasattr(client.responses, "compact") or not hasattr(client.beta, "responses"):
        pytest.skip("this openai has no responses.compact or beta.responses")
    run(client.responses.compact(model="gpt-4o-mini", input="a long conversation"))
    run(client.beta.responses.create(model="gpt-4o-mini", input="hi"))
    compacted, beta = tracker.entries()
    priced = llmcost.cost_of("gpt-4o-mini", usage=RESPONSE_USAGE)
    assert (compacted.model, compacted.usage, compacted.amount) == ("gpt-4o-mini", RESPONSE_USAGE, priced)
    assert compacted.resource == "openai.responses.compact"
    assert (beta.amount, beta.resource) == (priced, "openai.beta.responses.create")
    sent = server.count
    with pytest.raises(BudgetExceeded), llmcost.budget(Decimal("0.000001"), tracker=tracker):
        run(client.responses.compact(model="gpt-4o-mini", input="a long conversation"))
    assert server.count == sent


def test_a_stream_settled_by_a_collection_as_the_tracker_starts_its_writer_does_not_hang(tmp_path, server):
    # An unfinished tracked stream is settled by its finalizer, wherever a garbage collection frees it. A tracker
    # over a file store starts its writer on its first entry, under a lock; freed there, the stream's settlement
    # recorded an entry, found no writer yet, and waited for that lock, held by its own thread, for good.
    import gc

    tracker = llmcost.CostTracker(llmcost.ParquetStore(tmp_path / "costs"))
    client = llmcost.instrument(make("anthropic", server), tracker=tracker)
    held = [client.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=10, messages=MESSAGES, stream=True)]
    next(iter(held[0]))  # (the input tokens known; then left unfinished)

    def free_the_stream_as_the_writer_starts(phase, info) -> None:
        if phase == "start" and held and tracker._start_lock.locked():
            held.pop()

    def first_call() -> None:
        client.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=10, messages=MESSAGES)

    gc.callbacks.append(free_the_stream_as_the_writer_starts)
    threshold = gc.get_threshold()
    gc.set_threshold(1)
    try:
        calling = threading.Thread(target=first_call, daemon=True)
        calling.start()
        calling.join(10)
    finally:
        gc.callbacks.remove(free_the_stream_as_the_writer_starts)
        gc.set_threshold(*threshold)
    assert not calling.is_alive(), "the tracker's first write waited for itself"
    assert not held, "no collection freed the stream as the writer started"
    tracker.flush()
    assert len(tracker.entries()) == 2  # (the abandoned stream's input tokens, and the call)
    tracker.close()
