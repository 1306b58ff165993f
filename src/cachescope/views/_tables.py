"""Small tables the `%cache` magic shows: the sessions of a kernel."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cachescope._render import mimebundle
from cachescope.views._html import money, percent, table, text_table

__all__ = ["SessionsTable"]

SESSION_COLUMNS = ("session", "calls", "failed", "hit share", "cost", "without caching", "savings")


@dataclass
class SessionsTable:
    """One row per session, from each session's `LedgerSummary`.

    Parameters
    ----------
    summaries:
        Session name → the ledger's summary of that session's calls.
    """

    summaries: Mapping[str, Any]

    def rows(self) -> list[tuple[str, ...]]:
        return [
            (
                name,
                f"{summary.calls:,}",
                f"{summary.failed_calls:,}",
                percent(summary.hit_share),
                money(summary.cost),
                money(summary.cost_without_cache),
                money(summary.savings),
            )
            for name, summary in self.summaries.items()
        ]

    def __str__(self) -> str:
        if not self.summaries:
            return "No sessions yet: run a %%cached_prompt cell first."
        return text_table(SESSION_COLUMNS, self.rows())

    def _repr_mimebundle_(
        self, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
    ) -> dict[str, str]:
        html = (
            table(SESSION_COLUMNS, self.rows(), css_class="cachescope-sessions")
            if self.summaries
            else "<p>No sessions yet: run a <code>%%cached_prompt</code> cell first.</p>"
        )
        bundle = mimebundle(str(self), html, include, exclude)
        return bundle
