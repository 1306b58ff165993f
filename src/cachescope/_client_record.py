"""Turning one API call into a `CallRecord`: the per-call probe, the fingerprint and the numbers.

The probe is a context variable set around each logical call. Event hooks on the SDK's httpx
client (which run once per HTTP attempt, inside the SDK's retry loop) count attempts on it and keep
the last response's headers, so retries and the simulator's latency headers reach the record without
touching the transport. (SDK middleware would do the same but costs ~2 ms per call on a 100K-token
request.) Nothing here reads or keeps request headers, so API keys never reach a record.
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import time
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import is_
from typing import Any

import orjson
import xxhash
from anthropic import Omit
from anthropic._types import NotGiven

from cachescope import blocks as _blocks
from cachescope import pricing
from cachescope.blocks import (
    LEVELS,
    Block,
    _counter_for_model,
    flatten_units,
    head_keys,
    message_units,
    request_settings,
)
from cachescope.blocks import message_keys as _message_keys
from cachescope.ledger import CallRecord, format_time

TTFT_HEADER = "x-cachescope-ttft-ms"
TOTAL_HEADER = "x-cachescope-total-ms"
SIM_HEADER = "x-cachescope-simulator"

# Beyond this many remembered block token counts the memo is cleared (bounded memory).
TOKEN_CACHE_LIMIT = 200_000
# Error messages are kept for the reader, cut so a pathological one cannot bloat the ledger.
ERROR_MESSAGE_LIMIT = 2_000


@dataclass
class Probe:
    """What the middleware sees of one logical call (all its attempts)."""

    attempts: int = 0
    headers: Mapping[str, str] | None = None
    status: int | None = None
    started: float = field(default_factory=time.perf_counter)


current_probe: contextvars.ContextVar[Probe | None] = contextvars.ContextVar(
    "cachescope_probe", default=None
)


def _on_request(request: Any) -> None:
    probe = current_probe.get()
    if probe is not None:
        probe.attempts += 1


def _on_response(response: Any) -> None:
    probe = current_probe.get()
    if probe is not None:
        probe.headers, probe.status = response.headers, response.status_code


async def _on_request_async(request: Any) -> None:
    _on_request(request)


async def _on_response_async(response: Any) -> None:
    _on_response(response)


def install_probe_hooks(http_client: Any, *, is_async: bool) -> None:
    """Add the attempt-counting hooks to an httpx client (event hooks run once per HTTP attempt,
    inside the SDK's retry loop, and cost far less than SDK middleware)."""
    hooks = {name: list(value) for name, value in http_client.event_hooks.items()}
    hooks.setdefault("request", []).append(_on_request_async if is_async else _on_request)
    hooks.setdefault("response", []).append(_on_response_async if is_async else _on_response)
    http_client.event_hooks = hooks


# Types that are never the SDK's "not given" markers (checked first: `isinstance` is slow here).
_PLAIN_TYPES = frozenset({dict, list, tuple, str, int, float, bool, type(None)})
_MARKER_TYPES = (Omit, NotGiven)


def clean_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The request body without the SDK's "not given" markers, iterables made lists (once)."""
    out: dict[str, Any] = {}
    plain = _PLAIN_TYPES
    for key, value in body.items():
        kind = type(value)
        if kind is Omit or kind is NotGiven:
            continue
        if kind not in plain and isinstance(value, _MARKER_TYPES):
            continue
        out[key] = value
    return out


def materialize(body: dict[str, Any]) -> None:
    """Turn one-shot iterables (generators) of messages/system/tools into lists, in place, so
    fingerprinting does not consume what the SDK must send."""
    for key in ("messages", "system", "tools"):
        value = body.get(key)
        if value is None or type(value) in _PLAIN_TYPES:
            continue
        if not isinstance(value, (list, tuple, str, Mapping, Omit, NotGiven)):
            body[key] = list(value)


# Fingerprint entries of whole units (the tool list, the system prompt, one message), keyed by the
# identity of the unit's tuple of Blocks (flatten_units returns the *same* tuple for an unchanged
# unit at the same position) and the prefix key it starts from: (unit, entries, tokens, key after).
_UNIT_MEMO: dict[
    tuple[int, int], tuple[tuple[Block, ...], tuple[dict[str, Any], ...], int, int]
] = {}
_UNIT_MEMO_LIMIT = 20_000
_LEVEL_INDEX = {name: i for i, name in enumerate(LEVELS)}
_xxh64 = xxhash.xxh3_64_intdigest


def _settings_seed(settings: Mapping[str, Any]) -> bytes:
    """What `_blocks.prefix_keys` hashes for a level's settings (a test checks they agree)."""
    return orjson.dumps(settings, option=orjson.OPT_SORT_KEYS)


def _entry(block: Block, prefix: int) -> dict[str, Any]:
    return {
        "hash": f"{block.hash:016x}",
        "prefix": f"{prefix:016x}",
        "level": block.level,
        "path": block.path,
        "kind": block.kind,
        "role": block.role,
        "layer": block.layer,
        "tokens": block.tokens,
        "breakpoint": block.ttl,
    }


class _Last:
    """One chain's previous fingerprint, unit by unit (what an unchanged run of units reuses).

    The per-unit numbers are arrays, not lists of ints: between two calls the SDK and the
    transport churn through megabytes, so a list's int objects are out of the CPU caches by the
    next call, and slicing it touched every one of them. An array slice copies one run of memory.
    """

    __slots__ = (
        "ends",
        "entries",
        "flags",
        "head",
        "keys",
        "levels",
        "message_keys",
        "seeds",
        "settings",
        "totals",
        "units",
    )

    def __init__(
        self,
        units: list[tuple[Block, ...]] | None,
        seeds: tuple[bytes, ...],
        ends: array[int],
        keys: array[int],
        levels: array[int],
        totals: array[int],
        entries: list[dict[str, Any]],
        head: tuple[Any, Any] | None,
        message_keys: bytes | None,
        settings: dict[str, dict[str, Any]],
        flags: bool,
    ) -> None:
        # the unit tuples (so their identities stay theirs), or None after a tail-only call
        self.units = units
        self.seeds = seeds
        self.ends = ends  # after unit i: how many entries,
        self.keys = keys  # the prefix key,
        self.levels = levels  # the last level whose settings are folded in,
        self.totals = totals  # and the token total
        self.entries = entries
        self.head = head  # `head_keys` of the request (None: not keyable)
        self.message_keys = message_keys  # `message_keys` of its messages (None: not a list)
        self.settings = settings
        self.flags = flags  # images or citations anywhere in its messages


class FingerprintCache:
    """The last fingerprint of each chain (session) of a client.

    A session sends its history again on every call. Two ways reuse the previous call's work:

    * the tail path: the keys of the tool list, the system prompt and each message (every text
      hashed, one C pass, no memo) equal the previous call's up to the last few messages: the
      previous entries, prefix keys and token totals are taken as they are, and only the new
      messages are built. Nothing per block of the unchanged prefix is touched, which matters
      because by the next call it is out of the CPU caches;
    * otherwise the units that `flatten_units` returns are the very tuples of the previous call
      for unchanged content (its per-unit memo), so the longest run of identical units — one
      identity check per unit — is taken from the previous call, and the units after it walked.
    """

    LIMIT = 256  # chains remembered per client

    def __init__(self) -> None:
        self._last: dict[str | None, _Last] = {}

    def get(self, chain: str | None) -> _Last | None:
        return self._last.get(chain)

    def put(self, chain: str | None, last: _Last) -> None:
        if len(self._last) >= self.LIMIT and chain not in self._last:
            self._last.clear()
        self._last[chain] = last


# At most this many new messages go the tail path (each is built without a memo).
_TAIL_LIMIT = 8


def _seeds_of(settings: Mapping[str, Any]) -> tuple[bytes, ...]:
    return tuple([_settings_seed(settings.get(level, {})) for level in LEVELS])


def _has_flags(settings: Mapping[str, Mapping[str, Any]]) -> bool:
    return bool(settings["messages"].get("images") or settings["system"].get("citations"))


def fingerprint_blocks(
    body: Mapping[str, Any],
    token_cache: dict[int, int],
    store_text: bool,
    cache: FingerprintCache | None = None,
    chain: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Per-position fingerprint of a request (hash, cumulative prefix hash, level, path, kind,
    role, layer, tokens, breakpoint TTL — the keys of `Fingerprint.to_dict()`; text only with
    `store_text`) and the estimated prompt tokens.

    The prefix hashes are `_blocks.prefix_keys` computed unit by unit. With a `cache`, the run
    of units identical to the previous call of `chain` is taken from it whole (see
    `FingerprintCache`); each other unit reached with a prefix key seen before reuses its
    entries and its key after from a memo. Records share those entry dicts (read-only by
    contract, see `CallRecord`): a copy per block per call cost more time than the rest of the
    fingerprint, and the retained copies made the garbage collector run twice as often.
    """
    if len(token_cache) > TOKEN_CACHE_LIMIT:
        token_cache.clear()
    last = cache.get(chain) if cache is not None else None
    if last is not None and last.message_keys is not None and not store_text:
        assert cache is not None
        done = _fingerprint_tail(body, token_cache, cache, chain, last)
        if done is not None:
            return done
    flat, units = flatten_units(body, token_cache=token_cache)
    settings = flat.settings
    seeds = _seeds_of(settings)
    same = 0
    if last is not None and last.units is not None and last.seeds == seeds:
        identical = list(map(is_, units, last.units))
        try:
            same = identical.index(False)
        except ValueError:
            same = len(identical)
    state = _resume(last, same)
    _walk_units(units[same:] if same else units, seeds, state, memoize=True)
    entries = state.entries
    if cache is not None:
        messages = body.get("messages")
        head = message_keys = None
        # What the tail path of the next call needs. Only with the C keys: the pure twin encodes
        # every message in Python (~1.7 ms at 100K tokens, 20x the pure walk with its memo).
        if type(messages) is list and not store_text and _blocks._native is not None:
            head = head_keys(body, _counter_for_model(flat.model))
            message_keys = _message_keys(messages)[0]
        cache.put(chain, state.last(units, seeds, head, message_keys, settings))
        entries = entries.copy()  # the record's own list; the cache keeps its own
    if store_text:  # the text makes each entry the record's own
        entries = [{**entry, "text": block.text} for entry, block in zip(entries, flat.blocks)]
    return entries, state.total


def _fingerprint_tail(
    body: Mapping[str, Any],
    token_cache: dict[int, int],
    cache: FingerprintCache,
    chain: str | None,
    last: _Last,
) -> tuple[list[dict[str, Any]], int] | None:
    """The tail path of `fingerprint_blocks` (see `FingerprintCache`), or None where it does not
    apply: another tool list or system prompt, other settings, images or citations in the
    previous call, or more than `_TAIL_LIMIT` new messages."""
    messages = body.get("messages")
    if type(messages) is not list or last.flags or last.message_keys is None:
        return None
    counter = _counter_for_model(str(body.get("model", "")))
    head = head_keys(body, counter)
    if head is None or head != last.head:
        return None
    message_keys, same = _message_keys(messages, last.message_keys)
    units_same = (head[0] is not None) + (head[1] is not None) + same
    if not units_same or len(messages) - same > _TAIL_LIMIT or units_same > len(last.ends):
        return None
    start = last.ends[units_same - 1]
    tail, images, citations = message_units(messages, same, start, counter, token_cache)
    previous = last.settings
    settings = request_settings(
        body,
        has_images=images,
        toggles=previous["system"].get("server_tools", ()),
        citations=citations,
    )
    seeds = last.seeds if settings == previous else _seeds_of(settings)
    if seeds != last.seeds:
        return None
    state = _resume(last, units_same)
    _walk_units(tail, seeds, state, memoize=False)
    cache.put(chain, state.last(None, seeds, head, message_keys, settings))
    return state.entries.copy(), state.total


class _WalkState:
    """The fingerprint being built, unit by unit (the fields of `_Last` under construction)."""

    __slots__ = ("ends", "entries", "key", "keys", "level_done", "levels", "total", "totals")

    def __init__(
        self,
        entries: list[dict[str, Any]],
        ends: array[int],
        keys: array[int],
        levels: array[int],
        totals: array[int],
    ) -> None:
        self.entries = entries
        self.ends, self.keys, self.levels, self.totals = ends, keys, levels, totals
        self.key = keys[-1] if keys else 0
        self.level_done = levels[-1] if levels else -1
        self.total = totals[-1] if totals else 0

    def last(
        self,
        units: list[tuple[Block, ...]] | None,
        seeds: tuple[bytes, ...],
        head: tuple[Any, Any] | None,
        message_keys: bytes | None,
        settings: dict[str, dict[str, Any]],
    ) -> _Last:
        return _Last(
            units,
            seeds,
            self.ends,
            self.keys,
            self.levels,
            self.totals,
            self.entries,
            head,
            message_keys,
            settings,
            _has_flags(settings),
        )


def _resume(last: _Last | None, same: int) -> _WalkState:
    """The state after the first `same` units of the previous call (nothing when 0)."""
    if not same or last is None:
        return _WalkState([], array("q"), array("Q"), array("b"), array("q"))
    return _WalkState(
        last.entries[: last.ends[same - 1]],
        last.ends[:same],
        last.keys[:same],
        last.levels[:same],
        last.totals[:same],
    )


def _walk_units(
    units: list[tuple[Block, ...]], seeds: tuple[bytes, ...], state: _WalkState, memoize: bool
) -> None:
    """Add the entries of `units` to `state`: each block's prefix key folds in the settings of
    its level where that level starts, then the block's hash. With `memoize`, a unit reached
    with a prefix key seen before (the same tuple) takes its entries from `_UNIT_MEMO`."""
    memo = _UNIT_MEMO
    if len(memo) > _UNIT_MEMO_LIMIT:
        memo.clear()
    entries = state.entries
    extend = entries.extend
    ends, keys, levels, totals = state.ends, state.keys, state.levels, state.totals
    key, level_done, total = state.key, state.level_done, state.total
    last_unit = units[-1] if units else None
    for unit in units:
        if unit:
            level = _LEVEL_INDEX[unit[0].level]
            while level_done < level:  # settings fold in where their level starts
                level_done += 1
                key = _xxh64(seeds[level_done], seed=key)
            hit = memo.get((id(unit), key)) if memoize else None
            if hit is not None and hit[0] is unit:
                extend(hit[1])
                total += hit[2]
                key = hit[3]
            else:
                start_key = key
                built: list[dict[str, Any]] = []
                tokens = 0
                uniform = True
                for block in unit:
                    block_level = _LEVEL_INDEX[block.level]
                    if block_level != level:  # never for flatten's units; kept exact all the same
                        uniform = False
                        while level_done < block_level:
                            level_done += 1
                            key = _xxh64(seeds[level_done], seed=key)
                    key = _xxh64(block.hash.to_bytes(8, "little"), seed=key)
                    built.append(_entry(block, key))
                    tokens += block.tokens
                if memoize and uniform and unit is not last_unit:  # a request's last unit (the
                    # new turn) rarely comes back as it is: remembering it only feeds the GC
                    memo[(id(unit), start_key)] = (unit, tuple(built), tokens, key)
                extend(built)
                total += tokens
        ends.append(len(entries))
        keys.append(key)
        levels.append(level_done)
        totals.append(total)
    state.key, state.level_done, state.total = key, level_done, total


_WANTED = (b"request-id", TTFT_HEADER.encode(), TOTAL_HEADER.encode())
_WANTED_SET = frozenset(_WANTED)


def _read_headers(headers: Any) -> tuple[str | None, ...]:
    """`headers.get(name)` for request-id, the TTFT and the total latency, in one pass.

    httpx's `Headers.get` re-derives the encoding for every header it looks at (~8 µs a lookup);
    one pass over `.raw` gives the same strings: the values of a name joined with ", ", decoded
    — ASCII reads the same in every encoding httpx picks; anything else goes through `.get`.
    """
    raw = getattr(headers, "raw", None)
    if type(raw) is not list:
        return tuple(headers.get(name.decode()) for name in _WANTED)
    found: dict[bytes, list[bytes]] = {}
    wanted = _WANTED_SET
    for key, value in raw:
        name = key.lower()
        if name in wanted:
            if name in found:
                found[name].append(value)
            else:
                found[name] = [value]
    out: list[str | None] = []
    for name in _WANTED:
        values = found.get(name)
        if values is None:
            out.append(None)
        elif len(values) == 1 and values[0].isascii():
            out.append(values[0].decode("ascii"))
        elif all(value.isascii() for value in values):
            out.append(", ".join([value.decode("ascii") for value in values]))
        else:
            out.append(headers.get(name.decode()))
    return tuple(out)


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def new_record(
    *,
    now: float,
    model: str,
    backend: str,
    session: str | None,
    stream: bool,
    previous_message_id: str | None,
    blocks: list[dict[str, Any]],
    prompt_tokens: int,
) -> CallRecord:
    return CallRecord(
        time=format_time(now),
        model=model,
        backend=backend,
        session=session,
        stream=stream,
        previous_message_id=previous_message_id,
        blocks=blocks,
        prompt_tokens_estimate=prompt_tokens,
    )


def _get(source: Any, name: str) -> Any:
    if source is None:
        return None
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


_DAYS: dict[str, _dt.date] = {}


def _record_day(stamp: str) -> _dt.date | str:
    """The UTC day of a `format_time` stamp (what `pricing` would parse from it), memoized."""
    if len(stamp) != 24 or stamp[10] != "T" or stamp[-1] != "Z":
        return stamp  # not ours: let pricing parse it
    day = _DAYS.get(stamp[:10])
    if day is None:
        if len(_DAYS) > 1024:
            _DAYS.clear()
        day = _DAYS[stamp[:10]] = _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).date()
    return day


def fill_usage(record: CallRecord, usage: Any) -> None:
    """Copy every usage field (5m/1h split included) and the costs onto the record."""
    if usage is None:
        return
    counts = pricing.usage_counts(usage)
    record.input_tokens = counts.input_tokens
    record.cache_read_input_tokens = counts.cache_read_tokens
    record.output_tokens = counts.output_tokens
    record.ephemeral_5m_input_tokens = counts.cache_write_5m_tokens
    record.ephemeral_1h_input_tokens = counts.cache_write_1h_tokens
    get = pricing._getter(usage)  # one Mapping check for the object, not one per field
    record.cache_creation_input_tokens = int(
        get(usage, "cache_creation_input_tokens") or counts.cache_write_tokens
    )
    record.service_tier = counts.service_tier
    record.speed = counts.speed
    record.inference_geo = counts.inference_geo
    server_tools = get(usage, "server_tool_use")
    for name in ("web_search_requests", "web_fetch_requests"):
        value = _get(server_tools, name)
        if value:
            record.extra[name] = int(value)
    # = pricing.cost(...) and pricing.cost_without_cache(...), the rates looked up once
    record.cost, record.cost_without_cache = pricing._costs(
        counts, record.model, when=_record_day(record.time)
    )
    if record.cost is not None and record.cost_without_cache is not None:
        record.savings = record.cost_without_cache - record.cost


def fill_message(record: CallRecord, message: Any) -> None:
    """Usage, id, stop reason and the server's cache diagnosis from an SDK `Message`."""
    record.message = message
    if message is None:
        record.message_id = record.stop_reason = None
        return
    get = pricing._getter(message)
    record.message_id = get(message, "id")
    record.stop_reason = get(message, "stop_reason")
    fill_usage(record, get(message, "usage"))
    reason = _get(get(message, "diagnostics"), "cache_miss_reason")
    if reason is not None:
        record.cache_miss_reason = _get(reason, "type")
        missed = _get(reason, "cache_missed_input_tokens")
        record.cache_missed_input_tokens = int(missed) if missed is not None else None


def fill_timing(record: CallRecord, probe: Probe, first_token: float | None, end: float) -> None:
    """Latency from the simulator's headers when present, else measured around the call."""
    headers = probe.headers
    record.retries = max(0, probe.attempts - 1)
    ttft = total = None
    if headers is not None:
        record.request_id, ttft_text, total_text = _read_headers(headers)
        ttft, total = _float(ttft_text), _float(total_text)
    if ttft is not None or total is not None:
        record.ttft_ms, record.latency_ms = ttft, total
        record.latency_source = "simulator"
        return
    record.latency_ms = (end - probe.started) * 1000.0
    record.ttft_ms = (first_token - probe.started) * 1000.0 if first_token is not None else None
    record.latency_source = "measured"


def fill_error(record: CallRecord, error: BaseException) -> None:
    record.ok = False
    record.error_type = type(error).__name__
    status = getattr(error, "status_code", None)
    record.error_status = int(status) if isinstance(status, int) else None
    record.error_message = str(error)[:ERROR_MESSAGE_LIMIT]
    body = getattr(error, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error")
        kind = inner.get("type") if isinstance(inner, Mapping) else body.get("type")
        record.api_error_type = str(kind) if kind else None
    request_id = getattr(error, "request_id", None)
    if request_id and not record.request_id:
        record.request_id = str(request_id)


class StreamWatcher:
    """Follows a raw SSE event stream to build the record when it ends (or breaks)."""

    def __init__(self) -> None:
        self.first_token: float | None = None
        self.message: Any = None
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None

    def see(self, event: Any) -> None:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            self.message = event.message
            usage = getattr(event.message, "usage", None)
            if usage is not None:
                self.usage = usage.to_dict() if hasattr(usage, "to_dict") else dict(usage)
        elif kind == "content_block_start" or kind == "content_block_delta":
            if self.first_token is None:
                self.first_token = time.perf_counter()
        elif kind == "message_delta":
            usage = getattr(event, "usage", None)
            if usage is not None:
                # Counts in message_delta are cumulative and overwrite when present (spec §3.3).
                for key, value in usage.to_dict().items():
                    if value is not None:
                        self.usage[key] = value
            delta = getattr(event, "delta", None)
            self.stop_reason = getattr(delta, "stop_reason", None) or self.stop_reason

    def fill(self, record: CallRecord) -> None:
        if self.message is not None:
            record.message_id = getattr(self.message, "id", None)
            reason = _get(getattr(self.message, "diagnostics", None), "cache_miss_reason")
            if reason is not None:
                record.cache_miss_reason = _get(reason, "type")
                missed = _get(reason, "cache_missed_input_tokens")
                record.cache_missed_input_tokens = int(missed) if missed is not None else None
        record.stop_reason = self.stop_reason
        if self.usage:
            fill_usage(record, self.usage)
