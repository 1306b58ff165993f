"""Re-make docs/images/dashboard.png: the quickstart's dashboard, in JupyterLab, in headless Chromium.

Run from the repository root: `.venv/bin/python docs/images/make_screenshot.py`. It starts
JupyterLab on 127.0.0.1 (random port and token, temporary Jupyter folders), opens a copy of
`notebooks/01-quickstart.ipynb`, runs every cell and photographs the first session dashboard (the timestamp bug).
Needs Debian's `/usr/bin/chromium` (`apt-get install -y chromium`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "01-quickstart.ipynb"
OUTPUT = ROOT / "docs" / "images" / "dashboard.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_lab(work: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    root = work / "root"
    shutil.copytree(ROOT / "notebooks", root)
    env = dict(os.environ)
    env.pop("ANTHROPIC_API_KEY", None)
    for name in ("config", "data", "runtime", "settings", "workspaces"):
        (work / name).mkdir()
    env.update(
        JUPYTER_CONFIG_DIR=str(work / "config"),
        JUPYTER_DATA_DIR=str(work / "data"),
        JUPYTER_RUNTIME_DIR=str(work / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(work / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"),
    )
    (work / "config" / "labconfig").mkdir()
    (work / "config" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    kernel = work / "data" / "kernels" / "python3"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            }
        )
    )
    port, token = _free_port(), secrets.token_hex(24)
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", "--allow-root", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url="],
        env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                return process, base, token
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("JupyterLab did not start within 90 s")


def main() -> int:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        process, base, token = _start_lab(Path(folder))
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport={"width": 1280, "height": 2000})
                page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}&reset")
                page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
                page.click(".jp-NotebookPanel .jp-Cell .jp-InputPrompt")
                page.keyboard.press("Escape")
                palette = page.locator(".lm-CommandPalette-input")
                for attempt in range(4):  # the palette can close while the kernel starts
                    page.click(".lm-MenuBar-itemLabel:text-is('View')")
                    page.click(".lm-Menu-itemLabel:text-is('Activate Command Palette')")
                    try:
                        palette.wait_for(state="visible", timeout=5_000)
                        palette.fill("Run All Cells", timeout=5_000)
                        page.locator(
                            ".lm-CommandPalette-item:visible", has_text="Run All Cells"
                        ).first.wait_for(timeout=5_000)
                        break
                    except Exception:
                        if attempt == 3:
                            raise
                        page.keyboard.press("Escape")
                page.keyboard.press("Enter")
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
                page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=240_000)
                page.wait_for_timeout(1500)
                dashboard = page.locator(".cachescope-dashboard").first  # the bug session: every call breaks
                dashboard.scroll_into_view_if_needed()
                page.wait_for_timeout(500)
                dashboard.screenshot(path=str(OUTPUT))
                browser.close()
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
