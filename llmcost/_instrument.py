"""``instrument(client)``: track every request of one OpenAI or Anthropic client, whatever the calling code returns.

The client INSTANCE is patched, never the SDK class: each request method of its resource objects
(``client.chat.completions.create`` ...) is replaced, on that object only, by ``track_cost`` applied to the bound
original. So the decorator's one engine does the work (budgets checked before the request from the request's own
arguments, usage read from the response, SDK streams and stream managers tracked in place), and ``uninstrument``
puts back exactly what was there. Copies made with ``client.with_options(...)``/``client.copy(...)`` are
instrumented with the same options.

``instrument(litellm)`` (the module) registers a LiteLLM callback instead (``_litellm.py``).
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from . import _background as background
from ._catalog import provider_for_url
from ._decorator import track_cost
from ._extract import Extracted, StreamAccumulator, extract_usage, is_sdk_stream
from ._streams import OpenedWhenEntered, hook_stream
from ._tracker import log_once

__all__ = ["instrument", "uninstrument"]

C = TypeVar("C")

# The request methods tracked, per SDK: (attribute path from the client, method names). Absent ones are skipped, so
# older and newer SDK versions work. Helpers that call a tracked method themselves are left alone so a request is
# recorded once: OpenAI's ``chat.completions.stream()`` and ``responses.stream()`` call ``create(stream=True)`` as
# their manager is entered, so that request is checked and recorded then. Anthropic's ``messages.stream()`` and every
# ``parse()`` post the request themselves, so they are tracked; ``stream()`` as OpenAI's is (``_ENTERED``).
_METHODS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "openai": (
        ("chat.completions", ("create", "parse")),
        ("beta.chat.completions", ("parse",)),
        ("completions", ("create",)),
        ("embeddings", ("create",)),
        ("responses", ("create", "parse", "compact")),  # (``compact``: a compaction pass, billed by its usage)
        ("beta.responses", ("create", "parse", "compact")),
    ),
    "anthropic": (
        ("messages", ("create", "stream", "parse")),
        ("beta.messages", ("create", "stream", "parse")),
    ),
}
# Methods that fetch a response made earlier, not billed themselves: OpenAI's ``responses.retrieve`` (which
# ``responses.stream(response_id=...)`` calls) records a background response created here, once (``_background``).
_RETRIEVES: dict[str, tuple[tuple[str, str], ...]] = {
    "openai": (("responses", "retrieve"), ("beta.responses", "retrieve")),
    "anthropic": (),
}
# Client methods that return a new client (``with_options`` is ``copy`` under another name in both SDKs).
_COPIES = ("copy", "with_options")
# The ``with_raw_response``/``with_streaming_response`` of a client and of each resource: made once per object (a
# cached property) around the request methods as they were then (the client's and ``client.chat``'s reach them
# through the resources' own). Forgotten along each path as the methods are patched and restored, so they are made
# again around the methods as they are.
_WRAPPER_CACHES = ("with_raw_response", "with_streaming_response")
_MARK = "__llmcost_instrumented__"  # on each patch: (whether the instance had its own attribute, what it was)
_lock = threading.Lock()  # instrumenting and uninstrumenting one client from two threads at once stays consistent


def _sdk_of(client: object) -> str | None:
    """The SDK (``"openai"``, ``"anthropic"``) whose client ``client`` is, else ``None``: a client's class derives from
    its SDK's ``_base_client.BaseClient`` (Azure's, Bedrock's and Vertex's too); one of its resources
    (``client.chat.completions``) only comes from the same package, and patched would track nothing (or, for
    ``client.chat``, its ``completions`` under the legacy ``completions.create`` label)."""
    for cls in type(client).__mro__:
        root, _, rest = cls.__module__.partition(".")
        if root in _METHODS and rest == "_base_client" and cls.__name__ == "BaseClient":
            return root
    return None


def _not_a_client(function: str, given: object) -> TypeError:
    """The error for ``function(given)`` with ``given`` no client: naming what was given, and, for a part of a client
    (a resource), saying to pass the client itself."""
    kind = type(given)
    name = f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else kind.__qualname__
    if kind.__module__.split(".", 1)[0] in _METHODS and not inspect.ismodule(given):
        return TypeError(
            f"{function}() takes an OpenAI or Anthropic client, not a part of one; got {name}: pass the client it "
            f"belongs to ({function}(client), which covers all of the client's requests)"
        )
    return TypeError(
        f"{function}() takes an OpenAI or Anthropic client (openai.OpenAI, openai.AsyncOpenAI, anthropic.Anthropic, "
        f"anthropic.AsyncAnthropic) or the litellm module; got {name}"
    )


def _resource(client: object, path: str) -> Any:
    obj: Any = client
    for part in path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:  # an SDK version without this resource
            return None
    return obj


def _is_async(resource: object, name: str) -> bool:
    # Unwrapped because the SDKs put a plain ``def`` (``required_args``) around their ``async def create``.
    return inspect.iscoroutinefunction(inspect.unwrap(getattr(type(resource), name, None) or (lambda: None)))


def _patch(owner: Any, name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Put ``wrap(method)`` in place of ``owner``'s method ``name`` (if it has one), in one step: ``method`` is the one
    llmcost found there first, also when an earlier patch is there now, and the patch keeps what ``_restore`` puts
    back (whether the instance had its own attribute, and what it was)."""
    own = owner.__dict__
    mark = getattr(own.get(name), _MARK, None)
    if mark is None:
        method = getattr(owner, name, None)
        mark = (name in own, own.get(name))
    else:
        had_own, kept = mark
        method = kept if had_own else inspect.getattr_static(type(owner), name).__get__(owner, type(owner))
    if method is None:
        return
    replacement = wrap(method)
    setattr(replacement, _MARK, mark)
    setattr(owner, name, replacement)


def _restore(owner: Any, name: str) -> bool:
    current = owner.__dict__.get(name)
    mark = getattr(current, _MARK, None)
    if mark is None:
        return False
    had_own, original = mark
    if had_own:
        setattr(owner, name, original)
    else:
        delattr(owner, name)
    return True


#: Methods that return a stream manager which sends its request when it is entered, not when it is made (Anthropic's
#: ``messages.stream()``): tracked as that request, at the enter, as OpenAI's ``.stream()`` helpers are (their
#: ``create`` is called then): refused there by a budget with nothing sent, and recorded with the ``llmcost.tags``
#: and budgets around the ``with``, wherever the manager was made.
_ENTERED = frozenset({"stream"})
#: Methods whose responses name no model (OpenAI's ``CompactedResponse``): priced as the request's ``model=``.
_MODEL_FROM_REQUEST = frozenset({"compact"})
#: Distinct request models a ``_by_request_model`` method keeps a tracked method for (then it makes them anew).
_REQUEST_MODELS_KEPT = 64


def _tracked(method: Callable[..., Any], label: str, options: dict[str, Any], is_async: bool) -> Callable[..., Any]:
    name = label.rsplit(".", 1)[-1]
    if name in _MODEL_FROM_REQUEST and options.get("model") is None:
        return _by_request_model(method, label, options, is_async)
    if name in _ENTERED and label.startswith("anthropic."):
        return _tracked_when_entered(method, label, options)
    return _tracked_as_given(method, label, options, is_async)


def _tracked_when_entered(method: Callable[..., Any], label: str, options: dict[str, Any]) -> Callable[..., Any]:
    """``method`` (a ``stream()`` that builds a manager, sync or async, without a request), returning a manager whose
    request is tracked as it is entered: the tracked ``method`` is called then, with the same arguments."""
    tracked = _tracked_as_given(method, label, options, False)  # (a plain def in both SDKs: it returns the manager)
    signature = inspect.signature(method)

    @functools.wraps(method)
    def stream(*args: Any, **kwargs: Any) -> Any:
        signature.bind(*args, **kwargs)  # a wrong argument still raises here, where the SDK raises it
        return OpenedWhenEntered(functools.partial(tracked, *args, **kwargs))

    return stream


def _tracked_as_given(
    method: Callable[..., Any], label: str, options: dict[str, Any], is_async: bool
) -> Callable[..., Any]:
    if not is_async or inspect.iscoroutinefunction(method):
        return track_cost(**{"resource": label, **options})(method)

    # ``track_cost`` picks its async wrapper for a coroutine function; the SDK's is hidden behind a plain def
    # (``required_args``) for some methods: only those get this coroutine around them, a step more on every request.
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        return await method(*args, **kwargs)

    return track_cost(**{"resource": label, **options})(call)


def _by_request_model(
    method: Callable[..., Any], label: str, options: dict[str, Any], is_async: bool
) -> Callable[..., Any]:
    """``method`` tracked with ``model=`` the request's own (its response names none), one tracked method per model
    (made on the model's first request)."""
    tracked: dict[object, Callable[..., Any]] = {}

    def engine(model: object) -> Callable[..., Any]:
        found = tracked.get(model)
        if found is None:
            if len(tracked) >= _REQUEST_MODELS_KEPT:
                tracked.clear()
            given = {**options, "model": model} if isinstance(model, str) and model else options
            found = tracked[model] = _tracked_as_given(method, label, given, is_async)
        return found

    if is_async:

        @functools.wraps(method)
        async def call_async(*args: Any, **kwargs: Any) -> Any:
            return await engine(kwargs.get("model"))(*args, **kwargs)

        return call_async

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        return engine(kwargs.get("model"))(*args, **kwargs)

    return call


def _retriever(method: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
    """``method`` (``responses.retrieve``), recording what it fetches if it is a background response created here
    that has finished (``_retrieved``); nothing else is done, no budget checked: a retrieve is not billed."""
    if is_async:

        @functools.wraps(method)
        async def retrieve_async(*args: Any, **kwargs: Any) -> Any:
            return _retrieved(await method(*args, **kwargs), args, kwargs)

        return retrieve_async

    @functools.wraps(method)
    def retrieve(*args: Any, **kwargs: Any) -> Any:
        return _retrieved(method(*args, **kwargs), args, kwargs)

    return retrieve


def _retrieved(result: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Record a retrieved background response created here once it has finished with its usage: at once for a
    response, when it ends for a stream (``retrieve(stream=True)``, ``responses.stream(response_id=...)``)."""
    response_id = args[0] if args else kwargs.get("response_id")
    if not background.is_pending(response_id):  # (any other response: not billed by this retrieve)
        return result
    try:
        if is_sdk_stream(result):
            return hook_stream(result, functools.partial(_stream_retrieved, response_id))
        if background.settled_id(result) == response_id:
            found = extract_usage(result)
            record = background.claim(response_id) if found is not None else None
            if record is not None and found is not None:
                record(found)
    except Exception as exc:  # noqa: BLE001 - tracking must never break the user's call
        log_once(("retrieve", type(exc)), "llmcost: could not record background response %s: %r", response_id, exc)
    return result


def _stream_retrieved(
    response_id: object, extracted: Extracted | None, ended: bool = True, seen: StreamAccumulator | None = None
) -> None:
    """A retrieved stream of a background response ended: recorded if it saw the response finish (its usage)."""
    record = background.claim(response_id) if extracted is not None else None
    if record is not None and extracted is not None:
        record(extracted)


def _copier(method: Callable[..., Any], options: dict[str, Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def copy(*args: Any, **kwargs: Any) -> Any:
        return instrument(method(*args, **kwargs), **options)

    return copy


def _undo(client: object, sdk: str) -> bool:
    found = False
    for path, names in _METHODS[sdk]:
        resource = _resource(client, path)
        if resource is None or not hasattr(resource, "__dict__"):
            continue
        for name in names:
            found = _restore(resource, name) or found
        _forget_wrappers(client, path)
    for path, name in _RETRIEVES[sdk]:
        resource = _resource(client, path)
        if resource is not None and hasattr(resource, "__dict__"):
            found = _restore(resource, name) or found
    for name in _COPIES:
        found = _restore(client, name) or found
    return found


def _forget_wrappers(client: object, path: str) -> None:
    """Forget the raw-response wrappers made so far of ``client`` and of each resource on ``path``."""
    obj: Any = client
    for part in ["", *path.split(".")]:
        obj = getattr(obj, part) if part else obj
        own = getattr(obj, "__dict__", None)
        if own is not None:
            for name in _WRAPPER_CACHES:
                own.pop(name, None)


def instrument(client: C, **track_cost_options: Any) -> C:
    """Track the cost of every request ``client`` makes, and enforce budgets before each is sent; returns ``client``.

    For OpenAI and Anthropic clients, sync and async (``openai.OpenAI``, ``openai.AsyncOpenAI``, Azure's,
    ``anthropic.Anthropic``, ``anthropic.AsyncAnthropic``): chat completions (``create``, ``parse``), completions,
    embeddings, Responses (``create``, ``parse``, ``stream()``, ``compact``, ``beta.responses`` too; a
    ``background=True`` response is recorded when a ``retrieve`` finds it finished), Anthropic messages (``create``,
    ``parse``, ``stream()``, beta included), streams (``stream=True``), the SDKs' stream managers, and the same requests
    through ``with_raw_response`` and ``with_streaming_response`` (recorded as the body is read). Whatever the calling
    function returns (``r.choices[0].message.content`` is fine), each request is recorded once, and a budget that
    refuses a request raises ``BudgetExceeded`` before anything is sent. OpenAI chat streams report usage only with
    ``stream_options={"include_usage": True}``.

    ``track_cost_options`` are ``@track_cost``'s (``tracker``, ``resource``, ``tags``, ``category``, ``model``,
    ``estimate``, ...); ``resource`` defaults to the method, e.g. ``"openai.chat.completions.create"``, and a
    ``tags`` callable gets the request's keyword arguments. Only this client object is patched, never the SDK.
    Instrumenting again replaces the options (a request is still recorded once); ``uninstrument`` undoes it.
    Passing the ``litellm`` module registers a LiteLLM callback instead (see ``docs/instrument.md``).

    Example::

        client = llmcost.instrument(openai.OpenAI(), tags={"team": "search"})

        def ask(question: str) -> str:  # no decorator needed
            r = client.chat.completions.create(model="gpt-4o-mini", messages=[...])
            return r.choices[0].message.content
    """
    if inspect.ismodule(client) and client.__name__ == "litellm":
        from ._litellm import instrument_litellm

        instrument_litellm(client, track_cost_options)
        return client
    sdk = _sdk_of(client)
    if sdk is None:
        raise _not_a_client("instrument", client)
    track_cost(**track_cost_options)  # bad options fail here, before anything is patched
    given = dict(track_cost_options)  # (a copy's own host is found from its own base URL: ``_copier``)
    options = dict(given)
    if options.get("provider") is None:
        # The host comes from the client's base URL (Groq, Azure, OpenRouter... answer in OpenAI's shape): priced as
        # that host bills, not as whichever catalog provider happens to list the model id.
        host = _host_of(client)
        if host is not None:
            options["provider"] = host
    # Each method is replaced in one step, an earlier patch included (instrumenting again): never undone first, where
    # a request from another thread would reach the bare method, unrecorded and unchecked.
    with _lock:
        for path, names in _METHODS[sdk]:
            resource = _resource(client, path)
            if resource is None or not hasattr(resource, "__dict__"):
                continue
            for name in names:
                label = f"{sdk}.{path}.{name}"
                is_async = _is_async(resource, name)
                _patch(resource, name, lambda method: _tracked(method, label, options, is_async))  # noqa: B023
            _forget_wrappers(client, path)
        for path, name in _RETRIEVES[sdk]:
            resource = _resource(client, path)
            if resource is not None and hasattr(resource, "__dict__"):
                is_async = _is_async(resource, name)
                _patch(resource, name, lambda method: _retriever(method, is_async))  # noqa: B023
        for name in _COPIES:
            _patch(client, name, lambda method: _copier(method, given))
    return client


def _host_of(client: object) -> str | None:
    """The genai-prices provider of the client's base URL (``https://api.groq.com/openai/v1``: ``groq``), if known."""
    base_url = getattr(client, "base_url", None)
    return None if base_url is None else provider_for_url(str(base_url))


def uninstrument(client: C) -> C:
    """Undo ``instrument(client)``: the client's methods are exactly what they were before; returns ``client``.

    A client that was never instrumented is returned unchanged.

    Example::

        llmcost.uninstrument(client)
    """
    if inspect.ismodule(client) and client.__name__ == "litellm":
        from ._litellm import uninstrument_litellm

        uninstrument_litellm(client)
        return client
    sdk = _sdk_of(client)
    if sdk is None:
        raise _not_a_client("uninstrument", client)
    with _lock:
        _undo(client, sdk)
    return client
