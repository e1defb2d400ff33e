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

import json
import logging
import smtplib
import threading
import urllib.request
from collections.abc import Callable, Sequence
from email.message import EmailMessage

from ._budget import BudgetAlert

__all__ = ["email", "log", "webhook"]

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


def _background(name: str, work: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        try:
            work()
        except Exception:
            logger.exception("llmcost: %s failed for good", name)

    thread = threading.Thread(target=run, name=f"llmcost-{name}", daemon=True)
    thread.start()
    return thread


def webhook(url: str, *, timeout: float = 5, attempts: int = 4, headers: dict[str, str] | None = None) -> AlertSink:
    """A sink that POSTs each alert as JSON (``BudgetAlert.to_dict()``) to ``url``.

    Delivery runs in a background thread, retried with exponential backoff (tenacity) up to ``attempts`` times on
    connection errors and 5xx answers; ``timeout`` bounds each attempt. The returned sink has ``.threads`` (the
    deliveries started) so tests and shutdown code can wait for them.

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
        retry=tenacity.retry_if_exception_type(OSError),
        reraise=True,
    )
    def post(body: bytes) -> None:
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json", **extra}
        )
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read()

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

    The returned sink has ``.threads`` (the deliveries started).

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
