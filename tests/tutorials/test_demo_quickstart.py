"""`make demo`: the quickstart executed headless, its headline printed, the notebook saved as HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cachescope import _demo

nbformat = pytest.importorskip("nbformat")

HEADLINE = {
    "calls": 20,
    "hit_share_before": 0.0,
    "hit_share_after": 0.9463,
    "cost_before": 0.4857,
    "cost_after": 0.0728,
    "saved": 0.4129,
    "saved_by_caching": 0.1959,
    "cost_factor": 6.67,
}


def notebook_with(data: dict[str, Any]) -> Any:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("headline")
    cell.outputs = [nbformat.v4.new_output("display_data", data=data)]
    nb.cells = [nbformat.v4.new_markdown_cell("# title"), cell]
    return nb


def test_the_headline_is_read_from_its_mime_output_not_from_prose() -> None:
    nb = notebook_with({"text/plain": "Hit share 0.0% before ...", _demo.HEADLINE_MIME: HEADLINE})
    assert _demo.headline_of(nb) == HEADLINE


def test_a_notebook_without_the_headline_output_is_an_error() -> None:
    with pytest.raises(ValueError, match="headline"):
        _demo.headline_of(notebook_with({"text/plain": "Hit share 94.7%"}))


def test_widget_views_and_state_are_dropped_before_the_html(tmp_path: Path) -> None:
    nb = notebook_with(
        {"text/plain": "dashboard", "image/png": "iVBORw0KGgo=", _demo.WIDGET_VIEW: {}}
    )
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    page = tmp_path / "build" / "demo.html"
    _demo.write_html(_demo.for_reading(nb), page)
    html = page.read_text(encoding="utf-8")
    assert "<html" in html and "iVBORw0KGgo=" in html
    assert _demo.WIDGET_VIEW not in html and "widget-state" not in html


def test_main_prints_both_hit_shares_and_the_savings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / _demo.QUICKSTART).write_text("{}")
    monkeypatch.chdir(tmp_path)
    written: list[Path] = []

    def fake_run(notebooks: Path, html_path: Path | None = None) -> dict[str, Any]:
        assert notebooks == tmp_path / "notebooks"
        assert html_path is not None
        written.append(html_path)
        return HEADLINE

    monkeypatch.setattr(_demo, "run_quickstart", fake_run)
    assert _demo.main() == 0
    out = capsys.readouterr().out
    assert "0.0%" in out and "94.6%" in out and "$0.4129 saved" in out
    assert written == [tmp_path / "build" / "01-quickstart.html"]
    assert "build/01-quickstart.html" in out


def test_main_fails_when_the_fix_misses_its_target(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / _demo.QUICKSTART).write_text("{}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        _demo, "run_quickstart", lambda *a, **k: {**HEADLINE, "hit_share_after": 0.5}
    )
    assert _demo.main() == 1


def test_without_the_notebook_the_story_runs_as_a_script(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_demo, "find_notebooks", lambda: None)
    assert _demo.main() == 0
    out = capsys.readouterr().out
    assert "running the same story as a script" in out
    assert "timestamp in the dynamic layer" in out


def test_without_nbclient_the_story_runs_as_a_script(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unavailable(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise _demo.NotebookUnavailable("nbclient is not installed")

    monkeypatch.setattr(_demo, "run_quickstart", unavailable)
    assert _demo.main() == 0
    out = capsys.readouterr().out
    assert "nbclient is not installed" in out and "timestamp in the dynamic layer" in out


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_make_demo_executes_the_quickstart_and_writes_html(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("CACHESCOPE_USE_API", "1")  # the demo must stay offline regardless
    headline = _demo.run_quickstart(root / "notebooks", tmp_path / "01-quickstart.html")
    assert headline["hit_share_before"] < 0.01
    assert headline["hit_share_after"] >= 0.9
    assert headline["saved"] > 0
    html = (tmp_path / "01-quickstart.html").read_text(encoding="utf-8")
    assert "%%cached_prompt" in html and "image/png" in html
    assert _demo.WIDGET_VIEW not in html
    # the README shows what `make demo` prints, figure for figure
    capsys.readouterr()
    _demo.print_headline(headline)
    printed = capsys.readouterr().out
    assert printed in (root / "README.md").read_text(encoding="utf-8")
