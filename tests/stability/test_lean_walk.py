"""`flatten_lean` (the C `lean_messages` walk that `compare` reads two requests with) must give
the numbers and blocks that `flatten_units` gives, whatever the prior walk and the memo hold.

The lean walk returns only numbers for the messages (keys, first blocks, cumulative tokens,
breakpoints, flags); blocks are fetched from the memo, or rebuilt, when asked for. A message
whose key equals the prior walk's key of the same message takes the prior's numbers.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from test_fast_path import _mutations, _request

from cachescope import _blocks
from cachescope._blocks import LayeredBlocks, flatten_lean, flatten_units
from cachescope._tokens import counter_for
from cachescope.stability import _first_divergence, _Side, clear_memos, compare

pytestmark = pytest.mark.skipif(_blocks._native is None, reason="the C walk is not built")

CLASSIC = counter_for("classic")


class _Text(str):
    """A str subclass: plain JSON to orjson, not to the C key (which then leaves it to Python)."""


def _reference(params: dict[str, Any]) -> tuple[list[Any], list[int], list[int], Any]:
    """Blocks, cumulative token counts, breakpoints and settings, by the pure-Python walk."""
    native = _blocks._native
    _blocks._native = None
    try:
        flat, _ = flatten_units(params, CLASSIC, {})
    finally:
        _blocks._native = native
    cumulative = [0]
    for block in flat.blocks:
        cumulative.append(cumulative[-1] + block.tokens)
    marked = [b.index for b in flat.blocks if b.cache_control is not None]
    return flat.blocks, cumulative, marked, flat.settings


def _check(lean: _blocks.LeanRequest, params: dict[str, Any]) -> None:
    blocks, cumulative, marked, settings = _reference(params)
    assert len(lean) == len(blocks)
    assert list(lean.cumulative) == cumulative
    assert lean.marked == marked
    # the TTL codes name each breakpoint's TTL, or leave it to the block (0)
    names = {1: "5m", 2: "1h"}
    for i, code in zip(lean.marked, lean.walk[7]):
        assert code == 0 or names[code] == blocks[i].ttl, (i, code, blocks[i].cache_control)
    assert len(lean.walk[7]) == len(marked)
    assert lean.settings == settings
    # every block, looked up in any order (memo entries or rebuilt ones)
    order = list(range(len(blocks)))
    random.Random(len(blocks)).shuffle(order)
    for i in order:
        assert lean.block(i) == blocks[i], i
    starts = list(lean.starts)
    assert starts[-1] == len(blocks)
    assert starts == sorted(starts)


def _walk(*requests: dict[str, Any]) -> list[_blocks.LeanRequest]:
    leans = flatten_lean([(params, CLASSIC, {}) for params in requests])
    assert leans is not None
    return leans


def test_lean_walk_matches_the_pure_walk_over_chains_of_edits() -> None:
    rng = random.Random(11)
    base = _request()
    previous = copy.deepcopy(base)
    for step in range(60):
        params = _mutations(rng, previous) if rng.random() < 0.8 else copy.deepcopy(base)
        if step % 7 == 0:
            clear_memos()  # no prior walk, no memo
        first, second = _walk(previous, params)
        _check(first, previous)
        _check(second, params)
        previous = params


def test_blocks_are_rebuilt_when_the_memo_was_cleared_after_the_walk() -> None:
    params = _request()
    (lean,) = _walk(params)
    clear_memos()
    _check(lean, params)


def test_messages_that_cannot_be_keyed_take_the_slow_path() -> None:
    params = _request()
    params["messages"][2]["content"] = LayeredBlocks(
        [{"type": "text", "text": "layered " * 40}], ["history"]
    )
    params["messages"][4] = {"role": "user", "content": ({"type": "text", "text": "a tuple"},)}
    params["messages"][5]["content"] = [{"type": "text", "text": _Text("x" * 50)}]
    other = copy.deepcopy(params)
    other["messages"][4] = {"role": "user", "content": ({"type": "text", "text": "a tuple"},)}
    first, second = _walk(params, other)
    _check(first, params)
    _check(second, other)
    assert first.key_of(4) is None and first.key_of(5) is None  # compared block by block
    assert first.key_of(3) is not None
    assert (
        _first_divergence(_Side.from_lean(first, "classic"), _Side.from_lean(second, "classic"))
        is None
    )


def test_a_prior_of_another_request_never_lends_its_numbers_to_other_content() -> None:
    rng = random.Random(3)
    base = _request()
    for _ in range(30):
        a = _mutations(rng, base)
        b = _mutations(rng, _mutations(rng, base))
        first, second = _walk(a, b)  # b walked with a as its prior
        _check(first, a)
        _check(second, b)
        again = _walk(b)[0]  # and with b's own walk as the counter's last
        assert again.walk[:5] == second.walk[:5]


def test_a_malformed_prior_is_refused() -> None:
    native = _blocks._native
    params = _request()
    (lean,) = _walk(params)
    head, memo = lean.head, _blocks._message_memo(CLASSIC)

    def slow(*args: Any) -> Any:
        raise AssertionError("every message is in the memo")

    native.lean_messages(params["messages"], memo, head, slow, lean.walk)
    for bad in (
        (),
        lean.walk[:5],
        (b"x", *lean.walk[1:]),
        (lean.walk[0], lean.walk[1][:-8], *lean.walk[2:]),
        (*lean.walk[:2], b"", *lean.walk[3:]),
        [*lean.walk],
    ):
        with pytest.raises(TypeError, match="prior"):
            native.lean_messages(params["messages"], memo, head, slow, bad)


def test_first_different_key() -> None:
    native = _blocks._native
    params = _request()
    other = copy.deepcopy(params)
    other["messages"][5]["content"][0]["content"] += "!"
    first, second = _walk(params, other)
    assert native.first_different_key(first.walk[0], second.walk[0]) == 5
    assert native.first_different_key(first.walk[0], first.walk[0]) is None
    assert native.first_different_key(first.walk[0], first.walk[0][:32]) is None
    unkeyed = bytes(first.walk[0][:16]) + (1).to_bytes(8, "little") + (0).to_bytes(8, "little")
    assert native.first_different_key(unkeyed, unkeyed) == 1


def test_compare_reads_params_through_the_lean_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    a = _request()
    b = copy.deepcopy(a)
    b["messages"][5]["content"][0]["content"] = (
        "changed " + b["messages"][5]["content"][0]["content"]
    )
    seen: list[int] = []
    real = _blocks.flatten_lean

    def spy(requests: Any) -> Any:
        seen.append(len(requests))
        return real(requests)

    monkeypatch.setattr("cachescope.stability.flatten_lean", spy)
    diff = compare(a, b)
    assert seen == [2]
    assert diff.cause == "messages_changed" and diff.path == "messages.5.content.0"


def test_images_and_citations_in_messages_reach_the_settings() -> None:
    params = _request()
    params["speed"] = "fast"
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
    document = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "a note " * 20},
        "citations": {"enabled": True},
    }
    plain = copy.deepcopy(params)
    params["messages"][3] = {"role": "user", "content": [image, {"type": "text", "text": "see"}]}
    params["messages"][6] = {"role": "user", "content": [document]}
    first, second = _walk(plain, params)
    _check(first, plain)
    _check(second, params)
    assert second.settings["messages"]["images"] is True
    assert list(second.settings["system"]) == ["citations", "speed"]


def _sharing(rng: random.Random, params: dict[str, Any]) -> dict[str, Any]:
    """The next render of a session: a new list holding the same message objects, one message
    replaced by an edited copy, maybe one appended or the last dropped."""
    messages = list(params["messages"])
    m = rng.randrange(len(messages)) if messages else 0
    if messages and rng.random() < 0.5:
        edited = copy.deepcopy(messages[m])
        content = edited["content"]
        if isinstance(content, str):
            edited["content"] = content + "!"
        else:
            edited["role"] = "assistant" if edited["role"] == "user" else "user"
        messages[m] = edited
    if rng.random() < 0.3:
        messages.append({"role": "user", "content": f"and then {rng.random()}"})
    elif rng.random() < 0.2 and len(messages) > 1:
        messages.pop()
    return {**params, "messages": messages}


def test_requests_sharing_messages_are_walked_in_lockstep_to_the_same_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    native = _blocks._native
    pair = native.lean_pair

    def spy(*args: Any) -> Any:
        calls.append("pair")
        return pair(*args)

    monkeypatch.setattr(native, "lean_pair", spy)
    rng = random.Random(7)
    previous = _request()
    for step in range(40):
        params = _sharing(rng, previous)
        if step % 9 == 0:
            clear_memos()
        first, second = _walk(previous, params)
        _check(first, previous)
        _check(second, params)
        previous = params
    assert len(calls) == 40
    # requests that share nothing are walked one after the other
    _walk(_request(), _request())
    assert len(calls) == 40


def test_lean_pair_gives_what_two_walks_give() -> None:
    native = _blocks._native
    rng = random.Random(5)
    base = _request()
    earlier = None
    for _ in range(30):
        a = _mutations(rng, base)
        b = _sharing(rng, a) if rng.random() < 0.5 else _mutations(rng, a)
        left = _blocks.LeanRequest(a, CLASSIC, {})
        right = _blocks.LeanRequest(b, CLASSIC, {})
        prior = earlier if rng.random() < 0.7 else None
        arguments = [left.messages, left._memo, left.head, left._slow]
        other = [right.messages, right._memo, right.head, right._slow]
        walk_a, walk_b = native.lean_pair(*arguments, prior, *other, None)
        alone_a = native.lean_messages(*arguments, *([prior] if prior else []))
        assert walk_a == alone_a
        assert walk_b == native.lean_messages(*other, alone_a)
        # and b against a prior of its own instead of a
        _, walk_b = native.lean_pair(*arguments, prior, *other, walk_a)
        assert walk_b == native.lean_messages(*other, walk_a)
        earlier = walk_b
    with pytest.raises(TypeError, match="prior"):
        native.lean_pair(*arguments, (), *other, None)


def test_compare_through_the_lean_walk_equals_the_general_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every argument and shape `compare` knows, lean path against `flatten_units` sides."""
    from cachescope import stability

    rng = random.Random(13)
    base = _request()
    for step in range(80):
        a = _mutations(rng, base) if rng.random() < 0.3 else copy.deepcopy(base)
        b = _sharing(rng, a) if rng.random() < 0.4 else _mutations(rng, a)
        if rng.random() < 0.25:  # automatic caching (a top-level cache_control)
            a["cache_control"] = {"type": "ephemeral"}
            b["cache_control"] = rng.choice(
                [{"type": "ephemeral"}, {"type": "ephemeral", "ttl": "1h"}]
            )
        if rng.random() < 0.15:
            b["model"] = "claude-opus-4-5"
        options: dict[str, Any] = {}
        if rng.random() < 0.5:
            options["gap_seconds"] = rng.choice([10.0, 400.0, 4000.0])
        if rng.random() < 0.3:
            options["ttl"] = rng.choice(["5m", "1h"])
        if rng.random() < 0.3:
            options["server_reason"] = rng.choice(
                ["messages_changed", "system_changed", "unavailable", {"type": "tools_changed"}]
            )
        if rng.random() < 0.3:
            options["minimum"] = rng.choice([0, 1024, 10**6])
        got = compare(a, b, **options).to_dict()
        with monkeypatch.context() as patch:
            patch.setattr(stability, "_lean_pair", lambda a, b: None)
            assert got == compare(a, b, **options).to_dict(), (step, options)


def test_unusual_ttls_are_read_from_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    from cachescope import stability

    for ttl in ("1h", "", None, 300, "2h", False):
        params = _request()
        block = params["messages"][5]["content"][0]
        block["cache_control"] = {"type": "ephemeral", "ttl": ttl}
        params["system"][0]["cache_control"] = {"type": "ephemeral", "ttl": ttl}
        other = copy.deepcopy(params)
        other["messages"][7]["content"][0]["text"] += "!"
        first, second = _walk(params, other)
        _check(first, params)
        _check(second, other)
        got = compare(params, other, gap_seconds=400.0).to_dict()
        with monkeypatch.context() as patch:
            patch.setattr(stability, "_lean_pair", lambda a, b: None)
            assert got == compare(params, other, gap_seconds=400.0).to_dict(), ttl


def test_a_side_read_from_a_lean_walk_answers_like_a_flat_one() -> None:
    params = _request()
    params["cache_control"] = {"type": "ephemeral", "ttl": "1h"}  # an automatic breakpoint too
    from cachescope import stability

    found = stability._lean_pair(params, params)  # with the model's own token counter
    assert found is not None
    lean, _, tokenizer, _ = found
    side = _Side.from_lean(lean, tokenizer)
    flat = _Side.from_flat(params)
    assert side.breakpoints() == flat.breakpoints()
    assert len(side) == len(flat)
    for i in range(len(flat)):
        assert side.hash(i) == flat.hash(i) and side.tokens(i) == flat.tokens(i)
    assert side.token_sum(3, 40) == flat.token_sum(3, 40)
