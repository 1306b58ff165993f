"""A record's fingerprint is the one core's, and its numbers equal the plain computations.

The client keeps no walk of its own: `record.blocks` is `cachescope.blocks.flatten` with its prefix
keys (the blocks of `stability.fingerprint(...).to_dict()`, without their index), whether the
record was made from a caching client's params (layer names kept) or from the JSON on the wire.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

import anthropic
import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachescope import CachingClient, Layer, Prompt, pricing
from cachescope.blocks import LayeredBlocks
from cachescope.ledger import format_time
from cachescope.recorder import Recorder
from cachescope.recorder._fill import read_headers
from cachescope.sim import Simulator, VirtualClock
from cachescope.stability import fingerprint

MODEL = "claude-sonnet-4-6"


def reference(params: dict[str, Any], store_text: bool = False) -> list[dict[str, Any]]:
    """The fingerprint as `stability` serializes it, without the position index."""
    blocks = fingerprint(params, keep_text=store_text).to_dict(include_text=store_text)["blocks"]
    return [{k: v for k, v in block.items() if k != "index"} for block in blocks]


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
        {"type": "text", "text": "cited", "citations": {"enabled": True}},
    ]
)
content = st.one_of(texts, st.lists(st.one_of(text_block, other_block), min_size=1, max_size=3))
message = st.builds(lambda c: {"role": "user", "content": c}, content)
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


@st.composite
def requests(draw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "max_tokens": 8}
    tools = draw(st.lists(tool, max_size=3, unique_by=lambda t: t["name"]))
    if tools:
        body["tools"] = tools
    system = draw(st.one_of(st.none(), texts, st.lists(text_block, min_size=1, max_size=3)))
    if system is not None:
        body["system"] = system
    body["messages"] = [draw(message)]
    body.update(draw(st.sampled_from([{}, {"tool_choice": {"type": "auto"}}])))
    return body


@settings(max_examples=40, deadline=None)
@given(requests(), st.booleans())
def test_a_recorded_fingerprint_is_the_cores(params: dict[str, Any], store_text: bool) -> None:
    client = CachingClient(backend="sim", clock=VirtualClock(), store_text=store_text)
    try:
        client.messages.create(**params)
    except anthropic.BadRequestError:
        pass  # e.g. a tool_result without its tool_use: a failed call keeps its fingerprint too
    record = client.ledger.records[0]
    assert record.blocks == reference(params, store_text)
    assert record.prompt_tokens_estimate == fingerprint(params).total_tokens


def test_a_caching_client_keeps_the_layer_names_of_a_rendered_prompt() -> None:
    prompt = Prompt(MODEL, [Layer("stable", "Rules. " * 400, ttl="1h"), Layer("memory", "Facts.")])
    params = prompt.render(user="Hello?", max_tokens=8)
    assert isinstance(params["system"], LayeredBlocks)
    client = CachingClient(backend="sim", clock=VirtualClock())
    client.messages.create(**params)
    layers = [block["layer"] for block in client.ledger.records[0].blocks]
    assert layers == ["stable", "memory", "user"]
    assert client.ledger.records[0].blocks == reference(params)


def test_a_plain_client_is_fingerprinted_from_the_wire_json() -> None:

    prompt = Prompt(MODEL, [Layer("stable", "Rules. " * 400, ttl="1h")])
    params = prompt.render(user="Hello?", max_tokens=8)
    recorder = Recorder()
    sim = Simulator(clock=VirtualClock())
    http = httpx2.Client(transport=recorder.wrap_transport(sim.transport()))
    anthropic.Anthropic(api_key="sim", http_client=http).messages.create(**params)
    blocks = recorder.ledger.records[0].blocks
    # the wire carries no layer names; every other field is the same fingerprint
    assert [b["layer"] for b in blocks] == [None, None]
    assert [{**b, "layer": None} for b in reference(params)] == blocks


# ---- pricing: the numbers a record stores ------------------------------------------------------

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
        [(b"x-other", "\u00e9".encode()), (b"request-id", b"plain"), (b"x-should-retry", b"false")],
    ],
)
def test_read_headers_equals_httpx_get(pairs: list[tuple[bytes, bytes]]) -> None:
    headers = httpx2.Headers(pairs)
    names = ("request-id", "x-cachescope-ttft-ms", "x-cachescope-total-ms", "x-should-retry")
    expected = {name.encode(): headers.get(name) for name in names if name in headers}
    assert read_headers(headers) == expected
