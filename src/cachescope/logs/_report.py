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

from cachescope._render import mimebundle
from cachescope.logs._load import CAVEAT, DAY_MS, LoadReport
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


def _iso_z(stamps: pd.Series) -> list[str]:
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


def _codes(series: pd.Series) -> tuple[np.ndarray[Any, Any], list[str]]:
    """Integer codes of a column and the label of each code (categorical columns without a copy)."""
    import pandas as pd

    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = np.asarray(series.cat.codes.to_numpy(), dtype=np.int64)
        labels = [str(c) for c in series.cat.categories]
        if len(codes) and codes.min() < 0:  # a missing value: `astype(str)` calls it "nan"
            codes = np.where(codes < 0, len(labels), codes)
            labels.append("nan")
        return codes, labels
    factor, uniques = pd.factorize(series.astype(str))
    return np.asarray(factor, dtype=np.int64), [str(u) for u in uniques]


def _sorted_codes(
    codes: np.ndarray[Any, Any], labels: list[str]
) -> tuple[np.ndarray[Any, Any], list[str]]:
    """Codes renumbered so that code order is label order (what a groupby over the labels sorts by)."""
    if not labels:
        return codes, labels
    order = np.argsort(np.array(labels, dtype=object), kind="stable")
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels))
    return rank[codes], [labels[i] for i in order.tolist()]


def _steps(
    session: np.ndarray[Any, Any],
    agent: np.ndarray[Any, Any],
    model: np.ndarray[Any, Any],
    millis: np.ndarray[Any, Any],
    read: np.ndarray[Any, Any],
    w5: np.ndarray[Any, Any],
    w1: np.ndarray[Any, Any],
) -> dict[str, np.ndarray[Any, Any]]:
    n = len(read)
    order = np.lexsort((np.arange(n), millis, agent, session))
    session = session[order]
    agent = agent[order]
    model = model[order]
    time = millis[order]
    read = read[order]
    w5 = w5[order]
    w1 = w1[order]
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


def conversation_steps(df: pd.DataFrame) -> dict[str, np.ndarray[Any, Any]]:
    """For each row (in df order): the previous row of its conversation, and the unread write tokens."""
    return _steps(
        _codes(df["session"])[0],
        _codes(df["agent"])[0],
        _codes(df["model"])[0],
        _millis(df),
        df["read"].to_numpy(),
        df["write_5m"].to_numpy(),
        df["write_1h"].to_numpy(),
    )


def _tokens(value: Any) -> str:
    return f"{int(value):,}" if value == value else "–"


def _money_cell(value: Any) -> str:
    return f"${value:,.4f}" if value == value else "unknown"


def _ratio_cell(value: Any) -> str:
    return f"{value:,.0f}" if value == value else "–"


def _share_cell(value: Any) -> str:
    return f"{value:.1%}" if value == value else "–"


# One format per column of `UsageReport.table` (text and HTML): NaN shows as a dash or "unknown".
_COLUMN_FORMATS: dict[str, Any] = {
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
        self._millis = _millis(df)
        self._session, self._session_labels = _codes(df["session"])
        self._agent, self._agent_labels = _codes(df["agent"])
        self._model, self._model_labels = _codes(df["model"])
        self._tokens = {c: df[c].to_numpy() for c in TOKEN_COLUMNS}
        self._cost = df["cost"].to_numpy()
        steps = _steps(
            self._session,
            self._agent,
            self._model,
            self._millis,
            self._tokens["read"],
            self._tokens["write_5m"],
            self._tokens["write_1h"],
        )
        self._rows = pd.DataFrame(
            {
                **self._tokens,
                "cost": self._cost,
                "cost_without_cache": df["cost_without_cache"].to_numpy(),
                "unread_write": steps["unread_write"],
                "responses": np.ones(len(df), dtype=np.int64),
                "unpriced": np.isnan(self._cost).astype(np.int64),
            }
        )
        self._previous = steps["previous"]
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
        out = _metrics(sums)
        writes = sums["write_5m"] + sums["write_1h"]
        out["unreadWriteShare"] = _num(_ratio(sums["unread_write"], writes))
        out["cacheCreation1hShare"] = _num(_ratio(sums["write_1h"], writes))
        cost = self._cost
        out["subagentCostShare"] = _num(
            _ratio(float(np.nansum(cost[self._is_subagent()])), float(np.nansum(cost)))
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
            return _sorted_codes(self._session, self._session_labels)
        if grouping == "model":
            return _sorted_codes(self._model, self._model_labels)
        return _sorted_codes(*_codes(self.df[grouping]))

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
            project, project_labels = _codes(df["project"])
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
        return {"p50": _num(float(shares.quantile(0.5))), "p90": _num(float(shares.quantile(0.9)))}

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
            self._rebuilds = self._compute_rebuilds()
        return cast("pd.DataFrame", self._rebuilds.copy())

    def _compute_rebuilds(self) -> pd.DataFrame:
        import pandas as pd

        df = self.df
        prev = self._previous
        has_prev = prev >= 0
        read = self._tokens["read"]
        w1 = self._tokens["write_1h"]
        context = np.zeros(len(df), dtype=np.int64)
        context[has_prev] = (read + self._tokens["write_5m"] + w1)[prev[has_prev]]
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
        time = self._millis
        p = prev[rows]
        gap = time[rows] - time[p]
        session = self._session[rows]
        # a compaction in the session between the previous response and this one
        code_of = {label: i for i, label in enumerate(self._session_labels)}
        pairs = [
            (code_of[name], stamp)
            for name, stamp in self.load_report.compactions
            if name in code_of
        ]
        compacted = np.zeros(len(rows), dtype=bool)
        if pairs:
            comp = np.array(pairs, dtype=np.int64).reshape(-1, 2)
            base = min(int(comp[:, 1].min()), int(time.min()))
            width = max(int(comp[:, 1].max()), int(time.max())) - base + 1
            # one sortable key per (session, stamp); both sides shifted to be non-negative
            if width * (len(self._session_labels) + 1) < 2**62:
                keys = np.sort(comp[:, 0] * width + (comp[:, 1] - base))
                at = np.searchsorted(keys, session * width + (time[p] - base), side="left")
                found = at < len(keys)
                hit_key = keys[np.minimum(at, len(keys) - 1)]
                compacted = (
                    found & (hit_key // width == session) & (hit_key % width + base <= time[rows])
                )
            else:  # stamps too far apart for one int64 key: per rebuild
                stamps: dict[int, list[int]] = {}
                for code, stamp in pairs:
                    stamps.setdefault(code, []).append(stamp)
                for j, (code, t_prev, t_now) in enumerate(
                    zip(session.tolist(), time[p].tolist(), time[rows].tolist())
                ):
                    compacted[j] = any(t_prev <= s <= t_now for s in stamps.get(code, ()))
        switched = self._model[rows] != self._model[p]
        idle = gap > np.where(w1[p] > 0, TTL_1H_MS, TTL_5M_MS)
        cause = np.select(
            [switched, compacted, idle], ["model switch", "compaction", "idle gap"], "other"
        )
        models = np.array(self._model_labels, dtype=object)
        sessions = np.array(self._session_labels, dtype=object)
        agents = np.array(self._agent_labels, dtype=object)
        table = pd.DataFrame(
            {
                "timestamp": df["timestamp"].iloc[rows].reset_index(drop=True),
                "session": sessions[session],
                "agent": agents[self._agent[rows]],
                "model": models[self._model[rows]],
                "previous_model": models[self._model[p]],
                "gap_minutes": gap / 60_000,
                "tokens_lost": context[rows] - read[rows],
                "cause": cause.astype(object),
            },
            columns=columns,
        )
        return cast("pd.DataFrame", table)

    # -- output --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON types, in the documented schema (docs/usage-json-schema.md)."""
        out: dict[str, Any] = {"schema": SCHEMA, "totals": self.totals}
        for grouping in GROUPINGS:
            out[JSON_LISTS[grouping]] = self._rows_json(grouping)
        out["sessionHitShare"] = self.session_hit_share()
        out["phases"] = [p.to_dict() for p in self.phases()]
        rebuilds = self.rebuilds()
        out["rebuilds"] = [
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
                _iso_z(rebuilds["timestamp"]),
                rebuilds["session"].tolist(),
                rebuilds["agent"].tolist(),
                rebuilds["model"].tolist(),
                rebuilds["previous_model"].tolist(),
                rebuilds["gap_minutes"].tolist(),
                rebuilds["tokens_lost"].tolist(),
                rebuilds["cause"].tolist(),
            )
        ]
        out["load"] = self.load_report.to_dict()
        out["caveat"] = CAVEAT
        return out

    def _rows_json(self, grouping: str) -> list[dict[str, Any]]:
        """`_metrics` of every row of a grouping, computed column-wise (same values, same types)."""
        table = self.by(grouping)
        name = {"day": "date"}.get(grouping, grouping)

        def column(label: str) -> np.ndarray[Any, Any]:
            return np.asarray(table[label].to_numpy())

        def ints(values: np.ndarray[Any, Any]) -> list[int]:
            return cast("list[int]", values.astype(np.int64).tolist())

        def nums(values: np.ndarray[Any, Any]) -> list[float | None]:
            # `_num` element by element: Python's round, which numpy's does not always equal
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
            fields["firstTimestamp"] = _iso_z(table["first"])
            fields["lastTimestamp"] = _iso_z(table["last"])
            fields["subagentCost"] = nums(column("subagent_cost"))
            fields["subagentCostShare"] = nums(column("subagent_cost_share"))
        keys = list(fields)
        return [dict(zip(keys, values)) for values in zip(*fields.values())]

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

        with pd.option_context("display.max_rows", 200, "display.width", 160):
            table = self.table(grouping).to_string(formatters=_COLUMN_FORMATS)
        headline = self._headline()
        return "\n".join([*headline[:-1], "", table, "", headline[-1]])

    def __repr__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        head = "".join(f"<p>{html.escape(line)}</p>" for line in self._headline())
        table = self.table("day").to_html(escape=True, formatters=_COLUMN_FORMATS)
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


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def report(df: pd.DataFrame) -> UsageReport:
    """Caching analytics over the rows of `cachescope.logs.load` (see `UsageReport`)."""
    return UsageReport(df)
