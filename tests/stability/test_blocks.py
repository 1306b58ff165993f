"""blocks.flatten: breakpoints with the automatic one, cumulative tokens, recent requests, and
the memo's keys (per counter, per place)."""

from __future__ import annotations

import copy
from typing import Any

from cachescope.blocks import FlatRequest, clear_memos, flatten
from cachescope.stability import fingerprint
from cachescope.tokens import CLASSIC, V2

MODEL = "claude-sonnet-5"
RULES = "Answer plainly and briefly, and cite the note you used. " * 20


def _session(turns: int) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [
        {
            "role": "user" if m % 2 == 0 else "assistant",
            "content": [{"type": "text", "text": f"Turn {m}. " + RULES}],
        }
        for m in range(turns)
    ]
    messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return {
        "model": MODEL,
        "system": [
            {"type": "text", "text": RULES, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        ],
        "messages": messages,
    }


def test_cache_points_add_the_automatic_breakpoint_on_the_last_block_that_can_carry_one() -> None:
    params = _session(3)
    params["cache_control"] = {"type": "ephemeral"}
    params["messages"][-1]["content"][-1].pop("cache_control")
    params["messages"].append(
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "", "signature": "s"}]}
    )
    flat = flatten(params)
    # system.0 (1h), then the automatic 5m one on messages.2 (the thinking block cannot carry it)
    assert flat.cache_points() == [(0, "1h"), (3, "5m")]
    assert [block.path for block in flat.breakpoints()] == ["system.0"]


def test_cumulative_tokens_run_from_zero_to_the_total() -> None:
    flat = flatten(_session(4))
    sums = flat.cumulative_tokens()
    assert len(sums) == len(flat.blocks) + 1
    assert sums[0] == 0
    assert sums[-1] == flat.total_tokens == sum(block.tokens for block in flat.blocks)


def test_a_conversation_sent_again_takes_the_blocks_of_its_equal_messages() -> None:
    a = _session(6)
    grown = [*copy.deepcopy(a["messages"]), {"role": "assistant", "content": "Noted."}]
    b = {**a, "messages": grown}
    first = flatten(a)
    again = flatten(b)  # equal messages (other objects) at the same places
    clear_memos()
    assert again == flatten(copy.deepcopy(b))
    assert all(x is y for x, y in zip(first.blocks, again.blocks))
    assert len(again.blocks) == len(first.blocks) + 1


def test_a_request_read_alongside_another_takes_its_very_messages_as_they_were_read() -> None:
    a = _session(6)
    b = {**a, "messages": [*a["messages"], {"role": "assistant", "content": "Noted."}]}
    first = flatten(a)
    alongside = flatten(b, alongside=first)
    clear_memos()
    assert alongside == flatten(copy.deepcopy(b))
    assert all(x is y for x, y in zip(first.blocks, alongside.blocks))


def test_equal_values_of_other_types_are_not_taken_for_the_same_message() -> None:
    a = {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "x", "n": 1}]}]}
    b = {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "x", "n": True}]}]}
    assert flatten(a).blocks[0].text == '{"type":"x","n":1}'
    assert flatten(b).blocks[0].text == '{"type":"x","n":true}'


def test_a_message_edited_in_place_is_read_again() -> None:
    a = _session(4)
    before = flatten(a)
    a["messages"][1]["content"][0]["text"] = "Edited."
    after = flatten(a)
    assert after.blocks[2].text == "Edited."
    assert after.blocks[2].hash != before.blocks[2].hash


def test_the_memo_keeps_token_counts_per_counter() -> None:
    params = _session(3)
    classic = flatten(params, CLASSIC)
    v2 = flatten(params, V2)
    assert v2.total_tokens > classic.total_tokens
    clear_memos()
    assert flatten(copy.deepcopy(params), V2) == v2
    assert flatten(params, CLASSIC) == classic


def test_default_reads_values_that_are_not_json() -> None:
    class Note:
        def __str__(self) -> str:
            return "a note"

    params = {"model": MODEL, "messages": [{"role": "user", "content": [Note()]}]}
    flat = flatten(params, default=str)
    assert [(block.kind, block.text) for block in flat.blocks] == [("unknown", '"a note"')]


def test_a_fingerprint_renumbers_blocks_that_moved() -> None:
    a = _session(4)
    fingerprint(a)  # its prints are kept with the memoized blocks
    moved = {**a, "messages": [{"role": "user", "content": "First."}, *a["messages"]]}
    prints = fingerprint(moved).blocks
    assert [p.index for p in prints] == list(range(len(prints)))
    assert prints[-1].path == "messages.4.content.0"
    assert fingerprint(copy.deepcopy(moved)).blocks == prints


def test_a_flat_request_compares_by_its_positions_only() -> None:
    flat = flatten(_session(2))
    again = FlatRequest(flat.model, list(flat.blocks), flat.settings, None)
    assert again == flat


def test_threads_flattening_the_same_messages_at_other_places_each_get_their_own() -> None:
    from concurrent.futures import ThreadPoolExecutor

    base = _session(6)
    # the same messages after 0..7 extra turns: every thread places them elsewhere
    requests = [
        {
            **base,
            "messages": [
                *({"role": "user", "content": f"Q{i}"} for i in range(n)),
                *base["messages"],
            ],
        }
        for n in range(8)
    ]
    expected = [flatten(copy.deepcopy(r)) for r in requests]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(20):
            got = list(pool.map(flatten, requests))
            assert got == expected


def test_an_object_whose_equality_raises_does_not_stop_the_walk() -> None:
    class Ambiguous:
        def __eq__(self, other: object) -> bool:
            raise ValueError("the truth value is ambiguous")

        __hash__ = object.__hash__

    plain = {"role": "user", "content": [{"type": "text", "text": "Hello."}]}
    flatten({"model": MODEL, "messages": [plain]})
    odd = {"model": MODEL, "messages": [Ambiguous()]}
    flat = flatten(odd, default=lambda value: "ambiguous")
    assert [block.text for block in flat.blocks] == ['"ambiguous"']
