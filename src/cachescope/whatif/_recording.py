"""`Recording`: a session as the cache saw it, built from a ledger or Claude Code logs, and its replays."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cachescope import pricing
from cachescope.whatif._calls import (
    TTL_SECONDS,
    Position,
    RecordedCall,
    _as_records,
    _MarkerCounter,
    _parse_time,
)
from cachescope.whatif._replay import (
    _cold,
    _cost_of,
    _cost_without,
    _keepalive,
    _layer_identities,
    _move_clock,
    _names,
    _OutputResponder,
    _send,
    _transform,
)
from cachescope.whatif._results import BreakEven, CallResult, ReplayResult, WhatIf


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
            **{"tool_use_system_prompt": False, **simulator_settings},  # positions hold it
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
