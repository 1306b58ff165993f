"""What replays give back: per-call results, a scenario total, the side-by-side table and the TTL break-even."""

from __future__ import annotations

import html
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cachescope import pricing
from cachescope._render import mimebundle
from cachescope.whatif._calls import CAVEAT, _counts

# ----------------------------------------------------------------------------------------------
# Results


@dataclass
class CallResult:
    """Usage, cost and time to first token of one replayed (or recorded) request."""

    time: float
    kind: str  # "call", "prewarm" or "keepalive"
    model: str
    input_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cache_read_tokens: int
    output_tokens: int
    cost: float | None = None
    cost_without_cache: float | None = None
    ttft_ms: float | None = None

    def counts(self) -> pricing.UsageCounts:
        """This request's usage, in the form `pricing` bills."""
        return _counts(self)

    @property
    def cache_write_tokens(self) -> int:
        return self.counts().cache_write_tokens

    @property
    def prompt_tokens(self) -> int:
        return self.counts().prompt_tokens


def _sum_or_none(values: Iterable[float | None]) -> float | None:
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value
    return total


@dataclass
class ReplayResult:
    """One scenario: every request it sent (calls, pre-warms, keep-alive pings)."""

    name: str
    options: dict[str, Any]
    rows: list[CallResult] = field(default_factory=list)

    @property
    def calls(self) -> list[CallResult]:
        return [row for row in self.rows if row.kind == "call"]

    @property
    def cost(self) -> float | None:
        return _sum_or_none(row.cost for row in self.rows)

    @property
    def cost_without_cache(self) -> float | None:
        return _sum_or_none(row.cost_without_cache for row in self.calls)

    @property
    def hit_share(self) -> float | None:
        """Cache reads / prompt tokens over the user's calls."""
        prompt = sum(row.prompt_tokens for row in self.calls)
        return sum(row.cache_read_tokens for row in self.calls) / prompt if prompt else None

    @property
    def extra_requests(self) -> int:
        return len(self.rows) - len(self.calls)

    def ttft_ms(self, quantile: float = 0.5) -> float | None:
        values = sorted(row.ttft_ms for row in self.calls if row.ttft_ms is not None)
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        return (
            float(
                statistics.quantiles(values, n=100, method="inclusive")[round(quantile * 100) - 1]
            )
            if 0 < quantile < 1
            else values[-1]
        )

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "time": pd.Timestamp(row.time, unit="s", tz="UTC"),
                    "kind": row.kind,
                    "model": row.model,
                    "fresh": row.input_tokens,
                    "write_5m": row.cache_write_5m_tokens,
                    "write_1h": row.cache_write_1h_tokens,
                    "read": row.cache_read_tokens,
                    "output": row.output_tokens,
                    "cost": row.cost,
                    "ttft_ms": row.ttft_ms,
                }
                for row in self.rows
            ]
        )


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.4f}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


@dataclass
class WhatIf:
    """The original session and its replays, side by side."""

    session: str
    results: list[ReplayResult]

    def __getitem__(self, name: str) -> ReplayResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(
            f"No scenario {name!r} (scenarios: {', '.join(r.name for r in self.results)})."
        )

    def rows(self) -> list[dict[str, Any]]:
        base = self.results[0].cost
        table = []
        for result in self.results:
            cost = result.cost
            table.append(
                {
                    "scenario": result.name,
                    "cost": cost,
                    "vs_original": (cost - base)
                    if (cost is not None and base is not None)
                    else None,
                    "cost_without_cache": result.cost_without_cache,
                    "hit_share": result.hit_share,
                    "ttft_p50_ms": result.ttft_ms(0.5),
                    "ttft_p90_ms": result.ttft_ms(0.9),
                    "extra_requests": result.extra_requests,
                }
            )
        return table

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows()).set_index("scenario")

    def to_dict(self) -> dict[str, Any]:
        return {"session": self.session, "scenarios": self.rows(), "caveat": CAVEAT}

    def chart(self) -> Any:
        """An altair bar chart of cost per scenario (needs the `notebook` extra)."""
        try:
            import altair as alt
            import pandas as pd
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError(
                "Charts need the notebook extra: pip install 'cachescope[notebook]'"
            ) from error
        frame = pd.DataFrame(
            [
                {
                    "scenario": row["scenario"],
                    "cost": row["cost"] or 0.0,
                    "hit share": row["hit_share"] or 0.0,
                }
                for row in self.rows()
            ]
        )
        return (
            alt.Chart(frame, title=f"What-if: {self.session}")
            .mark_bar()
            .encode(
                x=alt.X("cost:Q", title="cost (USD)"),
                y=alt.Y("scenario:N", sort=None, title=None),
                color=alt.Color("hit share:Q", scale=alt.Scale(scheme="greens", domain=[0, 1])),
                tooltip=[
                    "scenario",
                    alt.Tooltip("cost:Q", format="$.4f"),
                    alt.Tooltip("hit share:Q", format=".1%"),
                ],
            )
        )

    def __str__(self) -> str:
        header = f"{'scenario':<28} {'cost':>11} {'vs original':>12} {'hit share':>9} {'TTFT p50':>10} {'extra':>5}"
        lines = [f"What-if replays of {self.session!r}", header, "-" * len(header)]
        for row in self.rows():
            delta = row["vs_original"]
            lines.append(
                f"{row['scenario'][:28]:<28} {_money(row['cost']):>11} "
                f"{('' if delta is None else f'{delta:+,.4f}'):>12} {_percent(row['hit_share']):>9} "
                f"{_ms(row['ttft_p50_ms']):>10} {row['extra_requests']:>5}"
            )
        lines.append(CAVEAT)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cells = []
        for row in self.rows():
            delta = row["vs_original"]
            cells.append(
                "<tr>"
                f"<td>{html.escape(row['scenario'])}</td><td>{_money(row['cost'])}</td>"
                f"<td>{'' if delta is None else html.escape(f'{delta:+,.4f}')}</td>"
                f"<td>{_percent(row['hit_share'])}</td><td>{_ms(row['ttft_p50_ms'])}</td>"
                f"<td>{row['extra_requests']}</td></tr>"
            )
        return (
            f"<div class='cachescope-whatif'><b>What-if replays of {html.escape(self.session)}</b>"
            "<table><thead><tr><th>scenario</th><th>cost</th><th>vs original</th><th>hit share</th>"
            "<th>TTFT p50</th><th>extra requests</th></tr></thead><tbody>"
            + "".join(cells)
            + f"</tbody></table><p><small>{html.escape(CAVEAT)}</small></p></div>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return mimebundle(str(self), self._repr_html_(), include, exclude)


@dataclass
class BreakEven:
    """1h vs 5m for a session's gaps.

    With a 5-minute TTL every gap longer than 5 minutes rewrites the prefix (a 5m write instead of
    a read); with 1h only gaps beyond an hour do, but every write costs the 1h rate. So 1h wins when
    `medium_gaps × (write_5m − read) > (1 + long_gaps) × (write_1h − write_5m)`.
    """

    model: str
    short_gaps: int
    medium_gaps: int
    long_gaps: int
    cost_5m: float | None
    cost_1h: float | None
    write_5m_rate: float | None
    write_1h_rate: float | None
    read_rate: float | None

    @property
    def recommended(self) -> str | None:
        if self.cost_5m is None or self.cost_1h is None:
            return None
        return "1h" if self.cost_1h < self.cost_5m else "5m"

    @property
    def medium_gaps_needed(self) -> float | None:
        """Gaps of 5–60 minutes per write needed for 1h to pay off (by the rule above)."""
        return pricing.one_hour_break_even(
            self.write_5m_rate, self.write_1h_rate, self.read_rate, self.long_gaps
        )

    def __str__(self) -> str:
        needed = self.medium_gaps_needed
        rule = "" if needed is None else f"; 1h pays off from {needed:.2f} gaps of 5–60 min"
        return (
            f"Gaps: {self.short_gaps} ≤ 5 min, {self.medium_gaps} of 5–60 min, {self.long_gaps} > 1 h{rule}. "
            f"Simulated cost: 5m {_money(self.cost_5m)}, 1h {_money(self.cost_1h)} → "
            f"{self.recommended or 'unknown'} is cheaper."
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return mimebundle(str(self), f"<p>{html.escape(str(self))}</p>", include, exclude)
