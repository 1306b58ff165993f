"""Small helpers shared by the HTML renderings: escaping and number formats.

Prompts and replies are untrusted text, so every value that reaches HTML goes through `esc`, which
escapes `<`, `>`, `&` and both quote characters (safe in element content and in quoted attributes).
Nothing in this package builds HTML from a value without it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

__all__ = ["esc", "money", "percent", "table", "tokens"]


def esc(value: object) -> str:
    """`value` as text, escaped for HTML content and quoted attributes."""
    return html.escape(str(value), quote=True)


def money(value: float | None) -> str:
    """US dollars with four decimals, or "unknown" when the price is not known."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unknown"
    return f"${value:,.4f}"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def tokens(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    css_class: str,
    numeric_from: int = 1,
) -> str:
    """An escaped HTML table; columns from `numeric_from` on are right-aligned."""

    def cell(tag: str, index: int, value: object) -> str:
        align = "right" if index >= numeric_from else "left"
        return f"<{tag} style='text-align:{align};padding:1px 6px'>{esc(value)}</{tag}>"

    head = "".join(cell("th", i, name) for i, name in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", i, value) for i, value in enumerate(row)) + "</tr>"
        for row in rows
    )
    return (
        f"<table class='{esc(css_class)}' style='border-collapse:collapse;font-size:12px'>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def text_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """The same table as aligned plain text."""
    cells = [[str(v) for v in header], *[[str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            value.ljust(widths[i]) if i == 0 else value.rjust(widths[i])
            for i, value in enumerate(row)
        )
        for row in cells
    )
