"""Every ```python block in docs/*.md and README.md runs as pasted: in a fresh namespace, in an empty working
directory, with the OpenAI and Anthropic SDKs talking to a canned HTTP server on 127.0.0.1 (dummy API keys, base
URLs pointed at it). Blocks that are not meant to run (shell sessions, output, file formats) use other fences."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


#: A page whose text says this is a walk-through: its blocks build on each other, so block N runs after blocks
#: 1..N-1 of that page in one namespace, as a reader pasting them into one session runs them. Every other block
#: runs alone.
IN_ORDER = "blocks on this page run in order as pasted"


def _blocks() -> list[Any]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        earlier: list[str] = []
        in_order = IN_ORDER in " ".join(text.split())
        for n, match in enumerate(FENCE.finditer(text), start=1):
            line = text.count("\n", 0, match.start()) + 1
            name = f"{page.relative_to(ROOT)}:{line}"
            code = match.group(1)
            found.append(pytest.param(name, code, tuple(earlier), id=f"{page.relative_to(ROOT)}#{n}"))
            if in_order:
                earlier.append(code)
    return found


BLOCKS = _blocks()

_USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def _answer(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The canned JSON an OpenAI or Anthropic endpoint would send back for ``body``."""
    model = body.get("model", "gpt-4o-mini")
    if path.endswith("/chat/completions"):
        return {
            "id": "chatcmpl-docs",
            "object": "chat.completion",
            "created": 1_715_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "A canned answer."},
                    "finish_reason": "stop",
                }
            ],
            "usage": _USAGE,
        }
    if path.endswith("/embeddings"):
        return {
            "object": "list",
            "model": model,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 0.1]}],
            "usage": {"prompt_tokens": 8, "total_tokens": 8},
        }
    if path.endswith("/messages"):
        return {
            "id": "msg_docs",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "A canned answer."}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 5},
        }
    return None


class _Canned(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        answer = _answer(self.path.split("?")[0], body if isinstance(body, dict) else {})
        data = json.dumps(answer if answer is not None else {"error": f"no canned answer for {self.path}"}).encode()
        self.send_response(200 if answer is not None else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def canned_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def pasted(canned_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's shell: dummy keys, SDKs pointed at the canned server, and a working directory holding the Parquet
    store ``llmcost-data/`` (a few entries over two days), which the pages on reading a dataset read, and the
    example files under ``docs/examples/``."""
    from datetime import datetime, timedelta, timezone

    from llmcost import CostEntry, ParquetStore, Usage

    store = ParquetStore(tmp_path / "llmcost-data")
    start = datetime(2024, 5, 1, 9, tzinfo=timezone.utc)
    store.append(
        [
            CostEntry(
                id=f"{n:026x}",
                timestamp=start + timedelta(hours=13 * n),
                amount="0.0125",
                model="gpt-4o",
                provider="openai",
                usage=Usage(1000, 200),
                tags={"team": "search" if n % 2 else "docs"},
            )
            for n in range(4)
        ]
    )
    store.close()
    # The example files the pages read by their repository paths (docs/examples/...), as from a checkout's root.
    shutil.copytree(ROOT / "docs" / "examples", tmp_path / "docs" / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs-dummy")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-docs-dummy")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{canned_api}/v1")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", canned_api)
    return tmp_path


def test_the_docs_have_python_blocks() -> None:
    assert len(BLOCKS) >= 20


def _missing_modules(code: str) -> list[str]:
    """Top-level modules the block imports that are not installed (Spark, say): such a block is skipped here."""
    import ast
    import importlib.util

    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return sorted(name for name in names if importlib.util.find_spec(name) is None)


_PRINT = re.compile(r"^print\(.*?\)(?:\s+#\s?(?P<said>.*))?$")  # (the shortest call: a comment may hold brackets)


def said_output(code: str) -> list[str] | None:
    r"""What a block says it prints: for each ``print(...)`` at its top level, the comment after it on its line, or
    else the ``# ...`` lines right below it (a frame, say); ``None`` when the block prints nowhere else (inside a loop
    or a function) or leaves a print's output unsaid, so only blocks that say all they print are checked.

    >>> said_output('x = 1\nprint(x)  # 1\nprint(x + 1)\n#   2\n')
    ['1', '  2']
    """
    lines = code.splitlines()
    said: list[str] = []
    for i, line in enumerate(lines):
        if "print(" not in line:
            continue
        match = _PRINT.match(line)
        if match is None:
            return None  # a print elsewhere than on a top-level line of its own
        if match["said"] is not None:
            said.append(match["said"])
            continue
        below = list(itertools.takewhile(lambda text: text.startswith("#"), lines[i + 1 :]))
        if not below:
            return None
        said += [text[2:] if text.startswith("# ") else text[1:] for text in below]
    return said or None


@pytest.mark.parametrize(("name", "code", "earlier"), BLOCKS)
def test_every_python_block_runs_as_pasted(
    name: str, code: str, earlier: tuple[str, ...], pasted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A block that shows what it prints (``print(x)  # 0.0035``, or ``# ...`` lines below the print) prints that.
    import llmcost

    missing = _missing_modules("\n".join([*earlier, code]))
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)}, which is not installed here")

    namespace: dict[str, Any] = {"__name__": "__main__"}
    try:
        for n, before in enumerate(earlier, start=1):  # a walk-through page: the blocks above this one first
            exec(compile(before, f"{name} (block {n} of its page, run first)", "exec"), namespace)
        capsys.readouterr()
        exec(compile(code, name, "exec"), namespace)
    finally:
        llmcost.get_tracker().close()
    said = said_output(code)
    if said is not None and not name.startswith("README"):  # (the README's words describe a real API's answer)
        printed = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
        assert printed == [line.rstrip() for line in said], f"{name} prints otherwise than it says"


def test_the_instrument_page_prints_what_it_says(pasted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The page's blocks in order, as a reader runs them one after another: what they print is what the page says.
    namespace: dict[str, object] = {"__name__": "docs_instrument"}
    page = ROOT / "docs" / "instrument.md"
    for n, block in enumerate(FENCE.findall(page.read_text(encoding="utf-8")), 1):
        exec(compile(block, f"instrument.md block {n}", "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "gpt-4o-mini-2024-07-18 0.00036 openai.chat.completions.create",
        "refused: True",
        "1",
        "{'team': 'support', 'model_asked': 'claude-3-5-haiku-20241022'}",
        "3",
        "application/json",
        "4",
        "4",
    ]


def test_every_page_is_linked_from_the_index() -> None:
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "index.md":
            assert f"]({page.name})" in index, f"docs/index.md does not link {page.name}"


def _console_errors() -> list[Any]:
    """``(command, error line)`` of every ``$ llmcost ...`` line of a console block in docs/cli.md that the page
    answers with an error line (``llmcost <command>: error: ...``)."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"^```console[ \t]*\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        lines = block.splitlines()
        for command, answer in itertools.pairwise(lines):
            if command.startswith("$ llmcost ") and re.match(r"llmcost [\w-]+: error: ", answer):
                found.append(pytest.param(command[2:], answer, id=command[2:]))
    return found


@pytest.mark.parametrize(("command", "error"), _console_errors())
def test_the_cli_pages_sample_errors_are_the_real_ones(
    command: str, error: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shlex

    from llmcost.cli import main

    monkeypatch.chdir(tmp_path)  # no llmcost.duckdb here
    if "store" in error:  # a sample of a store that cannot be opened: none is given but the command's own
        monkeypatch.delenv("LLMCOST_STORE", raising=False)
    else:  # a store there is, as the sample assumes
        monkeypatch.setenv("LLMCOST_STORE", "memory://")
    assert main(shlex.split(command)[1:]) == 2
    assert capsys.readouterr().err == error + "\n"


def test_the_stores_page_lists_every_service_tier() -> None:
    from llmcost._entry import SERVICE_TIERS

    page = (ROOT / "docs" / "stores.md").read_text(encoding="utf-8")
    (row,) = [line for line in page.splitlines() if line.startswith("| `service_tier` |")]
    for tier in (*SERVICE_TIERS, "us", "+us"):
        assert f"`{tier}`" in row, tier
