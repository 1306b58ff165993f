"""tool_use / tool_result pairing: the API's 400s through the real SDK.

The error texts and where they come from are in `cachescope/sim/_pairing.py`.
"""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from conftest import MODEL, long_text

from cachescope.sim import ScriptedResponder, Simulator, TextReply, ToolUseReply, VirtualClock

MISSING = (
    "messages.{m}: `tool_use` ids were found without `tool_result` blocks immediately after: "
    "{ids}. Each `tool_use` block must have a corresponding `tool_result` block in the next "
    "message."
)
UNEXPECTED = (
    "messages.{m}.content.{c}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. "
    "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
)
TOOLS = [{"name": "lookup", "description": "Look a thing up.", "input_schema": {"type": "object"}}]


def _use(*ids: str, text: str | None = "Let me check.") -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": i, "name": "lookup", "input": {"q": i}} for i in ids]
    return {"role": "assistant", "content": content}


def _result(tool_use_id: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": f"found {tool_use_id}"}


def _user(*blocks: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


QUESTION = {"role": "user", "content": "What is in the cache? " + long_text("q")}


def _create(client: anthropic.Anthropic, messages: list[dict[str, Any]]) -> Any:
    return client.messages.create(model=MODEL, max_tokens=1024, tools=TOOLS, messages=messages)


def _rejected(client: anthropic.Anthropic, messages: list[dict[str, Any]]) -> str:
    with pytest.raises(anthropic.BadRequestError) as caught:
        _create(client, messages)
    error = caught.value
    assert error.status_code == 400
    body = error.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "invalid_request_error"
    return str(body["error"]["message"])


# ---- rejected --------------------------------------------------------------------------------


def test_a_tool_use_answered_by_plain_text_is_rejected(client: anthropic.Anthropic) -> None:
    messages = [QUESTION, _use("toolu_01A"), {"role": "user", "content": "never mind"}]
    assert _rejected(client, messages) == MISSING.format(m=1, ids="toolu_01A")
    messages[2] = _user(_text("never mind"))
    assert _rejected(client, messages) == MISSING.format(m=1, ids="toolu_01A")


def test_parallel_calls_with_a_result_missing_name_the_missing_ids(
    client: anthropic.Anthropic,
) -> None:
    messages = [QUESTION, _use("toolu_01A", "toolu_01B", "toolu_01C"), _user(_result("toolu_01B"))]
    assert _rejected(client, messages) == MISSING.format(m=1, ids="toolu_01A, toolu_01C")


def test_tool_results_must_come_before_other_content(client: anthropic.Anthropic) -> None:
    messages = [QUESTION, _use("toolu_01A"), _user(_text("here you go"), _result("toolu_01A"))]
    assert _rejected(client, messages) == MISSING.format(m=1, ids="toolu_01A")
    # a result after an image or text no longer counts, even when the others come first
    messages[2] = _user(_result("toolu_01A"), _text("and"), _result("toolu_01B"))
    messages[1] = _use("toolu_01A", "toolu_01B")
    assert _rejected(client, messages) == MISSING.format(m=1, ids="toolu_01B")


def test_the_next_message_must_be_a_user_message(client: anthropic.Anthropic) -> None:
    messages = [QUESTION, _use("toolu_01A"), {"role": "assistant", "content": "Done."}]
    assert _rejected(client, messages) == MISSING.format(m=1, ids="toolu_01A")


def test_a_result_for_an_unknown_id_is_rejected_at_its_block(client: anthropic.Anthropic) -> None:
    messages = [QUESTION, _use("toolu_01A"), _user(_result("toolu_01A"), _result("toolu_01Z"))]
    assert _rejected(client, messages) == UNEXPECTED.format(m=2, c=1, id="toolu_01Z")
    # after an assistant message without tool calls
    messages = [QUESTION, {"role": "assistant", "content": "Hi."}, _user(_result("toolu_01A"))]
    assert _rejected(client, messages) == UNEXPECTED.format(m=2, c=0, id="toolu_01A")
    # in the first message (no previous message at all), after a text block
    messages = [_user(_text("context"), _result("toolu_01A"))]
    assert _rejected(client, messages) == UNEXPECTED.format(m=0, c=1, id="toolu_01A")
    # a result for a server tool's id: server tools need (and take) no tool_result
    server = {
        "role": "assistant",
        "content": [
            {"type": "server_tool_use", "id": "srvtoolu_01S", "name": "web_search", "input": {}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01S", "content": []},
            _text("Found nothing."),
        ],
    }
    messages = [QUESTION, server, _user(_result("srvtoolu_01S"))]
    assert _rejected(client, messages) == UNEXPECTED.format(m=2, c=0, id="srvtoolu_01S")


def test_a_final_assistant_message_with_a_tool_call_is_rejected(
    client: anthropic.Anthropic,
) -> None:
    messages = [QUESTION, _use("toolu_01A")]
    assert _rejected(client, messages) == MISSING.format(m=1, ids="toolu_01A")
    # the same conversation, answered, is fine (the rejected request left nothing stale)
    assert _create(client, [*messages, _user(_result("toolu_01A"))]).stop_reason == "end_turn"


def test_blocks_in_the_wrong_role_are_rejected(client: anthropic.Anthropic) -> None:
    wrong_use = _user(_text("hi"), {"type": "tool_use", "id": "t", "name": "lookup", "input": {}})
    assert _rejected(client, [wrong_use]) == (
        "messages.0: `tool_use` blocks can only be in `assistant` messages"
    )
    wrong_result = {"role": "assistant", "content": [_text("x"), _result("toolu_01A")]}
    assert _rejected(client, [QUESTION, wrong_result]) == (
        "messages.1: `tool_result` blocks can only be in `user` messages"
    )


def test_an_unanswered_call_deep_in_a_growing_conversation_is_found(
    client: anthropic.Anthropic, sim: Simulator
) -> None:
    messages: list[dict[str, Any]] = [QUESTION]
    for turn in range(4):
        messages += [_use(f"toolu_{turn}"), _user(_result(f"toolu_{turn}"))]
        _create(client, messages)
    # the conversation's earlier messages are reused from the last request; the new pair is not
    bad = [*messages, _use("toolu_9"), {"role": "user", "content": "go on"}]
    assert _rejected(client, bad) == MISSING.format(m=9, ids="toolu_9")
    # and an edit inside the reused part is checked too
    edited = [*messages[:4], _user(_text("skipped")), *messages[5:]]
    assert _rejected(client, edited) == MISSING.format(m=3, ids="toolu_1")
    assert sim.requests == 6  # rejected requests count too


# ---- accepted --------------------------------------------------------------------------------


def test_valid_agent_loops_pass_and_read_the_cache(client: anthropic.Anthropic) -> None:
    system = [{"type": "text", "text": long_text("sys"), "cache_control": {"type": "ephemeral"}}]
    messages: list[dict[str, Any]] = [QUESTION]
    reads = []
    turns = [
        (_use("toolu_01A"), _user(_result("toolu_01A"))),
        # parallel calls, answered in another order, then text after the results
        (
            _use("toolu_02A", "toolu_02B", text=None),
            _user(_result("toolu_02B"), _result("toolu_02A"), _text("Both done.")),
        ),
        # an error result, and a result with block content
        (
            _use("toolu_03A"),
            _user(
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_03A",
                    "content": [_text("lookup failed")],
                    "is_error": True,
                }
            ),
        ),
    ]
    for assistant, user in turns:
        messages += [assistant, user]
        reply = client.messages.create(
            model=MODEL, max_tokens=1024, tools=TOOLS, system=system, messages=messages
        )
        assert reply.stop_reason == "end_turn"
        reads.append(reply.usage.cache_read_input_tokens)
    assert reads[0] == 0 < reads[1] <= reads[2]  # the system prompt, then the turns too


def test_server_tool_blocks_need_no_tool_result(client: anthropic.Anthropic) -> None:
    server = {
        "role": "assistant",
        "content": [
            {"type": "server_tool_use", "id": "srvtoolu_01S", "name": "web_search", "input": {}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01S", "content": []},
        ],
    }
    # last (a paused turn sent back to continue) and followed by a plain user message
    assert _create(client, [QUESTION, server]).stop_reason == "end_turn"
    assert _create(client, [QUESTION, server, {"role": "user", "content": "and?"}])


SERVER_UNPAIRED = (
    "messages.{m}.content.{c}: unexpected `tool_use_id` found in `{kind}` blocks: {id}. Each "
    "`{kind}` block must have a corresponding `server_tool_use` block before it."
)


def _server_use(tool_id: str, name: str = "web_search") -> dict[str, Any]:
    return {"type": "server_tool_use", "id": tool_id, "name": name, "input": {}}


def test_a_server_tool_result_needs_its_server_tool_use_before_it(
    client: anthropic.Anthropic,
) -> None:
    # the advisor's case from claude-code issues: the result kept, its server_tool_use dropped
    advice = {"type": "advisor_tool_result", "tool_use_id": "srvtoolu_01A", "content": "ok"}
    dropped = {"role": "assistant", "content": [advice, _text("Done.")]}
    messages = [QUESTION, dropped, {"role": "user", "content": "and?"}]
    expected = SERVER_UNPAIRED.format(m=1, c=0, kind="advisor_tool_result", id="srvtoolu_01A")
    assert _rejected(client, messages) == expected
    # after the result does not count; another id does not either
    late = {"role": "assistant", "content": [advice, _server_use("srvtoolu_01A", "advisor")]}
    assert _rejected(client, [QUESTION, late, {"role": "user", "content": "and?"}]) == expected
    search = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01B", "content": []}
    other = {"role": "assistant", "content": [_server_use("srvtoolu_01C"), search]}
    assert _rejected(client, [QUESTION, other, {"role": "user", "content": "and?"}]) == (
        SERVER_UNPAIRED.format(m=1, c=1, kind="web_search_tool_result", id="srvtoolu_01B")
    )


def test_a_server_tool_result_may_follow_its_use_in_an_earlier_message(
    client: anthropic.Anthropic,
) -> None:
    # a paused turn: the search started in one assistant message, its result sent in the next
    started = {"role": "assistant", "content": [_server_use("srvtoolu_01P")]}
    search = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01P", "content": []}
    finished = {"role": "assistant", "content": [search, _text("Found it.")]}
    between = {"role": "user", "content": "go on"}
    assert _create(client, [QUESTION, started, between, finished])
    # MCP results pair with mcp_tool_use, and client results with tool_use: not checked here
    mcp = {"type": "mcp_tool_result", "tool_use_id": "mcptoolu_01", "content": []}
    assert _create(client, [QUESTION, {"role": "assistant", "content": [mcp, _text("ok")]}])


def test_a_scripted_agent_loop_with_parallel_calls_runs_to_the_end(clock: VirtualClock) -> None:
    script = ScriptedResponder(
        [
            [TextReply("Checking both."), ToolUseReply("lookup", {"q": 1}), ToolUseReply("lookup")],
            ToolUseReply("lookup", {"q": 3}),
            TextReply("All done."),
        ]
    )
    sim = Simulator(clock=clock, responder=script)
    client = anthropic.Anthropic(api_key="sim", http_client=sim.http_client())
    messages: list[dict[str, Any]] = [QUESTION]
    for _ in range(5):
        reply = _create(client, messages)
        if reply.stop_reason != "tool_use":
            break
        calls = [block for block in reply.content if block.type == "tool_use"]
        messages += [
            {"role": "assistant", "content": [block.model_dump() for block in reply.content]},
            _user(*[_result(call.id) for call in calls]),
        ]
    assert reply.content[0].text == "All done."  # type: ignore[union-attr]
    assert script.calls == 3
    # one result short: the API's error, with the SDK's own message objects in the history
    messages[-1]["content"] = [_text("skip it")]
    assert _rejected(client, messages).startswith("messages.3: `tool_use` ids were found")
