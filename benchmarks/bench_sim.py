"""The simulator behind the real SDK, per call, against the SDK with a canned-response transport.

Workload: one agent conversation that grows to about 100K tokens: 8 tools and a 1h-cached system
prompt, then turns of (user question, assistant text + tool_use, user tool_result) with a
top-level `cache_control`, so every call reads the previous prefix and writes the new one. Each
run uses new text (a run number in every message), so no memo starts warm from an earlier run.

Measured per call, in the same run and alternating call by call on the same bodies:
- sim: `anthropic.Anthropic(http_client=Simulator(...).http_client()).messages.create(**body)`;
- peer: `anthropic.Anthropic(http_client=httpx2.Client(transport=httpx2.MockTransport(canned)))`
  `.messages.create(**body)`, where `canned` answers every request with the same Message JSON
  (what the SDK's own work costs: building and sending the request, parsing the response).

Target (issue 15): sim ≤ 1.5× peer per call. Printed, in CPU time of this process (less
disturbed by other processes on a shared machine) and in wall-clock time: the ratio over all
calls and per size band of the prompt, the median and range over runs.

Run: `python -m benchmarks.bench_sim` (`--repeat N` for more runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import statistics
import time
from typing import Any

import anthropic
import httpx2
import orjson

from benchmarks._machine import cpu_model
from cachescope.sim import Simulator, VirtualClock

MODEL = "claude-sonnet-5"
TARGET_TOKENS = 100_000
BANDS = ((0, 25_000), (25_000, 50_000), (50_000, 75_000), (75_000, 10**9))

CANNED = orjson.dumps(
    {
        "id": "msg_01Canned",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "(canned reply) noted."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 5,
            "service_tier": "standard",
        },
    }
)


def _prose(label: str, sentences: int) -> str:
    return " ".join(
        f"{label} step {i}: the agent reads the file, checks the cache and notes what changed."
        for i in range(sentences)
    )


def build_conversation(run: int) -> list[dict[str, Any]]:
    """The request bodies of one conversation, growing to about `TARGET_TOKENS`."""
    tools = [
        {
            "name": f"tool_{i}",
            "description": f"Tool {i} of the agent. " + "It does one careful thing. " * 12,
            "input_schema": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "query": {"type": "string"}},
                "required": ["path"],
            },
        }
        for i in range(8)
    ]
    system = [
        {
            "type": "text",
            "text": _prose(f"[run {run}] system", 160),
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]
    messages: list[dict[str, Any]] = []
    bodies: list[dict[str, Any]] = []
    turn = 0
    chars = 0
    # Grown by characters (about 2.6 to a token here): counting tokens now would warm the memos
    # that the timed calls are to fill.
    while chars < TARGET_TOKENS * 2.6:
        turn += 1
        label = f"[run {run} turn {turn}]"
        if messages:
            use_id = f"toolu_{run:02d}{turn:06d}"
            messages.append(
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": f"{label} I will look at the next file."},
                        {
                            "type": "tool_use",
                            "id": use_id,
                            "name": f"tool_{turn % 8}",
                            "input": {"path": f"src/module_{turn}.py"},
                        },
                    ],
                }
            )
            messages.append(
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": use_id,
                            "content": _prose(f"{label} result", 30),
                        }
                    ],
                }
            )
        else:
            messages.append({"role": "user", "content": _prose(f"{label} task", 6)})
        body = {
            "model": MODEL,
            "max_tokens": 256,
            "tools": tools,
            "system": system,
            "messages": list(messages),
            "cache_control": {"type": "ephemeral"},
        }
        bodies.append(body)
        chars = len(orjson.dumps(body))
    return bodies


def _band(tokens: int) -> int:
    for i, (low, high) in enumerate(BANDS):
        if low <= tokens < high:
            return i
    return len(BANDS) - 1


def run_once(run: int, clock: Any = time.process_time) -> dict[str, Any]:
    """Per-call times of one conversation through the simulator and through the canned peer
    (`clock`: CPU time of this process by default, less disturbed by other processes)."""
    bodies = build_conversation(run)
    sim = Simulator(clock=VirtualClock(start=1_800_000_000.0))
    sim_client = anthropic.Anthropic(api_key="sim", http_client=sim.http_client(), max_retries=0)
    canned = httpx2.MockTransport(
        lambda request: httpx2.Response(
            200, headers={"content-type": "application/json"}, content=CANNED
        )
    )
    peer_client = anthropic.Anthropic(
        api_key="sim", http_client=httpx2.Client(transport=canned), max_retries=0
    )
    sim_times = [0.0] * len(BANDS)
    peer_times = [0.0] * len(BANDS)
    calls = [0] * len(BANDS)
    checked = 0
    gc.collect()
    replies = []
    for body in bodies:
        band = _band(len(orjson.dumps(body)) * 10 // 26)
        started = clock()
        peer_client.messages.create(**body)
        peer_times[band] += clock() - started
        started = clock()
        reply = sim_client.messages.create(**body)
        sim_times[band] += clock() - started
        calls[band] += 1
        replies.append(reply)
    # After the timed calls: every response's usage adds up to what count_tokens says.
    sizes = [sim.count_tokens(body)["input_tokens"] for body in bodies]
    for reply, size in zip(replies, sizes):
        usage = reply.usage
        total = (
            usage.input_tokens
            + (usage.cache_creation_input_tokens or 0)
            + (usage.cache_read_input_tokens or 0)
        )
        assert total == size, (total, size)
        checked += 1
    return {
        "calls": len(bodies),
        "last_tokens": sizes[-1],
        "sim": sim_times,
        "peer": peer_times,
        "band_calls": calls,
        "checked": checked,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=5, help="runs (each a new conversation)")
    args, _ = parser.parse_known_args()  # `benchmarks.run` passes its own arguments through
    load_before = os.getloadavg()[0]
    runs = [run_once(run) for run in range(args.repeat)]
    wall_runs = [run_once(100 + run, time.perf_counter) for run in range(args.repeat)]
    load_after = os.getloadavg()[0]
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"{now}; {os.cpu_count()} CPUs, {cpu_model()}; Python {platform.python_version()}; "
        f"anthropic {anthropic.__version__}; load average {load_before:.1f} before, "
        f"{load_after:.1f} after"
    )
    first = runs[0]
    print(
        f"{first['calls']} calls per conversation, growing to {first['last_tokens']:,} tokens; "
        f"{args.repeat} runs; every response checked: input + cache_creation + cache_read == "
        "count_tokens"
    )
    _table("CPU time", runs)
    _table("wall-clock time", wall_runs)


def _table(title: str, runs: list[dict[str, Any]]) -> None:
    print(f"\n{title}: best ms/call over runs, and sim/peer per run (range over runs)")
    header = f"{'prompt tokens~':>16}{'calls':>7}{'peer ms/call':>14}{'sim ms/call':>13}"
    print(header + f"{'sim/peer median':>17}{'range':>18}")
    rows = [
        (f"{low // 1000}K-{min(high, 10**6) // 1000}K", i) for i, (low, high) in enumerate(BANDS)
    ]
    rows[-1] = (f"{BANDS[-1][0] // 1000}K+", len(BANDS) - 1)
    for label, i in [*rows, ("all", -1)]:
        ratios, peer_ms, sim_ms, calls = [], [], [], 0
        for result in runs:
            if i < 0:
                count = sum(result["band_calls"])
                peer, sim = sum(result["peer"]), sum(result["sim"])
            else:
                count = result["band_calls"][i]
                peer, sim = result["peer"][i], result["sim"][i]
            if not count:
                continue
            calls = count
            ratios.append(sim / peer)
            peer_ms.append(peer / count * 1000)
            sim_ms.append(sim / count * 1000)
        if not ratios:
            continue
        print(
            f"{label:>16}{calls:>7}{min(peer_ms):>14.2f}{min(sim_ms):>13.2f}"
            f"{statistics.median(ratios):>16.2f}x{f'{min(ratios):.2f}x - {max(ratios):.2f}x':>18}"
        )


if __name__ == "__main__":
    main()
