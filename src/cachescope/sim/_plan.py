"""The simulator's fast path from a request body to cache positions, with the API's validation.

`plan(body, ...)` walks tools → system → messages and returns a `Plan`: per position the content
digest (the same xxh3 digest `cachescope._blocks.flatten` gives, so fingerprints agree), the token
count, the cumulative count, the breakpoints, and — on demand — the cumulative prefix key with the
request-level settings folded in where their level starts (spec §2, §8).

Incremental: the tools list, the system prompt and each message are *segments*, memoized by their
serialized JSON. An unchanged message costs one `orjson.dumps` and one dict look-up; its blocks
are neither re-hashed nor re-counted. Prefix keys are computed lazily, only at the positions the
lookback visits, as one xxh3 over the packed digests (C speed).

Validation happens in the same walk and raises `APIErrorResponse` with the API's texts (spec §6.2).
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from itertools import accumulate
from typing import Any

import orjson
import xxhash

from cachescope._blocks import IMAGE_TOKENS
from cachescope._tokens import TokenCounter
from cachescope.sim._errors import invalid

_xxh64 = xxhash.xxh3_64_intdigest
_dumps = orjson.dumps

MAX_BREAKPOINTS = 4
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
_NOT_CACHEABLE_KINDS = frozenset({"thinking", "redacted_thinking"})
_SYSTEM_TOGGLE_PREFIXES = ("web_search", "web_fetch")
_EMPTY_SETTINGS = 0x5EED


class Segment:
    """The cache positions of one unit of a request: the tool list, the system prompt, a message."""

    __slots__ = ("citations", "digests", "eligible", "images", "marks", "toggles", "tokens")

    def __init__(self) -> None:
        self.digests: list[int] = []
        self.tokens: list[int] = []
        # (offset, cache_control, path suffix)
        self.marks: list[tuple[int, Any, str]] = []
        # the last block that can take the automatic breakpoint: (offset, cache_control, suffix)
        self.eligible: tuple[int, Any, str] | None = None
        self.images = False
        self.citations = False
        self.toggles: tuple[str, ...] = ()


class Memo:
    """Memo of segments and block digests/token counts for one token counter.

    Parameters
    ----------
    counter:
        The token counter whose counts are memoized.
    max_entries:
        Entries kept before a memo table is cleared (bounds memory on endless new text).
    """

    __slots__ = ("blocks", "counter", "max_entries", "seeds", "segments", "settings", "snapshots")

    def __init__(self, counter: TokenCounter, max_entries: int = 100_000) -> None:
        self.counter = counter
        self.max_entries = max_entries
        self.seeds: dict[tuple[str, str | None, str], int] = {}
        self.blocks: dict[tuple[int, str], tuple[int, int]] = {}
        self.segments: dict[bytes, Segment] = {}
        self.settings: dict[bytes, int] = {}
        self.snapshots: list[_Snapshot] = []

    def block(self, level: str, role: str | None, kind: str, text: str) -> tuple[int, int]:
        """(digest, tokens) of one block, as `_blocks.flatten` computes them."""
        seed = self.seeds.get((level, role, kind))
        if seed is None:
            seed_text = f"{level}\x1f{role or ''}\x1f{kind}\x1f"
            seed = self.seeds[(level, role, kind)] = _xxh64(seed_text.encode())
        found = self.blocks.get((seed, text))
        if found is None:
            if len(self.blocks) >= self.max_entries:
                self.blocks.clear()
            digest = _xxh64(text.encode("utf-8", "surrogatepass"), seed=seed)
            tokens = IMAGE_TOKENS if kind == "image" else self.counter.count(text)
            found = self.blocks[(seed, text)] = (digest, tokens)
        return found

    def remember(self, key: bytes, segment: Segment) -> Segment:
        if len(self.segments) >= self.max_entries:
            self.segments.clear()
        self.segments[key] = segment
        return segment

    def settings_hash(self, settings: Mapping[str, Any]) -> int:
        if not settings:
            return _EMPTY_SETTINGS
        raw = _dumps(settings, option=orjson.OPT_SORT_KEYS)
        found = self.settings.get(raw)
        if found is None:
            if len(self.settings) >= self.max_entries:
                self.settings.clear()
            found = self.settings[raw] = _xxh64(raw)
        return found


class Plan:
    """A request as cache positions (parallel lists indexed by position)."""

    __slots__ = (
        "_packed",
        "breakpoints",
        "cum",
        "digests",
        "level_ends",
        "level_seeds",
        "message_units",
        "model",
        "total",
    )

    def __init__(self) -> None:
        self.model = ""
        self.digests: list[int] = []
        self.cum: list[int] = []
        # (position, ttl seconds, ttl name) in render order
        self.breakpoints: list[tuple[int, float, str]] = []
        # number of positions in tools, tools+system, all
        self.level_ends: tuple[int, int, int] = (0, 0, 0)
        # the settings hash folded in at each level start
        self.level_seeds: tuple[int, int, int] = (0, 0, 0)
        # per position, the index of its lookback unit (only when counting whole messages)
        self.message_units: list[int] | None = None
        self.total = 0
        self._packed: memoryview | None = None

    def key(self, position: int) -> int:
        """Cumulative prefix key at `position`: every digest up to it plus the level settings."""
        packed = self._packed
        if packed is None:
            tools_end, system_end, _ = self.level_ends
            digests = self.digests
            words = array("Q", (self.level_seeds[0],))
            words.extend(digests[:tools_end])
            words.append(self.level_seeds[1])
            words.extend(digests[tools_end:system_end])
            words.append(self.level_seeds[2])
            words.extend(digests[system_end:])
            packed = self._packed = memoryview(words).cast("B")
        tools_end, system_end, _ = self.level_ends
        index = position + 2 + (position >= tools_end) + (position >= system_end)
        return _xxh64(packed[: index * 8])

    def keys(self) -> list[int]:
        """Every prefix key (for tests and tools; the simulator computes them on demand)."""
        return [self.key(position) for position in range(len(self.digests))]


class _Snapshot:
    """A recent request's messages: serialized bytes, per-message ends, and what they flattened to.

    A new request whose serialized `messages` starts with the same bytes as this one up to the
    end of message k reuses messages 0..k wholesale (byte-identical JSON is an identical prefix).
    """

    __slots__ = (
        "citations",
        "digests",
        "eligible",
        "ends",
        "images",
        "marks",
        "position_ends",
        "raw",
        "tokens",
    )

    def __init__(self) -> None:
        self.raw = b""
        self.ends: list[int] = []  # byte offset just after each message's JSON
        self.position_ends: list[int] = []  # positions (relative to messages) after each message
        self.digests: list[int] = []
        self.tokens: list[int] = []
        self.marks: list[tuple[int, int, Any, str]] = []  # (message, relative position, cc, path)
        self.eligible: list[tuple[int, Any, str] | None] = []  # after each message
        self.images: list[bool] = []  # any image up to each message
        self.citations: list[bool] = []

    def common(self, raw: bytes) -> int:
        """How many leading messages `raw` shares byte for byte with this snapshot."""
        ends = self.ends
        if not ends:
            return 0
        mine = self.raw
        if raw.startswith(mine[: ends[-1]]):
            return len(ends)
        if not raw.startswith(mine[: ends[0]]):
            return 0
        low, high = 1, len(ends) - 1  # invariant: the first `low` messages are shared
        while low < high:
            middle = (low + high + 1) // 2
            end = ends[middle - 1]
            if raw[:end] == mine[:end]:
                low = middle
            else:
                high = middle - 1
        return low


def _without_cache_control(block: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in block.items() if key != "cache_control"}


def _copy(cache_control: Any) -> Any:
    # Segments are shared between requests: keep a copy, not the caller's (mutable) dict.
    return dict(cache_control) if isinstance(cache_control, Mapping) else cache_control


def _contains_image(value: Any) -> bool:
    if isinstance(value, Mapping):
        if value.get("type") == "image":
            return True
        content = value.get("content")
        if isinstance(content, list):
            return any(_contains_image(item) for item in content)
    return False


def _tools_segment(tools: Any, memo: Memo) -> Segment:
    if not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list")
    segment = Segment()
    toggles: list[str] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise invalid(f"tools.{i}: Input should be a valid dictionary")
        tool_type = tool.get("type")
        if isinstance(tool_type, str) and tool_type.startswith(_SYSTEM_TOGGLE_PREFIXES):
            toggles.append(tool_type)
            continue
        cc = _copy(tool.get("cache_control"))
        text = _dumps(_without_cache_control(tool) if cc is not None else tool).decode()
        digest, tokens = memo.block("tools", None, "tool", text)
        offset = len(segment.digests)
        segment.digests.append(digest)
        segment.tokens.append(tokens)
        if cc is not None:
            segment.marks.append((offset, cc, f"tools.{i}"))
        segment.eligible = (offset, cc, f"tools.{i}")
    segment.toggles = tuple(toggles)
    return segment


def _system_segment(system: Any, memo: Memo) -> Segment:
    segment = Segment()
    if isinstance(system, str):
        if system:
            digest, tokens = memo.block("system", None, "text", system)
            segment.digests.append(digest)
            segment.tokens.append(tokens)
            segment.eligible = (0, None, "system")
        return segment
    if not isinstance(system, list):
        raise invalid("system: Input should be a valid string or list")
    for i, item in enumerate(system):
        if not isinstance(item, Mapping):
            raise invalid(f"system.{i}: Input should be a valid dictionary")
        if item.get("type") != "text":
            raise invalid(f"system.{i}.type: Input should be 'text'")
        cc = _copy(item.get("cache_control"))
        text = item.get("text")
        if not isinstance(text, str):
            raise invalid(f"system.{i}.text: Field required")
        if not text:
            if cc is not None:
                raise invalid("cache_control cannot be set for empty text blocks")
            raise invalid("system: text content blocks must be non-empty")
        if len(item) > 2 + (cc is not None):
            text = _dumps(_without_cache_control(item)).decode()
        digest, tokens = memo.block("system", None, "text", text)
        offset = len(segment.digests)
        segment.digests.append(digest)
        segment.tokens.append(tokens)
        if cc is not None:
            segment.marks.append((offset, cc, f"system.{i}"))
        segment.eligible = (offset, cc, f"system.{i}")
    return segment


def _message_segment(message: Any, m: int, memo: Memo) -> Segment:
    """A message's positions; `m` is used only in error messages (paths are stored relative)."""
    if not isinstance(message, Mapping):
        raise invalid(f"messages.{m}: Input should be a valid dictionary")
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise invalid(f"messages.{m}.role: Input should be 'user' or 'assistant'")
    content = message.get("content")
    segment = Segment()
    if isinstance(content, str):
        if content:
            digest, tokens = memo.block("messages", role, "text", content)
            segment.digests.append(digest)
            segment.tokens.append(tokens)
            segment.eligible = (0, None, "content")
        return segment
    if not isinstance(content, list):
        raise invalid(f"messages.{m}.content: Input should be a valid string or list")
    for c, item in enumerate(content):
        if not isinstance(item, Mapping):
            raise invalid(f"messages.{m}.content.{c}: Input should be a valid dictionary")
        kind = item.get("type")
        if not isinstance(kind, str):
            raise invalid(f"messages.{m}.content.{c}.type: Field required")
        cc = _copy(item.get("cache_control"))
        if kind == "text":
            text = item.get("text")
            if not isinstance(text, str):
                raise invalid(f"messages.{m}.content.{c}.text: Field required")
            if not text:
                if cc is not None:
                    raise invalid("cache_control cannot be set for empty text blocks")
                raise invalid("messages: text content blocks must be non-empty")
            if len(item) > 2 + (cc is not None):
                if item.get("citations"):
                    segment.citations = True
                text = _dumps(_without_cache_control(item)).decode()
        else:
            if cc is not None and kind in _NOT_CACHEABLE_KINDS:
                raise invalid(
                    f"messages.{m}.content.{c}.{kind}.cache_control: Extra inputs are not permitted"
                )
            text = _dumps(_without_cache_control(item) if cc is not None else item).decode()
            if kind in ("image", "tool_result") and _contains_image(item):
                segment.images = True
            if kind == "document":
                citations = item.get("citations")
                if isinstance(citations, Mapping) and citations.get("enabled"):
                    segment.citations = True
        digest, tokens = memo.block("messages", role, kind, text)
        offset = len(segment.digests)
        segment.digests.append(digest)
        segment.tokens.append(tokens)
        if cc is not None:
            segment.marks.append((offset, cc, f"content.{c}"))
        if kind not in _NOT_CACHEABLE_KINDS:
            segment.eligible = (offset, cc, f"content.{c}")
    return segment


def _segment(kind: bytes, value: Any, m: int, memo: Memo) -> Segment:
    """The memoized segment of a tools list (b"T"), system prompt (b"S") or message (b"M")."""
    try:
        raw = _dumps(value)
    except TypeError:  # not JSON-serializable: compute without the memo
        raw = b""
    return _segment_from_raw(kind, raw, value, m, memo)


def _segment_from_raw(kind: bytes, raw: bytes, value: Any, m: int, memo: Memo) -> Segment:
    key = kind + raw if raw else b""
    if key:
        found = memo.segments.get(key)
        if found is not None:
            return found
    if kind == b"M":
        segment = _message_segment(value, m, memo)
    elif kind == b"T":
        segment = _tools_segment(value, memo)
    else:
        segment = _system_segment(value, memo)
    return memo.remember(key, segment) if key else segment


def _add_mark(
    marks: list[tuple[int, float, str]], seen_5m: bool, position: int, cc: Any, path: str
) -> bool:
    """Validate one breakpoint and append it; returns whether a 5m breakpoint has been seen."""
    if not isinstance(cc, Mapping):
        raise invalid(f"{path}.cache_control: Input should be a valid dictionary")
    if cc.get("type") != "ephemeral":
        raise invalid(f"{path}.cache_control.type: Input should be 'ephemeral'")
    ttl = cc.get("ttl") or "5m"
    seconds = TTL_SECONDS.get(ttl)
    if seconds is None:
        raise invalid(f"{path}.cache_control.ttl: Input should be '5m' or '1h'")
    if ttl == "1h" and seen_5m:
        raise invalid(
            f"{path}.cache_control.ttl: a ttl='1h' cache_control block must not come after a "
            "ttl='5m' cache_control block. Note that blocks are processed in the following "
            "order: `tools`, `system`, `messages`."
        )
    marks.append((position, seconds, ttl))
    return seen_5m or ttl == "5m"


def plan(
    body: Mapping[str, Any],
    memo: Memo,
    model_id: str,
    *,
    settings_before_tools: bool = False,
    count_messages_as_units: bool = False,
) -> Plan:
    """Flatten and validate a Messages request body (see module docstring)."""
    result = Plan()
    result.model = model_id
    digests = result.digests
    tokens: list[int] = []
    # (position, cache_control, path) of each explicit breakpoint, in render order
    raw_marks: list[tuple[int, Any, str]] = []
    eligible: tuple[int, Any, str] | None = None
    units: list[int] | None = [] if count_messages_as_units else None

    toggles: tuple[str, ...] = ()
    tools = body.get("tools")
    if tools:
        segment = _segment(b"T", tools, 0, memo)
        digests.extend(segment.digests)
        tokens.extend(segment.tokens)
        raw_marks.extend(segment.marks)
        if segment.eligible is not None:
            eligible = segment.eligible
        toggles = segment.toggles
        if units is not None:
            units.extend(range(len(segment.digests)))
    tools_end = len(digests)

    system = body.get("system")
    if system:
        segment = _segment(b"S", system, 0, memo)
        digests.extend(segment.digests)
        tokens.extend(segment.tokens)
        for offset, cc, path in segment.marks:
            raw_marks.append((tools_end + offset, cc, path))
        if segment.eligible is not None:
            offset, cc, path = segment.eligible
            eligible = (tools_end + offset, cc, path)
        if units is not None:
            units.extend(range(tools_end, tools_end + len(segment.digests)))
    system_end = len(digests)

    messages = body.get("messages")
    if messages is None:
        raise invalid("messages: Field required")
    if not isinstance(messages, list):
        raise invalid("messages: Input should be a valid list")
    try:
        raw = _dumps(messages)
    except TypeError:  # not JSON-serializable (e.g. SDK objects passed to the core): no reuse
        raw = b""
    reused = 0
    previous: _Snapshot | None = None
    if raw:
        for snapshot in memo.snapshots:
            shared = snapshot.common(raw)
            if shared > reused:
                reused, previous = shared, snapshot
    snap = _Snapshot() if raw else None
    images = citations = False
    if previous is not None and snap is not None:
        upto = previous.position_ends[reused - 1]
        digests.extend(previous.digests[:upto])
        tokens.extend(previous.tokens[:upto])
        for m, offset, cc, path in previous.marks:
            if m >= reused:
                break
            raw_marks.append((system_end + offset, cc, path))
            snap.marks.append((m, offset, cc, path))
        kept = previous.eligible[reused - 1]
        if kept is not None:
            eligible = (system_end + kept[0], kept[1], kept[2])
        images = previous.images[reused - 1]
        citations = previous.citations[reused - 1]
        snap.ends = previous.ends[:reused]
        snap.position_ends = previous.position_ends[:reused]
        snap.eligible = previous.eligible[:reused]
        snap.images = previous.images[:reused]
        snap.citations = previous.citations[:reused]
    position_ends: list[int] = snap.position_ends if snap is not None else []
    last = len(messages) - 1
    byte_end = snap.ends[-1] if snap is not None and snap.ends else 0
    for m in range(reused, len(messages)):
        message = messages[m]
        try:
            raw_message = _dumps(message)
        except TypeError:
            raw_message = b""
        segment = _segment_from_raw(b"M", raw_message, message, m, memo)
        start = len(digests)
        if not segment.digests and not (
            m == last and isinstance(message, Mapping) and message.get("role") == "assistant"
        ):
            role = message.get("role") if isinstance(message, Mapping) else None
            raise invalid(f"messages.{m}: {role} messages must have non-empty content")
        digests.extend(segment.digests)
        tokens.extend(segment.tokens)
        if segment.marks:
            for offset, cc, path in segment.marks:
                full = f"messages.{m}.{path}"
                raw_marks.append((start + offset, cc, full))
                if snap is not None:
                    snap.marks.append((m, start - system_end + offset, cc, full))
        if segment.eligible is not None:
            offset, cc, path = segment.eligible
            eligible = (start + offset, cc, f"messages.{m}.{path}")
        if segment.images:
            images = True
        if segment.citations:
            citations = True
        if snap is not None:
            byte_end += len(raw_message) + 1  # "[" or "," before each message
            snap.ends.append(byte_end)
            snap.position_ends.append(len(digests) - system_end)
            snap.eligible.append(
                None
                if eligible is None or eligible[0] < system_end
                else (eligible[0] - system_end, eligible[1], eligible[2])
            )
            snap.images.append(images)
            snap.citations.append(citations)
        else:
            position_ends.append(len(digests) - system_end)
    if snap is not None and len(messages) > reused:
        snap.raw = raw
        snap.digests = digests[system_end:]
        snap.tokens = tokens[system_end:]
        memo.snapshots.insert(0, snap)
        del memo.snapshots[8:]
    if units is not None:
        done = 0
        for m, end in enumerate(position_ends):
            units.extend([system_end + m] * (end - done))
            done = end

    # ---- breakpoints: count, TTL order, automatic (top-level) cache_control ------------------
    top = body.get("cache_control")
    explicit = len(raw_marks)
    if explicit > MAX_BREAKPOINTS or (top is not None and explicit == MAX_BREAKPOINTS):
        found = explicit + (top is not None and explicit == MAX_BREAKPOINTS)
        raise invalid(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {found}."
        )
    marks: list[tuple[int, float, str]] = []
    seen_5m = False
    for position, cc, path in raw_marks:
        seen_5m = _add_mark(marks, seen_5m, position, cc, path)
    if top is not None:
        if not isinstance(top, Mapping) or top.get("type") != "ephemeral":
            raise invalid("cache_control.type: Input should be 'ephemeral'")
        top_ttl = top.get("ttl") or "5m"
        if top_ttl not in TTL_SECONDS:
            raise invalid("cache_control.ttl: Input should be '5m' or '1h'")
        # The automatic breakpoint goes on the last block that can carry one (walking back over
        # thinking blocks); none at all means no caching and no error (PC).
        if eligible is not None:
            position, cc, path = eligible
            if cc is not None:
                own = (cc.get("ttl") if isinstance(cc, Mapping) else None) or "5m"
                if own != top_ttl:
                    raise invalid(
                        f"cache_control.ttl: the top-level cache_control (ttl='{top_ttl}') "
                        f"conflicts with the explicit cache_control on {path} (ttl='{own}'); "
                        "automatic caching would place its breakpoint on that block. Use the "
                        "same ttl or remove one of them."
                    )
            else:
                _add_mark(marks, seen_5m, position, top, "cache_control")

    # ---- settings per level (spec §2 / §8) ---------------------------------------------------
    system_settings: dict[str, Any] = {}
    if toggles:
        system_settings["server_tools"] = sorted(set(toggles))
    if citations:
        system_settings["citations"] = True
    speed = body.get("speed")
    if speed not in (None, "standard"):
        system_settings["speed"] = speed
    message_settings: dict[str, Any] = {}
    tool_choice = body.get("tool_choice")
    if tool_choice is not None:
        message_settings["tool_choice"] = tool_choice
    thinking = body.get("thinking")
    if thinking is not None:
        message_settings["thinking"] = thinking
    output_config = body.get("output_config")
    if isinstance(output_config, Mapping) and output_config.get("effort") is not None:
        message_settings["effort"] = output_config["effort"]
    if images:
        message_settings["images"] = True
    tools_settings: dict[str, Any] = {"model": model_id}
    if settings_before_tools:
        for name in ("thinking", "effort"):
            if name in message_settings:
                tools_settings[name] = message_settings.pop(name)

    result.level_seeds = (
        memo.settings_hash(tools_settings),
        memo.settings_hash(system_settings),
        memo.settings_hash(message_settings),
    )
    result.cum = cum = list(accumulate(tokens))
    result.total = cum[-1] if cum else 0
    result.breakpoints = marks
    result.level_ends = (tools_end, system_end, len(digests))
    result.message_units = units
    return result
