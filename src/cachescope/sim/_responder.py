"""What the simulated model says: scripted replies for agent loops, or a deterministic default.

A responder is any callable `responder(request: dict) -> reply`, where the reply is a `str`, a
`TextReply`, a `ToolUseReply`, a list of those, or a `Reply` (content plus, optionally, an output
token count and stop reason). `ScriptedResponder` plays a list of replies in order, which is enough to
drive an agent loop: a tool call, then the final text.

The default reply is short deterministic text whose output token count is derived from a hash of
the request, so the same request always gets the same answer and usage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cachescope.tokens import estimate_tokens


@dataclass(frozen=True)
class TextReply:
    """A text content block in the reply."""

    text: str


@dataclass(frozen=True)
class ToolUseReply:
    """A `tool_use` content block in the reply; `id` is generated when omitted."""

    name: str
    input: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None


ReplyBlock = TextReply | ToolUseReply


@dataclass(frozen=True)
class Reply:
    """A whole reply.

    Parameters
    ----------
    content:
        The content blocks, in order.
    output_tokens:
        Tokens to bill as output; by default estimated from the content (at least 1).
    stop_reason:
        By default "tool_use" when the content has a tool call, else "end_turn". When the output
        would exceed the request's `max_tokens`, the simulator cuts it and says "max_tokens".
    """

    content: Sequence[ReplyBlock]
    output_tokens: int | None = None
    stop_reason: str | None = None


ResponderResult = str | TextReply | ToolUseReply | Reply | Sequence[ReplyBlock]
Responder = Callable[[Mapping[str, Any]], ResponderResult]


def as_reply(result: ResponderResult) -> Reply:
    """Normalize whatever a responder returned into a `Reply`."""
    if isinstance(result, Reply):
        return result
    if isinstance(result, str):
        return Reply([TextReply(result)])
    if isinstance(result, (TextReply, ToolUseReply)):
        return Reply([result])
    blocks = list(result)
    for block in blocks:
        if not isinstance(block, (TextReply, ToolUseReply)):
            raise TypeError(
                "A responder must return str, TextReply, ToolUseReply, Reply or a list of "
                f"TextReply/ToolUseReply; got an item of type {type(block).__name__}."
            )
    return Reply(blocks)


def estimated_output_tokens(reply: Reply) -> int:
    if reply.output_tokens is not None:
        return reply.output_tokens
    tokens = 0
    for block in reply.content:
        if isinstance(block, TextReply):
            tokens += estimate_tokens(block.text)
        else:
            tokens += 12 + estimate_tokens(repr(dict(block.input)))
    return max(1, tokens)


class ScriptedResponder:
    """Plays `replies` one per request, in order; then repeats the last one (or raises).

    Parameters
    ----------
    replies:
        The replies, each anything a responder may return.
    repeat_last:
        When the script runs out: True repeats the last reply, False raises `IndexError`.
    """

    def __init__(self, replies: Iterable[ResponderResult], *, repeat_last: bool = True) -> None:
        self.replies = [as_reply(reply) for reply in replies]
        if not self.replies:
            raise ValueError("ScriptedResponder needs at least one reply.")
        self.repeat_last = repeat_last
        self.calls = 0

    def __call__(self, request: Mapping[str, Any]) -> Reply:
        index = self.calls
        self.calls += 1
        if index >= len(self.replies):
            if not self.repeat_last:
                raise IndexError(f"ScriptedResponder ran out of replies after {index} calls.")
            index = len(self.replies) - 1
        return self.replies[index]


_WORDS = (
    "cached",
    "prefix",
    "tokens",
    "simulated",
    "reply",
    "offline",
    "breakpoint",
    "stable",
    "layer",
    "answer",
    "ready",
    "noted",
)


def default_reply(request_hash: int) -> tuple[str, int]:
    """Deterministic (text, output_tokens) for a request hash."""
    h = request_hash & 0xFFFFFFFFFFFF
    w = _WORDS  # word i is _WORDS[(h >> 4i) % 12], unrolled (this runs on every request)
    return (
        f"(simulated reply {h & 0xFFFFFF:06x}) {w[h % 12]} {w[(h >> 4) % 12]} "
        f"{w[(h >> 8) % 12]} {w[(h >> 12) % 12]} {w[(h >> 16) % 12]} {w[(h >> 20) % 12]}.",
        12 + h % 181,
    )
