"""Tracking SDK stream objects in place: a returned OpenAI/Anthropic ``Stream`` (or the stream an Anthropic stream
manager opens) iterates exactly as before and reports its usage once, when it ends or is closed."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ._extract import Extracted, StreamAccumulator, is_sdk_stream
from ._tracker import log_once

__all__ = ["ManagerProxy", "hook_stream"]


def hook_stream(stream: Any, on_end: Callable[[Extracted | None], object]) -> Any:
    """Make ``stream`` call ``on_end`` with its usage (``None`` if none was seen) once, when it ends or is closed.

    The SDK's own iterator is replaced where the stream has one (so the object returned is ``stream`` itself);
    otherwise a proxy that delegates everything is returned.
    """
    acc = StreamAccumulator()
    state = {"done": False}

    def done() -> None:
        if not state["done"]:
            state["done"] = True
            on_end(acc.result())

    is_async = hasattr(stream, "__aiter__") and not hasattr(stream, "__iter__")
    try:
        inner = stream._iterator
    except Exception:  # noqa: BLE001 - an SDK without the hook: track by wrapping instead
        inner = None
    if inner is None:
        return _AsyncStreamProxy(stream, acc, done) if is_async else _StreamProxy(stream, acc, done)
    if is_async:

        async def agen() -> AsyncIterator[Any]:
            try:
                async for chunk in inner:
                    acc.add(chunk)
                    yield chunk
            finally:
                done()

        stream._iterator = agen()
        original_aclose = stream.close

        async def aclose() -> None:
            try:
                await original_aclose()
            finally:
                done()

        stream.close = aclose
    else:

        def gen() -> Iterator[Any]:
            try:
                for chunk in inner:
                    acc.add(chunk)
                    yield chunk
            finally:
                done()

        stream._iterator = gen()
        original_close = stream.close

        def close() -> None:
            try:
                original_close()
            finally:
                done()

        stream.close = close
    return stream


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
        return self._track(self._manager.__enter__())

    def __exit__(self, *exc: Any) -> Any:
        return self._manager.__exit__(*exc)

    async def __aenter__(self) -> Any:
        return self._track(await self._manager.__aenter__())

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._manager.__aexit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)


class _StreamProxy:
    """Wraps a stream object without the SDK's ``_iterator`` hook; delegates everything else."""

    def __init__(self, stream: Any, acc: StreamAccumulator, done: Callable[[], None]) -> None:
        self._stream, self._acc, self._done = stream, acc, done

    def __iter__(self) -> Iterator[Any]:
        try:
            for chunk in self._stream:
                self._acc.add(chunk)
                yield chunk
        finally:
            self._done()

    def __next__(self) -> Any:
        try:
            chunk = next(self._stream)
        except StopIteration:
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


class _AsyncStreamProxy:
    """The async twin of ``_StreamProxy``."""

    def __init__(self, stream: Any, acc: StreamAccumulator, done: Callable[[], None]) -> None:
        self._stream, self._acc, self._done = stream, acc, done

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            async for chunk in self._stream:
                self._acc.add(chunk)
                yield chunk
        finally:
            self._done()

    async def __anext__(self) -> Any:
        try:
            chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            self._done()
            raise
        self._acc.add(chunk)
        return chunk

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
