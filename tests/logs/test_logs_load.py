"""`cachescope.logs.load` against a generated corpus with known totals, and the loading rules."""

from __future__ import annotations

import math
import os
from pathlib import Path

import orjson
import pytest

from cachescope import UnknownModelWarning
from cachescope.logs import _load, load, synthetic


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, synthetic.Truth]:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, synthetic.write_corpus(folder, sessions=45, seed=11)


@pytest.fixture(scope="module")
def loaded(corpus: tuple[Path, synthetic.Truth], tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("module-cache"))
    try:
        return load(corpus[0], no_cache=True)
    finally:
        del os.environ["XDG_CACHE_HOME"]


TOKENS = ["fresh", "write_5m", "write_1h", "read", "output"]


def _assistant(
    message_id: str,
    request_id: str | None,
    *,
    fresh: int = 10,
    read: int = 1000,
    write: int = 100,
    output: int = 50,
    model: str = "claude-sonnet-4-6",
    stamp: str = "2026-09-01T10:00:00.000Z",
    sidechain: bool = False,
    speed: str | None = None,
) -> bytes:
    usage = {
        "input_tokens": fresh,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output,
    }
    if speed:
        usage["speed"] = speed
    record: dict[str, object] = {
        "isSidechain": sidechain,
        "sessionId": "s",
        "message": {
            "model": model,
            "id": message_id,
            "content": [{"type": "text", "text": "PLACEHOLDER"}],
            "usage": usage,
        },
        "type": "assistant",
        "timestamp": stamp,
    }
    if request_id:
        record["requestId"] = request_id
    return orjson.dumps(record)


def _write(folder: Path, name: str, lines: list[bytes]) -> Path:
    path = folder / "projects" / "proj" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_token_totals_equal_the_truth_exactly(loaded, corpus) -> None:  # type: ignore[no-untyped-def]
    truth = corpus[1]
    assert loaded[TOKENS].sum().tolist() == [
        truth.fresh,
        truth.write_5m,
        truth.write_1h,
        truth.read,
        truth.output,
    ]


def test_one_row_per_api_response(loaded, corpus) -> None:  # type: ignore[no-untyped-def]
    assert len(loaded) == corpus[1].responses


def test_cost_equals_the_truth_priced_per_response(loaded, corpus) -> None:  # type: ignore[no-untyped-def]
    assert loaded["cost"].sum() == pytest.approx(corpus[1].cost, rel=1e-12)


def test_every_malformed_line_is_reported_with_file_and_line(loaded, corpus) -> None:  # type: ignore[no-untyped-def]
    folder, truth = corpus
    reported = sorted(
        (os.path.relpath(s.path, folder), s.line) for s in loaded.attrs["load_report"].malformed
    )
    expected = sorted((os.path.relpath(p, folder), line) for p, line in truth.malformed)
    assert expected and reported == expected


def test_sidechain_replays_are_dropped_and_counted(loaded, corpus) -> None:  # type: ignore[no-untyped-def]
    assert loaded.attrs["load_report"].replays_dropped == corpus[1].replays


def test_synthetic_errors_are_skipped_and_counted(loaded, corpus) -> None:  # type: ignore[no-untyped-def]
    assert loaded.attrs["load_report"].synthetic_skipped == corpus[1].synthetic
    assert "<synthetic>" not in set(loaded["model"].astype(str))


def test_subagent_usage_rolls_up_to_the_parent_session(loaded, corpus) -> None:  # type: ignore[no-untyped-def]
    per_session = loaded.groupby("session", observed=True)[TOKENS].sum()
    assert dict(zip(per_session.index, per_session.values.tolist())) == corpus[1].by_session


def test_subagent_rows_keep_their_agent_and_sidechain_flag(loaded) -> None:  # type: ignore[no-untyped-def]
    agents = loaded[loaded["agent"].astype(str) != ""]
    assert len(agents) > 0 and agents["sidechain"].all()


def test_day_model_and_project_totals_equal_the_truth(loaded, corpus) -> None:  # type: ignore[no-untyped-def]
    truth = corpus[1]
    day = (
        loaded.assign(day=loaded["timestamp"].dt.strftime("%Y-%m-%d")).groupby("day")[TOKENS].sum()
    )
    model = loaded.groupby("model", observed=True)[TOKENS].sum()
    project = loaded.groupby("project", observed=True)[TOKENS].sum()
    assert dict(zip(day.index, day.values.tolist())) == truth.by_day
    assert dict(zip(model.index.astype(str), model.values.tolist())) == truth.by_model
    assert dict(zip(project.index.astype(str), project.values.tolist())) == truth.by_project


def test_a_process_pool_gives_the_same_rows(corpus, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(_load, "POOL_MIN_BYTES", 0)
    pooled = load(corpus[0], no_cache=True, workers=2)
    single = load(corpus[0], no_cache=True, workers=1)
    assert pooled[TOKENS].sum().tolist() == single[TOKENS].sum().tolist()
    assert len(pooled) == len(single) == corpus[1].responses


def test_a_pool_started_from_a_threaded_process_forks_no_threads(
    corpus, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """In a process with threads (a Jupyter kernel's), the workers come from a fork server."""
    import threading

    monkeypatch.setattr(_load, "POOL_MIN_BYTES", 0)
    release = threading.Event()
    helper = threading.Thread(target=release.wait)
    helper.start()
    try:
        assert _load._start_method() == "forkserver"
        pooled = load(corpus[0], no_cache=True, workers=2)
    finally:
        release.set()
        helper.join()
    assert len(pooled) == corpus[1].responses
    assert pooled["fresh"].sum() == corpus[1].fresh


def test_second_run_reads_only_changed_files(tmp_path: Path) -> None:
    synthetic.write_corpus(tmp_path, sessions=6, seed=2, flaws=False)
    first = load(tmp_path)
    second = load(tmp_path)
    changed = next((tmp_path / "projects").rglob("*.jsonl"))
    with open(changed, "ab") as fh:
        fh.write(_assistant("msg_NEW", "req_NEW", fresh=7, read=0, write=0, output=3) + b"\n")
    third = load(tmp_path)
    assert first.attrs["load_report"].files_read == first.attrs["load_report"].files > 1
    assert second.attrs["load_report"].files_read == 0
    assert third.attrs["load_report"].files_read == 1
    assert third["fresh"].sum() == first["fresh"].sum() + 7


def test_no_cache_reads_every_file_and_writes_no_cache(tmp_path: Path) -> None:
    synthetic.write_corpus(tmp_path / "c", sessions=3, seed=2, flaws=False)
    load(tmp_path / "c", no_cache=True)
    again = load(tmp_path / "c", no_cache=True)
    assert again.attrs["load_report"].files_from_cache == 0
    assert not (tmp_path / "cache").exists()


def test_streamed_lines_keep_the_largest_total(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "s.jsonl",
        [
            _assistant("msg_A", "req_A", output=3),
            _assistant("msg_A", "req_A", output=250),
            _assistant("msg_A", "req_A", output=9),
        ],
    )
    df = load(tmp_path)
    assert df["output"].tolist() == [250]


def test_equal_totals_go_to_the_line_with_speed(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "s.jsonl",
        [
            _assistant("msg_A", "req_A", model="claude-opus-4-8"),
            _assistant("msg_A", "req_A", model="claude-opus-4-8", speed="fast"),
        ],
    )
    df = load(tmp_path)
    assert df["speed"].astype(str).tolist() == ["fast"]


def test_fast_mode_doubles_the_cost_on_a_model_with_a_two_times_multiplier(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "s.jsonl",
        [
            _assistant("msg_A", "req_A", model="claude-opus-4-8"),
            _assistant("msg_B", "req_B", model="claude-opus-4-8", speed="fast"),
        ],
    )
    df = load(tmp_path)
    assert df["cost"].iloc[1] == pytest.approx(2 * df["cost"].iloc[0])


def test_without_request_id_the_message_id_alone_is_the_key(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "s.jsonl",
        [
            _assistant("msg_A", None, output=5),
            _assistant("msg_A", None, output=60),
            _assistant("msg_B", None),
        ],
    )
    df = load(tmp_path)
    assert df["output"].tolist() == [60, 50]


def test_a_main_chain_response_under_a_new_request_id_still_counts(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "s.jsonl",
        [
            _assistant("msg_A", "req_A"),
            _assistant("msg_A", "req_B", stamp="2026-09-01T10:01:00.000Z"),
        ],
    )
    assert len(load(tmp_path)) == 2


def test_unknown_model_costs_nan_with_one_warning(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "s.jsonl",
        [
            _assistant("msg_A", "req_A", model="claude-imaginary-9"),
            _assistant("msg_B", "req_B", model="claude-imaginary-9"),
        ],
    )
    with pytest.warns(UnknownModelWarning) as caught:
        df = load(tmp_path)
    assert len(caught) == 1
    assert df["cost"].isna().all()


def test_since_and_until_keep_whole_utc_days(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "s.jsonl",
        [
            _assistant(f"msg_{d}", f"req_{d}", stamp=f"2026-09-0{d}T23:59:59.999Z")
            for d in (1, 2, 3, 4)
        ],
    )
    df = load(tmp_path, since="2026-09-02", until="20260903")
    assert df["timestamp"].dt.day.tolist() == [2, 3]
    assert df.attrs["load_report"].outside_dates == 2


def test_unusual_key_order_is_read_by_key(tmp_path: Path) -> None:
    record = {
        "timestamp": "2026-09-01T10:00:00.000Z",
        "message": {
            "usage": {"output_tokens": 4, "input_tokens": 3},
            "content": [{"type": "tool_use", "id": "toolu_X", "input": {"model": "x"}}],
            "id": "msg_A",
            "model": "claude-sonnet-4-6",
        },
        "type": "assistant",
        "requestId": "req_A",
    }
    _write(tmp_path, "s.jsonl", [orjson.dumps(record)])
    df = load(tmp_path)
    assert (df["fresh"].tolist(), df["output"].tolist(), df["model"].astype(str).tolist()) == (
        [3],
        [4],
        ["claude-sonnet-4-6"],
    )


def test_usage_inside_a_tool_result_is_not_a_response(tmp_path: Path) -> None:
    record = {
        "type": "user",
        "timestamp": "2026-09-01T10:00:00.000Z",
        "message": {"role": "user", "content": "PLACEHOLDER"},
        "toolUseResult": {"usage": {"input_tokens": 5, "output_tokens": 6}},
    }
    _write(tmp_path, "s.jsonl", [orjson.dumps(record)])
    df = load(tmp_path)
    assert len(df) == 0 and df.attrs["load_report"].malformed == ()


def test_ledger_lines_load_beside_transcripts(tmp_path: Path) -> None:
    _write(tmp_path, "s.jsonl", [_assistant("msg_A", "req_A")])
    ledger = tmp_path / "notebook.ledger.jsonl"
    line = {
        "type": "cachescope.call",
        "schema": 1,
        "time": "2026-09-02T11:00:00.000Z",
        "session": "aura",
        "backend": "sim",
        "model": "claude-sonnet-5",
        "ok": True,
        "message_id": "msg_L",
        "input_tokens": 50,
        "cache_creation_input_tokens": 0,
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": 0,
        "cache_read_input_tokens": 100000,
        "output_tokens": 20,
        "unknown_key": [1],
    }
    ledger.write_bytes(orjson.dumps(line) + b"\n")
    df = load([tmp_path / "projects", ledger])
    row = df[df["source"] == "ledger"].iloc[0]
    assert (row["session"], row["read"], row["fresh"]) == ("aura", 100000, 50)
    assert not math.isnan(row["cost"])


def _same_frames(a, b) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    pd.testing.assert_frame_equal(a, b)
    ra, rb = a.attrs["load_report"], b.attrs["load_report"]
    for name in (
        "files",
        "bytes",
        "lines",
        "usage_lines",
        "responses",
        "duplicates_dropped",
        "replays_dropped",
        "synthetic_skipped",
        "outside_dates",
        "malformed",
        "unknown_models",
        "compactions",
    ):
        assert getattr(ra, name) == getattr(rb, name), name


def test_a_warm_run_returns_the_cold_rows_and_report(corpus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cold = load(corpus[0], no_cache=True)
    first = load(corpus[0])  # fills both caches
    warm = load(corpus[0])  # the final rows, read back
    assert warm.attrs["load_report"].files_read == 0
    assert warm.attrs["load_report"].files_from_cache == cold.attrs["load_report"].files
    _same_frames(cold, first)
    _same_frames(cold, warm)
    since, until = "2026-09-05", "2026-09-20"
    _same_frames(load(corpus[0], since, until, no_cache=True), load(corpus[0], since, until))


def test_a_warm_run_still_warns_about_unknown_models_in_its_window(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "s.jsonl",
        [
            _assistant("msg_A", "req_A", model="claude-imaginary-9", stamp="2026-09-01T10:00:00Z"),
            _assistant("msg_B", "req_B", stamp="2026-09-03T10:00:00Z"),
        ],
    )
    with pytest.warns(UnknownModelWarning):
        load(tmp_path)
    with pytest.warns(UnknownModelWarning):
        warm = load(tmp_path)
    assert warm.attrs["load_report"].files_read == 0
    assert warm.attrs["load_report"].unknown_models == ("claude-imaginary-9",)
    outside = load(tmp_path, since="2026-09-02")  # the unpriced response is outside the window
    assert outside.attrs["load_report"].unknown_models == ()
    assert not outside["cost"].isna().any()


def test_a_new_file_is_seen_by_a_warm_run(tmp_path: Path) -> None:
    _write(tmp_path, "a.jsonl", [_assistant("msg_A", "req_A", fresh=3)])
    assert load(tmp_path)["fresh"].sum() == 3
    assert load(tmp_path).attrs["load_report"].files_read == 0
    _write(tmp_path, "b.jsonl", [_assistant("msg_B", "req_B", fresh=4)])
    again = load(tmp_path)
    assert again["fresh"].sum() == 7
    assert again.attrs["load_report"].files_read == 1


def test_lines_in_the_usual_layout_and_odd_ones_give_the_same_rows(tmp_path: Path) -> None:
    """A `usage` inside a tool input is content, not the response's usage; line numbers hold."""
    usual = (
        b'{"parentUuid":null,"isSidechain":false,"userType":"external","cwd":"/w","sessionId":"s",'
        b'"version":"2.1.63","gitBranch":"main","message":{"model":"claude-sonnet-4-6","id":"msg_U",'
        b'"type":"message","role":"assistant","content":[{"type":"tool_use","id":"t","name":"X",'
        b'"input":{"usage":{"input_tokens":999}}}],"stop_reason":null,"stop_sequence":null,'
        b'"usage":{"input_tokens":5,"cache_creation_input_tokens":7,"cache_read_input_tokens":11,'
        b'"output_tokens":13}},"requestId":"req_U","type":"assistant","uuid":"u",'
        b'"timestamp":"2026-09-01T10:00:00.000Z"}'
    )
    odd = _assistant("msg_O", "req_O", fresh=1, read=2, write=3, output=4)
    negative = _assistant("msg_N", "req_N", fresh=-1)
    path = _write(tmp_path, "s.jsonl", [odd, b"{broken", usual, negative])
    df = load(tmp_path, no_cache=True)
    assert sorted(df["fresh"].tolist()) == [1, 5]
    assert df["read"].sum() == 13 and df["write_5m"].sum() == 10 and df["output"].sum() == 17
    skipped = df.attrs["load_report"].malformed
    assert [(s.path, s.line) for s in skipped] == [(str(path), 2), (str(path), 4)]
