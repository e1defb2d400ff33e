"""SDK streams tracked in place (``_streams``): every way out of a stream, read to its end, left part way, closed
unread through whichever object the SDK closes, settles its budget reservation at once and records at most one
entry. Real OpenAI and Anthropic clients over canned HTTP (``tests/test_instrument.py``'s servers)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from decimal import Decimal

import anthropic
import httpx2
import pydantic
import pytest

import llmcost
from llmcost import Usage, _streams
from tests.test_instrument import (
    ALL_KINDS,
    CHAT_SSE_COST,
    MESSAGE_USAGE,
    MESSAGES,
    RESPONSE_USAGE,
    NetworkServer,
    make,
    run,
)

SYNC_AND_ASYNC = ["openai", "async-openai"]


@pytest.fixture
def network() -> NetworkServer:
    return NetworkServer()  # bodies read in small pieces, as the caller reads them


@pytest.fixture
def no_gc() -> Iterator[None]:
    """No garbage collection in the test: what it settles is settled by the SDK's own calls, not by a collection
    that happened to run."""
    enabled = gc.isenabled()
    gc.disable()
    yield
    if enabled:
        gc.enable()


def stream_helper(client, api: str):
    """OpenAI's ``.stream()`` helper of ``api`` (``"chat"`` or ``"responses"``): a manager the SDK makes."""
    if api == "chat":
        return client.chat.completions.stream(model="gpt-4o", messages=MESSAGES, stream_options={"include_usage": True})
    return client.responses.stream(model="gpt-4o-mini", input="hi")


# -- OpenAI's .stream() helpers close the HTTP response, not the Stream -------------------------------------------
@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("kind", SYNC_AND_ASYNC)
def test_an_openai_stream_helper_left_unread_releases_its_reservation_at_once(network, tracker, kind, api, no_gc):
    client = llmcost.instrument(make(kind, network), tracker=tracker)
    with llmcost.budget("1", tracker=tracker) as limit:
        if kind.startswith("async"):

            async def leave() -> None:
                async with stream_helper(client, api):
                    assert limit.reserved > 0
                    raise TimeoutError("gave up before reading")

            with pytest.raises(TimeoutError):
                asyncio.run(leave())
        else:

            def leave() -> None:
                with stream_helper(client, api):
                    assert limit.reserved > 0
                    raise TimeoutError("gave up before reading")

            with pytest.raises(TimeoutError):
                leave()
        assert (limit.reserved, limit.spent) == (0, 0)  # nothing spent, nothing held: the next call has the room
    assert tracker.entries() == []


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("kind", SYNC_AND_ASYNC)
def test_an_openai_stream_helper_left_after_a_break_settles_at_its_exit(network, tracker, kind, api, no_gc):
    client = llmcost.instrument(make(kind, network), tracker=tracker)
    with llmcost.budget("1", tracker=tracker) as limit:
        if kind.startswith("async"):

            async def go() -> None:
                async with stream_helper(client, api) as stream:
                    async for _ in stream:
                        break  # the first event only: the usage comes in the last
                assert (limit.reserved, limit.spent) == (0, 0)  # at the exit, not as the loop ends

            asyncio.run(go())
        else:
            with stream_helper(client, api) as stream:
                for _ in stream:
                    break
        assert (limit.reserved, limit.spent) == (0, 0)
    assert tracker.entries() == []


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("kind", SYNC_AND_ASYNC)
def test_an_openai_stream_helper_read_to_its_end_is_recorded_once(network, tracker, kind, api):
    client = llmcost.instrument(make(kind, network), tracker=tracker)
    with llmcost.budget("1", tracker=tracker) as limit:
        if kind.startswith("async"):

            async def go() -> None:
                async with stream_helper(client, api) as stream:
                    async for _ in stream:
                        pass
                    await stream.close()  # closed again: nothing more

            asyncio.run(go())
        else:
            with stream_helper(client, api) as stream:
                for _ in stream:
                    pass
                stream.close()
            del stream
        gc.collect()  # the stream freed: nothing more either
        (entry,) = tracker.entries()
        assert (limit.reserved, limit.spent) == (0, entry.amount)
    assert entry.usage == (Usage(1000, 100) if api == "chat" else RESPONSE_USAGE)


@pytest.mark.parametrize("kind", SYNC_AND_ASYNC)
def test_a_stream_true_response_whose_http_response_is_closed_unread_releases_at_once(network, tracker, kind, no_gc):
    client = llmcost.instrument(make(kind, network), tracker=tracker)
    request = {"model": "gpt-4o", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    with llmcost.budget("1", tracker=tracker) as limit:
        if kind.startswith("async"):

            async def go() -> None:
                stream = await client.chat.completions.create(**request)
                await stream.response.aclose()

            asyncio.run(go())
        else:
            client.chat.completions.create(**request).response.close()
        assert (limit.reserved, limit.spent) == (0, 0)
    assert tracker.entries() == []


# -- with_raw_response(stream=True): the stream parse() makes closes the HTTP response -------------------------------
@pytest.mark.parametrize("how", ["unread", "break", "end"])
def test_the_stream_of_a_raw_response_settles_when_it_is_closed(network, tracker, how, no_gc):
    client = llmcost.instrument(make("openai", network), tracker=tracker)
    with llmcost.budget("1", tracker=tracker) as limit:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        stream = raw.parse()
        for _ in stream if how != "unread" else ():
            if how == "break":
                break  # the first chunk only: the usage comes in the last
        stream.close()
        spent = CHAT_SSE_COST if how == "end" else Decimal(0)
        assert (limit.reserved, limit.spent) == (0, spent)  # the raw response is still referenced: settled by close
    assert len(tracker.entries()) == (1 if how == "end" else 0)


# -- stream=True responses never read: settled when freed -----------------------------------------------------------
def create_stream(client, kind: str):
    """A ``stream=True`` request of ``kind``'s client (a coroutine for an async one)."""
    if "openai" in kind:
        return client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    return client.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=100, messages=MESSAGES, stream=True)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_stream_never_read_releases_its_reservation_when_it_is_freed(network, tracker, kind, no_gc):
    client = llmcost.instrument(make(kind, network), tracker=tracker)
    with llmcost.budget("1", tracker=tracker) as limit:

        async def drop() -> None:
            stream = await create_stream(client, kind)
            assert limit.reserved > 0
            del stream  # never read: e.g. the caller found the answer in a cache meanwhile
            if "openai" in kind:
                # OpenAI's ``Stream`` refers to itself (its iterator is a generator of its own method): freed by a
                # collection. Anthropic's does not: freed at once.
                gc.collect()
            assert (limit.reserved, limit.spent) == (0, 0)

        if kind.startswith("async"):
            asyncio.run(drop())
        else:
            stream = create_stream(client, kind)
            assert limit.reserved > 0
            del stream
            if "openai" in kind:
                gc.collect()
            assert (limit.reserved, limit.spent) == (0, 0)
    assert tracker.entries() == []
    assert network.count == 1


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_stream_read_to_its_end_then_freed_is_recorded_once(network, tracker, kind):
    client = llmcost.instrument(make(kind, network), tracker=tracker)
    expected = Usage(1000, 100) if "openai" in kind else MESSAGE_USAGE
    with llmcost.budget("1", tracker=tracker) as limit:

        async def read() -> None:
            stream = await create_stream(client, kind)
            async for _ in stream:
                pass
            await stream.close()

        if kind.startswith("async"):
            asyncio.run(read())
        else:
            stream = create_stream(client, kind)
            for _ in stream:
                pass
            stream.close()
            del stream
        gc.collect()
        (entry,) = tracker.entries()  # its end, its close and its finalizer: one entry
        assert (limit.reserved, limit.spent, entry.usage) == (0, entry.amount, expected)


# -- Anthropic's messages.stream(): a request that fails as the manager is entered -----------------------------------
def overloaded(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(529, json={"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})


@pytest.mark.parametrize("kind", ["anthropic", "async-anthropic"])
def test_a_stream_manager_whose_request_fails_releases_its_reservation_while_the_error_is_kept(tracker, kind, no_gc):
    sync = kind == "anthropic"
    client_class = anthropic.Anthropic if sync else anthropic.AsyncAnthropic
    http = (httpx2.Client if sync else httpx2.AsyncClient)(transport=httpx2.MockTransport(overloaded))
    client = llmcost.instrument(client_class(api_key="k", max_retries=0, http_client=http), tracker=tracker)
    request = {"model": "claude-3-5-sonnet-20241022", "max_tokens": 100, "messages": MESSAGES}
    errors = []  # a retry loop keeping its errors: their tracebacks hold the managers
    with llmcost.budget("0.0025", tracker=tracker) as limit:  # room for one such request (~$0.0015) at a time
        for _ in range(3):  # each attempt has the room: the failed ones hold nothing
            try:
                if sync:
                    with client.messages.stream(**request):
                        pass
                else:

                    async def attempt() -> None:
                        async with client.messages.stream(**request):
                            pass

                    asyncio.run(attempt())
            except anthropic.APIStatusError as error:
                errors.append(error)
            assert (limit.reserved, limit.spent) == (0, 0)
        assert [e.status_code for e in errors] == [529, 529, 529]  # none refused by the budget
        del errors
        gc.collect()  # the managers freed: released once, not again
        assert (limit.reserved, limit.spent) == (0, 0)
    assert tracker.entries() == []


# -- hooking never breaks the call -----------------------------------------------------------------------------------
class _SealedResponse:
    """An HTTP response that takes no attribute (``__slots__``): its close cannot be hooked."""

    __slots__ = ("closed",)

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class _Stream:
    """A stream of the SDKs' shape: an ``_iterator``, a ``close``, a ``response``."""

    def __init__(self, chunks: list[object]) -> None:
        self._iterator = iter(chunks)
        self.response = _SealedResponse()

    def __iter__(self):
        yield from self._iterator

    def close(self) -> None:
        self.response.close()


def test_a_response_whose_close_cannot_be_hooked_leaves_the_stream_tracked_by_its_end_and_close():
    ended: list[tuple[object, bool]] = []
    stream = _Stream([{"usage": {"prompt_tokens": 1, "completion_tokens": 2}}])
    assert _streams.hook_stream(stream, lambda usage, read_out, seen: ended.append((usage, read_out))) is stream
    assert len(list(stream)) == 1 and len(ended) == 1 and ended[0][1]  # (read to its end)
    stream.close()  # settled already: not again
    assert stream.response.closed and len(ended) == 1


@pytest.mark.parametrize("kind", SYNC_AND_ASYNC)
def test_a_stream_read_after_its_budget_and_tags_blocks_is_counted_and_tagged_as_made(network, tracker, kind):
    # The web pattern: a handler makes the stream inside ``with budget(...)``/``with tags(...)`` and returns it; the
    # framework reads it after both blocks ended. The call counts against the budget that let it through, with the
    # tags it was made under, so the budget's limit holds across such calls.
    client = llmcost.instrument(make(kind, network), tracker=tracker)
    limit = llmcost.budget(CHAT_SSE_COST * 2, tracker=tracker)
    request = {"model": "gpt-4o", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    estimate = {"max_tokens": 100}  # (its estimate fits the room left by each call before it)

    def handler():
        with limit, llmcost.tags(team="search"):
            return client.chat.completions.create(**request, **estimate)

    async def async_handler():
        with limit, llmcost.tags(team="search"):
            return await client.chat.completions.create(**request, **estimate)

    async def read_async() -> None:
        stream = await async_handler()
        async for _ in stream:
            pass

    for _ in range(2):
        if kind.startswith("async"):
            asyncio.run(read_async())
        else:
            for _ in handler():
                pass
    assert [dict(entry.tags) for entry in tracker.entries()] == [{"team": "search"}] * 2
    assert (limit.spent, limit.reserved) == (CHAT_SSE_COST * 2, 0)
    with pytest.raises(llmcost.BudgetExceeded):
        run(async_handler() if kind.startswith("async") else handler())  # nothing left: refused before it is sent
    assert len(network.requests) == 2


# -- LiteLLM's stream, returned by a @track_cost function --------------------------------------------------------------
# litellm is not in the dev extra: its stream is rebuilt here in its shape (1.110), over a real OpenAI stream, as
# LiteLLM's OpenAI provider wraps the SDK's; recognised, as LiteLLM's responses are, by its class's package and name.
class ModelResponseStream(pydantic.BaseModel):
    """LiteLLM's chunk (``litellm.types.utils``): the OpenAI chunk's fields, ``usage`` on the last one only."""

    model_config = pydantic.ConfigDict(extra="allow")


ModelResponseStream.__module__ = "litellm.types.utils"


class CustomStreamWrapper:
    """What ``litellm.completion(stream=True)`` and ``litellm.acompletion(stream=True)`` both return: one class read
    by ``for`` or ``async for``, over the provider's stream (``completion_stream``), each chunk re-made as a
    ``ModelResponseStream``; closed by ``close()``/``aclose()`` or as a context manager; no ``_iterator``."""

    __module__ = "litellm.litellm_core_utils.streaming_handler"

    def __init__(self, completion_stream) -> None:
        self.completion_stream = completion_stream

    def __iter__(self):
        return self

    def __aiter__(self):
        return self

    def __next__(self) -> ModelResponseStream:
        return ModelResponseStream(**next(self.completion_stream).model_dump(exclude_none=True))

    async def __anext__(self) -> ModelResponseStream:
        chunk = await self.completion_stream.__anext__()
        return ModelResponseStream(**chunk.model_dump(exclude_none=True))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def close(self) -> None:
        self.completion_stream.close()

    async def aclose(self) -> None:
        await self.completion_stream.close()


def litellm_completion(kind: str, network: NetworkServer, tracker):
    """A ``@track_cost`` function returning LiteLLM's stream of a chat completion, as
    ``return litellm.completion(model=..., stream=True, stream_options={"include_usage": True})`` does (or
    ``acompletion``, awaited, for ``kind`` async)."""
    client = make(kind, network)
    request = {"model": "gpt-4o", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}

    if kind.startswith("async"):

        @llmcost.track_cost(tracker=tracker)
        async def acompletion() -> CustomStreamWrapper:
            return CustomStreamWrapper(await client.chat.completions.create(**request))

        return acompletion

    @llmcost.track_cost(tracker=tracker)
    def completion() -> CustomStreamWrapper:
        return CustomStreamWrapper(client.chat.completions.create(**request))

    return completion


@pytest.mark.parametrize("kind", SYNC_AND_ASYNC)
def test_a_litellm_stream_returned_by_a_tracked_function_is_recorded_when_read_and_counted_by_budgets(
    network, tracker, kind
):
    completion = litellm_completion(kind, network, tracker)

    async def read_async() -> list[object]:
        return [chunk async for chunk in await completion()]

    with llmcost.budget("1", tracker=tracker) as limit:
        chunks = asyncio.run(read_async()) if kind.startswith("async") else list(completion())
        assert [type(chunk) for chunk in chunks] == [ModelResponseStream] * 3  # (read as it was: LiteLLM's chunks)
        assert (limit.spent, limit.reserved) == (CHAT_SSE_COST, 0)
    (entry,) = tracker.entries()
    assert (entry.model, entry.usage, entry.amount) == ("gpt-4o-2024-08-06", Usage(1000, 100), CHAT_SSE_COST)


@pytest.mark.parametrize("kind", SYNC_AND_ASYNC)
def test_a_litellm_stream_closed_before_its_usage_records_nothing_and_releases_its_reservation(
    network, tracker, kind, no_gc
):
    completion = litellm_completion(kind, network, tracker)

    async def leave_async() -> None:
        async with await completion() as stream:
            async for _ in stream:
                break  # the first chunk only: the usage comes in the last

    with llmcost.budget("1", tracker=tracker) as limit:
        if kind.startswith("async"):
            asyncio.run(leave_async())
        else:
            with completion() as stream:
                for _ in stream:
                    break
        assert (limit.spent, limit.reserved) == (0, 0)
    assert tracker.entries() == []
