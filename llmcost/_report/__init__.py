"""Reports on spend, for people: the overview computed once (``_overview``) and rendered as text for a terminal
(``_text``) or as one self-contained HTML page (``_html``, with charts from ``_svg``); ``_format`` holds the one way
figures become text, which the command line uses too.

Imports run one way: ``_format`` <- ``_svg`` <- ``_html``; ``_overview`` (over ``llmcost.analytics``) <- ``_text``,
``_html``. Nothing here is public API; the command line calls these modules by name.
"""
