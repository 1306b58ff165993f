"""Charts of one session: cumulative cost with vs without caching, and hit share over calls.

Charts never draw one mark per call. `SessionSeries` keeps running totals as records arrive (O(1)
per call) and `points()` cuts them into at most `MAX_POINTS` buckets, so a chart update at 10,000
calls moves a few hundred numbers, not a 10,000-row DataFrame. The running totals are sums of the
ledger's own figures (cost, cost without cache, read and prompt tokens); nothing is re-priced here.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from cachescope.ledger import CallRecord

__all__ = ["MAX_POINTS", "SessionSeries", "chart_png", "chart_spec", "chart_svg"]

#: Most points a chart gets; more calls are bucketed.
MAX_POINTS = 200
DATASET = "cachescope_series"


def _number(value: float | None) -> float:
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else value


class SessionSeries:
    """Running totals of a session's calls, ready to be charted."""

    def __init__(self, records: Iterable[CallRecord] = ()) -> None:
        self._cost: list[float] = []
        self._without: list[float] = []
        self._read: list[int] = []
        self._prompt: list[int] = []
        self.extend(records)

    def add(self, record: CallRecord) -> None:
        """Add one call (O(1))."""
        last = len(self._cost) - 1
        self._cost.append((self._cost[last] if last >= 0 else 0.0) + _number(record.cost))
        self._without.append(
            (self._without[last] if last >= 0 else 0.0) + _number(record.cost_without_cache)
        )
        self._read.append((self._read[last] if last >= 0 else 0) + record.cache_read_input_tokens)
        self._prompt.append((self._prompt[last] if last >= 0 else 0) + record.prompt_tokens)

    def extend(self, records: Iterable[CallRecord]) -> None:
        for record in records:
            self.add(record)

    def __len__(self) -> int:
        return len(self._cost)

    def points(self, max_points: int = MAX_POINTS) -> list[dict[str, Any]]:
        """At most `max_points` rows: call number, cumulative costs, hit share of the bucket.

        A bucket covers calls `first..call`; its hit share is read / prompt tokens over those
        calls (token-weighted, so a bucket of many calls reads like the calls themselves).
        """
        count = len(self._cost)
        if count == 0:
            return []
        buckets = min(count, max_points)
        ends = [((i + 1) * count) // buckets - 1 for i in range(buckets)]
        rows: list[dict[str, Any]] = []
        start = 0
        for end in ends:
            read = self._read[end] - (self._read[start - 1] if start else 0)
            prompt = self._prompt[end] - (self._prompt[start - 1] if start else 0)
            rows.append(
                {
                    "call": end + 1,
                    "first": start + 1,
                    "with caching": round(self._cost[end], 6),
                    "without caching": round(self._without[end], 6),
                    "hit share": read / prompt if prompt else None,
                }
            )
            start = end + 1
        return rows


_TEMPLATE: dict[str, Any] | None = None


def _template() -> dict[str, Any]:
    """The chart's Vega-Lite spec without data, built once with altair."""
    global _TEMPLATE
    if _TEMPLATE is None:
        import altair as alt

        data = alt.NamedData(name=DATASET)
        cost = (
            alt.Chart(data, title="Cumulative cost (USD)", width=320, height=180)
            .transform_fold(["with caching", "without caching"], as_=["kind", "usd"])
            .mark_line(point=False)
            .encode(
                x=alt.X("call:Q", title="call", axis=alt.Axis(format="d", tickMinStep=1)),
                y=alt.Y("usd:Q", title="USD"),
                color=alt.Color(
                    "kind:N",
                    title=None,
                    scale=alt.Scale(
                        domain=["with caching", "without caching"], range=["#1b9e77", "#d95f02"]
                    ),
                    legend=alt.Legend(orient="bottom"),
                ),
                tooltip=["call:Q", "kind:N", alt.Tooltip("usd:Q", format="$.4f")],
            )
        )
        hits = (
            alt.Chart(data, title="Hit share per call", width=320, height=180)
            .mark_line(point=True, color="#7570b3")
            .encode(
                x=alt.X("call:Q", title="call", axis=alt.Axis(format="d", tickMinStep=1)),
                y=alt.Y(
                    "hit share:Q",
                    title="read / prompt",
                    axis=alt.Axis(format="%"),
                    scale=alt.Scale(domain=[0, 1]),
                ),
                tooltip=["first:Q", "call:Q", alt.Tooltip("hit share:Q", format=".1%")],
            )
        )
        spec: dict[str, Any] = alt.hconcat(cost, hits).to_dict()
        spec.pop("datasets", None)
        _TEMPLATE = spec
    return _TEMPLATE


def chart_spec(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The Vega-Lite spec of both charts with `points` inlined as a named dataset."""
    spec = dict(_template())
    spec["datasets"] = {DATASET: points}
    return spec


def chart_png(spec: dict[str, Any], *, scale: float = 1.0) -> bytes:
    """A PNG of `spec` (for frontends without widgets), rendered offline by vl-convert."""
    import vl_convert as vlc

    png: bytes = vlc.vegalite_to_png(copy.deepcopy(spec), scale=scale)
    return png


def chart_svg(spec: dict[str, Any]) -> str:
    """An SVG of `spec`, rendered offline by vl-convert."""
    import vl_convert as vlc

    svg: str = vlc.vegalite_to_svg(copy.deepcopy(spec))
    return svg
