"""One replay step: a recorded call rewritten under a scenario and sent through the simulator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from cachescope import pricing
from cachescope.whatif._calls import (
    REPLAY_API_KEY,
    TTL_SECONDS,
    Position,
    RecordedCall,
    _placeholder,
)
from cachescope.whatif._results import CallResult


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
