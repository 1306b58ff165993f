"""The package as a user installs it: pure Python, and importable without the notebook stack."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "cachescope"

# What a plain `pip install cachescope` does not bring today (the notebook extra's packages).
NOTEBOOK_ONLY = ("IPython", "ipywidgets", "altair", "anywidget", "pandas", "numpy", "nbformat")


def test_the_package_has_no_c_sources() -> None:
    compiled = [p for p in SRC.rglob("*") if p.suffix in {".c", ".h", ".so", ".pyx"}]
    assert compiled == []


def test_star_import_works_without_the_notebook_packages() -> None:
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class Absent(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {NOTEBOOK_ONLY!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Absent())
        from cachescope import *  # noqa: F403
        import cachescope
        missing = [name for name in cachescope.__all__ if name not in globals()]
        print("missing", missing)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "missing []"
