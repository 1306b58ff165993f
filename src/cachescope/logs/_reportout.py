"""How a `UsageReport` is shown: the JSON schema's figures (docs/usage-json-schema.md), the
text headline, and the table's cell formats.

- reads per fresh token = reads / fresh; hit share = reads / prompt; read:write = reads / writes.
- caching factor = cost without caching / cost (both from `cachescope.pricing`, summed).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from cachescope.logs._conversations import TOKEN_COLUMNS
from cachescope.logs._loadreport import CAVEAT

if TYPE_CHECKING:
    import pandas as pd

    from cachescope.logs._report import UsageReport


def ratio(top: float, bottom: float) -> float:
    return float(top) / float(bottom) if bottom else math.nan


def metrics(sums: dict[str, Any]) -> dict[str, Any]:
    """The JSON metrics of one group from its sums (reference tool's names first)."""
    writes = sums["write_5m"] + sums["write_1h"]
    prompt = sums["fresh"] + writes + sums["read"]
    return {
        "inputTokens": int(sums["fresh"]),
        "outputTokens": int(sums["output"]),
        "cacheCreationTokens": int(writes),
        "cacheReadTokens": int(sums["read"]),
        "totalTokens": int(prompt + sums["output"]),
        "totalCost": num(sums["cost"]),
        "cacheCreation5mTokens": int(sums["write_5m"]),
        "cacheCreation1hTokens": int(sums["write_1h"]),
        "costWithoutCache": num(sums["cost_without_cache"]),
        "cachingFactor": num(ratio(sums["cost_without_cache"], sums["cost"])),
        "readsPerFreshToken": num(ratio(sums["read"], sums["fresh"])),
        "hitShare": num(ratio(sums["read"], prompt)),
        "readWriteRatio": num(ratio(sums["read"], writes)),
        "unreadWriteTokens": int(sums["unread_write"]),
        "responses": int(sums["responses"]),
        "unpricedResponses": int(sums["unpriced"]),
    }


def num(value: float) -> float | None:
    return (
        None
        if value is None or (isinstance(value, float) and math.isnan(value))
        else round(float(value), 6)
    )


def iso_z(stamps: pd.Series) -> list[str]:
    """`Timestamp.isoformat()` with `Z` for UTC, for a whole column at once."""
    import pandas as pd

    dtype = stamps.dtype
    if (
        isinstance(dtype, pd.DatetimeTZDtype)
        and str(dtype.tz) == "UTC"
        and dtype.unit in ("s", "ms", "us")
    ):
        values = stamps.dt.tz_localize(None).to_numpy().astype("datetime64[us]")
        text = np.datetime_as_string(values, unit="us").tolist()
        whole = (values.astype(np.int64) % 1_000_000 == 0).tolist()
        # isoformat leaves out a zero fraction
        return [t[:19] + "Z" if w else t + "Z" for t, w in zip(text, whole)]
    return [t.isoformat().replace("+00:00", "Z") for t in stamps]


def _tokens(value: Any) -> str:
    return f"{int(value):,}" if value == value else "–"


def _money_cell(value: Any) -> str:
    return f"${value:,.4f}" if value == value else "unknown"


def _ratio_cell(value: Any) -> str:
    return f"{value:,.0f}" if value == value else "–"


def _share_cell(value: Any) -> str:
    return f"{value:.1%}" if value == value else "–"


# One format per column of `UsageReport.table` (text and HTML): NaN shows as a dash or "unknown".
COLUMN_FORMATS: dict[str, Any] = {
    "fresh": _tokens,
    "write_5m": _tokens,
    "write_1h": _tokens,
    "read": _tokens,
    "output": _tokens,
    "cost": _money_cell,
    "reads_per_fresh": _ratio_cell,
    "hit_share": _share_cell,
    "subagent_cost_share": _share_cell,
}


def rows_json(table: pd.DataFrame, grouping: str) -> list[dict[str, Any]]:
    """`metrics` of every row of a grouping's table, computed column-wise (same values, same types)."""
    name = {"day": "date"}.get(grouping, grouping)

    def column(label: str) -> np.ndarray[Any, Any]:
        return np.asarray(table[label].to_numpy())

    def ints(values: np.ndarray[Any, Any]) -> list[int]:
        return cast("list[int]", values.astype(np.int64).tolist())

    def nums(values: np.ndarray[Any, Any]) -> list[float | None]:
        # `num` element by element: Python's round, which numpy's does not always equal
        return [None if v != v else round(v, 6) for v in values.astype(np.float64).tolist()]

    def ratio(top: np.ndarray[Any, Any], bottom: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        top, bottom = top.astype(np.float64), bottom.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(bottom != 0, top / np.where(bottom != 0, bottom, 1.0), np.nan)

    fresh, w5, w1, read, output = (column(c) for c in TOKEN_COLUMNS)
    cost, uncached = column("cost"), column("cost_without_cache")
    writes = w5 + w1
    prompt = fresh + writes + read
    fields: dict[str, list[Any]] = {
        name: [str(k) for k in table.index.tolist()],
        "inputTokens": ints(fresh),
        "outputTokens": ints(output),
        "cacheCreationTokens": ints(writes),
        "cacheReadTokens": ints(read),
        "totalTokens": ints(prompt + output),
        "totalCost": nums(cost),
        "cacheCreation5mTokens": ints(w5),
        "cacheCreation1hTokens": ints(w1),
        "costWithoutCache": nums(uncached),
        "cachingFactor": nums(ratio(uncached, cost)),
        "readsPerFreshToken": nums(ratio(read, fresh)),
        "hitShare": nums(ratio(read, prompt)),
        "readWriteRatio": nums(ratio(read, writes)),
        "unreadWriteTokens": ints(column("unread_write")),
        "responses": ints(column("responses")),
        "unpricedResponses": ints(column("unpriced")),
    }
    if grouping == "session":
        fields["project"] = [str(p) for p in table["project"].tolist()]
        fields["firstTimestamp"] = iso_z(table["first"])
        fields["lastTimestamp"] = iso_z(table["last"])
        fields["subagentCost"] = nums(column("subagent_cost"))
        fields["subagentCostShare"] = nums(column("subagent_cost_share"))
    keys = list(fields)
    return [dict(zip(keys, values)) for values in zip(*fields.values())]


def rebuilds_json(rebuilds: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of `UsageReport.rebuilds()` under the JSON schema's names."""
    return [
        {
            "timestamp": stamp,
            "session": session,
            "agent": agent,
            "model": model,
            "previousModel": previous,
            "gapMinutes": round(float(gap), 3),
            "tokensLost": int(lost),
            "cause": cause,
        }
        for stamp, session, agent, model, previous, gap, lost, cause in zip(
            iso_z(rebuilds["timestamp"]),
            rebuilds["session"].tolist(),
            rebuilds["agent"].tolist(),
            rebuilds["model"].tolist(),
            rebuilds["previous_model"].tolist(),
            rebuilds["gap_minutes"].tolist(),
            rebuilds["tokens_lost"].tolist(),
            rebuilds["cause"].tolist(),
        )
    ]


def headline(report: UsageReport) -> list[str]:
    """The report's sentences; the last one is the caveat."""
    t = report.totals
    phases = report.phases()
    shares = report.session_hit_share()
    cost = t["totalCost"]
    lines = [
        f"{t['responses']:,} responses in {t['sessions']:,} sessions: {t['cacheReadTokens']:,} cache-read tokens "
        f"against {t['inputTokens']:,} fresh input tokens ({fmt(t['readsPerFreshToken'], '.0f')} reads per fresh token).",
        f"Hit share {pct(t['hitShare'])} (per session p50 {pct(shares['p50'])}, p90 {pct(shares['p90'])}); "
        f"read:write {fmt(t['readWriteRatio'], '.1f')}:1; writes {t['cacheCreation5mTokens']:,} at 5m and "
        f"{t['cacheCreation1hTokens']:,} at 1h; {t['unreadWriteTokens']:,} written tokens never read again "
        f"({pct(t['unreadWriteShare'])} of writes).",
        f"Cost at list prices ${fmt(cost, ',.2f')} vs ${fmt(t['costWithoutCache'], ',.2f')} without caching "
        f"({fmt(t['cachingFactor'], '.1f')}x); subagents {pct(t['subagentCostShare'])} of cost.",
    ]
    if t["unpricedModels"]:
        lines.append(
            f"No known price for {', '.join(t['unpricedModels'])}: their cost is unknown and left out of the sums."
        )
    if phases:
        lines.append(
            "Phases: "
            + "; ".join(
                f"{p.start} to {p.end}: {p.level:,.0f} reads per fresh token" for p in phases
            )
            + "."
        )
    rebuilds = report.rebuilds()
    if len(rebuilds):
        causes = rebuilds["cause"].value_counts()
        lines.append(
            f"{len(rebuilds):,} cache rebuilds ({', '.join(f'{n} {c}' for c, n in causes.items())}), "
            f"{int(rebuilds['tokens_lost'].sum()):,} tokens re-written."
        )
    lines.append(report.load_report.summary())
    if report.load_report.malformed:
        shown = report.load_report.malformed[:5]
        more = len(report.load_report.malformed) - len(shown)
        lines.append(
            "Skipped: "
            + "; ".join(str(s) for s in shown)
            + (f"; and {more} more" if more > 0 else "")
        )
    lines.append(CAVEAT)
    return lines


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
