"""``llmcost serve``: the REST API, Prometheus metrics and a live dashboard over a cost store (extra
``llmcost[server]``: FastAPI on uvicorn, prometheus-client).

Nothing here is imported by ``import llmcost`` or by the command line until ``llmcost serve`` runs.

Example::

    from llmcost.server import create_app, serve

    serve("duckdb:///var/lib/costs.duckdb", host="127.0.0.1", port=8765)   # what `llmcost serve` does
    app = create_app("duckdb:///var/lib/costs.duckdb", token="s3cret")     # an ASGI app, for your own server
"""

# The layout, imports running down this list only: _security (token, body limit, bind rule), _models (JSON bodies),
# _reservations (the Reservations protocol and its one adapter), _metrics (the Prometheus collector), _dashboard
# (the HTML report, live), _writer (group commit of posted
# entries), _app (the routes), _run (uvicorn).
from ._app import create_app
from ._run import TOKEN_VARIABLE, serve

__all__ = ["TOKEN_VARIABLE", "create_app", "serve"]
