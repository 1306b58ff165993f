"""`make demo` / `cachescope demo`: the Aura story on the offline simulator.

Declares the three Aura layers, shows the rendered request and its breakpoints, then (issue 3 on)
runs 20 turns through the simulator twice — first with a timestamp in the stable layer, then with
the timestamp moved to the dynamic layer — and prints both hit rates.
"""

from __future__ import annotations

import json
from typing import Any

from cachescope._blocks import flatten
from cachescope.prompt import Layer, Prompt

MODEL = "claude-sonnet-5"

PERSONALITY = """\
You are Aura, a personal assistant who keeps track of the user's day.
Be warm but brief. Prefer bullet points for lists, and always say when you are unsure.

## How you work
- You remember what the user told you in earlier conversations (see the memories layer).
- You never invent appointments, people or numbers.
- When the user asks about time, use the current time given in the dynamic layer.
- When a question needs a tool you do not have, say so and suggest what would help.
"""

# A realistic stable layer is long: instructions, style guide, examples.
GUIDE = "\n".join(
    f"{n}. Example exchange {n}: the user asks about task {n}; Aura answers with the status, "
    f"the next step and who owns it, in at most three bullet points."
    for n in range(1, 121)
)

MEMORIES = """\
- The user's name is Sam; they work on the payments team.
- Sam prefers tea over coffee and runs on Tuesday evenings.
- Sam's manager is Priya; their 1:1 is every Thursday at 10:00.
"""


def aura_prompt(now: str, *, timestamp_in_stable: bool) -> Prompt:
    """The Aura prompt; with `timestamp_in_stable` the time sits at the top of the stable layer."""
    stable = PERSONALITY + "\n" + GUIDE
    if timestamp_in_stable:
        stable = f"Current time: {now}\n\n{stable}"
        dynamic = ""
    else:
        dynamic = f"Current time: {now}"
    return Prompt(
        MODEL,
        [
            Layer("stable", stable, ttl="1h"),
            Layer("conversation", MEMORIES),
            Layer("dynamic", dynamic),
        ],
    )


def _shorten(value: Any, limit: int = 72) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else value[: limit - 1] + "…"
    if isinstance(value, list):
        return [_shorten(item, limit) for item in value]
    if isinstance(value, dict):
        return {key: _shorten(item, limit) for key, item in value.items()}
    return value


def show_request(prompt: Prompt) -> None:
    params = prompt.render(user="What is on my calendar today?", max_tokens=512)
    print("The rendered request (texts shortened):")
    print(json.dumps(_shorten(params), indent=2, ensure_ascii=False))
    print("\nCache positions in order (tools → system → messages):")
    for block in flatten(params).blocks:
        mark = f"◆ breakpoint ttl={block.ttl}" if block.cache_control else ""
        print(f"  {block.path:<22} {block.layer or '':<13} ~{block.tokens:>5} tokens  {mark}")


def main() -> int:
    print("cachescope demo — the Aura prompt in three layers\n")
    show_request(aura_prompt("2026-11-21T10:00:00Z", timestamp_in_stable=False))
    try:
        from cachescope._demo_run import run_story
    except ImportError:  # the simulator story arrives with the simulator and client
        return 0
    print()
    return run_story()


if __name__ == "__main__":
    raise SystemExit(main())
