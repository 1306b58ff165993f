"""compare() on params reads them through flatten's per-message memo; results must not change.

The fast path keys each unit by its content (role, key order, short fields, xxh3 of long texts)
and reuses the memoized blocks. These tests check it against the lazy block-by-block reading that
lint still uses (`_Side.from_params`), and that the memo never merges units that flatten apart.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from cachescope import blocks as _blocks
from cachescope import stability
from cachescope.blocks import LayeredBlocks, flatten
from cachescope.stability import _Side, clear_memos, compare

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


def _lazy(monkeypatch: pytest.MonkeyPatch, a: Any, b: Any) -> dict[str, Any]:
    """compare() through the lazy reader, as before the fast path."""

    def refuse(cls: Any, params: Any) -> Any:
        raise TypeError("fast path off")

    with monkeypatch.context() as patch:
        patch.setattr(_Side, "from_flat", classmethod(refuse))
        patch.setattr(stability, "flatten_lean", lambda requests: None)
        return compare(a, b).to_dict()


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


def test_compare_of_params_matches_the_lazy_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    base = _request()
    for _ in range(120):
        a = _mutations(rng, base) if rng.random() < 0.3 else copy.deepcopy(base)
        b = _mutations(rng, a)
        if rng.random() < 0.5:
            b = _mutations(rng, b)
        assert compare(a, b).to_dict() == _lazy(monkeypatch, a, b)
        assert compare(b, a).to_dict() == _lazy(monkeypatch, b, a)


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
    flatten(_request())
    assert _blocks._SEGMENT_MEMO
    clear_memos()
    assert not _blocks._SEGMENT_MEMO


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
