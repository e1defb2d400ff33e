"""Every piece of process-wide state of llmcost, in one place, with one ``reset()``.

The default tracker, the on/off switch, the registered prices, the caches (price resolution and remembered misses,
``MODEL_PRICING``, the catalog's id index, providers by URL, the unit registry, interned tag maps, per-type
extraction facts, tokenizers), the durable stores' per-path locks, the log-once set, the trackers to flush at exit
(and on SIGTERM) and the entry id counter all live here. Other modules read and write them through this module;
``reset()`` puts them all back as a fresh process has them (tests call it around each test).

Containers are cleared in place and never rebound, so a hot path may bind one to a local name at import
(``_resolved = _state.resolved_prices``); scalars are read as ``_state.name`` at the point of use.

Not here, on purpose: the ``contextvars`` of ``_context`` (tags and budgets entered in a context belong to that
context, and their context managers restore them), and the setup hooks of ``default_tracker_hooks``, which modules
register when imported (wiring, which a fresh process has too).

This module imports nothing from llmcost: it is the bottom of the import graph.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import random
import signal
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

__all__ = ["reset"]

logger = logging.getLogger("llmcost")


class Flushable(Protocol):
    """What the state needs of a tracker: to flush it at exit, close it on reset and restart it in a forked child."""

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def forked(self) -> None: ...


# -- locks --------------------------------------------------------------------------------------------------------
#: Every lock made by ``new_lock``/``new_rlock`` that is still alive: each is made free again in a forked child.
_fork_locks: weakref.WeakSet[Any] = weakref.WeakSet()


def new_lock() -> threading.Lock:
    """A ``threading.Lock`` that a forked child finds free (see ``_free_locks_in_child``).

    Example::

        from llmcost import _state

        guard = _state.new_lock()
        with guard:
            pass
    """
    made = threading.Lock()
    _fork_locks.add(made)
    return made


def new_rlock() -> threading.RLock:
    """A ``threading.RLock`` that a forked child finds free (see ``_free_locks_in_child``).

    Example::

        from llmcost import _state

        guard = _state.new_rlock()
        with guard, guard:
            pass
    """
    made = threading.RLock()
    _fork_locks.add(made)
    return made


def _free_locks_in_child() -> None:
    """In a forked child: free every lock of ``_fork_locks``, in place (so every holder of a reference sees it).

    The child has only the thread that forked. A lock another thread held at the fork (a budget counting a call, a
    price being resolved, a store appending) would stay held for good, and the child's first call needing it would
    hang. What such a lock guards is at worst one update behind, which is what the child would have seen a moment
    earlier. ``_at_fork_reinit`` is CPython's own way of doing this (``logging`` and ``concurrent.futures`` reset
    their locks with it); where it is missing the locks are left as they are.
    """
    for held in list(_fork_locks):
        reinit = getattr(held, "_at_fork_reinit", None)
        if reinit is not None:
            reinit()


#: Guards every write of a scalar below, and compound updates of the containers.
lock = new_rlock()

# -- configuration ------------------------------------------------------------------------------------------------
#: The process-wide default tracker (``configure``/``get_tracker``), or ``None`` until first use.
default_tracker: Any = None
#: Called with each new default tracker (env budgets). Registered at import by the modules that provide them; kept
#: by ``reset()``.
default_tracker_hooks: list[Callable[[Any], object]] = []
#: Called with a tracker to enforce the budgets saved in its store (``_manager`` registers its loader at import);
#: kept by ``reset()``.
stored_budget_hooks: list[Callable[[Any], object]] = []
#: ``set_active``: tracking and enforcement on or off.
active = True

# -- logging and exit ---------------------------------------------------------------------------------------------
#: Causes already logged by ``log_once``.
logged: set[object] = set()
logged_lock = new_lock()
#: Trackers with a buffered store: flushed at exit.
live_trackers: weakref.WeakSet[Any] = weakref.WeakSet()
#: Objects holding what a forked child must neither use nor free (the stores' DuckDB connections): each one's
#: ``forked()`` runs in the child, before the trackers are restarted. Added to under ``lock``.
fork_aware: weakref.WeakSet[Any] = weakref.WeakSet()
#: Budgets' leases of this process that may hold a reservation or amounts (``stores._lease``; held strongly: a lease
#: whose budget is dropped unexited is still settled when its store closes or the process exits).
open_leases: set[Any] = set()
#: The thread that settles idle leases, the process that started it (a forked child starts its own) and the event
#: that stops it: ``(pid, thread, stop)``.
lease_settler: tuple[int, Any, Any] | None = None
_exit_hook_registered = False

# -- prices -------------------------------------------------------------------------------------------------------
#: Guards price resolution and the registry (held while the catalog is read, so apart from ``lock``).
prices_lock = new_rlock()
#: ``register_price``/``load_prices``: ``(provider or None, lowercased model) -> ModelPrice``.
user_prices: dict[tuple[str | None, str], Any] = {}
#: ``(model, provider) -> resolved price`` (the pricing hot path).
resolved_prices: dict[tuple[str, str | None], Any] = {}
#: Changes of the registered prices so far (``prices_changed``, ``reset``): a value priced while it stays the same was
#: priced at the prices in force (read before the price is looked up).
prices_generation = 0
#: What ``MODEL_PRICING`` shows, built on first access (``None``: not built, or invalidated).
pricing_table: dict[str, Any] | None = None
#: The installed genai-prices version, read on first use.
catalog_version: str | None = None
#: Model ids the catalog lacks: ``(model, provider) -> closest known ids``, so a miss is not searched again.
unknown_models: dict[tuple[str, str | None], list[str]] = {}
#: The catalog's model ids, lowercased, to (provider, model info), model makers first (``MODEL_PRICING`` order).
catalog_index: dict[str, Any] = {}
#: Provider ids by API base URL (scheme and host), as genai-prices matches them.
url_providers: dict[str, str | None] = {}
#: The pre-built price table (``_price_table``), read on first use: its rows, or ``{"usable": False}``.
price_table: dict[str, Any] = {}
#: genai-prices' unit registry (usage name -> unit) and the same units by price key, read on first use.
unit_registry: dict[str, Any] = {}
units_by_price_key: dict[str, Any] = {}
#: The registry's units by their dimensions (``_usage.overlap_of``), made from ``unit_registry`` on first use.
units_by_dimensions: dict[frozenset[tuple[str, str]], str] = {}

# -- values -------------------------------------------------------------------------------------------------------
#: ``intern_tags``: one shared ``FrozenTags`` per distinct tag map (bounded by ``_entry``).
interned_tags: dict[tuple[tuple[str, str], ...], Any] = {}
#: Entry ids: a per-process random tag and counter (reseeded in a forked child, so ids stay unique).
entry_seq: itertools.count[int] = itertools.count()
# (From the OS's randomness, not ``random``'s global generator: a program that seeds that one before importing llmcost,
# as ML and simulation jobs do, would give every process the same tag, and a store skips a second entry of one id.)
process_tag: int = random.SystemRandom().getrandbits(24)

# -- extraction (per-type facts; each bounded by ``_extract``) -----------------------------------------------------
type_kinds: dict[type, int] = {}
class_attributes: dict[tuple[type, str], bool] = {}
type_providers: dict[type, str | None] = {}
extractors: dict[type, Callable[[Any], Any]] = {}
#: How a response's extra usage units are cut to their wholes, by the names it reports (``_extract._clamped_units``).
unit_clamps: dict[tuple[str, ...], Any] = {}
#: One ``Units`` per distinct Anthropic (5-minute write, 1-hour write, web searches) counts (``_extract``).
anthropic_units: dict[tuple[int, int, int], Any] = {}
type_is_one_of: dict[tuple[type, frozenset[tuple[str, str]]], bool] = {}
#: Whether a type is an SDK stream or stream manager (``may_be_stream``, on every tracked call).
type_may_stream: dict[type, bool] = {}

# -- analytics ----------------------------------------------------------------------------------------------------
#: ``provider -> (model id, line, rank)`` of its current catalog models, for the recommender.
provider_models: dict[str, Any] = {}

# -- stores -------------------------------------------------------------------------------------------------------
#: One reentrant ``FlushLock`` per durable store path (``stores/_durable``): POSIX file locks cannot tell two store
#: objects of one process apart, so the objects of one path take turns here. Started afresh in a forked child, where a
#: lock another thread held at fork time would never be released. A ``FlushLock``, since SIGTERM's flush appends
#: under it: a SIGTERM arriving while the main thread reads the store is handled when the read lets go.
path_locks: dict[str, FlushLock] = {}
_path_locks_guard = threading.Lock()

# -- tokens -------------------------------------------------------------------------------------------------------
#: Tokenizer encodings by name (``None``: could not be loaded in this process).
encodings: dict[str, Any] = {}
encodings_lock = new_lock()
#: The encoding each model is counted with, by model (``None``: the heuristic), found once per model: without
#: tiktoken installed, every lookup would otherwise search ``sys.path`` for it again (a failed import is not cached).
model_encodings: dict[str | None, Any] = {}
#: Tokens of prompt texts already counted, by way of counting (``_tokens``): a text sent again (a system prompt, a
#: conversation's earlier messages) is one lookup, not another encoding. Each dict bounded there.
token_counts: dict[Any, dict[str, int]] = {}
#: A budget's estimates of calls from their prompts (``_tokens.estimated_amount``): by model, its way of counting,
#: the ``prices_generation`` they were priced at and the amounts by (input tokens, output tokens). Bounded there.
estimated_amounts: dict[str, Any] = {}
#: The same kept estimates of the models counted by the heuristic (no tokenizer), at the current ``prices_generation``
#: only: emptied as prices change (``prices_changed``), so a request's estimate needs neither check per call.
heuristic_amounts: dict[str, Any] = {}

#: Background Responses created in this process and not recorded yet (``_background``): response id -> what records
#: it, oldest first. A forked child starts without them: its retrieves must not record its parent's again.
background_responses: OrderedDict[str, Any] = OrderedDict()

#: The trackers whose OpenTelemetry exports want the model each tracked call asked for (``llmcost.otel`` adds and
#: removes them; ``_decorator.wanting_requested`` is this list): tracked calls of these set ``requested_model``.
requested_wanted: list[object] = []

_CACHES: tuple[dict[Any, Any] | set[Any], ...] = (
    logged,
    heuristic_amounts,
    user_prices,
    resolved_prices,
    unknown_models,
    catalog_index,
    price_table,
    url_providers,
    unit_registry,
    units_by_price_key,
    units_by_dimensions,
    interned_tags,
    type_kinds,
    class_attributes,
    type_providers,
    extractors,
    unit_clamps,
    anthropic_units,
    type_is_one_of,
    type_may_stream,
    provider_models,
    encodings,
    model_encodings,
    token_counts,
    estimated_amounts,
    path_locks,
    background_responses,
)


def _reseed_ids() -> None:
    global entry_seq, process_tag
    entry_seq = itertools.count()
    process_tag = random.SystemRandom().getrandbits(24)


def path_lock(path: str) -> FlushLock:
    """The process-wide (reentrant) lock of store path ``path``, made on first use (callers name a file by its real
    path: DuckDB tells two attachments of one file apart by it, whatever the path that reached it)."""
    with _path_locks_guard:
        found = path_locks.get(path)
        if found is None:
            found = path_locks[path] = FlushLock(reentrant=True)
        return found


def _forget_path_locks() -> None:
    global _path_locks_guard, _held_for_fork
    _path_locks_guard = threading.Lock()
    path_locks.clear()
    _held_for_fork = []


#: Seconds ``fork()`` waits in all for other threads to let go of the store paths' locks (``_hold_path_locks``).
FORK_WAIT_SECONDS = 10.0
#: The path locks ``_hold_path_locks`` took, let go of after the fork (``_let_go_of_path_locks``).
_held_for_fork: list[FlushLock] = []


def _hold_path_locks() -> None:
    """Before ``fork()``: take every store path's lock, so that no other thread has a DuckDB file attached as the
    child is made (waiting ``FORK_WAIT_SECONDS`` in all; a lock still held then is left).

    DuckDB's record of the files attached in a process is the child's too, and the parent's connections are set
    aside in the child, never closed (``Durable.forked``): a child forked while another thread read or wrote a store
    could not attach that file again, and lost every call it tracked (its store failing for good)."""
    global _held_for_fork
    with _path_locks_guard:
        locks = list(path_locks.values())
    deadline = time.monotonic() + FORK_WAIT_SECONDS
    held = []
    for found in locks:
        if found.hold(max(0.0, deadline - time.monotonic())):
            held.append(found)
    _held_for_fork = held


def _let_go_of_path_locks() -> None:
    """After ``fork()``, in the parent: let go of the locks ``_hold_path_locks`` took."""
    global _held_for_fork
    held, _held_for_fork = _held_for_fork, []
    for found in held:
        found.let_go()


#: ``[True]`` once a SIGTERM is ending the process (its default action is to follow the flush): the other threads
#: go on recording meanwhile, so each entry recorded then is written as it is recorded (``CostTracker``), and the
#: flush's last step keeps every tracker's flush lock (``flush_and_hold``) so none is buffered after it. Empty else.
ending: list[bool] = []
#: How long a store's retries may wait at the end of the process (a file another process holds locked): what they
#: cannot write by then is spilled to disk, kept for the store's next open, not lost when the process is killed.
EXIT_RETRY_SECONDS = 4.0
#: The ``time.monotonic()`` by which a flush at the end of the process must be done with retrying
#: (``past_exit_deadline``): set as it starts (at exit, or by a SIGTERM that ends the process). Empty while the
#: process runs on.
exit_deadline: list[float] = []


def past_exit_deadline(_retry_state: object = None) -> bool:
    """Whether the process is ending and ``exit_deadline`` has passed: a store's retries stop then (a tenacity stop
    condition; retries already under way stop too).

    Example::

        from llmcost._state import past_exit_deadline

        past_exit_deadline()  # False while the process runs on
    """
    return bool(exit_deadline) and time.monotonic() >= exit_deadline[0]


#: Per thread, the longest a store's retries may take within ``short_retries`` (``cap``), if set.
_retry_caps = threading.local()


@contextlib.contextmanager
def short_retries(seconds: float) -> Iterator[None]:
    """Within the block, a store's retries on this thread give up after ``seconds`` at most, whatever the store's
    ``retry_timeout`` (``retry_seconds``): for reads that may be made again later, not waited on now.

    Example::

        from llmcost import _state

        with _state.short_retries(1.0):
            assert _state.retry_seconds(30.0) == 1.0
    """
    previous = getattr(_retry_caps, "cap", None)
    _retry_caps.cap = seconds if previous is None else min(previous, seconds)
    try:
        yield
    finally:
        _retry_caps.cap = previous


def retry_seconds(timeout: float) -> float:
    """How long a store's retries given ``timeout`` seconds may take now, on this thread (``short_retries``)."""
    cap = getattr(_retry_caps, "cap", None)
    return timeout if cap is None else min(timeout, cap)


def _end_of_retries() -> None:
    """Set ``exit_deadline`` ``EXIT_RETRY_SECONDS`` from now, unless an earlier one is set."""
    deadline = time.monotonic() + EXIT_RETRY_SECONDS
    exit_deadline[:] = [min([deadline, *exit_deadline])]


# A forked child must not repeat its parent's ids. Registering a fork callback creates nothing and starts nothing;
# doing it on first use would put a check on the per-call path.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_free_locks_in_child)  # first: the hooks after it may take these locks
    os.register_at_fork(after_in_child=_reseed_ids)
    os.register_at_fork(after_in_child=_forget_path_locks)
    os.register_at_fork(after_in_child=background_responses.clear)
    os.register_at_fork(after_in_child=ending.clear)  # (a child forked as its parent ends lives on)
    os.register_at_fork(after_in_child=exit_deadline.clear)
    os.register_at_fork(before=_hold_path_locks, after_in_parent=_let_go_of_path_locks)


class FlushLock:
    """A lock that SIGTERM's flush needs: while the main thread holds one, SIGTERM waits until it lets go.

    The SIGTERM handler runs on the main thread, between two of its bytecodes. Had that thread been holding a lock
    the flush needs (a tracker's move or flush lock), the flush would wait for a thread that waits for it, and the
    buffered entries would be lost when the time ran out. So the handler only notes the signal then, and the last
    such lock the main thread releases runs it. Other threads hold these locks as any lock.

    Example::

        from llmcost._state import FlushLock

        guard = FlushLock()
        with guard:
            pass  # a SIGTERM arriving here is handled just after the block

    ``reentrant=True``: one thread may take it again while it holds it (as a ``threading.RLock``).
    """

    __slots__ = ("_lock",)

    def __init__(self, *, reentrant: bool = False) -> None:
        self._lock: Any = new_rlock() if reentrant else new_lock()  # (free again in a forked child)

    def hold(self, timeout: float) -> bool:
        """Take the lock within ``timeout`` seconds (``0``: only if it is free), without the SIGTERM bookkeeping of
        ``with`` (``fork()``'s hooks hold the path locks around a fork, where no flush runs); whether it was taken.
        ``let_go`` releases it."""
        return bool(self._lock.acquire(timeout=timeout) if timeout > 0 else self._lock.acquire(False))

    def let_go(self) -> None:
        """Release the lock ``hold`` took."""
        self._lock.release()

    def __enter__(self) -> None:
        global _main_holding
        main = threading.get_ident() == _main_ident
        if main:
            _main_holding += 1  # before the acquire: a signal between the two is deferred too
        try:
            self._lock.acquire()
        except BaseException:
            if main:
                _main_holding -= 1
            raise

    def __exit__(self, *exc: object) -> None:
        global _main_holding, _deferred_sigterm
        self._lock.release()
        if threading.get_ident() == _main_ident:
            _main_holding -= 1
            if not _main_holding and _deferred_sigterm is not None:
                signum, frame = _deferred_sigterm
                _deferred_sigterm = None
                _on_sigterm(signum, frame)


#: The thread signal handlers run on (the forking thread, in a forked child), and how many ``FlushLock``s it holds.
_main_ident: int | None = threading.main_thread().ident
_main_holding = 0
#: A SIGTERM that arrived while the main thread held a ``FlushLock``: ``(signum, frame)``, handled at its release.
_deferred_sigterm: tuple[int, Any] | None = None


def live_snapshot() -> list[Any]:
    """The live trackers, as a list taken under ``lock``. Trackers are added from any thread, and a dropped one's
    leftovers (``track_orphan``) by the garbage collector, which may run on this very thread as the list is made
    (the set then changed size as it was read: read again)."""
    with lock:
        while True:
            try:
                return list(live_trackers)
            except RuntimeError:
                continue


def _flush_all_at_exit() -> None:
    # Trackers first: what is flushed after them (``flush_last``: budgets' leases, which settle in the ledger and may
    # wait for a lock a signalled thread holds) must not keep a tracker's entries from being written.
    for tracker in sorted(live_snapshot(), key=lambda held: getattr(held, "flush_last", False)):
        try:
            tracker.flush()
        except Exception:
            logger.exception("llmcost: could not flush %r at exit", tracker)


def _flush_before_the_end() -> None:
    """The flush of a SIGTERM that ends the process: every tracker, then what is flushed last (budgets' leases), then
    every tracker again, keeping its flush lock (``flush_and_hold``): the entries other threads recorded meanwhile
    (written as they were recorded, ``ending``) are all written, and none is buffered after."""
    _flush_all_at_exit()
    for tracker in live_snapshot():
        hold = getattr(tracker, "flush_and_hold", None)
        if hold is not None:
            try:
                hold()
            except Exception:
                logger.exception("llmcost: could not flush %r at exit", tracker)


def _end_at_exit() -> None:
    """The ``atexit`` hook: stop every tracker's background writer (``CostTracker.stop_writer``), then flush.

    A store's retries are bounded meanwhile (``past_exit_deadline``): a process waiting out a lock a minute or more
    would be killed first (``docker stop``), and what could not be written is spilled instead.

    Atexit hooks run before the interpreter starts finalizing; a daemon thread still inside DuckDB then would be
    ended by ``pthread_exit`` as it takes the GIL back, aborting the process (see ``stop_writer``). Stopping the
    writers here leaves no tracker thread in a store, and the flush that follows writes what they left.
    """
    _end_of_retries()
    for tracker in live_snapshot():
        stop = getattr(tracker, "stop_writer", None)  # (the leases' exit hook stops their settler here)
        if stop is not None:
            try:
                stop()
            except Exception:
                logger.exception("llmcost: could not stop the writer of %r at exit", tracker)
    _flush_all_at_exit()


#: How long SIGTERM waits for the flush before the process ends anyway (``docker stop`` allows 10 s by default).
SIGTERM_FLUSH_SECONDS = 8.0
#: What SIGTERM did before llmcost's handler, the latest first: the first is chained to after the flush. Installed
#: again over a handler set since (``install_sigterm_handler``), llmcost's puts that one first; a handler that
#: itself calls the one it replaced (llmcost's) reaches the next (``_sigterm_depth``). Empty until installed.
_previous_sigterm: list[Any] = []
_sigterm_installed = False
#: How many of ``_previous_sigterm`` the handler is calling now (nested: a chained handler called llmcost's again).
_sigterm_depth = 0


def _on_sigterm(signum: int, frame: Any) -> None:
    """Flush every live tracker, then end the process as SIGTERM would have without llmcost.

    The flush runs on its own thread, bounded in time. The handler runs on the main thread between two bytecodes;
    if that thread holds a ``FlushLock`` then, the flush would wait for it, so the signal is handled when the lock
    is released instead (a flush the main thread was doing finishes first). That wait is bounded too: a flush still
    going after ``SIGTERM_FLUSH_SECONDS`` (a store that hangs) no longer holds the process up.
    """
    global _deferred_sigterm, _sigterm_overdue, _sigterm_depth
    depth = _sigterm_depth
    previous = _previous_sigterm[depth] if depth < len(_previous_sigterm) else signal.SIG_DFL
    if depth:  # called again by a handler it chained to (which had replaced it): the flush was done
        pass
    elif _sigterm_overdue:  # the main thread still holds what a flush needs: none is tried
        _deferred_sigterm, _sigterm_overdue = None, False
    elif _main_holding:  # the interrupted main thread holds a lock the flush needs: handled when it lets go
        if _deferred_sigterm is None:
            _deferred_sigterm = (signum, frame)
            threading.Thread(target=_end_if_still_deferred, name="llmcost-sigterm-wait", daemon=True).start()
        return
    else:
        # The process ends right after the flush when SIGTERM's default action follows it; a handler chained to may
        # instead shut down gracefully (a server finishing its requests), whose calls must go on being recorded as
        # usual, and are flushed at exit.
        final = not callable(previous) and previous != signal.SIG_IGN
        if final:
            ending[:] = [True]
            _end_of_retries()
        flusher = threading.Thread(
            target=_flush_before_the_end if final else _flush_all_at_exit, name="llmcost-sigterm-flush", daemon=True
        )
        flusher.start()
        flusher.join(SIGTERM_FLUSH_SECONDS)
    if callable(previous):
        _sigterm_depth = depth + 1
        try:
            previous(signum, frame)
        finally:
            _sigterm_depth = depth
        return
    if previous == signal.SIG_IGN:
        return
    # SIG_DFL (or a handler set outside Python): the default action, so the exit status says "killed by SIGTERM".
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


#: Set when a deferred SIGTERM waited ``SIGTERM_FLUSH_SECONDS`` for the main thread's lock: it is then handled at once.
_sigterm_overdue = False


def _end_if_still_deferred() -> None:
    """Raise SIGTERM again if, ``SIGTERM_FLUSH_SECONDS`` after it was deferred, it still waits for the main thread;
    the handler then ends the process (or calls the handler it replaced) without a flush."""
    global _sigterm_overdue
    time.sleep(SIGTERM_FLUSH_SECONDS)
    deferred = _deferred_sigterm
    if deferred is not None:
        _sigterm_overdue = True
        signal.raise_signal(deferred[0])  # handled on the main thread, at its next bytecode


def install_sigterm_handler(*, at_import: bool = False) -> None:
    """Flush on SIGTERM, chaining to whatever handler was there (installed again over a handler set since).

    Only the main thread may set handlers, so ``track_live`` calls this with each tracker made on the main thread,
    and ``_tracker`` as it is imported (on the main thread, as imports usually are) when ``LLMCOST_STORE`` names the
    default tracker's store: a process whose default tracker is first made on another thread is covered all the
    same. Not covered: a process that first imports llmcost
    on another thread and only ever makes trackers there, and a handler set after the last tracker made on the main
    thread that does not call the one it replaced (the exit hook still flushes if that handler ends the process with
    ``sys.exit``).

    ``at_import``: leave a handler set outside Python (an embedding program's) alone until a tracker is made.
    """
    global _sigterm_installed
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        current = signal.getsignal(signal.SIGTERM)
        if current is _on_sigterm or (at_import and current is None):
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, AttributeError):  # no signals here (embedded interpreters, some platforms)
        return
    _previous_sigterm.insert(0, current)
    _sigterm_installed = True


def _uninstall_sigterm_handler() -> None:
    global _sigterm_installed
    if not _sigterm_installed:
        return
    try:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:  # someone else's handler since then stays
            signal.signal(signal.SIGTERM, _previous_sigterm[0])  # (what llmcost's replaced last)
    except (ValueError, OSError):  # not the main thread: leave it; it flushes nothing once trackers are gone
        return
    _previous_sigterm.clear()
    _sigterm_installed = False


def track_live(tracker: Flushable) -> None:
    """Flush ``tracker`` at exit and on SIGTERM (the hooks are installed with the first such tracker), and as a
    ``multiprocessing`` child ends (``flush_at_child_exit``)."""
    global _exit_hook_registered
    with lock:
        live_trackers.add(tracker)
        if not _exit_hook_registered:
            atexit.register(_end_at_exit)
            _exit_hook_registered = True
        install_sigterm_handler()
    # A multiprocessing child (forkserver, spawn, or fork with llmcost imported after the fork: no fork hook of ours
    # ran there) ends with ``os._exit`` or after ``multiprocessing``'s own exit function, running no atexit hook in
    # the first case. (``multiprocessing`` is imported in such a child; its absence means a plain process.)
    mp = sys.modules.get("multiprocessing")
    if mp is not None and _child_flush_pid != os.getpid():
        if mp.parent_process() is not None:
            flush_at_child_exit()
        elif _after_fork_pid != os.getpid():
            # Perhaps a child still being prepared: a forkserver or spawn child imports the main module (which may make
            # a tracker) before ``multiprocessing`` bootstraps it, and the bootstrap clears every finalizer made so far;
            # the hooks it then runs register the flush (in any other process, its children's bootstrap does).
            _flush_after_bootstrap()


def forget_live(tracker: Flushable) -> None:
    """Stop flushing ``tracker`` at exit (it was closed)."""
    with lock:
        live_trackers.discard(tracker)


#: What trackers dropped without ``close()`` left to write (``_tracker._Left``), held until written: each is one of
#: the ``live_trackers`` meanwhile, flushed at exit, on SIGTERM and as a ``multiprocessing`` child ends.
orphans: set[Any] = set()


def track_orphan(left: Flushable) -> None:
    """Keep ``left`` (what a dropped tracker left) and flush it as a live tracker until ``forget_orphan``."""
    with lock:
        orphans.add(left)
    track_live(left)


def forget_orphan(left: Flushable) -> None:
    """``left`` is written (or its process is a forked child, which leaves it to the parent)."""
    with lock:
        orphans.discard(left)
        live_trackers.discard(left)


def _restart_in_child() -> None:
    """In a forked child: restart every live tracker, and flush them as a ``multiprocessing`` child ends.

    The child has none of its parent's threads: no background writer, and any lock one of them held at the fork
    stays held. A ``multiprocessing`` child ends with ``os._exit``, which runs no ``atexit`` hook, only the
    finalizers registered after its fork; ``_run_after_forkers`` registers one (a child of a bare ``os.fork`` that
    calls ``os._exit`` must flush itself).
    """
    global _main_ident, _main_holding, _deferred_sigterm, _sigterm_overdue
    _main_ident, _main_holding, _deferred_sigterm, _sigterm_overdue = threading.get_ident(), 0, None, False
    for holder in list(fork_aware):
        holder.forked()
    for tracker in live_snapshot():
        tracker.forked()
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.register_after_fork(_flush_all_at_exit, _flush_at_child_exit)


#: The process whose ``multiprocessing`` exit flushes the live trackers (``flush_at_child_exit``), if any.
_child_flush_pid = 0
#: The process that had ``multiprocessing`` run ``flush_at_child_exit`` as it bootstraps a child (``track_live``).
_after_fork_pid = 0


def _flush_after_bootstrap() -> None:
    """Have ``multiprocessing`` register the flush at exit as it bootstraps this process (if it is a child being
    prepared) or a child of it (``register_after_fork``: run after the bootstrap clears the finalizers), once per
    process."""
    global _after_fork_pid
    import multiprocessing.util

    with lock:
        if _after_fork_pid == os.getpid():
            return
        _after_fork_pid = os.getpid()
    multiprocessing.util.register_after_fork(_flush_all_at_exit, _flush_at_child_exit)


def register_fork_aware(holder: Any) -> None:
    """Have ``holder.forked()`` run in every forked child of this process (``fork_aware``)."""
    with lock:
        fork_aware.add(holder)


def keep_until_exit(objects: Iterable[object]) -> None:
    """Never free ``objects`` in this process: one reference each that nothing releases, not even the interpreter's
    teardown.

    For a forked child's inherited DuckDB connections: freeing one there crashes the child (SIGSEGV), at once or as
    it exits, since the threads and locks DuckDB's destructor waits for did not survive the fork.
    """
    import ctypes

    for obj in objects:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


def flush_at_child_exit() -> None:
    """Flush every live tracker as this ``multiprocessing`` child ends, once per process.

    Such a child ends with ``os._exit`` (the fork and forkserver start methods) after running ``multiprocessing``'s
    finalizers, not the ``atexit`` hooks; a ``Finalize`` with an exit priority is one of those finalizers (and it is
    only ever run in the process that made it).
    """
    global _child_flush_pid
    import multiprocessing.util

    with lock:
        if _child_flush_pid == os.getpid():
            return
        _child_flush_pid = os.getpid()
    multiprocessing.util.Finalize(None, _flush_all_at_exit, exitpriority=100)


def _flush_at_child_exit(_: object) -> None:
    flush_at_child_exit()  # (``register_after_fork`` passes its key object)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_in_child)


def swap_default_tracker(tracker: Any) -> Any:
    """Make ``tracker`` (or ``None``) the default tracker and return the previous one, without closing it."""
    global default_tracker
    with lock:
        previous, default_tracker = default_tracker, tracker
    return previous


def prices_changed() -> None:
    """The registered prices changed (caller holds ``prices_lock``): drop what ``MODEL_PRICING`` shows, and count
    the change in ``prices_generation``."""
    global pricing_table, prices_generation
    pricing_table = None
    prices_generation += 1
    heuristic_amounts.clear()  # (after the count: ``_tokens._priced`` checks it after it keeps one)


def set_pricing_table(table: dict[str, Any] | None) -> None:
    """Keep (or, with ``None``, drop) what ``MODEL_PRICING`` shows."""
    global pricing_table
    pricing_table = table


def set_catalog_version(version: str) -> None:
    """Remember the installed genai-prices version."""
    global catalog_version
    catalog_version = version


def set_active(value: bool) -> None:
    global active
    active = value


def reset() -> None:
    """Put every piece of process state back as a fresh process has it (for tests).

    Closes the default tracker (flushing it), forgets registered prices and every cache, turns tracking back on,
    forgets what was logged once and which trackers to flush at exit, and starts entry ids afresh.

    Example (a pytest ``conftest.py``)::

        @pytest.fixture(autouse=True)
        def fresh_llmcost():
            _state.reset()
            yield
            _state.reset()
    """
    global active, pricing_table, prices_generation, catalog_version, _exit_hook_registered
    previous = swap_default_tracker(None)
    if previous is not None:
        previous.close()
    with lock, prices_lock:
        active = True
        for cache in _CACHES:
            cache.clear()
        pricing_table = None
        prices_generation += 1
        heuristic_amounts.clear()  # (again after the count, as ``prices_changed`` does)
        catalog_version = None
        live_trackers.clear()
        orphans.clear()
        requested_wanted.clear()  # (the exports of the trackers just closed)
        ending.clear()
        exit_deadline.clear()
        if _exit_hook_registered:
            atexit.unregister(_end_at_exit)
            _exit_hook_registered = False
        _uninstall_sigterm_handler()
        _reseed_ids()
