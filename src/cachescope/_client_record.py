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
from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import is_
from typing import Any

import orjson
import xxhash
from anthropic import Omit
from anthropic._types import NotGiven

from cachescope import pricing
from cachescope._blocks import LEVELS, Block, flatten_units
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
    """One chain's previous fingerprint, unit by unit (what an unchanged run of units reuses)."""

    __slots__ = ("ends", "entries", "keys", "levels", "seeds", "totals", "units")

    def __init__(
        self,
        units: list[tuple[Block, ...]],
        seeds: tuple[bytes, ...],
        ends: list[int],
        keys: list[int],
        levels: list[int],
        totals: list[int],
        entries: list[dict[str, Any]],
    ) -> None:
        self.units = units  # holds the unit tuples, so their identities stay theirs
        self.seeds = seeds
        self.ends = ends  # after unit i: how many entries,
        self.keys = keys  # the prefix key,
        self.levels = levels  # the last level whose settings are folded in,
        self.totals = totals  # and the token total
        self.entries = entries


class FingerprintCache:
    """The last fingerprint of each chain (session) of a client.

    A session sends its history again on every call: the units that `flatten_units` returns
    for it are the very tuples of the previous call (its per-unit memo), so the longest run of
    identical units — found with one identity check per unit, in C — takes the previous
    entries, prefix key and token total as they are, and only the units after it are walked.
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
    of units identical to the previous call of `chain` is taken from it whole; each other unit
    reached with a prefix key seen before reuses its entries and its key after from a memo.
    Records share those entry dicts (read-only by contract, see `CallRecord`): a copy per block
    per call cost more time than the rest of the fingerprint, and the retained copies made the
    garbage collector run twice as often.
    """
    if len(token_cache) > TOKEN_CACHE_LIMIT:
        token_cache.clear()
    flat, units = flatten_units(body, token_cache=token_cache)
    settings = flat.settings
    seeds = tuple(_settings_seed(settings.get(level, {})) for level in LEVELS)
    last = cache.get(chain) if cache is not None else None
    same = 0
    if last is not None and last.seeds == seeds:
        identical = list(map(is_, units, last.units))
        try:
            same = identical.index(False)
        except ValueError:
            same = len(identical)
    if same:
        assert last is not None
        entries = last.entries[: last.ends[same - 1]]
        ends, keys = last.ends[:same], last.keys[:same]
        levels, totals = last.levels[:same], last.totals[:same]
        key, level_done, total = keys[-1], levels[-1], totals[-1]
    else:
        entries, ends, keys, levels, totals = [], [], [], [], []
        key, level_done, total = 0, -1, 0
    memo = _UNIT_MEMO
    if len(memo) > _UNIT_MEMO_LIMIT:
        memo.clear()
    extend = entries.extend
    last_unit = units[-1] if units else None
    for unit in units[same:] if same else units:
        if unit:
            level = _LEVEL_INDEX[unit[0].level]
            while level_done < level:  # settings fold in where their level starts
                level_done += 1
                key = _xxh64(seeds[level_done], seed=key)
            hit = memo.get((id(unit), key))
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
                if uniform and unit is not last_unit:  # a request's last unit (the new
                    # turn) rarely comes back as it is: remembering it only feeds the GC
                    memo[(id(unit), start_key)] = (unit, tuple(built), tokens, key)
                extend(built)
                total += tokens
        ends.append(len(entries))
        keys.append(key)
        levels.append(level_done)
        totals.append(total)
    if cache is not None:
        cache.put(chain, _Last(units, seeds, ends, keys, levels, totals, entries))
        entries = entries.copy()  # the record's own list; the cache keeps its own
    if store_text:  # the text makes each entry the record's own
        entries = [{**entry, "text": block.text} for entry, block in zip(entries, flat.blocks)]
    return entries, total


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
