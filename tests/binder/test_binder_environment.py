"""The Binder badge keeps working: an environment built from `binder/` alone runs the quickstart.

repo2docker installs `binder/requirements.txt` from the repository root on the Python of
`binder/runtime.txt`. This test does the same in a fresh virtual environment (on the Python running
the tests, with pip's own cache), then executes `notebooks/01-quickstart.ipynb` with nbclient and a
kernel on that environment's Python, as a Binder user pressing "Run all" would. It skips only when
pip cannot reach a package index.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# pip and a notebook run take longer than the suite's default timeout of 300 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"
INSTALL_TIMEOUT = 1500  # seconds; a cold pip cache downloads a few hundred MB
RUN_TIMEOUT = 600
# What pip prints when it cannot reach an index (DNS, no route, proxy, offline).
NO_INDEX = re.compile(
    r"Failed to establish a new connection|Temporary failure in name resolution|"
    r"Name or service not known|Network is unreachable|ProxyError|Connection refused|"
    r"No matching distribution found for|Could not fetch URL|NewConnectionError|ConnectTimeout",
)

EXECUTE = r"""
import json, sys
import nbformat
from nbclient import NotebookClient

path, folder = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
NotebookClient(nb, timeout=300, kernel_name="python3",
               resources={"metadata": {"path": folder}}).execute()
for cell in nb.cells:
    for output in cell.get("outputs", ()):
        headline = output.get("data", {}).get("application/vnd.cachescope.headline+json")
        if headline is not None:
            print("HEADLINE " + json.dumps(headline))
import cachescope
print("CACHESCOPE " + cachescope.__file__)
"""


def _run(args: list[str], *, timeout: int, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_binder_files_alone_build_an_environment_that_runs_the_quickstart(tmp_path: Path) -> None:
    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.\d+", runtime), f"runtime.txt pins a Python: {runtime!r}"
    venv = tmp_path / "binder-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "PYTHONPATH", "CACHESCOPE_USE_API", "ANTHROPIC_API_KEY")
    }
    # The venv's kernelspec first on the Jupyter path, so a user-wide `python3` cannot shadow it.
    env["JUPYTER_PATH"] = str(venv / "share" / "jupyter")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    install = _run(
        [str(python), "-m", "pip", "install", "-r", "binder/requirements.txt"],
        timeout=INSTALL_TIMEOUT,
        env=env,
    )
    if install.returncode != 0:
        log = install.stdout + install.stderr
        if NO_INDEX.search(log):
            pytest.skip(f"pip cannot reach a package index: {NO_INDEX.search(log).group(0)}")  # type: ignore[union-attr]
        pytest.fail(f"pip install -r binder/requirements.txt failed:\n{log[-4000:]}")

    run = _run(
        [str(python), "-c", EXECUTE, "notebooks/01-quickstart.ipynb", str(ROOT / "notebooks")],
        timeout=RUN_TIMEOUT,
        env=env,
    )
    assert run.returncode == 0, (
        f"the quickstart failed in the Binder environment:\n{run.stderr[-4000:]}"
    )
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines() if " " in line)
    assert Path(lines["CACHESCOPE"]).is_relative_to(venv), "cachescope came from the Binder venv"
    headline = json.loads(lines["HEADLINE"])
    assert headline["hit_share_before"] < 0.01 and headline["hit_share_after"] >= 0.9
