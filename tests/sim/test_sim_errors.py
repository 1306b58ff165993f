"""Requests the API rejects get the API's status, error type and message (spec §6)."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import pytest
from conftest import MODEL, block, long_text

from cachescope.sim import Simulator, VirtualClock


def _error_of(client: anthropic.Anthropic, **params: Any) -> anthropic.APIStatusError:
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(**params)
    return caught.value


def _message(error: anthropic.APIStatusError) -> str:
    body = error.body
    assert isinstance(body, dict)
    return str(body["error"]["message"])


def test_five_breakpoints_are_rejected_with_the_api_text(client: anthropic.Anthropic) -> None:
    content = [block(f"part {n}", cached=True) for n in range(5)]
    error = _error_of(
        client, model=MODEL, max_tokens=8, messages=[{"role": "user", "content": content}]
    )
    assert error.status_code == 400
    assert isinstance(error, anthropic.BadRequestError)
    assert _message(error) == "A maximum of 4 blocks with cache_control may be provided. Found 5."


def test_automatic_caching_with_four_explicit_breakpoints_is_rejected(
    client: anthropic.Anthropic,
) -> None:
    content = [block(f"part {n}", cached=True) for n in range(4)]
    error = _error_of(
        client,
        model=MODEL,
        max_tokens=8,
        cache_control={"type": "ephemeral"},
        messages=[{"role": "user", "content": [*content, block("tail")]}],
    )
    assert error.status_code == 400
    assert "Found 5." in _message(error)


def test_automatic_caching_with_a_different_ttl_on_the_last_block_is_rejected(
    client: anthropic.Anthropic,
) -> None:
    error = _error_of(
        client,
        model=MODEL,
        max_tokens=8,
        cache_control={"type": "ephemeral", "ttl": "1h"},
        messages=[{"role": "user", "content": [block("last", ttl="5m")]}],
    )
    assert error.status_code == 400
    assert error.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_automatic_caching_with_the_same_ttl_on_the_last_block_adds_nothing(
    client: anthropic.Anthropic,
) -> None:
    reply = client.messages.create(
        model=MODEL,
        max_tokens=8,
        cache_control={"type": "ephemeral"},
        messages=[{"role": "user", "content": [block(long_text("x"), cached=True)]}],
    )
    assert reply.usage.cache_creation_input_tokens > 0


def test_1h_breakpoint_after_a_5m_one_is_rejected_with_the_api_text(
    client: anthropic.Anthropic,
) -> None:
    error = _error_of(
        client,
        model=MODEL,
        max_tokens=8,
        system=[block("a", ttl="5m")],
        messages=[{"role": "user", "content": [block("x"), block("y", ttl="1h")]}],
    )
    assert error.status_code == 400
    assert _message(error) == (
        "messages.0.content.1.cache_control.ttl: a ttl='1h' cache_control block must not come "
        "after a ttl='5m' cache_control block. Note that blocks are processed in the following "
        "order: `tools`, `system`, `messages`."
    )


def test_cache_control_on_an_empty_text_block_is_rejected(client: anthropic.Anthropic) -> None:
    error = _error_of(
        client,
        model=MODEL,
        max_tokens=8,
        messages=[{"role": "user", "content": [block("", cached=True)]}],
    )
    assert error.status_code == 400
    assert _message(error) == "cache_control cannot be set for empty text blocks"


def test_empty_text_block_is_rejected(client: anthropic.Anthropic) -> None:
    error = _error_of(
        client, model=MODEL, max_tokens=8, messages=[{"role": "user", "content": [block("")]}]
    )
    assert error.status_code == 400
    assert _message(error) == "messages: text content blocks must be non-empty"


def test_cache_control_on_a_thinking_block_is_rejected(client: anthropic.Anthropic) -> None:
    thinking = {
        "type": "thinking",
        "thinking": "hmm",
        "signature": "sig",
        "cache_control": {"type": "ephemeral"},
    }
    error = _error_of(
        client,
        model=MODEL,
        max_tokens=8,
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [thinking, block("answer")]},
            {"role": "user", "content": "More"},
        ],
    )
    assert error.status_code == 400
    assert "messages.1.content.0.thinking.cache_control" in _message(error)


def test_missing_max_tokens_is_rejected(sim: Simulator) -> None:
    http = sim.http_client()
    response = http.post(
        "/v1/messages",
        headers={"x-api-key": "sim"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }
    assert response.json()["request_id"] == response.headers["request-id"]


def test_malformed_json_is_rejected(sim: Simulator) -> None:
    http = sim.http_client()
    response = http.post("/v1/messages", headers={"x-api-key": "sim"}, content=b'{"model": ')
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_body_over_32_mb_is_rejected_with_413(client: anthropic.Anthropic) -> None:
    huge = "x" * (32 * 1024 * 1024 + 1)
    error = _error_of(
        client, model=MODEL, max_tokens=8, messages=[{"role": "user", "content": huge}]
    )
    assert error.status_code == 413
    assert error.body["error"]["type"] == "request_too_large"  # type: ignore[index]


def test_unknown_model_is_404_not_found(client: anthropic.Anthropic) -> None:
    error = _error_of(
        client,
        model="claude-imaginary-9",
        max_tokens=8,
        messages=[{"role": "user", "content": "Hi"}],
    )
    assert isinstance(error, anthropic.NotFoundError)
    assert _message(error) == "model: claude-imaginary-9"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK warns on old IDs
def test_retired_model_is_404_like_the_api(client: anthropic.Anthropic) -> None:
    # claude-3-opus-20240229 retired 2026-01-05 per the model table; the clock is in 2027.
    error = _error_of(
        client,
        model="claude-3-opus-20240229",
        max_tokens=8,
        messages=[{"role": "user", "content": "Hi"}],
    )
    assert isinstance(error, anthropic.NotFoundError)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK warns on old IDs
def test_retired_model_is_served_when_the_setting_says_so(clock: VirtualClock) -> None:
    sim = Simulator(clock=clock, retired_models="serve")
    client = anthropic.Anthropic(api_key="sim", http_client=sim.http_client())
    reply = client.messages.create(
        model="claude-3-opus-20240229", max_tokens=8, messages=[{"role": "user", "content": "Hi"}]
    )
    assert reply.model == "claude-3-opus-latest"  # the alias resolves to the table's ID


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK warns on old IDs
def test_retired_model_answers_before_its_retirement_date() -> None:
    sim = Simulator(clock=VirtualClock(start=1_735_689_600.0))  # 2025-01-01
    client = anthropic.Anthropic(api_key="sim", http_client=sim.http_client())
    reply = client.messages.create(
        model="claude-3-opus-20240229", max_tokens=8, messages=[{"role": "user", "content": "Hi"}]
    )
    assert reply.usage.input_tokens > 0


@pytest.mark.parametrize(
    "extra",
    [
        {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        {"tool_choice": {"type": "any"}},
        {"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
    ],
    ids=["thinking_enabled", "tool_choice_any", "output_format"],
)
def test_prewarm_combinations_the_api_refuses_are_400(
    sim: Simulator, extra: dict[str, Any]
) -> None:
    http = sim.http_client()
    body = {
        "model": MODEL,
        "max_tokens": 0,
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
        **extra,
    }
    response = http.post("/v1/messages", headers={"x-api-key": "sim"}, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_prewarm_with_stream_is_400(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model=MODEL, max_tokens=0, stream=True, messages=[{"role": "user", "content": "Hi"}]
        )


def test_unknown_path_is_404(sim: Simulator) -> None:
    response = sim.http_client().post("/v1/complete", headers={"x-api-key": "sim"}, json={})
    assert response.status_code == 404
    assert isinstance(response, httpx2.Response)


def test_an_empty_prefill_accepted_last_turn_is_rejected_once_it_is_not_last(
    client: anthropic.Anthropic,
) -> None:
    question = {"role": "user", "content": "Which layer changed?"}
    client.messages.create(
        model=MODEL, max_tokens=8, messages=[question, {"role": "assistant", "content": ""}]
    )
    error = _error_of(
        client,
        model=MODEL,
        max_tokens=8,
        messages=[question, {"role": "assistant", "content": ""}, question],
    )
    assert error.status_code == 400
    assert _message(error) == "messages.1: assistant messages must have non-empty content"


def test_a_conversation_that_grew_is_checked_in_its_new_messages(
    client: anthropic.Anthropic,
) -> None:
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "Which layer changed?"},
        {"role": "assistant", "content": "The stable one."},
        {"role": "user", "content": [block("Why?", cached=True)]},
    ]
    client.messages.create(model=MODEL, max_tokens=8, messages=history)
    grown = [*history, {"role": "assistant", "content": "A date."}]
    grown.append({"role": "user", "content": [block("And now?", ttl="1h")]})
    error = _error_of(client, model=MODEL, max_tokens=8, messages=grown)
    assert error.status_code == 400
    assert _message(error) == (
        "messages.4.content.0.cache_control.ttl: a ttl='1h' cache_control block must not come "
        "after a ttl='5m' cache_control block. Note that blocks are processed in the following "
        "order: `tools`, `system`, `messages`."
    )


def test_a_conversation_whose_rolling_breakpoint_moved_is_checked_from_its_last_old_turn(
    client: anthropic.Anthropic,
) -> None:
    question = {"role": "user", "content": "Which layer changed?"}
    client.messages.create(
        model=MODEL,
        max_tokens=8,
        messages=[
            question,
            {"role": "assistant", "content": [block("The stable one.", cached=True)]},
        ],
    )
    # the last accepted turn changed (its breakpoint moved on, its text emptied): it is checked
    # again, not taken as accepted with the turns before it
    error = _error_of(
        client,
        model=MODEL,
        max_tokens=8,
        messages=[question, {"role": "assistant", "content": ""}, question],
    )
    assert error.status_code == 400
    assert _message(error) == "messages.1: assistant messages must have non-empty content"
