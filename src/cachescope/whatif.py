"""What-if replay: a recorded session through a fresh simulator under another layout.

A `Recording` is a session as the cache saw it: per call, the time it started, the model, and its
cache positions (identity, tokens, layer, breakpoint). It comes from a cachescope ledger (the
fingerprint every `CallRecord` keeps) or from a Claude Code session (`cachescope.logs`), where the
prompt is rebuilt from the usage numbers as an append-only chain that grows by each turn's new
tokens. Replaying keeps the original timing — the gaps between calls decide what expired — and
changes one thing at a time:

- `ttl="1h"` or `"5m"`: every breakpoint gets that TTL;
- `model="..."`: another model (its prices and minimum cacheable length);
- `stabilize="stable"` (or `"auto"`): the layer stops changing, as if its changing part (the
  timestamp) had moved to the dynamic layer in the user turn (`dynamic_tokens` tokens a turn);
- `move_to_user="dynamic"`: a system layer moves into the newest user turn (the Aura fix for a
  `dynamic_placement="system"` prompt);
- `prewarm=True`: a `max_tokens=0` pre-warm shortly before each call that would find the cache cold
  (saves time to first token, not money);
- `keepalive_minutes=N`: `max_tokens=0` pings during idle gaps of up to N minutes keep a 5-minute
  cache alive (each ping costs a read).

`Recording.compare()` puts the original and the replays side by side (cost, hit share, time to
first token); `Recording.break_even()` says whether 1h beats 5m for the observed gaps.

Replays use the simulator's rules and its latency model; request settings other than the model
(tool_choice, thinking, ...) are not in a fingerprint and are replayed as unchanged.
"""

from __future__ import annotations

import html
import itertools
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cachescope import pricing
from cachescope._modeldata import default_table
from cachescope._render import mimebundle

TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
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


@dataclass
class Recording:
    """A session's calls, ready to replay.

    Build one with `Recording.from_ledger(...)` or `Recording.from_logs(...)`.
    """

    calls: list[RecordedCall]
    name: str = "session"
    source: str = "ledger"

    def __post_init__(self) -> None:
        if not self.calls:
            raise ValueError(f"Recording {self.name!r} has no calls to replay.")
        self.calls.sort(key=lambda call: call.time)

    # -- constructors -----------------------------------------------------------------------

    @classmethod
    def from_ledger(cls, source: Any, session: str | None = None) -> Recording:
        """A session from a `Ledger`, a ledger file path or `CallRecord`s.

        Parameters
        ----------
        source:
            A `Ledger`, a path to a ledger JSONL file, or an iterable of `CallRecord`.
        session:
            Which session to take; may be omitted when the records hold only one.
        """
        records = [record for record in _as_records(source) if getattr(record, "ok", True)]
        sessions = sorted({record.session or "" for record in records})
        if session is None:
            if len(sessions) > 1:
                raise ValueError(
                    f"The ledger holds {len(sessions)} sessions ({', '.join(map(repr, sessions))}); "
                    "pass session=... to pick one."
                )
            session = sessions[0] if sessions else ""
        chosen = [record for record in records if (record.session or "") == session]
        if not chosen:
            raise ValueError(f"No successful calls of session {session!r} in the ledger.")
        calls = []
        for record in chosen:
            if not record.blocks:
                raise ValueError(
                    f"Call {record.message_id or record.time} has no fingerprint; it cannot be "
                    "replayed. Ledgers written by CachingClient keep one for every call."
                )
            positions = tuple(
                Position(
                    identity=str(block.get("hash")),
                    tokens=int(block.get("tokens") or 0),
                    level=str(block.get("level") or "messages"),
                    layer=block.get("layer"),
                    breakpoint=block.get("breakpoint"),
                )
                for block in record.blocks
            )
            calls.append(
                RecordedCall(
                    time=_parse_time(record.time),
                    model=record.model,
                    positions=positions,
                    output_tokens=int(record.output_tokens),
                    input_tokens=int(record.input_tokens),
                    cache_write_5m_tokens=int(record.ephemeral_5m_input_tokens),
                    cache_write_1h_tokens=int(record.ephemeral_1h_input_tokens),
                    cache_read_tokens=int(record.cache_read_input_tokens),
                    cost=record.cost,
                    ttft_ms=record.ttft_ms,
                )
            )
        return cls(calls, name=session or "session", source="ledger")

    @classmethod
    def from_logs(cls, frame: Any, session: str, *, agent: str | None = None) -> Recording:
        """A Claude Code session from `cachescope.logs.load(...)`'s DataFrame: its main chain, or
        the subagent `agent` (subagents keep caches of their own).

        The transcript has usage numbers but no prompt, so the prompt is rebuilt as an append-only
        chain: each turn adds a block of its new tokens (with the breakpoint) and a tail of its
        fresh tokens; a turn whose prompt shrinks (compaction) or whose model changes starts a new
        chain. Replaying the chain as recorded shows how close this model comes to the real usage.
        """
        rows = frame[frame["session"] == session]
        if "agent" in rows.columns:
            # logs.load marks the main chain with "" (older frames may hold None/NaN).
            main = rows["agent"].isna() | (rows["agent"] == "")
            rows = rows[main] if not agent else rows[rows["agent"] == agent]
        if rows.empty:
            raise ValueError(f"No calls of session {session!r} in the log DataFrame.")
        rows = rows.sort_values("timestamp")
        calls: list[RecordedCall] = []
        chain: list[Position] = []
        previous_total = 0
        previous_model = None
        for number, row in enumerate(rows.itertuples(index=False)):
            fresh = int(row.fresh)
            write_5m = int(row.write_5m)
            write_1h = int(row.write_1h)
            read = int(row.read)
            total = fresh + write_5m + write_1h + read
            ttl = "1h" if write_1h > write_5m else "5m"
            if not chain or total < previous_total or row.model != previous_model:
                chain = []
                growth = total - fresh
            else:
                growth = total - previous_total - fresh
            # Only the newest turn keeps its (rolling) breakpoint, as in a real conversation.
            positions = [replace(p, breakpoint=None) if p.breakpoint else p for p in chain]
            if growth > 0:
                positions.append(
                    Position(f"{session}:{number}:turn", growth, "messages", None, ttl)
                )
            elif positions:
                last = positions[-1]
                positions[-1] = replace(last, breakpoint=ttl)
            if fresh > 0:
                positions.append(
                    Position(f"{session}:{number}:tail", fresh, "messages", None, None)
                )
            if not any(p.breakpoint for p in positions) and positions:
                positions[-1] = replace(positions[-1], breakpoint=ttl)
            calls.append(
                RecordedCall(
                    time=_parse_time(row.timestamp),
                    model=str(row.model),
                    positions=tuple(positions),
                    output_tokens=int(row.output),
                    input_tokens=fresh,
                    cache_write_5m_tokens=write_5m,
                    cache_write_1h_tokens=write_1h,
                    cache_read_tokens=read,
                    cost=float(row.cost) if row.cost == row.cost else None,  # NaN → None
                )
            )
            chain = positions
            previous_total = total
            previous_model = row.model
        return cls(calls, name=session, source="claude-code")

    # -- facts of the recording ---------------------------------------------------------------

    def gaps(self) -> list[float]:
        """Seconds between consecutive calls."""
        times = [call.time for call in self.calls]
        return [later - earlier for earlier, later in itertools.pairwise(times)]

    def changing_layers(self) -> list[str]:
        """Cached layers before the last breakpoint whose content changes on most calls."""
        changes: dict[str, int] = {}
        for before, after in itertools.pairwise(self.calls):
            old = _layer_identities(before)
            new = _layer_identities(after)
            for layer, identities in new.items():
                if layer in old and old[layer] != identities and layer not in ("history", "user"):
                    changes[layer] = changes.get(layer, 0) + 1
        pairs = max(1, len(self.calls) - 1)
        return [layer for layer, count in changes.items() if count >= pairs / 2]

    def original(self) -> ReplayResult:
        """The recorded usage and cost, in the same shape as a replay."""
        rows = [
            CallResult(
                time=call.time,
                kind="call",
                model=call.model,
                input_tokens=call.input_tokens,
                cache_write_5m_tokens=call.cache_write_5m_tokens,
                cache_write_1h_tokens=call.cache_write_1h_tokens,
                cache_read_tokens=call.cache_read_tokens,
                output_tokens=call.output_tokens,
                cost=call.cost if call.cost is not None else _cost_of(call, call.model),
                cost_without_cache=_cost_without(call, call.model),
                ttft_ms=call.ttft_ms,
            )
            for call in self.calls
        ]
        return ReplayResult("original", {}, rows)

    # -- replay ---------------------------------------------------------------------------------

    def replay(
        self,
        *,
        ttl: str | None = None,
        model: str | None = None,
        stabilize: str | Sequence[str] | None = None,
        move_to_user: str | Sequence[str] | None = None,
        dynamic_tokens: int = 24,
        prewarm: bool = False,
        prewarm_lead_seconds: float = 30.0,
        keepalive_minutes: float | None = None,
        name: str | None = None,
        **simulator_settings: Any,
    ) -> ReplayResult:
        """Replay the session through a fresh simulator with one or more changes.

        Parameters
        ----------
        ttl:
            "5m" or "1h" for every breakpoint; None keeps the recorded TTLs.
        model:
            Another model for every call; None keeps the recorded ones.
        stabilize:
            Layer name(s) that stop changing ("auto" = `changing_layers()`); each call then
            carries `dynamic_tokens` tokens of moved-out dynamic text in its user turn.
        move_to_user:
            System layer name(s) moved into the newest user turn (after the history).
        dynamic_tokens:
            Size of the moved-out dynamic text per call for `stabilize`.
        prewarm:
            Send a `max_tokens=0` pre-warm `prewarm_lead_seconds` before each call whose cache
            would be cold (first call, or after a gap longer than its TTL).
        keepalive_minutes:
            During idle gaps up to this long, ping the previous prefix with `max_tokens=0` just
            before the TTL runs out, so the next call still reads it.
        **simulator_settings:
            Passed to `Simulator` (e.g. `lookback=20`).
        """
        from cachescope.sim import Simulator, VirtualClock

        options = {
            key: value
            for key, value in {
                "ttl": ttl,
                "model": model,
                "stabilize": stabilize,
                "move_to_user": move_to_user,
                "prewarm": prewarm or None,
                "keepalive_minutes": keepalive_minutes,
            }.items()
            if value is not None
        }
        if ttl is not None and ttl not in TTL_SECONDS:
            raise ValueError(f'ttl must be "5m" or "1h", not {ttl!r}.')
        stable_layers = _names(stabilize, auto=self.changing_layers)
        moved_layers = _names(move_to_user, auto=lambda: ["dynamic"])
        calls = _transform(self.calls, ttl, model, stable_layers, moved_layers, dynamic_tokens)

        clock = VirtualClock(start=calls[0].time - max(prewarm_lead_seconds, 1.0) - 1.0)
        simulator_settings.setdefault("retired_models", "serve")
        simulator_settings.setdefault("auto_advance", False)
        sim = Simulator(
            clock=clock,
            responder=_OutputResponder(),
            counter=_MarkerCounter(),
            **simulator_settings,
        )
        rows: list[CallResult] = []
        previous: RecordedCall | None = None
        for call in calls:
            if previous is not None and keepalive_minutes:
                rows.extend(_keepalive(sim, clock, previous, call, keepalive_minutes))
            if prewarm and _cold(previous, call):
                _move_clock(clock, call.time - prewarm_lead_seconds)
                rows.append(_send(sim, call, "prewarm", max_tokens=0))
            _move_clock(clock, call.time)
            rows.append(_send(sim, call, "call", max_tokens=max(1, call.output_tokens)))
            previous = call
        label = name or (", ".join(f"{k}={v}" for k, v in options.items()) or "replay as recorded")
        return ReplayResult(label, options, rows)

    def compare(self, scenarios: Mapping[str, Mapping[str, Any]] | None = None) -> WhatIf:
        """The original and a set of replays side by side.

        By default: the replay as recorded (how faithful the simulation is), 1h and 5m TTLs, the
        changing layers stabilized (when there are any), and pre-warming.
        """
        if scenarios is None:
            scenarios = {"replay as recorded": {}, "ttl=1h": {"ttl": "1h"}, "ttl=5m": {"ttl": "5m"}}
            busters = self.changing_layers()
            if busters:
                scenarios = {**scenarios, f"stabilize {', '.join(busters)}": {"stabilize": busters}}
            scenarios = {**scenarios, "pre-warm": {"prewarm": True}}
        results = [self.original()]
        results.extend(self.replay(name=label, **options) for label, options in scenarios.items())
        return WhatIf(self.name, results)

    def break_even(self) -> BreakEven:
        """Whether a 1h TTL beats 5m for this session's gaps, by simulation and by the rule."""
        gaps = self.gaps()
        model = self.calls[0].model
        rates = pricing.rates(model, warn=False)
        five = self.replay(ttl="5m", name="ttl=5m")
        hour = self.replay(ttl="1h", name="ttl=1h")
        return BreakEven(
            model=model,
            short_gaps=sum(1 for gap in gaps if gap <= TTL_SECONDS["5m"]),
            medium_gaps=sum(1 for gap in gaps if TTL_SECONDS["5m"] < gap <= TTL_SECONDS["1h"]),
            long_gaps=sum(1 for gap in gaps if gap > TTL_SECONDS["1h"]),
            cost_5m=five.cost,
            cost_1h=hour.cost,
            write_5m_rate=rates.cache_write_5m if rates else None,
            write_1h_rate=rates.cache_write_1h if rates else None,
            read_rate=rates.cache_read if rates else None,
        )


class _OutputResponder:
    """Replies with the recorded number of output tokens (carried in `max_tokens`)."""

    def __call__(self, request: Mapping[str, Any]) -> Any:
        from cachescope.sim import Reply, TextReply

        return Reply(
            [TextReply("(replayed reply)")], output_tokens=int(request.get("max_tokens") or 1)
        )


def _names(value: str | Sequence[str] | None, *, auto: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return list(auto()) if value == "auto" else [value]
    return list(value)


def _layer_identities(call: RecordedCall) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for position in call.positions:
        if position.level != "messages" and position.layer:
            found.setdefault(position.layer, []).append(position.identity)
    return {layer: tuple(identities) for layer, identities in found.items()}


def _transform(
    calls: Sequence[RecordedCall],
    ttl: str | None,
    model: str | None,
    stable_layers: Sequence[str],
    moved_layers: Sequence[str],
    dynamic_tokens: int,
) -> list[RecordedCall]:
    first_identity: dict[tuple[str, int], str] = {}
    # Per earlier call: (anchor index in the messages, identity at that index, moved-out blocks).
    anchors: list[tuple[int, str, list[Position]]] = []
    result: list[RecordedCall] = []
    for number, call in enumerate(calls):
        prefix: list[Position] = []
        messages: list[Position] = []
        moved: list[Position] = []
        seen_in_layer: dict[str, int] = {}
        for position in call.positions:
            if position.level != "messages" and position.layer in moved_layers:
                moved.append(replace(position, level="messages", breakpoint=None, layer="dynamic"))
                continue
            if position.level != "messages" and position.layer and position.layer in stable_layers:
                index = seen_in_layer.get(position.layer, 0)
                seen_in_layer[position.layer] = index + 1
                key = (position.layer, index)
                position = replace(
                    position, identity=first_identity.setdefault(key, position.identity)
                )
            (prefix if position.level != "messages" else messages).append(position)
        if stable_layers and any(
            p.layer in stable_layers for p in call.positions if p.level != "messages"
        ):
            moved.append(Position(f"dynamic:{number}", dynamic_tokens, "messages", "dynamic", None))
        # Earlier turns' moved-out blocks stay in the history where they were sent.
        rebuilt = list(messages)
        for anchor, identity, blocks in reversed(anchors):
            if anchor < len(messages) and messages[anchor].identity == identity:
                rebuilt[anchor:anchor] = blocks
        if moved and messages:
            anchors.append((len(messages) - 1, messages[-1].identity, moved))
            rebuilt[len(rebuilt) - 1 : len(rebuilt) - 1] = moved
        elif moved:
            rebuilt = moved + rebuilt
        positions = prefix + rebuilt
        if ttl is not None:
            positions = [replace(p, breakpoint=ttl) if p.breakpoint else p for p in positions]
        result.append(replace(call, positions=tuple(positions), model=model or call.model))
    return result


def _body(call: RecordedCall, max_tokens: int) -> dict[str, Any]:
    tools: list[dict[str, Any]] = []
    system: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    for number, position in enumerate(call.positions):
        marker = _placeholder(position)
        cache_control = (
            {"type": "ephemeral", "ttl": position.breakpoint} if position.breakpoint else None
        )
        if position.level == "tools":
            tool: dict[str, Any] = {
                "name": f"t{number}",
                "description": marker,
                "input_schema": {"type": "object"},
            }
            if cache_control:
                tool["cache_control"] = cache_control
            tools.append(tool)
            continue
        block: dict[str, Any] = {"type": "text", "text": marker}
        if cache_control:
            block["cache_control"] = cache_control
        (system if position.level == "system" else content).append(block)
    if not content:
        content.append({"type": "text", "text": "\u27e61\u27e7(empty turn)"})
    body: dict[str, Any] = {
        "model": call.model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": content}],
    }
    if tools:
        body["tools"] = tools
    if system:
        body["system"] = system
    return body


def _move_clock(clock: Any, when: float) -> None:
    if when > clock.now():
        clock.set(when)


def _cold(previous: RecordedCall | None, call: RecordedCall) -> bool:
    if previous is None:
        return True
    ttls = [TTL_SECONDS[p.breakpoint] for p in previous.positions if p.breakpoint in TTL_SECONDS]
    return call.time - previous.time > max(ttls or [TTL_SECONDS["5m"]])


def _keepalive(
    sim: Any, clock: Any, previous: RecordedCall, call: RecordedCall, limit_minutes: float
) -> list[CallResult]:
    gap = call.time - previous.time
    ttls = [TTL_SECONDS[p.breakpoint] for p in previous.positions if p.breakpoint in TTL_SECONDS]
    ttl = min(ttls or [TTL_SECONDS["5m"]])
    if gap <= ttl or gap > limit_minutes * 60.0:
        return []
    rows = []
    ping_at = previous.time + ttl - 15.0
    while ping_at < call.time - 1.0:
        _move_clock(clock, ping_at)
        rows.append(_send(sim, previous, "keepalive", max_tokens=0))
        ping_at += ttl - 15.0
    return rows


def _send(sim: Any, call: RecordedCall, kind: str, *, max_tokens: int) -> CallResult:
    outcome = sim.process(_body(call, max_tokens), api_key=REPLAY_API_KEY)
    usage = outcome.message["usage"]
    split = usage.get("cache_creation") or {}
    row = CallResult(
        time=sim.clock.now(),
        kind=kind,
        model=call.model,
        input_tokens=int(usage.get("input_tokens") or 0),
        cache_write_5m_tokens=int(split.get("ephemeral_5m_input_tokens") or 0),
        cache_write_1h_tokens=int(split.get("ephemeral_1h_input_tokens") or 0),
        cache_read_tokens=int(usage.get("cache_read_input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
    )
    row.cost = pricing.cost(row.counts(), call.model, when=row.time)
    row.cost_without_cache = pricing.cost_without_cache(row.counts(), call.model, when=row.time)
    row.ttft_ms = outcome.ttft_ms
    return row


def _cost_of(call: RecordedCall, model: str) -> float | None:
    return pricing.cost(call.counts(), model, when=call.time)


def _cost_without(call: RecordedCall, model: str) -> float | None:
    return pricing.cost_without_cache(call.counts(), model, when=call.time)


# ----------------------------------------------------------------------------------------------
# Results


@dataclass
class CallResult:
    """Usage, cost and time to first token of one replayed (or recorded) request."""

    time: float
    kind: str  # "call", "prewarm" or "keepalive"
    model: str
    input_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cache_read_tokens: int
    output_tokens: int
    cost: float | None = None
    cost_without_cache: float | None = None
    ttft_ms: float | None = None

    def counts(self) -> pricing.UsageCounts:
        """This request's usage, in the form `pricing` bills."""
        return _counts(self)

    @property
    def cache_write_tokens(self) -> int:
        return self.counts().cache_write_tokens

    @property
    def prompt_tokens(self) -> int:
        return self.counts().prompt_tokens


def _sum_or_none(values: Iterable[float | None]) -> float | None:
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value
    return total


@dataclass
class ReplayResult:
    """One scenario: every request it sent (calls, pre-warms, keep-alive pings)."""

    name: str
    options: dict[str, Any]
    rows: list[CallResult] = field(default_factory=list)

    @property
    def calls(self) -> list[CallResult]:
        return [row for row in self.rows if row.kind == "call"]

    @property
    def cost(self) -> float | None:
        return _sum_or_none(row.cost for row in self.rows)

    @property
    def cost_without_cache(self) -> float | None:
        return _sum_or_none(row.cost_without_cache for row in self.calls)

    @property
    def hit_share(self) -> float | None:
        """Cache reads / prompt tokens over the user's calls."""
        prompt = sum(row.prompt_tokens for row in self.calls)
        return sum(row.cache_read_tokens for row in self.calls) / prompt if prompt else None

    @property
    def extra_requests(self) -> int:
        return len(self.rows) - len(self.calls)

    def ttft_ms(self, quantile: float = 0.5) -> float | None:
        values = sorted(row.ttft_ms for row in self.calls if row.ttft_ms is not None)
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        return (
            float(
                statistics.quantiles(values, n=100, method="inclusive")[round(quantile * 100) - 1]
            )
            if 0 < quantile < 1
            else values[-1]
        )

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "time": pd.Timestamp(row.time, unit="s", tz="UTC"),
                    "kind": row.kind,
                    "model": row.model,
                    "fresh": row.input_tokens,
                    "write_5m": row.cache_write_5m_tokens,
                    "write_1h": row.cache_write_1h_tokens,
                    "read": row.cache_read_tokens,
                    "output": row.output_tokens,
                    "cost": row.cost,
                    "ttft_ms": row.ttft_ms,
                }
                for row in self.rows
            ]
        )


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.4f}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


@dataclass
class WhatIf:
    """The original session and its replays, side by side."""

    session: str
    results: list[ReplayResult]

    def __getitem__(self, name: str) -> ReplayResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(
            f"No scenario {name!r} (scenarios: {', '.join(r.name for r in self.results)})."
        )

    def rows(self) -> list[dict[str, Any]]:
        base = self.results[0].cost
        table = []
        for result in self.results:
            cost = result.cost
            table.append(
                {
                    "scenario": result.name,
                    "cost": cost,
                    "vs_original": (cost - base)
                    if (cost is not None and base is not None)
                    else None,
                    "cost_without_cache": result.cost_without_cache,
                    "hit_share": result.hit_share,
                    "ttft_p50_ms": result.ttft_ms(0.5),
                    "ttft_p90_ms": result.ttft_ms(0.9),
                    "extra_requests": result.extra_requests,
                }
            )
        return table

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows()).set_index("scenario")

    def to_dict(self) -> dict[str, Any]:
        return {"session": self.session, "scenarios": self.rows(), "caveat": CAVEAT}

    def chart(self) -> Any:
        """An altair bar chart of cost per scenario (needs the `notebook` extra)."""
        try:
            import altair as alt
            import pandas as pd
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError(
                "Charts need the notebook extra: pip install 'cachescope[notebook]'"
            ) from error
        frame = pd.DataFrame(
            [
                {
                    "scenario": row["scenario"],
                    "cost": row["cost"] or 0.0,
                    "hit share": row["hit_share"] or 0.0,
                }
                for row in self.rows()
            ]
        )
        return (
            alt.Chart(frame, title=f"What-if: {self.session}")
            .mark_bar()
            .encode(
                x=alt.X("cost:Q", title="cost (USD)"),
                y=alt.Y("scenario:N", sort=None, title=None),
                color=alt.Color("hit share:Q", scale=alt.Scale(scheme="greens", domain=[0, 1])),
                tooltip=[
                    "scenario",
                    alt.Tooltip("cost:Q", format="$.4f"),
                    alt.Tooltip("hit share:Q", format=".1%"),
                ],
            )
        )

    def __str__(self) -> str:
        header = f"{'scenario':<28} {'cost':>11} {'vs original':>12} {'hit share':>9} {'TTFT p50':>10} {'extra':>5}"
        lines = [f"What-if replays of {self.session!r}", header, "-" * len(header)]
        for row in self.rows():
            delta = row["vs_original"]
            lines.append(
                f"{row['scenario'][:28]:<28} {_money(row['cost']):>11} "
                f"{('' if delta is None else f'{delta:+,.4f}'):>12} {_percent(row['hit_share']):>9} "
                f"{_ms(row['ttft_p50_ms']):>10} {row['extra_requests']:>5}"
            )
        lines.append(CAVEAT)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cells = []
        for row in self.rows():
            delta = row["vs_original"]
            cells.append(
                "<tr>"
                f"<td>{html.escape(row['scenario'])}</td><td>{_money(row['cost'])}</td>"
                f"<td>{'' if delta is None else html.escape(f'{delta:+,.4f}')}</td>"
                f"<td>{_percent(row['hit_share'])}</td><td>{_ms(row['ttft_p50_ms'])}</td>"
                f"<td>{row['extra_requests']}</td></tr>"
            )
        return (
            f"<div class='cachescope-whatif'><b>What-if replays of {html.escape(self.session)}</b>"
            "<table><thead><tr><th>scenario</th><th>cost</th><th>vs original</th><th>hit share</th>"
            "<th>TTFT p50</th><th>extra requests</th></tr></thead><tbody>"
            + "".join(cells)
            + f"</tbody></table><p><small>{html.escape(CAVEAT)}</small></p></div>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return mimebundle(str(self), self._repr_html_(), include, exclude)


@dataclass
class BreakEven:
    """1h vs 5m for a session's gaps.

    With a 5-minute TTL every gap longer than 5 minutes rewrites the prefix (a 5m write instead of
    a read); with 1h only gaps beyond an hour do, but every write costs the 1h rate. So 1h wins when
    `medium_gaps × (write_5m − read) > (1 + long_gaps) × (write_1h − write_5m)`.
    """

    model: str
    short_gaps: int
    medium_gaps: int
    long_gaps: int
    cost_5m: float | None
    cost_1h: float | None
    write_5m_rate: float | None
    write_1h_rate: float | None
    read_rate: float | None

    @property
    def recommended(self) -> str | None:
        if self.cost_5m is None or self.cost_1h is None:
            return None
        return "1h" if self.cost_1h < self.cost_5m else "5m"

    @property
    def medium_gaps_needed(self) -> float | None:
        """Gaps of 5–60 minutes per write needed for 1h to pay off (by the rule above)."""
        write_5m, write_1h, read = self.write_5m_rate, self.write_1h_rate, self.read_rate
        if write_5m is None or write_1h is None or read is None:
            return None
        saved = write_5m - read
        if saved <= 0:
            return math.inf
        return (write_1h - write_5m) / saved * (1 + self.long_gaps)

    def __str__(self) -> str:
        needed = self.medium_gaps_needed
        rule = "" if needed is None else f"; 1h pays off from {needed:.2f} gaps of 5–60 min"
        return (
            f"Gaps: {self.short_gaps} ≤ 5 min, {self.medium_gaps} of 5–60 min, {self.long_gaps} > 1 h{rule}. "
            f"Simulated cost: 5m {_money(self.cost_5m)}, 1h {_money(self.cost_1h)} → "
            f"{self.recommended or 'unknown'} is cheaper."
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return mimebundle(str(self), f"<p>{html.escape(str(self))}</p>", include, exclude)


def model_minimum(model: str) -> int | None:
    """The model's minimum cacheable prompt length, from the model table."""
    info = default_table().lookup(model)
    return info.min_cacheable_tokens if info else None
