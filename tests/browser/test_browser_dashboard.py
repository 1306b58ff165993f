"""The dashboard in a real browser: JupyterLab + headless Chromium, driven by Playwright.

Starts JupyterLab on 127.0.0.1 (random free port, random token, every Jupyter directory in a temp
dir, a kernelspec pinned to this interpreter), opens the fixture notebook, runs all cells through
the command palette and checks what a user sees: the usage table's rows, the highlighted prefix
break, a rendered chart, and that the XSS payloads in a layer and in the reply did not run. A
screenshot is saved under `test-artifacts/`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_harness import CHROMIUM, CHROMIUM_ARGS, open_and_run_all, running_lab

FIXTURE = Path(__file__).with_name("browser_dashboard.ipynb")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A running JupyterLab serving a temp root with the fixture notebook: (base URL, token)."""
    with running_lab(tmp_path, [FIXTURE]) as served:
        yield served


def test_dashboard_renders_table_break_and_chart_without_running_payloads(
    lab: tuple[str, str],
) -> None:
    from playwright.sync_api import sync_playwright

    base, token = lab
    dialogs: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            open_and_run_all(page, f"{base}/lab/tree/{FIXTURE.name}?token={token}&reset")

            dashboard = ".cachescope-dashboard"
            rows = page.locator(f"{dashboard} table.cachescope-calls tbody tr")
            page.wait_for_function(
                "n => document.querySelectorAll("
                "'.cachescope-dashboard table.cachescope-calls tbody tr').length >= n",
                arg=4,
                timeout=150_000,
            )
            assert rows.count() == 4
            highlighted = page.locator(f"{dashboard} .cachescope-break mark").filter(
                has_text="2026-11-21"
            )
            highlighted.first.wait_for(timeout=30_000)
            chart = page.locator(f"{dashboard} .vega-embed canvas, {dashboard} .vega-embed svg")
            chart.first.wait_for(timeout=60_000)
            assert chart.first.bounding_box() is not None
            page.wait_for_function(
                "() => document.body.innerText.includes('No sessions') === false"
                " && document.querySelectorAll('table.cachescope-sessions').length > 0",
                timeout=60_000,
            )
            reply = page.locator(".cachescope-reply").first
            assert '<img src=x onerror="window.__xss = 1">' in reply.inner_text()
            assert page.evaluate("typeof window.__xss") == "undefined"
            assert dialogs == []

            page.locator(dashboard).first.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "browser_dashboard_page.png"))
            page.locator(dashboard).first.screenshot(path=str(ARTIFACTS / "dashboard.png"))
        finally:
            browser.close()
