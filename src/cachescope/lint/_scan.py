"""The text rules run over one block of cached text, only in windows around their anchors.

Each rule's regex is run only near its `anchors`, found by `str.find` in a shape of the text (see
`_kinds.SHAPES`), and only where the anchor's gate lets it through, so a 5 MB prompt lints in under
a second. What is searched per shape is derived from the rules here: each distinct literal once,
and a literal that holds another ("monday" holds "day") read off that one's positions.
"""

from __future__ import annotations

from collections.abc import Sequence

from cachescope.lint._findings import Finding
from cachescope.lint._kinds import SHAPES, TextRule

# A rule's matches lie within this many characters before / after its anchor.
BEFORE, AFTER = 40, 48
# How far past a match the rules' lookaheads read.
LOOKAHEAD = 16


def anchors_by_shape(rules: Sequence[TextRule]) -> dict[str, tuple[str, ...]]:
    """Each shape's distinct anchor literals, so an anchor shared by rules is searched once."""
    by_shape: dict[str, dict[str, None]] = {}
    for rule in rules:
        for anchor in rule.anchors:
            by_shape.setdefault(anchor.shape, {})[anchor.literal] = None
    return {shape: tuple(literals) for shape, literals in by_shape.items()}


def _positions(shape: str, literal: str) -> list[int]:
    positions: list[int] = []
    find = shape.find
    at = find(literal)
    while at != -1:
        positions.append(at)
        at = find(literal, at + 1)
    return positions


def _parts(literals: Sequence[str]) -> tuple[tuple[str, ...], dict[str, tuple[str, int]]]:
    """The literals shortest first, and for each that contains a shorter one (its *part*) that
    part and where it sits in it: the literal's positions can then be read off the part's
    instead of searched for again ("this chat" off "chat", "monday" off "day")."""
    parts: dict[str, tuple[str, int]] = {}
    for literal in literals:
        shorter = [other for other in literals if len(other) < len(literal) and other in literal]
        if shorter:
            part = max(shorter, key=len)
            parts[literal] = (part, literal.index(part))
    return tuple(sorted(literals, key=len)), parts


class Scanner:
    """The text rules, in order, with their anchors grouped by shape."""

    def __init__(self, rules: Sequence[TextRule]) -> None:
        self.rules = tuple(rules)
        self.anchors = anchors_by_shape(self.rules)
        # per shape: what to search for, shortest first (a part before what contains it)
        self._order = {shape: _parts(literals) for shape, literals in self.anchors.items()}

    def _anchor_positions(self, shapes: dict[str, str]) -> dict[tuple[str, str], list[int]]:
        """Every anchor's positions in its shape: searched for, or, when the anchor contains a
        shorter one that is rare in this text, checked only where that one occurs."""
        found: dict[tuple[str, str], list[int]] = {}
        for shape_name, (literals, parts) in self._order.items():
            shape = shapes[shape_name]
            # below this many occurrences of the part, checking each beats one more search
            rare = len(shape) // 64
            for literal in literals:
                part = parts.get(literal)
                if part is not None and len(found[shape_name, part[0]]) < rare:
                    starts_with, offset = shape.startswith, part[1]
                    found[shape_name, literal] = [
                        at - offset
                        for at in found[shape_name, part[0]]
                        if at >= offset and starts_with(literal, at - offset)
                    ]
                else:
                    found[shape_name, literal] = _positions(shape, literal)
        return found

    def scan(self, text: str, layer: str | None, path: str, out: list[Finding]) -> None:
        """Append a finding for each match in `text`; earlier rules win an overlap."""
        if not text:
            return
        # Shapes are built on a one-byte copy (non-ASCII characters become "?", one for one, so
        # positions stay the same): str.translate is fast only on ASCII strings.
        ascii_text = text if text.isascii() else text.encode("ascii", "replace").decode("ascii")
        # gates read the `low` shape, whatever shapes the anchors are in
        shapes = {name: ascii_text.translate(SHAPES[name]) for name in {"low", *self.anchors}}
        low = shapes["low"]
        found_at = self._anchor_positions(shapes)
        taken: set[int] = set()
        found: list[tuple[int, int, TextRule]] = []
        size = len(text)
        for rule in self.rules:
            pattern, confirm = rule.regex, rule.confirm
            spans_value = "value" in pattern.groupindex
            for anchor in rule.anchors:
                gate = anchor.gate
                covered = -1
                for position in found_at[anchor.shape, anchor.literal]:
                    if position < covered or (gate is not None and not gate(low, position)):
                        continue
                    lo = max(0, position - BEFORE)
                    hi = min(size, position + len(anchor.literal) + AFTER)
                    for match in pattern.finditer(text, lo, hi):
                        start, end = match.span()
                        if end > hi - LOOKAHEAD and hi < size:
                            # near the window's end, which a lookahead or `\b` takes for the
                            # end of the text: read this match again with what follows
                            again = pattern.match(text, start, min(size, hi + AFTER))
                            if again is None:
                                continue
                            match, end = again, again.end()
                        covered = max(covered, end)
                        if start == end or start in taken or (end - 1) in taken:
                            continue
                        if confirm is not None and not confirm(match):
                            continue
                        taken.update(range(start, end))
                        if spans_value and match.group("value") is not None:
                            start, end = match.span("value")
                        found.append((start, end, rule))
        if not found:
            return
        found.sort(key=lambda item: (item[0], item[1]))
        line, counted_to = 1, 0
        for start, end, rule in found:
            line += text.count("\n", counted_to, start)
            counted_to = start
            line_start = text.rfind("\n", 0, start) + 1
            out.append(
                Finding(
                    rule=rule.id,
                    severity=rule.severity,
                    layer=layer,
                    line=line,
                    column=start - line_start + 1,
                    end_column=end - line_start + 1,
                    text=text[start:end][:80],
                    fix=rule.fix,
                    path=path,
                )
            )
