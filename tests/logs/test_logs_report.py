"""`cachescope.logs.report`: groupings that agree, ratios, phases, rebuilds, rendering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from cachescope.logs import CAVEAT, load, report, synthetic
from cachescope.logs._phases import change_points, find_phases


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def corpus_report(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("corpus")
    truth = synthetic.write_corpus(folder, sessions=40, seed=5, days=30)
    return report(load(folder, no_cache=True)), truth


def _line(
    message_id: str,
    stamp: str,
    *,
    read: int,
    write_5m: int = 0,
    write_1h: int = 0,
    fresh: int = 5,
    model: str = "claude-sonnet-4-6",
    session: str = "s1",
) -> bytes:
    return orjson.dumps(
        {
            "isSidechain": False,
            "sessionId": session,
            "message": {
                "model": model,
                "id": message_id,
                "content": [],
                "usage": {
                    "input_tokens": fresh,
                    "output_tokens": 10,
                    "cache_read_input_tokens": read,
                    "cache_creation_input_tokens": write_5m + write_1h,
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": write_5m,
                        "ephemeral_1h_input_tokens": write_1h,
                    },
                },
            },
            "requestId": "req_" + message_id,
            "type": "assistant",
            "timestamp": stamp,
        }
    )


def _session(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "projects" / "proj" / "s1.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return tmp_path


REFERENCE_KEYS = [
    "inputTokens",
    "outputTokens",
    "cacheCreationTokens",
    "cacheReadTokens",
    "totalTokens",
]


def test_every_grouping_sums_to_the_totals(corpus_report) -> None:  # type: ignore[no-untyped-def]
    result, _ = corpus_report
    data = result.to_dict()
    expected = [data["totals"][k] for k in REFERENCE_KEYS]
    for name in ("daily", "weekly", "monthly", "sessions", "models", "projects"):
        sums = [sum(row[k] for row in data[name]) for k in REFERENCE_KEYS]
        assert sums == expected, name
        assert sum(row["totalCost"] for row in data[name]) == pytest.approx(
            data["totals"]["totalCost"], abs=1e-6 * (len(data[name]) + 1)
        )  # rounded to 6 places per row


def test_totals_use_the_reference_tools_names_and_equal_the_truth(corpus_report) -> None:  # type: ignore[no-untyped-def]
    result, truth = corpus_report
    totals = result.totals
    assert [totals[k] for k in REFERENCE_KEYS] == [
        truth.fresh,
        truth.output,
        truth.writes,
        truth.read,
        truth.fresh + truth.writes + truth.read + truth.output,
    ]


def test_ratios_follow_their_definitions(corpus_report) -> None:  # type: ignore[no-untyped-def]
    t = corpus_report[0].totals
    prompt = t["inputTokens"] + t["cacheCreationTokens"] + t["cacheReadTokens"]
    assert t["readsPerFreshToken"] == pytest.approx(
        t["cacheReadTokens"] / t["inputTokens"], rel=1e-6
    )
    assert t["hitShare"] == pytest.approx(t["cacheReadTokens"] / prompt, rel=1e-5)
    assert t["readWriteRatio"] == pytest.approx(
        t["cacheReadTokens"] / t["cacheCreationTokens"], rel=1e-6
    )
    assert t["cachingFactor"] == pytest.approx(t["costWithoutCache"] / t["totalCost"], rel=1e-5)


def test_three_fresh_token_levels_give_three_phases(corpus_report) -> None:  # type: ignore[no-untyped-def]
    phases = corpus_report[0].phases()
    assert len(phases) == 3
    assert phases[0].level < phases[1].level < phases[2].level


def test_a_step_series_splits_at_the_step() -> None:
    values = np.array([1.0, 1.1, 0.9, 1.0, 1.05, 3.0, 3.1, 2.9, 3.0, 3.05])
    assert change_points(values) == [5]


def test_a_flat_noisy_series_has_one_phase() -> None:
    rng = np.random.default_rng(0)
    assert change_points(rng.normal(2.0, 0.1, 40)) == []


def test_a_phase_level_is_total_reads_over_total_fresh() -> None:
    phases = find_phases(["2026-09-01", "2026-09-02"], np.array([1000, 3000]), np.array([10, 10]))
    assert [(p.start, p.end, p.level) for p in phases] == [("2026-09-01", "2026-09-02", 200.0)]


def test_rebuild_after_an_idle_gap_beyond_five_minutes(tmp_path: Path) -> None:
    lines = [
        _line("m1", "2026-09-01T10:00:00.000Z", read=0, write_5m=20000),
        _line("m2", "2026-09-01T10:20:00.000Z", read=0, write_5m=20000),
    ]
    rebuilds = report(load(_session(tmp_path, lines))).rebuilds()
    assert rebuilds["cause"].tolist() == ["idle gap"]
    assert rebuilds["tokens_lost"].tolist() == [20000]


def test_a_one_hour_write_is_no_rebuild_after_twenty_minutes_if_read(tmp_path: Path) -> None:
    lines = [
        _line("m1", "2026-09-01T10:00:00.000Z", read=0, write_1h=20000),
        _line("m2", "2026-09-01T10:20:00.000Z", read=20000, write_1h=100),
    ]
    assert len(report(load(_session(tmp_path, lines))).rebuilds()) == 0


def test_rebuild_after_a_model_switch(tmp_path: Path) -> None:
    lines = [
        _line("m1", "2026-09-01T10:00:00.000Z", read=0, write_5m=20000),
        _line("m2", "2026-09-01T10:01:00.000Z", read=0, write_5m=20000, model="claude-opus-4-6"),
    ]
    assert report(load(_session(tmp_path, lines))).rebuilds()["cause"].tolist() == ["model switch"]


def test_rebuild_after_a_compaction(tmp_path: Path) -> None:
    compact = orjson.dumps(
        {
            "type": "system",
            "subtype": "compact_boundary",
            "sessionId": "s1",
            "timestamp": "2026-09-01T10:00:30.000Z",
        }
    )
    lines = [
        _line("m1", "2026-09-01T10:00:00.000Z", read=0, write_5m=20000),
        compact,
        _line("m2", "2026-09-01T10:01:00.000Z", read=3000, write_5m=2000),
    ]
    assert report(load(_session(tmp_path, lines))).rebuilds()["cause"].tolist() == ["compaction"]


def test_a_write_the_next_turn_reads_is_not_unread(tmp_path: Path) -> None:
    lines = [
        _line("m1", "2026-09-01T10:00:00.000Z", read=0, write_5m=1000),
        _line("m2", "2026-09-01T10:01:00.000Z", read=1000, write_5m=300),
    ]
    # m1's 1,000 written tokens are read by m2; m2's 300 have no later reader
    assert report(load(_session(tmp_path, lines))).totals["unreadWriteTokens"] == 300


def test_a_write_expired_before_the_next_turn_is_unread(tmp_path: Path) -> None:
    lines = [
        _line("m1", "2026-09-01T10:00:00.000Z", read=0, write_5m=1000),
        _line("m2", "2026-09-01T10:06:00.000Z", read=0, write_5m=1000),
    ]
    assert report(load(_session(tmp_path, lines))).totals["unreadWriteTokens"] == 2000


def test_subagent_share_of_cost_is_per_parent_session(corpus_report) -> None:  # type: ignore[no-untyped-def]
    result = corpus_report[0]
    sessions = result.by("session")
    assert sessions["subagent_cost"].sum() == pytest.approx(
        result.totals["subagentCostShare"] * result.totals["totalCost"], rel=1e-4
    )


def test_session_hit_share_p50_is_at_most_p90(corpus_report) -> None:  # type: ignore[no-untyped-def]
    shares = corpus_report[0].session_hit_share()
    assert shares["p50"] is not None and shares["p90"] is not None
    assert 0 < shares["p50"] <= shares["p90"] < 1


def test_the_caveat_is_in_text_html_and_json(corpus_report) -> None:  # type: ignore[no-untyped-def]
    result = corpus_report[0]
    bundle = result._repr_mimebundle_()
    assert CAVEAT in bundle["text/plain"]
    assert "undercount" in bundle["text/html"]
    assert result.to_dict()["caveat"] == CAVEAT


def test_html_escapes_names_from_the_logs(tmp_path: Path) -> None:
    path = tmp_path / "projects" / "<b>proj</b>" / "s1.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(
        _line("m1", "2026-09-01T10:00:00.000Z", read=0, write_5m=1000) + b"\n{broken\n"
    )
    html = report(load(tmp_path))._repr_mimebundle_(include={"text/html"})["text/html"]
    assert "<b>proj</b>" not in html and "&lt;b&gt;proj&lt;/b&gt;" in html


def test_the_three_charts_are_altair_charts(corpus_report) -> None:  # type: ignore[no-untyped-def]
    alt = pytest.importorskip("altair")
    result = corpus_report[0]
    spec = result.charts().to_dict()
    assert isinstance(result.chart_reads_per_fresh(), alt.LayerChart)
    assert len(spec["vconcat"]) == 3


def test_json_is_serialisable_without_nan(corpus_report) -> None:  # type: ignore[no-untyped-def]
    text = orjson.dumps(corpus_report[0].to_dict())
    assert b"NaN" not in text


def test_a_sidechain_line_in_the_main_file_counts_as_subagent_cost(tmp_path: Path) -> None:
    main = _line("msg_main", "2026-03-01T10:00:00.000Z", read=1_000, write_5m=100)
    side = orjson.loads(_line("msg_side", "2026-03-01T10:00:05.000Z", read=1_000, write_5m=100))
    side["isSidechain"] = True
    side["agentId"] = "a0000000000000001"
    frame = load(_session(tmp_path, [main, orjson.dumps(side)]), no_cache=True, progress=False)
    totals = report(frame).totals
    # Two identical responses, one of them the subagent's: half the cost.
    assert totals["subagentCostShare"] == pytest.approx(0.5)


def test_the_text_table_formats_tokens_money_and_shares(tmp_path: Path) -> None:
    frame = load(
        _session(tmp_path, [_line("msg_1", "2026-03-01T10:00:00.000Z", read=123_456, fresh=4)]),
        no_cache=True,
        progress=False,
    )
    text = report(frame).to_text()
    assert "123,456" in text
    assert "30,864" in text  # reads per fresh token: 123,456 / 4
    assert "$0.0" in text
    assert "e+" not in text
