"""`PrefixDiff`, what `compare` returns, and how it shows the changed characters of one block.

It renders as text and as escaped HTML from one place (`_render.mimebundle`); `change_window` finds
where two texts first differ by slice comparisons (no character loop) and cuts the changed line
to a short window around the change.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cachescope._render import mimebundle

#: Characters of context shown on each side of a change.
WINDOW = 60


@dataclass(frozen=True)
class PrefixDiff:
    """Where `b` stopped matching the cached prefix of `a`, why, and what that costs.

    Attributes
    ----------
    broken:
        True when `b` cannot read everything `a` cached (a changed block or setting, truncated
        history, an expired TTL, or a prefix below the model's minimum).
    cause:
        The API's diagnostics vocabulary: `model_changed`, `tools_changed`, `system_changed`,
        `messages_changed` (history edited or truncated — appending is not a break),
        `<setting>_changed` (e.g. `tool_choice_changed`), or `expired` / `below_minimum` when
        nothing changed but time or length explain the miss; None when nothing broke.
    index, level, layer, path, kind:
        The first divergent position of `a` (cache order) and what it is.
    offset, line, column:
        Character offset (0-based) and line and column (1-based) of the first changed character
        inside that block; None when a text is not at hand (stored fingerprints) or the block was
        removed.
    old_window, new_window:
        The changed line of `a` and of `b`, clipped to a short window around the change;
        `old_span` / `new_span` are (start, end) of the changed characters inside each window.
    tokens_lost:
        Tokens that `b` can no longer read from cache because of the change: tokens of `a`'s
        positions after the last cache entry of `a` that lies strictly before the divergent
        position, up to and including `a`'s last cache entry. A cache entry is a breakpoint
        (explicit or automatic) whose prefix reaches the model's minimum length. 0 when the
        divergence comes after `a`'s last entry, and when nothing diverged.
        The figure assumes `b` has a breakpoint within 20 positions after the surviving entry;
        `beyond_lookback` says when it has not.
    tokens_expired:
        Further tokens that cannot be read because their entries' TTL passed between the calls.
    expired, below_minimum:
        Flags, independent of the cause: the TTL of `a`'s last entry passed before `b` was sent;
        `a`'s prefix up to its last breakpoint is shorter than the model's minimum.
    server_reason, agrees:
        The server's `cache_miss_reason` type when known, and whether it matches `cause` (None
        when the server could not tell).
    """

    broken: bool
    cause: str | None
    index: int | None = None
    level: str | None = None
    layer: str | None = None
    path: str | None = None
    kind: str | None = None
    setting: str | None = None
    offset: int | None = None
    line: int | None = None
    column: int | None = None
    old_window: str | None = None
    new_window: str | None = None
    old_span: tuple[int, int] | None = None
    new_span: tuple[int, int] | None = None
    appended_blocks: int = 0
    tokens_lost: int = 0
    tokens_expired: int = 0
    expired: bool = False
    below_minimum: bool = False
    beyond_lookback: bool = False
    gap_seconds: float | None = None
    ttl: str | None = None
    model: str | None = None
    minimum: int | None = None
    server_reason: str | None = None
    server_missed_tokens: int | None = None
    agrees: bool | None = None

    # -- presentation --------------------------------------------------------------------------

    def summary(self) -> str:
        """One sentence: what broke, where, and what it cost."""
        if not self.broken:
            if self.appended_blocks:
                return f"Prefix intact: {self.appended_blocks} block(s) appended, nothing lost."
            return "Prefix intact: nothing changed before the last breakpoint."
        where = []
        if self.layer:
            where.append(f"layer {self.layer!r}")
        if self.path:
            where.append(self.path)
        if self.line is not None:
            where.append(f"line {self.line}, column {self.column}")
        place = f" in {', '.join(where)}" if where else ""
        if self.cause in ("expired", "below_minimum"):
            if self.cause == "expired":
                return f"expired: {self.tokens_expired:,} cached tokens outlived their TTL."
            return "below_minimum: the prefix was too short to be cached, so nothing was read."
        text = f"{self.cause}{place}: {self.tokens_lost:,} tokens can no longer be read from cache"
        if self.tokens_expired:
            text += f", {self.tokens_expired:,} more expired"
        return text + "."

    def _notes(self) -> list[str]:
        notes: list[str] = []
        if self.setting:
            notes.append(f"setting {self.setting!r} differs")
        if self.expired:
            gap = f"{self.gap_seconds:.0f} s" if self.gap_seconds is not None else "the gap"
            notes.append(f"expired: {gap} between the calls exceeds the {self.ttl} TTL")
        if self.below_minimum:
            notes.append(
                f"below_minimum: the cached prefix is under {self.model}'s minimum of "
                f"{self.minimum:,} tokens, so nothing was written"
            )
        if self.beyond_lookback:
            notes.append(
                "the next breakpoint is more than 20 positions after the last cache entry: "
                "the lookback cannot reach it"
            )
        if self.server_reason is not None or self.agrees is not None:
            server = self.server_reason or "no miss"
            if self.agrees is False:
                notes.append(f"server says {server}; cachescope says {self.cause or 'no break'}")
            elif self.agrees is True:
                notes.append(f"server agrees: {server}")
            else:
                notes.append(f"server says {server} (cannot be checked)")
        return notes

    def __str__(self) -> str:
        lines = [self.summary()]
        if self.old_window is not None and self.new_window is not None:
            lines.append(f"  - {self.old_window}")
            lines.append(f"  + {self.new_window}")
            if self.old_span is not None:
                start, end = self.old_span
                lines.append("    " + " " * start + "^" * max(1, end - start))
        lines.extend(f"  note: {note}" for note in self._notes())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<PrefixDiff {self.summary()}>"

    def _repr_html_(self) -> str:
        esc = html.escape
        state = "broken" if self.broken else "intact"
        parts = [
            f'<div class="cachescope-diff cachescope-{state}">',
            f"<p><strong>{esc(self.summary())}</strong></p>",
        ]
        if self.old_window is not None and self.new_window is not None:
            parts.append('<pre style="margin:0">')
            parts.append(
                '<span style="color:#b31d28">- </span>'
                + _marked(self.old_window, self.old_span, "#ffdce0")
            )
            parts.append(
                '\n<span style="color:#22863a">+ </span>'
                + _marked(self.new_window, self.new_span, "#cdffd8")
            )
            parts.append("</pre>")
        notes = self._notes()
        if notes:
            parts.append("<ul>" + "".join(f"<li>{esc(note)}</li>" for note in notes) + "</ul>")
        parts.append("</div>")
        return "".join(parts)

    def _repr_mimebundle_(
        self, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
    ) -> dict[str, str]:
        return mimebundle(str(self), self._repr_html_(), include, exclude)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field plus the summary sentence."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        out["summary"] = self.summary()
        return out


def _marked(window: str, span: tuple[int, int] | None, colour: str) -> str:
    if span is None:
        return html.escape(window)
    start, end = span
    return (
        html.escape(window[:start])
        + f'<mark style="background:{colour}">{html.escape(window[start:end])}</mark>'
        + html.escape(window[end:])
    )


# --------------------------------------------------------------------------------------------
# the changed characters


def _common_prefix_length(a: str, b: str) -> int:
    """Length of the common prefix, by slice comparisons that double while they match."""
    limit = min(len(a), len(b))
    low, step = 0, 4096
    while low < limit:
        high = min(limit, low + step)
        if a[low:high] == b[low:high]:
            low, step = high, step * 2
            continue
        lo, hi = low, high  # the first difference is inside [low, high)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if a[lo:mid] == b[lo:mid]:
                lo = mid
            else:
                hi = mid
        return lo
    return limit


def _common_suffix_length(a: str, b: str, floor: int) -> int:
    """Length of the common suffix that does not reach into the first `floor` characters."""
    lo, hi = 0, max(0, min(len(a), len(b)) - floor)
    if hi and a[len(a) - hi :] == b[len(b) - hi :]:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[len(a) - mid :] == b[len(b) - mid :]:
            lo = mid
        else:
            hi = mid
    return lo


def change_window(
    old: str, new: str
) -> tuple[int, int, int, str, tuple[int, int], str, tuple[int, int]]:
    """Where two texts first differ (offset, 1-based line and column in `old`) and the changed
    line of each with its changed span."""
    offset = _common_prefix_length(old, new)
    line = old.count("\n", 0, offset) + 1
    column = offset - (old.rfind("\n", 0, offset) + 1) + 1
    suffix = _common_suffix_length(old, new, offset)
    old_window, old_span = _line_window(old, offset, len(old) - suffix)
    new_window, new_span = _line_window(new, offset, len(new) - suffix)
    return offset, line, column, old_window, old_span, new_window, new_span


def _line_window(
    text: str, start: int, end: int, window: int = WINDOW
) -> tuple[str, tuple[int, int]]:
    """The line around text[start:end], clipped to `window` characters of context on each side."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    if line_end == -1:
        line_end = len(text)
    # a change that spans lines is shown up to the end of its first line
    first_break = text.find("\n", start, end)
    shown_end = first_break if first_break != -1 else end
    lo = max(line_start, start - window)
    hi = min(line_end, shown_end + window) if first_break == -1 else shown_end
    prefix = "…" if lo > line_start else ""
    suffix = "…" if hi < line_end and first_break == -1 else ""
    shown = prefix + text[lo:hi] + suffix
    span_start = len(prefix) + (start - lo)
    span_end = len(prefix) + (min(shown_end, hi) - lo)
    return shown.replace("\t", " ").replace("\r", " "), (span_start, span_end)
