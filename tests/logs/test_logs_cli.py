"""`cachescope usage`: the table, --json (stable schema), --csv, options and errors."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import orjson
import pytest

from cachescope.cli import build_parser, main
from cachescope.logs import load, synthetic


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, synthetic.Truth]:
    return tmp_path / "c", synthetic.write_corpus(tmp_path / "c", sessions=8, seed=4)


def test_json_totals_agree_with_load_and_the_truth(
    corpus, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    folder, truth = corpus
    assert main(["usage", str(folder), "--json", "--no-progress"]) == 0
    data = orjson.loads(capsys.readouterr().out)
    df = load(folder)
    assert data["totals"]["cacheReadTokens"] == int(df["read"].sum()) == truth.read
    assert data["totals"]["inputTokens"] == truth.fresh
    assert data["totals"]["totalCost"] == pytest.approx(df["cost"].sum(), abs=1e-5)


def test_json_has_one_row_list_per_grouping(corpus, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    main(["usage", str(corpus[0]), "--json"])
    data = orjson.loads(capsys.readouterr().out)
    assert {
        "schema",
        "totals",
        "daily",
        "weekly",
        "monthly",
        "sessions",
        "models",
        "projects",
        "phases",
        "rebuilds",
        "load",
        "caveat",
    } <= set(data)
    assert data["schema"] == "cachescope.usage/1"


def test_csv_by_model_has_one_row_per_model(corpus, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    main(["usage", str(corpus[0]), "--csv", "--by", "model"])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sorted(r["model"] for r in rows) == sorted(corpus[1].by_model)


def test_the_table_names_the_caveat_and_skipped_lines(
    corpus, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    main(["usage", str(corpus[0]), "--by", "session"])
    out = capsys.readouterr().out
    assert "undercount" in out and "malformed lines skipped" in out


def test_since_after_every_day_reports_zero_responses(
    corpus, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    main(["usage", str(corpus[0]), "--json", "--since", "2030-01-01"])
    assert orjson.loads(capsys.readouterr().out)["totals"]["responses"] == 0


def test_help_documents_every_option() -> None:
    usage = next(
        a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "usage"
    )[1]  # type: ignore[union-attr]
    text = usage.format_help()
    for option in (
        "--by",
        "--since",
        "--until",
        "--json",
        "--csv",
        "--no-cache",
        "--no-progress",
        "--workers",
        "PATH",
    ):
        assert option in text
    assert all(action.help for action in usage._actions)


def test_a_bad_date_exits_with_status_two_and_one_line(
    corpus, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    assert main(["usage", str(corpus[0]), "--since", "yesterday"]) == 2
    err = capsys.readouterr().err
    assert "YYYY-MM-DD" in err and "Traceback" not in err
