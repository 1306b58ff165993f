"""lint(): each rule on a minimal prompt, scope, structure, escaping and robustness."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cachescope as cs
from cachescope.lint import Finding, Findings, lint

MODEL = "claude-sonnet-5"
FILLER = "Answer plainly and briefly, and check facts before you state them. " * 80


def _params(text: str, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 64,
        "system": [
            {"type": "text", "text": FILLER + "\n" + text, "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [{"role": "user", "content": "Hello"}],
    }
    params.update(extra)
    return params


def _rules(text: str) -> list[str]:
    return lint(_params(text)).rules()


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        ("timestamp", "Current session started 2026-11-21T23:20:43Z."),
        ("date", "Report generated on 2026-11-21 for the team."),
        ("date", "Today's briefing covers Saturday, November 21, 2026 in full."),
        ("date", "The note was filed on 21 November 2026 by the clerk."),
        ("time", "Last refreshed at 23:20:43 UTC."),
        ("time", "The shift ends at 5:30 pm sharp."),
        ("weekday", "Remember that today is Monday."),
        ("current_time_label", "current_time: now-ish"),
        ("epoch", "cache key built at 1763767243 by the scheduler"),
        ("uuid", "Conversation 3f2b8c1e-9d4a-4e57-b6a2-0c9e7f1d5a88 is open."),
        ("request_id", "Forwarded with req_011CUabcXYZ123456 attached."),
        ("request_id", "trace-id: 4bf92f3577b34da6a3ce929d0e0e4736x"),
        ("hex_id", "nonce 9f86d081884c7d659a2feaa0c55ad015 issued"),
        ("random_number", "Sampling weight 0.73918264 applied."),
        ("random_number", "seed = 884213 for this run"),
        ("counter", "This is request #42 from the same user."),
        ("counter", "Messages so far: 17"),
        ("counter", "You have 37 messages remaining today."),
        ("weekday", "Happy Monday, team!"),
        ("relative_time", "Uptime: 3 days, 4 hours."),
        ("relative_time", "Elapsed: 12.5s since the session began."),
    ],
)
def test_each_buster_rule_fires(rule: str, text: str) -> None:
    assert rule in _rules(text)


def test_clean_instructions_have_no_findings() -> None:
    assert _rules("Use version 3.11 of the API and port 8080. Prices rise 5% in 2027.") == []


def test_finding_names_layer_line_and_span() -> None:
    prompt = cs.Prompt(MODEL, [cs.Layer("stable", FILLER + "\nCurrent time: 2026-11-21T10:00Z")])
    finding = next(f for f in lint(prompt) if f.rule == "timestamp")
    assert finding.layer == "stable"
    assert finding.line == 2
    assert (finding.column, finding.end_column) == (15, 32)
    assert finding.text == "2026-11-21T10:00Z"
    assert "dynamic layer" in finding.fix


def test_text_after_the_last_breakpoint_is_not_linted() -> None:
    params = _params("Nothing to see.")
    params["messages"] = [{"role": "user", "content": "It is 2026-11-21T10:00:00Z now."}]
    assert lint(params).rules() == []


def test_dynamic_layer_is_not_linted() -> None:
    prompt = cs.Prompt(MODEL, [cs.Layer("stable", FILLER), cs.Layer("dynamic", "Now: 10:00:00")])
    assert lint(prompt).rules() == []


def test_dynamic_layer_in_system_ahead_of_history_is_flagged() -> None:
    prompt = cs.Prompt(
        MODEL,
        [cs.Layer("stable", FILLER), cs.Layer("dynamic", "Weather: sunny")],
        dynamic_placement="system",
    )
    assert "dynamic_in_system" in lint(prompt).rules()


def test_cached_prefix_below_the_minimum_is_flagged() -> None:
    params = {
        "model": MODEL,
        "max_tokens": 8,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Hi"}],
    }
    finding = next(f for f in lint(params) if f.rule == "below_minimum")
    assert "1,024" in finding.text


def test_one_hour_breakpoint_after_five_minute_one_is_flagged() -> None:
    params = _params("x")
    params["system"].append(
        {"type": "text", "text": FILLER, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    )
    assert "ttl_order" in lint(params).rules()


def test_more_than_twenty_blocks_between_breakpoints_is_flagged() -> None:
    params = _params("x")
    params["messages"] = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(24)
    ] + [
        {
            "role": "user",
            "content": [{"type": "text", "text": "last", "cache_control": {"type": "ephemeral"}}],
        }
    ]
    assert "lookback" in lint(params).rules()


def test_json_key_order_change_against_previous_is_flagged() -> None:
    tool_a = {"name": "find", "input_schema": {"type": "object", "properties": {}}}
    tool_b = {"input_schema": {"properties": {}, "type": "object"}, "name": "find"}
    old = _params("x", tools=[tool_a])
    new = _params("x", tools=[tool_b])
    assert "json_key_order" in lint(new, previous=old).rules()


def test_reordered_tools_against_previous_are_flagged() -> None:
    first = {"name": "first", "input_schema": {"type": "object"}}
    second = {"name": "second", "input_schema": {"type": "object"}}
    old = _params("x", tools=[first, second])
    new = _params("x", tools=[second, first])
    assert "tool_order" in lint(new, previous=old).rules()


def test_breakpoint_on_a_changing_block_is_flagged() -> None:
    old = _params("version one")
    new = copy.deepcopy(old)
    new["system"][0]["text"] = FILLER + "\nversion two"
    assert "changing_breakpoint" in lint(new, previous=old).rules()


def test_findings_render_escaped_html() -> None:
    evil = "<script>alert('x')</script>"
    findings = Findings([Finding("uuid", "error", "<img src=x onerror=y>", 1, 1, 2, evil, "Fix.")])
    page = findings._repr_mimebundle_()["text/html"]
    assert "<script>" not in page
    assert "<img" not in page
    assert "&lt;script&gt;" in page


def test_findings_render_as_text() -> None:
    findings = Findings([Finding("uuid", "error", "stable", 1, 2, 3, "x", "Fix it.")])
    assert str(findings) == "stable:1:2 error [uuid] 'x' — Fix it."


def test_plain_string_is_linted_as_a_cached_system_prompt() -> None:
    assert lint("Session 3f2b8c1e-9d4a-4e57-b6a2-0c9e7f1d5a88").rules() == ["uuid"]


_ODD = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=True),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(
    system=_ODD,
    messages=_ODD,
    tools=_ODD,
    model=st.one_of(st.none(), st.text(max_size=10)),
)
def test_lint_never_raises_on_odd_input(system: Any, messages: Any, tools: Any, model: Any) -> None:
    params = {"model": model, "system": system, "messages": messages, "tools": tools}
    assert isinstance(lint(params, previous=params), Findings)


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=400))
def test_lint_never_raises_on_odd_text(text: str) -> None:
    assert isinstance(lint(_params(text)), list)


def test_dates_in_the_conversation_history_are_not_busters() -> None:
    import cachescope as cs

    prompt = cs.Prompt(
        "claude-sonnet-5",
        [cs.Layer("stable", "You are Aura. " * 400), cs.Layer("dynamic", "Current time: 10:01")],
    )
    history = [
        {"role": "user", "content": [{"type": "text", "text": "Current time: 10:00"}, {"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": "Hello! Today is 2026-11-21."},
    ]  # fmt: skip
    findings = lint(prompt.render(messages=history, user="What now?"))
    assert [f.rule for f in findings] == []


def test_findings_pretty_print_as_text_in_ipython() -> None:
    from IPython.lib.pretty import pretty

    findings = lint({"model": "claude-sonnet-5", "system": "Today is 2026-11-21. " + "x " * 2000})
    assert pretty(findings) == str(findings)
    assert "Finding(" not in pretty(findings)


# -- issue 15: defects found by testing as a new user would -----------------------------------------


def test_epoch_with_a_fraction_is_flagged_across_the_whole_value() -> None:
    (finding,) = lint("thread_ts: 1772113259.294229")
    assert finding.rule == "epoch"
    assert finding.text == "1772113259.294229"
    assert (finding.column, finding.end_column) == (12, 29)


def test_time_after_a_label_is_flagged_across_the_whole_clock() -> None:
    (finding,) = lint("Generated at 14:23:47 UTC")
    assert finding.rule == "time"
    assert finding.text == "14:23:47 UTC"
    assert (finding.column, finding.end_column) == (14, 26)


@pytest.mark.parametrize(
    ("line", "clock"),
    [
        ("It is now 09:47:25 UTC.", "09:47:25 UTC"),
        ("The user's local time is 2:29 am.", "2:29 am."),
        ("Session started at 09:12:44.", "09:12:44"),
        ("Local time in Perth: 08:02", "08:02"),
    ],
)
def test_time_after_a_label_shows_the_clock_not_the_label(line: str, clock: str) -> None:
    assert [f.text for f in lint(line) if f.rule == "time"] == [clock]


def _dynamic_in_system_prompt() -> cs.Prompt:
    return cs.Prompt(
        MODEL,
        [cs.Layer("stable", FILLER), cs.Layer("dynamic", "Weather: sunny")],
        dynamic_placement="system",
    )


def test_dynamic_in_system_is_flagged_on_the_rendered_params_as_on_the_prompt() -> None:
    prompt = _dynamic_in_system_prompt()
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
    ]
    params = prompt.render(messages=history, user="What now?")
    assert "cache_control" in params["messages"][-1]["content"][-1]  # the history is cached
    assert lint(params).rules().count("dynamic_in_system") == 1
    assert lint(prompt).rules().count("dynamic_in_system") == 1
    (finding,) = (f for f in lint(params) if f.rule == "dynamic_in_system")
    assert (finding.layer, finding.path) == ("dynamic", "system.1")


def test_dynamic_in_system_without_a_cached_history_is_not_flagged() -> None:
    prompt = _dynamic_in_system_prompt().evolve(history_ttl=None)
    assert "dynamic_in_system" not in lint(prompt.render(user="Hi")).rules()


def test_dynamic_layer_in_the_user_turn_is_not_flagged() -> None:
    prompt = _dynamic_in_system_prompt().evolve(dynamic_placement="user")
    assert "dynamic_in_system" not in lint(prompt.render(user="Hi")).rules()
