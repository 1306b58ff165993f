"""The prompt cache of one workspace and its rules (spec §1.5, §1.6, §1.9, §8).

1. Each breakpoint opens a window of `lookback` positions, itself first; entries are looked up by
   prefix key. The longest live, available hit over all windows is A.
2. Every breakpoint beyond A whose prefix reaches the model's minimum writes one entry (expires
   at request start + TTL; readable once the response has started). The hit is refreshed: its
   expiry moves to this request's start + its TTL.
3. Usage: read = A; 1h write = B − A (B: last written 1h breakpoint); 5m write = C − B (C: last
   written breakpoint); input = total − max(A, C).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from cachescope.sim._request import CacheRequest
from cachescope.sim._settings import SimSettings

# One cache entry, the prefix ending at a breakpoint of an earlier request, as a plain tuple:
#   (tokens, expires_at, available_at, ttl seconds)
Entry = tuple[int, float, float, float]

# The usage of one request, as a plain tuple:
#   (input tokens, cache read, 5m write, 1h write, hit position (-1: none),
#    writes as (position, ttl seconds), last position left in the cache (-1: none))
Usage = tuple[int, int, int, int, int, list[tuple[int, float]], int]

# What diagnostics remembers of an answered message, holding no prompt text:
#   (model, level ends, level settings, packed content hashes,
#    last position this request left in the cache (-1: none), tokens up to it)
_Record = tuple[str, tuple[int, int, int], tuple[bytes, bytes, bytes], bytes, int, int]


class Workspace:
    """The cache of one API key (the API isolates caches per workspace, spec §1.8)."""

    __slots__ = ("entries", "records")

    def __init__(self) -> None:
        self.entries: dict[int, Entry] = {}
        self.records: OrderedDict[str, _Record] = OrderedDict()

    def live_entries(self, now: float, grace: float) -> int:
        return sum(1 for entry in self.entries.values() if now < entry[1] + grace)

    def evaluate(
        self, request: CacheRequest, minimum: int, settings: SimSettings, now: float
    ) -> Usage:
        """What the request reads and writes now (changing nothing)."""
        cum = request.cum
        breakpoints = request.breakpoints
        best = -1
        if self.entries and breakpoints:
            best = self._lookback(request, settings, now)
        read = cum[best] if best >= 0 else 0
        segment = settings.minimum_applies_to == "segment"
        writes: list[tuple[int, float]] = []
        b_tokens = c_tokens = read
        previous_tokens = 0
        for position, ttl, name in breakpoints:
            tokens = cum[position]
            length = tokens - previous_tokens if segment else tokens
            previous_tokens = tokens
            if position <= best or length < minimum or tokens <= 0:
                continue
            writes.append((position, ttl))
            c_tokens = tokens
            if name == "1h":
                b_tokens = tokens
        # TTL order is validated (1h before 5m), so B ≤ C.
        return (
            request.total - max(read, c_tokens),
            read,
            c_tokens - b_tokens,
            b_tokens - read,
            best,
            writes,
            writes[-1][0] if writes else best,
        )

    def _lookback(self, request: CacheRequest, settings: SimSettings, now: float) -> int:
        """The longest read hit over the breakpoints' windows, -1 for none.

        One window of `lookback` positions (or messages) per breakpoint, the last breakpoint
        first; a position hits when its prefix key names a live, available entry (of the same
        TTL unless `cross_ttl_reads`).
        """
        keys = request.keys
        get = self.entries.get
        grace = settings.ttl_grace_seconds
        window = settings.lookback
        same_ttl_only = not settings.cross_ttl_reads
        units = request.units() if settings.lookback_unit == "message" else None
        best = -1
        for position, ttl, _name in reversed(request.breakpoints):
            if position <= best:
                break
            if units is None:
                stop = max(best, position - window)
            else:
                stop = best
                top_unit = units[position]
            p = position
            while p > stop:
                if units is not None and top_unit - units[p] >= window:
                    break
                entry = get(keys[p])
                if (
                    entry is not None
                    and entry[2] <= now
                    and now < entry[1] + grace
                    and (not same_ttl_only or entry[3] == ttl)
                ):
                    best = p
                    break
                p -= 1
        return best

    def commit(
        self,
        request: CacheRequest,
        usage: Usage,
        settings: SimSettings,
        start: float,
        available_at: float,
    ) -> None:
        """Refresh the entry read (and, with `refresh="reached"`, those its prefix passes) and
        store the writes."""
        entries = self.entries
        keys = request.keys
        hit_position, writes = usage[4], usage[5]
        if hit_position >= 0:
            hit_key = keys[hit_position]
            tokens, expires_at, available, ttl = entries[hit_key]
            if start + ttl > expires_at:
                entries[hit_key] = (tokens, start + ttl, available, ttl)
            if settings.refresh == "reached":
                grace = settings.ttl_grace_seconds
                for position, _ttl, _name in request.breakpoints:
                    if position >= hit_position:
                        break
                    passed_key = keys[position]
                    entry = entries.get(passed_key)
                    if entry is None:
                        continue
                    e_tokens, e_expires, e_available, e_ttl = entry
                    if e_available <= start < e_expires + grace and start + e_ttl > e_expires:
                        entries[passed_key] = (e_tokens, start + e_ttl, e_available, e_ttl)
        cum = request.cum
        for position, ttl in writes:
            write_key = keys[position]
            old = entries.get(write_key)
            if old is not None and start < old[1]:
                entries[write_key] = (old[0], max(old[1], start + ttl), old[2], max(old[3], ttl))
            else:
                entries[write_key] = (cum[position], start + ttl, available_at, ttl)

    def remember(self, message_id: str, request: CacheRequest, usage: Usage, history: int) -> None:
        """Keep what `diagnose` needs to explain a later request's miss against this one."""
        position = usage[6]
        records = self.records
        records[message_id] = (
            request.model,
            request.level_ends,
            request.level_settings(),
            request.packed_hashes(),
            position,
            request.cum[position] if position >= 0 else 0,
        )
        if len(records) > history:
            records.popitem(last=False)

    def diagnose(
        self, previous_id: Any, request: CacheRequest, usage: Usage
    ) -> dict[str, Any] | None:
        """`diagnostics` for a response (spec §1.9 / CD): why the previous prefix was not reused."""
        if previous_id is None:
            return None
        record = self.records.get(str(previous_id))
        if record is None:
            return {"cache_miss_reason": {"type": "previous_message_not_found"}}
        model, old_ends, old_settings, old_hashes, cached_position, cached_tokens = record
        missed = max(0, cached_tokens - usage[1])
        if missed == 0:
            return None
        if model != request.model:
            return _reason("model_changed", missed)
        new_ends = request.level_ends
        new_settings = request.level_settings()
        new_hashes = request.packed_hashes()
        level_names = ("tools_changed", "system_changed", "messages_changed")
        start_old = start_new = 0
        for level in range(3):
            end_old = old_ends[level]
            end_new = new_ends[level]
            if start_old > cached_position:
                break
            if old_settings[level] != new_settings[level]:
                # A request-level setting changed: tools/system settings show as that level;
                # messages-level settings (tool_choice, thinking, ...) are "unavailable" (CD).
                if level == 2:
                    return {"cache_miss_reason": {"type": "unavailable"}}
                return _reason(level_names[level], missed)
            # hashes are 8-byte words: compare the byte ranges of the positions
            a = old_hashes[start_old * 8 : end_old * 8]
            b = new_hashes[start_new * 8 : end_new * 8]
            if level < 2:
                if a != b:
                    return _reason(level_names[level], missed)
            else:
                cached_here = (cached_position - start_old + 1) * 8
                if b[:cached_here] != a[:cached_here]:
                    return _reason(level_names[level], missed)
            start_old, start_new = end_old, end_new
        return {"cache_miss_reason": {"type": "unavailable"}}


def _reason(kind: str, missed: int) -> dict[str, Any]:
    return {"cache_miss_reason": {"type": kind, "cache_missed_input_tokens": missed}}
