"""The dashboard of ``llmcost serve`` in a real browser: headless Chromium (Debian's, driven by Playwright's Python
API) against a real server process on 127.0.0.1. It renders the totals and charts, a filter change updates them, a
new entry shows up live, and the console stays free of errors."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="llmcost[server] is not installed")
httpx = pytest.importorskip("httpx")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")

from benchmarks.bench_serve import serve_process  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags that keep Chromium quiet on a machine without a network and running as root.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"Chromium not found at {CHROMIUM} (CI installs Debian's chromium)"
)


@pytest.fixture
def base(tmp_path: Path) -> Iterator[str]:
    with serve_process(f"duckdb://{tmp_path / 'costs.duckdb'}", refresh=0.5) as url:
        records = [
            {"model": "gpt-4o", "amount": "4.00", "resource": "support-bot", "tags": {"team": "support"}},
            {"model": "gpt-4o-mini", "amount": "2.00", "resource": "search", "tags": {"team": "search"}},
            {"model": "gpt-4o", "amount": "4.00", "resource": "search", "tags": {"team": "search"}},
            {"amount": "2.50", "category": "compute", "resource": "gpu-box", "tags": {"team": "search"}},
        ]
        days = ["2026-11-20", "2026-11-22", "2026-11-24", "2026-11-26"]
        for record, day in zip(records, days, strict=True):
            httpx.post(
                f"{url}/api/v1/costs/records", json={**record, "timestamp": f"{day}T12:00:00Z"}
            ).raise_for_status()
        yield url


def _total(page: sync_api.Page) -> str:
    return str(page.locator("#report .card .value").first.inner_text())


def test_the_dashboard_renders_filters_and_updates_live(base: str, tmp_path: Path) -> None:
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto(f"{base}/")
            sync_api.expect(page.locator("#live")).to_contain_text("live ·", timeout=15_000)  # the script ran

            assert _total(page) == "$12.50"
            assert page.locator("#report svg").count() >= 3  # spend per day, by category, by model...
            assert page.locator("#report svg rect").count() >= 4

            page.select_option("#f-category", "compute")
            sync_api.expect(page.locator("#report .card .value").first).to_have_text("$2.50", timeout=10_000)
            assert "category=compute" in page.url
            page.select_option("#f-category", "")
            page.select_option("#f-tag", "team:search")
            sync_api.expect(page.locator("#report .card .value").first).to_have_text("$8.50", timeout=10_000)

            httpx.post(
                f"{base}/api/v1/costs/records",
                json={"amount": "1.50", "category": "storage", "resource": "s3", "tags": {"team": "search"}},
            ).raise_for_status()
            sync_api.expect(page.locator("#report .card .value").first).to_have_text("$10.00", timeout=10_000)
            sync_api.expect(page.locator("#live")).to_contain_text("$10", timeout=10_000)

            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert problems == []
