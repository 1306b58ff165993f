"""CachingClient through the simulator: records, costs, chaining, sessions, faults, streams."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from anthropic.types import Message

import cachescope as cs
from cachescope import CachescopeError, CachingClient, UnknownModelWarning, pricing
from cachescope.ledger import Ledger
from cachescope.prompt import Layer, Prompt
from cachescope.sim import Fault, Simulator, VirtualClock

MODEL = "claude-sonnet-4-6"  # spec §4.2: input 3, 5m write 3.75, 1h write 6, read 0.30, output 15
STABLE = "You are Aura, a careful assistant. Answer briefly and cite the handbook. " * 400


def params(
    ttl: str | None = "5m", user: str = "hello", model: str = MODEL, **more: Any
) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": STABLE}
    if ttl is not None:
        block["cache_control"] = {"type": "ephemeral", "ttl": ttl}
    return {
        "model": model,
        "max_tokens": 32,
        "system": [block],
        "messages": [{"role": "user", "content": user}],
        **more,
    }


def make_client(**kw: Any) -> CachingClient:
    kw.setdefault("simulator", Simulator(clock=VirtualClock()))
    return CachingClient(backend="sim", **kw)


class Capture(httpx2.BaseTransport):
    """Keeps what each HTTP attempt put on the wire (body and headers), under the recorder."""

    def __init__(self, sim: Simulator) -> None:
        self.http = sim.http_client()
        self.bodies: list[Any] = []
        self.headers: list[Any] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self.bodies.append(orjson.loads(request.read()))
        self.headers.append(dict(request.headers))
        return self.http.send(request, stream=True)


def capturing_client(**kw: Any) -> tuple[CachingClient, Capture]:
    sim = Simulator(clock=VirtualClock())
    capture = Capture(sim)
    client = make_client(simulator=sim, http_client=httpx2.Client(transport=capture), **kw)
    return client, capture


def hand_cost(u: Any) -> float:
    split = u.cache_creation
    return (
        3 * u.input_tokens
        + 3.75 * split.ephemeral_5m_input_tokens
        + 6 * split.ephemeral_1h_input_tokens
        + 0.30 * u.cache_read_input_tokens
        + 15 * u.output_tokens
    ) / 1e6


def test_auto_backend_without_api_key_uses_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    client = CachingClient()
    assert client.backend == "sim"
    assert client.simulator is not None


def test_auto_backend_with_api_key_uses_the_real_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "not-a-real-key-for-tests")
    client = CachingClient()
    assert client.backend == "anthropic"
    assert client.simulator is None


def test_create_returns_the_sdks_message_and_records_its_usage() -> None:
    client = make_client()
    message = client.messages.create(**params())
    assert isinstance(message, Message)
    record = client.ledger.records[0]
    assert record.message_id == message.id
    assert record.input_tokens == message.usage.input_tokens
    assert record.cache_creation_input_tokens == message.usage.cache_creation_input_tokens
    assert (
        record.ephemeral_5m_input_tokens == message.usage.cache_creation.ephemeral_5m_input_tokens
    )  # type: ignore[union-attr]
    assert record.output_tokens == message.usage.output_tokens
    assert record.backend == "sim"
    assert record.ok


@pytest.mark.parametrize("ttl", ["5m", "1h", None])
def test_first_call_cost_matches_spec_prices_for_each_ttl(ttl: str | None) -> None:
    client = make_client()
    message = client.messages.create(**params(ttl=ttl))
    record = client.ledger.records[0]
    assert record.cost == pytest.approx(hand_cost(message.usage))
    assert record.cost_without_cache == pytest.approx(
        (3 * record.prompt_tokens + 15 * record.output_tokens) / 1e6
    )


def test_second_call_reads_the_cache_and_saves_ninety_percent_of_the_prefix() -> None:
    client = make_client()
    client.messages.create(**params(ttl="1h"))
    message = client.messages.create(**params(ttl="1h"))
    record = client.ledger.records[1]
    assert record.cache_read_input_tokens > 1_000
    assert record.cost == pytest.approx(hand_cost(message.usage))
    assert record.savings == pytest.approx((3 - 0.30) * record.cache_read_input_tokens / 1e6)
    assert record.hit_share is not None and record.hit_share > 0.99


def test_fingerprint_has_hash_layer_tokens_and_breakpoint_but_no_text() -> None:
    client = make_client()
    client.messages.create(**params(ttl="1h"))
    block = client.ledger.records[0].blocks[0]
    assert set(block) >= {"hash", "prefix", "layer", "tokens", "breakpoint"}
    assert block["breakpoint"] == "1h"
    assert "text" not in block


def test_store_text_keeps_block_text() -> None:
    client = make_client(store_text=True)
    client.messages.create(**params())
    assert client.ledger.records[0].blocks[0]["text"] == STABLE


def test_diagnostics_chain_previous_message_id_with_the_beta_header() -> None:
    client, capture = capturing_client()
    first = client.messages.create(**params())
    client.messages.create(**params())
    assert capture.bodies[0]["diagnostics"] == {"previous_message_id": None}
    assert capture.bodies[1]["diagnostics"] == {"previous_message_id": first.id}
    assert "cache-diagnosis-2026-04-07" in capture.headers[1]["anthropic-beta"]
    assert client.ledger.records[1].previous_message_id == first.id


def test_diagnostics_opt_out_sends_none() -> None:
    client, capture = capturing_client(diagnostics=False)
    client.messages.create(**params())
    client.messages.create(**params())
    assert "diagnostics" not in capture.bodies[1]


def test_server_cache_miss_reason_is_recorded() -> None:
    client = make_client()
    client.messages.create(**params())
    changed = params()
    changed["system"] = [{**changed["system"][0], "text": "Changed. " + STABLE}]
    client.messages.create(**changed)
    record = client.ledger.records[1]
    assert record.cache_miss_reason == "system_changed"


def test_stream_records_usage_when_the_stream_ends() -> None:
    client = make_client()
    client.messages.create(**params())
    with client.messages.stream(**params()) as stream:
        final = stream.get_final_message()
    record = client.ledger.records[1]
    assert record.stream
    assert record.message_id == final.id
    assert record.cache_read_input_tokens == final.usage.cache_read_input_tokens
    assert record.output_tokens == final.usage.output_tokens


def test_create_with_stream_true_returns_the_sdk_stream_and_records() -> None:
    client = make_client()
    events = list(client.messages.create(**params(), stream=True))
    assert events[0].type == "message_start"
    assert client.ledger.records[0].output_tokens > 0


def test_count_tokens_is_forwarded_and_not_recorded() -> None:
    client = make_client()
    count = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert count.input_tokens > 0
    assert len(client.ledger) == 0


def test_latency_comes_from_simulator_headers() -> None:
    client = make_client()
    client.messages.create(**params())
    record = client.ledger.records[0]
    assert record.latency_source == "simulator"
    assert record.ttft_ms is not None and record.latency_ms is not None
    assert record.latency_ms >= record.ttft_ms


def test_record_is_on_disk_before_create_returns(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    client = make_client(ledger=Ledger(path))
    client.messages.create(**params())
    assert path.read_bytes().count(b"\n") == 1


def test_ledger_file_never_contains_the_api_key(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    key = "secret-sentinel-for-grep"
    client = make_client(ledger=Ledger(path), api_key=key, store_text=True)
    client.messages.create(**params())
    client = make_client(
        ledger=Ledger(path),
        api_key=key,
        simulator=Simulator(faults=Fault("server_error", calls=(1, 2, 3))),
    )
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(**params())
    assert key.encode() not in path.read_bytes()
    assert b"x-api-key" not in path.read_bytes().lower()


@pytest.mark.parametrize(
    ("kind", "error", "status"),
    [
        ("rate_limit", anthropic.RateLimitError, 429),
        ("overloaded", anthropic.OverloadedError, 529),
        ("server_error", anthropic.InternalServerError, 500),
    ],
)
def test_fault_reaches_the_caller_unchanged_and_is_recorded_with_retries(
    kind: str, error: type[Exception], status: int
) -> None:
    client = make_client(simulator=Simulator(faults=Fault(kind, calls=(1, 2, 3))))  # type: ignore[arg-type]
    with pytest.raises(error) as info:
        client.messages.create(**params())
    assert type(info.value) is error
    record = client.ledger.records[0]
    assert not record.ok
    assert record.error_type == error.__name__
    assert record.error_status == status
    assert (
        record.api_error_type
        == {429: "rate_limit_error", 529: "overloaded_error", 500: "api_error"}[status]
    )
    assert record.retries == 2


def test_a_retried_call_that_succeeds_counts_its_retries() -> None:
    client = make_client(simulator=Simulator(faults=Fault("rate_limit", calls=(1,))))
    client.messages.create(**params())
    record = client.ledger.records[0]
    assert record.ok
    assert record.retries == 1


def test_dropped_stream_is_recorded_as_a_failed_call() -> None:
    client = make_client(
        simulator=Simulator(faults=Fault("stream_disconnect", calls=(1,))), max_retries=0
    )
    # Mid-stream, SDKs before 2.17 let the transport's error through as it is; newer ones wrap
    # it in `APIConnectionError`. Either way the caller gets it, and the record names it.
    with (
        pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)) as caught,
        client.messages.stream(**params()) as stream,
    ):
        stream.until_done()
    record = client.ledger.records[0]
    assert not record.ok
    assert record.error_type == type(caught.value).__name__
    assert record.stream


def test_failed_call_keeps_earlier_records(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    client = make_client(
        ledger=Ledger(path), simulator=Simulator(faults=Fault("server_error", calls=(2, 3, 4)))
    )
    client.messages.create(**params())
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(**params())
    reloaded = Ledger(path)
    assert [r.ok for r in reloaded.records] == [True, False]


def test_eight_threads_of_250_calls_give_exactly_2000_records(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    client = make_client(ledger=Ledger(path))
    small = {"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}

    def work() -> None:
        for _ in range(250):
            client.messages.create(**small)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(client.ledger) == 2_000
    assert len(Ledger(path)) == 2_000


def test_model_without_a_price_records_an_unknown_cost_not_zero() -> None:
    pricing.reset_prices()
    client = make_client()
    with pytest.warns(UnknownModelWarning, match="claude-mythos-5-2"):
        client.messages.create(**params(model="claude-mythos-5-2"))
    record = client.ledger.records[0]
    assert record.cost is None
    assert record.savings is None
    assert client.ledger.summary().calls_with_unknown_cost == 1


def _prompt() -> Prompt:
    return Prompt(
        MODEL,
        layers=[
            Layer("stable", STABLE, ttl="1h"),
            Layer("dynamic", "Current time: 10:00", ttl=None),
        ],
    )


def test_session_send_appends_user_turn_and_reply_and_returns_the_record() -> None:
    client = make_client()
    chat = client.session("aura", _prompt())
    record = chat.send("What changed?")
    assert record.session == "aura"
    assert isinstance(record.message, Message)
    assert [turn["role"] for turn in chat.history] == ["user", "assistant"]
    assert chat.records == [record]


def test_session_history_has_no_cache_control() -> None:
    client = make_client()
    chat = client.session("aura", _prompt())
    chat.send("first")
    user_turn = chat.history[0]
    assert all("cache_control" not in block for block in user_turn["content"])


def test_session_second_turn_reads_the_first_and_chains_diagnostics() -> None:
    client = make_client()
    chat = client.session("aura", _prompt())
    first = chat.send("first")
    second = chat.send("second")
    assert second.previous_message_id == first.message_id
    assert second.cache_read_input_tokens >= first.cache_creation_input_tokens - 50
    assert len(chat.history) == 4


def test_session_reset_clears_history_and_chain() -> None:
    client = make_client()
    chat = client.session("aura", _prompt())
    chat.send("first")
    chat.reset()
    record = chat.send("again")
    assert len(chat.history) == 2
    assert record.previous_message_id is None


def test_session_by_name_keeps_history_when_prompt_changes() -> None:
    client = make_client()
    client.session("aura", _prompt()).send("first")
    again = client.session("aura", _prompt().replace_layer("dynamic", "Current time: 10:05"))
    assert len(again.history) == 2


def test_error_event_inside_a_stream_is_recorded_as_overloaded() -> None:
    client = make_client(
        simulator=Simulator(faults=Fault("stream_overloaded", calls=(1,))), max_retries=0
    )
    with pytest.raises(anthropic.APIStatusError), client.messages.stream(**params()) as stream:
        stream.until_done()
    record = client.ledger.records[0]
    assert not record.ok
    assert record.error_type == "APIStatusError"
    assert record.api_error_type == "overloaded_error"


def test_backend_anthropic_without_a_key_fails_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    with pytest.raises(CachescopeError, match="needs an API key"):
        CachingClient(backend="anthropic")


def test_resolve_backend_says_which_backend_auto_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    from cachescope.client import resolve_backend

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    assert resolve_backend("auto") == "sim"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "placeholder-for-test")
    assert resolve_backend("auto") == "anthropic"
    assert resolve_backend("sim") == "sim"


def test_session_stream_gives_text_pieces_and_keeps_the_reply_in_history() -> None:
    client = CachingClient(backend="sim", clock=VirtualClock(start=0.0))
    chat = client.session(
        "s", cs.Prompt("claude-sonnet-5", [cs.Layer("stable", "Stable instructions. " * 300)])
    )
    pieces: list[str] = []
    record = chat.send("Hello?", stream=True, on_text=pieces.append, max_tokens=200)
    assert record.stream
    assert "".join(pieces) == record.message.content[0].text
    assert [turn["role"] for turn in chat.history] == ["user", "assistant"]
    second = chat.send("Again?", max_tokens=200)
    assert second.cache_read_input_tokens > 0


def test_session_create_sends_ready_made_params_with_a_prefill() -> None:
    client = CachingClient(backend="sim", clock=VirtualClock(start=0.0))
    prompt = cs.Prompt("claude-sonnet-5", [cs.Layer("stable", "Stable instructions. " * 300)])
    chat = client.session("s", prompt)
    params = prompt.render(user="Name three fruits.", max_tokens=100)
    params["messages"].append({"role": "assistant", "content": "Sure:"})
    record = chat.create(params)
    assert record.session == "s"
    assert chat.history[-1]["content"][0]["text"].startswith("Sure:")
    assert chat.history[-2]["role"] == "user"


def test_a_ledger_that_cannot_be_written_fails_the_call_once_with_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cachescope.ledger as ledger_module
    from cachescope.ledger import LedgerWriteError

    sim = Simulator(clock=VirtualClock())
    client = make_client(simulator=sim, ledger=Ledger(tmp_path / "calls.jsonl"))

    def broken_disk(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(ledger_module, "_sync", broken_disk)
    with pytest.raises(LedgerWriteError) as info:
        client.messages.create(**params())
    assert isinstance(info.value.message, Message)  # the reply is not lost
    assert sim.requests == 1  # recorded at the transport, but never retried as a network fault


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes are Python 3.11+")
def test_a_failed_call_whose_record_cannot_be_written_says_so_in_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cachescope.ledger as ledger_module

    sim = Simulator(clock=VirtualClock(), faults=Fault("server_error", calls=(1,)))
    client = make_client(simulator=sim, ledger=Ledger(tmp_path / "calls.jsonl"), max_retries=0)

    def broken_disk(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(ledger_module, "_sync", broken_disk)
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(**params())
    assert any("could not record" in note for note in getattr(info.value, "__notes__", []))


def test_diagnostics_the_caller_sends_are_sent_as_they_are() -> None:
    client, capture = capturing_client()
    client.messages.create(**params())
    own = {"diagnostics": {"previous_message_id": "msg_from_elsewhere"}}
    client.messages.create(**params(), extra_body=own)
    assert capture.bodies[1]["diagnostics"] == {"previous_message_id": "msg_from_elsewhere"}
    assert client.ledger.records[1].previous_message_id == "msg_from_elsewhere"


def test_raw_responses_are_recorded_at_the_transport_too() -> None:
    client = make_client()
    raw = client.messages.with_raw_response.create(**params())
    message = raw.parse()
    [record] = client.ledger.records
    assert record.message_id == message.id
    assert record.cache_creation_input_tokens == message.usage.cache_creation_input_tokens
