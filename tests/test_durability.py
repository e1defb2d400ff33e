"""Nothing recorded is lost and no tracked call waits on the store: a normal exit without ``flush()``, SIGTERM
(docker stop, systemd, Kubernetes) and SIGINT, each in a real child process that never flushed before; calls while
another process holds the store's lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmcost.stores import open_store

ROOT = Path(__file__).resolve().parent.parent

#: A child that makes five tracked calls into the store at argv[1] and never calls flush(); then what argv[2] says.
CHILD = """
import signal, sys, time
# Python's own Ctrl+C handling, as an interactive program starts with it: a test run started in the background by a
# non-interactive shell hands its children SIGINT ignored, and Python keeps it so.
signal.signal(signal.SIGINT, signal.default_int_handler)
import llmcost

llmcost.configure(sys.argv[1])
if sys.argv[2] == "own-handler":
    # Installed before llmcost's (the first tracked call installs it): llmcost must flush, then call this one.
    signal.signal(signal.SIGTERM, lambda signum, frame: (print("own handler", flush=True), sys.exit(3)))

@llmcost.track_cost(resource="answer")
def answer():
    return {"model": "gpt-4o", "usage": {"prompt_tokens": 100, "completion_tokens": 20}}

for _ in range(5):
    answer()
assert llmcost.get_tracker().pending() == 5, "the entries must still be buffered for this test to mean anything"
if sys.argv[2] == "exit":
    sys.exit(0)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture(params=["duckdb", "parquet"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"duckdb://{tmp_path}/costs.duckdb" if request.param == "duckdb" else f"parquet://{tmp_path}/costs"


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _start(
    procs: list[subprocess.Popen[str]], url: str, mode: str, code: str = CHILD, stdin: int | None = None
) -> subprocess.Popen[str]:
    """The child ``code`` (``CHILD`` unless given) run with ``url`` and ``mode``, its output piped."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), url, mode],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    procs.append(proc)
    return proc


def _stored(url: str) -> int:
    with open_store(url) as store:
        return len(store.entries(resource="answer"))


def test_normal_exit_without_flush_keeps_every_entry(url: str, spawn: list[subprocess.Popen[str]]) -> None:
    proc = _start(spawn, url, "exit")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "could not" not in err, err
    assert _stored(url) == 5


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_flushes_then_ends_the_process_as_before(
    url: str, spawn: list[subprocess.Popen[str]], signum: signal.Signals
) -> None:
    proc = _start(spawn, url, "wait")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    if signum == signal.SIGTERM:
        assert proc.returncode == -signal.SIGTERM, err  # still ends as killed by SIGTERM, as without llmcost
    else:
        assert "KeyboardInterrupt" in err  # Python's own SIGINT behaviour is untouched
    assert _stored(url) == 5


def test_a_users_own_sigterm_handler_still_runs(url: str, spawn: list[subprocess.Popen[str]]) -> None:
    proc = _start(spawn, url, "own-handler")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert "own handler" in out
    assert _stored(url) == 5


#: Four threads making tracked calls into the store at argv[1], under a daily budget (whose leases SIGTERM's flush
#: settles after the trackers), each printing a line as a call returns, until the process is ended.
BUSY_THREADS = """
import sys, threading, time
import llmcost

tracker = llmcost.CostTracker(sys.argv[1])

@llmcost.track_cost(tracker=tracker, resource="answer", estimate="0.0035")
def answer():
    time.sleep(0.001)
    return {"model": "gpt-4o", "usage": {"prompt_tokens": 1000, "completion_tokens": 100}}

lock = threading.Lock()

def work():
    with llmcost.budget(1000, period="daily", tracker=tracker):
        while True:
            answer()
            with lock:
                sys.stdout.write("call\\n")
                sys.stdout.flush()

for _ in range(4):
    threading.Thread(target=work, daemon=True).start()
time.sleep(60)
"""


def test_calls_returned_while_sigterms_flush_runs_are_all_stored(url: str, spawn: list[subprocess.Popen[str]]) -> None:
    # Other threads go on recording while SIGTERM's flush runs (it settles the budget's leases after the trackers):
    # 64-131 calls that had returned were lost with the process, though the budget's ledger counted them.
    proc = _start(spawn, url, "busy", BUSY_THREADS)
    assert proc.stdout is not None
    # Read from the pipe itself: ``readline`` reads ahead into the text stream's buffer, which ``communicate`` (reading
    # the pipe) never sees, so lines printed before the signal went uncounted, now and then more than four.
    seen = b""
    while seen.count(b"call\n") < 200:  # under way in every thread
        chunk = os.read(proc.stdout.fileno(), 65536)
        assert chunk, proc.stderr.read() if proc.stderr else ""
        seen += chunk
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGTERM, err
    returned = seen.count(b"call\n") + out.count("call\n")
    # Every call that returned is stored (one recorded as the process ended may not have printed its line yet).
    assert returned <= _stored(url) <= returned + 4, err


HOLD_LOCK = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
sys.stdin.readline()  # until the test says so (or 10 s pass)
"""


#: A tracker on the DuckDB file argv[1] (default retry_timeout: 30 s) that buffers 100 entries, then waits for a line
#: (the test locks the file from another process meanwhile) before it waits to be ended.
BUFFERED_THEN_LOCKED = """
import sys, time
import llmcost

tracker = llmcost.CostTracker(sys.argv[1], flush_interval=3600)
for _ in range(100):
    tracker.record(amount="0.01", resource="answer")
print("ready", flush=True)
sys.stdin.readline()
print("go", flush=True)
time.sleep(60)
"""


def test_sigterm_while_another_process_holds_the_store_spills_the_buffer(
    tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    # The flush's append waited out retry_timeout (30 s) for the lock; SIGTERM's 8 s ran out first and the process
    # ended with all 100 entries. A store's retries now stop in time for the flush to spill what they could not write.
    import time

    path = tmp_path / "costs.duckdb"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    child = _start(spawn, f"duckdb://{path}", "locked", BUFFERED_THEN_LOCKED, stdin=subprocess.PIPE)
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    spawn.append(holder)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    child.stdin.write("\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "go"
    started = time.monotonic()
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    took = time.monotonic() - started
    assert child.returncode == -signal.SIGTERM, err
    assert took < 8, f"{took:.1f} s"  # (within SIGTERM's time: the flush spilled, it was not cut off)
    assert holder.stdin is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    holder.wait(timeout=30)
    assert _stored(f"duckdb://{path}") == 100  # replayed from the spill as the store opens


def test_calls_stay_fast_while_another_process_holds_the_store(
    tmp_path: Path, spawn: list[subprocess.Popen[str]]
) -> None:
    import time

    import llmcost

    path = tmp_path / "costs.duckdb"
    tracker = llmcost.CostTracker(f"duckdb://{path}", batch_size=20, flush_interval=0.05)
    tracker.record(amount="0.01", category="compute")
    tracker.flush()  # the file exists, so the holder below locks it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    spawn.append(holder)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"

    @llmcost.track_cost(tracker=tracker, resource="answer")
    def answer() -> dict[str, object]:
        return {"model": "gpt-4o", "usage": {"prompt_tokens": 100, "completion_tokens": 20}}

    latencies = []
    held_until = time.monotonic() + 5  # the lock is held for 5 s, the writer waiting on it as calls keep coming
    while time.monotonic() < held_until:
        started = time.perf_counter()
        answer()
        latencies.append(time.perf_counter() - started)
        time.sleep(0.005)  # pacing: calls keep coming while the writer waits for the lock
    assert holder.stdin is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    holder.wait(timeout=30)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    assert p99 < 0.005, f"p99 {p99 * 1000:.2f} ms over {len(latencies)} calls"
    tracker.close()
    with open_store(f"duckdb://{path}") as store:
        assert len(store.entries(resource="answer")) == len(latencies)


@pytest.mark.parametrize("kind", ["duckdb", "parquet"])
def test_one_entry_a_store_refuses_never_holds_back_the_others(tmp_path: Path, kind: str) -> None:
    import json
    from datetime import datetime, timezone
    from decimal import Decimal

    import llmcost

    url = f"duckdb://{tmp_path}/costs.duckdb" if kind == "duckdb" else f"parquet://{tmp_path}/costs"
    poison = llmcost.CostEntry(id="poison-0001", timestamp=datetime(2024, 5, 1, tzinfo=timezone.utc), amount=1)
    object.__setattr__(poison, "amount", Decimal("1E+25"))  # past DECIMAL(38, 18); record() refuses such amounts
    tracker = llmcost.CostTracker(url, batch_size=10_000, flush_interval=60)  # one batch holds them all
    for i in range(1001):
        if i == 500:
            tracker.add(poison)
        else:
            tracker.record(amount="0.01", category="compute", resource="good")
    tracker.flush()  # no error: 1,000 stored, 1 set aside
    assert tracker.pending() == 0
    tracker.close()
    with open_store(url) as store:
        assert len(store.entries(resource="good")) == 1000
        assert store.total() == Decimal("10.00")
        (dead,) = store.dead_letters()
        assert "poison-0001" in json.dumps(dead, default=str)


#: A child whose tracker's background writer is inside DuckDB (calls that run without the GIL) as the main thread
#: exits: a stored-budgets hook, on the writer's thread only, opens in-memory DuckDB instances for two seconds.
EXIT_WHILE_WRITING = """
import sys, threading, time
from decimal import Decimal

import duckdb
import llmcost
from llmcost import _state, _tracker

inside = threading.Event()

def busy_in_duckdb(tracker):
    if threading.current_thread() is threading.main_thread():
        return
    inside.set()
    end = time.monotonic() + 2
    while time.monotonic() < end:
        duckdb.connect(":memory:").close()

_state.stored_budget_hooks.append(busy_in_duckdb)
_tracker.STORED_BUDGETS_SECONDS = 0.0  # the writer looks for stored budgets on each round
tracker = llmcost.CostTracker(sys.argv[1], flush_interval=0.05)
for k in range(5):
    tracker.record(amount=Decimal("0.001"), category="compute", resource="answer", tags={"k": str(k)})
assert inside.wait(60)
"""


def test_an_exit_while_the_background_writer_is_in_duckdb_does_not_abort(tmp_path: Path) -> None:
    """The writer is a daemon thread: still inside DuckDB when the interpreter finalizes, CPython ends it with
    ``pthread_exit`` as it takes the GIL back, which aborts the process ("FATAL: exception not rethrown"). The exit
    hook stops the writer first."""
    _exits_cleanly_keeping_five(EXIT_WHILE_WRITING, f"duckdb://{tmp_path}/costs.duckdb")


def _exits_cleanly_keeping_five(script: str, url: str) -> None:
    """Run ``script`` in a child with the checkout on its path and the store ``url``: it must exit with status 0 (no
    abort) and leave its five entries of resource ``answer`` in the store."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), url], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _stored(url) == 5


#: The same for the thread that settles idle budget leases: a child under a daily budget over a DuckDB store (so its
#: calls are served from a lease, and the settler runs), whose settler is inside DuckDB as the main thread exits.
EXIT_WHILE_SETTLING = """
import sys, threading, time
from decimal import Decimal

import duckdb
import llmcost
from llmcost.stores import _lease

inside = threading.Event()

def busy_in_duckdb():
    inside.set()
    end = time.monotonic() + 2
    while time.monotonic() < end:
        duckdb.connect(":memory:").close()

_lease.settle_idle = busy_in_duckdb  # the settler's round (it calls the module's function while a lease is open)
tracker = llmcost.CostTracker(sys.argv[1])
call = llmcost.track_cost(tracker=tracker, resource="answer", estimate=Decimal("0.001"))(
    lambda: {"object": "chat.completion", "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 400}}
)
llmcost.budget(100, period="daily", tracker=tracker).__enter__()  # left open: its lease is settled at exit
for _ in range(5):
    call()
assert inside.wait(60)
"""


def test_an_exit_while_the_lease_settler_is_in_duckdb_does_not_abort(tmp_path: Path) -> None:
    """The thread that settles idle leases is a daemon thread too: the exit hook stops it before the leases settle
    and the interpreter finalizes (else the process aborts as above), and the calls' entries are kept."""
    _exits_cleanly_keeping_five(EXIT_WHILE_SETTLING, f"duckdb://{tmp_path}/costs.duckdb")


#: A job's own tracker, dropped without close(): what it buffered is written once it is freed (argv[2] "wait": the
#: child waits for that write, then ends with os._exit, running no exit hook), or at exit ("exit": ends at once).
DROPPED = """
import gc, os, sys, time
import llmcost

def job(n):
    tracker = llmcost.CostTracker(sys.argv[1], flush_interval=60)
    for _ in range(n):
        tracker.record(amount="0.10", category="compute", resource="answer")

job(5)
gc.collect()  # as the cyclic collector would, some time later
if sys.argv[2] == "wait":
    deadline = time.monotonic() + 60
    with llmcost.open_store(sys.argv[1]) as store:
        while len(store.entries(resource="answer")) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    os._exit(0)
"""


@pytest.mark.parametrize("end", ["wait", "exit"])
def test_a_tracker_dropped_without_close_still_writes_its_entries(url: str, end: str) -> None:
    # The exit hook only knows live trackers (weakly), and the writer thread only a weak reference: a freed
    # tracker's buffer went with it.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DROPPED), url, end], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _stored(url) == 5


#: Entries recorded into a tracker already closed (argv[2] says how); each must reach the store at argv[1].
INTO_CLOSED = """
import atexit, sys, threading, time
import llmcost

url, case = sys.argv[1], sys.argv[2]

@llmcost.track_cost(resource="answer")
def answer(wait=0.0):
    time.sleep(wait)  # the provider's latency
    return {"model": "gpt-4o", "usage": {"prompt_tokens": 100, "completion_tokens": 20}}

if case == "configure":  # a call in flight as configure() closes the tracker it started with
    llmcost.configure(url)
    call = threading.Thread(target=answer, args=(1.0,))
    call.start()
    time.sleep(0.2)
    llmcost.configure("memory://")
    call.join()
elif case == "record":  # record() after close()
    tracker = llmcost.CostTracker(url)
    tracker.close()
    tracker.record(amount="0.10", category="compute", resource="answer")
    time.sleep(0.5)
    print("pending", tracker.pending(), flush=True)
else:  # an atexit hook registered before llmcost's (atexit runs the last registered first)
    atexit.register(lambda: tracker.record(amount="0.10", category="compute", resource="answer"))
    tracker = llmcost.CostTracker(url)
    tracker.record(amount="0.10", category="compute", resource="before")
"""


@pytest.mark.parametrize("case", ["configure", "record", "atexit"])
def test_an_entry_recorded_into_a_closed_tracker_is_written(url: str, case: str) -> None:
    # A closed tracker has no writer and is no longer flushed at exit: its entry stayed buffered, never written.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(INTO_CLOSED), url, case],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _stored(url) == 1
    if case == "record":
        assert "pending 0" in proc.stdout  # written by record() itself, not left for later


#: SIGTERM's handler, whatever thread makes the first tracker and whatever handler the program sets after importing
#: llmcost (argv[2]); the default tracker is on the store at argv[1] (LLMCOST_STORE).
SIGTERM_AFTER = """
import os, signal, sys, threading, time
import llmcost

mode = sys.argv[2]
if mode == "chaining-handler":  # a handler set after the import that calls the one it replaced (llmcost's)
    replaced = signal.getsignal(signal.SIGTERM)

    def own(signum, frame):
        print("own handler", flush=True)
        if callable(replaced):
            replaced(signum, frame)
        else:  # (the default: end as SIGTERM does)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, own)
elif mode == "exiting-handler":  # one that ends the process itself, running no exit hook
    signal.signal(signal.SIGTERM, lambda signum, frame: (print("own handler", flush=True), os._exit(3)))

def request():
    llmcost.get_tracker().record(amount="0.25", category="compute", resource="answer")

for _ in range(3):
    if mode == "thread":  # the first tracker is made on a worker thread (a request handler's), which may set none
        worker = threading.Thread(target=request)
        worker.start()
        worker.join()
    else:
        request()
assert llmcost.get_tracker().pending() == 3
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("mode", ["thread", "chaining-handler", "exiting-handler"])
def test_sigterm_flushes_whichever_thread_made_the_first_tracker(
    url: str, mode: str, spawn: list[subprocess.Popen[str]]
) -> None:
    # Only the main thread may set a signal handler, and llmcost's was set with the first tracker made there: a
    # tracker first made on a worker thread left SIGTERM to kill the process with the buffer unwritten.
    env = {
        **os.environ,
        "LLMCOST_STORE": url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SIGTERM_AFTER), url, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    spawn.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == (3 if mode == "exiting-handler" else -signal.SIGTERM), err
    assert ("own handler" in out) == (mode != "thread")
    assert _stored(url) == 3


@pytest.mark.parametrize("store", [None, "memory://"])
def test_importing_llmcost_sets_a_sigterm_handler_only_for_a_store_named_by_the_environment(store: str | None) -> None:
    # A Python-level handler delays SIGTERM while the main thread is in a long C call: a program that names no store
    # keeps SIGTERM as it was until it makes a durable tracker; one whose default tracker is on LLMCOST_STORE gets the
    # handler at import (its first tracker may be made on a worker thread, which may set none).
    env = {k: v for k, v in os.environ.items() if k != "LLMCOST_STORE"}
    if store is not None:
        env["LLMCOST_STORE"] = store
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    code = "import signal, llmcost; h = signal.getsignal(signal.SIGTERM); print(h is signal.SIG_DFL or h.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True)
    assert out.stdout.strip() == ("True" if store is None else "llmcost._state")


#: A backfill shard (argv[2]) that seeds Python's global random generator before importing llmcost, then records
#: three entries of one timestamp into the store at argv[1].
SEEDED = """
import random, sys
random.seed(0)  # the job's reproducibility seed
from datetime import datetime, timezone
import llmcost

day = datetime(2024, 5, 1, tzinfo=timezone.utc)
with llmcost.CostTracker(sys.argv[1]) as tracker:
    for _ in range(3):
        tracker.record(amount="1.00", category="compute", resource="answer", timestamp=day)
"""


def test_processes_that_seed_random_before_importing_llmcost_make_different_ids(url: str) -> None:
    # The per-process id tag came from random's global generator: two such processes made the same ids, and the
    # store skipped the second's entries as already stored.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for shard in ("a", "b"):
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(SEEDED), url, shard], capture_output=True, text=True, env=env
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert _stored(url) == 6
