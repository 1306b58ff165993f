"""AsyncCachingClient has parity with CachingClient: records, streams, faults, sessions."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import pytest
from anthropic.types import Message

from cachescope import AsyncCachingClient
from cachescope.prompt import Layer, Prompt
from cachescope.sim import Fault, Simulator, VirtualClock

MODEL = "claude-sonnet-4-6"
STABLE = "You are Aura, a careful assistant. Answer briefly and cite the handbook. " * 400


def params() -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 32,
        "system": [{"type": "text", "text": STABLE, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hello"}],
    }


def make_client(**kw: Any) -> AsyncCachingClient:
    kw.setdefault("simulator", Simulator(clock=VirtualClock()))
    return AsyncCachingClient(backend="sim", **kw)


def test_async_create_returns_the_sdks_message_and_records_it() -> None:
    async def run() -> tuple[Message, AsyncCachingClient]:
        client = make_client()
        await client.messages.create(**params())
        return await client.messages.create(**params()), client

    message, client = asyncio.run(run())
    assert isinstance(message, Message)
    record = client.ledger.records[1]
    assert record.message_id == message.id
    assert record.cache_read_input_tokens == message.usage.cache_read_input_tokens
    assert record.previous_message_id == client.ledger.records[0].message_id
    assert record.cost is not None


def test_async_stream_records_usage_when_the_stream_ends() -> None:
    async def run() -> tuple[Message, AsyncCachingClient]:
        client = make_client()
        async with client.messages.stream(**params()) as stream:
            final = await stream.get_final_message()
        return final, client

    final, client = asyncio.run(run())
    record = client.ledger.records[0]
    assert record.stream
    assert record.output_tokens == final.usage.output_tokens
    assert record.cache_creation_input_tokens == final.usage.cache_creation_input_tokens


def test_async_fault_reaches_the_caller_and_is_recorded_with_retries() -> None:
    client = make_client(simulator=Simulator(faults=Fault("overloaded", calls=(1, 2, 3))))

    with pytest.raises(anthropic.OverloadedError):
        asyncio.run(client.messages.create(**params()))
    record = client.ledger.records[0]
    assert record.error_status == 529
    assert record.retries == 2


def test_async_session_send_appends_the_turn() -> None:
    prompt = Prompt(MODEL, layers=[Layer("stable", STABLE, ttl="1h")])

    async def run() -> Any:
        client = make_client()
        chat = client.session("aura", prompt)
        await chat.send("first")
        return chat, await chat.send("second")

    chat, record = asyncio.run(run())
    assert record.session == "aura"
    assert len(chat.history) == 4
    assert record.cache_read_input_tokens > 0
