"""What `lint` returns: a `Finding` per likely cache-buster, in a `Findings` list that renders as
text and as an escaped HTML table."""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from cachescope._render import mimebundle

__all__ = ["Finding", "Findings"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One likely cache-buster or layout mistake.

    Attributes
    ----------
    rule:
        Rule id, e.g. `timestamp`, `uuid`, `below_minimum` (see `cachescope.lint.rules`).
    severity:
        "error" (changes on every call or breaks caching outright) or "warning" (likely to).
    layer:
        The prompt layer (or "tools" / "history" / the block path when no layer is known).
    line, column, end_column:
        1-based line and column span of the match inside its block (0 for layout findings).
    text:
        The matched text (clipped to 80 characters).
    fix:
        How to fix it, in one sentence.
    path:
        Where the block sits in the request (`system.0`, `messages.3.content.1`).
    """

    rule: str
    severity: str
    layer: str | None
    line: int
    column: int
    end_column: int
    text: str
    fix: str
    path: str = ""

    def __str__(self) -> str:
        where = self.layer or self.path or "request"
        at = f":{self.line}:{self.column}" if self.line else ""
        shown = f" {self.text!r}" if self.text else ""
        return f"{where}{at} {self.severity} [{self.rule}]{shown} — {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Findings(list[Finding]):
    """The findings of one `lint` run; renders as text and as an escaped HTML table."""

    def __str__(self) -> str:
        if not self:
            return "No cache-busters found."
        return "\n".join(str(finding) for finding in self)

    def _repr_html_(self) -> str:
        esc = html.escape
        if not self:
            return "<p>No cache-busters found.</p>"
        rows = "".join(
            "<tr>"
            f"<td>{esc(f.severity)}</td><td><code>{esc(f.rule)}</code></td>"
            f"<td>{esc(f.layer or f.path or '')}</td>"
            f"<td>{f.line}:{f.column}-{f.end_column}</td>"
            f"<td><code>{esc(f.text)}</code></td><td>{esc(f.fix)}</td>"
            "</tr>"
            for f in self
        )
        head = "<tr><th>severity</th><th>rule</th><th>layer</th><th>where</th><th>text</th><th>fix</th></tr>"
        return f'<table class="cachescope-lint">{head}{rows}</table>'

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self) if not cycle else "Findings(...)")

    def _repr_mimebundle_(
        self, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
    ) -> dict[str, str]:
        return mimebundle(str(self), self._repr_html_(), include, exclude)

    def rules(self) -> list[str]:
        return [finding.rule for finding in self]
