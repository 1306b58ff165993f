"""Client overhead: `CachingClient.messages.create` vs the bare `anthropic` SDK, same simulator.

The prompt is about 100K tokens: 8 tool definitions, a 3-block system prompt (1h and 5m
breakpoints) and a 40-turn conversation with a rolling breakpoint on the newest user turn, which
changes on every call (as in a chat). The peer is `anthropic.Anthropic(api_key="sim",
http_client=sim.http_client())` — the bare SDK on the same simulator transport, in the same run. The
two are timed in alternation, each call on its own warmed simulator (so both read the cache), and
the figure is the ratio of medians of 100 calls — of wall-clock time, and of the process's CPU
time (steadier when other jobs share the machine; on an idle machine the two agree). Each
scenario runs `REPEATS` times; the line gives the range of its ratios, and what a call adds (the
median of each call's CPU time minus that of the peer's call right after it).

There is one recording path: the SDK's transport wrapped by `cachescope.recorder.Recorder`.
Scenarios (all with an in-memory ledger unless said):

* recording only — `diagnostics=False`, so both send byte-identical requests: the pure overhead
  of the call scope, the fingerprint, reading the response and pricing it;
* default — diagnostics chained (spliced into the JSON going out); the peer sends the same
  `diagnostics` field by hand, so the simulator's extra diagnosis work is on both sides;
* on-disk ledger — default, plus the record appended to a JSONL file with flush + fsync;
* Prompt.render layers — recording only, with the request rendered by a `Prompt` (what sessions
  and `%%cached_prompt` send): system, tools and every message content are `LayeredBlocks`;
* plain SDK + Recorder — no caching client: the bare SDK whose simulator transport is wrapped by
  a `Recorder` (what `cs.instrument` will build on); the request is read from the wire JSON;
* the caching client again, over the simulator's transport wrapped directly (as it will be once
  the simulator exposes its transport; today it is reached through its `httpx2.Client`).

Run: `.venv/bin/python -m benchmarks.bench_client`
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2

from benchmarks._machine import cpu_model
from cachescope import CachingClient, Layer, Prompt
from cachescope.ledger import Ledger
from cachescope.recorder import Recorder
from cachescope.sim import Simulator, VirtualClock
from cachescope.tokens import estimate_tokens

MODEL = "claude-sonnet-4-6"
TARGET_TOKENS = 100_000
ROUNDS = 100
REPEATS = 3

_PARAGRAPH = (
    "The handbook says every refund above the threshold needs a second approver, and that the "
    "approver must be in a different team from the requester. Exceptions are logged weekly.\n"
)


def build_params(turn: int) -> dict[str, Any]:
    tools = [
        {
            "name": f"tool_{i}",
            "description": f"Tool number {i}. " + _PARAGRAPH * 4,
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        }
        for i in range(8)
    ]
    system = [
        {"type": "text", "text": "You are Aura.\n" + _PARAGRAPH * 200, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": "Reference documents:\n" + _PARAGRAPH * 2_200},
        {"type": "text", "text": "Memories:\n" + _PARAGRAPH * 300, "cache_control": {"type": "ephemeral"}},
    ]  # fmt: skip
    messages: list[dict[str, Any]] = []
    for t in range(40):
        messages.append(
            {
                "role": "user",
                "content": [{"type": "text", "text": f"Question {t}. " + _PARAGRAPH * 3}],
            }
        )
        messages.append({"role": "assistant", "content": [{"type": "text", "text": f"Answer {t}. " + _PARAGRAPH * 3}]})  # fmt: skip
    messages.append(
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": f"New question {turn}?",
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        }
    )
    return {
        "model": MODEL,
        "max_tokens": 16,
        "tools": tools,
        "system": system,
        "messages": messages,
    }


def build_prompt_params(turn: int) -> dict[str, Any]:
    """The same request rendered by a `Prompt` (as sessions and `%%cached_prompt` send it): the
    system prompt, the tools and every message's content are `LayeredBlocks` that carry layer
    names. Built afresh on every call, like `build_params`."""
    plain = build_params(turn)
    stable, docs, memory = (block["text"] for block in plain["system"])
    prompt = Prompt(
        MODEL,
        [Layer("stable", stable, ttl="1h"), Layer("docs", docs, ttl=None), Layer("memory", memory)],
        tools=plain["tools"],
    )
    history = [
        {"role": m["role"], "content": m["content"][0]["text"]} for m in plain["messages"][:-1]
    ]
    return prompt.render(messages=history, user=f"New question {turn}?", max_tokens=16)


def prompt_tokens(params: dict[str, Any]) -> int:
    import orjson

    return estimate_tokens(orjson.dumps(params).decode())


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000.0


def run_pair(
    make_ours: Callable[[Simulator], Any],
    peer_diagnostics: bool,
    rounds: int = ROUNDS,
    build: Callable[[int], dict[str, Any]] = build_params,
) -> tuple[float, float, float, float, float]:
    """(ours, peer) median milliseconds per create, wall-clock then CPU time of the process,
    timed in alternation; then the median of the paired CPU differences, in microseconds."""
    sim_ours = Simulator(clock=VirtualClock())
    sim_peer = Simulator(clock=VirtualClock())
    ours = make_ours(sim_ours)
    peer = anthropic.Anthropic(api_key="sim", http_client=sim_peer.http_client())
    ours.messages.create(**build(0))  # both paths warmed before the timed calls
    peer.messages.create(**build(0))
    previous: str | None = None
    ours_wall: list[float] = []
    peer_wall: list[float] = []
    ours_cpu: list[float] = []
    peer_cpu: list[float] = []
    wall, cpu = time.perf_counter, time.process_time
    for turn in range(rounds + 3):
        params = build(turn)
        started, started_cpu = wall(), cpu()
        ours.messages.create(**params)
        ours_elapsed, ours_cpu_elapsed = wall() - started, cpu() - started_cpu

        params = build(turn)
        extra = {"diagnostics": {"previous_message_id": previous}} if peer_diagnostics else {}
        headers = {"anthropic-beta": "cache-diagnosis-2026-04-07"} if peer_diagnostics else None
        started, started_cpu = wall(), cpu()
        message = peer.messages.create(**params, **extra, extra_headers=headers)
        peer_elapsed, peer_cpu_elapsed = wall() - started, cpu() - started_cpu
        previous = message.id
        if turn >= 3:  # the first calls write the cache and warm up both paths
            ours_wall.append(ours_elapsed)
            peer_wall.append(peer_elapsed)
            ours_cpu.append(ours_cpu_elapsed)
            peer_cpu.append(peer_cpu_elapsed)
    return (
        _median_ms(ours_wall),
        _median_ms(peer_wall),
        _median_ms(ours_cpu),
        _median_ms(peer_cpu),
        # what a call adds, each call against the peer's call right after it: steadier than the
        # difference of the medians when the machine's speed drifts
        statistics.median(o - p for o, p in zip(ours_cpu, peer_cpu)) * 1e6,
    )


def _sim_transport(sim: Simulator) -> Any:
    """The simulator's own transport (what `sim.http_client()` is built on)."""
    return sim.transport()


def _plain_recorded(sim: Simulator) -> Any:
    http = httpx2.Client(transport=Recorder().wrap_transport(_sim_transport(sim)))
    return anthropic.Anthropic(api_key="sim", http_client=http)


def _direct(sim: Simulator) -> Any:
    transport = _sim_transport(sim)
    sim.transport = lambda: transport  # type: ignore[attr-defined]
    return CachingClient(backend="sim", simulator=sim, diagnostics=False)


def main() -> None:
    tokens = prompt_tokens(build_params(0))
    print(
        f"Python {platform.python_version()} on {platform.machine()} ({cpu_model()}), "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
        f"anthropic {anthropic.__version__}; prompt ≈ {tokens:,} tokens; "
        f"{ROUNDS} calls each, {REPEATS} runs"
    )
    print("ratios of medians per call (range over the runs): wall-clock, then CPU time")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "calls.jsonl")
        scenarios: list[
            tuple[str, Callable[[Simulator], Any], bool, Callable[[int], dict[str, Any]]]
        ] = [
            (
                "recording only (diagnostics off)",
                lambda sim: CachingClient(backend="sim", simulator=sim, diagnostics=False),
                False,
                build_params,
            ),
            (
                "default (diagnostics chained)",
                lambda sim: CachingClient(backend="sim", simulator=sim),
                True,
                build_params,
            ),
            (
                "default + on-disk ledger (fsync)",
                lambda sim: CachingClient(backend="sim", simulator=sim, ledger=Ledger(path)),
                True,
                build_params,
            ),
            (
                "Prompt.render layers, recording only",
                lambda sim: CachingClient(backend="sim", simulator=sim, diagnostics=False),
                False,
                build_prompt_params,
            ),
            ("plain SDK + Recorder (wire JSON)", _plain_recorded, False, build_params),
            ("recording only, sim transport direct", _direct, False, build_params),
        ]
        for name, factory, diagnostics, build in scenarios:
            wall: list[float] = []
            cpu: list[float] = []
            added: list[float] = []
            for _ in range(REPEATS):
                ours, peer, ours_cpu, peer_cpu, plus = run_pair(factory, diagnostics, build=build)
                wall.append(ours / peer)
                cpu.append(ours_cpu / peer_cpu)
                added.append(plus)
            print(
                f"{name:<38} wall {min(wall):5.3f}–{max(wall):5.3f}x   "
                f"CPU {min(cpu):5.3f}–{max(cpu):5.3f}x   "
                f"(+{min(added):4.0f}–{max(added):4.0f} µs a call; peer {peer_cpu:5.2f} ms CPU)"
            )
            sys.stdout.flush()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
