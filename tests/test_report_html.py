"""The HTML report: one self-contained page (no script, no external URL), charts as valid SVG, data escaped, and it
renders in headless Chromium without console errors."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from llmcost import CostEntry, Usage
from llmcost._report._html import render_html_report, write_html_report
from llmcost._report._svg import hbar_chart, stacked_columns
from llmcost.stores import MemoryStore

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
EVIL = '<script>alert("x")</script>'
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def make_store() -> MemoryStore:
    store = MemoryStore()
    entries = []
    for i in range(120):
        model = ["gpt-4o", "claude-3-5-sonnet", "gpt-4o-mini"][i % 3]
        entries.append(
            CostEntry(
                id=f"{i:026x}",
                timestamp=T0 + timedelta(hours=5 * i),
                amount=str(0.01 * (1 + i % 7) + (3 if i == 60 else 0)),
                resource=f"svc-{i % 5}",
                model=model,
                provider="anthropic" if model.startswith("claude") else "openai",
                usage=Usage(2000 + i, 300),
                tags={"team": ["search", "docs", EVIL][i % 3]},
            )
        )
    entries.append(CostEntry(id="z" * 26, timestamp=T0, amount="1.5", category="compute", resource=EVIL))
    store.append(entries)
    return store


@pytest.fixture(scope="module")
def page() -> str:
    return render_html_report(make_store(), store="memory://", now=T0 + timedelta(days=26))


class _Collect(HTMLParser):
    """Every start tag with its attributes, and whether the tags balance."""

    VOID = frozenset({"meta", "br", "img", "input", "link", "hr"})  # SVG elements here are closed explicitly or with />

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()


def test_page_is_self_contained(page: str) -> None:
    parser = _Collect()
    parser.feed(page)
    assert parser.open == []  # every element closed, in order
    names = {tag for tag, _ in parser.tags}
    assert not names & {"script", "link", "img", "iframe", "object", "embed"}
    for tag, attrs in parser.tags:
        for name in ("src", "href"):
            assert name not in attrs, (tag, attrs)
    # The only URL on the page is the SVG namespace, which is a name, never fetched.
    assert set(re.findall(r"https?://[^\s\"'<>)]+", page)) <= {"http://www.w3.org/2000/svg"}
    assert "@import" not in page and "url(" not in page


def test_page_has_the_charts_and_tables(page: str) -> None:
    for heading in ("Spend per day", "By category", "By model", "By tag", "By resource", "Models compared"):
        assert f"<h2>{heading}</h2>" in page
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) >= 5
    for svg in svgs:
        ET.fromstring(svg)  # each chart is well-formed XML
    over_time = ET.fromstring(svgs[0])
    bars = over_time.findall(".//{http://www.w3.org/2000/svg}rect")
    assert len(bars) >= 25  # a column per day that had spend
    assert "claude-3-5-haiku-latest" in page  # a recommendation
    assert "Anomalies" in page and "+" in page.split("Anomalies")[1]  # the $3 spike is flagged with its score


def test_data_is_escaped(page: str) -> None:
    assert EVIL not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_bar_values_and_tooltips() -> None:
    svg = hbar_chart([("gpt-4o", 12.5, "#000"), ("gpt-4o-mini", 0.25, "#111")])
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    widths = [float(r.get("width", 0)) for r in root.iter(f"{ns}rect")]
    assert widths[0] > widths[1] > 0 and widths[0] / widths[1] == pytest.approx(50, rel=0.01)
    assert [t.text for t in root.iter(f"{ns}title")] == ["gpt-4o: $12.50", "gpt-4o-mini: $0.2500"]
    columns = stacked_columns(
        [T0, T0 + timedelta(days=1)], [("a", [1.0, 0.0], "#000"), ("b", [2.0, 4.0], "#111")], freq_label="day"
    )
    titles = [t.text for t in ET.fromstring(columns).iter(f"{ns}title")]
    assert "May 01: $3.00" in titles and "May 02 · b: $4.00" in titles


def test_empty_source_page(tmp_path: Path) -> None:
    target = write_html_report(MemoryStore(), tmp_path / "empty.html")
    text = target.read_text(encoding="utf-8")
    assert "No entries for this selection." in text and "<svg" not in text
    with pytest.raises(FileNotFoundError, match="no directory"):
        write_html_report(MemoryStore(), tmp_path / "missing" / "r.html")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_renders_in_chromium_without_console_errors(tmp_path: Path) -> None:
    target = write_html_report(make_store(), tmp_path / "report.html", store="memory://", now=T0 + timedelta(days=26))
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # any network fetch would fail and log an error
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            target.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    assert "<h2>By category</h2>" in done.stdout and "<svg" in done.stdout
