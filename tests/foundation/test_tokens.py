"""The token estimator against real token counts published in the cacheeconomics repository.

Source: github.com/Tanisha-Katara/cacheeconomics at commit e3d83f436327939914f25f8a2074b30f85e2fff5
(Apache-2.0). Only its published numbers are copied here; the texts are rebuilt below exactly as
its scripts build them, so the estimate is taken on the same text that was counted:

- `tier-b/evidence/inferred-token-split.json`: six request bodies (`tier-b/inferred_validation.py`)
  counted by `count_tokens` on claude-haiku-4-5 at every segment boundary. The difference between
  consecutive counts is the real size of one segment. The first tool's segment also holds the
  tool-use system prompt the API adds once when tools are present: 496 tokens on Haiku 4.5 (spec
  §4.5), which is also what the evidence shows (982 - 486 in "tools dominate").
- `tier-b/evidence/20260728T194028Z.json` (`tier-b/ttl_experiment.py`, run id in the prefix): an
  80,016-character system prompt written as 16,429 cache tokens on claude-sonnet-4-6. (The earlier
  runs' 16,442 tokens were for a prefix whose header predates the run id, so its text is unknown.)
- `tier-b/evidence/litellm-marker-survival.json` (`tier-b/litellm_marker_survival.py`): a
  73,480-character user block written as 15,624 cache tokens on claude-haiku-4-5. Its run nonce
  is not published; a nonce of the same shape stands in for it.

Both models use the classic tokenizer. Each estimate must be within 15% of the real count. Where
it misses, it should miss low: the simulator and the client's prediction cache a prefix only when
its estimate reaches the model's minimum, so an under-estimate turns a prefix near the minimum into
"not cached" (the API may still cache it: a pleasant surprise), while an over-estimate promises a
cache the API never writes, which is the defect these tests guard against.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from cachescope._modeldata import default_table
from cachescope.blocks import flatten
from cachescope.sim import Simulator
from cachescope.tokens import V2_FACTOR, EstimatingCounter, counter_for, estimate_tokens

TOLERANCE = 0.15
EVIDENCE_MODEL = "claude-haiku-4-5"  # inferred-token-split.json and litellm-marker-survival.json
TOOL_USE_SYSTEM_PROMPT = 496  # Haiku 4.5, tool_choice auto (spec §4.5); held in tool[0]'s segment

# ---- the texts, rebuilt as tier-b/inferred_validation.py builds them ---------------------------

PROSE = (
    "You are an operations assistant for a logistics company. You answer "
    "questions about shipments, routes and delivery windows. When a customer "
    "asks about a delay you explain the cause in plain language and give a "
    "revised estimate. You never speculate about causes you have not been told "
    "about, and you never promise a delivery time the routing system has not "
    "confirmed. If a question falls outside shipments you say so and stop. "
)


def tool(name: str, n_props: int) -> dict[str, Any]:
    properties = {
        f"field_{i}": {"type": "string", "description": f"The {i}th parameter for {name}."}
        for i in range(n_props)
    }
    return {
        "name": name,
        "description": f"Operate on {name} records and return the result.",
        "input_schema": {"type": "object", "properties": properties, "required": ["field_0"]},
    }


def system(*texts: str) -> list[dict[str, str]]:
    return [{"type": "text", "text": text} for text in texts]


IDENTIFIERS = "Known ids: " + " ".join(f"SHPMT-{i:06d}-AX{i % 97:02d}-QQ" for i in range(220))
TOOL_RESULT = json.dumps(
    {
        "id": "88431",
        "status": "in_transit",
        "eta": "2026-08-02T14:00:00Z",
        "stops": [f"hub-{i}" for i in range(30)],
    }
)
BODIES: dict[str, dict[str, Any]] = {
    "prose-heavy system, no tools": {
        "system": system(PROSE * 12),
        "messages": [{"role": "user", "content": "Where is order 88431?"}],
    },
    "dense JSON tools beside prose": {
        "tools": [tool("shipment", 12), tool("route", 12), tool("invoice", 8)],
        "system": system(PROSE * 8),
        "messages": [{"role": "user", "content": "Reroute 88431 via Leeds."}],
    },
    "tools dominate": {
        "tools": [tool(f"svc_{i}", 16) for i in range(6)],
        "system": system(PROSE * 2),
        "messages": [{"role": "user", "content": "List the tools you have."}],
    },
    "long identifiers, low bytes-per-token": {
        "system": system(PROSE * 4, IDENTIFIERS),
        "messages": [{"role": "user", "content": "Is SHPMT-000042 delayed?"}],
    },
    "multi-turn with tool results": {
        "tools": [tool("shipment", 10)],
        "system": system(PROSE * 6),
        "messages": [
            {"role": "user", "content": "Status of 88431?"},
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "Checking the shipment record."}],
            },
            {"role": "user", "content": [{"type": "text", "text": TOOL_RESULT}]},
            {"role": "user", "content": "So when does it arrive?"},
        ],
    },
    "tiny prompt, near the minimum": {
        "system": system(PROSE),
        "messages": [{"role": "user", "content": "Hi"}],
    },
}

# ---- the published counts (inferred-token-split.json: real_total and each segment's real_tokens) -

REAL_TOTALS = {
    "prose-heavy system, no tools": 999,
    "dense JSON tools beside prose": 2095,
    "tools dominate": 3591,
    "long identifiers, low bytes-per-token": 3429,
    "multi-turn with tool results": 1509,
    "tiny prompt, near the minimum": 91,
}


def tool_json(definition: dict[str, Any]) -> str:
    """A tool as the walk counts it: compact JSON, keys in order."""
    return json.dumps(definition, separators=(",", ":"))


# (what, text, real tokens of that segment); segments of a few tokens are left to the body
# totals, since the role framing around them is as large as the text itself.
SEGMENTS = [
    ("prose x12 (body 1, system[0])", PROSE * 12, 985),
    ("prose x8 (body 2, system[0])", PROSE * 8, 658),
    ("prose x2 (body 3, system[0])", PROSE * 2, 166),
    ("prose x4 (body 4, system[0])", PROSE * 4, 329),
    ("prose x6 (body 5, system[0])", PROSE * 6, 494),
    ("prose x1 (body 6, system[0])", PROSE, 83),
    ("tool shipment/12 (body 2, tool[0])", tool_json(tool("shipment", 12)), 845 - 496),
    ("tool route/12 (body 2, tool[1])", tool_json(tool("route", 12)), 335),
    ("tool invoice/8 (body 2, tool[2])", tool_json(tool("invoice", 8)), 239),
    ("tool svc_0/16 (body 3, tool[0])", tool_json(tool("svc_0", 16)), 982 - 496),
    *[
        (f"tool svc_{i}/16 (body 3, tool[{i}])", tool_json(tool(f"svc_{i}", 16)), 486)
        for i in range(1, 6)
    ],
    ("identifiers (body 4, system[1])", IDENTIFIERS, 3082),
    ("tool shipment/10 (body 5, tool[0])", tool_json(tool("shipment", 10)), 795 - 496),
    ("JSON tool result (body 5, user:text)", TOOL_RESULT, 188),
]


# ---- the long prefixes of the other two experiments ----------------------------------------------


def ttl_prefix(arm: str, target_tokens: int, run_id: str) -> str:
    """`build_prefix` of tier-b/ttl_experiment.py: a header, then clauses to 4 chars per token."""
    header = (
        f"[STABLE REFERENCE CORPUS · ARM {arm} · RUN {run_id}]\n"
        "Stand-in for the static prefix of an agentic system prompt: tool "
        "definitions, operating instructions, policy text. Byte-identical on "
        "every request within this arm.\n\n"
    )
    body: list[str] = []
    while len(header) + sum(len(s) for s in body) < target_tokens * 4:
        body.append(
            f"{arm}-{len(body):06d}: reference clause defining permitted operations, "
            "invariants, and failure handling for the agent under test.\n"
        )
    return header + "".join(body)


def litellm_prefix(nonce: str = "20260731T213254000000") -> str:
    """`prefix_text` of tier-b/litellm_marker_survival.py (its nonce: `%Y%m%dT%H%M%S%f`)."""
    para = (
        f"Operational policy {nonce} for the shipment desk. Every reply "
        "states the shipment id, the current status, the last confirmed scan "
        "and the revised estimate where one exists. Never promise a delivery "
        "time the routing system has not confirmed. Never speculate about a "
        "cause that has not been recorded against the shipment. "
    )
    return para * 220


TTL_PREFIX = ttl_prefix("A", 20000, "20260728T194028Z")
LITELLM_PREFIX = litellm_prefix()


def ratio(estimate: int, real: int) -> float:
    return estimate / real


def within_tolerance(estimate: int, real: int) -> bool:
    return abs(ratio(estimate, real) - 1) <= TOLERANCE


# ---- the evidence -------------------------------------------------------------------------------


def test_the_evidence_models_use_the_classic_tokenizer() -> None:
    table = default_table()
    for model in ("claude-haiku-4-5", "claude-sonnet-4-6"):
        info = table.lookup(model)
        assert info is not None and info.tokenizer == "classic"


def test_the_rebuilt_prefixes_have_the_published_lengths() -> None:
    assert len(TTL_PREFIX) == 80_016
    assert len(LITELLM_PREFIX) == 73_480
    assert len(PROSE) == 426


@pytest.mark.parametrize(("what", "text", "real"), SEGMENTS, ids=[s[0] for s in SEGMENTS])
def test_each_segment_is_within_15_percent_of_its_real_count(
    what: str, text: str, real: int
) -> None:
    estimate = estimate_tokens(text)
    assert within_tolerance(estimate, real), f"{what}: {estimate} for {real} real"


def test_the_80k_character_system_prompt_is_within_15_percent_on_sonnet_4_6() -> None:
    # 16,429 cache_creation_input_tokens for 80,016 characters (0.97 after calibration, 1.43 before)
    info = default_table().lookup("claude-sonnet-4-6")
    assert info is not None
    estimate = estimate_tokens(TTL_PREFIX, info.tokenizer)
    assert within_tolerance(estimate, 16_429)
    assert estimate <= 16_429


def test_the_73k_character_user_block_is_within_15_percent_on_haiku_4_5() -> None:
    # 15,624 cache_creation_input_tokens (0.98 after calibration, 1.33 before)
    estimate = estimate_tokens(LITELLM_PREFIX)
    assert within_tolerance(estimate, 15_624)
    assert estimate <= 15_624


@pytest.mark.parametrize(
    "label",
    [
        "prose-heavy system, no tools",
        "long identifiers, low bytes-per-token",
        "tiny prompt, near the minimum",
    ],
)
def test_a_body_without_tools_is_within_15_percent_of_its_real_total(label: str) -> None:
    # 0.96, 0.99 and 0.90 after calibration (1.46, 0.58 and 1.34 before)
    estimate = flatten({"model": EVIDENCE_MODEL, **BODIES[label]}).total_tokens
    assert within_tolerance(estimate, REAL_TOTALS[label])


@pytest.mark.parametrize(
    "label",
    ["dense JSON tools beside prose", "tools dominate", "multi-turn with tool results"],
)
def test_a_body_with_tools_is_within_15_percent_of_its_real_total(label: str) -> None:
    # the walk counts the tool-use system prompt on the first tool: 0.98, 0.95 and 0.97 with it
    # (0.74, 0.82 and 0.64 without it)
    estimate = flatten({"model": EVIDENCE_MODEL, **BODIES[label]}).total_tokens
    assert within_tolerance(estimate, REAL_TOTALS[label])


def test_the_tool_use_system_prompt_is_counted_on_the_first_tool() -> None:
    body = BODIES["tools dominate"]
    plain = flatten({"model": EVIDENCE_MODEL, **{k: v for k, v in body.items() if k != "tools"}})
    auto = flatten({"model": EVIDENCE_MODEL, **body})
    forced = flatten({"model": EVIDENCE_MODEL, **body, "tool_choice": {"type": "any"}})
    tools = [block for block in auto.blocks if block.level == "tools"]
    assert tools[0].tokens == estimate_tokens(tools[0].text) + TOOL_USE_SYSTEM_PROMPT
    assert all(block.tokens == estimate_tokens(block.text) for block in tools[1:])
    assert forced.blocks[0].tokens - auto.blocks[0].tokens == 588 - 496  # any/tool on Haiku 4.5
    assert auto.total_tokens - plain.total_tokens == sum(block.tokens for block in tools)


def test_the_estimates_lean_low_overall() -> None:
    estimates = sum(estimate_tokens(text) for _, text, _ in SEGMENTS)
    real = sum(real for _, _, real in SEGMENTS)
    assert 0.85 * real <= estimates <= real


def test_english_prose_is_never_over_estimated() -> None:
    for _, text, real in SEGMENTS:
        if text.startswith(PROSE):
            assert estimate_tokens(text) <= real


def test_a_prefix_just_under_the_minimum_is_not_cached() -> None:
    # PROSE counts 82 tokens a repeat (83, 166, 329, 494, 658 and 985 real for 1, 2, 4, 6, 8
    # and 12 repeats), so 49 repeats are about 4,019 real tokens: under Haiku 4.5's 4,096
    # minimum, and the API writes nothing. The estimator before calibration counted 5,929.
    body = {
        "model": EVIDENCE_MODEL,
        "max_tokens": 16,
        "system": [{"type": "text", "text": PROSE * 49, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Hi"}],
    }
    usage = Simulator().predict(body)
    assert usage["cache_creation_input_tokens"] == 0
    assert usage["cache_read_input_tokens"] == 0


# ---- the estimator's arithmetic -----------------------------------------------------------------


def test_a_word_is_one_token() -> None:
    assert estimate_tokens("the operations assistant answers questions") == 5


def test_capitals_digits_and_punctuation_add_weight() -> None:
    # 3 words + 1 capital (0.45) + 5 digits (3.0) + "?" (0.7) = 7.15
    assert estimate_tokens("Where is order 88431?") == 8
    # 10 punctuation characters are 7 tokens, not 8 (float noise does not round up)
    assert estimate_tokens(". " * 10) == 7


def test_a_cjk_character_is_about_one_token() -> None:
    assert estimate_tokens("東京都の天気") == 6


def test_empty_text_is_zero_tokens_and_any_other_at_least_one() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens(" ") == 1


def test_the_newer_tokenizer_counts_30_percent_more() -> None:
    # PROSE: 72 words + 5 capitals + 7 punctuation = 79.15 tokens; x 1.3 = 102.9
    assert counter_for("v2").factor == V2_FACTOR == 1.3
    assert estimate_tokens(PROSE) == 80
    assert estimate_tokens(PROSE, "v2") == 103


def test_an_unknown_tokenizer_name_counts_as_classic() -> None:
    assert counter_for("classic") is counter_for("no-such-tokenizer")
    assert counter_for("classic").factor == 1.0


def test_counts_are_deterministic_and_per_text() -> None:
    counter = EstimatingCounter()
    assert counter.count(PROSE) == counter.count(PROSE) == estimate_tokens(PROSE)
