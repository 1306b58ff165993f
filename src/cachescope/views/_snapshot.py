"""The static per-call snapshot: what one `%%cached_prompt` call did, as text and escaped HTML.

It survives saving and renders on GitHub/nbviewer because it is plain `text/plain` + `text/html`
(no JavaScript). Every figure comes from the `CallRecord` (usage, cost, savings, hit share, the
server's miss reason) or from the objects the stability and lint parts return; nothing is computed
here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cachescope._render import mimebundle
from cachescope.views._html import esc, money, percent, table, text_table, tokens

if TYPE_CHECKING:  # pragma: no cover
    from cachescope.ledger import CallRecord

__all__ = ["CallView", "finding_rows", "mimebundle_of", "usage_rows"]

USAGE_HEADER = ("fresh", "write 5m", "write 1h", "read", "output")


def usage_rows(record: CallRecord) -> list[tuple[str, str]]:
    """(label, value) pairs of a record's usage, the one source of both renderings."""
    return [
        ("fresh", tokens(record.input_tokens)),
        ("write 5m", tokens(record.ephemeral_5m_input_tokens)),
        ("write 1h", tokens(record.ephemeral_1h_input_tokens)),
        ("read", tokens(record.cache_read_input_tokens)),
        ("output", tokens(record.output_tokens)),
    ]


def _field(obj: Any, *names: str) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def finding_rows(
    findings: Iterable[Any], cell_line: Callable[[str | None, int], int | None] | None = None
) -> list[tuple[str, str, str, str, str, str]]:
    """(severity, rule, layer, where, matched text, fix) for each lint finding.

    `where` is the line inside the finding's layer ("line 3:14"), or the line of the notebook
    cell the layer was written in ("cell line 7:14") when `cell_line` (a `Cell.cell_line`) knows it.
    """
    rows = []
    for finding in findings:
        line = _field(finding, "line")
        column = _field(finding, "column", "col")
        in_cell = None
        if line and cell_line is not None:
            in_cell = cell_line(_field(finding, "layer"), int(line))
        if in_cell is not None:
            where = f"cell line {in_cell}"
        else:
            where = "" if not line else f"line {line}"
        where += f":{column}" if where and column else ""
        rows.append(
            (
                str(_field(finding, "severity") or ""),
                str(_field(finding, "rule", "rule_id", "code") or ""),
                str(_field(finding, "layer") or ""),
                where,
                str(_field(finding, "text", "match", "matched") or ""),
                str(_field(finding, "fix", "message") or ""),
            )
        )
    return rows


def mimebundle_of(obj: Any) -> dict[str, Any]:
    """The mime bundle of an object that renders itself (`_repr_mimebundle_` or `_repr_html_`)."""
    method = getattr(obj, "_repr_mimebundle_", None)
    bundle: Any = None
    if callable(method):
        bundle = method(include=None, exclude=None)
        if isinstance(bundle, tuple):
            bundle = bundle[0]
    if not isinstance(bundle, Mapping):
        bundle = {"text/plain": str(obj)}
        html_method = getattr(obj, "_repr_html_", None)
        if callable(html_method):
            bundle["text/html"] = html_method()
    return dict(bundle)


@dataclass
class CallView:
    """One call as the notebook shows it.

    Parameters
    ----------
    record:
        The call's `CallRecord` (for a dry run, a record of the predicted usage); None while the
        reply is still streaming and no usage is known yet.
    reply:
        The reply text so far (the whole reply once the call is done).
    streaming:
        True while the reply is still arriving.
    diff:
        The stability diff against the session's previous call (a `PrefixDiff`), or None.
    diff_note:
        Shown instead of a diff when there is none (e.g. "first call of session 'aura'").
    findings:
        Lint findings of the prompt, as `cachescope.lint` returns them.
    cell_line:
        Maps a finding's (layer, line) to the line of the `%%cached_prompt` cell it came from
        (`Cell.cell_line`), so the findings point into the cell; None shows lines in the layer.
    backend, session, model:
        What answered, in which session, with which model.
    dry_run:
        The call was not sent: usage is the simulator's prediction from the session's cache state.
    """

    record: CallRecord | None = None
    reply: str = ""
    streaming: bool = False
    diff: Any = None
    diff_note: str = ""
    findings: Sequence[Any] = ()
    cell_line: Callable[[str | None, int], int | None] | None = None
    backend: str | None = None
    session: str | None = None
    model: str | None = None
    dry_run: bool = False
    _diff_bundle: dict[str, Any] | None = field(default=None, init=False, repr=False)

    # ---- shared pieces -------------------------------------------------------------------
    def _title(self) -> str:
        parts = ["cachescope"]
        if self.dry_run:
            parts.append("dry run (not sent; usage predicted from the cache state)")
        if self.session:
            parts.append(f"session {self.session!r}")
        model = self.model or (self.record.model if self.record else None)
        if model:
            parts.append(model)
        backend = self.backend or (self.record.backend if self.record else None)
        if backend:
            parts.append(f"backend: {backend}")
        if self.streaming:
            parts.append("streaming…")
        return " · ".join(parts)

    def _money_rows(self) -> list[tuple[str, str]]:
        record = self.record
        if record is None:
            return []
        return [
            ("hit share", percent(record.hit_share)),
            ("cost", money(record.cost)),
            ("without caching", money(record.cost_without_cache)),
            ("savings", money(record.savings)),
        ]

    def _error(self) -> str | None:
        record = self.record
        if record is None or record.ok:
            return None
        status = f" (HTTP {record.error_status})" if record.error_status else ""
        return f"{record.error_type or 'error'}{status}: {record.error_message or ''}".strip()

    def _diff_parts(self) -> dict[str, Any] | None:
        if self.diff is None:
            return None
        if self._diff_bundle is None:
            self._diff_bundle = mimebundle_of(self.diff)
        return self._diff_bundle

    # ---- renderings ----------------------------------------------------------------------
    def text(self) -> str:
        lines = [self._title()]
        error = self._error()
        if error:
            lines.append(f"error: {error}")
        if self.reply or not self.dry_run:
            lines += ["", "reply:", self.reply or "(no reply)"]
        if self.record is not None:
            usage = usage_rows(self.record)
            lines += ["", text_table([u[0] for u in usage], [[u[1] for u in usage]])]
            lines.append("  ".join(f"{label}: {value}" for label, value in self._money_rows()))
            if self.record.cache_miss_reason:
                lines.append(f"server's cache miss reason: {self.record.cache_miss_reason}")
        diff = self._diff_parts()
        if diff is not None:
            lines += ["", "prefix vs previous call:", str(diff.get("text/plain", ""))]
        elif self.diff_note:
            lines += ["", f"prefix vs previous call: {self.diff_note}"]
        rows = finding_rows(self.findings, self.cell_line)
        if rows:
            lines += ["", f"lint: {len(rows)} finding(s)"]
            lines += [f"  [{r[0]}] {r[1]} {r[2]} {r[3]} {r[4]!r} — {r[5]}" for r in rows]
        return "\n".join(lines)

    def html(self) -> str:
        out = [
            "<div class='cachescope-call' style='font-family:sans-serif;font-size:13px'>",
            f"<div class='cachescope-title' style='font-weight:bold'>{esc(self._title())}</div>",
        ]
        error = self._error()
        if error:
            out.append(
                "<div class='cachescope-error' style='color:#b00020'>"
                f"<b>error</b>: {esc(error)}</div>"
            )
        if self.reply or not self.dry_run:
            out.append(
                "<pre class='cachescope-reply' style='white-space:pre-wrap;margin:4px 0;"
                f"padding:4px;background:rgba(127,127,127,0.08)'>{esc(self.reply or '(no reply)')}"
                "</pre>"
            )
        if self.record is not None:
            usage = usage_rows(self.record)
            out.append(
                table([u[0] for u in usage], [[u[1] for u in usage]], css_class="cachescope-usage")
            )
            money_rows = self._money_rows()
            out.append(
                table(
                    [m[0] for m in money_rows],
                    [[m[1] for m in money_rows]],
                    css_class="cachescope-cost",
                    numeric_from=0,
                )
            )
            if self.record.cache_miss_reason:
                out.append(
                    "<div class='cachescope-miss'>server's cache miss reason: "
                    f"<code>{esc(self.record.cache_miss_reason)}</code></div>"
                )
        diff = self._diff_parts()
        if diff is not None:
            body = diff.get("text/html")
            inner = (
                str(body) if body is not None else f"<pre>{esc(diff.get('text/plain', ''))}</pre>"
            )
            out.append(
                "<div class='cachescope-prefix'><b>prefix vs previous call</b>" + inner + "</div>"
            )
        elif self.diff_note:
            out.append(
                "<div class='cachescope-prefix'><b>prefix vs previous call</b>: "
                f"{esc(self.diff_note)}</div>"
            )
        rows = finding_rows(self.findings, self.cell_line)
        if rows:
            out.append(f"<div class='cachescope-lint'><b>lint: {len(rows)} finding(s)</b>")
            out.append(
                table(
                    ("severity", "rule", "layer", "where", "text", "fix"),
                    rows,
                    css_class="cachescope-findings",
                    numeric_from=99,
                )
            )
            out.append("</div>")
        out.append("</div>")
        return "".join(out)

    def metadata(self) -> dict[str, Any]:
        """Output metadata: model, backend, session and usage, for tools reading saved notebooks."""
        record = self.record
        usage: dict[str, Any] | None = None
        if record is not None:
            usage = {
                "input_tokens": record.input_tokens,
                "cache_creation_input_tokens": record.cache_creation_input_tokens,
                "ephemeral_5m_input_tokens": record.ephemeral_5m_input_tokens,
                "ephemeral_1h_input_tokens": record.ephemeral_1h_input_tokens,
                "cache_read_input_tokens": record.cache_read_input_tokens,
                "output_tokens": record.output_tokens,
            }
        return {
            "cachescope": {
                "model": self.model or (record.model if record else None),
                "backend": self.backend or (record.backend if record else None),
                "session": self.session,
                "dry_run": self.dry_run,
                "streaming": self.streaming,
                "ok": record.ok if record else None,
                "usage": usage,
                "hit_share": record.hit_share if record else None,
                "cost": record.cost if record else None,
                "savings": record.savings if record else None,
            }
        }

    def _repr_mimebundle_(
        self, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        return mimebundle(self.text(), self.html(), include, exclude), self.metadata()

    def __str__(self) -> str:
        return self.text()
