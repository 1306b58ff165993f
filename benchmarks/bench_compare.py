"""Prefix diff: `cachescope.compare` vs `difflib.unified_diff` on two 1 MB requests of 500 blocks.

The two requests differ in one byte, in the middle of the conversation history (block 250). The
peer is what one would otherwise run to find the change: `difflib.unified_diff` over the lines of the
two prompts (the prompt texts are joined outside the timing, which favours difflib). Every figure
comes from this one run, as the best of several repetitions.

Scenarios for `compare`:

* session — `a` is the previous call: the client fingerprinted it when it was sent, so its token
  estimates are memoised; `b` is the next render, whose unchanged blocks are the same string
  objects (as `Prompt.render` and a session's history give). `compare` still keys every message
  of both requests, every text hashed twice; because the two share message objects, it walks
  them in lockstep, so the second key of a shared message is computed from the CPU caches.
* fresh copies — as above, but `b` is a deep copy (JSON round trip): nothing is shared, the two
  requests are walked one after the other, and every block is compared byte for byte.
* cold — fresh copies and no memo at all: `a`'s token estimates over the lost range are counted.
* stored fingerprints — `fingerprint(a)` and `fingerprint(b)` from scratch (xxh3 of every block and
  a token estimate for each), then `compare` of the two fingerprints.
* session, pure Python — the session scenario with the C accelerators switched off (what
  `CACHESCOPE_PURE=1` runs), for the before/after in one run.

Run: `.venv/bin/python -m benchmarks.bench_compare`
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import platform
import random
import time
from collections.abc import Callable
from typing import Any

import orjson

from benchmarks._machine import cpu_model
from cachescope import blocks as _blocks
from cachescope import tokens as _tokens
from cachescope.stability import clear_memos, compare, fingerprint

BLOCKS = 500
TARGET_BYTES = 820_000
CHANGED_BLOCK = 250
ROUNDS = 5

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


def build_request(seed: int = 5) -> dict[str, Any]:
    """An agent request of about 1 MB in 500 positions: tools, system, tool calls and results."""
    rng = random.Random(seed)
    per_block = TARGET_BYTES // BLOCKS
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
    count = len(tools) + len(system)
    turn = 0
    while count < BLOCKS:
        turn += 1
        if turn % 2:
            kind = rng.random()
            text = _code(rng, per_block) if kind < 0.5 else _json(rng, per_block)
            content: list[dict[str, Any]] = [
                {"type": "tool_result", "tool_use_id": f"toolu_{turn:04d}", "content": text}
            ]
            messages.append({"role": "user", "content": content})
        else:
            messages.append(
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": _prose(rng, per_block - 200)},
                    ],
                }
            )
        count += 1
    messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    if messages[-1]["role"] != "user":
        messages[-1]["role"] = "user"
    return {
        "model": "claude-sonnet-5",
        "max_tokens": 1024,
        "tools": tools,
        "system": system,
        "messages": messages,
    }


def _message_of_block(params: dict[str, Any], index: int) -> int:
    return index - len(params["tools"]) - len(params["system"])


def change_one_byte(params: dict[str, Any]) -> dict[str, Any]:
    """A new request (new dicts) sharing every unchanged string, with one byte changed."""
    m = _message_of_block(params, CHANGED_BLOCK)
    messages = list(params["messages"])
    message = messages[m]
    block = dict(message["content"][0])
    key = "content" if block["type"] == "tool_result" else "text"
    text = block[key]
    middle = len(text) // 2
    block[key] = text[:middle] + ("#" if text[middle] != "#" else "@") + text[middle + 1 :]
    messages[m] = {**message, "content": [block]}
    return {**params, "messages": messages}


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


def main() -> None:
    a = build_request()
    b = change_one_byte(a)
    b_copy = orjson.loads(orjson.dumps(b))
    text_a, text_b = prompt_text(a), prompt_text(b)
    size = len(orjson.dumps(a))
    blocks = len(fingerprint(a).blocks)
    lines = text_a.count("\n") + 1

    def run_difflib() -> None:
        list(difflib.unified_diff(text_a.splitlines(True), text_b.splitlines(True)))

    blocks_a = [b.text for b in fingerprint(a, keep_text=True).blocks]
    blocks_b = [b.text for b in fingerprint(b_copy, keep_text=True).blocks]

    def run_blake2b_blocks() -> None:
        ha = [hashlib.blake2b(t.encode()).digest() for t in blocks_a]
        hb = [hashlib.blake2b(t.encode()).digest() for t in blocks_b]
        next((i for i, (x, y) in enumerate(zip(ha, hb)) if x != y), None)

    diff = compare(a, b)
    assert diff.cause == "messages_changed", diff
    assert diff.index == CHANGED_BLOCK, diff
    assert compare(a, b_copy).to_dict() == diff.to_dict()
    assert compare(fingerprint(a), fingerprint(b_copy)).tokens_lost == diff.tokens_lost

    # Every timed `compare` of params flattens both requests: each message is keyed by the xxh3
    # of its texts, computed on every call; only the blocks found under that key are reused.
    def session() -> None:
        compare(a, b).tokens_lost  # noqa: B018

    def fresh() -> None:
        compare(a, b_copy).tokens_lost  # noqa: B018

    def cold() -> None:
        clear_memos()
        compare(a, b_copy).tokens_lost  # noqa: B018

    def stored() -> None:
        clear_memos()
        compare(fingerprint(a), fingerprint(b_copy)).tokens_lost  # noqa: B018

    accelerators = (_blocks._native, _tokens._native)

    def pure_session() -> None:
        _blocks._native = _tokens._native = None
        try:
            compare(a, b).tokens_lost  # noqa: B018
        finally:
            _blocks._native, _tokens._native = accelerators

    pure_session()  # warm the pure path's memo, as the session's is
    assert compare(a, b).to_dict() == diff.to_dict()

    fingerprint(a)  # the client fingerprints every call it sends
    compare(a, b)
    scenarios: list[tuple[str, Callable[[], object], int]] = [
        ("blake2b per block, both requests + scan", run_blake2b_blocks, 10),
        ("compare, session (a fingerprinted)", session, 30),
        ("compare, fresh copy of b", fresh, 30),
        ("compare, cold (no memo)", cold, 5),
        ("fingerprint both + compare, cold", stored, 5),
        ("compare, session, pure Python", pure_session, 10),
    ]
    peer = Timing()
    timings = {name: Timing() for name, _, _ in scenarios}
    load_before = os.getloadavg()
    # The peer and the scenarios alternate, so load hits both alike; each figure is the best
    # single call over all rounds, in wall-clock and in CPU time of this process.
    for _ in range(ROUNDS):
        peer.measure(run_difflib, 1)
        for name, fn, calls in scenarios:
            timings[name].measure(fn, calls)
    load_after = os.getloadavg()
    if peer.cpu > peer.wall:  # the CPU clock of a one-call run can overshoot by a tick
        peer.cpu = peer.wall

    print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}, {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    print(
        f"load average (1, 5, 15 min): before {load_before[0]:.2f} {load_before[1]:.2f} "
        f"{load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    names = ("blocks", "tokens")
    built = [name for name, module in zip(names, accelerators) if module is not None]
    print(f"C accelerators: {', '.join(built) or 'none (pure Python)'}")
    print(
        f"request: {size / 1e6:.2f} MB of JSON, {blocks} positions, {lines:,} prompt lines; "
        f"one byte changed in block {CHANGED_BLOCK}"
    )
    print(f"  found: {diff.summary()}")
    print(f"best of {ROUNDS} rounds, peer and scenarios alternating")
    print(f"{'':42s}{'wall':>11s}{'ratio':>9s}{'CPU':>12s}{'ratio':>9s}")
    print(
        f"{'difflib.unified_diff over prompt lines':42s}{peer.wall * 1e3:8.1f} ms{'':9s}"
        f"{peer.cpu * 1e3:9.1f} ms"
    )
    for name, _, _ in scenarios:
        t = timings[name]
        print(
            f"{name:42s}{t.wall * 1e3:8.3f} ms{peer.wall / t.wall:7.0f}x "
            f"{t.cpu * 1e3:8.3f} ms{peer.cpu / t.cpu:7.0f}x"
        )


if __name__ == "__main__":
    main()
