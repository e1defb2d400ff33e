"""``serve``: run the application under uvicorn (what ``llmcost serve`` calls).

Example::

    serve("duckdb:///var/lib/costs.duckdb", host="127.0.0.1", port=8765)
"""

from __future__ import annotations

import os
import socket

from ..stores import CostStore
from ._app import DEFAULT_MAX_BODY, create_app
from ._security import check_bind

__all__ = ["TOKEN_VARIABLE", "host_in_url", "listen", "serve", "serve_on"]

#: The environment variable holding the bearer token.
TOKEN_VARIABLE = "LLMCOST_API_TOKEN"


def serve(
    store: str | CostStore,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    refresh_seconds: float = 5.0,
    log_level: str = "warning",
) -> None:
    """Serve the REST API, the metrics and the dashboard for ``store`` until interrupted.

    ``refresh_seconds``: how often the dashboard updates. ``token`` defaults to ``$LLMCOST_API_TOKEN``; a
    non-loopback ``host`` without one is refused (``ValueError``).

    Example::

        serve("duckdb:///var/lib/costs.duckdb", port=8765)
    """
    token = token if token is not None else (os.environ.get(TOKEN_VARIABLE) or None)
    check_bind(host, token=token)
    serve_on(
        listen(host, port),
        store,
        token=token,
        max_body=max_body,
        refresh_seconds=refresh_seconds,
        log_level=log_level,
    )


def host_in_url(host: str) -> str:
    """``host`` as a URL (and a ``host:port``) writes it: an IPv6 address in brackets, so that its colons are not
    read as the port's.

    >>> host_in_url("::1"), host_in_url("[::1]"), host_in_url("127.0.0.1"), host_in_url("localhost")
    ('[::1]', '[::1]', '127.0.0.1', 'localhost')
    """
    name = host.strip().strip("[]")
    return f"[{name}]" if ":" in name else name


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` and listening (port 0: any free one), for ``serve_on``.

    Bound here rather than by uvicorn, which logs a port in use and exits with status 3 from inside its event
    loop: this raises ``OSError`` naming the address instead, before anything says the server is up.

    Example::

        sock = listen("127.0.0.1", 0)
        port = sock.getsockname()[1]
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port!r}")
    name = host.strip().strip("[]")  # "[::1]", as in a URL, is ::1
    sock = socket.socket(socket.AF_INET6 if ":" in name else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart may reuse the port
        sock.bind((name, port))
        sock.listen(2048)
    except OSError as exc:  # in use, not an address of this host, an unknown host name (socket.gaierror)
        sock.close()
        reason = (exc.strerror or str(exc)).lower()
        raise OSError(f"cannot listen on {host_in_url(host)}:{port}: {reason}") from None
    return sock


def serve_on(
    sock: socket.socket,
    store: str | CostStore,
    *,
    token: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    refresh_seconds: float = 5.0,
    log_level: str = "warning",
) -> None:
    """``serve`` on a socket ``listen`` returned (``token`` as given: checked against the host by the caller).

    Example::

        serve_on(listen("127.0.0.1", 8765), "duckdb:///var/lib/costs.duckdb")
    """
    import uvicorn

    app = create_app(store, token=token, max_body=max_body, refresh_seconds=refresh_seconds)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, server_header=False)
    with sock:
        uvicorn.Server(config).run(sockets=[sock])
