"""``serve``: run the application under uvicorn (what ``llmcost serve`` calls).

Example::

    serve("duckdb:///var/lib/costs.duckdb", host="127.0.0.1", port=8765)
"""

from __future__ import annotations

import os

from ..stores import CostStore
from ._app import DEFAULT_MAX_BODY, create_app
from ._security import check_bind

__all__ = ["TOKEN_VARIABLE", "serve"]

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
    import uvicorn

    token = token if token is not None else (os.environ.get(TOKEN_VARIABLE) or None)
    check_bind(host, token=token)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port!r}")
    app = create_app(store, token=token, max_body=max_body, refresh_seconds=refresh_seconds)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, server_header=False)
