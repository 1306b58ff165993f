"""The Aura story on the simulator: 20 turns with the timestamp bug, 20 turns with the fix.

Each turn happens a minute after the last on a virtual clock, so the timestamp changes every call,
exactly as in production. With the timestamp at the top of the stable layer every call rewrites the
whole prefix; with it in the dynamic layer (the newest user turn) every call reads it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cachescope._demo import MODEL, aura_prompt

TURNS = 20
START = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.timezone.utc)
QUESTIONS = (
    "What is on my calendar today?",
    "Remind me what Priya and I discussed last week.",
    "Draft a two-line update for the payments stand-up.",
    "When is my next run?",
    "Summarize the open tasks I mentioned yesterday.",
)


@dataclass
class StoryRun:
    """One 20-turn conversation: the client that ran it and its ledger's summary."""

    label: str
    client: Any
    summary: Any

    @property
    def records(self) -> list[Any]:
        return list(self.client.ledger.records)


def run_conversation(*, timestamp_in_stable: bool, turns: int = TURNS) -> StoryRun:
    """Run the Aura conversation on a fresh simulator with a virtual clock."""
    from cachescope.client import CachingClient
    from cachescope.sim import VirtualClock

    clock = VirtualClock(start=START.timestamp())
    client = CachingClient(backend="sim", clock=clock)
    for turn in range(turns):
        now = dt.datetime.fromtimestamp(clock.now(), dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
        chat = client.session("aura", aura_prompt(now, timestamp_in_stable=timestamp_in_stable))
        chat.send(QUESTIONS[turn % len(QUESTIONS)], max_tokens=300)
        clock.advance(minutes=1)
    label = (
        "timestamp in the stable layer" if timestamp_in_stable else "timestamp in the dynamic layer"
    )
    return StoryRun(label, client, client.ledger.summary())


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.4f}"


def run_story(turns: int = TURNS) -> int:
    """Print the before/after numbers; exit status 0 when the fix reaches a 90% hit share."""
    from cachescope import compare, lint

    print(f"Aura on the offline simulator: {turns} turns a minute apart, model {MODEL}\n")
    buggy = run_conversation(timestamp_in_stable=True, turns=turns)
    findings = lint(aura_prompt("2026-11-21 09:00", timestamp_in_stable=True))
    print("Before the first call, lint flags:")
    for finding in list(findings)[:3]:
        print(f"  {finding}")
    fixed = run_conversation(timestamp_in_stable=False, turns=turns)

    print(f"\n{'':<34}{'hit share':>10}{'cost':>12}{'no cache':>12}{'saved':>10}")
    for run in (buggy, fixed):
        summary = run.summary
        hit = summary.hit_share or 0.0
        print(
            f"{run.label:<34}{hit:>10.1%}{_money(summary.cost):>12}"
            f"{_money(summary.cost_without_cache):>12}{_money(summary.savings):>10}"
        )
    records = buggy.records
    diff = compare(records[-2], records[-1])
    print("\nWhy every call with the bug was a full write (last two calls compared):")
    print("  " + str(diff).replace("\n", "\n  "))
    factor = (buggy.summary.cost or 0.0) / (fixed.summary.cost or 1.0)
    print(f"\nMoving one line cut this conversation's cost {factor:.1f}x.")
    return 0 if (fixed.summary.hit_share or 0.0) >= 0.9 else 1
