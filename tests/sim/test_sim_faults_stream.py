"""Injected faults retried by the real SDK; streaming; responders; the async client."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import httpx2
import pytest
from conftest import MODEL, block, long_text

from cachescope.sim import (
    Fault,
    ScriptedResponder,
    Simulator,
    TextReply,
    ToolUseReply,
    VirtualClock,
)

HELLO: dict[str, Any] = {
    "model": MODEL,
    "max_tokens": 32,
    "messages": [{"role": "user", "content": "Hello"}],
}


def _client(sim: Simulator, retries: int = 2) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sim", http_client=sim.http_client(), max_retries=retries)


@pytest.mark.parametrize(
    ("kind", "status"),
    [("rate_limit", 429), ("overloaded", 529), ("server_error", 500), ("gateway_timeout", 504)],
)
def test_status_fault_on_the_first_attempt_is_retried_by_the_sdk(
    clock: VirtualClock, kind: Any, status: int
) -> None:
    sim = Simulator(clock=clock, faults=[Fault(kind, calls=(1,))])
    raw = _client(sim).messages.with_raw_response.create(**HELLO)
    assert raw.http_response.status_code == 200
    assert raw.retries_taken == 1
    assert sim.faults.attempts == 2


@pytest.mark.parametrize(
    ("kind", "error_class"),
    [
        ("rate_limit", anthropic.RateLimitError),
        ("overloaded", anthropic.OverloadedError),
        ("server_error", anthropic.InternalServerError),
        ("gateway_timeout", anthropic.InternalServerError),
    ],
)
def test_status_fault_on_every_attempt_exhausts_the_sdk_retries(
    clock: VirtualClock, kind: Any, error_class: type[Exception]
) -> None:
    sim = Simulator(clock=clock, faults=[Fault(kind, calls=(1, 2, 3))])
    with pytest.raises(error_class):
        _client(sim).messages.create(**HELLO)
    assert sim.faults.attempts == 3  # the first try and two retries


def test_rate_limit_sends_retry_after_headers(clock: VirtualClock) -> None:
    sim = Simulator(clock=clock, faults=[Fault("rate_limit", calls=(1,))])
    response = sim.http_client().post("/v1/messages", headers={"x-api-key": "sim"}, json=HELLO)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.headers["retry-after-ms"] == "10"
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_timeout_is_retried_by_the_sdk(clock: VirtualClock) -> None:
    sim = Simulator(clock=clock, faults=[Fault("timeout", calls=(1,))])
    raw = _client(sim).messages.with_raw_response.create(**HELLO)
    assert raw.retries_taken == 1


def test_timeout_on_every_attempt_raises_api_timeout_error(clock: VirtualClock) -> None:
    sim = Simulator(clock=clock, faults=[Fault("timeout", probability=1.0)])
    with pytest.raises(anthropic.APITimeoutError):
        _client(sim, retries=0).messages.create(**HELLO)


def test_connection_dropped_before_a_response_is_retried(clock: VirtualClock) -> None:
    sim = Simulator(clock=clock, faults=[Fault("disconnect", calls=(1,))])
    raw = _client(sim).messages.with_raw_response.create(**HELLO)
    assert raw.retries_taken == 1


def test_connection_dropped_on_every_attempt_raises_api_connection_error(
    clock: VirtualClock,
) -> None:
    sim = Simulator(clock=clock, faults=[Fault("disconnect", probability=1.0)])
    with pytest.raises(anthropic.APIConnectionError):
        _client(sim, retries=0).messages.create(**HELLO)


def test_connection_dropped_during_a_stream_surfaces_to_the_caller(clock: VirtualClock) -> None:
    sim = Simulator(clock=clock, faults=[Fault("stream_disconnect", calls=(1,))])
    client = _client(sim)
    with (
        # SDK 2.12 does not wrap errors raised while reading a stream (httpx2's own surfaces);
        # 2.17 wraps them in APIConnectionError, with httpx2's message.
        pytest.raises(
            (httpx2.RemoteProtocolError, anthropic.APIConnectionError),
            match="peer closed connection",
        ),
        client.messages.stream(**HELLO) as stream,
    ):
        stream.get_final_message()
    assert sim.faults.attempts == 1  # a stream already under way is not retried


def test_overloaded_error_event_inside_a_stream_raises_overloaded(clock: VirtualClock) -> None:
    sim = Simulator(clock=clock, faults=[Fault("stream_overloaded", calls=(1,))])
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        _client(sim).messages.stream(**HELLO) as stream,
    ):
        stream.get_final_message()
    assert "overloaded_error" in str(caught.value)


def test_probabilistic_faults_are_reproducible_with_a_seed(clock: VirtualClock) -> None:
    def attempts(seed: int) -> list[int]:
        sim = Simulator(clock=clock, faults=[Fault("overloaded", probability=0.5)], fault_seed=seed)
        http = sim.http_client()
        return [
            http.post("/v1/messages", headers={"x-api-key": "sim"}, json=HELLO).status_code
            for _ in range(12)
        ]

    assert attempts(7) == attempts(7)
    assert 529 in attempts(7) and 200 in attempts(7)


# ---- streaming ------------------------------------------------------------------------------


def _cached_request() -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 64,
        "system": [block(long_text("aura"), cached=True)],
        "messages": [{"role": "user", "content": "Hi"}],
    }


def test_stream_final_message_has_the_same_usage_as_a_plain_call(clock: VirtualClock) -> None:
    plain_sim, stream_sim = Simulator(clock=clock), Simulator(clock=VirtualClock(start=clock.now()))
    plain = _client(plain_sim).messages.create(**_cached_request())
    with _client(stream_sim).messages.stream(**_cached_request()) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.usage.model_dump() == plain.usage.model_dump()
    assert text == plain.content[0].text  # type: ignore[union-attr]


def test_stream_message_start_carries_the_cache_usage(client: anthropic.Anthropic) -> None:
    events = list(client.messages.create(**_cached_request(), stream=True))
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert "content_block_delta" in kinds
    start = events[0].message.usage  # type: ignore[union-attr]
    delta = events[-2].usage  # type: ignore[union-attr]
    assert start.cache_creation_input_tokens == delta.cache_creation_input_tokens > 0
    assert start.output_tokens == 1
    assert delta.output_tokens > 1  # cumulative


# ---- responders and the async client -----------------------------------------------------------


def test_scripted_responder_drives_an_agent_loop_with_a_tool_call(clock: VirtualClock) -> None:
    script = ScriptedResponder(
        [ToolUseReply("lookup", {"q": "weather"}, id="toolu_01A"), TextReply("It is sunny.")]
    )
    client = _client(Simulator(clock=clock, responder=script))
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather?"}]
    first = client.messages.create(model=MODEL, max_tokens=64, tools=tools, messages=messages)
    assert first.stop_reason == "tool_use"
    messages += [
        {"role": "assistant", "content": [c.model_dump() for c in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "sunny"}],
        },
    ]
    second = client.messages.create(model=MODEL, max_tokens=64, tools=tools, messages=messages)
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "It is sunny."  # type: ignore[union-attr]


def test_streamed_tool_use_is_accumulated_by_the_sdk(clock: VirtualClock) -> None:
    client = _client(Simulator(clock=clock, responder=lambda _: ToolUseReply("lookup", {"q": 1})))
    with client.messages.stream(**HELLO) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "tool_use"
    assert final.content[0].input == {"q": 1}  # type: ignore[union-attr]


def test_async_client_reads_what_it_wrote(clock: VirtualClock) -> None:
    sim = Simulator(clock=clock)

    async def run() -> list[int]:
        client = anthropic.AsyncAnthropic(api_key="sim", http_client=sim.async_http_client())
        reads = []
        for _ in range(2):
            reply = await client.messages.create(**_cached_request())
            reads.append(reply.usage.cache_read_input_tokens or 0)
        return reads

    reads = asyncio.run(run())
    assert reads[0] == 0
    assert reads[1] > 0
