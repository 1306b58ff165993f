"""`cachescope._native.simcore` against its pure-Python twin (`cachescope.sim._simcore_py`).

Every C function must give exactly what its twin gives, on any parsed JSON (and on hostile
input: wrong types raise, never crash); and the simulator must answer the same with the compiled
core and without it (in process with a pure `Memo`, and in a `CACHESCOPE_PURE=1` subprocess).
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cachescope._native as native_loader
from cachescope import _tokens
from cachescope.sim import Simulator, VirtualClock
from cachescope.sim import _simcore_py as twin
from cachescope.sim._plan import Memo, plan

C = twin.native()
needs_c = pytest.mark.skipif(C is None, reason="simcore is not built (or CACHESCOPE_PURE=1)")

atoms = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    atoms,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=5), children, max_size=4),
    ),
    max_leaves=25,
)


def test_simcore_is_built_and_fresh() -> None:
    if native_loader.pure_requested():
        pytest.skip("CACHESCOPE_PURE is set")
    module = native_loader.load("simcore")
    assert module is not None, "run `make native`: src/cachescope/_native/simcore.c is not built"
    assert native_loader.source_hash("simcore") == module.SOURCE_HASH


@needs_c
@given(json_values)
def test_struct_hash_and_freeze_agree_with_the_twin(value: Any) -> None:
    digest = twin.struct_hash(value)
    assert C.struct_hash(value) == digest
    if digest is None:
        with pytest.raises(ValueError):
            C.freeze(value)
        with pytest.raises(ValueError):
            twin.freeze(value)
    else:
        frozen_c, frozen_py = C.freeze(value), twin.freeze(value)
        assert C.matches(frozen_c, value) and twin.matches(frozen_py, value)
        assert C.matches(frozen_py, copy.deepcopy(value))
        assert twin.matches(frozen_c, copy.deepcopy(value))


@needs_c
@given(json_values, json_values)
def test_matches_is_equality_of_structural_digests(a: Any, b: Any) -> None:
    if twin.struct_hash(a) is None:
        return
    frozen = C.freeze(a)
    same = twin.struct_hash(a) == twin.struct_hash(b)
    assert C.matches(frozen, b) == twin.matches(twin.freeze(a), b) == same


@given(json_values, json_values)
def test_equal_digests_mean_equal_json_bytes(a: Any, b: Any) -> None:
    # What the simulator relies on: the digest is at least as strict as orjson's bytes.
    ha, hb = twin.struct_hash(a), twin.struct_hash(b)
    if ha is not None and ha == hb:
        assert orjson.dumps(a) == orjson.dumps(b)


def test_digests_tell_apart_what_python_equality_confuses() -> None:
    for a, b in [
        (1, True),
        (0, False),
        (1, 1.0),
        (0.0, -0.0),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ([1], {"": 1}),
        ([], {}),
        ([[]], [{}]),
        ("1", 1),
        (None, "null"),
    ]:
        assert twin.struct_hash(a) != twin.struct_hash(b), (a, b)
        frozen = twin.freeze(a)
        assert not twin.matches(frozen, b)
        if C is not None:
            assert C.struct_hash(a) != C.struct_hash(b)
            assert not C.matches(C.freeze(a), b)


def test_unsupported_values_give_none_in_both() -> None:
    class Sub(dict):  # type: ignore[type-arg]
        pass

    for value in [(1, 2), Sub(), {1: "a"}, 2**64, "\ud800", [object()], {"a": {"b": set()}}]:
        assert twin.struct_hash(value) is None
        with pytest.raises(ValueError):
            twin.freeze(value)
        if C is not None:
            assert C.struct_hash(value) is None
            with pytest.raises(ValueError):
                C.freeze(value)


@needs_c
@pytest.mark.parametrize("leaf", ["x", 1, 1.5, None, True])
@pytest.mark.parametrize("depth", [199, 200, 201, 202, 1000])
def test_deep_nesting_is_refused_not_crashed(leaf: Any, depth: int) -> None:
    value: Any = leaf
    for _ in range(depth):
        value = [value]
    digest = twin.struct_hash(value)
    assert C.struct_hash(value) == digest
    if digest is not None:  # freeze and struct_hash refuse the same values
        assert C.matches(C.freeze(value), value) and twin.matches(twin.freeze(value), value)
        return
    with pytest.raises(ValueError):
        C.freeze(value)
    with pytest.raises(ValueError):
        twin.freeze(value)


@needs_c
@given(st.lists(json_values, max_size=5), st.lists(json_values, max_size=5))
def test_common_counts_leading_matches(a: list[Any], b: list[Any]) -> None:
    if any(twin.struct_hash(x) is None for x in a):
        return
    frozen_c = [C.freeze(x) for x in a]
    frozen_py = [twin.freeze(x) for x in a]
    expected = twin.common(frozen_py, b)
    assert C.common(frozen_c, b) == expected
    assert C.common(frozen_c, a) == len(a)


@needs_c
def test_hostile_arguments_raise_type_errors() -> None:
    with pytest.raises(TypeError):
        C.common((), [])
    with pytest.raises(TypeError):
        C.common([], "x")
    with pytest.raises(TypeError):
        C.matches(1)
    with pytest.raises(TypeError):
        C.digest_count(b"bytes", 0, 1.0, 3.6, 0.6, 0.5, 0.35, b".")
    with pytest.raises(TypeError):
        C.digest_count("x", 0, 1.0, 3.6, 0.6, 0.5, 0.35, ".")
    with pytest.raises(TypeError):
        C.digest_count("x", 0)
    with pytest.raises(OverflowError):
        C.digest_count("x", -1, 1.0, 3.6, 0.6, 0.5, 0.35, b".")
    # frozen forms that `freeze` never makes simply do not match
    assert not C.matches((..., 1, 2), {"a": 2})
    assert not C.matches((...,), [1])
    assert not C.matches(object(), "x")


ESTIMATOR = (
    1.0,
    _tokens.CHARS_PER_TOKEN,
    _tokens.PUNCT_WEIGHT,
    _tokens.NEWLINE_WEIGHT,
    _tokens.NON_ASCII_WEIGHT,
    _tokens._PUNCT,
)


@given(
    st.text(),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.sampled_from([1.0, _tokens.V2_FACTOR]),
)
@settings(max_examples=300)
def test_digest_count_equals_the_estimator_and_xxh3(text: str, seed: int, factor: float) -> None:
    import xxhash

    constants = (factor, *ESTIMATOR[1:])
    expected_py = twin.digest_count(text, seed, *constants)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        assert expected_py is None
        if C is not None:
            assert C.digest_count(text, seed, *constants) is None
        return
    counter = _tokens.EstimatingCounter(factor)
    assert expected_py == (xxhash.xxh3_64_intdigest(data, seed=seed), counter.count(text))
    if C is not None:
        assert C.digest_count(text, seed, *constants) == expected_py


def test_the_c_count_is_used_only_for_the_estimator_itself() -> None:
    class Custom(_tokens.EstimatingCounter):
        pass

    memo = Memo(_tokens.CLASSIC)
    assert (memo.estimator is not None) == (C is not None)
    assert Memo(Custom(1.0)).estimator is None
    assert Memo(_tokens.CLASSIC, native=None).estimator is None


# ---- the simulator with and without the compiled core -------------------------------------------


def _conversation_bodies() -> list[dict[str, Any]]:
    """Requests that exercise reuse, breakpoints moving, edits, odd values and errors."""
    tools = [
        {"name": "t", "description": "d " * 300, "input_schema": {"type": "object"}},
        {"name": "u", "description": "e", "input_schema": {"type": "object", "x": 1.5}},
    ]
    system = [{"type": "text", "text": "sys " * 2000, "cache_control": {"type": "ephemeral"}}]
    history: list[dict[str, Any]] = []
    bodies = []
    for turn in range(14):
        history.append({"role": "user", "content": f"question {turn} " + "words " * 200})
        messages = copy.deepcopy(history)
        messages[-1] = {
            "role": "user",
            "content": [
                {"type": "text", "text": messages[-1]["content"]},
                {"type": "text", "text": "tail", "cache_control": {"type": "ephemeral"}},
            ],
        }
        body: dict[str, Any] = {
            "model": "claude-sonnet-5",
            "max_tokens": 64,
            "tools": tools,
            "system": system,
            "messages": messages,
        }
        if turn == 5:  # an edited earlier message
            body["messages"][0] = {"role": "user", "content": "edited " + "words " * 200}
        if turn == 7:  # True where 1 was: a different message, not a reuse
            body["messages"][1] = {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "a", "name": "t", "input": {"flag": True}}],
            }
        if turn == 8:
            body["messages"][1] = {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "a", "name": "t", "input": {"flag": 1}}],
            }
        if turn == 9:
            body["cache_control"] = {"type": "ephemeral", "ttl": "5m"}
        if turn == 10:  # an error: empty text
            body["messages"][-1]["content"][0]["text"] = ""
        if turn == 11:  # a float and a big int in an extra field
            body["messages"][0]["metadata_x"] = [1.0, 2**70]
        bodies.append(body)
        history.append({"role": "assistant", "content": f"answer {turn} " + "more " * 150})
    return bodies


def _run(sim: Simulator, bodies: list[dict[str, Any]]) -> list[Any]:
    results: list[Any] = []
    for body in bodies:
        try:
            message = sim.handle_messages(copy.deepcopy(body))
            results.append((message["usage"], message["content"]))
        except Exception as error:
            results.append((type(error).__name__, str(error)))
    return results


@needs_c
def test_plans_agree_with_and_without_the_compiled_core() -> None:
    memo_c = Memo(_tokens.CLASSIC)
    memo_py = Memo(_tokens.CLASSIC, native=None)
    assert memo_c.native is not None
    for body in _conversation_bodies() * 2:
        outcomes = []
        for memo in (memo_c, memo_py):
            try:
                p = plan(copy.deepcopy(body), memo, "claude-sonnet-5")
                outcomes.append(
                    (p.cum, p.breakpoints, p.level_ends, p.level_seeds, p.packed, p.keys())
                )
            except Exception as error:
                outcomes.append((type(error).__name__, str(error)))
        assert outcomes[0] == outcomes[1]


def test_the_simulator_answers_the_same_under_cachescope_pure() -> None:
    bodies = _conversation_bodies()
    here = _run(Simulator(clock=VirtualClock(start=1_800_000_000.0)), bodies)
    code = (
        "import json, sys\n"
        "from tests.sim.test_simcore_native import _conversation_bodies, _run\n"
        "from cachescope.sim import Simulator, VirtualClock, _simcore_py\n"
        "assert _simcore_py.native() is None\n"
        "sim = Simulator(clock=VirtualClock(start=1_800_000_000.0))\n"
        "print(json.dumps(_run(sim, _conversation_bodies())))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "CACHESCOPE_PURE": "1", "PYTHONPATH": root},
        cwd=root,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(json.dumps(here))
    assert any(isinstance(r[0], str) for r in here)  # an error was compared too
    assert sum(1 for r in here if not isinstance(r[0], str) and r[0]["cache_read_input_tokens"])


def test_nan_and_infinity_floats_stay_exact() -> None:
    assert twin.struct_hash(math.nan) is not None
    assert not twin.matches(twin.freeze(math.nan), None)
    assert twin.struct_hash(float("inf")) != twin.struct_hash(float("-inf"))


_roles = st.sampled_from(["user", "assistant", "system", "", None, 1])
_texts = st.sampled_from(["hello there", "", "x", "A longer text, with punctuation!\n", 7, None])
_ccs = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["ephemeral", "persistent", 1])},
        optional={"ttl": st.sampled_from(["5m", "1h", "", None, "2h", 0, False, 300])},
    ),
    st.sampled_from(["ephemeral", [], 1]),
)


@st.composite
def _messages(draw: st.DrawFn) -> Any:
    role = draw(_roles)
    shape = draw(st.sampled_from(["str", "one", "one+extra", "two", "empty", "other"]))
    text = draw(_texts)
    cc = draw(_ccs)
    block: dict[str, Any] = {
        "type": draw(st.sampled_from(["text", "text", "image", 3])),
        "text": text,
    }
    if draw(st.booleans()):
        block["cache_control"] = cc
    content: Any
    if shape == "str":
        content = text
    elif shape == "one":
        content = [block]
    elif shape == "one+extra":
        content = [{**block, "citations": None}]
    elif shape == "two":
        content = [block, {"type": "text", "text": "second"}]
    elif shape == "empty":
        content = []
    else:
        content = draw(st.sampled_from([None, 5, {"type": "text"}, ["text"]]))
    message: Any = {"role": role, "content": content}
    if draw(st.booleans()):
        message = {"content": content, "role": role}
    if draw(st.integers(0, 9)) == 0:
        message = [message]
    return message


def _segment_or_error(message: Any, memo: Memo) -> Any:
    from cachescope.sim._plan import _message_segment

    try:
        return _message_segment(message, 3, memo)
    except Exception as error:
        return (type(error).__name__, str(error))


@needs_c
@given(st.lists(_messages(), min_size=1, max_size=4))
@settings(max_examples=300)
def test_the_c_text_message_fast_path_agrees_with_python(messages: list[Any]) -> None:
    memo_c = Memo(_tokens.CLASSIC, max_entries=3)
    memo_py = Memo(_tokens.CLASSIC, max_entries=3, native=None)
    assert memo_c.fast_text is not None and memo_py.fast_text is None
    for message in messages * 2:  # the second time from the text memo
        assert _segment_or_error(message, memo_c) == _segment_or_error(message, memo_py)
    for key in memo_c.texts.keys() | memo_py.texts.keys():  # the same texts memoized
        assert memo_c.texts.get(key, (0, {}))[1] == memo_py.texts.get(key, (0, {}))[1]


@needs_c
def test_text_message_rejects_malformed_memos() -> None:
    message = {"role": "user", "content": "hi"}
    estimator = Memo(_tokens.CLASSIC).estimator
    with pytest.raises(TypeError):
        C.text_message(message, (0, {}), (0, {}), 10)
    with pytest.raises(TypeError):
        C.text_message(message, (0,), (0, {}), 10, estimator)
    with pytest.raises(TypeError):
        C.text_message(message, (0, {}), (0, {}), 10, ())
    with pytest.raises(TypeError):
        C.text_message(message, (0, {"hi": "bad"}), (0, {}), 10, estimator)
    assert C.text_message("not a dict", (0, {}), (0, {}), 10, estimator) is None


@needs_c
def test_lookback_agrees_with_the_python_loop() -> None:
    import random

    import xxhash

    from cachescope.sim._simulator import lookback

    rng = random.Random(2026)
    for _ in range(400):
        tools_end, system_end, n = 3, 5, rng.randint(6, 60)
        keyed = bytes(rng.getrandbits(8) for _ in range((n + 3) * 8))
        all_keys = [
            xxhash.xxh3_64_intdigest(keyed[: (p + 2 + (p >= tools_end) + (p >= system_end)) * 8])
            for p in range(n)
        ]
        positions = sorted(rng.sample(range(n), rng.randint(1, 4)))
        breakpoints = [(p, rng.choice([300.0, 3600.0]), "x") for p in positions]
        entries: dict[int, Any] = {}
        for p in rng.sample(range(n), rng.randint(0, n)):
            expires = rng.choice([100.0, 200.0, 250, 1e18])
            entries[all_keys[p]] = (
                p,
                expires,
                rng.choice([0.0, 150.0, 300]),
                rng.choice([300.0, 3600]),
            )
        units = None
        if rng.random() < 0.3:
            units = sorted(rng.randint(0, n // 2) for _ in range(n))
        now = rng.choice([120.0, 200, 260.0])
        grace = rng.choice([0.0, 30, 100.0])
        window = rng.choice([1, 3, 20])
        same = rng.random() < 0.5
        keys_c: dict[int, int] = {}
        keys_py: dict[int, int] = {}
        args = (keyed, breakpoints, units, tools_end, system_end, entries, now, grace, window, same)
        found = C.lookback(*args, keys_c)
        assert found != -2
        assert found == lookback(*args, keys_py)
        assert keys_c == keys_py
    # numbers the C loop cannot compare exactly: it hands over to the Python loop
    big = {all_keys[0]: (1, 2**60, 0.0, 300.0)}
    assert C.lookback(keyed, [(0, 300.0, "5m")], None, 3, 5, big, 1.0, 0.0, 20, True, {}) == -2
    with pytest.raises(TypeError):
        C.lookback(keyed, [(0, 300.0)], None, 3, 5, {1: 2}, 1.0, 0.0, 20, True, {})
    with pytest.raises(IndexError):
        C.lookback(b"", [(9, 300.0, "5m")], None, 3, 5, {1: 2}, 1.0, 0.0, 20, True, {})
