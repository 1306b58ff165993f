"""The dashboard in a real browser: JupyterLab + headless Chromium, driven by Playwright.

Starts JupyterLab on 127.0.0.1 (random free port, random token, every Jupyter directory in a temp
dir, a kernelspec pinned to this interpreter), opens the fixture notebook, runs all cells through
the command palette and checks what a user sees: the usage table's rows, the highlighted prefix
break, a rendered chart, and that the XSS payloads in a layer and in the reply did not run. A
screenshot is saved under `test-artifacts/`.
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
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
FIXTURE = Path(__file__).with_name("browser_dashboard.ipynb")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_server(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"JupyterLab did not answer {url} within {timeout} s")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A running JupyterLab serving a temp root with the fixture notebook: (base URL, token)."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(FIXTURE, root / FIXTURE.name)
    env = dict(os.environ)
    for name in ("config", "data", "runtime", "settings", "workspaces", "ipython"):
        (tmp_path / name).mkdir()
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        IPYTHONDIR=str(tmp_path / "ipython"),
    )
    env.pop("ANTHROPIC_API_KEY", None)
    # No "get Jupyter news?" toast over the screenshot (and no fetch of the news feed).
    (tmp_path / "config" / "labconfig").mkdir()
    (tmp_path / "config" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    kernel_dir = tmp_path / "data" / "kernels" / "python3"
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(
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
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            "--allow-root",
            f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=",
        ],
        env=env,
        cwd=root,
        stdout=open(tmp_path / "lab.log", "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{base}/api/status?token={token}", process, timeout=90)
        yield base, token
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


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
            page.goto(f"{base}/lab/tree/{FIXTURE.name}?token={token}&reset")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
            page.wait_for_selector(
                ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000
            )
            page.click(".jp-NotebookPanel .jp-Cell .jp-InputPrompt")
            page.keyboard.press("Escape")
            palette = page.locator(".lm-CommandPalette-input")
            # The View menu opens the palette (a shortcut can land in an editor); while the
            # kernel starts the palette can close again, so try a few times.
            for attempt in range(4):
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
