"""Prefix diff: `cachescope.compare` vs `difflib.unified_diff` on two ~1 MB agent requests.

`a` is a long agent session (tools, a system prompt, ~490 turns of tool results and replies, the
rolling breakpoint on the last turn). `b` is its next request: it grew by a turn (a reply and a
tool result, the breakpoint moved onto it) and one byte changed in the middle of the history
(block 250). The peer is what one would otherwise run to find the change: `difflib.unified_diff`
over the lines of the two prompts (joined outside the timing, which favours difflib); the lines
of the two requests' JSON (`json.dumps(indent=2)`) are reported too. Every figure comes from this
one run, as the best of several repetitions, the peer and the scenarios alternating.

Scenarios for `compare`:

* session — `b` holds `a`'s unchanged message objects (as a session's history and
  `Prompt.render` give) and `a` was flattened before (the client fingerprints every call): `a` is
  keyed message by message against the memo, `b`'s shared messages are taken from `a` unkeyed;
* fresh copy — `b` is a JSON round trip: nothing shared, every message of both keyed (a copy's
  strings hashed once), the blocks found in the memo;
* cold — a fresh copy and an empty memo: every block serialized, hashed and counted;
* stored fingerprints — `compare` of two `Fingerprint`s (what the dashboard reads from the ledger).

Then the cost of `fingerprint` of a ~100K-token request (the client fingerprints every call),
with an empty memo and with a warm one, against `json.dumps` of the same request (which the SDK
runs on every call anyway).

Run: `.venv/bin/python -m benchmarks.bench_compare`
"""

from __future__ import annotations

import difflib
import json
import os
import platform
import random
import time
from collections.abc import Callable
from typing import Any

import orjson

from benchmarks._machine import cpu_model
from cachescope.stability import clear_memos, compare, fingerprint

BLOCKS = 500
TARGET_BYTES = 820_000
CHANGED_BLOCK = 250
ROUNDS = 7

_WORDS = [
    "the",
    "request",
    "cache",
    "prompt",
    "model",
    "token",
    "system",
    "tool",
    "result",
    "value",
    "user",
    "file",
    "line",
    "error",
    "test",
    "return",
    "config",
    "path",
    "data",
    "index",
    "layer",
    "block",
    "read",
    "write",
    "time",
    "first",
    "last",
    "next",
    "build",
    "check",
]


def _code(rng: random.Random, size: int) -> str:
    lines: list[str] = []
    total = 0
    while total < size:
        indent = "    " * rng.randint(0, 3)
        line = indent + rng.choice(
            [
                f"value_{rng.randint(0, 99)} = compute({rng.choice(_WORDS)}, {rng.randint(0, 999)})",
                "return result",
                "if item is None:",
                f"for {rng.choice(_WORDS)} in items:",
                f"log.debug('{rng.choice(_WORDS)} %s', name)",
                f"def {rng.choice(_WORDS)}_{rng.randint(0, 999)}(self, path, options=None):",
                "",
                "    raise ValueError(message)",
            ]
        )
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)


def _json(rng: random.Random, size: int) -> str:
    rows: list[dict[str, Any]] = []
    total = 0
    while total < size:
        row = {
            "id": rng.randint(0, 10**6),
            "path": "/".join(rng.choice(_WORDS) for _ in range(3)) + ".py",
            "status": rng.choice(["ok", "failed", "skipped"]),
            "duration_ms": rng.randint(1, 5000),
            "message": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 8))),
        }
        rows.append(row)
        total += 110
    return json.dumps(rows, indent=2)


def _prose(rng: random.Random, size: int) -> str:
    paragraphs: list[str] = []
    total = 0
    while total < size:
        sentence_count = rng.randint(2, 6)
        paragraph = " ".join(
            " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 18))).capitalize() + "."
            for _ in range(sentence_count)
        )
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    return "\n\n".join(paragraphs)


def build_request(seed: int = 5, blocks: int = BLOCKS, size: int = TARGET_BYTES) -> dict[str, Any]:
    """An agent request of about `size` bytes in `blocks` positions: tools, system, tool calls
    and results, the rolling breakpoint on the last turn."""
    rng = random.Random(seed)
    per_block = size // blocks
    tools = [
        {
            "name": f"{rng.choice(_WORDS)}_{i}",
            "description": _prose(rng, per_block // 2),
            "input_schema": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["path"],
            },
        }
        for i in range(8)
    ]
    tools[-1]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    system = [
        {"type": "text", "text": _prose(rng, per_block * 4)},
        {
            "type": "text",
            "text": _prose(rng, per_block * 4),
            "cache_control": {"type": "ephemeral"},
        },
    ]
    messages: list[dict[str, Any]] = []
    turn = 0
    while len(tools) + len(system) + len(messages) < blocks:
        turn += 1
        messages.append(_turn(rng, turn, per_block))
    if messages[-1]["role"] != "user":
        messages.pop()
    messages[-1] = _with_breakpoint(messages[-1])
    return {
        "model": "claude-sonnet-5",
        "max_tokens": 1024,
        "tools": tools,
        "system": system,
        "messages": messages,
    }


def _turn(rng: random.Random, turn: int, per_block: int) -> dict[str, Any]:
    if turn % 2:
        text = _code(rng, per_block) if rng.random() < 0.5 else _json(rng, per_block)
        result = {"type": "tool_result", "tool_use_id": f"toolu_{turn:04d}", "content": text}
        return {"role": "user", "content": [result]}
    return {
        "role": "assistant",
        "content": [{"type": "text", "text": _prose(rng, per_block - 200)}],
    }


def _with_breakpoint(message: dict[str, Any]) -> dict[str, Any]:
    block = {**message["content"][-1], "cache_control": {"type": "ephemeral"}}
    return {**message, "content": [*message["content"][:-1], block]}


def next_request(params: dict[str, Any]) -> dict[str, Any]:
    """The session's next request: new dicts around the same unchanged message objects, one byte
    changed in block `CHANGED_BLOCK`, the last turn without its breakpoint, and a new turn."""
    messages = list(params["messages"])
    m = CHANGED_BLOCK - len(params["tools"]) - len(params["system"])
    block = dict(messages[m]["content"][0])
    key = "content" if block["type"] == "tool_result" else "text"
    text = block[key]
    middle = len(text) // 2
    block[key] = text[:middle] + ("#" if text[middle] != "#" else "@") + text[middle + 1 :]
    messages[m] = {**messages[m], "content": [block]}
    last = messages[-1]
    messages[-1] = {**last, "content": [_without_breakpoint(b) for b in last["content"]]}
    rng = random.Random(len(messages))
    per_block = TARGET_BYTES // BLOCKS
    messages.append(_turn(rng, 2 * len(messages), per_block))
    messages.append(_with_breakpoint(_turn(rng, 2 * len(messages) + 1, per_block)))
    return {**params, "messages": messages}


def _without_breakpoint(block: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in block.items() if key != "cache_control"}


def prompt_text(params: dict[str, Any]) -> str:
    """What a person would diff: the prompt as text, one block after another."""
    parts = [json.dumps(tool, indent=2) for tool in params["tools"]]
    parts += [block["text"] for block in params["system"]]
    for message in params["messages"]:
        for block in message["content"]:
            parts.append(block.get("text") or block.get("content") or "")
    return "\n".join(parts)


class Timing:
    """Best (smallest) wall-clock and CPU time of single calls, over every round."""

    def __init__(self) -> None:
        self.wall = float("inf")
        self.cpu = float("inf")

    def measure(self, fn: Callable[[], object], calls: int) -> None:
        for _ in range(calls):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            cpu = time.process_time() - cpu
            wall = time.perf_counter() - wall
            self.wall = min(self.wall, wall)
            self.cpu = min(self.cpu, cpu)


def _row(name: str, t: Timing, peer: Timing) -> str:
    return (
        f"{name:44s}{t.wall * 1e3:8.3f} ms{peer.wall / t.wall:7.0f}x "
        f"{t.cpu * 1e3:8.3f} ms{peer.cpu / t.cpu:7.0f}x"
    )


def main() -> None:
    a = build_request()
    b = next_request(a)
    b_copy = orjson.loads(orjson.dumps(b))
    text_a, text_b = prompt_text(a), prompt_text(b)
    json_a, json_b = json.dumps(a, indent=2), json.dumps(b, indent=2)
    size = len(orjson.dumps(a))
    positions = len(fingerprint(a).blocks)

    def run_difflib() -> None:
        list(difflib.unified_diff(text_a.splitlines(True), text_b.splitlines(True)))

    def run_difflib_json() -> None:
        list(difflib.unified_diff(json_a.splitlines(True), json_b.splitlines(True)))

    diff = compare(a, b)
    assert diff.cause == "messages_changed", diff
    assert diff.index == CHANGED_BLOCK, diff
    clear_memos()
    assert compare(a, b_copy).to_dict() == diff.to_dict()
    fp_a, fp_b = fingerprint(a), fingerprint(b_copy)
    assert compare(fp_a, fp_b).tokens_lost == diff.tokens_lost

    def session() -> None:
        compare(a, b)

    def fresh() -> None:
        compare(a, b_copy)

    def cold() -> None:
        clear_memos()
        compare(a, b_copy)

    def stored() -> None:
        compare(fp_a, fp_b)

    # ~100K tokens: the client fingerprints every call it sends
    big = build_request(seed=7, blocks=130, size=200_000)
    big_tokens = fingerprint(big).total_tokens

    def fingerprint_cold() -> None:
        clear_memos()
        fingerprint(big)

    def fingerprint_warm() -> None:
        fingerprint(big)

    def sdk_json() -> None:
        json.dumps(big)

    fingerprint(a)
    scenarios: list[tuple[str, Callable[[], object], int]] = [
        ("compare, session", session, 30),
        ("compare, fresh copy of b", fresh, 30),
        ("compare, cold (no memo)", cold, 5),
        ("compare, stored fingerprints", stored, 30),
    ]
    costs: list[tuple[str, Callable[[], object], int]] = [
        ("fingerprint, empty memo", fingerprint_cold, 5),
        ("fingerprint, warm memo", fingerprint_warm, 30),
    ]
    peer, peer_json, dumps = Timing(), Timing(), Timing()
    timings = {name: Timing() for name, _, _ in scenarios + costs}
    load_before = os.getloadavg()
    for _ in range(ROUNDS):
        peer.measure(run_difflib, 1)
        peer_json.measure(run_difflib_json, 1)
        dumps.measure(sdk_json, 10)
        for name, fn, calls in scenarios + costs:
            timings[name].measure(fn, calls)
    load_after = os.getloadavg()
    for t in (peer, peer_json):
        t.cpu = min(t.cpu, t.wall)  # the CPU clock of a one-call run can overshoot by a tick

    print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}, {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    print(
        f"load average (1, 5, 15 min): before {load_before[0]:.2f} {load_before[1]:.2f} "
        f"{load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    print(
        f"request: {size / 1e6:.2f} MB of JSON, {positions} positions, "
        f"{text_a.count(chr(10)) + 1:,} prompt lines; the next one grew by a turn and changed "
        f"one byte in block {CHANGED_BLOCK}"
    )
    print(f"  found: {diff.summary()}")
    print(f"best of {ROUNDS} rounds, peers and scenarios alternating")
    print(f"{'':44s}{'wall':>11s}{'ratio':>9s}{'CPU':>12s}{'ratio':>9s}")
    print(
        f"{'difflib.unified_diff over prompt lines':44s}{peer.wall * 1e3:8.1f} ms{'':9s}"
        f"{peer.cpu * 1e3:9.1f} ms"
    )
    for name, _, _ in scenarios:
        print(_row(name, timings[name], peer))
    print(
        f"{'difflib.unified_diff over JSON lines':44s}{peer_json.wall * 1e3:8.1f} ms{'':9s}"
        f"{peer_json.cpu * 1e3:9.1f} ms"
    )
    for name, _, _ in scenarios:
        print(_row(name, timings[name], peer_json))
    print(f"fingerprint of a {big_tokens:,}-token request ({len(big['messages'])} messages)")
    print(f"{'json.dumps of the request (the SDK)':44s}{dumps.wall * 1e3:8.3f} ms")
    for name, _, _ in costs:
        t = timings[name]
        print(f"{name:44s}{t.wall * 1e3:8.3f} ms{t.wall / dumps.wall:7.2f}x json.dumps")


if __name__ == "__main__":
    main()
