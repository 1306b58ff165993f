"""What a recorded call is: its cache positions, usage and time, and the replay token counter."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cachescope import pricing
from cachescope._modeldata import default_table
from cachescope.blocks import TTL_SECONDS as TTL_SECONDS

if TYPE_CHECKING:
    from cachescope.whatif._results import CallResult

_MARKER_RE = re.compile(r"\u27e6(\d+)\u27e7")
REPLAY_API_KEY = "whatif-replay"

CAVEAT = (
    "A replay follows the simulator's rules and the recorded timing; it is an estimate of what the "
    "API would have billed, not a quote."
)


# ----------------------------------------------------------------------------------------------
# The recording


@dataclass(frozen=True, slots=True)
class Position:
    """One cache position of a recorded call."""

    identity: str
    tokens: int
    level: str = "messages"
    layer: str | None = None
    breakpoint: str | None = None


@dataclass(frozen=True)
class RecordedCall:
    """One call of a recorded session, with what it used and cost at the time."""

    time: float
    model: str
    positions: tuple[Position, ...]
    output_tokens: int
    input_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    cost: float | None = None
    ttft_ms: float | None = None

    def counts(self) -> pricing.UsageCounts:
        """The recorded usage, in the form `pricing` bills."""
        return _counts(self)


def _counts(usage: RecordedCall | CallResult) -> pricing.UsageCounts:
    return pricing.UsageCounts(
        usage.input_tokens,
        usage.cache_write_5m_tokens,
        usage.cache_write_1h_tokens,
        usage.cache_read_tokens,
        usage.output_tokens,
    )


class _MarkerCounter:
    """Token counter for replay bodies: each placeholder carries its own token count."""

    def count(self, text: str) -> int:
        return sum(int(found) for found in _MARKER_RE.findall(text))


def _placeholder(position: Position) -> str:
    return f"\u27e6{position.tokens}\u27e7{position.identity}"


def _parse_time(value: Any) -> float:
    import datetime as _dt

    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, _dt.datetime):
        return value.timestamp()
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = _dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.timezone.utc)
    return parsed.timestamp()


def _as_records(source: Any) -> list[Any]:
    from cachescope.ledger import Ledger

    if isinstance(source, Ledger):
        return list(source.records)
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        return list(Ledger(source).records)
    return list(source)


def model_minimum(model: str) -> int | None:
    """The model's minimum cacheable prompt length, from the model table."""
    info = default_table().lookup(model)
    return info.min_cacheable_tokens if info else None
