"""The client's request fingerprint and record numbers equal the straightforward computations.

`fingerprint_blocks` memoizes entries per unit and prefix key, `pricing._costs` looks the rates up
once, `format_time` memoizes the second: each is checked here against the plain definition
(flatten + prefix_keys + one dict per block; `pricing.cost` / `cost_without_cache`; datetime).
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachescope import _client_record, pricing
from cachescope import blocks as _blocks
from cachescope._client_record import FingerprintCache, fingerprint_blocks
from cachescope.blocks import LayeredBlocks, flatten, prefix_keys
from cachescope.ledger import format_time

MODEL = "claude-sonnet-4-6"


def reference(body: dict[str, Any], store_text: bool) -> tuple[list[dict[str, Any]], int]:
    """The fingerprint as first written: flatten, prefix_keys, one fresh dict per block."""
    flat = flatten(body)
    keys = prefix_keys(flat.blocks, flat.settings)
    out = []
    for block, key in zip(flat.blocks, keys):
        entry = {
            "hash": f"{block.hash:016x}",
            "prefix": f"{key:016x}",
            "level": block.level,
            "path": block.path,
            "kind": block.kind,
            "role": block.role,
            "layer": block.layer,
            "tokens": block.tokens,
            "breakpoint": block.ttl,
        }
        if store_text:
            entry["text"] = block.text
        out.append(entry)
    return out, sum(block.tokens for block in flat.blocks)


texts = st.sampled_from(["alpha", "beta " * 80, "gamma\n" * 70, "δ é \u2028", "x"])
text_block = st.builds(
    lambda text, cc: {"type": "text", "text": text, **({"cache_control": cc} if cc else {})},
    texts,
    st.sampled_from([None, {"type": "ephemeral"}, {"type": "ephemeral", "ttl": "1h"}]),
)
other_block = st.sampled_from(
    [
        {"type": "tool_result", "tool_use_id": "t1", "content": "result " * 60},
        {"type": "tool_use", "id": "t1", "name": "search", "input": {"q": "refunds", "n": 3}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "text", "text": "cited", "citations": {"enabled": True}},
    ]
)
content = st.one_of(texts, st.lists(st.one_of(text_block, other_block), min_size=0, max_size=3))
roles = st.sampled_from(["user", "assistant"])
message = st.builds(lambda role, c: {"role": role, "content": c}, roles, content)
tool = st.builds(
    lambda i, cc: {
        "name": f"tool_{i}",
        "description": "Looks things up. " * 30,
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        **({"cache_control": {"type": "ephemeral"}} if cc else {}),
    },
    st.integers(0, 3),
    st.booleans(),
)
extras = st.sampled_from(
    [
        {},
        {"tool_choice": {"type": "auto"}},
        {"thinking": {"type": "enabled", "budget_tokens": 2048}},
        {"speed": "fast"},
        {"tools_toggle": True},
    ]
)


@st.composite
def requests(draw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": draw(st.sampled_from([MODEL, "claude-haiku-4-5"])),
        "max_tokens": 8,
    }
    tools = draw(st.lists(tool, max_size=3))
    extra = dict(draw(extras))
    if extra.pop("tools_toggle", False):
        tools.append({"type": "web_search_20250305", "name": "web_search"})
    if tools:
        body["tools"] = tools
    system = draw(st.one_of(st.none(), texts, st.lists(text_block, min_size=1, max_size=3)))
    if system is not None:
        body["system"] = system
    body["messages"] = draw(st.lists(message, min_size=1, max_size=6))
    body.update(extra)
    return body


def grown(body: dict[str, Any], turns: list[dict[str, Any]]) -> dict[str, Any]:
    """The same request rebuilt (no shared containers) with more turns: a session's next call."""
    out = copy.deepcopy(body)
    out["messages"] = out["messages"] + copy.deepcopy(turns)
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.lists(requests(), min_size=1, max_size=4),
    st.lists(message, min_size=0, max_size=2),
    st.booleans(),
)
def test_fingerprint_equals_flatten_and_prefix_keys(
    bodies: list[dict[str, Any]], turns: list[dict[str, Any]], store_text: bool
) -> None:
    token_cache: dict[int, int] = {}
    cache = FingerprintCache()
    for body in bodies:
        # twice: the second call of each request is served by the unit memo
        for _ in range(2):
            assert fingerprint_blocks(body, token_cache, store_text) == reference(body, store_text)
        # through a chain: the previous call's run of identical units is reused
        for sent in (body, grown(body, turns), body, copy.deepcopy(body)):
            got = fingerprint_blocks(sent, token_cache, store_text, cache, "s")
            assert got == reference(sent, store_text)


def test_a_growing_conversation_reuses_entries_and_stays_exact() -> None:
    history: list[dict[str, Any]] = []
    system = [{"type": "text", "text": "Rules. " * 300, "cache_control": {"type": "ephemeral"}}]
    previous: list[dict[str, Any]] = []
    token_cache: dict[int, int] = {}
    for turn in range(6):
        # rebuilt from scratch every call: equal content, no shared objects
        body = {
            "model": MODEL,
            "max_tokens": 8,
            "system": [dict(block) for block in system],
            "messages": [
                {"role": m["role"], "content": [dict(b) for b in m["content"]]} for m in history
            ]
            + [{"role": "user", "content": [{"type": "text", "text": f"Question {turn}?"}]}],
        }
        blocks, tokens = fingerprint_blocks(body, token_cache, False)
        assert (blocks, tokens) == reference(body, False)
        if previous:
            # the unchanged prefix comes back as the same entries (shared, not rebuilt)
            assert all(a is b for a, b in zip(blocks[:-1], previous[:-1]))
        previous = blocks
        history += [
            {"role": "user", "content": [{"type": "text", "text": f"Question {turn}?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": f"Answer {turn}. " * 50}]},
        ]


def test_the_tail_path_equals_the_reference_and_is_taken_where_it_applies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A chain of calls that keep, grow, shrink and change a conversation: each fingerprint is
    the reference one, and the tail path (keys of the whole request, only the new messages
    built) serves exactly the calls it is meant for."""
    taken: list[bool] = []
    tail = _client_record._fingerprint_tail

    def counting(*args: Any) -> Any:
        result = tail(*args)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(_client_record, "_fingerprint_tail", counting)

    def turn(i: int, breakpoint: bool = False) -> dict[str, Any]:
        block: dict[str, Any] = {"type": "text", "text": f"Turn {i}. " + "words " * 40}
        if breakpoint:
            block["cache_control"] = {"type": "ephemeral"}
        return {"role": "user" if i % 2 == 0 else "assistant", "content": [block]}

    def body(n: int, **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": MODEL,
            "max_tokens": 8,
            "tools": [
                {
                    "name": "lookup",
                    "description": "Looks up. " * 30,
                    "input_schema": {"type": "object"},
                }
            ],
            "system": [
                {"type": "text", "text": "Rules. " * 300, "cache_control": {"type": "ephemeral"}}
            ],
            "messages": [turn(i, breakpoint=i == n - 1) for i in range(n)],
        }
        out.update(extra)
        return out

    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}  # fmt: skip
    with_image = body(11)
    with_image["messages"].append({"role": "user", "content": [image]})
    layered = body(12)
    layered["messages"][-1]["content"] = LayeredBlocks(
        layered["messages"][-1]["content"], ["dynamic"]
    )
    layered_early = body(12)
    layered_early["messages"][1]["content"] = LayeredBlocks(
        layered_early["messages"][1]["content"], ["history"]
    )
    other_tools = body(12)
    other_tools["tools"][0]["description"] = "Finds. " * 30
    chain: list[tuple[dict[str, Any], bool]] = [
        (body(10), False),  # the first call: nothing to resume
        (body(10), True),  # the same request again: nothing new
        (body(12), True),  # two new turns, the breakpoint moved
        (layered, True),  # a newest turn with layer names: keyed with them, built as new
        (body(12), True),
        (body(11), True),  # shorter: a prefix of the last call
        (with_image, False),  # an image in the new turn changes the messages' settings
        (body(12), False),  # the last call had an image: not resumed
        (body(12), True),
        (body(12, tool_choice={"type": "auto"}), False),  # settings changed
        (body(12), False),  # the last call was keyed like this one but with other settings
        (other_tools, False),  # another tool list
        (body(24), False),  # the last call had other tools: not resumed
        (body(36), False),  # twelve new turns: more than the tail path builds
        (layered_early, False),  # layer names in message 1: only the first message stays
        (body(12, model="claude-haiku-4-5"), False),
        (body(12), False),  # another model (another tokenizer, other settings)
        ({"model": MODEL, "max_tokens": 8, "messages": [turn(0), turn(1, True)]}, False),
        # no tools, no system: the messages alone are resumed (the rolling breakpoint left turn 1)
        ({"model": MODEL, "max_tokens": 8, "messages": [turn(0), turn(1), turn(2, True)]}, True),
    ]
    cache = FingerprintCache()
    token_cache: dict[int, int] = {}
    for i, (sent, _expect) in enumerate(chain):
        taken.clear()
        got = fingerprint_blocks(copy.deepcopy(sent), token_cache, False, cache, "s")
        assert got == reference(sent, False), i
        # served by the tail path or not (never on the pure path: its keys are encoded in Python)
        assert not any(taken), i  # the tail path needs keys that only the C walk made


edits = st.lists(
    st.tuples(
        st.sampled_from(
            ["append", "append", "append", "edit_last", "edit_first", "drop_last", "system",
             "tool_choice", "image", "layered", "model", "same"]
        ),
        message,
    ),
    min_size=1,
    max_size=12,
)  # fmt: skip


@settings(max_examples=120, deadline=None)
@given(requests(), edits)
def test_a_session_of_random_edits_stays_exact(body: dict[str, Any], steps: Any) -> None:
    """One chain through appends, edits, dropped turns, other system prompts and settings,
    images and layer names, each call rebuilt from scratch: every fingerprint is the reference
    one, whichever path (tail or unit walk) served it."""
    cache = FingerprintCache()
    token_cache: dict[int, int] = {}
    current = copy.deepcopy(body)
    for kind, turn in steps:
        messages = current["messages"]
        if kind == "append":
            messages.append(copy.deepcopy(turn))
        elif kind == "edit_last" and messages:
            messages[-1] = copy.deepcopy(turn)
        elif kind == "edit_first" and messages:
            messages[0] = copy.deepcopy(turn)
        elif kind == "drop_last" and len(messages) > 1:
            messages.pop()
        elif kind == "system":
            current["system"] = [{"type": "text", "text": f"Rules v{len(messages)}. " * 40}]
        elif kind == "tool_choice":
            current["tool_choice"] = {"type": "any" if "tool_choice" not in current else "auto"}
        elif kind == "image":
            image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}  # fmt: skip
            messages.append({"role": "user", "content": [image]})
        elif kind == "layered" and messages and isinstance(messages[-1].get("content"), list):
            last = messages[-1]
            last["content"] = LayeredBlocks(last["content"], ["user"] * len(last["content"]))
        elif kind == "model":
            current["model"] = "claude-haiku-4-5" if current["model"] == MODEL else MODEL
        sent = copy.deepcopy(current)  # no shared objects, as a rebuilt request
        for i, m in enumerate(current["messages"]):  # deepcopy keeps LayeredBlocks' names
            if isinstance(m.get("content"), LayeredBlocks):
                sent["messages"][i]["content"] = LayeredBlocks(
                    copy.deepcopy(list(m["content"])), m["content"].layer_names
                )
        got = fingerprint_blocks(sent, token_cache, False, cache, "s")
        assert got == reference(sent, False), kind


def test_a_chain_survives_changes_to_what_it_returned() -> None:
    body = {"model": MODEL, "max_tokens": 8, "system": "S " * 200, "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    cache = FingerprintCache()
    first, _ = fingerprint_blocks(body, {}, False, cache, None)
    first.append({"hash": "junk"})
    first.pop(0)
    again, _ = fingerprint_blocks(copy.deepcopy(body), {}, False, cache, None)
    assert again == reference(body, False)[0]
    other = dict(body, tool_choice={"type": "auto"})  # settings change: nothing reused wrongly
    assert fingerprint_blocks(other, {}, False, cache, None)[0] == reference(other, False)[0]
    shorter = dict(body, messages=[])
    assert fingerprint_blocks(shorter, {}, False, cache, None) == reference(shorter, False)


def test_store_text_entries_are_the_records_own() -> None:
    body = {"model": MODEL, "max_tokens": 8, "system": "S " * 200, "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    plain, _ = fingerprint_blocks(body, {}, False)
    with_text, _ = fingerprint_blocks(body, {}, True)
    assert [e["text"] for e in with_text] == ["S " * 200, "hi"]
    assert all("text" not in e for e in plain)
    assert fingerprint_blocks(body, {}, False)[0] == plain


def test_settings_seed_matches_blocks() -> None:

    for value in ({}, {"model": MODEL}, {"tool_choice": {"type": "any"}, "images": True}):
        assert _client_record._settings_seed(value) == _blocks._settings_seed(value)


# ---- pricing: both costs from one rates lookup ------------------------------------------------

usages = st.builds(
    lambda i, w5, w1, r, o, tier, geo, speed: {
        "input_tokens": i,
        "cache_creation_input_tokens": w5 + w1,
        "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1},
        "cache_read_input_tokens": r,
        "output_tokens": o,
        "service_tier": tier,
        "inference_geo": geo,
        "speed": speed,
    },
    *[st.integers(0, 300_000)] * 5,
    st.sampled_from([None, "standard", "batch"]),
    st.sampled_from([None, "us", "global"]),
    st.sampled_from([None, "standard", "fast"]),
)


@pytest.mark.filterwarnings("ignore::cachescope.UnknownModelWarning")
@settings(max_examples=200, deadline=None)
@given(
    usages,
    st.sampled_from(
        ["claude-sonnet-4-6", "claude-opus-4-6", "claude-haiku-4-5", "claude-opus-4-1"]
    ),
    st.sampled_from(["2025-01-01T00:00:00.000Z", "2026-11-22T01:02:03.004Z", _dt.date(2026, 3, 1)]),
)
def test_costs_equal_cost_and_cost_without_cache(
    usage: dict[str, Any], model: str, when: Any
) -> None:
    counts = pricing.usage_counts(usage)
    expected = (
        pricing.cost(usage, model, when=when),
        pricing.cost_without_cache(usage, model, when=when),
    )
    assert pricing._costs(counts, model, when=when) == expected
    assert pricing._costs(counts, model, when=when) == expected  # served by the rates memo


def test_usage_counts_reads_objects_and_mappings_alike() -> None:
    from anthropic.types import Usage

    data = {
        "input_tokens": 5,
        "cache_creation_input_tokens": 30,
        "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20},
        "cache_read_input_tokens": 40,
        "output_tokens": 7,
        "service_tier": "standard",
    }
    assert pricing.usage_counts(Usage.model_validate(data)) == pricing.usage_counts(data)
    flat = {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 4, "input_tokens": 1}
    assert pricing.usage_counts(flat).cache_write_tokens == 7


def test_rates_memo_follows_set_price_and_reset_prices() -> None:
    usage = {"input_tokens": 1_000_000, "output_tokens": 0}
    before = pricing.cost(usage, MODEL)
    try:
        pricing.set_price(MODEL, input=1.0, output=2.0)
        assert pricing.cost(usage, MODEL) == pytest.approx(1.0)
        pricing.set_price(MODEL, input=7.0, output=2.0)
        assert pricing.cost(usage, MODEL) == pytest.approx(7.0)
    finally:
        pricing.reset_prices()
    assert pricing.cost(usage, MODEL) == before


def test_rates_memo_keeps_the_long_context_band_apart() -> None:
    small = pricing.rates("claude-sonnet-4-6", prompt_tokens=1_000)
    for model in ("claude-sonnet-4-6", "claude-haiku-5-5", "claude-sonnet-5-5"):
        for tokens in (1_000, 150_000, 250_000, 1_000, 250_000):
            info = pricing.default_table().lookup(model)
            if info is None:
                continue
            assert pricing.rates(model, prompt_tokens=tokens) == info.rates_at(None, tokens)
    assert small is not None


def test_bad_when_still_raises() -> None:
    with pytest.raises(TypeError):
        pricing.rates(MODEL, when=object())


# ---- format_time --------------------------------------------------------------------------------


EDGES = [0.9999995, 0.9999996, 0.0005, 0.9995, 0.4999995, 1e-7]


def plain_format_time(seconds: float) -> str:
    stamp = _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.floats(min_value=0, max_value=4e9, allow_nan=False),
        st.integers(0, 4_000_000_000),
        st.builds(lambda s, f: s + f, st.integers(0, 4_000_000_000), st.sampled_from(EDGES)),
    )
)
def test_format_time_equals_datetime(seconds: float) -> None:
    assert format_time(seconds) == plain_format_time(seconds)


def test_format_time_edges() -> None:
    for seconds in (0, 0.0, 1.9999996, 59.9999995, 1_800_000_000.0005, 1e-7, 86399.9999999, 86399.9999996, -1.5, 253_402_300_799.9, 3e10 + 0.9995):  # fmt: skip
        assert format_time(seconds) == plain_format_time(seconds)
    for bad in (math.nan, math.inf, 253_402_300_800.0):
        with pytest.raises((ValueError, OverflowError)):
            format_time(bad)


# ---- response headers read in one pass ----------------------------------------------------------


@pytest.mark.parametrize(
    "pairs",
    [
        [],
        [
            (b"Request-Id", b"req_1"),
            (b"X-Cachescope-TTFT-Ms", b"12.5"),
            (b"x-cachescope-total-ms", b"40"),
        ],
        [(b"request-id", b"a"), (b"REQUEST-ID", b"b"), (b"x-cachescope-ttft-ms", b"nan?")],
        [(b"request-id", "\u00e9t\u00e9".encode()), (b"x-other", b"1")],
        [(b"request-id", b"\xe9t\xe9"), (b"x-cachescope-total-ms", b"7")],  # latin-1 fallback
        [(b"x-other", "\u00e9".encode()), (b"request-id", b"plain")],
    ],
)
def test_read_headers_equals_httpx_get(pairs: list[tuple[bytes, bytes]]) -> None:
    import httpx2

    headers = httpx2.Headers(pairs)
    names = ("request-id", "x-cachescope-ttft-ms", "x-cachescope-total-ms")
    expected = tuple(headers.get(name) for name in names)
    assert _client_record._read_headers(httpx2.Headers(pairs)) == expected
    plain = {"request-id": "r", "x-cachescope-total-ms": "3"}  # any mapping without .raw
    assert _client_record._read_headers(plain) == ("r", None, "3")
