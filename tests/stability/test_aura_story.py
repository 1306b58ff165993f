"""The Aura story: one timestamp at the top of the stable layer made every call pay full price.

`lint` flags it before the first call; after two calls, `compare` names the stable layer, the
line, and the tokens lost on every call.
"""

from __future__ import annotations

import cachescope as cs

MODEL = "claude-sonnet-5"
PERSONALITY = "\n".join(
    f"Rule {number}: be warm, be brief, and remember what the user told you before."
    for number in range(1, 120)
)
TOOLS = [
    {
        "name": "recall_memory",
        "description": "Find what the user said earlier about a topic.",
        "input_schema": {"type": "object", "properties": {"topic": {"type": "string"}}},
    }
]


def _aura(now: str) -> cs.Prompt:
    stable = f"You are Aura, a personal companion.\nCurrent time: {now}\n{PERSONALITY}"
    return cs.Prompt(
        MODEL,
        [cs.Layer("stable", stable, ttl="1h"), cs.Layer("conversation", "The user has a cat.")],
        tools=TOOLS,
    )


def test_lint_flags_the_timestamp_in_the_stable_layer_before_the_first_call() -> None:
    findings = _aura("2026-11-21T09:00:00Z").lint()
    timestamp = next(f for f in findings if f.rule == "timestamp")
    assert timestamp.layer == "stable"
    assert timestamp.line == 2
    assert timestamp.text == "2026-11-21T09:00:00Z"


def test_compare_names_the_stable_layer_the_line_and_the_tokens_lost_per_call() -> None:
    first = _aura("2026-11-21T09:00:00Z").render(user="Good morning!")
    second = _aura("2026-11-21T09:01:00Z").render(user="Good morning!")
    diff = cs.compare(first, second, gap_seconds=60)
    tokens = [block.tokens for block in cs.fingerprint(first).blocks]
    assert diff.cause == "system_changed"
    assert diff.layer == "stable"
    assert diff.line == 2
    assert diff.old_window == "Current time: 2026-11-21T09:00:00Z"
    # The tools alone are under the 1,024-token minimum, so nothing before the stable layer was
    # cached: every token up to the rolling breakpoint is paid again on every call.
    assert diff.tokens_lost == sum(tokens)
    assert diff.expired is False
    assert "stable" in str(diff)


def test_moving_the_time_to_the_dynamic_layer_keeps_the_prefix() -> None:
    def fixed(now: str) -> cs.Prompt:
        return cs.Prompt(
            MODEL,
            [
                cs.Layer("stable", f"You are Aura, a personal companion.\n{PERSONALITY}", ttl="1h"),
                cs.Layer("dynamic", f"Current time: {now}"),
            ],
            tools=TOOLS,
        )

    assert fixed("2026-11-21T09:00:00Z").lint() == []
    first = fixed("2026-11-21T09:00:00Z").render(user="Hi")
    second = fixed("2026-11-21T09:01:00Z").render(user="Hi")
    diff = cs.compare(first, second)
    assert diff.layer == "dynamic"
    assert diff.tokens_lost < 30
