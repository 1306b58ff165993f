"""Caching rules of the simulator (spec §1, §3), each driven through the real `anthropic` SDK."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from conftest import MODEL, block, long_text

from cachescope.blocks import flatten
from cachescope.sim import Simulator, VirtualClock


def _total(client: anthropic.Anthropic, **params: Any) -> int:
    params.pop("max_tokens", None)
    return client.messages.count_tokens(**params).input_tokens


def _identity_holds(client: anthropic.Anthropic, usage: Any, **params: Any) -> bool:
    spent = usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
    return bool(spent == _total(client, **params))


def _system_request(text: str, question: str = "Hello?", **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 64,
        "system": [block(text, cached=True)],
        "messages": [{"role": "user", "content": question}],
        **extra,
    }


def test_first_request_writes_the_prefix_up_to_the_breakpoint(client: anthropic.Anthropic) -> None:
    params = _system_request(long_text("aura"))
    usage = client.messages.create(**params).usage
    total = _total(client, **params)
    assert usage.cache_read_input_tokens == 0
    assert usage.cache_creation_input_tokens == total - usage.input_tokens
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_5m_input_tokens == usage.cache_creation_input_tokens
    assert usage.input_tokens > 0  # the question after the breakpoint


def test_second_identical_prefix_reads_what_the_first_wrote(client: anthropic.Anthropic) -> None:
    first = client.messages.create(**_system_request(long_text("aura"), "One?")).usage
    second = client.messages.create(**_system_request(long_text("aura"), "Two?")).usage
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0


def test_usage_identity_matches_count_tokens_on_miss_write_and_hit(
    client: anthropic.Anthropic,
) -> None:
    params = _system_request(long_text("aura"))
    for _ in range(2):
        usage = client.messages.create(**params).usage
        assert _identity_holds(client, usage, **params)
    small = _system_request("short system prompt")
    assert _identity_holds(client, client.messages.create(**small).usage, **small)


def test_simulator_counts_agree_with_blocks_flatten(sim: Simulator) -> None:
    params = _system_request(long_text("aura"))
    counted = sim.count_tokens(params)["input_tokens"]
    assert counted == flatten(params).total_tokens


def test_prefix_below_the_model_minimum_is_processed_without_caching(
    client: anthropic.Anthropic,
) -> None:
    params = _system_request("A short system prompt of a few dozen tokens, far below 1,024.")
    for _ in range(2):
        usage = client.messages.create(**params).usage
        assert usage.cache_creation_input_tokens == 0
        assert usage.cache_read_input_tokens == 0
        assert usage.input_tokens == _total(client, **params)


def test_minimum_can_be_overridden_per_model(clock: VirtualClock) -> None:
    sim = Simulator(clock=clock, min_cacheable_tokens={MODEL: 1})
    client = anthropic.Anthropic(api_key="sim", http_client=sim.http_client())
    usage = client.messages.create(**_system_request("A short system prompt.")).usage
    assert usage.cache_creation_input_tokens > 0


# ---- the docs' worked example of the 20-block lookback (PC "How automatic prefix checking works")


def _blocks_request(count: int, breakpoints: tuple[int, ...]) -> dict[str, Any]:
    """One user message of `count` text blocks (1-based), breakpoints on the given blocks."""
    content = [
        block(f"Block {n}: " + "steady words " * 60, cached=n in breakpoints)
        for n in range(1, count + 1)
    ]
    return {"model": MODEL, "max_tokens": 32, "messages": [{"role": "user", "content": content}]}


def _tokens_through(sim: Simulator, count: int) -> int:
    return int(sim.count_tokens(_blocks_request(count, ()))["input_tokens"])


def test_worked_example_turn_two_finds_the_entry_at_block_10(
    client: anthropic.Anthropic, sim: Simulator
) -> None:
    client.messages.create(**_blocks_request(10, (10,)))
    usage = client.messages.create(**_blocks_request(15, (15,))).usage
    assert usage.cache_read_input_tokens == _tokens_through(sim, 10)
    assert usage.cache_creation_input_tokens == _tokens_through(sim, 15) - _tokens_through(sim, 10)


def test_worked_example_turn_three_misses_block_15_one_position_outside_the_window(
    client: anthropic.Anthropic, sim: Simulator
) -> None:
    client.messages.create(**_blocks_request(10, (10,)))
    client.messages.create(**_blocks_request(15, (15,)))
    usage = client.messages.create(**_blocks_request(35, (35,))).usage
    assert usage.cache_read_input_tokens == 0
    assert usage.cache_creation_input_tokens == _tokens_through(sim, 35)


def test_worked_example_second_breakpoint_at_15_opens_a_window_that_finds_it(
    client: anthropic.Anthropic, sim: Simulator
) -> None:
    client.messages.create(**_blocks_request(10, (10,)))
    client.messages.create(**_blocks_request(15, (15,)))
    usage = client.messages.create(**_blocks_request(35, (15, 35))).usage
    assert usage.cache_read_input_tokens == _tokens_through(sim, 15)


def test_lookback_of_34_positions_reaches_block_15_when_configured(clock: VirtualClock) -> None:
    sim = Simulator(clock=clock, lookback=21)
    client = anthropic.Anthropic(api_key="sim", http_client=sim.http_client())
    client.messages.create(**_blocks_request(15, (15,)))
    usage = client.messages.create(**_blocks_request(35, (35,))).usage
    assert usage.cache_read_input_tokens == _tokens_through(sim, 15)


def test_breakpoint_on_a_changing_block_never_reads(client: anthropic.Anthropic) -> None:
    stable = [block(f"Stable {n}: " + "same words " * 80) for n in range(5)]
    for minute in range(3):
        content = [*stable, block(f"Current time: 12:0{minute}", cached=True)]
        usage = client.messages.create(
            model=MODEL, max_tokens=16, messages=[{"role": "user", "content": content}]
        ).usage
        assert usage.cache_read_input_tokens == 0
        assert usage.cache_creation_input_tokens > 0


# ---- TTL ------------------------------------------------------------------------------------


def test_5m_entry_is_gone_five_minutes_after_the_writing_request_started(
    client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    client.messages.create(**_system_request(long_text("aura")))
    clock.advance(minutes=5)
    usage = client.messages.create(**_system_request(long_text("aura"))).usage
    assert usage.cache_read_input_tokens == 0
    assert usage.cache_creation_input_tokens > 0


def test_every_hit_refreshes_the_5m_lifetime(
    client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    client.messages.create(**_system_request(long_text("aura")))
    for _ in range(3):
        clock.advance(minutes=4)
        usage = client.messages.create(**_system_request(long_text("aura"))).usage
        assert usage.cache_read_input_tokens > 0


def test_ttl_grace_setting_keeps_an_entry_readable_just_past_the_ttl(clock: VirtualClock) -> None:
    sim = Simulator(clock=clock, ttl_grace_seconds=30)
    client = anthropic.Anthropic(api_key="sim", http_client=sim.http_client())
    client.messages.create(**_system_request(long_text("aura")))
    clock.advance(minutes=5, seconds=10)
    usage = client.messages.create(**_system_request(long_text("aura"))).usage
    assert usage.cache_read_input_tokens > 0


def test_1h_entry_is_still_read_after_30_minutes(
    client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    params = {
        "model": MODEL,
        "max_tokens": 16,
        "system": [block(long_text("aura"), ttl="1h")],
        "messages": [{"role": "user", "content": "Hi"}],
    }
    first = client.messages.create(**params).usage
    assert first.cache_creation is not None
    assert first.cache_creation.ephemeral_1h_input_tokens == first.cache_creation_input_tokens
    clock.advance(minutes=30)
    assert client.messages.create(**params).usage.cache_read_input_tokens > 0


def test_mixed_ttls_bill_1h_up_to_the_last_1h_breakpoint_and_5m_after_it(
    client: anthropic.Anthropic, sim: Simulator
) -> None:
    stable, memories = long_text("stable"), long_text("memories")
    params = {
        "model": MODEL,
        "max_tokens": 16,
        "system": [block(stable, ttl="1h"), block(memories, ttl="5m")],
        "messages": [{"role": "user", "content": "Hi"}],
    }
    usage = client.messages.create(**params).usage
    through_stable = sim.count_tokens({"model": MODEL, "system": [block(stable)], "messages": []})[
        "input_tokens"
    ]
    through_memories = sim.count_tokens(
        {"model": MODEL, "system": [block(stable), block(memories)], "messages": []}
    )["input_tokens"]
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_1h_input_tokens == through_stable
    assert usage.cache_creation.ephemeral_5m_input_tokens == through_memories - through_stable
    assert usage.cache_creation_input_tokens == through_memories


def test_after_the_5m_layer_expires_the_1h_layer_is_read_and_5m_rewritten(
    client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    params = {
        "model": MODEL,
        "max_tokens": 16,
        "system": [block(long_text("stable"), ttl="1h"), block(long_text("memories"), ttl="5m")],
        "messages": [{"role": "user", "content": "Hi"}],
    }
    first = client.messages.create(**params).usage
    clock.advance(minutes=10)
    later = client.messages.create(**params).usage
    assert first.cache_creation is not None and later.cache_creation is not None
    assert later.cache_read_input_tokens == first.cache_creation.ephemeral_1h_input_tokens
    assert later.cache_creation.ephemeral_5m_input_tokens == (
        first.cache_creation.ephemeral_5m_input_tokens
    )
    assert later.cache_creation.ephemeral_1h_input_tokens == 0


# ---- concurrency, pre-warm, isolation ----------------------------------------------------------


def test_parallel_fan_out_before_the_first_response_starts_all_miss(
    client: anthropic.Anthropic, sim: Simulator
) -> None:
    with sim.concurrently():
        usages = [
            client.messages.create(**_system_request(long_text("aura"), f"Q{i}?")).usage
            for i in range(3)
        ]
    assert [u.cache_read_input_tokens for u in usages] == [0, 0, 0]
    assert all(u.cache_creation_input_tokens > 0 for u in usages)
    after = client.messages.create(**_system_request(long_text("aura"), "Q4?")).usage
    assert after.cache_read_input_tokens > 0


def test_max_tokens_zero_prewarms_the_cache_without_output(client: anthropic.Anthropic) -> None:
    warm = client.messages.create(**{**_system_request(long_text("aura")), "max_tokens": 0})
    assert warm.content == []
    assert warm.stop_reason == "max_tokens"
    assert warm.usage.output_tokens == 0
    assert warm.usage.cache_creation_input_tokens > 0
    real = client.messages.create(**_system_request(long_text("aura"), "Now the real question?"))
    assert real.usage.cache_read_input_tokens == warm.usage.cache_creation_input_tokens


def test_caches_are_isolated_per_api_key(sim: Simulator) -> None:
    workspace_a = anthropic.Anthropic(api_key="workspace-a", http_client=sim.http_client())
    workspace_b = anthropic.Anthropic(api_key="workspace-b", http_client=sim.http_client())
    workspace_a.messages.create(**_system_request(long_text("aura")))
    usage_b = workspace_b.messages.create(**_system_request(long_text("aura"))).usage
    usage_a = workspace_a.messages.create(**_system_request(long_text("aura"))).usage
    assert usage_b.cache_read_input_tokens == 0
    assert usage_a.cache_read_input_tokens > 0


# ---- invalidation by level (spec §2) ---------------------------------------------------------

_TOOLS = [
    {
        "name": "lookup",
        "description": "Look something up. " + "Details. " * 200,
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
]


def _layered(tools: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 16,
        "tools": [{**tools[0], "cache_control": {"type": "ephemeral"}}, *tools[1:]],
        "system": [block(long_text("system"), cached=True)],
        "messages": [
            {"role": "user", "content": [block(long_text("history"), cached=True)]},
        ],
        **extra,
    }


def test_changed_tool_definition_invalidates_tools_system_and_messages(
    client: anthropic.Anthropic,
) -> None:
    client.messages.create(**_layered(_TOOLS))
    changed = [{**_TOOLS[0], "description": "Changed."}]
    usage = client.messages.create(**_layered(changed)).usage
    assert usage.cache_read_input_tokens == 0


def test_changed_tool_choice_keeps_the_system_level_cache(
    client: anthropic.Anthropic, sim: Simulator
) -> None:
    client.messages.create(**_layered(_TOOLS, tool_choice={"type": "auto"}))
    usage = client.messages.create(**_layered(_TOOLS, tool_choice={"type": "none"})).usage
    through_system = sim.count_tokens(
        {"model": MODEL, "tools": _TOOLS, "system": [block(long_text("system"))], "messages": []}
    )["input_tokens"]
    assert usage.cache_read_input_tokens == through_system


def test_changed_model_misses_everything(client: anthropic.Anthropic) -> None:
    client.messages.create(**_system_request(long_text("aura")))
    usage = client.messages.create(
        **{**_system_request(long_text("aura")), "model": "claude-opus-5"}
    ).usage
    assert usage.cache_read_input_tokens == 0


def test_thinking_change_invalidates_everything_on_models_that_render_it_first(
    clock: VirtualClock,
) -> None:
    sim = Simulator(clock=clock, settings_before_tools={MODEL})
    client = anthropic.Anthropic(api_key="sim", http_client=sim.http_client())
    client.messages.create(**_layered(_TOOLS, thinking={"type": "disabled"}))
    usage = client.messages.create(**_layered(_TOOLS, thinking={"type": "adaptive"})).usage
    assert usage.cache_read_input_tokens == 0


# ---- automatic (top-level) caching ------------------------------------------------------------


def test_automatic_caching_moves_the_breakpoint_forward_as_the_conversation_grows(
    client: anthropic.Anthropic,
) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": long_text("turn1")}]
    first = client.messages.create(
        model=MODEL, max_tokens=16, cache_control={"type": "ephemeral"}, messages=messages
    )
    messages += [
        {"role": "assistant", "content": first.content[0].text},  # type: ignore[union-attr]
        {"role": "user", "content": long_text("turn2")},
    ]
    second = client.messages.create(
        model=MODEL, max_tokens=16, cache_control={"type": "ephemeral"}, messages=messages
    ).usage
    assert second.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.input_tokens == 0  # the breakpoint sits on the last block


def test_automatic_breakpoint_walks_back_over_a_trailing_thinking_block(
    client: anthropic.Anthropic, sim: Simulator
) -> None:
    messages = [
        {"role": "user", "content": long_text("question")},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Partial answer"},
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            ],
        },
    ]
    usage = client.messages.create(
        model=MODEL, max_tokens=16, cache_control={"type": "ephemeral"}, messages=messages
    ).usage
    thinking_tokens = sim.count_tokens({"model": MODEL, "messages": messages})["input_tokens"] - (
        usage.cache_creation_input_tokens
    )
    assert usage.cache_creation_input_tokens > 0
    assert usage.input_tokens == thinking_tokens


# ---- diagnostics -----------------------------------------------------------------------------


def test_diagnostics_reports_system_changed_with_the_tokens_it_cost(
    client: anthropic.Anthropic,
) -> None:
    first = client.messages.create(
        **_system_request(long_text("aura")), diagnostics={"previous_message_id": None}
    )
    assert first.diagnostics is None
    second = client.messages.create(
        **_system_request(long_text("aura") + " Today is Monday."),
        diagnostics={"previous_message_id": first.id},
    )
    assert second.diagnostics is not None
    reason = second.diagnostics.cache_miss_reason
    assert reason is not None
    assert reason.type == "system_changed"
    assert reason.cache_missed_input_tokens == first.usage.cache_creation_input_tokens  # type: ignore[union-attr]


def test_diagnostics_reports_model_changed(client: anthropic.Anthropic) -> None:
    first = client.messages.create(**_system_request(long_text("aura")))
    second = client.messages.create(
        **{**_system_request(long_text("aura")), "model": "claude-opus-5"},
        diagnostics={"previous_message_id": first.id},
    )
    assert second.diagnostics is not None and second.diagnostics.cache_miss_reason is not None
    assert second.diagnostics.cache_miss_reason.type == "model_changed"


def test_diagnostics_reports_tools_changed(client: anthropic.Anthropic) -> None:
    first = client.messages.create(**_layered(_TOOLS))
    second = client.messages.create(
        **_layered([{**_TOOLS[0], "description": "Other."}]),
        diagnostics={"previous_message_id": first.id},
    )
    assert second.diagnostics is not None and second.diagnostics.cache_miss_reason is not None
    assert second.diagnostics.cache_miss_reason.type == "tools_changed"


def test_diagnostics_reports_messages_changed(client: anthropic.Anthropic) -> None:
    first = client.messages.create(**_layered(_TOOLS))
    edited = _layered(_TOOLS)
    edited["messages"] = [{"role": "user", "content": [block(long_text("edited"), cached=True)]}]
    second = client.messages.create(**edited, diagnostics={"previous_message_id": first.id})
    assert second.diagnostics is not None and second.diagnostics.cache_miss_reason is not None
    assert second.diagnostics.cache_miss_reason.type == "messages_changed"


def test_diagnostics_reports_unavailable_when_only_tool_choice_changed(
    client: anthropic.Anthropic,
) -> None:
    first = client.messages.create(**_layered(_TOOLS, tool_choice={"type": "auto"}))
    second = client.messages.create(
        **_layered(_TOOLS, tool_choice={"type": "none"}),
        diagnostics={"previous_message_id": first.id},
    )
    assert second.diagnostics is not None and second.diagnostics.cache_miss_reason is not None
    assert second.diagnostics.cache_miss_reason.type == "unavailable"


def test_diagnostics_reports_previous_message_not_found(client: anthropic.Anthropic) -> None:
    reply = client.messages.create(
        **_system_request(long_text("aura")),
        diagnostics={"previous_message_id": "msg_01UnknownToThisWorkspace"},
    )
    assert reply.diagnostics is not None and reply.diagnostics.cache_miss_reason is not None
    assert reply.diagnostics.cache_miss_reason.type == "previous_message_not_found"


def test_diagnostics_is_null_when_the_prefix_was_fully_reused(client: anthropic.Anthropic) -> None:
    first = client.messages.create(**_system_request(long_text("aura")))
    second = client.messages.create(
        **_system_request(long_text("aura"), "Again?"),
        diagnostics={"previous_message_id": first.id},
    )
    assert second.diagnostics is None


# ---- predict, latency, default reply ----------------------------------------------------------


def test_predict_reports_the_coming_usage_without_changing_the_cache(sim: Simulator) -> None:
    params = _system_request(long_text("aura"))
    before = sim.predict(params)
    again = sim.predict(params)
    assert before == again
    actual = sim.handle_messages(params)["usage"]
    assert before["cache_creation_input_tokens"] == actual["cache_creation_input_tokens"]
    assert sim.predict(params)["cache_read_input_tokens"] == actual["cache_creation_input_tokens"]


def test_latency_header_shows_a_hit_starting_faster(client: anthropic.Anthropic) -> None:
    params = _system_request(long_text("aura", 3000))
    cold = client.messages.with_raw_response.create(**params)
    warm = client.messages.with_raw_response.create(**params)
    assert cold.headers["x-cachescope-simulator"] == "1"
    assert cold.headers["request-id"].startswith("req_")
    assert float(warm.headers["x-cachescope-ttft-ms"]) < float(cold.headers["x-cachescope-ttft-ms"])


def test_virtual_clock_moves_only_by_simulated_time_and_is_never_slept(
    client: anthropic.Anthropic, clock: VirtualClock
) -> None:
    start = clock.now()
    raw = client.messages.with_raw_response.create(**_system_request(long_text("aura")))
    simulated_seconds = float(raw.headers["x-cachescope-total-ms"]) / 1000
    assert abs((clock.now() - start) - simulated_seconds) < 0.001


def test_default_reply_is_deterministic_and_capped_by_max_tokens(clock: VirtualClock) -> None:
    replies = []
    for _ in range(2):
        sim = Simulator(clock=clock)
        client = anthropic.Anthropic(api_key="sim", http_client=sim.http_client())
        replies.append(client.messages.create(**_system_request("Hello there.")))
    assert replies[0].content == replies[1].content
    assert replies[0].usage.output_tokens == replies[1].usage.output_tokens
    capped = client.messages.create(**{**_system_request("Hello there."), "max_tokens": 3})
    assert capped.usage.output_tokens == 3
    assert capped.stop_reason == "max_tokens"


def _two_breakpoints(question: str) -> dict[str, Any]:
    """A cached system prompt plus a cached user turn: two entries on one prefix."""
    return {
        "model": MODEL,
        "max_tokens": 16,
        "system": [block(long_text("aura"), cached=True)],
        "messages": [
            {"role": "user", "content": [block(long_text(question, words=300), cached=True)]}
        ],
    }


@pytest.mark.parametrize(
    ("refresh", "system_read_after_the_gap"), [("reached", True), ("hit", False)]
)
def test_a_read_through_a_longer_prefix_refreshes_the_entries_it_passes(
    clock: VirtualClock, refresh: str, system_read_after_the_gap: bool
) -> None:
    sim = Simulator(clock=clock, refresh=refresh)
    client = anthropic.Anthropic(api_key="sim", http_client=sim.http_client())
    client.messages.create(**_two_breakpoints("first"))  # writes the system and the turn entry
    clock.advance(minutes=4)
    again = client.messages.create(**_two_breakpoints("first")).usage  # reads the turn entry
    assert again.cache_creation_input_tokens == 0
    clock.advance(minutes=4)  # 8 minutes after the system entry was written
    other = client.messages.create(**_two_breakpoints("second")).usage
    assert (other.cache_read_input_tokens > 0) is system_read_after_the_gap


class _WordCounter:
    def count(self, text: str) -> int:
        return len(text.split())


def test_a_plugged_in_counter_counts_every_block(clock: VirtualClock) -> None:
    sim = Simulator(clock=clock, counter=_WordCounter())
    body = {
        "model": MODEL,
        "system": "You are Aura, a careful assistant.",  # 6 words
        "messages": [{"role": "user", "content": "What changed since yesterday?"}],  # 4 words
    }
    assert sim.count_tokens(body) == {"input_tokens": 10}


def test_an_alias_and_its_dated_id_share_the_cache(clock: VirtualClock) -> None:
    sim = Simulator(clock=clock)
    request = {
        **_system_request(long_text("aura", words=3000)),  # over Haiku 4.5's 4,096 minimum
        "model": "claude-haiku-4-5",
    }
    first = sim.handle_messages(request)["usage"]
    second = sim.handle_messages({**request, "model": "claude-haiku-4-5-20251001"})["usage"]
    assert first["cache_creation_input_tokens"] > 4096
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
