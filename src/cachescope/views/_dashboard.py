"""The live dashboard of one session: ipywidgets, created once and updated in place.

It shows the totals so far, a per-call usage table (the newest calls), the latest prefix break
(the stability diff, with the changed span highlighted) and the two charts of `_charts`, drawn by
altair's `JupyterChart` with its JavaScript bundled offline (no internet needed). An update touches
only what changed, under `hold_sync`, and charts only the bucketed points, so it stays fast at
10,000 calls.

Where widgets cannot render (GitHub, nbviewer, a closed kernel) the display carries a PNG of the
charts and a text summary next to the widget view.
"""

from __future__ import annotations

import base64
import contextlib
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cachescope.views._charts import SessionSeries, chart_png, chart_spec
from cachescope.views._html import esc, money, percent, table, tokens
from cachescope.views._snapshot import mimebundle_of

if TYPE_CHECKING:  # pragma: no cover
    from cachescope.ledger import CallRecord

__all__ = ["CALL_COLUMNS", "SessionDashboard", "call_row"]

CALL_COLUMNS = (
    "#",
    "time",
    "fresh",
    "write 5m",
    "write 1h",
    "read",
    "output",
    "hit share",
    "cost",
    "savings",
    "note",
)


def call_row(number: int, record: CallRecord, diff: Any = None) -> tuple[str, ...]:
    """One row of the usage table, from the record (and the call's diff for the note)."""
    if not record.ok:
        note = f"{record.error_type or 'error'}" + (
            f" {record.error_status}" if record.error_status else ""
        )
    elif diff is not None and getattr(diff, "broken", False):
        note = str(getattr(diff, "cause", None) or "prefix broke")
    else:
        note = record.cache_miss_reason or ""
    return (
        str(number),
        record.time[11:19],
        tokens(record.input_tokens),
        tokens(record.ephemeral_5m_input_tokens),
        tokens(record.ephemeral_1h_input_tokens),
        tokens(record.cache_read_input_tokens),
        tokens(record.output_tokens),
        percent(record.hit_share),
        money(record.cost),
        money(record.savings),
        note,
    )


class SessionDashboard:
    """The live dashboard of session `session`.

    Parameters
    ----------
    session:
        The session's name (shown in the title; escaped).
    records:
        Calls the session already made, oldest first.
    max_rows:
        How many of the newest calls the usage table lists.
    static_chart:
        Add a PNG of the charts to the display, for frontends that cannot render widgets.

    Attributes
    ----------
    widget:
        The `ipywidgets.VBox` to display (displaying the dashboard itself adds the PNG fallback).
    """

    def __init__(
        self,
        session: str,
        records: Iterable[CallRecord] = (),
        *,
        max_rows: int = 20,
        static_chart: bool = True,
    ) -> None:
        import altair as alt
        import ipywidgets as widgets

        alt.JupyterChart.enable_offline()
        self.session = session
        self.static_chart = static_chart
        self.series = SessionSeries()
        self._rows: deque[tuple[str, ...]] = deque(maxlen=max_rows)
        self._latest_break: tuple[int, Any] | None = None
        self.header = widgets.HTML()
        self.table = widgets.HTML()
        self.prefix_break = widgets.HTML()
        self.chart = alt.JupyterChart(alt.Chart().mark_point())
        self.widget = widgets.VBox([self.header, self.table, self.prefix_break, self.chart])
        self.widget.add_class("cachescope-dashboard")
        for record in records:
            self._add(record, None)
        self._render()

    # ---- updating ------------------------------------------------------------------------
    def _add(self, record: CallRecord, diff: Any) -> None:
        self.series.add(record)
        self._rows.append(call_row(len(self.series), record, diff))
        if diff is not None and getattr(diff, "broken", False):
            self._latest_break = (len(self.series), diff)

    def add(self, record: CallRecord, diff: Any = None) -> None:
        """Show one more call (and its stability diff against the previous one)."""
        self._add(record, diff)
        self._render(break_changed=diff is not None and getattr(diff, "broken", False))

    def extend(self, records: Iterable[CallRecord]) -> None:
        """Show several more calls with one redraw."""
        for record in records:
            self._add(record, None)
        self._render()

    def _render(self, *, break_changed: bool = True) -> None:
        changed = [self.header, self.table, self.chart]
        if break_changed:
            changed.append(self.prefix_break)
        with contextlib.ExitStack() as stack:
            for widget in changed:
                stack.enter_context(widget.hold_sync())
            self.header.value = self._header_html()
            self.table.value = self._table_html()
            if break_changed:
                self.prefix_break.value = self._break_html()
            self.chart.spec = chart_spec(self.series.points())

    # ---- pieces ----------------------------------------------------------------------------
    def totals(self) -> dict[str, Any]:
        """Totals so far, read off the running sums of the ledger's figures."""
        points = self.series.points(1)
        if not points:
            return {"calls": 0, "cost": 0.0, "cost_without_cache": 0.0, "hit_share": None}
        last = points[-1]
        return {
            "calls": len(self.series),
            "cost": last["with caching"],
            "cost_without_cache": last["without caching"],
            "hit_share": last["hit share"],
        }

    def _header_html(self) -> str:
        totals = self.totals()
        saved = totals["cost_without_cache"] - totals["cost"]
        return (
            "<div class='cachescope-dashboard-title' style='font-family:sans-serif'>"
            f"<b>cachescope · session {esc(repr(self.session))}</b> · "
            f"{totals['calls']:,} calls · hit share {esc(percent(totals['hit_share']))} · "
            f"cost {esc(money(totals['cost']))} · without caching "
            f"{esc(money(totals['cost_without_cache']))} · saved {esc(money(saved))}</div>"
        )

    def _table_html(self) -> str:
        shown = len(self._rows)
        caption = (
            f"<div style='font-size:11px;opacity:0.7'>newest {shown} of "
            f"{len(self.series):,} calls</div>"
            if shown < len(self.series)
            else ""
        )
        return caption + table(CALL_COLUMNS, list(self._rows), css_class="cachescope-calls")

    def _break_html(self) -> str:
        if self._latest_break is None:
            return "<div class='cachescope-break'><b>latest prefix break</b>: none so far</div>"
        number, diff = self._latest_break
        body = mimebundle_of(diff).get("text/html") or f"<pre>{esc(str(diff))}</pre>"
        return (
            f"<div class='cachescope-break'><b>latest prefix break</b> (call {number}){body}</div>"
        )

    def text(self) -> str:
        totals = self.totals()
        return (
            f"cachescope dashboard · session {self.session!r} · {totals['calls']:,} calls · "
            f"hit share {percent(totals['hit_share'])} · cost {money(totals['cost'])} · "
            f"without caching {money(totals['cost_without_cache'])}"
        )

    def png(self) -> bytes:
        """The charts as a PNG (vl-convert, offline)."""
        return chart_png(chart_spec(self.series.points()))

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = self.text()
        if self.static_chart and len(self.series):
            bundle["image/png"] = base64.b64encode(self.png()).decode("ascii")
        return bundle

    def close(self) -> None:
        """Close every widget of the dashboard (front-end views go away)."""
        for widget in (self.header, self.table, self.prefix_break, self.chart, self.widget):
            widget.close()
