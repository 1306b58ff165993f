"""Every line of a transcript is parsed as JSON or reported as malformed; none is skipped unread."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from cachescope.logs import load


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


RESPONSE: dict[str, Any] = {
    "isSidechain": False,
    "sessionId": "s",
    "message": {
        "model": "claude-sonnet-4-6",
        "id": "msg_A",
        "content": [{"type": "text", "text": "PLACEHOLDER"}],
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 1000,
            "output_tokens": 50,
        },
    },
    "requestId": "req_A",
    "type": "assistant",
    "timestamp": "2026-09-01T10:00:00.000Z",
}


def _response(message_id: str, **usage: int) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(json.dumps(RESPONSE))
    record["message"]["id"] = message_id
    record["requestId"] = "req_" + message_id
    record["message"]["usage"].update(usage)
    return record


def _compact(record: dict[str, object]) -> bytes:
    return orjson.dumps(record)  # `"usage":{`


def _spaced(record: dict[str, object]) -> bytes:
    return json.dumps(record, indent=None).encode()  # `"usage": {`, as Python's json writes it


def _load_lines(tmp_path: Path, lines: list[bytes]) -> tuple[pd.DataFrame, Path]:
    path = tmp_path / "projects" / "proj" / "s.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return load(tmp_path, no_cache=True), path


def test_a_usage_line_written_with_spaces_is_counted(tmp_path: Path) -> None:
    line = _spaced(_response("msg_A"))
    assert b'"usage": {' in line
    df, _ = _load_lines(tmp_path, [line])
    assert df["fresh"].tolist() == [10]
    assert df["write_5m"].tolist() == [100] and df["read"].tolist() == [1000]
    assert df["output"].tolist() == [50]


def test_both_spellings_give_the_same_rows(tmp_path: Path) -> None:
    compact, _ = _load_lines(tmp_path / "a", [_compact(_response("msg_A"))])
    spaced, _ = _load_lines(tmp_path / "b", [_spaced(_response("msg_A"))])
    columns = ["fresh", "write_5m", "write_1h", "read", "output", "cost"]
    assert compact[columns].equals(spaced[columns])


def test_a_negative_count_written_with_spaces_is_reported(tmp_path: Path) -> None:
    df, path = _load_lines(
        tmp_path, [_spaced(_response("msg_A")), _spaced(_response("msg_B", input_tokens=-5))]
    )
    assert df["fresh"].tolist() == [10]
    skipped = df.attrs["load_report"].malformed
    assert [(s.path, s.line, s.reason) for s in skipped] == [
        (str(path), 2, "negative input_tokens (-5)")
    ]


def test_a_negative_count_written_compactly_is_reported(tmp_path: Path) -> None:
    df, _ = _load_lines(tmp_path, [_compact(_response("msg_B", input_tokens=-5))])
    assert len(df) == 0
    skipped = df.attrs["load_report"].malformed
    assert [(s.line, s.reason) for s in skipped] == [(1, "negative input_tokens (-5)")]


def test_a_non_integer_count_is_reported(tmp_path: Path) -> None:
    df, _ = _load_lines(tmp_path, [_spaced(_response("msg_B", output_tokens=12.5))])  # type: ignore[arg-type]
    skipped = df.attrs["load_report"].malformed
    assert [(s.line, s.reason) for s in skipped] == [(1, "non-integer output_tokens (12.5)")]


def test_a_line_cut_off_mid_write_is_reported_whatever_it_held(tmp_path: Path) -> None:
    prompt = b'{"type":"user","message":{"role":"user","content":"PLACEH'
    df, _ = _load_lines(tmp_path, [prompt, _compact(_response("msg_A"))])
    assert df["fresh"].tolist() == [10]
    skipped = df.attrs["load_report"].malformed
    assert [(s.line, s.reason) for s in skipped] == [(1, "broken JSON: the line is cut off")]


def test_two_records_on_one_line_are_broken_json_not_two_responses(tmp_path: Path) -> None:
    line = _compact(_response("msg_A")) + _compact(_response("msg_B"))
    df, _ = _load_lines(tmp_path, [line])
    assert len(df) == 0
    skipped = df.attrs["load_report"].malformed
    assert [(s.line, s.reason) for s in skipped] == [(1, "broken JSON")]


def test_a_line_that_is_json_but_not_an_object_is_reported(tmp_path: Path) -> None:
    df, _ = _load_lines(tmp_path, [b'["usage", {"input_tokens": 1}]'])
    skipped = df.attrs["load_report"].malformed
    assert [(s.line, s.reason) for s in skipped] == [(1, "not a JSON object")]


def test_empty_lines_are_no_records_and_keep_the_numbering(tmp_path: Path) -> None:
    df, _ = _load_lines(tmp_path, [b"", _compact(_response("msg_A")), b"  ", b"{broken"])
    assert df["fresh"].tolist() == [10]
    report = df.attrs["load_report"]
    assert report.lines == 4
    assert [s.line for s in report.malformed] == [4]


def test_a_timestamp_with_an_offset_is_read_in_utc(tmp_path: Path) -> None:
    record = _response("msg_A")
    record["timestamp"] = "2026-09-01T12:00:00.250+02:00"
    df, _ = _load_lines(tmp_path, [_spaced(record)])
    assert str(df["timestamp"].iloc[0]) == "2026-09-01 10:00:00.250000+00:00"


def test_a_timestamp_that_is_not_a_date_is_reported(tmp_path: Path) -> None:
    record = _response("msg_B")
    record["timestamp"] = "yesterday"
    df, _ = _load_lines(tmp_path, [_compact(_response("msg_A")), _compact(record)])
    assert df["fresh"].tolist() == [10]
    skipped = df.attrs["load_report"].malformed
    assert [(s.line, s.reason) for s in skipped] == [(2, "bad timestamp 'yesterday'")]


def test_usage_lines_count_every_response_line_once_whichever_way_it_was_read(
    tmp_path: Path,
) -> None:
    without_id = _response("msg_C")
    del without_id["message"]["id"]  # read as plain JSON: its own response
    synthetic = _response("msg_D")
    synthetic["message"]["model"] = "<synthetic>"
    lines = [
        _compact(_response("msg_A")),
        _spaced(_response("msg_B", input_tokens=-1)),  # malformed: not a usage line
        _compact(without_id),
        _compact(synthetic),
    ]
    df, _ = _load_lines(tmp_path, lines)
    report = df.attrs["load_report"]
    assert (report.usage_lines, report.responses, report.synthetic_skipped) == (3, 2, 1)
    assert len(report.malformed) == 1


def test_a_count_too_large_for_any_response_is_reported(tmp_path: Path) -> None:
    df, _ = _load_lines(tmp_path, [_compact(_response("msg_B", input_tokens=2**64 - 1))])
    assert len(df) == 0
    skipped = df.attrs["load_report"].malformed
    assert [(s.line, s.reason) for s in skipped] == [
        (1, "implausible input_tokens (18446744073709551615)")
    ]
