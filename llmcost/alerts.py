"""Alert sinks for budgets: pass one (or a list) as ``on_alert=``.

- ``log``: the default; every alert is also logged on the ``llmcost`` logger anyway.
- ``webhook(url)``: POSTs the alert as JSON, retried with backoff in a background thread, so the call that crossed
  the threshold never waits on the network.
- ``email(host, port, sender, recipients)``: sends the alert over SMTP, also in the background.

Example::

    from llmcost import alerts

    with llmcost.budget(100, period="daily",
                        on_alert=[alerts.webhook("https://hooks.example.com/llm"),
                                  alerts.email("smtp.example.com", 587, "llm@example.com", ["oncall@example.com"],
                                               username="llm", password=secret, starttls=True)]):
        serve()
"""

from __future__ import annotations

import atexit
import json
import logging
import smtplib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from email.message import EmailMessage

from ._budget import BudgetAlert

__all__ = ["EXIT_WAIT", "email", "log", "webhook"]

logger = logging.getLogger("llmcost")
AlertSink = Callable[[BudgetAlert], None]


def log(alert: BudgetAlert) -> None:
    """Log ``alert`` on the ``llmcost`` logger (warning, or error once exceeded).

    Example::

        >>> from llmcost import alerts
        >>> seen = []
        >>> with llmcost.CostTracker() as own, llmcost.budget(1, tracker=own, on_alert=[alerts.log, seen.append]):
        ...     _ = own.record(amount="0.85")   # passes 50% and 80% of $1: both logged, and kept in seen
        >>> [alert.level for alert in seen]
        ['warning', 'warning']
    """
    level = logging.ERROR if alert.level == "exceeded" else logging.WARNING
    logger.log(level, "llmcost alert: %s", alert.message)


def _seconds(value: object, field: str) -> float:
    """``value`` as a positive, finite number of seconds; else the error names ``field`` and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be a number of seconds, got {value!r}")
    if not 0 < value < float("inf"):
        raise ValueError(f"{field} must be positive, got {value!r}")
    return value


#: At exit, how long (seconds, in all) the process waits for alert deliveries still under way: the alert that
#: stopped a batch is often the last thing it does.
EXIT_WAIT = 10.0
_pending: set[threading.Thread] = set()
_pending_lock = threading.Lock()
_waits_at_exit: list[bool] = []


def _background(name: str, work: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        try:
            work()
        except Exception:
            logger.exception("llmcost: %s failed for good", name)
        finally:
            with _pending_lock:
                _pending.discard(threading.current_thread())

    # A daemon thread, so that a delivery never keeps a process alive on its own; ``_wait_at_exit`` gives the
    # deliveries under way up to ``EXIT_WAIT`` seconds before the interpreter stops them.
    thread = threading.Thread(target=run, name=f"llmcost-{name}", daemon=True)
    with _pending_lock:
        if not _waits_at_exit:
            atexit.register(_wait_at_exit)
            _waits_at_exit.append(True)
        _pending.add(thread)
    thread.start()
    return thread


def _wait_at_exit() -> None:
    """Wait (up to ``EXIT_WAIT`` seconds in all) for the alert deliveries still under way; log those given up."""
    deadline = time.monotonic() + EXIT_WAIT
    with _pending_lock:
        waiting = list(_pending)
    for thread in waiting:
        thread.join(max(deadline - time.monotonic(), 0))
    left = sum(thread.is_alive() for thread in waiting)
    if left:
        logger.error("llmcost: %d alert deliveries still under way after %ss at exit were dropped", left, EXIT_WAIT)


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: a connection error or a timeout, or an answer of 429 or 5xx (not 4xx: the same
    request would be refused again)."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 429 or exc.code >= 500
    return isinstance(exc, OSError)


def webhook(url: str, *, timeout: float = 5, attempts: int = 4, headers: dict[str, str] | None = None) -> AlertSink:
    """A sink that POSTs each alert as JSON (``BudgetAlert.to_dict()``) to ``url``.

    Delivery runs in a background thread, retried with exponential backoff (tenacity) up to ``attempts`` times on
    connection errors, timeouts, 429 and 5xx answers (another 4xx is not retried); ``timeout`` bounds each attempt.
    At exit the process waits up to ``EXIT_WAIT`` seconds for deliveries under way. The returned sink has
    ``.threads`` (the deliveries started) so tests and shutdown code can wait for them.

    Example (pass the sink as ``on_alert=`` to ``llmcost.budget``, alone or in a list)::

        >>> from llmcost import alerts
        >>> sink = alerts.webhook("https://hooks.example.com/llm", timeout=3, headers={"Authorization": "Bearer x"})
        >>> sink.threads   # no alert yet, so no delivery
        []
    """
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"url must be an http:// or https:// URL, got {url!r}")
    timeout = _seconds(timeout, "timeout")
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"attempts must be an int of at least 1, got {attempts!r}")
    import tenacity

    extra = dict(headers or {})
    threads: list[threading.Thread] = []

    @tenacity.retry(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=0.2, max=5),
        retry=tenacity.retry_if_exception(_transient),
        reraise=True,
    )
    def post(body: bytes) -> None:
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json", **extra}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                answer.read()
        except urllib.error.HTTPError as refused:
            refused.close()  # (it holds the answer's socket open: closed here, whether retried or not)
            raise

    def sink(alert: BudgetAlert) -> None:
        body = json.dumps(alert.to_dict()).encode()
        threads.append(_background("webhook", lambda: post(body)))

    sink.threads = threads  # type: ignore[attr-defined]
    return sink


def email(
    host: str,
    port: int,
    sender: str,
    recipients: Sequence[str],
    *,
    username: str | None = None,
    password: str | None = None,
    starttls: bool = False,
    timeout: float = 10,
    subject_prefix: str = "[llmcost]",
) -> AlertSink:
    """A sink that emails each alert to ``recipients`` through the SMTP server at ``host:port``, in the background.

    At exit the process waits up to ``EXIT_WAIT`` seconds for emails under way. The returned sink has ``.threads``
    (the deliveries started).

    Example (pass the sink as ``on_alert=`` to ``llmcost.budget``, alone or in a list)::

        >>> from llmcost import alerts
        >>> sink = alerts.email("smtp.example.com", 587, "llm@example.com", ["oncall@example.com"], starttls=True)
        >>> sink.threads   # no alert yet, so no email
        []
    """
    if isinstance(recipients, str) or not recipients:
        raise ValueError(f"recipients must be a non-empty list of addresses, got {recipients!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be an int in 1..65535, got {port!r}")
    timeout = _seconds(timeout, "timeout")
    threads: list[threading.Thread] = []

    def send(alert: BudgetAlert) -> None:
        message = EmailMessage()
        message["Subject"] = f"{subject_prefix} {alert.level}: budget {alert.budget} at {alert.utilization:.0%}"
        message["From"] = sender
        message["To"] = ", ".join(recipients)
        message.set_content(alert.message + "\n\n" + json.dumps(alert.to_dict(), indent=2))
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            if starttls:
                smtp.starttls()
            if username is not None:
                smtp.login(username, password or "")
            smtp.send_message(message)

    def sink(alert: BudgetAlert) -> None:
        threads.append(_background("email", lambda: send(alert)))

    sink.threads = threads  # type: ignore[attr-defined]
    return sink
