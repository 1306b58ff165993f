"""Simulator core throughput on 50-block requests, against named peers measured in the same run.

Workload: 4 agent sessions interleaved, each append-only with a rolling breakpoint on the last
block (5 tools + 3 system blocks + a growing history of 36–64 message blocks, ~50 on average);
every request adds two new messages with new text, so each request also counts and hashes new
blocks. Bodies are built before timing.

Measured:
- core: `Simulator.handle_messages(body)` (validation, flatten, lookback, usage, reply);
- peer "naive": the same requests flattened from scratch with `cachescope._blocks.flatten` and
  `prefix_keys` (every block rehashed and recounted; no lookup, no response) — a lower bound on
  a full-rehash simulator;
- peer "sdk": the same requests through `anthropic.Anthropic(...).messages.create` and the
  simulator's HTTP transport.

Run: `python -m benchmarks.bench_sim`.
"""

from __future__ import annotations

import platform
import time
from typing import Any

import anthropic

from cachescope._blocks import flatten
from cachescope.sim import Simulator, VirtualClock

MODEL = "claude-sonnet-5"
SESSIONS = 4
REQUESTS = 4000


def _text(session: int, turn: int, role: str) -> str:
    return f"[{session}:{turn}:{role}] " + "The quick brown fox checks the cache. " * 8


def build_bodies(count: int = REQUESTS) -> list[dict[str, Any]]:
    tools = [
        {
            "name": f"tool_{i}",
            "description": "A tool that does a thing. " * 10,
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        }
        for i in range(5)
    ]
    system = [
        {"type": "text", "text": f"System part {i}. " + "Be helpful. " * 40} for i in range(3)
    ]
    system[-1] = {**system[-1], "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    histories: list[list[dict[str, Any]]] = [[] for _ in range(SESSIONS)]
    turns = [0] * SESSIONS
    bodies = []
    for n in range(count):
        s = n % SESSIONS
        history = histories[s]
        if len(history) >= 64:  # session restarts with new text
            history.clear()
        if not history:
            for _ in range(18):
                turns[s] += 1
                history.append(
                    {"role": "user", "content": [{"type": "text", "text": _text(s, turns[s], "u")}]}
                )
                history.append(
                    {
                        "role": "assistant",
                        "content": [{"type": "text", "text": _text(s, turns[s], "a")}],
                    }
                )
        turns[s] += 1
        if history[-1]["role"] == "user":
            history.append(
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": _text(s, turns[s], "a")}],
                }
            )
        history.append(
            {"role": "user", "content": [{"type": "text", "text": _text(s, turns[s], "u")}]}
        )
        messages = [dict(m) for m in history]
        last = messages[-1]
        last["content"] = [{**last["content"][0], "cache_control": {"type": "ephemeral"}}]
        bodies.append(
            {
                "model": MODEL,
                "max_tokens": 256,
                "tools": tools,
                "system": system,
                "messages": messages,
            }
        )
        history.append(
            {"role": "assistant", "content": [{"type": "text", "text": _text(s, turns[s], "r")}]}
        )
    return bodies


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def run() -> dict[str, float]:
    bodies = build_bodies()
    blocks = sum(len(flatten(b).blocks) for b in bodies[:200]) / 200

    sim = Simulator(clock=VirtualClock(start=1_800_000_000.0))
    started = time.perf_counter()
    hits = 0
    for body in bodies:
        hits += sim.handle_messages(body)["usage"]["cache_read_input_tokens"] > 0
    core = _rate(len(bodies), time.perf_counter() - started)

    started = time.perf_counter()
    for body in bodies:
        flatten(body).prefix_keys()
    naive = _rate(len(bodies), time.perf_counter() - started)

    sdk_sim = Simulator(clock=VirtualClock(start=1_800_000_000.0))
    client = anthropic.Anthropic(api_key="sim", http_client=sdk_sim.http_client())
    sdk_bodies = bodies[:400]
    started = time.perf_counter()
    for body in sdk_bodies:
        client.messages.create(**body)
    sdk = _rate(len(sdk_bodies), time.perf_counter() - started)
    return {
        "blocks": blocks,
        "core": core,
        "naive": naive,
        "sdk": sdk,
        "hit_share": hits / len(bodies),
    }


def main() -> None:
    result = run()
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} Python {platform.python_version()}"
    )
    print(
        f"requests: {REQUESTS}, average blocks per request: {result['blocks']:.1f}, "
        f"requests with a cache read: {result['hit_share']:.0%}"
    )
    print(f"core handle_messages:            {result['core']:>10,.0f} req/s")
    print(
        f"peer naive flatten+prefix_keys:  {result['naive']:>10,.0f} req/s "
        f"(core is {result['core'] / result['naive']:.1f}x)"
    )
    print(
        f"peer full SDK + transport:       {result['sdk']:>10,.0f} req/s "
        f"(core is {result['core'] / result['sdk']:.1f}x)"
    )


if __name__ == "__main__":
    main()
