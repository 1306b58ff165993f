"""A throw-away JupyterLab and the clicks that run a notebook in it, for Playwright + Chromium.

Shared by the browser test (`test_browser_dashboard.py`) and the screenshot script
(`docs/images/make_screenshot.py`), so both start JupyterLab and press "Run All Cells" the same way.
Everything Jupyter writes goes under a temporary folder; the kernelspec is pinned to this
interpreter; no API key reaches the kernel (the notebooks then use the simulator).
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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium as root in a closed network: no sandbox, no GPU, no background connections.
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


@contextmanager
def running_lab(work: Path, files: Iterable[Path]) -> Iterator[tuple[str, str]]:
    """JupyterLab on 127.0.0.1 serving copies of `files` (or folders): yields (base URL, token).

    A random free port and token, every Jupyter directory under `work`, the news toast off, the
    server's log in `work/lab.log`; the server's process group is stopped on exit.
    """
    root = work / "root"
    root.mkdir()
    for source in files:
        if source.is_dir():
            shutil.copytree(source, root / source.name)
        else:
            shutil.copy(source, root / source.name)
    env = dict(os.environ)
    for name in ("config", "data", "runtime", "settings", "workspaces", "ipython"):
        (work / name).mkdir()
    env.update(
        JUPYTER_CONFIG_DIR=str(work / "config"),
        JUPYTER_DATA_DIR=str(work / "data"),
        JUPYTER_RUNTIME_DIR=str(work / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(work / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"),
        IPYTHONDIR=str(work / "ipython"),
    )
    env.pop("ANTHROPIC_API_KEY", None)
    # No "get Jupyter news?" toast over the page (and no fetch of the news feed).
    (work / "config" / "labconfig").mkdir()
    (work / "config" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    kernel_dir = work / "data" / "kernels" / "python3"
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
    with open(work / "lab.log", "wb") as log:
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
            stdout=log,
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


def open_and_run_all(page: Any, url: str) -> None:
    """Open a notebook at `url`, wait for its kernel, and start "Run All Cells"."""
    page.goto(url)
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
    page.click(".jp-NotebookPanel .jp-Cell .jp-InputPrompt")
    page.keyboard.press("Escape")
    palette = page.locator(".lm-CommandPalette-input")
    # The View menu opens the palette (a shortcut can land in an editor); while the kernel
    # starts the palette can close again, so try a few times.
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
