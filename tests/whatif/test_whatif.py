"""What-if replay: recorded sessions through a fresh simulator under other layouts."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from cachescope._demo_run import StoryRun, run_conversation
from cachescope.whatif import Position, RecordedCall, Recording

T0 = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.timezone.utc).timestamp()


@pytest.fixture(scope="module")
def buggy() -> StoryRun:
    return run_conversation(timestamp_in_stable=True, turns=12)


@pytest.fixture(scope="module")
def fixed() -> StoryRun:
    return run_conversation(timestamp_in_stable=False, turns=12)


def test_replay_as_recorded_reproduces_the_ledger_usage(fixed: StoryRun) -> None:
    recording = Recording.from_ledger(fixed.client.ledger)
    replay = recording.replay()
    original = recording.original()
    assert [row.cache_read_tokens for row in replay.calls] == [
        row.cache_read_tokens for row in original.calls
    ]
    assert [row.prompt_tokens for row in replay.calls] == [
        row.prompt_tokens for row in original.calls
    ]


def test_the_timestamp_layer_is_found_as_the_changing_layer(buggy: StoryRun) -> None:
    assert Recording.from_ledger(buggy.client.ledger).changing_layers() == ["stable"]


def test_stabilizing_the_buster_turns_misses_into_reads(buggy: StoryRun) -> None:
    recording = Recording.from_ledger(buggy.client.ledger)
    as_recorded = recording.replay()
    stabilized = recording.replay(stabilize="auto")
    assert as_recorded.hit_share == 0.0
    assert stabilized.hit_share is not None
    assert stabilized.hit_share > 0.85
    assert stabilized.cost is not None
    assert as_recorded.cost is not None
    assert stabilized.cost < as_recorded.cost / 4


def test_compare_lists_the_original_and_each_scenario(buggy: StoryRun) -> None:
    whatif = Recording.from_ledger(buggy.client.ledger).compare()
    names = [row["scenario"] for row in whatif.rows()]
    assert names[:4] == ["original", "replay as recorded", "ttl=1h", "ttl=5m"]
    assert "stabilize stable" in names
    bundle = whatif._repr_mimebundle_()
    assert "stabilize stable" in bundle["text/plain"]
    assert "<table>" in bundle["text/html"]
    assert isinstance(whatif.to_pandas(), pd.DataFrame)


def _chain(gaps_minutes: list[float], tokens: int = 5_000) -> Recording:
    """A session whose stable prefix never changes, with the given idle gaps between calls."""
    calls = []
    time = T0
    for number in range(len(gaps_minutes) + 1):
        positions = (
            Position("stable", tokens, "system", "stable", "5m"),
            Position(f"user-{number}", 40, "messages", "user", "5m"),
        )
        calls.append(
            RecordedCall(time=time, model="claude-sonnet-5", positions=positions, output_tokens=100)
        )
        if number < len(gaps_minutes):
            time += gaps_minutes[number] * 60
    return Recording(calls, name="gaps")


def test_1h_ttl_keeps_the_prefix_across_20_minute_gaps() -> None:
    recording = _chain([20, 20, 20, 20])
    five = recording.replay(ttl="5m")
    hour = recording.replay(ttl="1h")
    assert [row.cache_read_tokens for row in five.calls] == [0, 0, 0, 0, 0]
    assert [row.cache_read_tokens for row in hour.calls] == [0, 5_000, 5_000, 5_000, 5_000]


def test_break_even_prefers_1h_for_medium_gaps_and_5m_for_short_ones() -> None:
    medium = _chain([20, 20, 20, 20]).break_even()
    assert (medium.short_gaps, medium.medium_gaps, medium.long_gaps) == (0, 4, 0)
    assert medium.recommended == "1h"
    short = _chain([1, 1, 1, 1]).break_even()
    assert short.recommended == "5m"
    # Sonnet 5: (4.00 - 2.50) / (2.50 - 0.20) = 0.652 medium gaps per write.
    assert medium.medium_gaps_needed == pytest.approx(1.5 / 2.3)


def test_keepalive_pings_keep_a_5m_cache_through_a_12_minute_gap() -> None:
    recording = _chain([12])
    plain = recording.replay(ttl="5m")
    pinged = recording.replay(ttl="5m", keepalive_minutes=15)
    assert plain.calls[1].cache_read_tokens == 0
    assert pinged.calls[1].cache_read_tokens == 5_000
    assert pinged.extra_requests == 2  # pings at 4:45 and 9:30 into the gap


def test_prewarm_cuts_time_to_first_token_but_not_cost() -> None:
    recording = _chain([30])
    cold = recording.replay(ttl="5m")
    warm = recording.replay(ttl="5m", prewarm=True)
    assert warm.extra_requests == 2
    assert warm.calls[1].ttft_ms is not None
    assert cold.calls[1].ttft_ms is not None
    assert warm.calls[1].ttft_ms < cold.calls[1].ttft_ms
    assert warm.cost is not None
    assert cold.cost is not None
    assert warm.cost >= cold.cost


def test_model_change_reprices_the_session() -> None:
    recording = _chain([1, 1])
    sonnet = recording.replay()
    haiku = recording.replay(model="claude-haiku-5-5")
    assert haiku.cost is not None
    assert sonnet.cost is not None
    assert haiku.cost < sonnet.cost / 10


def test_a_ledger_with_two_sessions_needs_a_session_name(buggy: StoryRun, fixed: StoryRun) -> None:
    records = [*buggy.records, *fixed.records]
    for record in fixed.records:
        record.session = "other"
    with pytest.raises(ValueError, match="pass session="):
        Recording.from_ledger(records)
    assert len(Recording.from_ledger(records, session="other").calls) == 12
    for record in fixed.records:
        record.session = "aura"


def test_claude_code_sessions_replay_from_their_usage_numbers() -> None:
    rows = []
    read = 0
    for turn in range(6):
        write = 2_000 if turn == 0 else 300
        rows.append(
            {
                "session": "s1", "agent": None, "model": "claude-sonnet-4-6",
                "timestamp": pd.Timestamp(T0 + turn * 60, unit="s", tz="UTC"),
                "fresh": 3, "write_5m": write, "write_1h": 0, "read": read, "output": 120, "cost": float("nan"),
            }
        )  # fmt: skip
        read += write  # the 3 fresh tokens sit after the breakpoint: never read
    frame = pd.DataFrame(rows)
    frame["agent"] = ""  # logs.load marks the main chain with an empty agent
    recording = Recording.from_logs(frame, "s1")
    replay = recording.replay()
    assert [row.cache_read_tokens for row in replay.calls] == [r["read"] for r in rows]
    assert [row.prompt_tokens for row in replay.calls] == [
        r["fresh"] + r["write_5m"] + r["read"] for r in rows
    ]


def test_replay_of_a_session_with_tools_counts_the_tool_use_prompt_once() -> None:
    import cachescope as cs

    tools = [
        {
            "name": "search_notes",
            "description": "Search the user's notes. " * 40,
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        }
    ]
    prompt = cs.Prompt(
        model="claude-sonnet-5",
        tools=tools,
        layers=[cs.Layer("stable", "You are Aura, a careful assistant. " * 150, ttl="1h")],
    )
    clock = cs.VirtualClock(start=T0)
    client = cs.CachingClient(backend="sim", clock=clock)
    history: list[dict[str, object]] = []
    for turn in range(3):
        params = prompt.render(messages=history, user=f"Question {turn}?", max_tokens=16)
        client.messages.create(**params)
        history += [{"role": "user", "content": f"Question {turn}?"}]
        history += [{"role": "assistant", "content": f"Answer {turn}."}]
        clock.advance(seconds=60)
    recording = Recording.from_ledger(client.ledger)
    replay, original = recording.replay(), recording.original()
    # Sonnet 5 adds 354 tokens for tools (spec §4.5): recorded once, replayed once
    assert [row.prompt_tokens for row in replay.calls] == [
        row.prompt_tokens for row in original.calls
    ]
