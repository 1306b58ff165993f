"""The recorder at the transport seam, under a plain `anthropic` client it did not build.

`anthropic.Anthropic(api_key="sim", http_client=httpx2.Client(transport=recorder.wrap_transport(
<the simulator's transport>)))` is recorded call by call — sync, async, streamed and failed — with
one record per logical call however many attempts the SDK made, and the SDK sees the bytes,
chunks and exceptions the transport produced, when it asks for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from cachescope.ledger import CallRecord
from cachescope.recorder import Recorder
from cachescope.sim import Fault, Simulator, VirtualClock

# The simulator's own transports (what `Simulator.http_client()` builds its client on).

MODEL = "claude-sonnet-4-6"
STABLE = "You are Aura, a careful assistant. Answer briefly and cite the handbook. " * 400


def params(user: str = "hello", **more: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 32,
        "system": [{"type": "text", "text": STABLE, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": user}],
        **more,
    }


def plain_client(
    recorder: Recorder, sim: Simulator | None = None, **kw: Any
) -> anthropic.Anthropic:
    sim = sim or Simulator(clock=VirtualClock())
    http = httpx2.Client(transport=recorder.wrap_transport(sim.transport()))
    return anthropic.Anthropic(api_key="sim", http_client=http, **kw)


def test_a_plain_client_call_is_recorded_with_usage_cost_and_fingerprint() -> None:
    recorder = Recorder(session="support")
    client = plain_client(recorder)
    client.messages.create(**params())
    message = client.messages.create(**params())
    first, second = recorder.ledger.records
    assert second.message_id == message.id
    assert second.ok and second.retries == 0
    assert second.backend == "sim"
    assert second.session == "support"
    assert second.cache_read_input_tokens == message.usage.cache_read_input_tokens > 1_000
    assert second.cost is not None and second.savings is not None and second.savings > 0
    assert second.blocks == first.blocks and second.blocks[0]["breakpoint"] == "5m"
    assert second.latency_source == "simulator"


def test_an_async_plain_client_call_is_recorded() -> None:
    recorder = Recorder()

    async def run() -> anthropic.types.Message:
        sim = Simulator(clock=VirtualClock())
        http = httpx2.AsyncClient(transport=recorder.wrap_transport(sim.async_transport()))
        client = anthropic.AsyncAnthropic(api_key="sim", http_client=http)
        await client.messages.create(**params())
        async with client.messages.stream(**params()) as stream:
            return await stream.get_final_message()

    final = asyncio.run(run())
    records = recorder.ledger.records
    assert [r.stream for r in records] == [False, True]
    assert records[1].message_id == final.id
    assert records[1].cache_read_input_tokens == final.usage.cache_read_input_tokens > 1_000


def test_a_streamed_call_is_recorded_when_its_stream_ends() -> None:
    recorder = Recorder()
    client = plain_client(recorder)
    events = client.messages.create(**params(), stream=True)
    first = next(iter(events))
    assert first.type == "message_start"
    assert len(recorder.ledger) == 0  # still streaming
    rest = list(events)
    record = recorder.ledger.records[0]
    assert rest[-1].type == "message_stop"
    assert record.stream and record.ok
    assert record.message_id == first.message.id
    assert record.output_tokens > 0 and record.cache_creation_input_tokens > 1_000


def test_a_failed_call_is_one_record_of_its_three_attempts() -> None:
    sim = Simulator(clock=VirtualClock(), faults=Fault("server_error", calls=(1, 2, 3)))
    recorder = Recorder()
    client = plain_client(recorder, sim)  # the SDK's default: 2 retries
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(**params())
    [record] = recorder.ledger.records
    assert not record.ok
    assert record.retries == 2
    assert record.error_status == 500
    assert record.api_error_type == "api_error"
    assert (
        record.error_type == "APIStatusError"
    )  # what the wire says; a CachingClient names the SDK's class


def test_a_retried_call_that_succeeds_is_one_good_record() -> None:
    sim = Simulator(clock=VirtualClock(), faults=Fault("rate_limit", calls=(1,)))
    recorder = Recorder()
    plain_client(recorder, sim).messages.create(**params())
    [record] = recorder.ledger.records
    assert record.ok and record.retries == 1
    assert record.message_id is not None


def test_a_request_the_api_rejects_is_recorded_at_once() -> None:
    recorder = Recorder()
    bad = params(user=[{"type": "tool_result", "tool_use_id": "t1", "content": "x"}])  # type: ignore[arg-type]
    with pytest.raises(anthropic.BadRequestError):
        plain_client(recorder).messages.create(**bad)
    [record] = recorder.ledger.records
    assert record.error_status == 400 and record.api_error_type == "invalid_request_error"
    assert record.retries == 0


def test_timeouts_retried_to_the_end_are_recorded_with_the_transport_error() -> None:
    sim = Simulator(clock=VirtualClock(), faults=Fault("timeout", calls=(1, 2)))
    recorder = Recorder()
    with pytest.raises(anthropic.APITimeoutError):
        plain_client(recorder, sim, max_retries=1).messages.create(**params())
    # the recorder was told nothing of max_retries=1: the failure waits for a retry...
    assert len(recorder.ledger) == 0
    recorder.flush()  # ...until it is told that none will come
    [record] = recorder.ledger.records
    assert record.error_type == "ReadTimeout" and record.retries == 1


def test_a_held_failure_is_written_when_the_next_call_starts() -> None:
    sim = Simulator(clock=VirtualClock(), faults=Fault("overloaded", calls=(1,)))
    recorder = Recorder()
    client = plain_client(recorder, sim, max_retries=0)
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(**params())
    client.messages.create(**params())
    failed, ok = recorder.ledger.records
    assert (failed.ok, failed.error_status, failed.retries) == (False, 529, 0)
    assert ok.ok


def test_a_stream_dropped_midway_is_recorded_as_failed() -> None:
    sim = Simulator(clock=VirtualClock(), faults=Fault("stream_disconnect", calls=(1,)))
    recorder = Recorder()
    client = plain_client(recorder, sim, max_retries=0)
    with (
        pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)),
        client.messages.stream(**params()) as stream,
    ):
        stream.until_done()
    [record] = recorder.ledger.records
    assert not record.ok and record.stream
    assert record.error_type == "RemoteProtocolError"
    assert record.message_id is not None  # message_start had arrived


def test_an_error_event_in_a_stream_is_recorded() -> None:
    sim = Simulator(clock=VirtualClock(), faults=Fault("stream_overloaded", calls=(1,)))
    recorder = Recorder()
    with (
        pytest.raises(anthropic.APIStatusError),
        plain_client(recorder, sim, max_retries=0).messages.stream(**params()) as stream,
    ):
        stream.until_done()
    [record] = recorder.ledger.records
    assert not record.ok and record.api_error_type == "overloaded_error"


def test_count_tokens_and_other_endpoints_pass_unrecorded() -> None:
    recorder = Recorder()
    client = plain_client(recorder)
    count = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert count.input_tokens > 0
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-sonnet-4-6")
    assert len(recorder.ledger) == 0


def test_no_api_key_reaches_a_record() -> None:
    key = "secret-sentinel-for-grep"
    recorder = Recorder(store_text=True)
    sim = Simulator(clock=VirtualClock(), faults=Fault("rate_limit", calls=(2, 3, 4)))
    http = httpx2.Client(transport=recorder.wrap_transport(sim.transport()))
    client = anthropic.Anthropic(api_key=key, http_client=http)
    client.messages.create(**params())
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(**params())
    lines = b"".join(record.to_json() for record in recorder.ledger.records)
    assert key.encode() not in lines
    assert b"x-api-key" not in lines.lower()


def test_diagnostics_chain_through_a_plain_client_when_asked() -> None:
    recorder = Recorder(diagnostics=True, session="aura")
    client = plain_client(recorder)
    first = client.messages.create(**params())
    client.messages.create(**params())
    second = recorder.ledger.records[1]
    assert second.previous_message_id == first.id
    assert recorder.previous_message_id("aura") == second.message_id
    recorder.reset_chain("aura")
    client.messages.create(**params())
    assert recorder.ledger.records[2].previous_message_id is None


def test_on_record_sees_each_record_after_the_ledger() -> None:
    seen: list[CallRecord] = []
    recorder = Recorder(on_record=seen.append)
    plain_client(recorder).messages.create(**params())
    assert seen == recorder.ledger.records


# -- the reader sees what the transport produced, when it asks for it ---------------------------


class Tee(httpx2.BaseTransport):
    """The simulator's transport, keeping every chunk it hands out, as it hands it out."""

    def __init__(self, sim: Simulator) -> None:
        self.inner = sim.transport()
        self.chunks: list[bytes] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self.inner.handle_request(request)
        if response.is_stream_consumed:
            self.chunks.append(response.content)
            return response
        inner = response.stream

        class Kept(httpx2.SyncByteStream):
            def __iter__(_self) -> Iterator[bytes]:
                for chunk in inner:  # type: ignore[union-attr]
                    self.chunks.append(chunk)
                    yield chunk

        response.stream = Kept()
        return response


@pytest.mark.parametrize("stream", [False, True])
def test_the_reader_gets_the_transports_bytes_unchanged(stream: bool) -> None:
    tee = Tee(Simulator(clock=VirtualClock()))
    recorder = Recorder()
    http = httpx2.Client(transport=recorder.wrap_transport(tee))
    body = {**params(), "stream": stream}
    with http.stream(
        "POST", "https://api.anthropic.com/v1/messages", headers={"x-api-key": "sim"}, json=body
    ) as response:
        received = response.read()
    assert received == b"".join(tee.chunks)
    assert len(recorder.ledger) == 1


def test_a_stream_is_not_read_ahead_of_its_reader() -> None:
    tee = Tee(Simulator(clock=VirtualClock()))
    recorder = Recorder()
    client = anthropic.Anthropic(
        api_key="sim", http_client=httpx2.Client(transport=recorder.wrap_transport(tee))
    )
    events = iter(client.messages.create(**params(), stream=True))
    next(events)  # message_start
    pulled_after_first = len(tee.chunks)
    bare_tee = Tee(Simulator(clock=VirtualClock()))
    bare = anthropic.Anthropic(api_key="sim", http_client=httpx2.Client(transport=bare_tee))
    bare_events = iter(bare.messages.create(**params(), stream=True))
    next(bare_events)
    assert pulled_after_first == len(bare_tee.chunks) == 1
    list(events)
    list(bare_events)


def test_a_broken_stream_raises_the_transports_own_exception() -> None:
    sim = Simulator(clock=VirtualClock(), faults=Fault("stream_disconnect", calls=(1,)))
    http = httpx2.Client(transport=Recorder().wrap_transport(sim.transport()))
    body = orjson.dumps({**params(), "stream": True})
    with (
        pytest.raises(httpx2.RemoteProtocolError, match="simulated by cachescope"),
        http.stream(
            "POST",
            "https://api.anthropic.com/v1/messages",
            headers={"x-api-key": "sim"},
            content=body,
        ) as response,
    ):
        response.read()


@pytest.mark.parametrize(
    ("body", "sent"),
    [
        (b'{"model":"m"}', b'{"model":"m","diagnostics":{"previous_message_id":"msg_1"}}'),
        (b"{ }\n", b'{ "diagnostics":{"previous_message_id":"msg_1"}}'),
        (b'{"a": [1, {}] }', b'{"a": [1, {}] ,"diagnostics":{"previous_message_id":"msg_1"}}'),
        (b"[1]", b"[1]"),  # not an object: left as it is
    ],
)
def test_diagnostics_are_spliced_into_the_json_going_out(body: bytes, sent: bytes) -> None:
    from cachescope.recorder import _with_diagnostics

    request = httpx2.Request(
        "POST",
        "https://api.anthropic.com/v1/messages",
        headers={"anthropic-beta": "other-beta"},
        content=body,
    )
    out = _with_diagnostics(request, "msg_1")
    assert out.content == sent
    assert int(out.headers["content-length"]) == len(sent)
    if sent != body:
        assert out.headers["anthropic-beta"] == "other-beta,cache-diagnosis-2026-04-07"
        assert orjson.loads(out.content)["diagnostics"] == {"previous_message_id": "msg_1"}


class Gzipped(httpx2.BaseTransport):
    """The simulator's answers as a network would send them: gzip-encoded, read in pieces."""

    def __init__(self, sim: Simulator) -> None:
        self.inner = sim.transport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        import gzip

        response = self.inner.handle_request(request)
        body = gzip.compress(response.read())
        headers = [(k, v) for k, v in response.headers.raw if k.lower() != b"content-length"]

        class Pieces(httpx2.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                for start in range(0, len(body), 7):
                    yield body[start : start + 7]

        return httpx2.Response(
            response.status_code,
            headers=[*headers, (b"content-encoding", b"gzip")],
            stream=Pieces(),
        )


@pytest.mark.parametrize("stream", [False, True])
def test_a_gzip_encoded_response_is_read_as_the_sdk_reads_it(stream: bool) -> None:
    recorder = Recorder()
    http = httpx2.Client(
        transport=recorder.wrap_transport(Gzipped(Simulator(clock=VirtualClock())))
    )
    client = anthropic.Anthropic(api_key="sim", http_client=http)
    if stream:
        with client.messages.stream(**params()) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**params())
    [record] = recorder.ledger.records
    assert record.message_id == message.id
    assert record.cache_creation_input_tokens == message.usage.cache_creation_input_tokens > 1_000
    assert record.output_tokens == message.usage.output_tokens


def test_an_async_failed_call_is_one_record_of_its_attempts() -> None:
    recorder = Recorder()
    sim = Simulator(clock=VirtualClock(), faults=Fault("overloaded", calls=(1, 2, 3)))

    async def run() -> None:
        http = httpx2.AsyncClient(transport=recorder.wrap_transport(sim.async_transport()))
        client = anthropic.AsyncAnthropic(api_key="sim", http_client=http)
        await client.messages.create(**params())

    with pytest.raises(anthropic.OverloadedError):
        asyncio.run(run())
    [record] = recorder.ledger.records
    assert (record.ok, record.error_status, record.retries) == (False, 529, 2)
    assert record.api_error_type == "overloaded_error"
