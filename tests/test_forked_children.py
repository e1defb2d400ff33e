"""A forked child keeps what it records and ends cleanly; SIGTERM never waits on a lock its own thread holds.

Each case runs a script in a real child process, which forks real grandchildren (``os.fork`` and
``multiprocessing``'s fork start method) over real DuckDB and Parquet files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from llmcost.stores import open_store

ROOT = Path(__file__).resolve().parent.parent

#: What every script starts with: a tracker on the store at argv[1] that has written and read before forking, so
#: the parent holds open DuckDB connections the child inherits.
PRELUDE = """
import os, sys, threading, time
from llmcost import CostTracker
tracker = CostTracker(sys.argv[1], flush_interval=0.2)
tracker.record(model="gpt-4o", input_tokens=10, output_tokens=5, resource="parent")
tracker.flush()
assert len(tracker.entries()) == 1

def record(n, resource):
    for _ in range(n):
        tracker.record(model="gpt-4o", input_tokens=10, output_tokens=5, resource=resource)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _run(script: str, url: str, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PRELUDE) + textwrap.dedent(script), url],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
    )


def _terminated_while_writing(script: str, url: str, *, settle: float = 0.0) -> tuple[int, str, str, float]:
    """Run ``script`` after the prelude; once it prints "writing", wait ``settle`` seconds and send SIGTERM. Returns
    its exit code, what it printed after "writing" and on stderr, and the seconds it took to end after the signal."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PRELUDE) + textwrap.dedent(script), url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "writing", proc.stderr.read() if proc.stderr else ""
        time.sleep(settle)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, err = proc.communicate(timeout=30)
        return proc.returncode, out, err, time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _resources(url: str) -> dict[str, int]:
    with open_store(url) as store:
        entries = store.entries()
    assert len({e.id for e in entries}) == len(entries)
    found: dict[str, int] = {}
    for entry in entries:
        found[entry.resource or ""] = found.get(entry.resource or "", 0) + 1
    return found


@pytest.fixture(params=["duckdb", "parquet"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"duckdb://{tmp_path}/costs.duckdb" if request.param == "duckdb" else f"parquet://{tmp_path}/costs"


def test_a_multiprocessing_child_keeps_what_it_records_without_flushing(url: str) -> None:
    # multiprocessing's fork children end with os._exit: no atexit hook runs, and the parent's writer thread is
    # not in the child.
    proc = _run(
        """
        import multiprocessing
        record(3, "parent")  # buffered at the fork: the parent's to write, not the child's
        child = multiprocessing.get_context("fork").Process(target=record, args=(5, "child"))
        child.start()
        child.join()
        print("child exit", child.exitcode)
        tracker.flush()
        """,
        url,
    )
    assert proc.returncode == 0, proc.stderr
    assert "child exit 0" in proc.stdout, proc.stdout + proc.stderr
    assert _resources(url) == {"parent": 4, "child": 5}


#: A pool whose workers import llmcost themselves (the parent never does) and record into the default tracker of
#: LLMCOST_STORE without flushing; argv[1] is the start method.
POOL = """
import multiprocessing, sys

def work(i):
    import llmcost

    llmcost.get_tracker().record(amount="0.01", resource="worker")

if __name__ == "__main__":
    with multiprocessing.get_context(sys.argv[1]).Pool(2) as pool:
        pool.map(work, range(6))
        pool.close()
        pool.join()
"""


#: ``POOL`` with the tracker made as the main module is imported: a spawn or forkserver worker imports it before
#: ``multiprocessing`` bootstraps the worker, which clears every exit finalizer registered until then.
POOL_TRACKER_AT_IMPORT = """
import multiprocessing, sys

import llmcost

tracker = llmcost.get_tracker()

def work(i):
    tracker.record(amount="0.01", resource="worker")

if __name__ == "__main__":
    with multiprocessing.get_context(sys.argv[1]).Pool(2) as pool:
        pool.map(work, range(6))
        pool.close()
        pool.join()
"""


@pytest.mark.parametrize("script_text", [POOL, POOL_TRACKER_AT_IMPORT], ids=["llmcost-in-worker", "tracker-at-import"])
@pytest.mark.parametrize("method", ["forkserver", "spawn", "fork"])
def test_the_workers_of_a_multiprocessing_pool_keep_what_they_record(
    url: str, method: str, script_text: str, tmp_path: Path
) -> None:
    # Forkserver workers (and fork workers of a parent that had not imported llmcost) end with os._exit, which runs
    # no atexit hook and no fork hook of llmcost's; every entry they had buffered was lost. So was every entry of a
    # forkserver worker whose main module made its tracker as it was imported.
    script = tmp_path / "pool.py"  # (a file, not -c: spawn and forkserver workers import the main module)
    script.write_text(textwrap.dedent(script_text))
    proc = subprocess.run(
        [sys.executable, str(script), method],
        capture_output=True,
        text=True,
        env={**_env(), "LLMCOST_STORE": url},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert _resources(url) == {"worker": 6}


def test_a_forked_child_that_exits_normally_writes_its_entries_and_does_not_crash(url: str) -> None:
    # The child frees what it inherited as the interpreter ends; DuckDB connections freed there crashed it.
    proc = _run(
        """
        pid = os.fork()
        if pid == 0:
            record(3, "child")
            sys.exit(0)  # atexit flushes
        _, status = os.waitpid(pid, 0)
        print("child status", os.waitstatus_to_exitcode(status))
        """,
        url,
    )
    assert proc.returncode == 0, proc.stderr
    assert "child status 0" in proc.stdout, proc.stdout + proc.stderr
    assert _resources(url) == {"parent": 1, "child": 3}


def test_a_forked_child_has_a_background_writer_of_its_own(url: str) -> None:
    proc = _run(
        """
        pid = os.fork()
        if pid == 0:
            record(3, "child")
            deadline = time.monotonic() + 30
            while len(tracker.store.entries(resource="child")) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            print("pending", tracker.pending(), flush=True)
            os._exit(0)  # no flush, no atexit: only the child's own writer can have written them
        os.waitpid(pid, 0)
        """,
        url,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pending 0" in proc.stdout, proc.stdout + proc.stderr
    assert _resources(url) == {"parent": 1, "child": 3}


def test_a_fork_while_the_parents_writer_is_writing_leaves_the_child_able_to_flush(tmp_path: Path) -> None:
    # The parent's writer holds the tracker's flush lock inside a slow write when the main thread forks: the child
    # must not inherit that lock held.
    url = f"duckdb://{tmp_path}/costs.duckdb"
    proc = _run(
        """
        from llmcost.stores import DuckDBStore
        parent, writing, release = os.getpid(), threading.Event(), threading.Event()

        class SlowInParent(DuckDBStore):
            def append_columns(self, columns):
                if os.getpid() == parent:
                    writing.set()
                    release.wait(30)
                super().append_columns(columns)

        tracker = CostTracker(SlowInParent(sys.argv[1][len("duckdb://"):]), flush_interval=0.05)
        record(2, "parent")
        assert writing.wait(30)
        pid = os.fork()
        if pid == 0:
            record(3, "child")
            tracker.flush()
            print("child flushed", flush=True)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("child status", os.waitstatus_to_exitcode(status))
        release.set()
        tracker.flush()
        """,
        url,
    )
    assert proc.returncode == 0, proc.stderr
    assert "child flushed" in proc.stdout and "child status 0" in proc.stdout, proc.stdout + proc.stderr
    assert _resources(url) == {"parent": 3, "child": 3}


def test_a_fork_while_another_thread_reads_the_store_leaves_the_child_able_to_write_it(tmp_path: Path) -> None:
    # DuckDB's record of the files attached in a process is the child's too, and the child sets its parent's
    # connections aside unclosed: forked while another thread had the file attached for a read, the child could
    # never attach it again, and every call it tracked failed (a raw ResourceInUseException out of DuckDBStore()).
    # The fork now waits for that thread to let go of the file (the store path's lock).
    url = f"duckdb://{tmp_path}/costs.duckdb"
    proc = _run(
        """
        import contextlib
        from llmcost.stores import DuckDBStore
        parent, reading = os.getpid(), threading.Event()

        class SlowReadInParent(DuckDBStore):
            @contextlib.contextmanager
            def _attached(self, *, write):
                with super()._attached(write=write) as con:
                    if not write and os.getpid() == parent and not reading.is_set():
                        reading.set()
                        time.sleep(1.0)  # (a long query: the file attached all along)
                    yield con

        report = SlowReadInParent(sys.argv[1][len("duckdb://"):])
        reader = threading.Thread(target=report.total)
        reader.start()
        assert reading.wait(30)
        pid = os.fork()
        if pid == 0:
            record(3, "child")
            tracker.flush()
            child = DuckDBStore(sys.argv[1][len("duckdb://"):], retry_timeout=5)
            print("child reads", child.total(resource="child") == tracker.total(resource="child"), flush=True)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        reader.join()
        print("child status", os.waitstatus_to_exitcode(status))
        """,
        url,
    )
    assert proc.returncode == 0, proc.stderr
    assert "child reads True" in proc.stdout and "child status 0" in proc.stdout, proc.stdout + proc.stderr
    assert _resources(url) == {"parent": 1, "child": 3}
    assert not list(tmp_path.glob("costs.duckdb.spill/*")), "the child spilled what it could not write"


def test_locks_another_thread_held_at_the_fork_are_free_in_the_child(tmp_path: Path) -> None:
    # A thread of the parent holds, at the fork, the locks of a block and a daily budget, of the tracker's
    # recent-calls estimate, of its MemoryStore (the daily budget's ledger shares it) and of price resolution, as a
    # thread counting a call or pricing one would: that thread is not in the child, and the child's first call
    # needing one of them hung. (The locks are reached by their private names: no public way holds one on purpose.)
    # (The memory tracker's clock stays at noon: on the system clock a run across midnight UTC had the daily budget
    # count the calls of the new day alone.)
    proc = _run(
        """
        import signal
        from datetime import datetime, timezone
        from decimal import Decimal
        import llmcost
        from llmcost import _state, budget, track_cost

        memory = CostTracker("memory://", clock=lambda: datetime(2024, 5, 17, 12, tzinfo=timezone.utc))
        call = track_cost(tracker=memory, resource="chat")(
            lambda: {"model": "gpt-4o", "usage": {"prompt_tokens": 100, "completion_tokens": 10}}
        )
        block, daily = budget(1000, tracker=memory), budget(1000, period="daily", tracker=memory)
        with block, daily:
            call()
            call()  # the recent-calls mean is being kept from here on
            held, release = threading.Event(), threading.Event()

            def hold():
                locks = [block._lock, daily._lock, memory._recent._lock, memory.store._lock, _state.prices_lock]
                for lock in locks:
                    lock.acquire()
                held.set()
                release.wait(60)
                for lock in reversed(locks):
                    lock.release()

            threading.Thread(target=hold, daemon=True).start()
            assert held.wait(30)
            pid = os.fork()
            if pid == 0:
                signal.alarm(30)  # a lock still held: killed by SIGALRM rather than hanging the test
                for _ in range(3):
                    call()
                llmcost.cost_of("claude-3-5-haiku-latest", 10, 10)  # resolved here first: takes the prices lock
                print("child", len(memory.entries()), block.spent, daily.spent, flush=True)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            print("child status", os.waitstatus_to_exitcode(status))
            release.set()
            call()  # the parent's locks work as before
            print("parent", len(memory.entries()), block.spent)
        """,
        f"duckdb://{tmp_path}/costs.duckdb",
    )
    assert proc.returncode == 0, proc.stderr
    assert "child status 0" in proc.stdout, proc.stdout + proc.stderr
    assert "child 5 0.00175 0.00175" in proc.stdout, proc.stdout  # 5 calls of $0.00035, counted by both budgets
    assert "parent 3 0.00105" in proc.stdout, proc.stdout


@pytest.mark.parametrize("settle", [0.2, 0.4, 0.6])
def test_sigterm_under_a_leased_period_budget_ends_in_time_and_writes_every_entry(tmp_path: Path, settle) -> None:
    # Calls run back to back under a daily budget that leases from the store's ledger: the signal often lands while
    # the main thread is in a ledger transaction, or holds the budget's lock. The flush writes every entry, and the
    # process ends at once (it waited out SIGTERM_FLUSH_SECONDS for locks the main thread held, losing entries).
    url = f"duckdb://{tmp_path}/costs.duckdb"
    script = """
        from decimal import Decimal
        from llmcost import budget, track_cost
        response = {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}
        call = track_cost(tracker=tracker, resource="child", estimate=Decimal("0.0025"))(lambda: response)
        budget(10**9, period="daily", tracker=tracker).__enter__()
        made = 0
        print("writing", flush=True)
        while True:
            call()
            made += 1
            if made % 50 == 0:
                os.write(1, f"{made}\\n".encode())
    """
    code, out, err, seconds = _terminated_while_writing(script, url, settle=settle)
    assert code == -signal.SIGTERM, err
    made = max((int(n) for n in out.split()), default=0)
    assert made > 0, out + err
    assert seconds < 4, f"took {seconds:.1f} s to end after SIGTERM: {err}"
    assert _resources(url)["child"] >= made


def test_sigterm_during_a_flush_on_the_main_thread_waits_for_it_then_writes_the_rest(tmp_path: Path) -> None:
    # SIGTERM's handler runs on the main thread, here inside flush() holding the flush lock; its flush must not
    # wait for that lock (it waited out its 8 s and lost every entry), but let the write finish and then flush
    # what was recorded meanwhile.
    url = f"duckdb://{tmp_path}/costs.duckdb"
    code, out, err, waited = _terminated_while_writing(
        """
        from llmcost.stores import DuckDBStore
        slow = [True]

        class SlowOnce(DuckDBStore):
            def append_columns(self, columns):
                if slow and threading.current_thread() is threading.main_thread():
                    slow.clear()
                    print("writing", flush=True)
                    time.sleep(2)  # SIGTERM arrives here
                super().append_columns(columns)

        tracker = CostTracker(SlowOnce(sys.argv[1][len("duckdb://"):]), flush_interval=60)
        record(5, "before")
        threading.Timer(0.5, record, args=(4, "meanwhile")).start()
        tracker.flush()
        print("flush returned", flush=True)
        time.sleep(60)
        """,
        url,
        settle=0.2,
    )
    assert code == -signal.SIGTERM, err
    assert "flush returned" not in out  # the process ended at the end of the flush, as SIGTERM asked
    assert waited < 7, f"SIGTERM took {waited:.1f} s: its flush waited for the lock the main thread held"
    assert _resources(url) == {"parent": 1, "before": 5, "meanwhile": 4}


def test_sigterm_while_the_main_thread_reads_the_store_waits_for_the_read_then_flushes(url: str) -> None:
    # A service checking its spend reads the store on the main thread, holding the lock its connection (for DuckDB:
    # its file) is used under. SIGTERM's handler ran inside that read, and its flush, appending under the same
    # lock, waited out its 8 s for a thread that waited for it: every buffered entry was lost.
    code, _, err, waited = _terminated_while_writing(
        """
        from llmcost.stores import open_store
        tracker = CostTracker(open_store(sys.argv[1]), flush_interval=60)
        tracker.record(amount="0.01", resource="before")
        tracker.flush()
        record(5, "buffered")
        reads = tracker.store._durable.lock  # (what every read of the store holds, held here as a slow read would)
        print("writing", flush=True)
        while True:
            with reads:
                time.sleep(0.05)  # SIGTERM arrives here
                tracker.store.total(resource="before")
        """,
        url,
        settle=0.3,
    )
    assert code == -signal.SIGTERM, err
    assert waited < 7, f"SIGTERM took {waited:.1f} s: its flush waited for the lock the main thread held"
    assert _resources(url) == {"parent": 1, "before": 1, "buffered": 5}


def test_sigterm_during_a_flush_that_hangs_still_ends_the_process_in_bounded_time(tmp_path: Path) -> None:
    # Waiting for the main thread's flush must not keep a process that was asked to end alive for as long as a
    # hanging store holds it: after SIGTERM_FLUSH_SECONDS it ends as SIGTERM would have.
    url = f"duckdb://{tmp_path}/costs.duckdb"
    code, _, err, waited = _terminated_while_writing(
        """
        from llmcost import _state
        from llmcost.stores import DuckDBStore
        _state.SIGTERM_FLUSH_SECONDS = 1.0

        class Hangs(DuckDBStore):
            def append_columns(self, columns):
                print("writing", flush=True)
                while True:
                    time.sleep(0.05)  # a store that never answers (Python keeps running, so handlers can run)

        tracker = CostTracker(Hangs(sys.argv[1][len("duckdb://"):]), flush_interval=60)
        record(2, "hung")
        tracker.flush()
        """,
        url,
    )
    assert code == -signal.SIGTERM, err
    assert 0.9 < waited < 10, f"ended {waited:.1f} s after SIGTERM (it waits SIGTERM_FLUSH_SECONDS = 1 s, then ends)"
