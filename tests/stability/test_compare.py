"""compare(): where the prefix broke, the cause in the API's vocabulary, and the tokens lost."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

import cachescope as cs
from cachescope.stability import PrefixDiff, compare, fingerprint

MODEL = "claude-sonnet-5"  # minimum cacheable prefix: 1,024 tokens
TOOLS = [
    {
        "name": "search_notes",
        "description": "Search the user's notes by keyword.",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]
STABLE = "You are Aura, a calm and careful assistant.\n" + "Answer plainly and briefly. " * 400
MEMORIES = "The user likes hiking and keeps a garden.\n" * 60


def _params(
    stable: str = STABLE, messages: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 256,
        "tools": copy.deepcopy(TOOLS),
        "system": [
            {"type": "text", "text": stable, "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": MEMORIES, "cache_control": {"type": "ephemeral"}},
        ],
        "messages": messages
        or [
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "What changed?",
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            }
        ],
    }
    params.update(extra)
    return params


def _tokens(params: dict[str, Any]) -> list[int]:
    return [block.tokens for block in fingerprint(params).blocks]


def test_identical_requests_do_not_break() -> None:
    diff = compare(_params(), _params())
    assert diff.broken is False
    assert diff.cause is None
    assert diff.tokens_lost == 0


def test_appending_to_history_is_not_a_break() -> None:
    first = _params()
    turn = [
        {"role": "user", "content": [{"type": "text", "text": "What changed?"}]},
        {"role": "assistant", "content": "Your garden needs water."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Thanks!", "cache_control": {"type": "ephemeral"}}
            ],
        },
    ]
    diff = compare(first, _params(messages=turn))
    assert diff.broken is False
    assert diff.appended_blocks == 2
    assert diff.tokens_lost == 0


def test_edited_stable_layer_is_system_changed_with_line_and_column() -> None:
    old = "You are Aura.\nCurrent time: 10:00\n" + STABLE
    new = "You are Aura.\nCurrent time: 10:05\n" + STABLE
    diff = compare(_params(old), _params(new))
    assert diff.cause == "system_changed"
    assert diff.index == 1  # one tool, then the first system block
    assert diff.path == "system.0"
    assert (diff.line, diff.column) == (2, 19)
    assert diff.offset == len("You are Aura.\nCurrent time: 10:0")
    assert diff.old_window == "Current time: 10:00"
    assert diff.new_window == "Current time: 10:05"
    assert diff.old_span == (18, 19)


def test_tokens_lost_run_from_the_last_surviving_entry_to_the_last_entry() -> None:
    old = "v1\n" + STABLE
    new = "v2\n" + STABLE
    tokens = _tokens(_params(old))
    diff = compare(_params(old), _params(new))
    # The tools breakpoint holds 1 tool, far below 1,024 tokens: it is no cache entry, so the
    # whole prefix up to the last breakpoint (the user turn) is lost.
    assert diff.tokens_lost == sum(tokens)


def test_change_after_an_entry_keeps_the_entry() -> None:
    params = _params()
    tokens = _tokens(params)
    edited = _params()
    edited["system"][1]["text"] = MEMORIES + "The user moved house.\n"
    diff = compare(params, edited)
    assert diff.cause == "system_changed"
    assert diff.layer is None
    # entries: end of the stable block (index 1) and later; lost = memories + user turn
    assert diff.tokens_lost == tokens[2] + tokens[3]


def test_edited_history_is_messages_changed() -> None:
    history = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Again", "cache_control": {"type": "ephemeral"}}],
        },
    ]
    edited = copy.deepcopy(history)
    edited[1]["content"] = "Hi there!"
    diff = compare(_params(messages=history), _params(messages=edited))
    assert diff.cause == "messages_changed"
    assert diff.path == "messages.1.content"


def test_truncated_history_is_messages_changed() -> None:
    history = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Again", "cache_control": {"type": "ephemeral"}}],
        },
    ]
    diff = compare(_params(messages=history), _params(messages=history[:1]))
    assert diff.cause == "messages_changed"
    assert diff.index == 4


def test_model_change_is_model_changed_at_position_zero() -> None:
    diff = compare(_params(), _params(model="claude-opus-5"))
    assert diff.cause == "model_changed"
    assert diff.index == 0


def test_tool_edit_is_tools_changed() -> None:
    edited = _params()
    edited["tools"][0]["description"] = "Search notes."
    assert compare(_params(), edited).cause == "tools_changed"


def test_tool_choice_change_names_the_setting_at_the_messages_level() -> None:
    diff = compare(_params(), _params(tool_choice={"type": "any"}))
    assert diff.cause == "tool_choice_changed"
    assert diff.setting == "tool_choice"
    assert diff.level == "messages"


def test_gap_longer_than_ttl_is_expired() -> None:
    diff = compare(_params(), _params(), gap_seconds=301)
    assert diff.cause == "expired"
    assert diff.expired is True
    assert diff.tokens_expired == sum(_tokens(_params()))


def test_gap_within_ttl_is_not_expired() -> None:
    assert compare(_params(), _params(), gap_seconds=299).expired is False


def test_one_hour_entry_survives_a_ten_minute_gap() -> None:
    params = _params()
    params["system"][0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    tokens = _tokens(params)
    diff = compare(params, copy.deepcopy(params), gap_seconds=600)
    assert diff.expired is True
    assert diff.tokens_expired == tokens[2] + tokens[3]


def test_prefix_under_the_minimum_is_below_minimum() -> None:
    short = _params("Be brief.")
    short["system"][1]["text"] = "Short."
    diff = compare(short, copy.deepcopy(short))
    assert diff.below_minimum is True
    assert diff.cause == "below_minimum"
    assert diff.tokens_lost == 0


def test_server_reason_that_agrees_is_marked_so() -> None:
    diff = compare(_params("a" + STABLE), _params("b" + STABLE), server_reason="system_changed")
    assert diff.agrees is True


def test_server_reason_that_disagrees_is_shown_beside_ours() -> None:
    diff = compare(_params("a" + STABLE), _params("b" + STABLE), server_reason="tools_changed")
    assert diff.agrees is False
    assert "server says tools_changed; cachescope says system_changed" in str(diff)


def test_server_diagnostics_dict_is_understood() -> None:
    reason = {"type": "messages_changed", "cache_missed_input_tokens": 1200}
    diff = compare(_params(), _params(), server_reason=reason)
    assert diff.server_reason == "messages_changed"
    assert diff.server_missed_tokens == 1200
    assert diff.agrees is False


def test_stored_fingerprints_compare_without_text() -> None:
    a = fingerprint(_params("a" + STABLE))
    b = fingerprint(_params("b" + STABLE))
    restored = [cs.Fingerprint.from_dict(orjson.loads(orjson.dumps(fp.to_dict()))) for fp in (a, b)]
    diff = compare(*restored)
    assert diff.cause == "system_changed"
    assert diff.line is None
    assert diff.tokens_lost == compare(_params("a" + STABLE), _params("b" + STABLE)).tokens_lost


def test_fingerprint_to_dict_has_no_text_unless_asked() -> None:
    fp = fingerprint(_params(), keep_text=True)
    assert "text" not in fp.to_dict()["blocks"][1]
    assert fp.to_dict(include_text=True)["blocks"][1]["text"] == STABLE


def test_fingerprint_hashes_match_the_simulator_blocks() -> None:
    from cachescope.blocks import flatten

    params = _params()
    assert [b.hash for b in fingerprint(params).blocks] == [b.hash for b in flatten(params).blocks]


def test_fingerprint_carries_layer_names_from_a_prompt() -> None:
    prompt = cs.Prompt(MODEL, [cs.Layer("stable", STABLE), cs.Layer("dynamic", "now")], tools=TOOLS)
    layers = [block.layer for block in fingerprint(prompt.render(user="hi")).blocks]
    assert layers == ["tools", "stable", "dynamic", "user"]


def test_fingerprint_versus_params_keeps_the_new_side() -> None:
    diff = compare(fingerprint(_params("a" + STABLE)), _params("b" + STABLE))
    assert diff.cause == "system_changed"
    assert diff.index == 1


@dataclass
class _Record:
    """Shaped like the ledger's CallRecord (duck-typed)."""

    model: str
    time: str
    blocks: list[dict[str, Any]]
    cache_miss_reason: str | None = None


def test_ledger_records_give_the_gap_and_the_server_reason() -> None:
    a = _Record(MODEL, "2026-11-21T10:00:00Z", fingerprint(_params()).to_dict()["blocks"])
    b = _Record(MODEL, "2026-11-21T10:10:00Z", fingerprint(_params()).to_dict()["blocks"], None)
    diff = compare(a, b)
    assert diff.gap_seconds == 600
    assert diff.cause == "expired"


def test_html_is_escaped() -> None:
    evil = "<script>alert(\"x\")</script> <img src=x onerror=alert(1)> 'quoted'"
    diff = compare(_params("safe\n" + STABLE), _params(evil + "\n" + STABLE))
    page = diff._repr_mimebundle_()["text/html"]
    assert "<script>" not in page
    assert "<img" not in page
    assert "&lt;script&gt;" in page
    assert "&quot;x&quot;" in page


def test_mimebundle_honours_include() -> None:
    bundle = compare(_params(), _params())._repr_mimebundle_(include=["text/plain"])
    assert set(bundle) == {"text/plain"}


def test_to_dict_round_trips_through_json() -> None:
    diff = compare(_params("a" + STABLE), _params("b" + STABLE))
    data = orjson.loads(orjson.dumps(diff.to_dict()))
    assert data["cause"] == "system_changed"
    assert data["summary"] == diff.summary()


def test_change_deep_inside_a_large_block_is_located_exactly() -> None:
    text = "".join(f"line {i} of the manual\n" for i in range(20_000))
    edited = text.replace("line 12345 of", "line 12345 0f")
    diff = compare(_params(text), _params(edited))
    assert diff.line == 12346
    assert diff.column == 12
    assert isinstance(diff, PrefixDiff)


def test_unknown_input_type_raises_type_error() -> None:
    with pytest.raises(TypeError, match="compare"):
        compare(42, _params())


def test_a_compare_result_is_a_whole_frozen_prefix_diff() -> None:
    """compare() makes its result without the dataclass __init__: every field, still frozen."""
    diff = compare(_params("a" + STABLE), _params("b" + STABLE), gap_seconds=10.0)
    assert set(vars(diff)) == {f.name for f in dataclasses.fields(PrefixDiff)}
    assert PrefixDiff(**vars(diff)) == diff
    with pytest.raises(dataclasses.FrozenInstanceError):
        diff.cause = "other"  # type: ignore[misc]
