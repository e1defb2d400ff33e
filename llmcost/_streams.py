"""Tracking SDK stream objects in place: a returned OpenAI/Anthropic ``Stream`` (or the stream an Anthropic stream
manager opens) iterates exactly as before and reports its usage once, when it ends, is closed (or its HTTP response
is), or is freed before either. A raw response whose body is unread yet (``with_streaming_response``) reports its usage
once, when its body has been read or it is closed.
"""

from __future__ import annotations

import inspect
import json
import types
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ._extract import Extracted, StreamAccumulator, extract_usage, is_sdk_stream
from ._tracker import log_once

__all__ = ["ManagerProxy", "OpenedWhenEntered", "hook_raw_response", "hook_stream", "read_later"]


def hook_stream(
    stream: Any,
    on_end: Callable[[Extracted | None, bool, StreamAccumulator], object],
    chunks: list[Any] | None = None,
) -> Any:
    """Make ``stream`` call ``on_end`` with its usage (``None`` if none was seen), whether it was read to its end
    (not closed or freed before) and what read it (what else it saw: a background response it created...), once,
    when it ends, is closed (or its HTTP response is), or is freed before either. ``chunks``: a list the chunks
    (events) read are appended to, for a ``usage=`` callable.

    The SDK's own iterator is replaced where the stream has one (so the object returned is ``stream`` itself);
    otherwise a proxy that delegates everything is returned.
    """
    acc: Any = StreamAccumulator() if chunks is None else _Keeping(chunks)
    ended = [False]  # (read to its end: a stream cut short saying no usage is no sign of a missing option)

    def settle() -> None:
        on_end(acc.result(), ended[0], acc)

    # Once, whichever comes first: the end, a close, or the stream freed before either (never iterated, its reader
    # below never runs its ``finally``). The hooks below hold the stream and its response weakly, adding no cycle:
    # an Anthropic stream is freed as it is dropped; an OpenAI ``Stream`` refers to itself through its iterator (a
    # generator of its own method), so it is freed at the next garbage collection.
    done = _once_or_when_freed(stream, settle)
    is_async = hasattr(stream, "__aiter__") and not hasattr(stream, "__iter__")
    # The attribute holding the SDK's own iterator, which its ``__next__`` reads on each step: OpenAI's and
    # Anthropic's ``_iterator``, mistralai's ``generator``.
    held = "generator" if type(stream).__module__.startswith("mistralai.") else "_iterator"
    try:
        inner = getattr(stream, held)
    except Exception:  # noqa: BLE001 - an SDK without the hook: track by wrapping instead
        inner = None
    if inner is None:
        if is_async:
            return _AsyncStreamProxy(stream, acc, done, ended)
        # A stream iterated either way (LiteLLM's ``CustomStreamWrapper``, which ``completion`` and ``acompletion``
        # both return) is read as the caller's loop reads it.
        either = hasattr(stream, "__aiter__")
        return (_EitherStreamProxy if either else _StreamProxy)(stream, acc, done, ended)
    reader: Any
    if is_async:

        async def agen() -> AsyncIterator[Any]:
            try:
                async for chunk in inner:
                    acc.add(chunk)
                    yield chunk
                ended[0] = True
            finally:
                done()

        reader = agen()
    else:

        def gen() -> Iterator[Any]:
            try:
                for chunk in inner:
                    acc.add(chunk)
                    yield chunk
                ended[0] = True
            finally:
                done()

        reader = gen()
    setattr(stream, held, reader)
    _call_after_close(stream, done)
    # The SDK's stream helpers (OpenAI's ``ChatCompletionStream``, ``ResponseStream``) close the HTTP response itself,
    # not this stream; so does the SDK as the body ends, from inside the reading: then the reader settles, once the
    # events still in the decoder have come out.
    response = getattr(stream, "response", None)
    if response is not None:
        reading = weakref.ref(reader)  # (held by the stream; held here, it would tie the response to it in a cycle)
        _call_after_close(response, lambda: None if _running(reading()) else done())
    return stream


def _once_or_when_freed(owner: Any, callback: Callable[[], object]) -> Callable[[], object]:
    """``callback``, run once: when the function returned is first called, or when ``owner`` is freed before that
    (``weakref.finalize``, which runs it at most once, whichever thread gets there first)."""
    try:
        return weakref.finalize(owner, callback)
    except TypeError:  # (an object without weak references: run when called only)
        pending = [callback]

        def once() -> None:
            try:
                first = pending.pop()
            except IndexError:
                return
            first()

        return once


def _call_after_close(owner: Any, after: Callable[[], object]) -> None:
    """Make ``owner.close()`` and ``owner.aclose()`` (where it has them, sync or async) call ``after`` once they have
    run, whatever they raised."""
    for name in ("close", "aclose"):
        original = getattr(owner, name, None)
        if original is None:
            continue
        try:
            setattr(owner, name, _then(_rebinder(owner, original), inspect.iscoroutinefunction(original), after))
        except (AttributeError, TypeError):  # (an object that takes no attribute: its other ways out still settle)
            log_once(("close", type(owner)), "llmcost: cannot hook %s.%s", type(owner).__name__, name)


def _rebinder(owner: Any, method: Callable[..., Any]) -> Callable[[], Callable[..., Any] | None]:
    """How to get ``method`` (bound to ``owner``) back when it is called, without holding ``owner``: a hook kept on
    ``owner`` that held its bound method would form a cycle with it, and a dropped object would then wait for a
    garbage collection (its finalizer with it). ``None`` once ``owner`` has been freed."""
    func = getattr(method, "__func__", None)
    if func is None or getattr(method, "__self__", None) is not owner:
        return lambda: method  # (a function set on the object itself, not its class's method: held as it is)
    try:
        ref = weakref.ref(owner)
    except TypeError:  # (an object without weak references)
        return lambda: method

    def rebind() -> Callable[..., Any] | None:
        found = ref()
        return None if found is None else types.MethodType(func, found)

    return rebind


def _then(
    original: Callable[[], Callable[[], Any] | None], is_async: bool, after: Callable[[], object]
) -> Callable[[], Any]:
    """The method ``original()`` gives (without arguments, sync or async), calling ``after`` once it has run. (A
    method called after its object was freed, kept alone, as ``ExitStack.callback(stream.close)`` does, has
    nothing left to close.)"""
    if is_async:

        async def aclose() -> None:
            try:
                method = original()
                if method is not None:
                    await method()
            finally:
                after()

        return aclose

    def close() -> None:
        try:
            method = original()
            if method is not None:
                method()
        finally:
            after()

    return close


def _running(reader: Any) -> bool:
    """Whether a generator (or async generator) is running now: the caller is inside its reading."""
    return bool(getattr(reader, "gi_running", False) or getattr(reader, "ag_running", False))


class _Keeping(StreamAccumulator):
    """A ``StreamAccumulator`` that also keeps each chunk it is given, in ``chunks``."""

    __slots__ = ("_chunks",)

    def __init__(self, chunks: list[Any]) -> None:
        super().__init__()
        self._chunks = chunks

    def add(self, chunk: Any) -> None:
        self._chunks.append(chunk)
        super().add(chunk)


class ManagerProxy:
    """Wraps an SDK stream manager (Anthropic ``messages.stream()``): the stream it opens when entered is tracked
    like a returned ``Stream``. A manager never entered makes no request: its reservations are released when the
    proxy is dropped."""

    def __init__(self, manager: Any, *, on_stream: Callable[[Any], object], on_drop: Callable[[], object]) -> None:
        self._manager, self._on_stream, self._on_drop = manager, on_stream, on_drop
        self._release = weakref.finalize(self, on_drop)

    def _track(self, stream: Any) -> Any:
        self._release.detach()  # from now on the stream settles the call when it ends
        raw = getattr(stream, "_raw_stream", None)
        if raw is not None and is_sdk_stream(raw):
            self._on_stream(raw)
        else:
            self._on_drop()
            log_once(("manager", type(stream)), "llmcost: cannot track the stream of %r", type(self._manager))
        return stream

    def __enter__(self) -> Any:
        try:
            stream = self._manager.__enter__()
        except BaseException:
            self._failed()
            raise
        return self._track(stream)

    def __exit__(self, *exc: Any) -> Any:
        return self._manager.__exit__(*exc)

    async def __aenter__(self) -> Any:
        try:
            stream = await self._manager.__aenter__()
        except BaseException:
            self._failed()
            raise
        return self._track(stream)

    def _failed(self) -> None:
        """The request failed as the manager was entered (an overloaded API's 529...): nothing was spent. Released
        now, not when this proxy is freed: the exception's traceback holds it, as long as the caller keeps the error
        (a retry loop's last one)."""
        self._release()

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._manager.__aexit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)


class OpenedWhenEntered:
    """A stream manager made when it is entered, by ``opener()`` (a tracked ``stream()`` call): the manager an SDK's
    ``stream()`` returns sends its request when it is entered, so that is when the call is checked against budgets
    and takes its context (its ``llmcost.tags``, its budgets), as OpenAI's ``.stream()`` helpers, whose ``create``
    runs then. Each enter is a request of its own, as with the SDK's manager. Never entered, it reserved nothing."""

    def __init__(self, opener: Callable[[], Any]) -> None:
        self._open = opener
        self._entered: Any = None

    def __enter__(self) -> Any:
        self._entered = self._open()
        return self._entered.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._entered.__exit__(*exc)

    async def __aenter__(self) -> Any:
        self._entered = self._open()
        return await self._entered.__aenter__()

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._entered.__aexit__(*exc)


class _StreamProxy:
    """Wraps a stream object without the SDK's ``_iterator`` hook; delegates everything else."""

    def __init__(self, stream: Any, acc: StreamAccumulator, done: Callable[[], object], ended: list[bool]) -> None:
        self._stream, self._acc, self._done, self._ended = stream, acc, done, ended

    def __iter__(self) -> Iterator[Any]:
        try:
            for chunk in self._stream:
                self._acc.add(chunk)
                yield chunk
            self._ended[0] = True
        finally:
            self._done()

    def __next__(self) -> Any:
        try:
            chunk = next(self._stream)
        except StopIteration:
            self._ended[0] = True
            self._done()
            raise
        self._acc.add(chunk)
        return chunk

    def __enter__(self) -> _StreamProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            closer = getattr(self._stream, "close", None)
            if closer is not None:
                closer()
        finally:
            self._done()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _AsyncReading:
    """``async for`` over the wrapped stream, for the proxies read so."""

    _stream: Any
    _acc: StreamAccumulator
    _done: Callable[[], object]
    _ended: list[bool]

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            async for chunk in self._stream:
                self._acc.add(chunk)
                yield chunk
            self._ended[0] = True
        finally:
            self._done()

    async def __anext__(self) -> Any:
        try:
            chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            self._ended[0] = True
            self._done()
            raise
        self._acc.add(chunk)
        return chunk


class _AsyncStreamProxy(_AsyncReading):
    """The async twin of ``_StreamProxy``."""

    def __init__(self, stream: Any, acc: StreamAccumulator, done: Callable[[], object], ended: list[bool]) -> None:
        self._stream, self._acc, self._done, self._ended = stream, acc, done, ended

    async def __aenter__(self) -> _AsyncStreamProxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        try:
            closer = getattr(self._stream, "close", None)
            if closer is not None:
                result = closer()
                if inspect.isawaitable(result):
                    await result
        finally:
            self._done()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _EitherStreamProxy(_StreamProxy, _AsyncReading):
    """Wraps a stream read by ``for`` or by ``async for`` (LiteLLM's ``CustomStreamWrapper``): closed by ``close()``
    or ``aclose()``, ``with`` or ``async with``, as the stream is."""

    async def __aenter__(self) -> _EitherStreamProxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        try:
            closer = getattr(self._stream, "aclose", None) or getattr(self._stream, "close", None)
            result = None if closer is None else closer()
            if inspect.isawaitable(result):
                await result
        finally:
            self._done()


def read_later(response: Any) -> bool:
    """Whether an SDK raw response's usage can only be read as the caller reads its body: a body not read yet
    (``with_streaming_response``), or a body of server-sent events (a raw response of a stream)."""
    http = getattr(response, "http_response", None)
    if http is None:
        return False
    if "event-stream" in str(http.headers.get("content-type", "")):
        return True
    try:
        http.content  # noqa: B018 - raises (no I/O) while the body is unread
    except Exception:  # noqa: BLE001 - httpx's ResponseNotRead, whichever httpx made it
        return True
    return False


def hook_raw_response(
    response: Any,
    on_end: Callable[[Extracted | None, Any], object],
    on_unread: Callable[[], object],
    *,
    keep: bool = False,
) -> Any:
    """Make a raw response with an unread body call ``on_end`` with its usage, and with ``keep`` the body as parsed
    (the JSON value, or the list of the events' JSON values; else ``None``), once, when the body has been read
    (``parse()``, ``read()``, ``json()``, ``text()``, ``iter_bytes()``/``iter_lines()``..., or the stream
    ``parse()`` returns) or the response is closed; or ``on_unread`` once, if it is closed (or dropped) with its
    body never read. The same object is returned, its behaviour unchanged.

    Every way of reading the body goes through the HTTP response's decoded byte iterator (``iter_bytes``, or
    ``aiter_bytes``), which is wrapped on that one object: the bytes pass through as they are and are read as JSON,
    or as server-sent events, on the side. A body loaded already (by a transport that holds it whole: httpx's
    ``MockTransport``, respx, pytest-httpx) is given by ``read()``/``aread()`` without that iterator: so those are
    wrapped too, on such a response, and read the whole body on the side, unless an iterator has read it."""
    http = response.http_response
    content_type = str(http.headers.get("content-type", ""))
    body: _Body | None = (
        _EventsBody(keep) if "event-stream" in content_type else _JsonBody() if "json" in content_type else None
    )
    state = {"started": False}
    pending = {"open": True}  # popped by the first ``done``: once, whichever thread or hook gets there first

    def done() -> None:
        if pending.pop("open", False):
            if state["started"]:
                if body is None:
                    on_end(None, None)
                else:
                    on_end(body.result(), body.parsed() if keep else None)
            else:
                on_unread()

    # On the HTTP response, which a stream made by ``parse()`` keeps (not the raw response): dropped unread, or with
    # its reading abandoned, it settles the call.
    finalizer = weakref.finalize(http, done)

    def finished() -> None:
        finalizer.detach()
        done()

    readers: list[Any] = []  # the body's byte iterators handed out so far

    sync_bytes, async_bytes = getattr(http, "iter_bytes", None), getattr(http, "aiter_bytes", None)
    if sync_bytes is not None:

        def read(*args: Any, **kwargs: Any) -> Iterator[bytes]:
            state["started"] = True
            try:
                for chunk in sync_bytes(*args, **kwargs):
                    if body is not None:
                        body.feed(chunk)
                    yield chunk
            finally:
                finished()

        def iter_bytes(*args: Any, **kwargs: Any) -> Iterator[bytes]:
            reader = read(*args, **kwargs)
            readers.append(reader)
            return reader

        http.iter_bytes = iter_bytes
    if async_bytes is not None:

        async def aread(*args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
            state["started"] = True
            try:
                async for chunk in async_bytes(*args, **kwargs):
                    if body is not None:
                        body.feed(chunk)
                    yield chunk
            finally:
                finished()

        def aiter_bytes(*args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
            reader = aread(*args, **kwargs)
            readers.append(reader)
            return reader

        http.aiter_bytes = aiter_bytes
    try:
        loaded: bytes | None = http.content
    except Exception:  # noqa: BLE001 - httpx's ResponseNotRead: every read goes through the iterators above
        loaded = None
    if loaded is not None:

        def read_whole() -> None:
            if not state["started"]:  # (else an iterator read it, and settles it)
                state["started"] = True
                if body is not None:
                    body.feed(loaded)
                finished()

        sync_read, async_read = getattr(http, "read", None), getattr(http, "aread", None)
        if sync_read is not None:

            def read_loaded() -> bytes:
                content = sync_read()
                read_whole()
                return content

            http.read = read_loaded
        if async_read is not None:

            async def aread_loaded() -> bytes:
                content = await async_read()
                read_whole()
                return content

            http.aread = aread_loaded
    _call_after_close(response, finished)  # (an SDK's ``LegacyAPIResponse`` has no ``close``)
    # A stream made by ``parse()`` closes the HTTP response itself; so does httpx as the body ends, from inside the
    # reading: then the reader settles, once the bytes still in the decoder have come out.
    _call_after_close(http, lambda: None if any(_running(reader) for reader in readers) else finished())
    return response


class _Body:
    """A response body read on the side, chunk by chunk."""

    def feed(self, chunk: bytes) -> None:
        raise NotImplementedError

    def result(self) -> Extracted | None:
        raise NotImplementedError

    def parsed(self) -> Any:
        """The body as parsed (after ``result``): what a ``usage=`` callable gets; ``None`` if it is not JSON."""
        raise NotImplementedError


class _JsonBody(_Body):
    """A JSON body: read whole once it has all come (a body cut short has no usage)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._found: Any = None

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)

    def result(self) -> Extracted | None:
        try:
            found = self._found = json.loads(b"".join(self._chunks))
        except ValueError:
            return None
        return extract_usage(found) if type(found) is dict else None

    def parsed(self) -> Any:
        return self._found


class _EventsBody(_Body):
    """A body of server-sent events: the ``data`` of each event read as JSON as it ends, into a
    ``StreamAccumulator`` (as the SDK's stream of the same body would be)."""

    def __init__(self, keep: bool = False) -> None:
        self._events: list[Any] = []
        self._acc: StreamAccumulator = _Keeping(self._events) if keep else StreamAccumulator()
        self._rest = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            self._line(line.rstrip(b"\r"))

    def _line(self, line: bytes) -> None:
        if not line:
            self._event()
        elif line.startswith(b"data:"):
            data = line[5:]
            self._data.append(data[1:] if data.startswith(b" ") else data)

    def _event(self) -> None:
        data, self._data = b"\n".join(self._data), []
        if not data or data == b"[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError:
            return
        self._acc.add(event)

    def result(self) -> Extracted | None:
        if self._rest:
            self._line(self._rest.rstrip(b"\r"))
            self._rest = b""
        self._event()  # (a last event with no blank line after it)
        return self._acc.result()

    def parsed(self) -> list[Any]:
        return self._events
