"""Injected faults: what the network and the API do on a bad day (spec §6).

A `Fault` fires on given call numbers (1-based, counting every HTTP attempt that reaches the
simulator, retries included) and/or with a probability drawn from the simulator's seeded RNG. The
transport applies them, so the real SDK sees real status codes, headers and exceptions and runs its
own retry loop.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal[
    "rate_limit",  # 429 rate_limit_error with retry-after
    "overloaded",  # 529 overloaded_error
    "server_error",  # 500 api_error
    "gateway_timeout",  # 504 timeout_error
    "timeout",  # the transport raises a read timeout
    "disconnect",  # the connection drops before any response
    "stream_disconnect",  # the connection drops in the middle of an SSE stream
    "stream_overloaded",  # an `error` event (overloaded_error) inside a 200 SSE stream
]

FAULT_KINDS: tuple[str, ...] = (
    "rate_limit",
    "overloaded",
    "server_error",
    "gateway_timeout",
    "timeout",
    "disconnect",
    "stream_disconnect",
    "stream_overloaded",
)

STATUS_OF: dict[str, int] = {
    "rate_limit": 429,
    "overloaded": 529,
    "server_error": 500,
    "gateway_timeout": 504,
}

MESSAGE_OF: dict[str, str] = {
    "rate_limit": "Number of request tokens has exceeded your per-minute rate limit "
    "(simulated by cachescope).",
    "overloaded": "Overloaded",
    "server_error": "Internal server error",
    "gateway_timeout": "Request timed out",
}


@dataclass(frozen=True)
class Fault:
    """One kind of failure to inject.

    Parameters
    ----------
    kind:
        One of "rate_limit" (429), "overloaded" (529), "server_error" (500), "gateway_timeout"
        (504), "timeout" (the HTTP read times out), "disconnect" (connection dropped before a
        response), "stream_disconnect" (dropped in the middle of a stream; non-streaming requests
        see "disconnect"), "stream_overloaded" (an `error` event inside a streaming 200).
    calls:
        1-based numbers of the HTTP attempts that fail (retries count as attempts).
    probability:
        Chance, per attempt, of failing (drawn from the simulator's seeded RNG).
    endpoint:
        "messages", "count_tokens" or "any".
    retry_after_ms:
        Overrides the simulator's `retry_after_ms` setting for this fault.
    """

    kind: FaultKind
    calls: tuple[int, ...] = ()
    probability: float = 0.0
    endpoint: Literal["messages", "count_tokens", "any"] = "messages"
    retry_after_ms: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"Unknown fault kind {self.kind!r}; use one of {FAULT_KINDS}.")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"Fault probability must be in [0, 1]; got {self.probability}.")
        object.__setattr__(self, "calls", tuple(self.calls))


class FaultPlan:
    """The faults of one simulator, with the attempt counter and the seeded RNG."""

    def __init__(self, faults: Iterable[Fault] | Fault | None, seed: int) -> None:
        if isinstance(faults, Fault):
            faults = [faults]
        self.faults = list(faults or ())
        self.random = random.Random(seed)
        self.attempts = 0

    def next(self, endpoint: str) -> Fault | None:
        """Count one attempt and return the fault that fires on it, if any."""
        self.attempts += 1
        number = self.attempts
        for fault in self.faults:
            if fault.endpoint != "any" and fault.endpoint != endpoint:
                continue
            if number in fault.calls:
                return fault
            if fault.probability and self.random.random() < fault.probability:
                return fault
        return None
