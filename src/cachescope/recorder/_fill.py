"""The fields of a `CallRecord`: the request's fingerprint, and what a response or an error says.

Every figure comes from its one home: cache positions and token estimates from
`cachescope.blocks.flatten`, money from `cachescope.pricing`. Nothing here reads request headers,
so no API key can reach a record.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from cachescope import pricing
from cachescope.blocks import Block, flatten
from cachescope.fingerprints import entry
from cachescope.ledger import CallRecord

TTFT_HEADER = b"x-cachescope-ttft-ms"
TOTAL_HEADER = b"x-cachescope-total-ms"
SIM_HEADER = b"x-cachescope-simulator"
REQUEST_ID_HEADER = b"request-id"
SHOULD_RETRY_HEADER = b"x-should-retry"
CONTENT_TYPE_HEADER = b"content-type"
CONTENT_ENCODING_HEADER = b"content-encoding"

# Error messages are kept for the reader, cut so a pathological one cannot bloat the ledger.
ERROR_MESSAGE_LIMIT = 2_000


# Entries of unchanged blocks are shared between records (read-only by contract, see
# `CallRecord`): `flatten` returns the same `Block` for unchanged content, so an entry is found by
# the block's identity and its prefix key. The block is kept with its entry, so its id stays its.
EntryMemo = dict[tuple[int, int, bool], tuple[Block, dict[str, Any]]]
ENTRY_MEMO_LIMIT = 50_000


def fingerprint(
    params: Mapping[str, Any], store_text: bool, memo: EntryMemo | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Per cache position: hash, cumulative prefix hash, level, path, kind, role, layer, tokens and
    breakpoint TTL (the keys of `Fingerprint.to_dict()`; the text only with `store_text`), and the
    estimated prompt tokens."""
    flat = flatten(params)
    if memo is None:
        memo = {}
    elif len(memo) > ENTRY_MEMO_LIMIT:
        memo.clear()
    entries: list[dict[str, Any]] = []
    append = entries.append
    total = 0
    for block, prefix in zip(flat.blocks, flat.prefix_keys()):
        total += block.tokens
        key = (id(block), prefix, store_text)
        hit = memo.get(key)
        if hit is not None and hit[0] is block:
            append(hit[1])
            continue
        item = entry(block, prefix, block.ttl, store_text)
        memo[key] = (block, item)
        append(item)
    return entries, total


def _get(source: Any, name: str) -> Any:
    if source is None:
        return None
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def read_headers(headers: Any) -> dict[bytes, str]:
    """The response headers the recorder uses (request id, the simulator's latency, retry advice,
    content type and encoding), by lower-case name, in one pass over the raw pairs
    (`Headers.get` decodes on every lookup)."""
    wanted = _WANTED
    found: dict[bytes, str] = {}
    for key, value in headers.raw:
        name = key.lower()
        if name in wanted:
            text = value.decode("latin-1")
            found[name] = f"{found[name]}, {text}" if name in found else text
    return found


_WANTED = frozenset(
    {
        TTFT_HEADER,
        TOTAL_HEADER,
        SIM_HEADER,
        REQUEST_ID_HEADER,
        SHOULD_RETRY_HEADER,
        CONTENT_TYPE_HEADER,
        CONTENT_ENCODING_HEADER,
    }
)


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def fill_usage(record: CallRecord, usage: Any) -> None:
    """Every usage field (the 5m/1h split included) and the three money figures."""
    if usage is None:
        return
    counts = pricing.usage_counts(usage)
    record.input_tokens = counts.input_tokens
    record.cache_read_input_tokens = counts.cache_read_tokens
    record.output_tokens = counts.output_tokens
    record.ephemeral_5m_input_tokens = counts.cache_write_5m_tokens
    record.ephemeral_1h_input_tokens = counts.cache_write_1h_tokens
    record.cache_creation_input_tokens = int(
        _get(usage, "cache_creation_input_tokens") or counts.cache_write_tokens
    )
    record.service_tier = counts.service_tier
    record.speed = counts.speed
    record.inference_geo = counts.inference_geo
    server_tools = _get(usage, "server_tool_use")
    for name in ("web_search_requests", "web_fetch_requests"):
        value = _get(server_tools, name)
        if value:
            record.extra[name] = int(value)
    when = record.time
    record.cost = pricing.cost(counts, record.model, when=when)
    record.cost_without_cache = pricing.cost_without_cache(counts, record.model, when=when)
    record.savings = pricing.savings(counts, record.model, when=when)


def fill_message(record: CallRecord, message: Any) -> None:
    """Id, stop reason, usage and the server's cache diagnosis of a Message (JSON or SDK object)."""
    record.message_id = _get(message, "id")
    record.stop_reason = _get(message, "stop_reason")
    fill_usage(record, _get(message, "usage"))
    fill_diagnosis(record, message)


def fill_diagnosis(record: CallRecord, message: Any) -> None:
    reason = _get(_get(message, "diagnostics"), "cache_miss_reason")
    if reason is not None:
        record.cache_miss_reason = _get(reason, "type")
        missed = _get(reason, "cache_missed_input_tokens")
        record.cache_missed_input_tokens = int(missed) if missed is not None else None


def fill_api_error(record: CallRecord, status: int | None, body: Any) -> None:
    """A failure as the wire shows it: the status, and the API's error type and message.

    `error_type` is the SDK's base class for a status error (`APIStatusError`) — which subclass
    a given SDK raises is the SDK's business; a call made through a caching client names the
    exception its caller got instead (`fill_error`).
    """
    record.ok = False
    record.error_type = "APIStatusError"
    record.error_status = status
    inner = _get(body, "error")
    kind = _get(inner, "type") if isinstance(inner, Mapping) else _get(body, "type")
    record.api_error_type = str(kind) if kind else None
    message = _get(inner, "message") if isinstance(inner, Mapping) else None
    if message is None and body is not None:
        message = body if isinstance(body, str) else str(dict(body))
    prefix = f"Error code: {status} - " if status is not None else ""
    record.error_message = (prefix + str(message or ""))[:ERROR_MESSAGE_LIMIT]


def fill_error(record: CallRecord, error: BaseException) -> None:
    """A failure as its caller saw it: the exception's type, status, message and API error."""
    record.ok = False
    record.error_type = type(error).__name__
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        record.error_status = status
    record.error_message = str(error)[:ERROR_MESSAGE_LIMIT]
    body = getattr(error, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error")
        kind = inner.get("type") if isinstance(inner, Mapping) else body.get("type")
        record.api_error_type = str(kind) if kind else record.api_error_type
    request_id = getattr(error, "request_id", None)
    if request_id and not record.request_id:
        record.request_id = str(request_id)


def fill_timing(
    record: CallRecord,
    headers: Mapping[bytes, str] | None,
    started: float,
    first_token: float | None,
) -> None:
    """Latency from the simulator's headers when present, else measured from the first attempt."""
    ttft = total = None
    if headers:
        record.request_id = headers.get(REQUEST_ID_HEADER) or record.request_id
        ttft, total = _float(headers.get(TTFT_HEADER)), _float(headers.get(TOTAL_HEADER))
    if ttft is not None or total is not None:
        record.ttft_ms, record.latency_ms = ttft, total
        record.latency_source = "simulator"
        return
    end = time.perf_counter()
    record.latency_ms = (end - started) * 1000.0
    record.ttft_ms = (first_token - started) * 1000.0 if first_token is not None else None
    record.latency_source = "measured"


class StreamState:
    """What a Messages SSE stream said so far: the message start, cumulative usage, the stop
    reason, an in-stream error, and when the first content arrived."""

    __slots__ = ("error", "first_token", "message", "stop_reason", "stopped", "usage")

    def __init__(self) -> None:
        self.message: Mapping[str, Any] | None = None
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.error: Mapping[str, Any] | None = None
        self.first_token: float | None = None
        self.stopped = False

    def see(self, kind: str, data: Any) -> None:
        if kind == "message_start":
            self.message = _get(data, "message") or {}
            usage = _get(self.message, "usage")
            if isinstance(usage, Mapping):
                self.usage = dict(usage)
        elif kind == "message_delta":
            usage = _get(data, "usage")
            if isinstance(usage, Mapping):
                # Counts in message_delta are cumulative and overwrite when present (spec §3.3).
                for key, value in usage.items():
                    if value is not None:
                        self.usage[key] = value
            self.stop_reason = _get(_get(data, "delta"), "stop_reason") or self.stop_reason
        elif kind == "error":
            self.error = data if isinstance(data, Mapping) else {"error": {"type": str(data)}}
        elif kind == "message_stop":
            self.stopped = True

    def fill(self, record: CallRecord) -> None:
        if self.message is not None:
            record.message_id = _get(self.message, "id")
            fill_diagnosis(record, self.message)
        record.stop_reason = self.stop_reason
        if self.usage:
            fill_usage(record, self.usage)
