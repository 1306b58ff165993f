"""The kinds of lint rule, as plain data: `TextRule` (a regex over cached text, searched only near
its anchors), `RequestRule` (the request's layout) and `ChangeRule` (against the previous
render). The rules themselves are listed in `rules.py`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cachescope.lint._gates import Confirm, Gate

if TYPE_CHECKING:
    from cachescope.lint._findings import Finding
    from cachescope.lint._layout import Request


ERROR = "error"
WARNING = "warning"

# The text's "shapes" anchors are searched in, by `str.translate` tables: `low` is lower-cased
# with every digit turned into "0"; `hex` has every hex digit turned into "h"; `cls` has every
# letter turned into "a" and every digit into "0". A shape keeps the text's length and positions.
SHAPES: dict[str, dict[int, int]] = {
    "low": str.maketrans(
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0" * 10 + "abcdefghijklmnopqrstuvwxyz"
    ),
    "hex": str.maketrans("0123456789abcdefABCDEF", "h" * 22),
    "cls": str.maketrans(
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", "0" * 10 + "a" * 52
    ),
}


@dataclass(frozen=True, slots=True)
class Anchor:
    """A literal that every match of a rule has at or near it, in one of the `SHAPES`, with an
    optional gate: a cheap look at the `low` shape around it before the regex runs there."""

    shape: str
    literal: str
    gate: Gate | None = None


def low(*literals: str, gate: Gate | None = None) -> tuple[Anchor, ...]:
    """Anchors in the lower-cased, digits-as-"0" shape."""
    return tuple(Anchor("low", literal, gate) for literal in literals)


def hexes(*literals: str, gate: Gate | None = None) -> tuple[Anchor, ...]:
    """Anchors in the hex-digits-as-"h" shape."""
    return tuple(Anchor("hex", literal, gate) for literal in literals)


def classes(*literals: str, gate: Gate | None = None) -> tuple[Anchor, ...]:
    """Anchors in the letters-as-"a", digits-as-"0" shape."""
    return tuple(Anchor("cls", literal, gate) for literal in literals)


@dataclass(frozen=True)
class TextRule:
    """A pattern of text that changes between calls.

    Attributes
    ----------
    id:
        The rule id its findings carry; several patterns may share one (`counter`).
    severity:
        "error" or "warning".
    pattern:
        The regex. Its group `value`, when it has one, is the span a finding reports (a label
        before it is matched but not shown).
    fix:
        How to fix it, in one sentence.
    anchors:
        Where it can match: every match lies within 40 characters before to 48 after one of
        them. `lint` runs the regex only in those windows.
    name:
        A name of its own when the id is shared (default: the id).
    confirm:
        A finer check of each match, when the regex alone would flag too much.
    """

    id: str
    severity: str
    pattern: str
    fix: str
    anchors: tuple[Anchor, ...]
    name: str = ""
    confirm: Confirm | None = None
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern))
        if not self.name:
            object.__setattr__(self, "name", self.id)


@dataclass(frozen=True)
class Hit:
    """Where a request or change rule fires: the layer and path of the block, what to show and,
    when known, the line and columns inside the block. `details` fill the fix's `{fields}`."""

    layer: str | None
    path: str
    text: str
    line: int = 0
    column: int = 0
    end_column: int = 0
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestRule:
    """A mistake in the request's layout; `check` yields a `Hit` where the rule fires."""

    id: str
    severity: str
    fix: str
    check: Callable[[Request], Iterable[Hit]]


@dataclass(frozen=True)
class ChangeRule:
    """A change against the previous render; `check(new, old, found)` yields a `Hit` where the
    rule fires (`found`: the findings so far, so a rule can stay quiet where another spoke)."""

    id: str
    severity: str
    fix: str
    check: Callable[[Request, Request, Sequence[Finding]], Iterable[Hit]]
