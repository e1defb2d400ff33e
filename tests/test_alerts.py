"""Alert sinks against real servers on 127.0.0.1: an HTTP server for webhooks, aiosmtpd for email."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from llmcost import BudgetAlert, alerts

ALERT = BudgetAlert(
    budget="nightly",
    threshold=0.8,
    utilization=0.85,
    spent=Decimal("8.50"),
    limit=Decimal("10"),
    level="warning",
    timestamp=datetime(2024, 5, 17, tzinfo=timezone.utc),
    message="budget 'nightly' passed 80% of its limit",
)


@pytest.fixture
def http_server():
    received: list[dict] = []
    fail_first = [1]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if fail_first[0]:
                fail_first[0] -= 1
                self.send_response(500)
                self.end_headers()
                return
            received.append(body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


def test_webhook_posts_json_and_retries_after_a_500(http_server):
    url, received = http_server
    sink = alerts.webhook(url, timeout=2)
    started = time.perf_counter()
    sink(ALERT)
    # The caller never waits on the network: the delivery (a 500, a backoff of 0.2 s, then the retry) is not done yet.
    # (Half a second: a loaded machine may be slow to start the thread, never that slow.)
    assert time.perf_counter() - started < 0.5 and received == []
    for t in sink.threads:
        t.join(10)
    assert received == [ALERT.to_dict()]
    assert received[0]["spent"] == "8.50" and received[0]["level"] == "warning"


def answering(statuses: list[int]):
    """A real HTTP server on 127.0.0.1 answering POSTs with ``statuses`` in turn (then 204): its URL, the count
    of POSTs, and a stop function."""
    posts = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            status = statuses[posts[0]] if posts[0] < len(statuses) else 204
            posts[0] += 1
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop():
        server.shutdown()
        server.server_close()

    return f"http://127.0.0.1:{server.server_port}/hook", posts, stop


@pytest.mark.parametrize(("statuses", "posts"), [([401], 1), ([404], 1), ([429, 503], 3), ([502, 500, 500], 4)])
def test_webhook_retries_busy_and_failing_servers_but_not_refusals(statuses, posts):
    # A 4xx would be refused again: one attempt. 429 and 5xx are retried, up to ``attempts``.
    url, seen, stop = answering(statuses)
    try:
        sink = alerts.webhook(url, timeout=2, attempts=4)
        sink(ALERT)
        for thread in sink.threads:
            thread.join(20)
        assert seen[0] == posts
    finally:
        stop()


def test_an_alert_that_ends_a_script_is_still_delivered_after_a_retry(tmp_path):
    # The script a budget stops: the "exceeded" alert is the last thing it does, and its first POST gets a 503.
    # The delivery thread used to die with the interpreter before the retry.
    import subprocess
    import sys

    url, seen, stop = answering([503])
    script = tmp_path / "batch.py"
    script.write_text(
        "import llmcost\n"
        "from llmcost import alerts\n"
        "tracker = llmcost.CostTracker()\n"
        f"with llmcost.budget(1, tracker=tracker, on_alert=alerts.webhook({url!r})):\n"
        "    tracker.record(amount='0.6')  # passes 50% of $1: one alert\n"
        "print('done')\n",
        encoding="utf-8",
    )
    try:
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout == "done\n", done.stderr
        assert seen[0] == 2  # the 503, then the retry that delivered it
    finally:
        stop()


def test_webhook_to_a_dead_port_never_blocks_the_caller():
    sink = alerts.webhook("http://127.0.0.1:9/", timeout=0.2, attempts=2)
    started = time.perf_counter()
    sink(ALERT)
    assert time.perf_counter() - started < 0.1
    for t in sink.threads:
        t.join(10)


def test_webhook_rejects_bad_urls():
    with pytest.raises(ValueError, match="url"):
        alerts.webhook("ftp://x")


@pytest.mark.parametrize(
    ("timeout", "error"), [("x", TypeError), (None, TypeError), (True, TypeError), (0, ValueError),
                           (-1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError)]
)  # fmt: skip
def test_a_bad_timeout_is_refused_naming_it_and_the_value(timeout, error):
    with pytest.raises(error, match=rf"timeout must be .*got {re.escape(repr(timeout))}"):
        alerts.webhook("http://127.0.0.1:9/", timeout=timeout)
    with pytest.raises(error, match=rf"timeout must be .*got {re.escape(repr(timeout))}"):
        alerts.email("127.0.0.1", 25, "a@example.com", ["b@example.com"], timeout=timeout)


@pytest.mark.parametrize("attempts", [0, "3", 2.5, None])
def test_webhook_attempts_must_be_a_count(attempts):
    with pytest.raises(ValueError, match=rf"attempts must be an int of at least 1, got {re.escape(repr(attempts))}"):
        alerts.webhook("http://127.0.0.1:9/", attempts=attempts)


def test_email_reaches_a_real_smtp_server():
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")

    class Inbox:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content.decode()))
            return "250 OK"

    with socket.socket() as probe:  # a free port on loopback for the server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = aiosmtpd.Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        sink = alerts.email("127.0.0.1", port, "llm@example.com", ["oncall@example.com"])
        sink(ALERT)
        for t in sink.threads:
            t.join(10)
    finally:
        controller.stop()
    (sender, rcpts, content) = inbox.messages[0]
    assert sender == "llm@example.com" and rcpts == ["oncall@example.com"]
    assert "nightly" in content and "warning" in content


def test_log_sink(caplog):
    with caplog.at_level("WARNING", logger="llmcost"):
        alerts.log(ALERT)
    assert "passed 80%" in caplog.text
