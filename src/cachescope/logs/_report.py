"""`report`: what the rows of `load` say about caching, by every grouping, from one pass of rows.

Definitions (also in docs/usage-json-schema.md):
- fresh = `input_tokens`; writes = 5m + 1h cache writes; prompt = fresh + writes + reads.
- reads per fresh token = reads / fresh; hit share = reads / prompt; read:write = reads / writes.
- cost without caching = every prompt token at the base input rate, output at the output rate;
  caching factor = cost without caching / cost.
- writes never read again: in one conversation (session + agent), the part of a response's cache
  write that the next response does not read — because there is none, it comes after the write's TTL
  (1h when the response wrote 1h tokens, else 5 minutes), uses another model, or reads less than
  this response's reads + write.
- a cache rebuild: a response whose reads fall below half of the previous response's reads + writes
  (in the same conversation, previous context at least 2,048 tokens); its cause is a model switch, a
  compaction (`compact_boundary`) in between, an idle gap beyond the TTL, or "other".
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from cachescope.logs._load import CAVEAT, LoadReport
from cachescope.logs._phases import Phase, find_phases

if TYPE_CHECKING:
    import pandas as pd

TOKEN_COLUMNS = ("fresh", "write_5m", "write_1h", "read", "output")
GROUPINGS = ("day", "week", "month", "session", "model", "project")
JSON_LISTS = {
    "day": "daily",
    "week": "weekly",
    "month": "monthly",
    "session": "sessions",
    "model": "models",
    "project": "projects",
}
REBUILD_SHARE = 0.5
REBUILD_MIN_CONTEXT = 2048
TTL_5M_MS = 5 * 60_000
TTL_1H_MS = 60 * 60_000
SCHEMA = "cachescope.usage/1"


def _ratio(top: float, bottom: float) -> float:
    return float(top) / float(bottom) if bottom else math.nan


def _metrics(sums: dict[str, Any]) -> dict[str, Any]:
    """The JSON metrics of one group from its sums (reference tool's names first)."""
    writes = sums["write_5m"] + sums["write_1h"]
    prompt = sums["fresh"] + writes + sums["read"]
    return {
        "inputTokens": int(sums["fresh"]),
        "outputTokens": int(sums["output"]),
        "cacheCreationTokens": int(writes),
        "cacheReadTokens": int(sums["read"]),
        "totalTokens": int(prompt + sums["output"]),
        "totalCost": _num(sums["cost"]),
        "cacheCreation5mTokens": int(sums["write_5m"]),
        "cacheCreation1hTokens": int(sums["write_1h"]),
        "costWithoutCache": _num(sums["cost_without_cache"]),
        "cachingFactor": _num(_ratio(sums["cost_without_cache"], sums["cost"])),
        "readsPerFreshToken": _num(_ratio(sums["read"], sums["fresh"])),
        "hitShare": _num(_ratio(sums["read"], prompt)),
        "readWriteRatio": _num(_ratio(sums["read"], writes)),
        "unreadWriteTokens": int(sums["unread_write"]),
        "responses": int(sums["responses"]),
        "unpricedResponses": int(sums["unpriced"]),
    }


def _num(value: float) -> float | None:
    return (
        None
        if value is None or (isinstance(value, float) and math.isnan(value))
        else round(float(value), 6)
    )


def _millis(df: pd.DataFrame) -> np.ndarray[Any, Any]:
    """Timestamps as int64 milliseconds since the epoch (UTC)."""
    return np.asarray(
        df["timestamp"].dt.tz_localize(None).to_numpy().astype("datetime64[ms]").astype(np.int64)
    )


def _stream_order(df: pd.DataFrame) -> np.ndarray[Any, Any]:
    session = df["session"].cat.codes.to_numpy()
    agent = df["agent"].cat.codes.to_numpy()
    return np.lexsort((np.arange(len(df)), _millis(df), agent, session))


def conversation_steps(df: pd.DataFrame) -> dict[str, np.ndarray[Any, Any]]:
    """For each row (in df order): the previous row of its conversation, and the unread write tokens."""
    n = len(df)
    order = _stream_order(df)
    session = df["session"].cat.codes.to_numpy()[order]
    agent = df["agent"].cat.codes.to_numpy()[order]
    model = df["model"].cat.codes.to_numpy()[order]
    time = _millis(df)[order]
    read = df["read"].to_numpy()[order]
    w5 = df["write_5m"].to_numpy()[order]
    w1 = df["write_1h"].to_numpy()[order]
    writes = w5 + w1
    same = np.zeros(n, dtype=bool)  # same[i]: sorted row i continues the conversation of row i-1
    if n > 1:
        same[1:] = (session[1:] == session[:-1]) & (agent[1:] == agent[:-1])
    ttl = np.where(w1 > 0, TTL_1H_MS, TTL_5M_MS)
    # the next row reads this row's write when it follows within the TTL on the same model
    follows = np.zeros(n, dtype=bool)
    if n > 1:
        follows[:-1] = same[1:] & (model[1:] == model[:-1]) & (time[1:] - time[:-1] <= ttl[:-1])
    next_read = np.zeros(n, dtype=np.int64)
    next_read[:-1] = read[1:]
    used = np.where(follows, np.clip(next_read - read, 0, writes), 0)
    unread_sorted = writes - used
    previous = np.full(n, -1, dtype=np.int64)
    previous[1:] = np.where(same[1:], order[:-1], -1)
    unread = np.empty(n, dtype=np.int64)
    unread[order] = unread_sorted
    prev_in_df = np.empty(n, dtype=np.int64)
    prev_in_df[order] = previous
    return {"previous": prev_in_df, "unread_write": unread}


class UsageReport:
    """Caching analytics over the rows of `load` (renders as text and HTML; `.to_dict()` for JSON).

    Parameters
    ----------
    df:
        The DataFrame returned by `cachescope.logs.load` (or a filtered copy of it).
    load_report:
        What was read and skipped; default `df.attrs["load_report"]`.
    """

    def __init__(self, df: pd.DataFrame, load_report: LoadReport | None = None) -> None:
        import pandas as pd

        self.df = df
        self.load_report = (
            load_report if load_report is not None else df.attrs.get("load_report", LoadReport())
        )
        steps = conversation_steps(df)
        self._rows = pd.DataFrame(
            {
                "day": df["timestamp"].dt.strftime("%Y-%m-%d")
                if len(df)
                else pd.Series([], dtype=object),
                **{c: df[c].to_numpy() for c in TOKEN_COLUMNS},
                "cost": df["cost"].to_numpy(),
                "cost_without_cache": df["cost_without_cache"].to_numpy(),
                "unread_write": steps["unread_write"],
                "responses": np.ones(len(df), dtype=np.int64),
                "unpriced": np.isnan(df["cost"].to_numpy()).astype(np.int64),
            }
        )
        self._previous = steps["previous"]
        self._groups: dict[str, pd.DataFrame] = {}

    # -- figures -------------------------------------------------------------------------------------
    def _sums(self, frame: pd.DataFrame) -> dict[str, float]:
        sums = {
            c: float(frame[c].sum())
            for c in (*TOKEN_COLUMNS, "unread_write", "responses", "unpriced")
        }
        for c in ("cost", "cost_without_cache"):
            sums[c] = float(frame[c].sum(min_count=1)) if len(frame) else 0.0
        return sums

    @property
    def totals(self) -> dict[str, Any]:
        """Whole-corpus figures, under the names of `cachescope usage --json`."""
        sums = self._sums(self._rows)
        out = _metrics(sums)
        writes = sums["write_5m"] + sums["write_1h"]
        out["unreadWriteShare"] = _num(_ratio(sums["unread_write"], writes))
        out["cacheCreation1hShare"] = _num(_ratio(sums["write_1h"], writes))
        sub = self.df["agent"].astype(str).to_numpy() != ""
        out["subagentCostShare"] = _num(
            _ratio(
                float(np.nansum(self.df["cost"].to_numpy()[sub])),
                float(np.nansum(self.df["cost"].to_numpy())),
            )
        )
        out["sessions"] = int(self.df["session"].nunique())
        out["unpricedModels"] = sorted(
            str(m) for m in self.df.loc[self.df["cost"].isna(), "model"].unique()
        )
        return out

    def by(self, grouping: str) -> pd.DataFrame:
        """Figures per day, week (starting Monday), month, session, model or project."""
        if grouping not in GROUPINGS:
            from cachescope._errors import CachescopeError

            raise CachescopeError(
                f"Unknown grouping {grouping!r}: use one of {', '.join(GROUPINGS)}."
            )
        if grouping not in self._groups:
            self._groups[grouping] = self._group(grouping)
        return self._groups[grouping]

    def _keys(self, grouping: str) -> Any:
        import pandas as pd

        stamp = self.df["timestamp"]
        if grouping == "day":
            return self._rows["day"]
        if grouping == "week":
            monday = stamp.dt.tz_localize(None).dt.normalize() - pd.to_timedelta(
                stamp.dt.day_of_week, unit="D"
            )
            return monday.dt.strftime("%Y-%m-%d")
        if grouping == "month":
            return stamp.dt.strftime("%Y-%m")
        return self.df[grouping].astype(str)

    def _group(self, grouping: str) -> pd.DataFrame:
        import pandas as pd

        rows = self._rows.assign(key=self._keys(grouping).to_numpy() if len(self.df) else [])
        grouped = rows.groupby("key", sort=True, observed=True)
        table = grouped[[*TOKEN_COLUMNS, "unread_write", "responses", "unpriced"]].sum()
        table["cost"] = grouped["cost"].sum(min_count=1)
        table["cost_without_cache"] = grouped["cost_without_cache"].sum(min_count=1)
        writes = table["write_5m"] + table["write_1h"]
        prompt = table["fresh"] + writes + table["read"]
        with np.errstate(divide="ignore", invalid="ignore"):
            table["reads_per_fresh"] = table["read"] / table["fresh"].where(table["fresh"] > 0)
            table["hit_share"] = table["read"] / prompt.where(prompt > 0)
            table["read_write_ratio"] = table["read"] / writes.where(writes > 0)
            table["caching_factor"] = table["cost_without_cache"] / table["cost"].where(
                table["cost"] > 0
            )
        if grouping == "session":
            df = self.df
            extra = pd.DataFrame(
                {
                    "key": df["session"].astype(str).to_numpy(),
                    "project": df["project"].astype(str).to_numpy(),
                    "first": df["timestamp"].to_numpy(),
                    "last": df["timestamp"].to_numpy(),
                    "subagent_cost": np.where(
                        df["agent"].astype(str).to_numpy() != "", df["cost"].to_numpy(), 0.0
                    ),
                }
            ).groupby("key", sort=True)
            table["project"] = extra["project"].first()
            table["first"] = extra["first"].min()
            table["last"] = extra["last"].max()
            table["subagent_cost"] = extra["subagent_cost"].sum()
            table["subagent_cost_share"] = table["subagent_cost"] / table["cost"].where(
                table["cost"] > 0
            )
        table.index.name = grouping
        return cast("pd.DataFrame", table)

    def session_hit_share(self) -> dict[str, float | None]:
        """p50 and p90 of the per-session hit share (sessions with prompt tokens)."""
        shares = self.by("session")["hit_share"].dropna()
        if shares.empty:
            return {"p50": None, "p90": None}
        return {"p50": _num(float(shares.quantile(0.5))), "p90": _num(float(shares.quantile(0.9)))}

    def phases(self) -> list[Phase]:
        """Change points in the daily reads-per-fresh-token series."""
        daily = self.by("day")
        return find_phases(list(daily.index), daily["read"].to_numpy(), daily["fresh"].to_numpy())

    def rebuilds(self) -> pd.DataFrame:
        """Responses whose cache reads fell far below the previous response's context, with a cause."""
        import pandas as pd

        df = self.df
        prev = self._previous
        has_prev = prev >= 0
        read = df["read"].to_numpy()
        context = np.zeros(len(df), dtype=np.int64)
        context[has_prev] = (
            df["read"].to_numpy() + df["write_5m"].to_numpy() + df["write_1h"].to_numpy()
        )[prev[has_prev]]
        hit = has_prev & (context >= REBUILD_MIN_CONTEXT) & (read < REBUILD_SHARE * context)
        rows = np.flatnonzero(hit)
        columns = [
            "timestamp",
            "session",
            "agent",
            "model",
            "previous_model",
            "gap_minutes",
            "tokens_lost",
            "cause",
        ]
        if len(rows) == 0:
            return cast("pd.DataFrame", pd.DataFrame(columns=columns))
        time = _millis(df)
        models = df["model"].astype(str).to_numpy()
        sessions = df["session"].astype(str).to_numpy()
        w1 = df["write_1h"].to_numpy()
        compactions: dict[str, list[int]] = {}
        for session, stamp in self.load_report.compactions:
            compactions.setdefault(session, []).append(stamp)
        for stamps in compactions.values():
            stamps.sort()
        records = []
        for i in rows.tolist():
            p = int(prev[i])
            gap = int(time[i] - time[p])
            stamps = compactions.get(sessions[i], [])
            at = int(np.searchsorted(stamps, time[p], side="left")) if stamps else 0
            if models[i] != models[p]:
                cause = "model switch"
            elif stamps and at < len(stamps) and stamps[at] <= time[i]:
                cause = "compaction"
            elif gap > (TTL_1H_MS if w1[p] > 0 else TTL_5M_MS):
                cause = "idle gap"
            else:
                cause = "other"
            records.append(
                (
                    df["timestamp"].iloc[i],
                    sessions[i],
                    str(df["agent"].iloc[i]),
                    models[i],
                    models[p],
                    gap / 60_000,
                    int(context[i] - read[i]),
                    cause,
                )
            )
        return cast("pd.DataFrame", pd.DataFrame.from_records(records, columns=columns))

    # -- output --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON types, in the documented schema (docs/usage-json-schema.md)."""
        out: dict[str, Any] = {"schema": SCHEMA, "totals": self.totals}
        for grouping in GROUPINGS:
            out[JSON_LISTS[grouping]] = self._rows_json(grouping)
        out["sessionHitShare"] = self.session_hit_share()
        out["phases"] = [p.to_dict() for p in self.phases()]
        rebuilds = self.rebuilds()
        records = cast("list[dict[str, Any]]", rebuilds.to_dict("records"))
        out["rebuilds"] = [
            {
                "timestamp": r["timestamp"].isoformat().replace("+00:00", "Z"),
                "session": r["session"],
                "agent": r["agent"],
                "model": r["model"],
                "previousModel": r["previous_model"],
                "gapMinutes": round(float(r["gap_minutes"]), 3),
                "tokensLost": int(r["tokens_lost"]),
                "cause": r["cause"],
            }
            for r in records
        ]
        out["load"] = self.load_report.to_dict()
        out["caveat"] = CAVEAT
        return out

    def _rows_json(self, grouping: str) -> list[dict[str, Any]]:
        table = self.by(grouping)
        name = {"day": "date"}.get(grouping, grouping)
        rows = []
        records = cast("list[dict[str, Any]]", table.to_dict("records"))
        for key, row in zip(table.index, records):
            item: dict[str, Any] = {name: key, **_metrics(row)}
            if grouping == "session":
                item["project"] = row["project"]
                item["firstTimestamp"] = row["first"].isoformat().replace("+00:00", "Z")
                item["lastTimestamp"] = row["last"].isoformat().replace("+00:00", "Z")
                item["subagentCost"] = _num(row["subagent_cost"])
                item["subagentCostShare"] = _num(row["subagent_cost_share"])
            rows.append(item)
        return rows

    def table(self, grouping: str = "day") -> pd.DataFrame:
        """The readable table of one grouping (what `cachescope usage --by` prints)."""
        t = self.by(grouping)
        shown = t[
            [
                "fresh",
                "write_5m",
                "write_1h",
                "read",
                "output",
                "cost",
                "reads_per_fresh",
                "hit_share",
            ]
        ].copy()
        if grouping == "session":
            shown.insert(0, "project", t["project"])
            shown["subagent_cost_share"] = t["subagent_cost_share"]
        return cast("pd.DataFrame", shown)

    def _headline(self) -> list[str]:
        t = self.totals
        phases = self.phases()
        shares = self.session_hit_share()
        cost = t["totalCost"]
        lines = [
            f"{t['responses']:,} responses in {t['sessions']:,} sessions: {t['cacheReadTokens']:,} cache-read tokens "
            f"against {t['inputTokens']:,} fresh input tokens ({_fmt(t['readsPerFreshToken'], '.0f')} reads per fresh token).",
            f"Hit share {_pct(t['hitShare'])} (per session p50 {_pct(shares['p50'])}, p90 {_pct(shares['p90'])}); "
            f"read:write {_fmt(t['readWriteRatio'], '.1f')}:1; writes {t['cacheCreation5mTokens']:,} at 5m and "
            f"{t['cacheCreation1hTokens']:,} at 1h; {t['unreadWriteTokens']:,} written tokens never read again "
            f"({_pct(t['unreadWriteShare'])} of writes).",
            f"Cost at list prices ${_fmt(cost, ',.2f')} vs ${_fmt(t['costWithoutCache'], ',.2f')} without caching "
            f"({_fmt(t['cachingFactor'], '.1f')}x); subagents {_pct(t['subagentCostShare'])} of cost.",
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
        rebuilds = self.rebuilds()
        if len(rebuilds):
            causes = rebuilds["cause"].value_counts()
            lines.append(
                f"{len(rebuilds):,} cache rebuilds ({', '.join(f'{n} {c}' for c, n in causes.items())}), "
                f"{int(rebuilds['tokens_lost'].sum()):,} tokens re-written."
            )
        lines.append(self.load_report.summary())
        if self.load_report.malformed:
            shown = self.load_report.malformed[:5]
            more = len(self.load_report.malformed) - len(shown)
            lines.append(
                "Skipped: "
                + "; ".join(str(s) for s in shown)
                + (f"; and {more} more" if more > 0 else "")
            )
        lines.append(CAVEAT)
        return lines

    def to_text(self, grouping: str = "day") -> str:
        import pandas as pd

        with pd.option_context(
            "display.max_rows", 200, "display.width", 160, "display.float_format", "{:,.4g}".format
        ):
            table = self.table(grouping).to_string()
        return "\n".join([*self._headline()[:-1], "", table, "", self._headline()[-1]])

    def __repr__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        head = "".join(f"<p>{html.escape(line)}</p>" for line in self._headline())
        table = self.table("day").to_html(escape=True, float_format=lambda v: f"{v:,.4g}")
        return f'<div class="cachescope-usage-report">{head}<details><summary>By day</summary>{table}</details></div>'

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        bundle = {"text/plain": self.to_text(), "text/html": self._repr_html_()}
        if include:
            bundle = {k: v for k, v in bundle.items() if k in include}
        if exclude:
            bundle = {k: v for k, v in bundle.items() if k not in exclude}
        return bundle

    # -- charts --------------------------------------------------------------------------------------
    def chart_token_mix(self) -> Any:
        from cachescope.logs._charts import token_mix

        return token_mix(self.by("day"))

    def chart_cumulative_cost(self) -> Any:
        from cachescope.logs._charts import cumulative_cost

        return cumulative_cost(self.by("day"))

    def chart_reads_per_fresh(self) -> Any:
        from cachescope.logs._charts import reads_per_fresh

        return reads_per_fresh(self.by("day"), self.phases())

    def charts(self) -> Any:
        """The three charts stacked: token mix, cumulative cost, reads per fresh token with phases."""
        from cachescope.logs._charts import require_altair

        alt = require_altair()
        return alt.vconcat(
            self.chart_token_mix(), self.chart_cumulative_cost(), self.chart_reads_per_fresh()
        )


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def report(df: pd.DataFrame) -> UsageReport:
    """Caching analytics over the rows of `cachescope.logs.load` (see `UsageReport`)."""
    return UsageReport(df)
