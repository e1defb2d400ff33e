"""@track_cost on every kind of callable, with dict results, real SDK clients and streams."""

from __future__ import annotations

import asyncio
import json
import logging
from decimal import Decimal

import httpx2
import openai
import pytest

import llmcost
from llmcost import CostCategory, CostTracker, Usage, track_cost


def chat(model="gpt-4o", prompt=100, completion=20):
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


GPT4O_100_20 = Decimal("0.00045")  # 100 input at $2.50 + 20 output at $10 per MTok


def test_bare_decorator_records_from_the_default_tracker():
    @track_cost
    def ask(q):
        """Ask."""
        return chat()

    assert ask("x")["model"] == "gpt-4o"
    assert ask.__name__ == "ask" and ask.__doc__ == "Ask." and ask.__wrapped__ is not None
    (entry,) = llmcost.get_tracker().entries()
    assert entry.amount == GPT4O_100_20
    assert entry.resource.endswith("ask")
    assert entry.latency_ms is not None and entry.latency_ms >= 0
    assert entry.category is CostCategory.LLM_INFERENCE


def test_called_decorator_options(tracker):
    @track_cost(resource="bot", category="llm_inference", tags={"team": "a"}, tracker=tracker)
    def ask():
        return chat(model="gpt-4o-mini")

    ask()
    (e,) = tracker.entries()
    assert (e.resource, e.model, dict(e.tags)) == ("bot", "gpt-4o-mini", {"team": "a"})


def test_tags_callable_gets_the_call_arguments(tracker):
    @track_cost(tracker=tracker, tags=lambda user, **kw: {"user": user, "mode": kw.get("mode", "x")})
    def ask(user, mode="y"):
        return chat()

    ask("ann", mode="fast")
    assert tracker.entries()[0].tags == {"user": "ann", "mode": "fast"}


@pytest.mark.parametrize(
    "tags", [lambda user: {"user": user}, lambda user: {"team": {}[user]}], ids=["not-a-str", "raises"]
)
def test_a_failing_tags_callable_is_logged_once_and_the_call_recorded_and_checked(tracker, caplog, tags):
    # A tags= callable that fails (a value that is not a str, a lookup that raises) is the user's code failing
    # inside tracking: logged once, and the call recorded and budget-checked as usual, without those tags.
    @track_cost(tracker=tracker, tags=tags, estimate=GPT4O_100_20)
    def ask(user):
        return chat()

    with caplog.at_level(logging.WARNING, logger="llmcost"), llmcost.budget(GPT4O_100_20 * 2, tracker=tracker) as b:
        ask(42)
        ask(42)
        with pytest.raises(llmcost.BudgetExceeded):
            ask(42)
    assert b.spent == GPT4O_100_20 * 2
    assert [dict(e.tags) for e in tracker.entries()] == [{}, {}]
    assert sum("tags= callable" in r.getMessage() for r in caplog.records) == 1  # once per cause


def test_usage_callable_and_model_override(tracker):
    @track_cost(tracker=tracker, model="gpt-4o", usage=lambda r: Usage(input_tokens=r["n"]))
    def ask():
        return {"n": 1_000_000}

    ask()
    assert tracker.entries()[0].amount == Decimal("2.5")


def test_methods_are_tracked(tracker):
    class Bot:
        @track_cost(tracker=tracker)
        def ask(self, q):
            return chat()

    assert Bot().ask("q")["object"] == "chat.completion"
    assert tracker.entries()[0].resource == "test_methods_are_tracked.<locals>.Bot.ask"


def test_exceptions_propagate_unchanged_and_record_nothing(tracker):
    class Boom(Exception):
        pass

    @track_cost(tracker=tracker)
    def ask():
        raise Boom("no")

    with pytest.raises(Boom, match="no"):
        ask()
    assert tracker.entries() == []


def test_tracking_failure_never_breaks_the_call(tracker, caplog):
    @track_cost(tracker=tracker, usage=lambda r: 1 / 0)
    def ask():
        return "answer"

    with caplog.at_level(logging.WARNING, logger="llmcost"):
        assert ask() == "answer"
        assert ask() == "answer"
    assert tracker.entries() == []  # (nor does "answer" carry any usage to fall back on)
    assert sum("usage= callable" in r.getMessage() for r in caplog.records) == 1  # once per cause


def test_a_usage_callable_is_given_whatever_the_function_returns_none_included(tracker):
    # A function whose result carries nothing (None, a string) is priced from ``usage=`` and ``model=`` alone.
    for result in (None, "ok", 3):
        track_cost(tracker=tracker, model="gpt-4o", usage=lambda r: Usage(1000, 100))(lambda r=result: r)()
    assert [e.amount for e in tracker.entries()] == [Decimal("0.0035")] * 3


def test_a_failing_usage_callable_falls_back_to_the_usage_read_from_the_result(tracker, caplog):
    # As a failing tags= or estimate= callable: logged once, and the call tracked as with no usage= (not lost).
    @track_cost(tracker=tracker, usage=lambda r: r["no such key"])
    def ask():
        return chat()

    with caplog.at_level(logging.WARNING, logger="llmcost"):
        ask()
    (entry,) = tracker.entries()
    assert (entry.model, entry.usage, entry.amount) == ("gpt-4o", Usage(100, 20), GPT4O_100_20)
    assert sum("usage= callable" in r.getMessage() for r in caplog.records) == 1


def test_unknown_model_in_the_decorator_is_recorded_unpriced_even_under_raise(clock):
    strict = CostTracker(clock=clock, on_unknown_model="raise")

    @track_cost(tracker=strict)
    def ask():
        return chat(model="totally-new-model")

    assert ask()["model"] == "totally-new-model"
    (e,) = strict.entries()
    assert e.pricing == "unpriced" and e.amount == 0


def test_store_down_never_breaks_the_call_and_keeps_the_entry(clock):
    from tests.test_tracker import BufferedStore

    store = BufferedStore(failures=1)
    t = CostTracker(store, clock=clock, batch_size=1, flush_interval=60)

    @track_cost(tracker=t)
    def ask():
        return chat()

    assert ask()["model"] == "gpt-4o"  # the write happens on the background writer, and fails there
    assert store.appended.wait(10) and store.failures == 0
    t.flush()  # the entry was kept for the next write
    assert store.total() == GPT4O_100_20


def test_result_without_usage_records_nothing_and_says_so(tracker, caplog):
    @track_cost(tracker=tracker)
    def ask():
        return "plain text"

    with caplog.at_level(logging.WARNING, logger="llmcost"):
        ask()
    assert tracker.entries() == []
    assert any("no usage" in r.getMessage() for r in caplog.records)


def test_async_functions(tracker):
    @track_cost(tracker=tracker)
    async def ask():
        await asyncio.sleep(0)
        return chat()

    async def main():
        return await asyncio.gather(*(ask() for _ in range(10)))

    assert len(asyncio.run(main())) == 10
    assert tracker.summary().total == GPT4O_100_20 * 10


def test_generators_record_once_with_summed_usage(tracker):
    # No usage=: the built-in accumulator reads Anthropic's events as they stream. message_start carries the input
    # and cache counts, each message_delta the output count so far (cumulative), so the last one is the total.
    @track_cost(tracker=tracker)
    def stream():
        yield {
            "type": "message_start",
            "message": {
                "model": "claude-3-5-sonnet-20241022",
                "usage": {"input_tokens": 100, "cache_read_input_tokens": 1000, "output_tokens": 1},
            },
        }
        yield {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hel"}}
        yield {"type": "message_delta", "usage": {"output_tokens": 15}}
        yield {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "lo"}}
        yield {"type": "message_delta", "usage": {"output_tokens": 40}}
        yield {"type": "message_stop"}

    assert len(list(stream())) == 6
    (e,) = tracker.entries()
    assert e.model == "claude-3-5-sonnet-20241022" and e.provider == "anthropic"
    assert e.usage == Usage(input_tokens=1100, output_tokens=40, cache_read_tokens=1000)
    # Anthropic's list prices for Claude 3.5 Sonnet: $3 input, $0.30 cache read, $15 output per MTok.
    assert e.amount == Decimal("0.0003") + Decimal("0.0003") + Decimal("0.0006")


def test_openai_chunk_generators_take_usage_from_the_last_chunk(tracker):
    @track_cost(tracker=tracker)
    def stream():
        for text in ("a", "b", "c"):
            yield {"model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": text}}]}
        yield {"model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 20}}

    assert len(list(stream())) == 4
    (e,) = tracker.entries()
    assert (e.model, e.usage, e.amount) == ("gpt-4o", Usage(100, 20), GPT4O_100_20)


def test_generator_usage_callable_gets_every_chunk(tracker):
    @track_cost(tracker=tracker, model="gpt-4o", usage=lambda chunks: Usage(input_tokens=100 * len(chunks)))
    def stream():
        yield "a"
        yield "b"

    assert list(stream()) == ["a", "b"]
    (e,) = tracker.entries()
    assert e.usage.input_tokens == 200


def test_generator_closed_early_still_records(tracker):
    @track_cost(tracker=tracker, model="gpt-4o", usage=lambda chunks: Usage(input_tokens=len(chunks)))
    def stream():
        yield from range(10)

    g = stream()
    next(g)
    next(g)
    g.close()
    assert tracker.entries()[0].usage.input_tokens == 2


def test_async_generators(tracker):
    @track_cost(tracker=tracker, model="gpt-4o", usage=lambda chunks: Usage(output_tokens=len(chunks)))
    async def stream():
        for i in range(3):
            yield i

    async def main():
        return [c async for c in stream()]

    assert asyncio.run(main()) == [0, 1, 2]
    assert tracker.entries()[0].usage.output_tokens == 3


MESSAGE_START = {
    "type": "message_start",
    "message": {"model": "claude-3-5-sonnet-20241022", "usage": {"input_tokens": 1100, "output_tokens": 1}},
}


def test_an_async_generator_cancelled_mid_stream_records_the_usage_seen(tracker):
    # A consumer's timeout cancels the task while the generator waits for its next event: the request was made and
    # its input counted, so the entry is recorded (as when the generator is closed there) and the reservation settled.
    @track_cost(tracker=tracker, estimate="0.01")
    async def stream(never):
        yield MESSAGE_START
        await never.wait()  # the next event never comes
        yield {"type": "message_delta", "usage": {"output_tokens": 40}}

    async def main():
        never, seen = asyncio.Event(), []

        async def consume():
            async for event in stream(never):
                seen.append(event)

        with llmcost.budget("1", tracker=tracker) as b:
            task = asyncio.create_task(consume())
            while not seen:
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return b

    b = asyncio.run(main())
    (e,) = tracker.entries()
    assert e.usage == Usage(input_tokens=1100, output_tokens=1)
    assert b.reserved == 0 and b.spent == e.amount


@pytest.mark.parametrize("how", ["raised inside", "thrown in"])
def test_a_generator_ended_by_an_exception_records_the_usage_it_yielded(tracker, how):
    # A dropped connection inside the generator (raised there), or an exception a ``with`` body raises into a
    # ``@contextmanager`` stacked on it (thrown in): the request was made and its input counted, so the usage seen is
    # recorded and the budget counts it, as a closed generator's and a hooked SDK stream's is. Nothing was recorded
    # and the reservation released: billed spend the budget never saw.
    @track_cost(tracker=tracker, estimate="0.01")
    def stream():
        yield MESSAGE_START
        if how == "raised inside":
            raise ConnectionError("peer closed connection without sending complete message body")
        yield {"type": "message_delta", "usage": {"output_tokens": 40}}

    def end(started):
        if how == "raised inside":
            return next(started)
        return started.throw(ValueError("the with body failed"))

    with llmcost.budget("1", tracker=tracker) as b:
        started = stream()
        assert next(started) == MESSAGE_START
        with pytest.raises((ConnectionError, ValueError)):
            end(started)
    (e,) = tracker.entries()
    assert e.usage == Usage(input_tokens=1100, output_tokens=1)
    assert b.reserved == 0 and b.spent == e.amount


def test_an_async_generator_ended_by_an_exception_records_the_usage_it_yielded(tracker):
    @track_cost(tracker=tracker, estimate="0.01")
    async def stream():
        yield MESSAGE_START
        raise ConnectionError("dropped")

    async def main():
        with llmcost.budget("1", tracker=tracker) as b, pytest.raises(ConnectionError):
            async for _ in stream():
                pass
        return b

    b = asyncio.run(main())
    (e,) = tracker.entries()
    assert e.usage == Usage(input_tokens=1100, output_tokens=1)
    assert b.reserved == 0 and b.spent == e.amount


def test_a_generator_that_ends_early_before_any_usage_releases_quietly(tracker, caplog):
    # Closed, failed or cancelled before it yielded any usage: nothing is recorded, the reservation is released, and
    # no warning says the generator returned something without usage (it was only stopped early).
    @track_cost(tracker=tracker, estimate="0.01")
    async def stream(never):
        await never.wait()
        yield MESSAGE_START

    async def main():
        with llmcost.budget("1", tracker=tracker) as b:
            task = asyncio.create_task(stream(asyncio.Event()).__anext__())
            await asyncio.sleep(0)
            assert b.reserved == Decimal("0.01")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return b

    with caplog.at_level(logging.WARNING, logger="llmcost"):
        b = asyncio.run(main())
    assert tracker.entries() == [] and b.reserved == 0 and b.spent == 0
    assert not [r for r in caplog.records if "usage" in r.getMessage()]


def test_a_generator_keeps_the_generator_protocol(tracker):
    # Tracking changes nothing the user's code computes: send() reaches the generator, throw() is its to handle,
    # and its return value is what ``yield from`` gets.
    first = chat()

    def talk():
        reply = yield first
        try:
            yield f"got {reply}"
        except KeyError as exc:
            yield f"caught {exc.args[0]}"
        return "summary"

    tracked = track_cost(tracker=tracker)(talk)
    for make in (talk, tracked):
        gen = make()
        assert next(gen) is first
        assert gen.send("hello") == "got hello"
        assert gen.throw(KeyError("k")) == "caught k"
        with pytest.raises(StopIteration) as stop:
            next(gen)
        assert stop.value.value == "summary"

    def caller():
        return (yield from tracked())

    out = caller()
    assert next(out) is first and out.send("hi") == "got hi"
    with pytest.raises(StopIteration) as stop:
        next(out)
    assert stop.value.value == "summary"
    assert [e.amount for e in tracker.entries()] == [GPT4O_100_20, GPT4O_100_20]


_CHUNK = {"model": "gpt-4o", "usage": {"prompt_tokens": 4000, "completion_tokens": 0, "total_tokens": 4000}}


@pytest.mark.parametrize("cleanup", ["raises", "yields again"])
def test_a_generator_whose_cleanup_fails_as_it_is_closed_still_records_what_was_read(tracker, cleanup):
    # The wrapper closes the user's generator itself (as ``yield from`` does): an error its ``finally`` raises then
    # reaches the consumer, and the usage already read is still the call's, recorded and counted once.
    @track_cost(tracker=tracker, estimate="0.02")
    def stubborn():
        try:
            yield _CHUNK
            yield _CHUNK
        finally:
            if cleanup == "raises":
                raise ConnectionError("cleanup failed")
            yield _CHUNK  # "generator ignored GeneratorExit"

    with llmcost.budget("1", tracker=tracker) as b:
        stream = stubborn()
        next(stream)
        with pytest.raises(ConnectionError if cleanup == "raises" else RuntimeError):
            stream.close()
        assert (b.spent, b.reserved) == (Decimal("0.01"), 0)
    assert [e.usage.input_tokens for e in tracker.entries()] == [4000]


def test_an_async_generator_whose_cleanup_raises_as_it_is_closed_still_records_what_was_read(tracker):
    @track_cost(tracker=tracker, estimate="0.02")
    async def stubborn():
        try:
            yield _CHUNK
            yield _CHUNK
        finally:
            raise ConnectionError("cleanup failed")

    async def read_one_then_close() -> None:
        stream = stubborn()
        await stream.__anext__()
        with pytest.raises(ConnectionError):
            await stream.aclose()

    with llmcost.budget("1", tracker=tracker) as b:
        asyncio.run(read_one_then_close())
        assert (b.spent, b.reserved) == (Decimal("0.01"), 0)
    assert [e.usage.input_tokens for e in tracker.entries()] == [4000]


def test_an_async_generator_keeps_the_async_generator_protocol(tracker):
    async def talk():
        reply = yield MESSAGE_START
        try:
            yield f"got {reply}"
        except KeyError as exc:
            yield f"caught {exc.args[0]}"
        yield {"type": "message_delta", "usage": {"output_tokens": 40}}

    async def run(gen):
        got = [await gen.__anext__(), await gen.asend("hello"), await gen.athrow(KeyError("k")), await gen.__anext__()]
        with pytest.raises(StopAsyncIteration):
            await gen.__anext__()
        return got

    assert asyncio.run(run(track_cost(tracker=tracker)(talk)())) == asyncio.run(run(talk()))
    assert asyncio.run(run(talk()))[1:3] == ["got hello", "caught k"]
    (e,) = tracker.entries()
    assert e.usage == Usage(input_tokens=1100, output_tokens=40)


def gemini_chunks(*completions):
    """google-genai's ``GenerateContentResponse`` chunks of one stream (each reports the usage so far)."""
    from google.genai import types

    return [
        types.GenerateContentResponse(
            model_version="gemini-2.5-flash",
            candidates=[types.Candidate(content=types.Content(role="model", parts=[types.Part(text="x")]))],
            usage_metadata=types.GenerateContentResponseUsageMetadata(
                prompt_token_count=1000, candidates_token_count=c, total_token_count=1000 + c
            ),
        )
        for c in completions
    ]


def test_a_returned_generator_is_recorded_once_when_it_ends(tracker):
    # ``client.models.generate_content_stream(...)`` returns a generator: the function returning it is tracked as a
    # generator function would be, in the context it was called in, the generator's protocol kept.
    def sdk_stream():
        for c in gemini_chunks(10, 50, 200):
            reply = yield c
            assert reply in (None, "more")
        return "done"

    @track_cost(tracker=tracker, estimate="0.01")
    def ask():
        return sdk_stream()

    with llmcost.budget("1", tracker=tracker) as b, llmcost.tags(team="a"):
        stream = ask()
    assert not tracker.entries()
    assert next(stream).model_version == "gemini-2.5-flash" and stream.send("more") is not None
    assert next(stream).model_version == "gemini-2.5-flash"
    with pytest.raises(StopIteration) as stop:
        next(stream)
    assert stop.value.value == "done"
    (e,) = tracker.entries()
    assert (e.model, e.usage, dict(e.tags)) == ("gemini-2.5-flash", Usage(1000, 200), {"team": "a"})
    assert b.reserved == 0 and b.spent == e.amount


def test_a_returned_generator_closed_early_records_and_one_never_started_releases(tracker):
    @track_cost(tracker=tracker, estimate="0.01")
    def ask():
        return iter_chunks()

    def iter_chunks():
        yield from gemini_chunks(10, 50, 200)

    with llmcost.budget("1", tracker=tracker) as b:
        stream = ask()
        next(stream)
        stream.close()
        (e,) = tracker.entries()
        assert e.usage == Usage(1000, 10) and b.reserved == 0
        unread = ask()
        assert b.reserved == Decimal("0.01")
        del unread  # dropped before it started: nothing recorded, its reservation released
        assert b.reserved == 0 and len(tracker.entries()) == 1


def test_an_async_function_returning_an_async_generator_is_recorded(tracker):
    # ``await client.aio.models.generate_content_stream(...)`` gives an async generator.
    async def sdk_stream():
        for c in gemini_chunks(10, 50, 200):
            yield c

    @track_cost(tracker=tracker)
    async def ask():
        return sdk_stream()

    async def main():
        with llmcost.tags(team="b"):
            stream = await ask()
        return [c async for c in stream]

    assert len(asyncio.run(main())) == 3
    (e,) = tracker.entries()
    assert e.usage == Usage(1000, 200) and dict(e.tags) == {"team": "b"}


def test_set_active_false_turns_tracking_off(tracker):
    @track_cost(tracker=tracker)
    def ask():
        return chat()

    llmcost.set_active(False)
    ask()
    llmcost.set_active(True)
    assert tracker.entries() == []
    ask()
    assert len(tracker.entries()) == 1


def test_tags_context_is_task_local(tracker):
    @track_cost(tracker=tracker)
    async def ask():
        await asyncio.sleep(0)
        return chat()

    async def job(team):
        with llmcost.tags(team=team):
            await asyncio.sleep(0)
            await ask()

    async def main():
        await asyncio.gather(*(job(f"t{i}") for i in range(20)))

    asyncio.run(main())
    assert sorted(e.tags["team"] for e in tracker.entries()) == sorted(f"t{i}" for i in range(20))


@pytest.mark.parametrize("bad", [{"category": "beer"}, {"tags": {"a": 1}}, {"usage": 5}, {"model": 3}])
def test_bad_decorator_arguments_fail_at_decoration(bad):
    with pytest.raises((TypeError, ValueError)):
        track_cost(**bad)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("abc", ValueError),
        ("1,50", ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (Decimal("-inf"), ValueError),
        (-5, ValueError),
        ("-0.01", ValueError),
        (llmcost.Estimate(10, 10, Decimal("-1")), ValueError),
        (True, TypeError),
        (object(), TypeError),
    ],
)
def test_a_bad_fixed_estimate_fails_at_decoration_naming_it(bad, error):
    # A bad estimate would turn budgets off for the function (its calls let through), a negative one make room for
    # other calls: both are refused where they are given, naming the field and the value.
    with pytest.raises(error, match="estimate") as raised:
        track_cost(estimate=bad)
    assert repr(getattr(bad, "amount", bad)) in str(raised.value) or repr(bad) in str(raised.value)


@pytest.mark.parametrize("good", ["0.25", 0.25, 0, Decimal("0.25"), llmcost.Estimate(1, 1, Decimal("0.25"))])
def test_a_fixed_estimate_is_reserved_as_given(tracker, good):
    @track_cost(tracker=tracker, estimate=good)
    def ask():
        return chat()

    with llmcost.budget("0.2", tracker=tracker):
        if good:
            with pytest.raises(llmcost.BudgetExceeded) as refused:
                ask()
            assert refused.value.requested == Decimal("0.25")
        else:
            ask()


@pytest.mark.parametrize(
    ("estimate", "logged"),
    [
        (lambda: 1 / 0, 1),
        (lambda: "abc", 1),
        (lambda: Decimal("-5"), 1),
        (lambda: llmcost.Estimate(1, 1, Decimal("-1")), 1),
        (lambda: None, 0),  # says "not known": nothing to log
    ],
    ids=["raises", "not-a-number", "negative", "negative-estimate", "none"],
)
def test_a_callable_estimate_that_fails_leaves_the_call_checked_as_with_no_estimate(tracker, caplog, estimate, logged):
    # It must neither let the call past the budget unchecked nor reserve negative room: the call is estimated as
    # with no estimate= (its request arguments, else the mean of recent calls, else nothing known).
    @track_cost(tracker=tracker, estimate=estimate)
    def ask():
        return chat()

    with caplog.at_level(logging.WARNING, logger="llmcost"):
        with llmcost.budget(GPT4O_100_20 * 3 / 2, tracker=tracker) as b:
            ask()  # nothing known yet: nothing reserved, and it fits
            with pytest.raises(llmcost.BudgetExceeded) as refused:
                ask()  # the mean of recent calls does not fit what remains
        assert refused.value.requested == GPT4O_100_20 and b.spent == GPT4O_100_20
        with llmcost.budget(GPT4O_100_20 * 3, tracker=tracker) as b:
            ask()
            ask()
            assert b.reserved == 0 and b.spent == GPT4O_100_20 * 2
    assert sum("estimate= callable" in r.getMessage() for r in caplog.records) == logged  # once per cause


def test_a_callable_estimate_that_fails_falls_back_to_the_request_arguments(tracker):
    @track_cost(tracker=tracker, estimate=lambda **request: 1 / 0)
    def ask(**request):
        return chat()

    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "word " * 20_000}], "max_tokens": 10}
    with llmcost.budget("0.01", tracker=tracker), pytest.raises(llmcost.BudgetExceeded) as refused:
        ask(**request)
    assert refused.value.requested == llmcost.estimate_cost("gpt-4o", request["messages"], output_tokens=10).amount
    assert tracker.entries() == []


# -- real OpenAI client, canned HTTP ----------------------------------------------------------------------------------
def sse(events):
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def chunk(content=None, usage=None):
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-4o-2024-08-06",
        "choices": [] if usage else [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
        "usage": usage,
    }


def openai_client(handler):
    return openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


def test_returned_openai_stream_is_tracked_and_iterates_as_before(tracker):
    body = sse(
        [
            chunk("Hel"),
            chunk("lo"),
            chunk(usage={"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}),
        ]
    )

    def handler(request):
        return httpx2.Response(200, text=body, headers={"content-type": "text/event-stream"})

    client = openai_client(handler)

    @track_cost(tracker=tracker)
    def ask():
        return client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )

    stream = ask()
    assert isinstance(stream, openai.Stream)
    assert tracker.entries() == []  # nothing until the stream ends
    text = "".join(c.choices[0].delta.content for c in stream if c.choices)
    assert text == "Hello"
    (e,) = tracker.entries()
    assert e.usage == Usage(input_tokens=1000, output_tokens=100)
    assert e.model == "gpt-4o-2024-08-06"
    assert e.amount == Decimal("0.0035")


def test_openai_stream_closed_early_records_once(tracker):
    body = sse(
        [
            chunk("a"),
            chunk("b"),
            chunk(usage={"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}),
        ]
    )

    def handler(request):
        return httpx2.Response(200, text=body, headers={"content-type": "text/event-stream"})

    client = openai_client(handler)

    @track_cost(tracker=tracker)
    def ask():
        return client.chat.completions.create(model="gpt-4o", messages=[], stream=True)

    with ask() as stream:
        next(iter(stream))
    # Closed before the usage chunk arrived: nothing known, so nothing recorded (and no silent $0 entry).
    assert tracker.entries() == []
    stream.close()
    assert tracker.entries() == []


def test_a_dated_model_id_is_kept_and_its_catalog_id_is_the_canonical_model(tracker):
    @track_cost(tracker=tracker)
    def ask():
        return chat(model="gpt-4o-mini-2024-07-18")

    @track_cost(tracker=tracker)
    def ask_undated():
        return chat(model="gpt-4o-mini")

    ask()
    ask_undated()
    dated, undated = tracker.entries()
    assert (dated.model, dated.canonical_model) == ("gpt-4o-mini-2024-07-18", "gpt-4o-mini")
    assert (undated.model, undated.canonical_model) == ("gpt-4o-mini", "gpt-4o-mini")
    assert dated.amount == undated.amount > 0
    assert tracker.entries(model="gpt-4o-mini") == [dated, undated]
    assert tracker.store.scan(model=["gpt-4o", "gpt-4o-mini"])["model"].tolist() == [
        "gpt-4o-mini-2024-07-18",
        "gpt-4o-mini",
    ]
    assert tracker.summary().by_model == {"gpt-4o-mini": dated.amount * 2}


def test_canonical_model_is_none_when_unpriced_or_given_and_the_registered_id_for_a_user_price(tracker):
    tracker.on_unknown_model = "ignore"
    assert tracker.record(model="no-such-model-x", input_tokens=10).canonical_model is None
    assert tracker.record(model="gpt-4o", amount="0.1").canonical_model is None
    llmcost.register_price(llmcost.ModelPrice("acme-large", "acme", input_per_mtok="1", output_per_mtok="2"))
    assert tracker.record(model="acme-large", input_tokens=10).canonical_model == "acme-large"


def test_a_provider_guessed_from_the_sdk_gives_way_to_the_one_the_call_was_priced_at():
    # The OpenAI SDK pointed at DeepSeek, or a proxy answering "deepseek/deepseek-r1": the response's SDK is only a
    # guess at the provider; the entry names the provider whose price priced it (as it did for "deepseek-chat",
    # which OpenAI's catalog lacks). A provider given to @track_cost is kept, as it bills the call.
    from openai.types.chat import ChatCompletion

    def response(model):
        return ChatCompletion.model_validate({**chat(model, 1_000_000, 1_000_000), "created": 1})

    tracker = CostTracker()
    for model in ("deepseek/deepseek-r1", "deepseek-chat", "gpt-4o"):
        track_cost(tracker=tracker)(lambda model=model: response(model))()
    track_cost(tracker=tracker, provider="openrouter")(lambda: response("deepseek/deepseek-r1"))()
    r1, chat_, gpt, routed = tracker.entries()
    assert [e.provider for e in (r1, chat_, gpt, routed)] == ["deepseek", "deepseek", "openai", "openrouter"]
    assert r1.amount == llmcost.cost_of("deepseek-r1", 1_000_000, 1_000_000, provider="deepseek", at=r1.timestamp)
    assert routed.amount == llmcost.cost_of("deepseek/deepseek-r1", 1_000_000, 1_000_000, provider="openrouter")
    # A registered price with no provider leaves the guess.
    llmcost.register_price(llmcost.ModelPrice("acme-large", None, input_per_mtok="1", output_per_mtok="1"))
    track_cost(tracker=tracker)(lambda: response("acme-large"))()
    assert tracker.entries()[-1].provider == "openai"
