"""The fast message-key encoder in `_native/blocks.c` against the pure-Python twins.

`message_key_of` and `value_key` first try a specialised encoder for the shapes agents send
(exact dicts with str keys, exact lists, compact str, small ints, floats, bools, None) and redo
the whole value with the general code on anything else. Both must give the twin's key byte for byte: every str width at
every length around the inline limit, every way a message can leave the common shape, dict
storage with holes, nesting at the depth limit and keys larger than the encoder's buffer.
"""

from __future__ import annotations

import ctypes
import sys
import warnings
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cachescope._native as native
from cachescope import _blocks
from cachescope._blocks import LayeredBlocks

MODULE = native.load("blocks")
pytestmark = pytest.mark.skipif(MODULE is None, reason="no compiled accelerators")

LONG = "a line of tool output long enough to be hashed rather than inlined; " * 3
# one code point of each storage: ASCII, latin-1 (1 byte), UCS-2, UCS-4
WIDTHS = ("a", "\u00e9", "\u0101", "\U0001f600")


def _same_message(message: Any, m: int = 0, start: int = 0) -> int | None:
    key = MODULE.message_key(message, m, start)
    assert key == _blocks._message_key_py(message, m, start), message
    # value_key takes the same encoder for the message as a whole value
    assert MODULE.value_key(message) == _blocks._value_key_py(message), message
    return key


def _same_messages(messages: list[Any]) -> bytes:
    keys, same = MODULE.message_keys(messages, b"")
    assert (keys, same) == _blocks._message_keys_py(messages, b""), messages
    return keys


def _strings() -> list[str]:
    """Every width at 0..40 code points, uniform and with a different first and last one."""
    out = [""]
    for char in WIDTHS:
        for length in range(1, 41):
            out.append(char * length)
            out.append("b" + char * (length - 1))
            out.append(char * (length - 1) + "z")
    return out


def test_every_width_at_every_length_as_each_part_of_a_message() -> None:
    strings = _strings()
    keys = set()
    for text in strings:
        shapes: list[Any] = [
            {"role": text, "content": "x"},
            {"role": "user", "content": text},
            {"role": "user", "content": [{"type": "text", "text": text}]},
            {"role": "user", "content": [{text: "value", "type": "text"}]},
            {"role": "user", "content": [text, text]},
            {"content": [{"type": "tool_result", "content": [{"type": "text", "text": text}]}]},
        ]
        for shape in shapes:
            keys.add(_same_message(shape, 2, 5))
        _same_messages(shapes)
        assert MODULE.value_key(shapes[2]) == _blocks._value_key_py(shapes[2])
    # distinct strings give distinct keys in the same place
    assert len({MODULE.message_key({"role": "user", "content": t}, 0, 0) for t in strings}) == len(
        set(strings)
    )
    assert None not in keys


def test_the_inline_limit_of_32_bytes_in_every_width() -> None:
    for char, width in zip(WIDTHS, (1, 1, 2, 4)):
        for size in range(28, 38):
            if size % width:
                continue
            text = char * (size // width)
            message = {"role": "user", "content": [{"type": "text", "text": text, text: text}]}
            _same_message(message, 1, 1)


def test_header_bytes_before_a_str_never_enter_its_key() -> None:
    # short str are read with loads that end at their last byte and may start in the object's
    # header: the header (its cached hash, interning, a cached wchar_t copy) must not matter
    for text in ["", "a", "ab", "abc", "user", "toolu_01", "ephemeral", "\u00e9t\u00e9", "\u0101x"]:
        fresh = "".join(list(text))  # an equal str that is neither interned nor hashed yet
        message = {"role": "user", "content": [{"type": "text", "text": fresh}]}
        before = _same_message(message)
        hash(fresh)
        assert _same_message(message) == before
        assert (
            _same_message({"role": "user", "content": [{"type": "text", "text": text}]}) == before
        )
        as_unicode = getattr(ctypes.pythonapi, "PyUnicode_AsUnicode", None)
        if as_unicode is not None:  # 3.11 keeps a wchar_t copy of the str in its header
            as_unicode.restype = ctypes.c_void_p
            as_unicode.argtypes = [ctypes.py_object]
            assert as_unicode(fresh)
            assert _same_message(message) == before
        interned = sys.intern(fresh)
        message = {"role": "user", "content": [{"type": "text", "text": interned}]}
        assert _same_message(message) == before


def _legacy(text: str) -> Any:
    """An equal str in CPython's legacy (not compact, not yet ready) storage, or None."""
    new = getattr(ctypes.pythonapi, "PyUnicode_FromUnicode", None)  # gone in 3.12
    as_unicode = getattr(ctypes.pythonapi, "PyUnicode_AsUnicode", None)
    if new is None or as_unicode is None:
        return None
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t]
    as_unicode.restype = ctypes.c_void_p
    as_unicode.argtypes = [ctypes.py_object]
    with warnings.catch_warnings():  # deprecated, but still makes the legacy storage in 3.11
        warnings.simplefilter("ignore", DeprecationWarning)
        out = new(None, len(text))
    units = (ctypes.c_wchar * len(text)).from_address(as_unicode(out))
    for i, char in enumerate(text):
        units[i] = char
    return out


def test_legacy_str_go_through_the_general_code() -> None:
    if _legacy("x") is None:
        pytest.skip("no legacy str in this CPython")
    for text in ("user", "a longer text than the thirty-two inline bytes", "\u00e9t\u00e9"):
        plain = {"role": "user", "content": [{"type": "text", "text": text}]}
        for message in (
            {"role": _legacy("user"), "content": [{"type": "text", "text": text}]},
            {"role": "user", "content": [{"type": "text", "text": _legacy(text)}]},
            {"role": "user", "content": [{_legacy("type"): "text", "text": text}]},
            {_legacy("role"): "user", "content": [{"type": "text", "text": text}]},
        ):
            assert _same_message(message) == _same_message(plain)
            assert _same_message(message) == _same_message(plain)  # now ready, still legacy


def test_messages_that_leave_the_common_shape() -> None:
    class Text(str):
        pass

    class Items(list[Any]):
        pass

    class Fields(dict[str, Any]):
        pass

    class Holder:
        def __init__(self) -> None:
            self.type = "text"
            self.text = "held"

    block = {"type": "text", "text": LONG}
    messages: list[Any] = [
        {"role": "user", "content": [block]},
        {"content": [block], "role": "user"},
        {"role": "user", "content": [block], "name": "x", "id": 3},
        {"id": 3, "role": "user", "extra": [object()], "content": [block]},
        {"role": 1, "content": [block]},
        {"role": None, "content": [block]},
        {"role": ["user"], "content": [block]},
        {"role": {"name": "user"}, "content": [block]},
        {"role": Text("user"), "content": [block]},
        {"content": [block]},
        {"role": "user"},
        {},
        {"role": "user", "content": LONG},
        {"role": "user", "content": ""},
        {"role": "user", "content": {"type": "text", "text": "a dict"}},
        {"role": "user", "content": None},
        {"role": "user", "content": 5},
        {"role": "user", "content": []},
        {"role": "user", "content": [{}]},
        {"role": "user", "content": ["a", 1, -1, 2.5, True, False, None, [], [[]], {}]},
        {"role": "user", "content": [1 << 63, block]},
        {"role": "user", "content": [-(1 << 63) - 1]},
        {"role": "user", "content": [(1 << 63) - 1, -(1 << 63), float("nan"), -0.0, 1e300]},
        {"role": "user", "content": [(1, 2)]},
        {"role": "user", "content": [Text("a")]},
        {"role": "user", "content": [{"type": Text("text")}]},
        {"role": "user", "content": Items([block])},
        {"role": "user", "content": [Items([block])]},
        {"role": "user", "content": [Fields(block)]},
        {"role": "user", "content": [vars(Holder())]},
        {"role": "user", "content": [{"type": "text", "text": "x", 3: "int key"}]},
        {
            "role": "user",
            "content": [{"type": "image", "source": {"type": "base64", "data": LONG}}],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a.py"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_0001",
                    "content": LONG,
                    "cache_control": {"type": "ephemeral"},
                },
                {
                    "type": "text",
                    "text": "\u65e5\u672c",
                    "cache_control": {"type": "ephemeral", "ttl": "1h"},
                },
            ],
        },
        "not a message",
        None,
        [block],
    ]
    for m, message in enumerate(messages):
        _same_message(message, m, 7)
    # message_keys stops at the first message that has no key: each prefix, and each alone
    for first in range(len(messages)):
        _same_messages(messages[first:])


def test_a_layered_content_still_goes_through_the_general_code() -> None:
    content = LayeredBlocks([{"type": "text", "text": LONG}, {"type": "text", "text": "b"}])
    content.layer_names = ["base", "turn"]
    message = {"role": "user", "content": content}
    key = _same_message(message)
    assert key is not None
    assert key != _same_message({"role": "user", "content": list(content)})


def _with_holes(items: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"gone": 0, **items, "gone too": 1}
    out["later"] = 2
    for name in ("gone", "gone too", "later"):
        del out[name]
    return out


def test_dicts_with_deleted_entries_at_every_level() -> None:
    block = {"type": "tool_result", "tool_use_id": "toolu_0001", "content": LONG}
    plain = {"role": "user", "content": [block, {"type": "text", "text": "t"}]}
    key = _same_message(plain, 4, 4)
    holed_block = _with_holes(block)
    variants = [
        _with_holes(plain),
        {"role": "user", "content": [holed_block, {"type": "text", "text": "t"}]},
        _with_holes(
            {"role": "user", "content": [holed_block, _with_holes({"type": "text", "text": "t"})]}
        ),
    ]
    for variant in variants:
        assert _same_message(variant, 4, 4) == key
    # a dict emptied by deletions, and one whose only live entry is its last
    emptied = _with_holes({})
    last_only = {"a": 1, "b": 2, "c": 3}
    del last_only["a"], last_only["b"]
    for content in ([emptied], [last_only], [emptied, last_only]):
        _same_message({"role": "user", "content": content})


def test_messages_whose_role_or_content_was_deleted_or_put_back() -> None:
    block = {"type": "text", "text": "hello"}
    for first, second in (("role", "content"), ("content", "role")):
        for gone in (first, second):
            message: dict[str, Any] = {first: "user" if first == "role" else [block]}
            message[second] = "user" if second == "role" else [block]
            value = message[gone]
            del message[gone]  # two entries, one without a value: the name is missing
            assert _same_message(message) == _same_message(dict(message.items()))
            message[gone] = value  # back as a third entry
            _same_message(message)
            message[gone] = "changed"
            _same_message(message)


def test_nesting_at_the_depth_limit() -> None:
    for depth in range(195, 203):
        for make in (lambda inner: [inner], lambda inner: {"k": inner}):
            value: Any = "leaf"
            for _ in range(depth):
                value = make(value)
            _same_message({"role": "user", "content": value})
            _same_message({"role": "user", "content": [{"type": "text", "nested": value}]})


def test_keys_longer_than_the_first_buffer() -> None:
    # the encoder starts in a 2048-byte buffer: a message that needs more is redone by the
    # general code, which grows it; later messages of the same walk use the grown buffer
    wide = {f"field_{i}": "v" * 30 for i in range(80)}
    many = [{"type": "text", "text": "w" * 32} for _ in range(200)]
    messages: list[Any] = [
        {"role": "user", "content": [wide]},
        {"role": "user", "content": many},
        {"role": "user", "content": [{"type": "text", "text": "small"}]},
        {"role": "user", "content": [{"input": wide}]},
        {"role": "user", "content": [[wide, many]]},
    ]
    for message in messages:
        _same_message(message)
    _same_messages(messages)
    _same_messages(messages[::-1])


def test_the_role_and_content_names_as_equal_copies() -> None:
    role, content = "".join(["ro", "le"]), "".join(["con", "tent"])
    assert role is not sys.intern("role")
    copied = {content: [{"type": "text", "text": "hi"}], role: "user", "other": 1}
    literal = {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    assert _same_message(copied) == _same_message(literal)


names = st.sampled_from(
    [
        "role",
        "content",
        "type",
        "text",
        "tool_use_id",
        "cache_control",
        "\u00e9",
        "\u65e5",
        "x" * 40,
    ]
)
widths = st.sampled_from(WIDTHS)
strs = st.one_of(
    st.builds(lambda c, n: c * n, widths, st.integers(0, 40)),
    st.text(max_size=20),
    st.just(LONG),
)
leaves = st.one_of(
    strs,
    st.none(),
    st.booleans(),
    st.integers(-(1 << 64), 1 << 64),
    st.floats(allow_nan=True),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(names | strs, inner, max_size=4)
    ),
    max_leaves=16,
)
blocks = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, strs),
    st.builds(
        lambda i, t: {"type": "tool_result", "tool_use_id": f"toolu_{i:04d}", "content": t},
        st.integers(0, 9999),
        strs,
    ),
    st.builds(lambda t: {"type": "text", "text": t, "cache_control": {"type": "ephemeral"}}, strs),
    st.dictionaries(names, values, max_size=4),
    values,
)
messages = st.builds(
    lambda role, content, extra, flip, holes: _shape(role, content, extra, flip, holes),
    st.one_of(st.sampled_from(["user", "assistant"]), values),
    st.one_of(st.lists(blocks, max_size=4), values),
    st.dictionaries(names, values, max_size=2),
    st.booleans(),
    st.booleans(),
)


def _shape(
    role: Any, content: Any, extra: dict[str, Any], flip: bool, holes: bool
) -> dict[str, Any]:
    items = {"role": role, "content": content}
    if flip:
        items = {"content": content, "role": role}
    out = {**items, **{k: v for k, v in extra.items() if k not in items}}
    return _with_holes(out) if holes else out


@settings(max_examples=400, deadline=None)
@given(st.lists(messages, max_size=6), st.integers(0, 1 << 40), st.integers(0, 1 << 40))
def test_agent_shaped_messages_equal_the_twin(batch: list[Any], m: int, start: int) -> None:
    for message in batch:
        _same_message(message, m, start)
    _same_messages(batch)
