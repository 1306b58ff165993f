"""Re-make docs/images/dashboard.png: the quickstart's dashboard, in JupyterLab, in headless Chromium.

Run from the repository root: `.venv/bin/python docs/images/make_screenshot.py`. It starts
JupyterLab on 127.0.0.1 (random port and token, temporary Jupyter folders), opens a copy of
`notebooks/01-quickstart.ipynb`, runs every cell and photographs the first session dashboard (the timestamp bug).
Needs Debian's `/usr/bin/chromium` (`apt-get install -y chromium`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "browser"))
from lab_harness import CHROMIUM, CHROMIUM_ARGS, open_and_run_all, running_lab  # noqa: E402

NOTEBOOK = "01-quickstart.ipynb"
OUTPUT = ROOT / "docs" / "images" / "dashboard.png"


def main() -> int:
    from playwright.sync_api import sync_playwright

    notebooks = sorted((ROOT / "notebooks").iterdir())
    with tempfile.TemporaryDirectory() as folder, running_lab(Path(folder), notebooks) as lab:
        base, token = lab
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 2000})
            open_and_run_all(page, f"{base}/lab/tree/{NOTEBOOK}?token={token}&reset")
            # The last cell publishes the headline once every call has been made.
            try:
                page.wait_for_function(
                    "() => document.querySelectorAll('.cachescope-dashboard .vega-embed canvas,"
                    " .cachescope-dashboard .vega-embed svg').length >= 2",
                    timeout=int(os.environ.get("SCREENSHOT_TIMEOUT_MS", "240000")),
                )
            except Exception:
                page.screenshot(path="/tmp/screenshot-failure.png", full_page=True)
                raise
            page.wait_for_selector(
                ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=240_000
            )
            page.wait_for_timeout(1500)
            dashboard = page.locator(
                ".cachescope-dashboard"
            ).first  # the bug session: every call breaks
            dashboard.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            dashboard.screenshot(path=str(OUTPUT))
            browser.close()
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
