"""The ```python blocks of the user guide run as pasted: each page's blocks in order, in one namespace.

Pages listed here are kept runnable (network calls go to canned HTTP; what needs a real key is a ```text block)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs"
RUNNABLE = ["instrument.md", "otel.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", RUNNABLE)
def test_python_blocks_run_as_pasted(page: str, capsys: pytest.CaptureFixture[str]) -> None:
    if page == "otel.md":
        pytest.importorskip("opentelemetry.sdk")
    blocks = BLOCK.findall((DOCS / page).read_text(encoding="utf-8"))
    assert blocks, f"{page} has no python block"
    namespace: dict[str, object] = {"__name__": f"docs_{page[:-3]}"}
    for n, block in enumerate(blocks, 1):
        exec(compile(block, f"{page} block {n}", "exec"), namespace)


def test_instrument_page_prints_what_it_says(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "docs_instrument"}
    for n, block in enumerate(BLOCK.findall((DOCS / "instrument.md").read_text(encoding="utf-8")), 1):
        exec(compile(block, f"instrument.md block {n}", "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "gpt-4o-mini-2024-07-18 0.00036 openai.chat.completions.create",
        "refused: True",
        "1",
        "{'team': 'support', 'model_asked': 'claude-3-5-haiku-20241022'}",
        "3",
        "3",
    ]


def test_every_page_is_linked_from_the_index() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in RUNNABLE:
        assert f"]({page})" in index, page
