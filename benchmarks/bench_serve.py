"""``llmcost serve`` under load: concurrent clients (keep-alive HTTP/1.1 connections) posting entries to a real
server process on 127.0.0.1 with a DuckDB store, for a fixed time. Reports throughput and latency percentiles, and
checks that every acknowledged entry is in the store (lost must be 0) and that every response was 2xx.

Run: python -m benchmarks serve      (or: python -m benchmarks.bench_serve [--clients 50] [--seconds 20] [--quick])

Only 127.0.0.1 is ever a target; the run stops by itself after ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import attrs

from benchmarks._util import machine, table
from benchmarks.plot import write_results

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nobody listens on at 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_process(
    store_url: str,
    *,
    token: str | None = None,
    refresh: float | None = None,
    timeout: float = 60.0,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[str]:
    """``python -m llmcost serve`` on a free port of 127.0.0.1, as a real process; yields its base URL and stops
    it (SIGTERM, then SIGKILL) on exit. The server's output goes to a temporary log shown if it fails to start.
    ``preexec_fn`` runs in the child before the exec (a test's way to make root meet file permissions)."""
    import httpx

    port = free_port()
    env = dict(os.environ)
    env.pop("LLMCOST_API_TOKEN", None)
    if token is not None:
        env["LLMCOST_API_TOKEN"] = token
    command = [sys.executable, "-m", "llmcost", "serve", "--store", store_url, "--host", HOST, "--port", str(port)]
    if refresh is not None:
        command += ["--refresh", str(refresh)]
    base = f"http://{HOST}:{port}"
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=preexec_fn
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"llmcost serve exited with {proc.returncode}:\n{log.read()}")
                try:
                    if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"llmcost serve did not answer within {timeout} s:\n{log.read()}")
                time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@attrs.frozen
class LoadResult:
    clients: int
    seconds: float
    sent: int
    ok: int
    statuses: dict[int, int]
    errors: int  #: transport errors (no response at all)
    latencies_ms: tuple[float, ...]
    stored: int  #: entries of this run found in the store afterwards
    run: str

    @property
    def lost(self) -> int:
        """Acknowledged (2xx) entries missing from the store."""
        return max(0, self.ok - self.stored)

    def percentile(self, p: float) -> float:
        data = sorted(self.latencies_ms)
        if not data:
            return float("nan")
        index = min(len(data) - 1, max(0, round(p / 100 * len(data) + 0.5) - 1))
        return data[index]


class _Connection:
    """One keep-alive HTTP/1.1 connection posting JSON: a few hundred microseconds of client CPU a request, where
    httpx spends milliseconds, so that on a small machine the figures are the server's, not the load generator's."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{host}:{port}", **headers}.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        request = (
            f"POST {path} HTTP/1.1\r\n{self.head}Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        try:
            self.writer.write(request)
            await self.writer.drain()
            status_line = await self.reader.readuntil(b"\r\n")
            length = 0
            while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await self.reader.readexactly(length)
        except BaseException:
            await self.close()
            raise
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
            self.reader = self.writer = None


async def _load(base: str, clients: int, seconds: float, token: str | None, run: str) -> LoadResult:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    errors = 0
    sent = 0
    host, port = base.removeprefix("http://").split(":")

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30.0) as client:
        warm = {"amount": "0", "resource": f"warm-up-{run}"}  # first writes and reads set the store up: not timed
        for _ in range(3):
            (await client.post("/api/v1/costs/records", json=warm)).raise_for_status()
        (await client.get("/api/v1/costs/summary", params={"resource": f"warm-up-{run}"})).raise_for_status()
        stop = time.monotonic() + seconds

        async def worker(n: int) -> None:
            nonlocal errors, sent
            connection = _Connection(host, int(port), headers)
            i = 0
            try:
                while time.monotonic() < stop:
                    body = {
                        "model": "gpt-4o-mini",
                        "usage": {"input_tokens": 1000 + i, "output_tokens": 200},
                        "resource": f"load-{run}",
                        "tags": {"client": str(n)},
                    }
                    payload = json.dumps(body).encode()
                    started = time.perf_counter()
                    sent += 1
                    try:
                        status = await asyncio.wait_for(connection.post("/api/v1/costs/records", payload), 60)
                    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
                        errors += 1
                        continue
                    latencies.append((time.perf_counter() - started) * 1000)
                    statuses[status] = statuses.get(status, 0) + 1
                    i += 1
            finally:
                await connection.close()

        await asyncio.gather(*(worker(n) for n in range(clients)))
        summary = (await client.get("/api/v1/costs/summary", params={"resource": f"load-{run}"})).json()
    ok = sum(count for status, count in statuses.items() if 200 <= status < 300)
    return LoadResult(clients, seconds, sent, ok, statuses, errors, tuple(latencies), int(summary["calls"]), run)


def load(base: str, *, clients: int = 50, seconds: float = 20.0, token: str | None = None) -> LoadResult:
    """``clients`` concurrent clients posting one entry per request to ``base`` (127.0.0.1 only) for ``seconds``;
    then how many of this run's entries the store holds."""
    if not base.startswith(f"http://{HOST}:"):
        raise ValueError(f"load only targets {HOST}, got {base!r}")
    return asyncio.run(_load(base, clients, seconds, token, uuid.uuid4().hex[:12]))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 clients for 2 s, to check the script runs")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to post (default 20)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    clients, seconds = (10, 2.0) if args.quick else (args.clients, args.seconds)
    if not 1 <= clients <= 500 or not 0 < seconds <= 600:
        parser.error("--clients must be 1..500 and --seconds 0..600")

    with tempfile.TemporaryDirectory() as tmp:
        store = f"duckdb://{Path(tmp) / 'serve.duckdb'}"
        with serve_process(store) as base:
            result = load(base, clients=clients, seconds=seconds)

    rows = [
        ("clients", result.clients),
        ("seconds", result.seconds),
        ("requests", result.sent),
        ("2xx", result.ok),
        ("other statuses", sum(c for s, c in result.statuses.items() if not 200 <= s < 300)),
        ("transport errors", result.errors),
        ("lost (2xx, not stored)", result.lost),
        ("requests/s", result.ok / result.seconds),
        ("p50 ms", result.percentile(50)),
        ("p95 ms", result.percentile(95)),
        ("p99 ms", result.percentile(99)),
        ("max ms", max(result.latencies_ms, default=float("nan"))),
    ]
    print(f"llmcost serve, POST /api/v1/costs/records, DuckDB store, 127.0.0.1 ({machine()})")
    print(table(["figure", "value"], rows))
    if args.json:
        write_results(
            args.json,
            "serve",
            [
                {"figure": "serve latency", "series": f"p{p}", "value": result.percentile(p), "unit": "ms"}
                for p in (50, 95, 99)
            ]
            + [{"figure": "serve throughput", "series": "requests/s", "value": result.ok / result.seconds}],
        )


if __name__ == "__main__":
    main()
