"""The layered prompt model renders requests that follow the API's caching rules."""

from __future__ import annotations

import json

import pytest

import cachescope as cs
from cachescope.blocks import flatten

MODEL = "claude-sonnet-5"
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
    {"name": "search", "description": "Search notes.", "input_schema": {"type": "object"}},
]


def aura(**kwargs: object) -> cs.Prompt:
    return cs.Prompt(
        MODEL,
        [
            cs.Layer("stable", "You are Aura, a calm assistant.", ttl="1h"),
            cs.Layer("conversation", "Memories: the user likes tea."),
            cs.Layer("dynamic", "Current time: 2026-11-21 10:00"),
        ],
        **kwargs,  # type: ignore[arg-type]
    )


def cache_controls(params: dict) -> list[tuple[str, str]]:
    """(path, ttl) of every breakpoint in request order."""
    return [(b.path, b.ttl) for b in flatten(params).blocks if b.cache_control]


def test_three_layer_defaults_are_5m_5m_and_never_cached() -> None:
    assert cs.Layer("stable", "x").ttl == "5m"
    assert cs.Layer("conversation", "x").ttl == "5m"
    assert cs.Layer("dynamic", "x").ttl is None
    assert cs.Layer("rag_documents", "x").ttl == "5m"


def test_system_has_one_block_per_layer_with_a_breakpoint_on_each_cached_layer() -> None:
    params = aura().render(user="Hi")
    assert [block["text"] for block in params["system"]] == [
        "You are Aura, a calm assistant.",
        "Memories: the user likes tea.",
    ]
    assert params["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert params["system"][1]["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
    assert params["system"].layer_names == ["stable", "conversation"]


def test_dynamic_layer_goes_first_in_the_newest_user_turn_by_default() -> None:
    params = aura().render(
        messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], user="Q"
    )
    newest = params["messages"][-1]
    assert newest["role"] == "user"
    assert [block["text"] for block in newest["content"]] == ["Current time: 2026-11-21 10:00", "Q"]
    assert newest["content"].layer_names == ["dynamic", "user"]
    assert "cache_control" not in newest["content"][0]


def test_rolling_breakpoint_sits_on_the_last_block_of_the_newest_turn() -> None:
    params = aura().render(
        messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], user="Q"
    )
    assert cache_controls(params) == [
        ("system.0", "1h"),
        ("system.1", "5m"),
        ("messages.2.content.1", "5m"),
    ]


def test_dynamic_placement_system_puts_the_dynamic_layer_last_in_the_system_prompt() -> None:
    params = aura(dynamic_placement="system").render(user="Q")
    assert params["system"].layer_names == ["stable", "conversation", "dynamic"]
    assert "cache_control" not in params["system"][2]
    assert [block["text"] for block in params["messages"][-1]["content"]] == ["Q"]


def test_history_breakpoints_are_stripped_so_only_the_rolling_one_remains() -> None:
    first = aura().render(user="one")
    history = [*first["messages"], {"role": "assistant", "content": "reply"}]
    second = aura().render(messages=history, user="two")
    paths = [path for path, _ in cache_controls(second)]
    assert paths == ["system.0", "system.1", "messages.2.content.1"]


def test_appending_a_turn_keeps_every_earlier_block_hash() -> None:
    first = aura().render(user="one")
    history = [*first["messages"], {"role": "assistant", "content": "reply"}]
    second = aura().render(messages=history, user="two")
    a, b = flatten(first).blocks, flatten(second).blocks
    assert [block.hash for block in a] == [block.hash for block in b[: len(a)]]


def test_tools_get_no_breakpoint_unless_tools_ttl_is_set() -> None:
    assert "cache_control" not in aura(tools=TOOLS).render(user="Q")["tools"][-1]
    with_ttl = aura(tools=TOOLS, tools_ttl="1h").render(user="Q")
    assert with_ttl["tools"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert "cache_control" not in with_ttl["tools"][0]


def test_render_does_not_mutate_the_prompt_tools_or_history() -> None:
    history = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}],
        }
    ]
    snapshot = json.dumps(history)
    prompt = aura(tools=TOOLS, tools_ttl="1h")
    prompt.render(messages=[*history, {"role": "assistant", "content": "b"}], user="Q")
    assert json.dumps(history) == snapshot
    assert all("cache_control" not in tool for tool in prompt.tools or ())


def test_empty_layers_are_left_out_with_their_breakpoint() -> None:
    prompt = cs.Prompt(
        MODEL, [cs.Layer("stable", "S"), cs.Layer("conversation", ""), cs.Layer("dynamic", "")]
    )
    params = prompt.render(user="Q")
    assert [block["text"] for block in params["system"]] == ["S"]
    assert [block["text"] for block in params["messages"][-1]["content"]] == ["Q"]
    assert len(cache_controls(params)) == 2


def test_more_than_four_breakpoints_is_rejected_naming_the_layers() -> None:
    layers = [cs.Layer(name, "x") for name in ("stable", "conversation", "rag", "examples")]
    with pytest.raises(cs.TooManyBreakpointsError) as info:
        cs.Prompt(MODEL, layers)
    message = str(info.value)
    assert "5 cache breakpoints" in message
    assert "stable, conversation, rag, examples, history" in message
    assert "Merge" in message


def test_four_layers_fit_when_the_rolling_breakpoint_is_off() -> None:
    layers = [cs.Layer(name, "x") for name in ("stable", "conversation", "rag", "examples")]
    params = cs.Prompt(MODEL, layers, history_ttl=None).render(user="Q")
    assert len(cache_controls(params)) == 4


def test_1h_breakpoint_after_5m_is_rejected() -> None:
    with pytest.raises(cs.TTLOrderError) as info:
        cs.Prompt(
            MODEL, [cs.Layer("stable", "a", ttl="5m"), cs.Layer("conversation", "b", ttl="1h")]
        )
    assert info.value.layer == "conversation"
    assert "1h" in str(info.value) and "5m" in str(info.value)


def test_tools_5m_before_a_1h_layer_is_rejected() -> None:
    with pytest.raises(cs.TTLOrderError):
        cs.Prompt(MODEL, [cs.Layer("stable", "a", ttl="1h")], tools=TOOLS, tools_ttl="5m")


def test_unknown_ttl_is_rejected_with_the_valid_values() -> None:
    with pytest.raises(cs.InvalidTTLError, match='ttl="5m", ttl="1h"'):
        cs.Layer("stable", "x", ttl="10m")


def test_duplicate_layer_names_are_rejected() -> None:
    with pytest.raises(cs.DuplicateLayerError, match="declared twice"):
        cs.Prompt(MODEL, [cs.Layer("stable", "a"), cs.Layer("stable", "b")])


def test_reserved_and_malformed_layer_names_are_rejected() -> None:
    with pytest.raises(cs.InvalidLayerError, match="reserved"):
        cs.Layer("tools", "x")
    with pytest.raises(cs.InvalidLayerError, match="not a valid name"):
        cs.Layer("two words", "x")


def test_tools_must_be_a_list_of_objects() -> None:
    with pytest.raises(cs.InvalidLayerError, match="tools"):
        cs.Prompt(MODEL, [], tools="search")  # type: ignore[arg-type]
    with pytest.raises(cs.InvalidLayerError, match=r"tools\[0\]"):
        cs.Prompt(MODEL, [], tools=["search"])  # type: ignore[list-item]


def test_empty_user_turn_is_rejected() -> None:
    with pytest.raises(cs.PromptError, match="empty"):
        aura().render(user="")


def test_render_without_a_user_turn_uses_the_last_user_message() -> None:
    params = aura().render(messages=[{"role": "user", "content": "only"}])
    assert [block["text"] for block in params["messages"][-1]["content"]] == [
        "Current time: 2026-11-21 10:00",
        "only",
    ]


def test_extra_arguments_pass_through_but_cannot_override_the_prompt() -> None:
    params = aura().render(user="Q", max_tokens=0, temperature=0.2)
    assert params["max_tokens"] == 0 and params["temperature"] == 0.2
    with pytest.raises(cs.PromptError, match="comes from the Prompt"):
        aura().render(user="Q", system="other")


def test_replace_layer_returns_a_new_prompt() -> None:
    prompt = aura()
    fixed = prompt.replace_layer("stable", "You are Aura.")
    assert fixed.layer("stable").text == "You are Aura."
    assert fixed.layer("stable").ttl == "1h"
    assert prompt.layer("stable").text == "You are Aura, a calm assistant."


def test_rendered_params_serialize_as_plain_json() -> None:
    params = aura(tools=TOOLS).render(user="Q")
    text = json.dumps(params)
    assert json.loads(text)["system"][0]["text"] == "You are Aura, a calm assistant."


def test_dynamic_layer_goes_after_the_tool_results_of_the_newest_turn() -> None:
    results = [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "12 C"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rain"},
    ]
    params = aura().render(
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}],
            },
        ],
        user=results,
    )
    newest = params["messages"][-1]["content"]
    assert [block["type"] for block in newest] == ["tool_result", "tool_result", "text"]
    assert newest.layer_names == ["user", "user", "dynamic"]
    assert newest[-1]["cache_control"] == {"type": "ephemeral", "ttl": "5m"}  # the rolling one
