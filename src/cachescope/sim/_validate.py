"""The API's validation of a Messages request body: its 400s, with the API's texts (spec §6.2).

`Validator.validate(body)` checks the shape of tools, system and messages, tool_use/tool_result
pairing (`_pairing`), and the breakpoint rules: at most four, each a valid `cache_control`, no 1h
after a 5m, and a top-level `cache_control` that agrees with an explicit one on the block it would
take. `check_max_tokens(body)` holds the rules of `max_tokens`, pre-warming with 0 among them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cachescope.blocks import NOT_CACHEABLE_KINDS, TTL_SECONDS
from cachescope.sim._errors import invalid
from cachescope.sim._pairing import check_tool_pairing, missing_results

MAX_BREAKPOINTS = 4
_SYSTEM_TOGGLE_PREFIXES = ("web_search", "web_fetch")

# A breakpoint as written: (its path, its cache_control), in render order.
_Mark = tuple[str, Any]


def _is_mapping(value: Any) -> bool:
    return value.__class__ is dict or isinstance(value, Mapping)


def check_max_tokens(body: Mapping[str, Any]) -> int:
    """`max_tokens` of a request; raises the API's 400 when it is missing or not allowed."""
    if "max_tokens" not in body:
        raise invalid("max_tokens: Field required")
    max_tokens = body["max_tokens"]
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise invalid("max_tokens: Input should be a valid integer")
    if max_tokens < 0:
        raise invalid("max_tokens: Input should be greater than or equal to 0")
    if max_tokens == 0:
        # Pre-warming (spec §1.9) refuses these combinations.
        if body.get("stream"):
            raise invalid("max_tokens: 0 (cache pre-warming) cannot be used with stream: true")
        thinking = body.get("thinking")
        if isinstance(thinking, Mapping) and thinking.get("type") == "enabled":
            raise invalid("max_tokens: 0 (cache pre-warming) cannot be used with thinking enabled")
        output_config = body.get("output_config")
        if isinstance(output_config, Mapping) and output_config.get("format") is not None:
            raise invalid(
                "max_tokens: 0 (cache pre-warming) cannot be used with output_config.format"
            )
        tool_choice = body.get("tool_choice")
        if isinstance(tool_choice, Mapping) and tool_choice.get("type") in ("any", "tool"):
            raise invalid(
                "max_tokens: 0 (cache pre-warming) cannot be used with tool_choice "
                f"type '{tool_choice.get('type')}'"
            )
    return max_tokens


# The state after a request's messages were accepted: (the messages, their breakpoints, the last
# block that can take the automatic breakpoint, the tool_use ids left to answer, whether the last
# message has no content).
_Accepted = tuple[list[Any], list[_Mark], Any, list[Any], bool]


class Validator:
    """`validate` with a memo of the messages it accepted lately, one per conversation.

    A request whose messages start with an accepted request's messages but its last (equal as
    JSON values) is checked from there: a conversation that grew by a turn, its rolling breakpoint
    moved off the last message, costs one comparison in C and the checks of the newest messages. Only messages nobody else holds are remembered (the
    transport's freshly parsed bodies), so an accepted message cannot change afterwards.
    """

    def __init__(self, conversations: int = 16) -> None:
        self._accepted: list[_Accepted] = []
        self._conversations = conversations

    def validate(self, body: Mapping[str, Any], *, remember: bool = False) -> None:
        """Raise the API's 400 for the first thing wrong with a request body, if any.

        Checked in render order (tools, system, then message by message with its pairing), then
        the breakpoints. `remember`: the body is the caller's alone, so its messages may be kept.
        """
        marks: list[_Mark] = []
        eligible = _check_head(body, marks)
        messages = body.get("messages")
        if messages.__class__ is not list:
            if messages is None:
                raise invalid("messages: Field required")
            if not isinstance(messages, list):
                raise invalid("messages: Input should be a valid list")
        start: _Accepted | None = self._earlier(messages) if self._accepted else None
        accepted, checkpoint = _check_messages(messages, start)
        if remember and checkpoint is not None:
            self._remember(checkpoint)
        marks += accepted[1]
        if accepted[2] is not None:
            eligible = accepted[2]
        _check_breakpoints(marks, eligible, body.get("cache_control"))

    def _earlier(self, messages: list[Any]) -> _Accepted | None:
        count = len(messages)
        for accepted in reversed(self._accepted):
            earlier = accepted[0]
            n = len(earlier)
            if n <= count and messages[n - 1] == earlier[-1] and messages[:n] == earlier:
                return accepted
        return None

    def _remember(self, accepted: _Accepted) -> None:
        first = accepted[0][0]
        kept = self._accepted
        for i, other in enumerate(kept):
            if other[0][0] == first:  # the same conversation: keep only its latest request
                del kept[i]
                break
        else:
            if len(kept) >= self._conversations:
                del kept[0]
        kept.append(accepted)


def _check_head(body: Mapping[str, Any], marks: list[_Mark]) -> _Mark | None:
    """Check tools and system; returns the last block of them that can take the automatic
    breakpoint."""
    eligible: _Mark | None = None
    tools = body.get("tools")
    if tools:
        eligible = _check_tools(tools, marks) or eligible
    system = body.get("system")
    if system:
        eligible = _check_system(system, marks) or eligible
    return eligible


def _check_messages(
    messages: list[Any], start: _Accepted | None
) -> tuple[_Accepted, _Accepted | None]:
    """Check messages one by one with their pairing, from where `start` (accepted messages these
    start with) ends; the state after all of them, and the state before the last one."""
    if start is not None:
        _, earlier_marks, eligible, pending, empty = start
        first = len(start[0])
        if empty and first < len(messages):  # an empty last assistant message is no longer last
            role = messages[first - 1].get("role")
            raise invalid(f"messages.{first - 1}: {role} messages must have non-empty content")
        marks = list(earlier_marks)
    else:
        marks, eligible, pending, empty, first = [], None, [], False, 0
    last = len(messages) - 1
    checkpoint: _Accepted | None = None
    for m in range(first, last + 1):
        if m == last and m > 0:
            # the state before the last message: the next request of a conversation starts
            # with these messages even when it moves the rolling breakpoint off the last one
            checkpoint = (list(messages[:m]), list(marks), eligible, list(pending), empty)
        message = messages[m]
        found = _check_message(message, m, marks)
        empty = found is None
        if empty:
            if not (m == last and message.get("role") == "assistant"):
                role = message.get("role")
                raise invalid(f"messages.{m}: {role} messages must have non-empty content")
        elif found[0]:  # type: ignore[index]
            eligible = found
        pending = check_tool_pairing(pending, message, m, messages)
    if pending:  # a final assistant message with client tool_use blocks
        raise invalid(missing_results(last, pending))
    return (list(messages), marks, eligible, pending, empty), checkpoint


def _check_tools(tools: Any, marks: list[_Mark]) -> _Mark | None:
    if not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list")
    eligible: _Mark | None = None
    for i, tool in enumerate(tools):
        if not _is_mapping(tool):
            raise invalid(f"tools.{i}: Input should be a valid dictionary")
        tool_type = tool.get("type")
        if isinstance(tool_type, str) and tool_type.startswith(_SYSTEM_TOGGLE_PREFIXES):
            continue  # a system-level setting, not a position
        cc = tool.get("cache_control")
        eligible = (f"tools.{i}", cc)
        if cc is not None:
            marks.append(eligible)
    return eligible


def _check_system(system: Any, marks: list[_Mark]) -> _Mark | None:
    if isinstance(system, str):
        return ("system", None)
    if not isinstance(system, list):
        raise invalid("system: Input should be a valid string or list")
    eligible: _Mark | None = None
    for i, item in enumerate(system):
        if not _is_mapping(item):
            raise invalid(f"system.{i}: Input should be a valid dictionary")
        if item.get("type") != "text":
            raise invalid(f"system.{i}.type: Input should be 'text'")
        cc = item.get("cache_control")
        text = item.get("text")
        if not isinstance(text, str):
            raise invalid(f"system.{i}.text: Field required")
        if not text:
            if cc is not None:
                raise invalid("cache_control cannot be set for empty text blocks")
            raise invalid("system: text content blocks must be non-empty")
        eligible = (f"system.{i}", cc)
        if cc is not None:
            marks.append(eligible)
    return eligible


def _check_message(message: Any, m: int, marks: list[_Mark]) -> _Mark | tuple[None, None] | None:
    """Check one message's shape and collect its breakpoints. Returns the last block that can
    take the automatic breakpoint, `(None, None)` when it has content but no such block (only
    thinking), or None when it has no content."""
    if not _is_mapping(message):
        raise invalid(f"messages.{m}: Input should be a valid dictionary")
    role = message.get("role")
    if role != "user" and role != "assistant":
        raise invalid(f"messages.{m}.role: Input should be 'user' or 'assistant'")
    content = message.get("content")
    if content.__class__ is str:
        return (f"messages.{m}.content", None) if content else None
    if not isinstance(content, list):
        raise invalid(f"messages.{m}.content: Input should be a valid string or list")
    if not content:
        return None
    eligible: _Mark | tuple[None, None] = (None, None)
    for c, item in enumerate(content):
        if not _is_mapping(item):
            raise invalid(f"messages.{m}.content.{c}: Input should be a valid dictionary")
        kind = item.get("type")
        if kind.__class__ is not str:
            raise invalid(f"messages.{m}.content.{c}.type: Field required")
        cc = item.get("cache_control")
        if kind == "text":
            text = item.get("text")
            if text.__class__ is not str:
                raise invalid(f"messages.{m}.content.{c}.text: Field required")
            if not text:
                if cc is not None:
                    raise invalid("cache_control cannot be set for empty text blocks")
                raise invalid("messages: text content blocks must be non-empty")
        elif kind in NOT_CACHEABLE_KINDS:
            if cc is not None:
                raise invalid(
                    f"messages.{m}.content.{c}.{kind}.cache_control: Extra inputs are not permitted"
                )
            continue
        eligible = (f"messages.{m}.content.{c}", cc)
        if cc is not None:
            marks.append(eligible)
    return eligible


def _verdict(cc: Any) -> str | None:
    """What is wrong with a `cache_control` (the tail of the API's text), or None."""
    if not _is_mapping(cc):
        return "cache_control: Input should be a valid dictionary"
    if cc.get("type") != "ephemeral":
        return "cache_control.type: Input should be 'ephemeral'"
    ttl = cc.get("ttl") or "5m"
    if ttl.__class__ is not str or ttl not in TTL_SECONDS:
        return "cache_control.ttl: Input should be '5m' or '1h'"
    return None


def _ttl_order_message(path: str) -> str:
    return (
        f"{path}.cache_control.ttl: a ttl='1h' cache_control block must not come after a "
        "ttl='5m' cache_control block. Note that blocks are processed in the following "
        "order: `tools`, `system`, `messages`."
    )


def _check_breakpoints(marks: list[_Mark], eligible: _Mark | None, top: Any) -> None:
    """Breakpoint count, each breakpoint's cache_control, TTL order, and the top-level one."""
    explicit = len(marks)
    if explicit > MAX_BREAKPOINTS or (top is not None and explicit == MAX_BREAKPOINTS):
        found = explicit + (top is not None and explicit == MAX_BREAKPOINTS)
        raise invalid(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {found}."
        )
    seen_5m = False
    for path, cc in marks:
        wrong = _verdict(cc)
        if wrong is not None:
            raise invalid(f"{path}.{wrong}")
        if (cc.get("ttl") or "5m") == "5m":
            seen_5m = True
        elif seen_5m:
            raise invalid(_ttl_order_message(path))
    if top is None:
        return
    if not _is_mapping(top) or top.get("type") != "ephemeral":
        raise invalid("cache_control.type: Input should be 'ephemeral'")
    top_ttl = top.get("ttl") or "5m"
    if top_ttl.__class__ is not str or top_ttl not in TTL_SECONDS:
        raise invalid("cache_control.ttl: Input should be '5m' or '1h'")
    # The automatic breakpoint goes on the last block that can carry one; none at all means no
    # caching and no error (PC).
    if eligible is None or eligible[0] is None:
        return
    path, cc = eligible
    if cc is not None:
        own = cc.get("ttl") or "5m"
        if own != top_ttl:
            raise invalid(
                f"cache_control.ttl: the top-level cache_control (ttl='{top_ttl}') "
                f"conflicts with the explicit cache_control on {path} "
                f"(ttl='{own}'); automatic caching would place its breakpoint on that "
                "block. Use the same ttl or remove one of them."
            )
    elif top_ttl == "1h" and seen_5m:
        raise invalid(_ttl_order_message("cache_control"))
