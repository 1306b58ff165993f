"""Conversations (session + agent, in time order): each response's previous one, the cache writes
never read again, and cache rebuilds with their causes.

- writes never read again: the part of a response's cache write that the next response of its
  conversation does not read — because there is none, it comes after the write's TTL (1h when the
  response wrote 1h tokens, else 5 minutes), uses another model, or reads less than this
  response's reads + write.
- a cache rebuild: a response whose reads fall below half of the previous response's reads + writes
  (previous context at least 2,048 tokens); its cause is a model switch, a compaction
  (`compact_boundary`) in between, an idle gap beyond the TTL, or "other".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

TOKEN_COLUMNS = ("fresh", "write_5m", "write_1h", "read", "output")
REBUILD_SHARE = 0.5
REBUILD_MIN_CONTEXT = 2048
TTL_5M_MS = 5 * 60_000
TTL_1H_MS = 60 * 60_000


def millis(df: pd.DataFrame) -> np.ndarray[Any, Any]:
    """Timestamps as int64 milliseconds since the epoch (UTC)."""
    return np.asarray(
        df["timestamp"].dt.tz_localize(None).to_numpy().astype("datetime64[ms]").astype(np.int64)
    )


def codes(series: pd.Series) -> tuple[np.ndarray[Any, Any], list[str]]:
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


def sorted_codes(
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


class Conversations:
    """The rows of `load` as integer codes and arrays, with each row's place in its conversation."""

    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df
        self.millis = millis(df)
        self.session, self.session_labels = codes(df["session"])
        self.agent, self.agent_labels = codes(df["agent"])
        self.model, self.model_labels = codes(df["model"])
        self.tokens = {c: df[c].to_numpy() for c in TOKEN_COLUMNS}
        steps = _steps(
            self.session,
            self.agent,
            self.model,
            self.millis,
            self.tokens["read"],
            self.tokens["write_5m"],
            self.tokens["write_1h"],
        )
        self.previous = steps["previous"]  # the previous row of the conversation, or -1
        self.unread_write = steps["unread_write"]

    def rebuilds(self, compactions: Iterable[tuple[str, int]]) -> pd.DataFrame:
        """Responses whose cache reads fell far below the previous response's context, with a cause."""
        import pandas as pd

        df = self.df
        prev = self.previous
        has_prev = prev >= 0
        read = self.tokens["read"]
        w1 = self.tokens["write_1h"]
        context = np.zeros(len(df), dtype=np.int64)
        context[has_prev] = (read + self.tokens["write_5m"] + w1)[prev[has_prev]]
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
        time = self.millis
        p = prev[rows]
        gap = time[rows] - time[p]
        session = self.session[rows]
        # a compaction in the session between the previous response and this one
        code_of = {label: i for i, label in enumerate(self.session_labels)}
        pairs = [(code_of[name], stamp) for name, stamp in compactions if name in code_of]
        compacted = np.zeros(len(rows), dtype=bool)
        if pairs:
            comp = np.array(pairs, dtype=np.int64).reshape(-1, 2)
            base = min(int(comp[:, 1].min()), int(time.min()))
            width = max(int(comp[:, 1].max()), int(time.max())) - base + 1
            # one sortable key per (session, stamp); both sides shifted to be non-negative
            if width * (len(self.session_labels) + 1) < 2**62:
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
        switched = self.model[rows] != self.model[p]
        idle = gap > np.where(w1[p] > 0, TTL_1H_MS, TTL_5M_MS)
        cause = np.select(
            [switched, compacted, idle], ["model switch", "compaction", "idle gap"], "other"
        )
        models = np.array(self.model_labels, dtype=object)
        sessions = np.array(self.session_labels, dtype=object)
        agents = np.array(self.agent_labels, dtype=object)
        table = pd.DataFrame(
            {
                "timestamp": df["timestamp"].iloc[rows].reset_index(drop=True),
                "session": sessions[session],
                "agent": agents[self.agent[rows]],
                "model": models[self.model[rows]],
                "previous_model": models[self.model[p]],
                "gap_minutes": gap / 60_000,
                "tokens_lost": context[rows] - read[rows],
                "cause": cause.astype(object),
            },
            columns=columns,
        )
        return cast("pd.DataFrame", table)
