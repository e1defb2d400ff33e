"""``python -m llmcost``: the command line."""

from .cli import main

raise SystemExit(main())
