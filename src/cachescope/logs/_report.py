"""`report`: what the rows of `load` say about caching, by every grouping, from one pass of rows.

Definitions (also in docs/usage-json-schema.md):
- fresh = `input_tokens`; writes = 5m + 1h cache writes; prompt = fresh + writes + reads.
- cost and cost without caching are the rows' own (priced by `cachescope.pricing` in `load`), summed.
- writes never read again and cache rebuilds: see `_conversations`; ratios and rendering: `_reportout`.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from cachescope._render import mimebundle
from cachescope.logs._conversations import TOKEN_COLUMNS, Conversations, sorted_codes
from cachescope.logs._conversations import codes as column_codes
from cachescope.logs._load import CAVEAT, DAY_MS, LoadReport
from cachescope.logs._phases import Phase, find_phases
from cachescope.logs._reportout import (
    COLUMN_FORMATS,
    headline,
    metrics,
    num,
    ratio,
    rebuilds_json,
    rows_json,
)

if TYPE_CHECKING:
    import pandas as pd

GROUPINGS = ("day", "week", "month", "session", "model", "project")
JSON_LISTS = {
    "day": "daily",
    "week": "weekly",
    "month": "monthly",
    "session": "sessions",
    "model": "models",
    "project": "projects",
}
SCHEMA = "cachescope.usage/1"


class UsageReport:
    """Caching analytics over the rows of `load` (renders as text and HTML; `.to_dict()` for JSON).

    Parameters
    ----------
    df:
        The DataFrame returned by `cachescope.logs.load` (or a filtered copy of it).
    load_report:
        What was read and skipped; default `df.attrs["load_report"]`.

    Every figure is computed once from the same arrays and memoised: totals, each grouping, phases
    and rebuilds are built on first use and reused by the text, HTML and JSON renderings.
    """

    def __init__(self, df: pd.DataFrame, load_report: LoadReport | None = None) -> None:
        import pandas as pd

        self.df = df
        self.load_report = (
            load_report if load_report is not None else df.attrs.get("load_report", LoadReport())
        )
        conversations = self._conversations = Conversations(df)
        self._millis = conversations.millis
        self._session, self._session_labels = conversations.session, conversations.session_labels
        self._agent, self._agent_labels = conversations.agent, conversations.agent_labels
        self._model, self._model_labels = conversations.model, conversations.model_labels
        self._tokens = conversations.tokens
        self._cost = df["cost"].to_numpy()
        self._rows = pd.DataFrame(
            {
                **self._tokens,
                "cost": self._cost,
                "cost_without_cache": df["cost_without_cache"].to_numpy(),
                "unread_write": conversations.unread_write,
                "responses": np.ones(len(df), dtype=np.int64),
                "unpriced": np.isnan(self._cost).astype(np.int64),
            }
        )
        self._groups: dict[str, pd.DataFrame] = {}
        self._totals: dict[str, Any] | None = None
        self._phases: list[Phase] | None = None
        self._rebuilds: pd.DataFrame | None = None

    # -- figures -------------------------------------------------------------------------------------
    def _sums(self, frame: pd.DataFrame) -> dict[str, float]:
        sums = {
            c: float(frame[c].sum())
            for c in (*TOKEN_COLUMNS, "unread_write", "responses", "unpriced")
        }
        for c in ("cost", "cost_without_cache"):
            sums[c] = float(frame[c].sum(min_count=1)) if len(frame) else 0.0
        return sums

    def _is_subagent(self) -> np.ndarray[Any, Any]:
        """Rows of subagents: from a subagent file, or a sidechain line (older Claude Code
        versions wrote subagent turns into the main file with `isSidechain: true`)."""
        named = np.array([label != "" for label in self._agent_labels], dtype=bool)
        rows = named[self._agent] if len(named) else np.zeros(len(self.df), dtype=bool)
        if "sidechain" in self.df.columns:
            rows = rows | self.df["sidechain"].to_numpy(dtype=bool, na_value=False)
        return rows

    @property
    def totals(self) -> dict[str, Any]:
        """Whole-corpus figures, under the names of `cachescope usage --json`."""
        if self._totals is None:
            self._totals = self._compute_totals()
        return dict(self._totals)

    def _compute_totals(self) -> dict[str, Any]:
        sums = self._sums(self._rows)
        out = metrics(sums)
        writes = sums["write_5m"] + sums["write_1h"]
        out["unreadWriteShare"] = num(ratio(sums["unread_write"], writes))
        out["cacheCreation1hShare"] = num(ratio(sums["write_1h"], writes))
        cost = self._cost
        out["subagentCostShare"] = num(
            ratio(float(np.nansum(cost[self._is_subagent()])), float(np.nansum(cost)))
        )
        out["sessions"] = len(np.unique(self._session))
        unpriced = np.unique(self._model[np.isnan(cost)])
        out["unpricedModels"] = sorted(self._model_labels[i] for i in unpriced.tolist())
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

    def _keys(self, grouping: str) -> tuple[np.ndarray[Any, Any], list[str]]:
        """Integer group codes in label order, and the labels (ISO days, weeks, months, names)."""
        if grouping in ("day", "week", "month"):
            day = self._millis // DAY_MS
            if grouping == "week":
                day = day - (day + 3) % 7  # 1970-01-01 was a Thursday; weeks start on Monday
            if grouping == "month":
                day = day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
            uniq, codes = np.unique(day, return_inverse=True)
            unit = "M" if grouping == "month" else "D"
            labels = np.asarray(uniq).astype(f"datetime64[{unit}]").astype(str).tolist()
            return np.asarray(codes, dtype=np.int64).reshape(-1), labels
        if grouping == "session":
            return sorted_codes(self._session, self._session_labels)
        if grouping == "model":
            return sorted_codes(self._model, self._model_labels)
        return sorted_codes(*column_codes(self.df[grouping]))

    def _group(self, grouping: str) -> pd.DataFrame:
        import pandas as pd

        codes, labels = self._keys(grouping)
        rows = self._rows.assign(key=codes)
        grouped = rows.groupby("key", sort=True)
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
            project, project_labels = column_codes(df["project"])
            extra = pd.DataFrame(
                {
                    "key": codes,
                    "project": project,
                    "first": df["timestamp"].array,
                    "last": df["timestamp"].array,
                    "subagent_cost": np.where(self._is_subagent(), self._cost, 0.0),
                }
            ).groupby("key", sort=True)
            firsts = extra["project"].first().to_numpy()
            table["project"] = pd.Series(
                [project_labels[i] for i in firsts.tolist()], index=table.index, dtype="str"
            )
            table["first"] = extra["first"].min()
            table["last"] = extra["last"].max()
            table["subagent_cost"] = extra["subagent_cost"].sum()
            table["subagent_cost_share"] = table["subagent_cost"] / table["cost"].where(
                table["cost"] > 0
            )
        table.index = pd.Index(
            [labels[i] for i in table.index.to_numpy().tolist()], dtype="str", name=grouping
        )
        return cast("pd.DataFrame", table)

    def session_hit_share(self) -> dict[str, float | None]:
        """p50 and p90 of the per-session hit share (sessions with prompt tokens)."""
        shares = self.by("session")["hit_share"].dropna()
        if shares.empty:
            return {"p50": None, "p90": None}
        return {"p50": num(float(shares.quantile(0.5))), "p90": num(float(shares.quantile(0.9)))}

    def phases(self) -> list[Phase]:
        """Change points in the daily reads-per-fresh-token series."""
        if self._phases is None:
            daily = self.by("day")
            self._phases = find_phases(
                list(daily.index), daily["read"].to_numpy(), daily["fresh"].to_numpy()
            )
        return list(self._phases)

    def rebuilds(self) -> pd.DataFrame:
        """Responses whose cache reads fell far below the previous response's context, with a cause."""
        if self._rebuilds is None:
            self._rebuilds = self._conversations.rebuilds(self.load_report.compactions)
        return cast("pd.DataFrame", self._rebuilds.copy())

    # -- output --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON types, in the documented schema (docs/usage-json-schema.md)."""
        out: dict[str, Any] = {"schema": SCHEMA, "totals": self.totals}
        for grouping in GROUPINGS:
            out[JSON_LISTS[grouping]] = rows_json(self.by(grouping), grouping)
        out["sessionHitShare"] = self.session_hit_share()
        out["phases"] = [p.to_dict() for p in self.phases()]
        out["rebuilds"] = rebuilds_json(self.rebuilds())
        out["load"] = self.load_report.to_dict()
        out["caveat"] = CAVEAT
        return out

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

    def to_text(self, grouping: str = "day") -> str:
        import pandas as pd

        with pd.option_context("display.max_rows", 200, "display.width", 160):
            table = self.table(grouping).to_string(formatters=COLUMN_FORMATS)
        lines = headline(self)
        return "\n".join([*lines[:-1], "", table, "", lines[-1]])

    def __repr__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        head = "".join(f"<p>{html.escape(line)}</p>" for line in headline(self))
        table = self.table("day").to_html(escape=True, formatters=COLUMN_FORMATS)
        return f'<div class="cachescope-usage-report">{head}<details><summary>By day</summary>{table}</details></div>'

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return mimebundle(self.to_text(), self._repr_html_(), include, exclude)

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


def report(df: pd.DataFrame) -> UsageReport:
    """Caching analytics over the rows of `cachescope.logs.load` (see `UsageReport`)."""
    return UsageReport(df)
