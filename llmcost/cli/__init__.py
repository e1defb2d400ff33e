"""The ``llmcost`` command: ``demo``, ``report``, ``export``, ``prices``, ``budgets`` and ``serve``.

Every command takes ``--store URL`` (default: ``$LLMCOST_STORE``, else ``./llmcost.duckdb``) and ``--format``.
Errors are one line on stderr and exit status 2; tables fit an 80-column terminal.

Example::

    $ llmcost demo                        # simulate two weeks of traffic into ./llmcost.duckdb, then report
    $ llmcost report --by model,tag:team --since 7d
    $ llmcost report --html report.html
    $ llmcost export costs.parquet --since 2024-05-01
    $ llmcost prices 'claude-3-5*'
    $ llmcost budgets status --format json
    $ llmcost serve --store costs.duckdb     # REST API, metrics and a live dashboard on 127.0.0.1:8765
"""

# The layout, imports running down this list only: _args (the parser, times and tags as written), _store (which
# store, opened without creating one by mistake), _commands (one function per command; tables and reports come
# from llmcost._report), _main (dispatch and one-line errors).
from ._main import main

__all__ = ["main"]
