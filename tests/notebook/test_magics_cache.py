"""`%cache`: stats, sessions, diff, reset, export, clock, dashboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import STABLE, cell
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from cachescope.client import CachingClient


def cache(ip: Any, line: str) -> Any:
    with capture_output() as captured:
        ip.run_line_magic("cache", line)
    return captured


def two_calls_with_a_break(run: Any) -> None:
    run("--session aura --quiet", cell())
    run("--session aura --quiet", cell(stable=STABLE + "Today is Monday."))


def test_stats_shows_the_ledger_summary(ip: Any, run: Any, magics: Any) -> None:
    two_calls_with_a_break(run)
    text = cache(ip, "stats").outputs[0].data["text/plain"]
    assert "calls" in text and "2 (0 failed)" in text


def test_stats_of_a_session_counts_only_its_calls(ip: Any, run: Any, magics: Any) -> None:
    run("--session aura --quiet", cell())
    run("--session other --quiet", cell())
    text = cache(ip, "stats aura").outputs[0].data["text/plain"]
    assert "1 (0 failed)" in text


def test_stats_of_an_unknown_session_is_a_usage_error(ip: Any, magics: Any) -> None:
    with pytest.raises(UsageError, match="No session 'nope'"):
        ip.run_line_magic("cache", "stats nope")


def test_sessions_lists_one_row_per_session(ip: Any, run: Any, magics: Any) -> None:
    run("--session aura --quiet", cell())
    run("--session other --quiet", cell())
    html = cache(ip, "sessions").outputs[0].data["text/html"]
    assert html.count("<tr>") == 3
    assert "aura" in html and "other" in html


def test_diff_defaults_to_the_last_two_calls(ip: Any, run: Any, magics: Any) -> None:
    two_calls_with_a_break(run)
    html = cache(ip, "diff aura").outputs[0].data["text/html"]
    assert "system_changed" in html and "<mark" in html


def test_diff_of_calls_n_and_m(ip: Any, run: Any, magics: Any) -> None:
    two_calls_with_a_break(run)
    run("--session aura --quiet", cell(stable=STABLE + "Today is Monday.", user="again"))
    text = cache(ip, "diff aura 2 3").outputs[0].data["text/plain"]
    assert "Prefix intact" in text


def test_diff_out_of_range_is_a_usage_error(ip: Any, run: Any, magics: Any) -> None:
    two_calls_with_a_break(run)
    with pytest.raises(UsageError, match="has 2 call"):
        ip.run_line_magic("cache", "diff aura 1 7")


def test_reset_empties_the_session_history_and_keeps_the_ledger(
    ip: Any, run: Any, magics: Any
) -> None:
    two_calls_with_a_break(run)
    cache(ip, "reset aura")
    assert magics.client().session("aura").history == ()
    assert len(magics.ledger) == 2


def test_export_csv_writes_one_row_per_call(ip: Any, run: Any, magics: Any, tmp_path: Path) -> None:
    two_calls_with_a_break(run)
    path = tmp_path / "calls.csv"
    cache(ip, f"export {path}")
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert "cache_read_input_tokens" in lines[0]


def test_export_jsonl_writes_ledger_lines(ip: Any, run: Any, magics: Any, tmp_path: Path) -> None:
    two_calls_with_a_break(run)
    path = tmp_path / "calls.jsonl"
    cache(ip, f"export {path}")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["type"] for line in lines] == ["cachescope.call", "cachescope.call"]


def test_export_to_an_unknown_format_is_a_usage_error(ip: Any, magics: Any, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"end the name in \.csv or \.jsonl"):
        ip.run_line_magic("cache", f"export {tmp_path / 'calls.xlsx'}")


def test_clock_advance_past_the_ttl_makes_the_next_call_write_again(
    ip: Any, run: Any, magics: Any
) -> None:
    run("--session aura --quiet", cell())
    cache(ip, "clock advance 6m")
    run("--session aura --quiet", cell(user="later"))
    record = magics.ledger.records[-1]
    assert record.cache_read_input_tokens == 0
    assert record.ephemeral_5m_input_tokens > 4000


def test_clock_advance_within_the_ttl_keeps_the_cache(ip: Any, run: Any, magics: Any) -> None:
    run("--session aura --quiet", cell())
    cache(ip, "clock advance 4m 30s")
    run("--session aura --quiet", cell(user="later"))
    assert magics.ledger.records[-1].cache_read_input_tokens > 4000


def test_clock_on_the_real_api_is_a_usage_error(ip: Any, magics: Any) -> None:
    magics.use(CachingClient(backend="anthropic", api_key="not-a-real-key"))
    with pytest.raises(UsageError, match="only with the simulator"):
        ip.run_line_magic("cache", "clock advance 6m")


def test_unreadable_duration_is_a_usage_error(ip: Any, magics: Any) -> None:
    with pytest.raises(UsageError, match="cannot read the duration"):
        ip.run_line_magic("cache", "clock advance soon")


def test_unknown_subcommand_is_a_usage_error(ip: Any, magics: Any) -> None:
    with pytest.raises(UsageError, match="unknown %cache subcommand 'stat'"):
        ip.run_line_magic("cache", "stat")


def test_dashboard_redisplays_the_same_widget(ip: Any, run: Any, magics: Any) -> None:
    run("--session aura", cell())
    model_id = magics.session_state("aura").dashboard.widget.model_id
    data = cache(ip, "dashboard aura").outputs[0].data
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == model_id
