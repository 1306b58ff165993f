"""tool_use / tool_result pairing: the API's 400s for unanswered or unexpected tool calls.

The texts are the API's own, as quoted in public issue threads (sources below).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cachescope.sim._errors import invalid

# The API's texts, as quoted in 400 responses in public issue threads:
# - missing results: anthropics/claude-code#5989 (two ids, joined by ", "), #1237, #2697;
#   Kilo-Org/kilocode#5163. The same text answers a user message whose `tool_result` blocks do
#   not all come first: NousResearch/hermes-agent#65369 (content [text, tool_result]) and
#   shareAI-lab/learn-claude-code#55 (a text inserted before the tool_result).
# - unexpected ids: router-for-me/CLIProxyAPI#497 (`messages.12.content.0`), anthropics/claude-code
#   #13460 (`messages.48.content.1`), decocms/studio#1803 (`messages.0.content.0`).
# - blocks in the wrong role: V1ki/dsh-plugin-subscriptions#23 (`messages.52: `tool_use` blocks
#   can only be in `assistant` messages`); tghamm/Anthropic.SDK#128 quotes the tool_result one
#   without its `messages.N: ` prefix, which is assumed to be the same as the tool_use one's.
# - a server tool's result without its `server_tool_use`: anthropics/claude-code#62885, #64383,
#   #92611, #95406 (`messages.7.content.0: unexpected `tool_use_id` found in
#   `advisor_tool_result` blocks: srvtoolu_…. Each `advisor_tool_result` block must have a
#   corresponding `server_tool_use` block before it.`). Only the advisor's text is quoted; the
#   same text with their own type is assumed for the other server tools' results
#   (`web_search_tool_result`, `web_fetch_tool_result`, `code_execution_tool_result`, ...), and
#   "before it" is read as anywhere earlier in the request.


def missing_results(m: int, ids: list[Any]) -> str:
    return (
        f"messages.{m}: `tool_use` ids were found without `tool_result` blocks immediately "
        f"after: {', '.join(str(i) for i in ids)}. Each `tool_use` block must have a "
        "corresponding `tool_result` block in the next message."
    )


def _unexpected_result(m: int, c: int, tool_use_id: Any) -> str:
    return (
        f"messages.{m}.content.{c}: unexpected `tool_use_id` found in `tool_result` blocks: "
        f"{tool_use_id}. Each `tool_result` block must have a corresponding `tool_use` block in "
        "the previous message."
    )


def _unpaired_server_result(m: int, c: int, kind: str, tool_use_id: Any) -> str:
    return (
        f"messages.{m}.content.{c}: unexpected `tool_use_id` found in `{kind}` blocks: "
        f"{tool_use_id}. Each `{kind}` block must have a corresponding `server_tool_use` block "
        "before it."
    )


def _is_server_result(kind: Any) -> bool:
    """A server tool's result block (`web_search_tool_result`, `advisor_tool_result`, ...):
    answered by the API in the assistant turn, after its `server_tool_use`. (`mcp_tool_result`
    pairs with `mcp_tool_use` instead, and `tool_result` is the client's.)"""
    return (
        kind.__class__ is str
        and kind.endswith("_tool_result")
        and kind != "tool_result"
        and kind != "mcp_tool_result"
    )


def _server_use_ids(blocks: Any) -> set[Any]:
    return {
        item.get("id")
        for item in blocks
        if isinstance(item, Mapping) and item.get("type") == "server_tool_use"
    }


def _check_server_results(messages: Any, message: Any, m: int) -> None:
    """Each server tool result in `messages[m]` names the id of a `server_tool_use` block before
    it (earlier in the message, or in an earlier message); raises the API's 400 otherwise."""
    content = message.get("content")
    if content.__class__ is str or not isinstance(content, list):
        return
    earlier: set[Any] | None = None  # the ids of the messages before, read only when needed
    for c, item in enumerate(content):
        kind = item.get("type")
        if not _is_server_result(kind):
            continue
        tool_use_id = item.get("tool_use_id")
        if tool_use_id in _server_use_ids(content[:c]):
            continue
        if earlier is None:
            earlier = set()
            for before in messages[:m]:
                blocks = before.get("content") if isinstance(before, Mapping) else None
                if isinstance(blocks, list):
                    earlier |= _server_use_ids(blocks)
        if tool_use_id not in earlier:
            raise invalid(_unpaired_server_result(m, c, kind, tool_use_id))


def check_tool_pairing(pending: list[Any], message: Any, m: int, messages: Any) -> list[Any]:
    """Check `messages[m]` against the client `tool_use` ids of the message before it, and its
    server tool results against the `server_tool_use` blocks before them.

    `message` has passed the structural checks (a mapping with a valid role; list content holds
    mappings with a str type). Raises the API's 400 when:
    - a `tool_use` block is in a user message, or a `tool_result` block in an assistant message;
    - `pending` (the previous message's ids) are not all answered by the `tool_result` blocks at
      the *start* of this message (a user message; a text or image before them does not count),
      reported at `messages.{m - 1}` with the missing ids in their order;
    - a `tool_result` of this user message names an id that is not in `pending`, reported at its
      block (`messages.{m}.content.{c}`), the first such block only;
    - a server tool result (`web_search_tool_result`, `advisor_tool_result`, ...) names no
      `server_tool_use` before it.
    The four are checked in that order (the API's own order when several apply is not known).
    Returns the ids this message leaves pending: its own client `tool_use` blocks. (Server tools,
    `server_tool_use` with their results, are answered by the API inside the same assistant turn.)

    A final assistant message with client `tool_use` blocks (a prefill) is refused by `validate`
    with the missing-results text at its index: no public source quotes the API's answer to that
    shape; the text is the one the API gives when the next message lacks the results.
    """
    content = message.get("content")
    if content.__class__ is str:
        if pending:
            raise invalid(missing_results(m - 1, pending))
        return []
    role = message.get("role")
    blocks = content if isinstance(content, list) else ()
    user = role == "user"
    server_results = False
    for item in blocks:
        kind = item.get("type")
        if kind == "tool_use" and user:
            raise invalid(f"messages.{m}: `tool_use` blocks can only be in `assistant` messages")
        if kind == "tool_result" and not user:
            raise invalid(f"messages.{m}: `tool_result` blocks can only be in `user` messages")
        if not server_results and _is_server_result(kind):
            server_results = True
    if pending:
        leading: list[Any] = []
        if user:
            for item in blocks:
                if item.get("type") != "tool_result":
                    break
                leading.append(item.get("tool_use_id"))
        missing = [i for i in pending if i not in leading]
        if missing:
            raise invalid(missing_results(m - 1, missing))
    if user:
        for c, item in enumerate(blocks):
            if item.get("type") == "tool_result":
                tool_use_id = item.get("tool_use_id")
                if tool_use_id not in pending:
                    raise invalid(_unexpected_result(m, c, tool_use_id))
    if server_results:
        _check_server_results(messages, message, m)
    if user:
        return []
    return [item.get("id") for item in blocks if item.get("type") == "tool_use"]
