"""The C keys read a dict's items in place (CPython 3.11's layout) where PyDict_Next would.

Whatever storage a dict has — a compact str-keyed table, one with holes left by deleted items,
one that once held a non-str key (general kind), an instance's split `__dict__` — the C
`value_key` / `message_key` must equal their pure-Python twins, and `compare` must say the same
with and without the accelerators.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cachescope._native as native
from cachescope import _blocks, _tokens
from cachescope.stability import compare

MODULE = native.load("blocks")
pytestmark = pytest.mark.skipif(MODULE is None, reason="no compiled accelerators")

LONG = "a line of tool output that is long enough to be hashed, not inlined. " * 4


class _Holder:
    """Instances of a class share their attribute names: their `__dict__` is split."""

    def __init__(self, role: Any, content: Any) -> None:
        self.role = role
        self.content = content


def _with_holes(items: dict[str, Any], drop: list[str]) -> dict[str, Any]:
    out = {f"gone{i}": i for i in range(3)}
    out.update(items)
    for name in [*(f"gone{i}" for i in range(3)), *drop]:
        out.pop(name, None)
    return out


def _general(items: dict[str, Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {1: "int key"}
    out.update(items)
    del out[1]  # only str keys again, but the table stays of the general kind
    return out


def _layouts(items: dict[str, Any]) -> list[Any]:
    holder = _Holder(items.get("role"), items.get("content"))
    return [
        dict(items),
        _with_holes(items, []),
        _with_holes({**items, "extra": 1}, ["extra"]),
        _general(items),
        vars(holder),
    ]


def _assert_keys_agree(value: Any) -> None:
    assert MODULE.value_key(value) == _blocks._value_key_py(value)
    for m, start in ((0, 0), (3, 11)):
        assert MODULE.message_key(value, m, start) == _blocks._message_key_py(value, m, start)


names = st.sampled_from(["role", "content", "type", "text", "x", "tool_use_id", "é", "日本"])
leaves = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=40))
values = st.recursive(
    st.one_of(leaves, st.just(LONG)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(names, inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(names, values, max_size=5), st.lists(names, max_size=3))
def test_keys_equal_the_twins_for_every_dict_layout(items: dict[str, Any], drop: list[str]) -> None:
    for layout in [*_layouts(items), _with_holes(items, drop)]:
        _assert_keys_agree(layout)
        _assert_keys_agree({"role": "user", "content": [layout]})
        _assert_keys_agree([layout, {"nested": layout}])


def test_equal_items_in_any_layout_give_one_key() -> None:
    items = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": LONG}],
    }
    keys = {MODULE.message_key(layout, 2, 5) for layout in _layouts(items)}
    assert len(keys) == 1
    assert keys == {_blocks._message_key_py(items, 2, 5)}
    reordered = {"content": items["content"], "role": "user"}
    assert MODULE.value_key(reordered) != MODULE.value_key(items)  # key order is kept


def _request(messages: list[Any]) -> dict[str, Any]:
    return {"model": "claude-sonnet-5", "system": "Be brief. " * 40, "messages": messages}


def test_compare_agrees_with_the_pure_path_for_every_layout() -> None:
    def message(i: int, text: str) -> dict[str, Any]:
        role = "user" if i % 2 == 0 else "assistant"
        return {"role": role, "content": [{"type": "text", "text": f"{i}: {text}"}]}

    base = [message(i, LONG) for i in range(12)]
    base[-1]["content"][0]["cache_control"] = {"type": "ephemeral"}
    for layout_of in (_general, lambda m: _with_holes(m, []), dict):
        a = _request([layout_of(m) for m in base])
        changed = [dict(m) for m in base]
        changed[5] = message(5, LONG.replace("long", "lung"))
        b = _request([layout_of(m) for m in changed])
        native_result = compare(a, b).to_dict()
        saved = _blocks._native, _tokens._native
        _blocks._native = _tokens._native = None
        try:
            pure_result = compare(a, b).to_dict()
        finally:
            _blocks._native, _tokens._native = saved
        assert native_result == pure_result
        assert native_result["index"] == 6  # the system block, then message 5
