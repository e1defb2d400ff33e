"""Group commit for ``POST /records``: a request is answered once its entries are in the store, and the entries of
every request that arrives while the store is writing go in with the next write.

Each request flushing the tracker itself would write one request's entries per store transaction (the requests
queue on the flush lock, and each takes only what the one before it left), so a file store's per-transaction cost
would cap the server at a few dozen requests a second. One writer thread records what has queued up through the
tracker (``CostTracker.add``: stored, counted by budgets, published) and flushes once for all of it.

Example::

    writer = GroupWriter(tracker)
    writer.write([entry])        # returns once the entry is acknowledged by the store
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence

import attrs

from .._entry import CostEntry
from .._errors import StoreError
from .._tracker import CostTracker

__all__ = ["GroupWriter"]


@attrs.define
class _Ticket:
    entries: Sequence[CostEntry]
    done: threading.Event = attrs.field(factory=threading.Event)
    error: BaseException | None = None
    on_done: Callable[[], object] | None = None  #: an asyncio waiter's wake-up, called from the writer thread


class GroupWriter:
    """Records entries through ``tracker`` and acknowledges them once flushed, many requests per flush."""

    def __init__(self, tracker: CostTracker, *, timeout: float = 120.0) -> None:
        self.tracker = tracker
        self.timeout = timeout
        self._cond = threading.Condition()
        self._queue: list[_Ticket] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    def check_writable(self) -> None:
        """Raise ``StoreError`` if the store was opened read-only (``CostStore.read_only``): its appends would only
        spill to this host, to be replayed by whichever process next opens it writable, so this server would answer
        for entries that none of its reads shows. Called before entries are recorded, so that a refused request
        leaves nothing behind (no spill file, no budget counting them) and its client may send it again elsewhere.

        Example::

            writer.check_writable()      # StoreError: could not append to /data/costs.duckdb: the store is ...
        """
        store = self.tracker.store
        if store.read_only:
            where = store.url or repr(store)
            raise StoreError(
                f"could not append to {where}: the store is open read-only, since this process cannot write it "
                "(give the server's user write access to the store and its directory, on a writable file system, "
                "and restart it; reads work as they are)"
            )

    def write(self, entries: Sequence[CostEntry]) -> None:
        """Record ``entries`` and return once the store has them; ``StoreError`` if it could not take them (they
        stay buffered in the tracker, which retries)."""
        ticket = self._submit(_Ticket(entries))
        if not ticket.done.wait(self.timeout):
            raise StoreError(f"the store did not acknowledge the entries within {self.timeout:.0f} s")
        if ticket.error is not None:
            raise ticket.error

    async def write_async(self, entries: Sequence[CostEntry]) -> None:
        """``write`` for a coroutine: the event loop goes on serving other requests while the entries are written."""
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()
        ticket = self._submit(_Ticket(entries, on_done=lambda: loop.call_soon_threadsafe(woken.set)))
        try:
            await asyncio.wait_for(woken.wait(), self.timeout)
        except asyncio.TimeoutError:
            raise StoreError(f"the store did not acknowledge the entries within {self.timeout:.0f} s") from None
        if ticket.error is not None:
            raise ticket.error

    def _submit(self, ticket: _Ticket) -> _Ticket:
        with self._cond:
            if self._closed:
                raise StoreError("the server is shutting down; entries were not recorded")
            self._queue.append(ticket)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llmcost-serve-writer", daemon=True)
                self._thread.start()
            self._cond.notify()
        return ticket

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
            error: BaseException | None = None
            try:
                for ticket in batch:
                    for entry in ticket.entries:
                        self.tracker.add(entry)
                self.tracker.flush()
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request, which answers with it
                error = exc
            for ticket in batch:
                ticket.error = error
                ticket.done.set()
                if ticket.on_done is not None:
                    # RuntimeError: the waiter's event loop is closed, so nobody is waiting any more.
                    with contextlib.suppress(RuntimeError):
                        ticket.on_done()

    def close(self) -> None:
        """Write what is queued, then stop the writer thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=self.timeout)
