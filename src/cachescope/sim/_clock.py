"""Clocks for the simulator: the real wall clock, or a virtual one that only moves when told.

A cache entry's lifetime runs from the start of the request that wrote or read it (spec §1.6), so
every request is stamped with `clock.now()` on arrival. With a `VirtualClock` a notebook can show a
5-minute expiry without waiting five minutes, and simulated latency is never slept.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Anything with `now() -> float` (seconds since the Unix epoch)."""

    def now(self) -> float: ...


class RealClock:
    """The wall clock (`time.time()`)."""

    virtual = False

    def now(self) -> float:
        return time.time()

    def today(self) -> _dt.date:
        return _dt.date.today()

    def __repr__(self) -> str:
        return "RealClock()"


class VirtualClock:
    """A clock that stands still until `advance` moves it.

    Parameters
    ----------
    start:
        Seconds since the Unix epoch to start at; by default the real time at construction, so
        dates (model retirement) stay meaningful.

    Examples
    --------
    >>> clock = VirtualClock(start=0.0)
    >>> clock.advance(minutes=6)
    360.0
    """

    virtual = True

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def today(self) -> _dt.date:
        return _dt.datetime.fromtimestamp(self._now, tz=_dt.timezone.utc).date()

    def advance(
        self, seconds: float = 0.0, *, minutes: float = 0.0, hours: float = 0.0, ms: float = 0.0
    ) -> float:
        """Move the clock forward and return the new time. Negative steps are refused."""
        step = seconds + minutes * 60.0 + hours * 3600.0 + ms / 1000.0
        if step < 0:
            raise ValueError(f"A VirtualClock only moves forward; got a step of {step} s.")
        with self._lock:
            self._now += step
            return self._now

    def set(self, when: float) -> None:
        """Jump to an absolute time (seconds since the epoch), forward only."""
        self.advance(when - self._now)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now:.3f})"


def today_of(clock: Clock) -> _dt.date:
    today = getattr(clock, "today", None)
    if callable(today):
        result = today()
        if isinstance(result, _dt.date):
            return result
    return _dt.datetime.fromtimestamp(clock.now(), tz=_dt.timezone.utc).date()


def is_virtual(clock: Clock) -> bool:
    return bool(getattr(clock, "virtual", False))
