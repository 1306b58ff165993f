"""A subagent's copy of a parent response is counted once, whatever its time and the reading order.

The rule: one line per (`message.id`, `requestId`), then by `message.id`: when any response of a
message id is on the main chain, its sidechain responses are copies and are dropped; when all are
sidechain, one stands, chosen without regard to reading order.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
import pandas as pd
import pytest

from cachescope.logs import load


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


PARENT_TIME = "2026-09-01T10:00:05.000Z"
REPLAY_TIMES = {
    "earlier": "2026-09-01T10:00:01.000Z",
    "equal": PARENT_TIME,
    "later": "2026-09-01T10:00:09.000Z",
}
LAYOUTS = {
    "nested": "s1/subagents/agent-a1.jsonl",  # Claude Code >= 2.1.2
    "beside": "agent-a1.jsonl",  # older versions
}


def _response(
    message_id: str, request_id: str, stamp: str, *, sidechain: bool, agent: str = ""
) -> bytes:
    record: dict[str, object] = {
        "isSidechain": sidechain,
        "sessionId": "s1",
        "message": {
            "model": "claude-sonnet-4-6",
            "id": message_id,
            "content": [{"type": "text", "text": "PLACEHOLDER"}],
            "usage": {
                "input_tokens": 10,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 1000,
                "output_tokens": 50,
            },
        },
        "requestId": request_id,
        "type": "assistant",
        "timestamp": stamp,
    }
    if agent:
        record["agentId"] = agent
    return orjson.dumps(record)


def _write(folder: Path, rel: str, lines: list[bytes]) -> Path:
    path = folder / "projects" / "proj" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _load_in_order(paths: tuple[Path, ...]) -> pd.DataFrame:
    return load(list(paths), no_cache=True)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("when", REPLAY_TIMES)
def test_a_replay_of_a_parent_response_counts_once_in_every_reading_order(
    tmp_path: Path, layout: str, when: str
) -> None:
    parent = _write(
        tmp_path,
        "s1.jsonl",
        [
            _response("msg_P", "req_P", PARENT_TIME, sidechain=False),
            _response("msg_Q", "req_Q", PARENT_TIME, sidechain=False),
        ],
    )
    agent = _write(
        tmp_path,
        LAYOUTS[layout],
        [
            _response("msg_S", "req_S", PARENT_TIME, sidechain=True, agent="a1"),
            _response("msg_P", "req_REPLAY", REPLAY_TIMES[when], sidechain=True, agent="a1"),
        ],
    )
    for order in itertools.permutations([parent, agent]):
        df = _load_in_order(order)
        assert sorted(df["fresh"].groupby(df["sidechain"]).sum().items()) == [
            (False, 20),  # msg_P and msg_Q, each once
            (True, 10),  # msg_S, the subagent's own response
        ], order
        assert df.attrs["load_report"].replays_dropped == 1
        assert (df["session"].astype(str) == "s1").all()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("when", REPLAY_TIMES)
def test_the_parent_line_is_the_one_kept(tmp_path: Path, layout: str, when: str) -> None:
    parent = _write(
        tmp_path, "s1.jsonl", [_response("msg_P", "req_P", PARENT_TIME, sidechain=False)]
    )
    agent = _write(
        tmp_path,
        LAYOUTS[layout],
        [_response("msg_P", "req_REPLAY", REPLAY_TIMES[when], sidechain=True, agent="a1")],
    )
    for order in itertools.permutations([parent, agent]):
        df = _load_in_order(order)
        assert df["sidechain"].tolist() == [False]
        assert df["agent"].astype(str).tolist() == [""]
        assert str(df["timestamp"].iloc[0]) == "2026-09-01 10:00:05+00:00"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_copy_under_the_same_request_id_counts_once_as_the_parent(
    tmp_path: Path, layout: str
) -> None:
    parent = _write(
        tmp_path, "s1.jsonl", [_response("msg_P", "req_P", PARENT_TIME, sidechain=False)]
    )
    agent = _write(
        tmp_path,
        LAYOUTS[layout],
        [_response("msg_P", "req_P", PARENT_TIME, sidechain=True, agent="a1")],
    )
    for order in itertools.permutations([parent, agent]):
        df = _load_in_order(order)
        assert df["sidechain"].tolist() == [False]
        assert df.attrs["load_report"].duplicates_dropped == 1


def test_when_every_copy_is_sidechain_one_stands_whatever_the_order(tmp_path: Path) -> None:
    """Two subagents (one per layout) hold the same response under different request ids."""
    nested = _write(
        tmp_path,
        "s1/subagents/agent-a1.jsonl",
        [_response("msg_X", "req_1", "2026-09-01T10:00:03.000Z", sidechain=True, agent="a1")],
    )
    beside = _write(
        tmp_path,
        "agent-a2.jsonl",
        [_response("msg_X", "req_2", "2026-09-01T10:00:02.000Z", sidechain=True, agent="a2")],
    )
    kept = set()
    for order in itertools.permutations([nested, beside]):
        df = _load_in_order(order)
        assert len(df) == 1 and df.attrs["load_report"].replays_dropped == 1
        kept.add((df["agent"].astype(str).iloc[0], str(df["timestamp"].iloc[0])))
    assert kept == {("agent-a2", "2026-09-01 10:00:02+00:00")}  # the earliest, in both orders


def test_equal_sidechain_copies_are_chosen_by_key_not_by_order(tmp_path: Path) -> None:
    one = _write(
        tmp_path,
        "s1/subagents/agent-a1.jsonl",
        [_response("msg_X", "req_1", PARENT_TIME, sidechain=True, agent="a1")],
    )
    two = _write(
        tmp_path,
        "s1/subagents/agent-a2.jsonl",
        [_response("msg_X", "req_2", PARENT_TIME, sidechain=True, agent="a2")],
    )
    agents = {
        _load_in_order(order)["agent"].astype(str).iloc[0] for order in [(one, two), (two, one)]
    }
    assert len(agents) == 1


def test_distinct_sidechain_responses_all_count(tmp_path: Path) -> None:
    agent = _write(
        tmp_path,
        "s1/subagents/agent-a1.jsonl",
        [
            _response(f"msg_{i}", f"req_{i}", PARENT_TIME, sidechain=True, agent="a1")
            for i in range(3)
        ],
    )
    df = load(agent, no_cache=True)
    assert len(df) == 3 and df.attrs["load_report"].replays_dropped == 0
