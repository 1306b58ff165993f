"""`_native/blocks.c` (the C walk of `flatten_units`) against its pure-Python twins.

Every function must give exactly what its twin in `cachescope._blocks` gives, `flatten_units`
must produce the same blocks with and without it, and hostile input must raise, never crash.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

import cachescope._native as native
from cachescope import _blocks
from cachescope._blocks import LayeredBlocks, flatten_units

ROOT = Path(__file__).resolve().parents[2]
MODULE = native.load("blocks")
needs_module = pytest.mark.skipif(MODULE is None, reason="no compiled accelerators")

# text with every width CPython stores (latin-1, UCS-2, UCS-4) and lone surrogates
texts = st.text(
    alphabet=st.one_of(
        st.characters(max_codepoint=0x7F),
        st.characters(min_codepoint=0x80, max_codepoint=0xFF),
        st.characters(min_codepoint=0x100, max_codepoint=0xFFFF),
        st.characters(min_codepoint=0x10000),
    ),
    max_size=80,
)
long_texts = st.builds(lambda t, n: t * n, texts, st.integers(1, 40))
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
        texts,
        long_texts,
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=20,
)


def test_the_blocks_module_is_built_and_fresh() -> None:
    if native.pure_requested():
        pytest.skip("CACHESCOPE_PURE is set")
    assert MODULE is not None, "run `make native`: src/cachescope/_native/blocks.c is not built"
    assert native.source_hash("blocks") == MODULE.SOURCE_HASH
    assert _blocks._native is MODULE


@needs_module
@given(st.one_of(texts, long_texts, st.binary(max_size=3000)), st.integers(0, 2**64 - 1))
def test_xxh3_equals_the_twin_and_the_xxhash_package(data: str | bytes, seed: int) -> None:
    expected = _blocks._xxh3_py(data, seed)
    assert MODULE.xxh3_64(data, seed) == expected
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    assert expected == xxhash.xxh3_64_intdigest(raw, seed=seed)


@needs_module
def test_xxh3_of_long_inputs_every_length_around_the_vector_blocks() -> None:
    # the AVX2 path starts above 240 bytes; stripes are 64 bytes, blocks 1024
    data = bytes(range(256)) * 40
    for size in [*range(230, 300), *range(1000, 1100), 4096, 4097, 10_239, 10_240]:
        for seed in (0, 1, 2**63 + 5):
            assert MODULE.xxh3_64(data[:size], seed) == xxhash.xxh3_64_intdigest(
                data[:size], seed=seed
            ), (size, seed)


@needs_module
@settings(max_examples=300)
@given(json_values)
def test_value_key_equals_the_twin(value: Any) -> None:
    assert MODULE.value_key(value) == _blocks._value_key_py(value)


@needs_module
@settings(max_examples=200)
@given(
    st.dictionaries(st.sampled_from(["role", "content", "id", "x"]), json_values, max_size=4),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
)
def test_message_key_equals_the_twin(message: dict[str, Any], m: int, start: int) -> None:
    assert MODULE.message_key(message, m, start) == _blocks._message_key_py(message, m, start)


@needs_module
def test_keys_tell_apart_what_json_tells_apart() -> None:
    key = MODULE.value_key
    distinct = [
        0,
        0.0,
        -0.0,
        False,
        None,
        "",
        "0",
        [],
        {},
        [0],
        {"a": 0},
        {"a": "0"},
        ["a", "b"],
        ["ab"],
        {"a": 1, "b": 2},
        {"b": 2, "a": 1},  # key order is part of the bytes the cache sees
        "é",
        "e\u0301",
        "\U0001f600",
        "\ud83d\ude00",  # two lone surrogates, not the emoji
        "x" * 33,
        "x" * 32 + "y",
    ]
    keys = [key(value) for value in distinct]
    assert None not in keys
    assert len(set(keys)) == len(keys)
    # equal values, different objects: equal keys
    assert key({"a": ["x" * 100, 1.5]}) == key(json.loads('{"a": ["' + "x" * 100 + '", 1.5]}'))


@needs_module
def test_keys_at_the_short_string_boundary_of_every_width() -> None:
    # a str of at most 32 bytes of storage enters as a one-byte header and its bytes, a longer
    # one as a header word and its xxh3: both sides of the line, in 1, 2 and 4 bytes per code
    # point, and the 1-3 byte copies, equal their twin and stay apart
    values: list[Any] = []
    for char, width in (("a", 1), ("\u00e9", 1), ("\u0101", 2), ("\U0001f600", 4)):
        for size in (1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 40):
            if size % width == 0:
                values.append(char * (size // width))
                values.append("b" + char * (size // width - 1))
    for value in values:
        assert MODULE.value_key(value) == _blocks._value_key_py(value), value
        assert MODULE.value_key([value, value]) == _blocks._value_key_py([value, value])
    keys = [MODULE.value_key(value) for value in values]
    assert len(set(keys)) == len(set(values))


@needs_module
def test_message_keys_read_role_and_content_by_name_not_by_object() -> None:
    role, content = "".join(["ro", "le"]), "".join(["con", "tent"])  # not the interned names
    assert role is not sys.intern("role") and content is not sys.intern("content")
    copied = {role: "user", content: [{"type": "text", "text": "hi " * 20}]}
    literal = {"role": "user", "content": [{"type": "text", "text": "hi " * 20}]}
    assert MODULE.message_key(copied, 3, 7) == MODULE.message_key(literal, 3, 7)
    assert MODULE.message_key(copied, 3, 7) == _blocks._message_key_py(copied, 3, 7)
    # a name that only looks like "role" is another key, and other keys are left out
    with_role = MODULE.message_key({"role": "user", "content": "x"}, 0, 0)
    for other in ("rol\u00e9", "roles", "rol", "Role"):
        odd = {other: "user", "content": "x"}
        assert MODULE.message_key(odd, 0, 0) == _blocks._message_key_py(odd, 0, 0)
        assert MODULE.message_key(odd, 0, 0) == MODULE.message_key({"content": "x"}, 0, 0)
        assert MODULE.message_key(odd, 0, 0) != with_role


@needs_module
def test_values_that_are_not_plain_json_get_no_key() -> None:
    class Text(str):
        pass

    deep: Any = []
    for _ in range(250):
        deep = [deep]
    for value in [
        (1, 2),
        Text("a"),
        {"a": Text("b")},
        {1: "a"},
        2**64,
        -(2**63) - 1,
        LayeredBlocks(["a"]),
        object(),
        b"bytes",
        deep,
    ]:
        assert MODULE.value_key(value) is None, value
        assert _blocks._value_key_py(value) is None, value
    assert MODULE.value_key(2**63 - 1) == _blocks._value_key_py(2**63 - 1)
    assert MODULE.value_key(-(2**63)) == _blocks._value_key_py(-(2**63))
    # a message whose keys are not all exact str is not keyed (one could equal "role")
    assert MODULE.message_key({1: "x", "role": "user"}, 0, 0) is None
    assert MODULE.message_key(["role"], 0, 0) is None


messages_lists = st.lists(
    st.one_of(
        st.dictionaries(st.sampled_from(["role", "content", "id"]), json_values, max_size=3),
        st.builds(
            lambda items, names: {"role": "user", "content": LayeredBlocks(items, names)},
            st.lists(json_values, max_size=3),
            st.lists(st.sampled_from(["history", "user", None]), max_size=3),
        ),
        st.just({"role": "user", "content": [{1: "x"}]}),  # not keyable: a key that is not str
        json_values,
    ),
    max_size=6,
)


@needs_module
@settings(max_examples=200)
@given(messages_lists, messages_lists, st.binary(max_size=20))
def test_message_keys_equal_the_twin(messages: list[Any], before: list[Any], junk: bytes) -> None:
    previous, _ = MODULE.message_keys(before, b"")
    assert previous == _blocks._message_keys_py(before)[0]
    for earlier in (b"", previous, previous + junk, junk):
        got = MODULE.message_keys(messages, earlier)
        assert got == _blocks._message_keys_py(messages, earlier)
        keys, same = got
        # each key is message_key at block 0, up to the first message that has none
        expected = []
        for m, message in enumerate(messages):
            key = MODULE.message_key(message, m, 0)
            if key is None:
                break
            expected.append(key)
        assert [
            int.from_bytes(keys[i : i + 8], "little") for i in range(0, len(keys), 8)
        ] == expected
        assert keys[: 8 * same] == earlier[: 8 * same]
        assert (
            same == len(keys) // 8
            or keys[8 * same : 8 * same + 8] != earlier[8 * same : 8 * same + 8]
        )


@needs_module
def test_a_layered_content_is_keyed_with_its_layer_names() -> None:
    blocks = [{"type": "text", "text": "Earlier answer. " * 20}]
    history = {"role": "user", "content": LayeredBlocks(blocks, ["history"])}
    newest = {"role": "user", "content": LayeredBlocks(blocks, ["user"])}
    plain = {"role": "user", "content": list(blocks)}
    keys = [MODULE.message_key(message, 2, 5) for message in (history, newest, plain)]
    assert None not in keys and len(set(keys)) == 3  # the layers are part of the key
    for message in (history, newest, plain):
        assert MODULE.message_key(message, 2, 5) == _blocks._message_key_py(message, 2, 5)
    broken = LayeredBlocks(blocks, ["history"])
    broken.layer_names = ("history",)  # type: ignore[assignment]  # not a list: no key
    assert MODULE.message_key({"role": "user", "content": broken}, 0, 0) is None
    assert _blocks._message_key_py({"role": "user", "content": broken}, 0, 0) is None
    del broken.layer_names
    assert MODULE.message_key({"role": "user", "content": broken}, 0, 0) is None
    assert _blocks._message_key_py({"role": "user", "content": broken}, 0, 0) is None


@needs_module
def test_hostile_arguments_raise_instead_of_crashing() -> None:
    with pytest.raises(TypeError):
        MODULE.xxh3_64(3)
    with pytest.raises(TypeError):
        MODULE.xxh3_64("a", "seed")
    with pytest.raises(OverflowError):
        MODULE.xxh3_64("a", -1)
    with pytest.raises(ValueError):
        MODULE.message_key({}, -1, 0)
    with pytest.raises(TypeError):
        MODULE.message_key({}, "0", 0)
    with pytest.raises(TypeError):
        MODULE.message_keys((), b"")
    with pytest.raises(TypeError):
        MODULE.message_keys([], "")
    with pytest.raises(TypeError):
        MODULE.set_layered(dict)
    walk = MODULE.flatten_messages
    with pytest.raises(TypeError):
        walk((), {}, [], bytes(8), print)
    with pytest.raises(TypeError):
        walk([], [], [], bytes(8), print)
    with pytest.raises(TypeError):
        walk([], {}, [], bytes(8), None)
    with pytest.raises(ValueError):
        walk([], {}, [1], bytes(8), print)  # head_tokens must hold len(head) + 1 counts
    message = {"role": "user", "content": "hi"}
    bad_entries: list[Any] = [
        None,
        (),
        ((), False, False, ()),
        ([], False, False, (), b"", ()),
        ((1,), False, False, (), b"", ()),  # one block, no token count
        ((1,), False, False, (), bytes(8), (1,)),  # mark past the unit
        ((1,), False, False, (), bytes(8), ("0",)),
    ]
    for entry in bad_entries:
        with pytest.raises(TypeError):
            walk([message], {}, [], bytes(8), lambda *args, e=entry: e)

    def boom(*args: Any) -> Any:
        raise KeyError("from slow")

    with pytest.raises(KeyError, match="from slow"):
        walk([message], {}, [], bytes(8), boom)


@needs_module
def test_the_walk_survives_callbacks_that_change_its_inputs() -> None:
    messages: list[Any] = [{"role": "user", "content": f"m{i}"} for i in range(5)]
    head: list[Any] = []
    calls: list[int] = []

    def slow(message: Any, m: int, start: int, key: Any) -> Any:
        calls.append(m)
        if m == 1:
            del messages[3:]  # the list shrinks under the walk
        return ((message,), False, False, (), (7).to_bytes(8, sys.byteorder), (0,))

    blocks, _units, marks, tokens, flags, keys, entries = MODULE.flatten_messages(
        messages, {}, head, bytes(8), slow
    )
    assert calls == [0, 1, 2]
    assert blocks == messages and marks == [0, 1, 2] and flags == 0
    assert memoryview(tokens).cast("q").tolist() == [0, 7, 14, 21]
    assert len(keys) == 16 * len(entries) == 16 * 3

    # an earlier walk's entries are taken for equal keys at the same place, and only then
    again = MODULE.flatten_messages(messages, {}, head, bytes(8), print, keys, entries)
    assert [x is y for x, y in zip(again[6], entries)] == [True, True, True]
    changed = [messages[0], {"role": "user", "content": "other"}, messages[2]]
    calls.clear()
    after = MODULE.flatten_messages(changed, {}, head, bytes(8), slow, keys, entries)
    assert calls == [1]
    assert after[6][0] is entries[0] and after[6][2] is entries[2]
    with pytest.raises(TypeError):
        MODULE.flatten_messages(messages, {}, head, bytes(8), slow, keys, entries[:2])
    with pytest.raises(TypeError):
        MODULE.flatten_messages(messages, {}, head, bytes(8), slow, keys, None)

    def grow_head(*args: Any) -> Any:
        head.append(1)
        return ((1,), False, False, (), bytes(8), ())

    with pytest.raises(RuntimeError):
        MODULE.flatten_messages([{"role": "user"}], {}, head, bytes(8), grow_head)


@needs_module
@settings(max_examples=300)
@given(texts, texts, texts, st.integers(0, 100))
def test_common_prefix_and_suffix_equal_their_twins(
    common: str, left: str, right: str, floor: int
) -> None:
    from cachescope import stability

    for a, b in [(common + left, common + right), (left + common, right + common), (left, right)]:
        assert MODULE.common_prefix(a, b) == stability._common_prefix_length_py(a, b)
        assert MODULE.common_suffix(a, b, floor) == stability._common_suffix_length_py(a, b, floor)
        assert MODULE.common_suffix(a, b) == stability._common_suffix_length_py(a, b, 0)


lines = st.text(alphabet=st.sampled_from("ab\n\t\r é€😀"), max_size=160)


@needs_module
@settings(max_examples=400)
@given(lines, lines, lines, st.integers(0, 70))
def test_change_window_equals_its_twin(common: str, left: str, right: str, window: int) -> None:
    from cachescope import stability

    for old, new in [
        (common + left + common, common + right + common),
        (common + left, common + right),
        (left, right),
        (common, common),
        (common + left, common),
    ]:
        assert MODULE.change_window(old, new, window) == stability._change_window_py(
            old, new, window
        ), (old, new, window)


@needs_module
def test_change_window_cases_and_bad_arguments() -> None:
    from cachescope import stability

    old = "first line\n\tsecond line with a value of 41 and more text after it, far beyond\nlast"
    new = old.replace("41", "42")
    found = MODULE.change_window(old, new, 10)
    assert found == stability._change_window_py(old, new, 10)
    offset, line, column, old_window, old_span, new_window, new_span = found
    assert offset == old.index("41") + 1
    assert (line, column) == (2, old.index("41") - old.index("\n") + 1)
    assert old_window.startswith("…") and old_window.endswith("…") and "\t" not in old_window
    assert (
        old_window[old_span[0] : old_span[1]] == "1"
        and new_window[new_span[0] : new_span[1]] == "2"
    )
    with pytest.raises(TypeError):
        MODULE.change_window("a", b"a", 3)
    with pytest.raises(ValueError):
        MODULE.change_window("a", "b", -1)


@needs_module
@given(st.lists(st.integers(0, 3), max_size=12), st.lists(st.integers(0, 3), max_size=12))
def test_first_different_equals_its_twin(left: list[int], right: list[int]) -> None:
    from cachescope import stability

    pool = [object() for _ in range(4)]
    a, b = [pool[i] for i in left], [pool[i] for i in right]
    assert MODULE.first_different(a, b) == stability._first_different_py(a, b)
    assert MODULE.first_different(a, a[:]) is None
    # identity, not equality
    assert MODULE.first_different([[1]], [[1]]) == 0
    with pytest.raises(TypeError):
        MODULE.first_different((1,), [1])


@needs_module
def test_common_affixes_across_string_widths_and_bad_arguments() -> None:
    # the same characters stored 1, 2 and 4 bytes wide compare equal
    for wide in ("\u0100", "\U0001f600"):
        a, b = "abcdefghij" * 3 + "x", "abcdefghij" * 3 + wide
        assert MODULE.common_prefix(a, b) == 30
        assert MODULE.common_suffix("x" + a[:-1], wide + a[:-1]) == 30
    with pytest.raises(TypeError):
        MODULE.common_prefix("a", b"a")
    with pytest.raises(TypeError):
        MODULE.common_suffix("a", "a", "0")
    with pytest.raises(ValueError):
        MODULE.common_suffix("a", "a", -1)
    with pytest.raises(TypeError):
        MODULE.flatten_messages([], {}, [], "not bytes", print)
    with pytest.raises(AttributeError):  # head blocks are read for their tokens
        MODULE.flatten_messages([], {}, [object()], None, print)


# --------------------------------------------------------------------------------------------
# flatten_units with and without the C walk


def _blocks_of(params: dict[str, Any]) -> tuple[Any, ...]:
    flat, units = flatten_units(params)
    fields = [
        (
            b.index,
            b.level,
            b.path,
            b.kind,
            b.role,
            b.hash,
            b.tokens,
            b.text,
            b.cache_control,
            b.layer,
        )
        for b in flat.blocks
    ]
    assert [b for unit in units for b in unit] == flat.blocks
    return (flat.model, fields, flat.settings, flat.top_level_cache_control, len(units))


content_blocks = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, st.one_of(texts, long_texts)),
    st.builds(lambda t: {"type": "text", "text": t, "cache_control": {"type": "ephemeral"}}, texts),
    st.builds(
        lambda t, i: {"type": "tool_result", "tool_use_id": i, "content": t}, long_texts, texts
    ),
    st.builds(
        lambda i, v: {"type": "tool_use", "id": i, "name": "f", "input": v}, texts, json_values
    ),
    st.just({"type": "image", "source": {"type": "base64", "data": "AAAA"}}),
    st.just({"type": "document", "citations": {"enabled": True}, "source": {"data": "x"}}),
    texts,
    json_values,
)
messages_strategy = st.lists(
    st.one_of(
        st.builds(
            lambda r, c: {"role": r, "content": c},
            st.sampled_from(["user", "assistant"]),
            st.one_of(texts, st.lists(content_blocks, max_size=3)),
        ),
        st.builds(lambda c: {"content": c}, st.lists(content_blocks, max_size=2)),
        st.builds(
            lambda r, c: {"role": r, "content": LayeredBlocks(c, ["history"])},
            st.just("user"),
            st.lists(content_blocks, min_size=1, max_size=2),
        ),
        json_values,
    ),
    max_size=8,
)


@needs_module
@settings(max_examples=150, deadline=None)
@given(messages_strategy, st.booleans())
def test_flatten_units_gives_the_same_blocks_with_and_without_the_c_walk(
    messages: list[Any], with_head: bool
) -> None:
    params: dict[str, Any] = {"model": "claude-sonnet-5", "messages": messages}
    if with_head:
        params["tools"] = [{"name": "t", "input_schema": {"type": "object"}}]
        params["system"] = "Be brief."
    try:
        pure = _pure(params)
    except TypeError:  # e.g. content that is an int: both paths refuse it
        with pytest.raises(TypeError):
            _blocks_of(params)
        return
    assert _blocks_of(params) == pure
    assert _blocks_of(params) == pure  # second call: every message from the memo
    flat, _ = flatten_units(params)
    if flat.marked is not None:
        assert flat.marked == [i for i, b in enumerate(flat.blocks) if b.cache_control is not None]
        totals = memoryview(flat.cumulative or b"").cast("q").tolist()
        running = [0]
        for block in flat.blocks:
            running.append(running[-1] + block.tokens)
        assert totals == running


def _pure(params: dict[str, Any]) -> tuple[Any, ...]:
    saved = _blocks._native
    _blocks._native = None
    try:
        return _blocks_of(params)
    finally:
        _blocks._native = saved


@needs_module
def test_units_keep_their_identity_across_calls_and_copies() -> None:
    long = "Some history text that is long enough to be hashed. " * 20
    params = {
        "model": "claude-sonnet-5",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": long + str(i)}]} for i in range(6)
        ],
    }
    copy = json.loads(json.dumps(params))
    _, first = flatten_units(params)
    _, again = flatten_units(copy)
    assert all(x is y for x, y in zip(first, again))
    copy["messages"][3]["content"][0]["text"] += "!"
    _, changed = flatten_units(copy)
    assert [x is y for x, y in zip(first, changed)] == [True, True, True, False, True, True]


def test_pure_and_native_processes_agree_on_compare_and_fingerprint() -> None:
    code = (
        f"import json, sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from benchmarks.bench_compare import build_request, change_one_byte\n"
        "from cachescope.stability import compare, fingerprint\n"
        "from cachescope._native import load\n"
        "a = build_request(); b = change_one_byte(a)\n"
        "print(json.dumps([load('blocks') is None, compare(a, b).to_dict(),\n"
        "    compare(a, json.loads(json.dumps(b))).to_dict(),\n"
        "    fingerprint(a).to_dict(include_text=True)]))\n"
    )
    results = []
    for pure in ("1", "0"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, "CACHESCOPE_PURE": pure},
            check=False,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        results.append(json.loads(out.stdout))
    (pure_off, *pure_results), (native_off, *native_results) = results
    assert pure_off is True
    if native_off:
        pytest.skip("no compiled accelerators")
    assert pure_results == native_results
    assert pure_results[0]["index"] == 250
