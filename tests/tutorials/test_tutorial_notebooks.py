"""The tutorials run top to bottom on the simulator, and their committed outputs are current.

All five notebooks are executed once per test session (together, one kernel each) with nbclient,
from `notebooks/` as the working directory and with a timeout per cell. A notebook that raises —
including a failed `assert` of its own outcome — fails `test_notebook_runs`. The committed copy must
match the fresh run in structure: the same cells, and per code cell the same kinds of output with
the same mime types (text differs: the virtual clock is fixed, but PNG bytes and SDK versions may
not be).

To refresh the committed notebooks after changing one, run
`CACHESCOPE_UPDATE_NOTEBOOKS=1 pytest tests/tutorials -m notebooks`: the fresh runs are written back,
normalized as described in `normalize`.
"""

from __future__ import annotations

import asyncio
import copy
import os
import re
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

# The first test waits for all five notebooks (about two minutes on two busy cores).
pytestmark = [pytest.mark.notebooks, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = ROOT / "notebooks"
NOTEBOOKS = (
    "01-quickstart.ipynb",
    "02-layers-and-breakpoints.ipynb",
    "03-agent-loop.ipynb",
    "04-usage-logs.ipynb",
    "05-what-if.ipynb",
)
CELL_TIMEOUT = 120  # seconds per cell
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
UPDATE = os.environ.get("CACHESCOPE_UPDATE_NOTEBOOKS") == "1"
# Nothing of the machine that ran the notebook may end up in a committed output.
MACHINE_TRACES = re.compile(r"/(?:work|home|root|tmp|Users)/|\.venv|site-packages")
SECRET_LIKE = re.compile(r"sk-ant-[A-Za-z0-9_-]{8,}")


def normalize(nb: Any) -> Any:
    """The notebook as it is committed: outputs that read without a kernel or widget state.

    Widget state (`metadata.widgets`) and widget views are dropped — the dashboard's PNG and text
    remain beside them — and so are timings and the kernel's exact version.
    """
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    }
    language = dict(nb.metadata.get("language_info") or {"name": "python"})
    language.pop("version", None)
    nb.metadata["language_info"] = language
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            data = output.get("data")
            if data is not None:
                data.pop(WIDGET_VIEW, None)
                if not data:
                    continue
            kept.append(output)
        cell.outputs = kept
    return nb


def signature(output: Any) -> tuple[str, ...]:
    """What kind of output this is: its type and stream name or mime types, not its text."""
    kind = output["output_type"]
    if kind == "stream":
        return (kind, output["name"])
    if kind == "error":
        return (kind, output["ename"])
    return (kind, *sorted(output.get("data", {})))


def structure(nb: Any) -> list[tuple[str, frozenset[tuple[str, ...]]]]:
    """Per cell: its type and the set of its output kinds (stream interleaving may vary)."""
    return [
        (cell.cell_type, frozenset(signature(o) for o in cell.get("outputs", ())))
        for cell in nb.cells
    ]


async def _execute(name: str) -> Any:
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
        record_timing=False,
        coalesce_streams=True,
    )
    await client.async_execute()
    return nb


async def _execute_all() -> dict[str, Any]:
    results = await asyncio.gather(*(_execute(name) for name in NOTEBOOKS), return_exceptions=True)
    return dict(zip(NOTEBOOKS, results))


@pytest.fixture(scope="module")
def executed() -> dict[str, Any]:
    """Every tutorial executed once on the simulator: name -> notebook, or the exception it raised."""
    missing = [name for name in NOTEBOOKS if not (NOTEBOOKS_DIR / name).exists()]
    assert not missing, f"tutorial notebooks missing from notebooks/: {missing}"
    with pytest.MonkeyPatch.context() as patch:
        # Offline, whatever the machine has set: the tutorials must never prompt or call out.
        patch.delenv("CACHESCOPE_USE_API", raising=False)
        patch.delenv("ANTHROPIC_API_KEY", raising=False)
        results = asyncio.run(_execute_all())
    if UPDATE:
        for name, nb in results.items():
            if not isinstance(nb, BaseException):
                nbformat.write(normalize(nb), NOTEBOOKS_DIR / name)
    return results


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(executed: dict[str, Any], name: str) -> None:
    result = executed[name]
    if isinstance(result, BaseException):
        pytest.fail(f"{name} failed on the simulator:\n{result}", pytrace=False)
    errors = [o for c in result.cells for o in c.get("outputs", ()) if o["output_type"] == "error"]
    assert not errors, f"{name} has error outputs: {[e['ename'] for e in errors]}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_outputs_match_a_fresh_run(executed: dict[str, Any], name: str) -> None:
    fresh = executed[name]
    if isinstance(fresh, BaseException):
        pytest.skip(f"{name} did not run (see test_notebook_runs)")
    committed = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    expected, got = structure(committed), structure(normalize(fresh))
    assert len(expected) == len(got), f"{name}: {len(expected)} cells committed, {len(got)} ran"
    for number, (want, have) in enumerate(zip(expected, got)):
        assert want == have, (
            f"{name} cell {number}: committed outputs {sorted(want[1])} but a fresh run gives "
            f"{sorted(have[1])}; re-run with CACHESCOPE_UPDATE_NOTEBOOKS=1"
        )
    code_cells = [c for c in committed.cells if c.cell_type == "code"]
    assert any(c.get("outputs") for c in code_cells), f"{name} is committed without outputs"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_clean(name: str) -> None:
    """No widget state, no paths or secrets of the machine that ran it, valid nbformat."""
    path = NOTEBOOKS_DIR / name
    if not path.exists():
        pytest.fail(f"{name} is missing")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata, f"{name} carries widget state"
    text = path.read_text(encoding="utf-8")
    assert WIDGET_VIEW not in text, f"{name} has widget views that cannot render without a kernel"
    outputs = "\n".join(
        str(output) for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs
    )
    found = MACHINE_TRACES.search(outputs)
    assert found is None, f"{name}: a local path leaked into the outputs: {found.group(0)!r}"
    assert SECRET_LIKE.search(text) is None, f"{name} contains something that looks like an API key"
