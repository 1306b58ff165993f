"""Shared helpers for the simulator tests: every test drives the real `anthropic` SDK."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from cachescope.sim import Simulator, VirtualClock

MODEL = "claude-sonnet-5"  # 1,024-token minimum in the shipped model table


def block(text: str, ttl: str | None = None, cached: bool = False) -> dict[str, Any]:
    """A text block, with a breakpoint when `cached` or `ttl` is given."""
    result: dict[str, Any] = {"type": "text", "text": text}
    if cached or ttl:
        result["cache_control"] = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return result


def long_text(label: str, words: int = 600) -> str:
    """Distinct prose of roughly `words` words (well over the 1,024-token minimum at 600)."""
    return " ".join(f"{label}-{i % 97} lorem ipsum" for i in range(words // 3))


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=1_800_000_000.0)


@pytest.fixture
def sim(clock: VirtualClock) -> Simulator:
    return Simulator(clock=clock)


@pytest.fixture
def client(sim: Simulator) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sim", http_client=sim.http_client(), max_retries=2)
