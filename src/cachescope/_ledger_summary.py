"""What a set of calls added up to: tokens by kind, cost with and without the cache, savings,
and cache writes that no later call read back. Rendered as text and HTML from one place."""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cachescope._render import mimebundle

if TYPE_CHECKING:  # pragma: no cover
    from cachescope.ledger import CallRecord


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _format_money(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unknown"
    return f"${value:,.4f}"


def _format_ratio(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:.1%}" if percent else f"{value:,.2f}"


@dataclass(frozen=True)
class LedgerSummary:
    """Totals over a ledger's calls; renders as text and as escaped HTML.

    `hit_share` = read / (fresh + write + read); `reads_per_fresh_token` = read / fresh;
    `read_write_ratio` = read / write; `savings_factor` = cost without cache / cost. Costs leave out
    calls whose price is unknown (`calls_with_unknown_cost` counts them). `unread_write_tokens` are
    cache writes that no later call of the ledger read back: a later call of the same model shares
    the written prefix (same cumulative hash at the write's breakpoint) and its read reaches the
    end of that write.
    """

    calls: int
    failed_calls: int
    input_tokens: int
    cache_write_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cache_read_tokens: int
    output_tokens: int
    cost: float
    cost_without_cache: float
    savings: float
    calls_with_unknown_cost: int
    unread_writes: int
    unread_write_tokens: int

    @property
    def hit_share(self) -> float | None:
        return ratio(
            self.cache_read_tokens,
            self.input_tokens + self.cache_write_tokens + self.cache_read_tokens,
        )

    @property
    def reads_per_fresh_token(self) -> float | None:
        return ratio(self.cache_read_tokens, self.input_tokens)

    @property
    def read_write_ratio(self) -> float | None:
        return ratio(self.cache_read_tokens, self.cache_write_tokens)

    @property
    def savings_factor(self) -> float | None:
        return ratio(self.cost_without_cache, self.cost)

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs, the one source of both renderings."""
        rows = [
            ("calls", f"{self.calls:,} ({self.failed_calls:,} failed)"),
            ("hit share (read / (fresh + write + read))", _format_ratio(self.hit_share, True)),
            ("reads per fresh token", _format_ratio(self.reads_per_fresh_token)),
            ("read : write", _format_ratio(self.read_write_ratio)),
            (
                "tokens fresh / written / read / output",
                f"{self.input_tokens:,} / {self.cache_write_tokens:,} "
                f"(5m {self.cache_write_5m_tokens:,}, 1h {self.cache_write_1h_tokens:,}) / "
                f"{self.cache_read_tokens:,} / {self.output_tokens:,}",
            ),
            ("cost", _format_money(self.cost)),
            ("cost without cache", _format_money(self.cost_without_cache)),
            ("savings", _format_money(self.savings)),
            ("savings factor", _format_ratio(self.savings_factor) + "×"),
            (
                "writes never read again",
                f"{self.unread_writes:,} calls, {self.unread_write_tokens:,} tokens",
            ),
        ]
        if self.calls_with_unknown_cost:
            rows.append(("calls with unknown price", f"{self.calls_with_unknown_cost:,}"))
        return rows

    def __str__(self) -> str:
        width = max(len(label) for label, _ in self.rows())
        lines = ["Ledger summary"] + [
            f"  {label:<{width}}  {value}" for label, value in self.rows()
        ]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><th style='text-align:left'>{html.escape(label)}</th>"
            f"<td style='text-align:right'>{html.escape(value)}</td></tr>"
            for label, value in self.rows()
        )
        return f"<table class='cachescope-summary'><caption>Ledger summary</caption>{cells}</table>"

    def _repr_mimebundle_(
        self, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
    ) -> dict[str, str]:
        return mimebundle(str(self), self._repr_html_(), include, exclude)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name in ("hit_share", "reads_per_fresh_token", "read_write_ratio", "savings_factor"):
            out[name] = getattr(self, name)
        return out


def _unread_writes(records: list[CallRecord]) -> tuple[int, int]:
    """(calls, tokens) of cache writes that no later call read back (see `LedgerSummary`)."""
    pending: dict[tuple[str, str], list[CallRecord]] = {}
    for record in sorted(records, key=lambda r: r.time):
        if record.cache_read_input_tokens:
            for block in record.blocks:
                key = (record.model, str(block.get("prefix")))
                writers = pending.get(key)
                if not writers:
                    continue
                still = [
                    w
                    for w in writers
                    if record.cache_read_input_tokens
                    < w.cache_read_input_tokens + w.cache_creation_input_tokens
                ]
                if still:
                    pending[key] = still
                else:
                    del pending[key]
        if record.cache_creation_input_tokens:
            marked = [b for b in record.blocks if b.get("breakpoint")]
            if marked:
                pending.setdefault((record.model, str(marked[-1].get("prefix"))), []).append(record)
    unread = {id(w): w for writers in pending.values() for w in writers}
    return len(unread), sum(w.cache_creation_input_tokens for w in unread.values())


def summarize(records: Iterable[CallRecord]) -> LedgerSummary:
    """A `LedgerSummary` over any records."""
    records = list(records)
    costs = [r for r in records if r.cost is not None and r.cost_without_cache is not None]
    unread_calls, unread_tokens = _unread_writes(records)
    return LedgerSummary(
        calls=len(records),
        failed_calls=sum(1 for r in records if not r.ok),
        input_tokens=sum(r.input_tokens for r in records),
        cache_write_tokens=sum(r.cache_creation_input_tokens for r in records),
        cache_write_5m_tokens=sum(r.ephemeral_5m_input_tokens for r in records),
        cache_write_1h_tokens=sum(r.ephemeral_1h_input_tokens for r in records),
        cache_read_tokens=sum(r.cache_read_input_tokens for r in records),
        output_tokens=sum(r.output_tokens for r in records),
        cost=sum(r.cost or 0.0 for r in costs),
        cost_without_cache=sum(r.cost_without_cache or 0.0 for r in costs),
        savings=sum((r.cost_without_cache or 0.0) - (r.cost or 0.0) for r in costs),
        calls_with_unknown_cost=sum(1 for r in records if r.ok and r.cost is None),
        unread_writes=unread_calls,
        unread_write_tokens=unread_tokens,
    )
