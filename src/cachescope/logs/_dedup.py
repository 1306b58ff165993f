"""Counting each API response once: which rows survive de-duplication.

Two steps, both independent of the order the files were read in:
1. One line per key `(message.id, requestId)` (`message.id` alone without a request id): the
   largest token total wins (a streamed response's last line), then the line that has `speed`,
   then a main-chain line, then the earliest, then the first read.
2. Then by `message.id`: a subagent that replays a parent's response writes it again under another
   request id. If any response of a message id is on the main chain, every sidechain response of
   it is such a copy and is dropped. If all are sidechain, one stands: the earliest, then the
   largest total, then the one with `speed`, then the smallest key.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cachescope.logs._scan import FLAG_HAS_SPEED, FLAG_SIDECHAIN

TOKENS = ("fresh", "write_5m", "write_1h", "read", "output")


def best_lines(
    columns: dict[str, np.ndarray[Any, Any]], within: np.ndarray[Any, Any] | None = None
) -> np.ndarray[Any, Any]:
    """Step 1: the rows kept, one per key (per key and `within` value when given), ascending.

    Applied per file first (in the worker that read it) and then to all files: the same rows
    stand as in one pass, since every preference, down to the first read, is a total order.
    """
    key = columns["key"]
    n = len(key)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    total: np.ndarray[Any, Any] = np.sum([columns[name] for name in TOKENS], axis=0)
    without_speed = (columns["flags"] & FLAG_HAS_SPEED) == 0
    sidechain = (columns["flags"] & FLAG_SIDECHAIN) != 0
    # The first three preferences packed into one integer (a response's total stays far below
    # 2**60); np.lexsort is stable and sorts by its last key first, so among equal ones the
    # first read comes first.
    preference = ((total.max() - total) << 2) | (without_speed << 1) | sidechain
    if within is None:
        order = np.lexsort((columns["time"], preference, key))
        first = np.ones(n, dtype=bool)
        first[1:] = key[order][1:] != key[order][:-1]
    else:
        order = np.lexsort((columns["time"], preference, key, within))
        first = np.ones(n, dtype=bool)
        first[1:] = (key[order][1:] != key[order][:-1]) | (within[order][1:] != within[order][:-1])
    return np.sort(order[first])


def deduplicate(
    columns: dict[str, np.ndarray[Any, Any]],
) -> tuple[np.ndarray[Any, Any], int, int]:
    """Indices of the rows to keep (in input order), the duplicates and the replays dropped."""
    n = len(columns["key"])
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0, 0
    kept = best_lines(columns)
    duplicates = n - len(kept)
    key, time = columns["key"], columns["time"]
    total: np.ndarray[Any, Any] = np.sum([columns[name] for name in TOKENS], axis=0)
    without_speed = (columns["flags"] & FLAG_HAS_SPEED) == 0
    sidechain = (columns["flags"] & FLAG_SIDECHAIN) != 0

    # 2. by message id
    side = sidechain[kept]
    _, group = np.unique(columns["message"][kept], return_inverse=True)
    group = group.reshape(-1)
    has_main = np.zeros(int(group.max()) + 1, dtype=bool)
    has_main[group[~side]] = True
    replay = side & has_main[group]
    alone = np.flatnonzero(side & ~has_main[group])  # responses of all-sidechain message ids
    if len(alone):
        rows = kept[alone]
        order = np.lexsort((key[rows], without_speed[rows], -total[rows], time[rows], group[alone]))
        ranked = group[alone][order]
        later = np.zeros(len(order), dtype=bool)
        later[1:] = ranked[1:] == ranked[:-1]
        replay[alone[order[later]]] = True
    survivors = np.sort(kept[~replay])
    return survivors, duplicates, int(replay.sum())
