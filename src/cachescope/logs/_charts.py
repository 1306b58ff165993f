"""Altair charts of a usage report (altair is imported here only, from the `notebook` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from cachescope.logs._phases import Phase


def require_altair() -> Any:
    try:
        import altair as alt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "cachescope's usage charts need altair: pip install 'cachescope[notebook]'"
        ) from error
    return alt


def token_mix(daily: pd.DataFrame) -> Any:
    """Daily stacked bars of fresh input, 5m writes, 1h writes, cache reads and output."""
    alt = require_altair()
    names = {
        "fresh": "fresh input",
        "write_5m": "5m write",
        "write_1h": "1h write",
        "read": "cache read",
        "output": "output",
    }
    long = (
        daily[list(names)]
        .rename(columns=names)
        .reset_index(names="day")
        .melt(id_vars="day", var_name="kind", value_name="tokens")
    )
    return (
        alt.Chart(long, title="Tokens per day")
        .mark_bar()
        .encode(
            x=alt.X("day:T", title="day (UTC)"),
            y=alt.Y("tokens:Q", stack="zero", title="tokens"),
            color=alt.Color("kind:N", sort=list(names.values()), title=None),
            tooltip=["day:T", "kind:N", alt.Tooltip("tokens:Q", format=",")],
        )
    )


def cumulative_cost(daily: pd.DataFrame) -> Any:
    """Cumulative cost at list prices against the same traffic without caching."""
    alt = require_altair()
    frame = daily[["cost", "cost_without_cache"]].fillna(0).cumsum()
    frame.columns = ["with caching", "without caching"]
    long = frame.reset_index(names="day").melt(id_vars="day", var_name="pricing", value_name="usd")
    return (
        alt.Chart(long, title="Cumulative cost (USD, list prices)")
        .mark_line()
        .encode(
            x=alt.X("day:T", title="day (UTC)"),
            y=alt.Y("usd:Q", title="USD"),
            color=alt.Color("pricing:N", title=None),
            tooltip=["day:T", "pricing:N", alt.Tooltip("usd:Q", format="$,.2f")],
        )
    )


def reads_per_fresh(daily: pd.DataFrame, phases: list[Phase]) -> Any:
    """Cache reads per fresh input token per day (log scale), each phase's level drawn across it."""
    import pandas as pd

    alt = require_altair()
    points = daily[["reads_per_fresh"]].dropna().reset_index(names="day")
    line = (
        alt.Chart(points, title="Cache reads per fresh input token")
        .mark_line(point=True)
        .encode(
            x=alt.X("day:T", title="day (UTC)"),
            y=alt.Y(
                "reads_per_fresh:Q", scale=alt.Scale(type="log"), title="reads per fresh token"
            ),
            tooltip=["day:T", alt.Tooltip("reads_per_fresh:Q", format=",.0f")],
        )
    )
    levels = pd.DataFrame(
        [
            {"start": p.start, "end": p.end, "level": p.level, "phase": f"phase {i + 1}"}
            for i, p in enumerate(phases)
        ]
    )
    if levels.empty:
        return line
    rules = (
        alt.Chart(levels)
        .mark_rule(strokeDash=[6, 3], color="firebrick")
        .encode(
            x="start:T",
            x2="end:T",
            y="level:Q",
            tooltip=["phase:N", "start:T", "end:T", alt.Tooltip("level:Q", format=",.0f")],
        )
    )
    return line + rules
