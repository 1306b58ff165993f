"""The browser fixture notebook, executed headless with nbclient against the simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # a kernel start, altair and vl-convert: about a minute

FIXTURE = Path(__file__).resolve().parents[1] / "browser" / "browser_dashboard.ipynb"
WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    notebook = nbformat.read(FIXTURE, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path_factory.mktemp("nb"))}},
    )
    client.execute()
    return notebook


def outputs(notebook: Any, index: int) -> list[Any]:
    return list(notebook.cells[index].outputs)


def test_every_cell_runs_without_error(executed: Any) -> None:
    for cell in executed.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.outputs if o.output_type == "error"]


def test_first_call_shows_its_snapshot_and_the_dashboard(executed: Any) -> None:
    cell = outputs(executed, 2)
    snapshots = [o for o in cell if "cachescope" in o.get("metadata", {})]
    assert snapshots and "cachescope-call" in snapshots[-1].data["text/html"]
    assert [o for o in cell if WIDGET in o.get("data", {})]


def test_saved_snapshot_has_the_final_usage_in_its_metadata(executed: Any) -> None:
    meta = next(o for o in outputs(executed, 3) if "cachescope" in o.get("metadata", {}))
    usage = meta.metadata["cachescope"]["usage"]
    assert usage["cache_read_input_tokens"] > 4000


def test_changed_layer_shows_the_break_in_the_saved_snapshot(executed: Any) -> None:
    snapshot = next(o for o in outputs(executed, 4) if "cachescope" in o.get("metadata", {}))
    assert "system_changed" in snapshot.data["text/plain"]
    assert "<mark" in snapshot.data["text/html"]


def test_dashboard_output_keeps_a_png_for_viewers_without_widgets(executed: Any) -> None:
    dashboard = next(o for o in outputs(executed, 2) if WIDGET in o.get("data", {}))
    assert dashboard.data["image/png"]


def test_payloads_stay_escaped_in_the_saved_notebook(executed: Any) -> None:
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            html = output.get("data", {}).get("text/html", "")
            assert "<img" not in html and "<script" not in html
