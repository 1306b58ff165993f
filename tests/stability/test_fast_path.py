"""flatten's per-unit memo and compare's reuse of shared objects never change a result.

`flatten` keys each unit (tool list, system prompt, message) by its content (key order and types
kept) and reuses the memoized blocks; `compare` reads `b` alongside `a`, so a message that is the
very same object in both is not keyed twice. These tests hold the results to those of a cold
memo and of deep copies, and check that the memo never merges units that flatten apart.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from cachescope import _memo
from cachescope.blocks import LayeredBlocks, flatten
from cachescope.stability import clear_memos, compare
from cachescope.tokens import counter_for

MODEL = "claude-sonnet-5"
LONG = "Answer plainly and briefly, and cite the note you used. " * 30


def _request(turns: int = 12) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for turn in range(turns):
        if turn % 3 == 0:
            messages.append({"role": "user", "content": f"Question {turn}: " + LONG})
        elif turn % 3 == 1:
            messages.append(
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": f"Let me look {turn}."},
                        {
                            "type": "tool_use",
                            "id": f"toolu_{turn}",
                            "name": "search",
                            "input": {"q": "x", "limit": 3, "exact": True, "w": 0.5},
                        },
                    ],
                }
            )
        else:
            messages.append(
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": f"toolu_{turn - 1}",
                            "content": f"result {turn}\n" + LONG,
                        }
                    ],
                }
            )
    messages[-1] = {
        "role": "user",
        "content": [
            {"type": "text", "text": "Go on. " + LONG, "cache_control": {"type": "ephemeral"}}
        ],
    }
    return {
        "model": MODEL,
        "max_tokens": 100,
        "tools": [{"name": "search", "description": LONG, "input_schema": {"type": "object"}}],
        "system": [{"type": "text", "text": LONG * 3, "cache_control": {"type": "ephemeral"}}],
        "messages": messages,
    }


def _cold(a: Any, b: Any) -> dict[str, Any]:
    """compare() with nothing memoized and nothing shared between the two requests."""
    clear_memos()
    return compare(copy.deepcopy(a), copy.deepcopy(b)).to_dict()


def _mutations(rng: random.Random, base: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(base)
    messages = new["messages"]
    m = rng.randrange(len(messages))
    message = messages[m]
    choice = rng.randrange(12)
    content = message["content"]
    if choice == 0 and isinstance(content, str):
        message["content"] = content[:40] + "#" + content[41:]
    elif choice == 1 and isinstance(content, list):
        block = content[0]
        key = "text" if "text" in block else "content" if "content" in block else None
        if key is not None and isinstance(block[key], str):
            block[key] = block[key][:-1] + "!"
    elif choice == 2 and isinstance(content, list):
        # same fields, another key order: the JSON (and the block) differ for a tool result
        content[0] = dict(reversed(list(content[0].items())))
    elif choice == 3:
        message["role"] = "assistant" if message["role"] == "user" else "user"
    elif choice == 4 and isinstance(content, list):
        # an empty cache_control still marks a breakpoint
        content[-1]["cache_control"] = rng.choice([{"type": "ephemeral", "ttl": "1h"}, {}])
    elif choice == 5:
        del messages[m:]
    elif choice == 6:
        messages.append({"role": "user", "content": "and one more"})
    elif choice == 7 and isinstance(content, str):
        message["content"] = [{"type": "text", "text": content}]
    elif choice == 8 and isinstance(content, list) and content[-1].get("type") == "tool_use":
        tool_input = content[-1]["input"]
        tool_input["exact"] = 1  # True and 1 are equal in Python, not in JSON
        tool_input["w"] = -0.0 if rng.random() < 0.5 else 0.5
    elif choice == 9:
        new["tool_choice"] = {"type": "auto"}
    elif choice == 10:
        new["system"][0]["text"] = "\ud800" + new["system"][0]["text"][1:]  # a lone surrogate
    else:
        new["tools"][0]["description"] += " "
    return new


def _sharing(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """`b` rebuilt to hold `a`'s very message objects wherever they are equal (as a session's next
    render does), so that compare reuses them."""
    shared = list(b["messages"])
    for m, message in enumerate(shared[: len(a["messages"])]):
        if message == a["messages"][m] and repr(message) == repr(a["messages"][m]):
            shared[m] = a["messages"][m]
    return {**b, "messages": shared}


def test_compare_of_params_does_not_depend_on_the_memo_or_on_shared_objects() -> None:
    rng = random.Random(5)
    base = _request()
    for _ in range(120):
        a = _mutations(rng, base) if rng.random() < 0.3 else copy.deepcopy(base)
        b = _mutations(rng, a)
        if rng.random() < 0.5:
            b = _mutations(rng, b)
        shared = _sharing(a, b)
        warm = compare(a, shared).to_dict()
        assert compare(a, b).to_dict() == warm
        assert _cold(a, b) == warm
        assert compare(b, a).to_dict() == _cold(b, a)


def test_memo_never_merges_units_that_flatten_apart() -> None:
    def shape(params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [
            (b.index, b.path, b.kind, b.role, b.hash, b.tokens, b.text, b.cache_control, b.layer)
            for b in flatten(params).blocks
        ]

    text = {"type": "text", "text": LONG}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": LONG}
    variants: list[Any] = [
        LONG,
        [text],
        [LONG],
        [dict(text, cache_control={"type": "ephemeral"})],
        [dict(text, cache_control={"type": "ephemeral", "ttl": "1h"})],
        [result],
        [dict(reversed(list(result.items())))],
        [dict(result, is_error=True)],
        [dict(result, is_error=1)],
        [{"type": "tool_use", "id": "t", "name": "n", "input": {"x": 0.0}}],
        [{"type": "tool_use", "id": "t", "name": "n", "input": {"x": -0.0}}],
        [{"type": "tool_use", "id": "t", "name": "n", "input": {"x": 0}}],
        [{"type": "tool_use", "id": "t", "name": "n", "input": {"x": False}}],
        LayeredBlocks([text], ["history"]),
        LayeredBlocks([text], ["dynamic"]),
        [text, result],
        [result, text],
    ]
    for role in ("user", "assistant"):
        for content in variants:
            params = {"model": MODEL, "messages": [{"role": role, "content": content}]}
            warm = shape(params)
            clear_memos()
            assert shape(params) == warm, (role, content)
    # and every variant stays itself when they are all memoized side by side
    clear_memos()
    seen = [shape({"model": MODEL, "messages": [{"role": "user", "content": c}]}) for c in variants]
    for content, expected in zip(variants, seen):
        params = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
        assert shape(params) == expected, content
    # only a bare string item and a plain text block flatten alike (flatten treats them the same)
    assert seen[1] == seen[2]
    assert len({repr(s) for s in seen}) == len(seen) - 1


def test_equal_content_in_new_objects_reuses_the_memoized_blocks() -> None:
    a = _request()
    b = copy.deepcopy(a)
    first = flatten(a).blocks
    again = flatten(b).blocks
    assert all(x is y for x, y in zip(first, again))


def test_clear_memos_forgets_flattened_units() -> None:
    first = flatten(_request()).blocks
    clear_memos()
    again = flatten(_request()).blocks
    assert again == first
    assert not any(x is y for x, y in zip(first, again))


def test_a_unit_at_a_new_place_gets_its_new_index_and_path() -> None:
    params = _request()
    flatten(params)  # memoized where they are now
    moved = {**params, "messages": [{"role": "user", "content": "first"}, *params["messages"]]}
    clear = flatten(copy.deepcopy(moved))
    clear_memos()
    assert flatten(copy.deepcopy(moved)) == clear
    assert [block.index for block in clear.blocks] == list(range(len(clear.blocks)))
    assert clear.blocks[-1].path == f"messages.{len(moved['messages']) - 1}.content.0"


def test_the_memo_drops_the_least_recently_used_unit_past_its_caps() -> None:
    memo = _memo._Memo(units=2, chars=1_000)

    def unit(text: str) -> Any:
        block = flatten({"system": text}).blocks[0]
        return _memo._Unit(counter_for("classic"), [block], [""], -1, (False, False, ()))

    memo.put("a", unit("x" * 10))
    memo.put("b", unit("y" * 10))
    memo.get("a")  # used: "b" is now the least recent
    memo.put("c", unit("z" * 10))
    assert list(memo.entries) == ["a", "c"]
    memo.put("d", unit("w" * 995))  # past 1,000 characters: the oldest go until it fits
    assert list(memo.entries) == ["d"]
    assert memo.chars == 995


def test_compare_falls_back_for_objects_that_do_not_serialize() -> None:
    class Opaque:
        pass

    shared = Opaque()
    a = {"model": MODEL, "messages": [{"role": "user", "content": [shared]}]}
    b = {"model": MODEL, "messages": [{"role": "user", "content": [shared]}, "x"]}
    with pytest.raises(TypeError):
        flatten(a)
    diff = compare(a, b)
    assert not diff.broken


def test_compare_reads_sdk_objects_by_their_fields() -> None:
    from anthropic.types import TextBlock

    def request(text: str) -> dict[str, Any]:
        block = TextBlock(type="text", text=text)
        return {"model": MODEL, "messages": [{"role": "assistant", "content": [block]}]}

    assert not compare(request("Hi."), request("Hi.")).broken
    assert compare(request("Hi."), request("Hello.")).cause == "messages_changed"
