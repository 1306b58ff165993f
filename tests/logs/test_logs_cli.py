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


def _without_timing(text: str) -> str:
    import re

    return re.sub(r'("seconds": )[0-9.]+|; [0-9.]+ s\.$', r"\1", text, flags=re.M)


@pytest.mark.parametrize(
    "options", [["--json"], ["--csv", "--by", "session"], ["--by", "week", "--since", "2026-09-03"]]
)
def test_a_warm_run_replays_the_output_without_loading(
    corpus, options: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from cachescope.logs import _load

    folder = str(corpus[0])
    main(["usage", folder, *options])
    capsys.readouterr()
    main(["usage", folder, *options])  # the full path, warm: what a replay must print
    full_warm = capsys.readouterr().out
    assert '"filesRead": 0' in full_warm or "--json" not in options

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("load ran although nothing changed")

    import cachescope.logs

    monkeypatch.setattr(_load, "load", refuse)
    monkeypatch.setattr(cachescope.logs, "load", refuse)
    main(["usage", folder, *options])
    replayed = capsys.readouterr().out
    assert _without_timing(replayed) == _without_timing(full_warm)


def test_a_changed_file_or_no_cache_is_never_replayed(
    corpus, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    folder = corpus[0]
    main(["usage", str(folder), "--json"])
    before = orjson.loads(capsys.readouterr().out)
    # --no-cache: the full path, reading every file
    main(["usage", str(folder), "--json", "--no-cache"])
    assert orjson.loads(capsys.readouterr().out)["load"]["filesRead"] == before["load"]["files"]
    # a file gains a response: the next run sees it
    target = next(folder.rglob("*.jsonl"))
    line = next(ln for ln in target.read_bytes().splitlines() if b'"usage":{' in ln)
    record = orjson.loads(line)
    record["message"]["id"] = "msg_new_one"
    record["requestId"] = "req_new_one"
    with open(target, "ab") as fh:
        fh.write(orjson.dumps(record) + b"\n")
    main(["usage", str(folder), "--json"])
    after = orjson.loads(capsys.readouterr().out)
    assert after["load"]["responses"] == before["load"]["responses"] + 1
    assert after["load"]["filesRead"] == 1


def test_new_and_removed_files_are_seen_by_the_next_run(
    corpus, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    folder = corpus[0]
    main(["usage", str(folder), "--json"])
    before = orjson.loads(capsys.readouterr().out)["load"]
    # a new session file in an existing project, and a new project
    first = next(folder.rglob("*.jsonl"))
    for target in (first.parent / "new-session.jsonl", folder / "projects" / "newproj" / "s.jsonl"):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(first.read_bytes())
        main(["usage", str(folder), "--json"])
        now = orjson.loads(capsys.readouterr().out)["load"]
        assert now["files"] == before["files"] + 1
        assert now["filesRead"] == 1
        before = now
    first.unlink()
    main(["usage", str(folder), "--json"])
    assert orjson.loads(capsys.readouterr().out)["load"]["files"] == before["files"] - 1
