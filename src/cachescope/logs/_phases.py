"""Phases: change points in the daily reads-per-fresh-token series, by binary segmentation.

The series is the log of reads / fresh per day (days with both). Binary segmentation splits a
segment where the drop in squared error is largest, while that drop beats a penalty of
`3 * sigma^2 * ln(n)` (sigma from the median absolute day-to-day change, robust to the jumps
themselves) and each side keeps at least `MIN_DAYS` days. A phase's level is its total reads over
its total fresh tokens (a ratio of sums, not a mean of ratios).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_DAYS = 3
PENALTY_FACTOR = 3.0


@dataclass(frozen=True)
class Phase:
    """Days `start` through `end` (ISO dates) with `level` reads per fresh token."""

    start: str
    end: str
    days: int
    level: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "days": self.days,
            "readsPerFreshToken": round(self.level, 3),
        }


def change_points(
    values: np.ndarray[Any, Any], min_size: int = MIN_DAYS, penalty: float | None = None
) -> list[int]:
    """Indices where a new segment starts (0 excluded), by penalised binary segmentation."""
    n = len(values)
    if n < 2 * min_size:
        return []
    if penalty is None:
        diffs = np.abs(np.diff(values))
        sigma = 1.4826 * float(np.median(diffs)) / math.sqrt(2) if len(diffs) else 0.0
        sigma2 = max(sigma * sigma, 1e-4)
        penalty = PENALTY_FACTOR * sigma2 * math.log(n)
    prefix = np.concatenate([[0.0], np.cumsum(values)])
    prefix2 = np.concatenate([[0.0], np.cumsum(values * values)])

    def cost(a: int, b: int) -> float:
        s = prefix[b] - prefix[a]
        return float(prefix2[b] - prefix2[a] - s * s / (b - a))

    found: list[int] = []
    pending = [(0, n)]
    while pending:
        a, b = pending.pop()
        if b - a < 2 * min_size:
            continue
        whole = cost(a, b)
        best, best_gain = -1, 0.0
        for k in range(a + min_size, b - min_size + 1):
            gain = whole - cost(a, k) - cost(k, b)
            if gain > best_gain:
                best, best_gain = k, gain
        if best != -1 and best_gain > penalty:
            found.append(best)
            pending.extend([(a, best), (best, b)])
    return sorted(found)


def find_phases(
    days: list[str], read: np.ndarray[Any, Any], fresh: np.ndarray[Any, Any]
) -> list[Phase]:
    """Phases of a daily series (`days` sorted ISO dates, with their read and fresh token sums)."""
    usable = [i for i in range(len(days)) if fresh[i] > 0 and read[i] > 0]
    if not usable:
        return []
    values = np.log(np.array([read[i] / fresh[i] for i in usable], dtype=np.float64))
    bounds = [0, *change_points(values), len(usable)]
    phases = []
    for a, b in itertools.pairwise(bounds):
        members = usable[a:b]
        level = float(sum(read[i] for i in members)) / float(sum(fresh[i] for i in members))
        phases.append(Phase(days[members[0]], days[members[-1]], len(members), level))
    return phases
