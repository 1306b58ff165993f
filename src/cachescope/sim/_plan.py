"""The simulator's fast path from a request body to cache positions, with the API's validation.

`plan(body, ...)` walks tools → system → messages and returns a `Plan`: per position the content
digest (the same xxh3 digest `cachescope.blocks.flatten` gives, so fingerprints agree), the token
count, the cumulative count, the breakpoints, and — on demand — the cumulative prefix key with the
request-level settings folded in where their level starts (spec §2, §8).

Incremental, in three layers, so that the common case (a conversation that grew by a turn) costs
one `orjson.dumps` of `messages` plus a few byte comparisons:

- *Snapshots*: the serialized `messages` of recent requests with, per message, the state after it.
  A request whose serialized `messages` starts with the same bytes as a snapshot up to the end of
  message k reuses messages 0..k wholesale (byte-identical JSON is an identical prefix): digests,
  token counts, packed digests, breakpoints, flags — list and bytes slices, no Python per block.
- *Segments*: the tools list, the system prompt and each message are memoized by their serialized
  JSON, with everything their own validation found (breakpoint TTL verdicts included); an
  unchanged segment costs one `orjson.dumps` and one dict look-up.
- *Blocks*: digest and token count per block text, so a block seen in another message (a
  breakpoint moved off it) is neither re-hashed nor re-counted.

Prefix keys are computed lazily, only at the positions the lookback visits, as one xxh3 over the
packed digests (C speed). Error paths (`messages.3.content.1...`) are formatted only on error.

Validation happens in the same walk and raises `APIErrorResponse` with the API's texts (spec §6.2).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Mapping
from itertools import accumulate, chain
from typing import Any

import orjson
import xxhash

from cachescope import tokens as _tokens
from cachescope.blocks import IMAGE_TOKENS
from cachescope.sim._errors import invalid
from cachescope.sim._simcore_py import native as _load_native
from cachescope.tokens import TokenCounter

_xxh64 = xxhash.xxh3_64_intdigest
_dumps = orjson.dumps
_BYTEORDER = sys.byteorder  # `array("Q")` packs digests in native order; seeds must match

MAX_BREAKPOINTS = 4
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
_NOT_CACHEABLE_KINDS = frozenset({"thinking", "redacted_thinking"})
_SYSTEM_TOGGLE_PREFIXES = ("web_search", "web_fetch")
_EMPTY_SETTINGS = 0x5EED
_CONVERSATIONS = 256  # snapshots kept, one per first message (conversation)

# A breakpoint's verdict, found once when its segment is built: (ttl seconds, ttl name), or the
# tail of the error message ("cache_control.type: Input should be 'ephemeral'") to raise, after
# the breakpoint count, with the block's path in front.
Verdict = tuple[float, str] | str
# A breakpoint inside a segment: (offset, cache_control, path within the segment, verdict).
SegmentMark = tuple[int, Any, str, Verdict]
# A breakpoint of a request: (position, cache_control, message index or -1, path, verdict); the
# full path is "messages.{m}.{path}" for messages, `path` for tools and system.
Mark = tuple[int, Any, int, str, Verdict]
# The last block that can take the automatic breakpoint, in the same (position, cc, m, path) form.
Eligible = tuple[int, Any, int, str]


def _is_mapping(value: Any) -> bool:
    return value.__class__ is dict or isinstance(value, Mapping)


def _verdict(cc: Any) -> Verdict:
    if not _is_mapping(cc):
        return "cache_control: Input should be a valid dictionary"
    if cc.get("type") != "ephemeral":
        return "cache_control.type: Input should be 'ephemeral'"
    ttl = cc.get("ttl") or "5m"
    try:
        seconds = TTL_SECONDS.get(ttl)
    except TypeError:  # unhashable ttl
        seconds = None
    if seconds is None:
        return "cache_control.ttl: Input should be '5m' or '1h'"
    return (seconds, ttl)


def _full_path(m: int, path: str) -> str:
    return path if m < 0 else f"messages.{m}.{path}"


# A segment: the cache positions of one unit of a request (the tool list, the system prompt, a
# message), memoized by its JSON and shared between requests. A plain tuple of atoms and tuples,
# so that the garbage collector stops tracking it (most segments hold no dict), as:
#   (digests, tokens, packed digests (native 64-bit words), breakpoints, eligible,
#    has images, has citations, server-tool toggles)
# where eligible is the last block that can take the automatic breakpoint: (offset, cc, path).
Segment = tuple[
    tuple[int, ...],
    tuple[int, ...],
    bytes,
    tuple[SegmentMark, ...],
    tuple[int, Any, str] | None,
    bool,
    bool,
    tuple[str, ...],
]


def _segment_of(
    digests: list[int],
    tokens: list[int],
    marks: list[SegmentMark],
    eligible: tuple[int, Any, str] | None,
    images: bool = False,
    citations: bool = False,
    toggles: tuple[str, ...] = (),
) -> Segment:
    packed = array("Q", digests).tobytes()
    return (
        tuple(digests),
        tuple(tokens),
        packed,
        tuple(marks),
        eligible,
        images,
        citations,
        toggles,
    )


def _single(digest: int, tokens: int, cc: Any, path: str) -> Segment:
    """The segment of one cacheable block (`cc`: its cache_control or None)."""
    marks: tuple[SegmentMark, ...] = () if cc is None else ((0, cc, path, _verdict(cc)),)
    packed = digest.to_bytes(8, _BYTEORDER)
    return ((digest,), (tokens,), packed, marks, (0, cc, path), False, False, ())


_ESTIMATOR_PROBES = (
    "",
    "a",
    "Hello, world! The quick brown fox.",
    'def f(x):\n    return {"k": [1, 2, 3]}  # code; punctuation\n',
    "Ünïcödé — テキスト 🙂 and ASCII.\n\n",
    "x" * 1000,
)


def _native_estimator(
    counter: TokenCounter, native: Any
) -> tuple[float, float, float, float, float, bytes] | None:
    """The constants for `native.digest_count` when it counts exactly as `counter` does.

    Only for `cachescope.tokens.EstimatingCounter` itself (not a subclass, not a plugged-in
    counter); and checked on a few probe texts, so a change to the estimator in `_tokens` turns
    the C count off instead of making it disagree.
    """
    if counter.__class__ is not _tokens.EstimatingCounter:
        return None
    try:
        estimator = (
            float(counter.factor),
            float(_tokens.CHARS_PER_TOKEN),
            float(_tokens.PUNCT_WEIGHT),
            float(_tokens.NEWLINE_WEIGHT),
            float(_tokens.NON_ASCII_WEIGHT),
            bytes(_tokens._PUNCT),
        )
        for probe in _ESTIMATOR_PROBES:
            found = native.digest_count(probe, 0, *estimator)
            if found is None or found[1] != counter.count(probe):
                return None
    except (AttributeError, TypeError, ValueError):
        return None
    return estimator


class Memo:
    """Memo of snapshots, segments and block digests/token counts for one token counter.

    Parameters
    ----------
    counter:
        The token counter whose counts are memoized.
    max_entries:
        Entries kept before a memo table is cleared (bounds memory on endless new text).
    """

    __slots__ = (
        "counter",
        "estimator",
        "fast_text",
        "last",
        "max_entries",
        "messages",
        "native",
        "seeds",
        "settings",
        "snapshots",
        "systems",
        "texts",
        "tools",
    )

    def __init__(
        self, counter: TokenCounter, max_entries: int = 100_000, native: Any = "auto"
    ) -> None:
        self.counter = counter
        self.max_entries = max_entries
        # The compiled `simcore` (structural digests instead of JSON bytes as memo keys, C digest
        # and count of new text), or None for the pure-Python path; "auto": whichever loads.
        self.native: Any = _load_native() if native == "auto" else native
        # the constants of `digest_count` when it counts exactly as `counter` does, else None
        self.estimator: tuple[float, float, float, float, float, bytes] | None = (
            _native_estimator(counter, self.native) if self.native is not None else None
        )
        self.seeds: dict[tuple[str, str | None, str], int] = {}
        self.tools: dict[bytes, Segment] = {}
        self.systems: dict[bytes, Segment] = {}
        self.messages: dict[bytes, Segment] = {}
        self.settings: dict[Any, int] = {}
        # the last (JSON or frozen copy, segment) per segment table (tools, system), by id(table)
        self.last: dict[int, tuple[Any, Segment]] = {}
        # (seed, text → (digest, tokens)) per (level, role, kind): `block` without tuple keys
        self.texts: dict[tuple[str, str | None, str], tuple[int, dict[str, tuple[int, int]]]] = {}
        # the latest snapshot per conversation, keyed by its first message's JSON
        self.snapshots: dict[bytes, _Snapshot] = {}
        # the user and assistant text memos for `simcore.text_message` (the C fast path of
        # `_message_segment`), when the C count is usable
        self.fast_text: tuple[Any, Any] | None = None
        if self.estimator is not None:
            self.fast_text = (
                self.text_table("messages", "user", "text"),
                self.text_table("messages", "assistant", "text"),
            )

    def block(self, level: str, role: str | None, kind: str, text: str) -> tuple[int, int]:
        """(digest, tokens) of one block, as `_blocks.flatten` computes them."""
        seed, table = self.text_table(level, role, kind)
        found = table.get(text)
        if found is None:
            found = self.new_block(seed, table, kind, text)
        return found

    def text_table(
        self, level: str, role: str | None, kind: str
    ) -> tuple[int, dict[str, tuple[int, int]]]:
        """The hash seed of a (level, role, kind) and its memo of text → (digest, tokens)."""
        found = self.texts.get((level, role, kind))
        if found is None:
            seed = self.seeds.get((level, role, kind))
            if seed is None:
                seed_text = f"{level}\x1f{role or ''}\x1f{kind}\x1f"
                seed = self.seeds[(level, role, kind)] = _xxh64(seed_text.encode())
            found = self.texts[(level, role, kind)] = (seed, {})
        return found

    def new_block(
        self, seed: int, table: dict[str, tuple[int, int]], kind: str, text: str
    ) -> tuple[int, int]:
        """Hash and count a block not seen before, and remember it."""
        if len(table) >= self.max_entries:
            table.clear()
        estimator = self.estimator
        if estimator is not None and kind != "image":
            found = self.native.digest_count(text, seed, *estimator)
            if found is not None:
                table[text] = found
                return found  # type: ignore[no-any-return]
        digest = _xxh64(text.encode("utf-8", "surrogatepass"), seed=seed)
        tokens = IMAGE_TOKENS if kind == "image" else self.counter.count(text)
        found = table[text] = (digest, tokens)
        return found

    def remember(self, table: dict[bytes, Segment], key: bytes, segment: Segment) -> Segment:
        if len(table) >= self.max_entries:
            table.clear()
        table[key] = segment
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

    def model_hash(self, model_id: str) -> int:
        """`settings_hash({"model": model_id})`, without serializing each time."""
        found = self.settings.get(model_id)
        if found is None:
            found = self.settings[model_id] = self.settings_hash({"model": model_id})
        return found


class Plan:
    """A request as cache positions: cumulative tokens, breakpoints, packed digests, lazy keys."""

    __slots__ = (
        "_keyed",
        "_keys",
        "breakpoints",
        "cum",
        "level_ends",
        "level_seeds",
        "message_units",
        "model",
        "packed",
        "total",
    )

    def __init__(
        self,
        model: str = "",
        cum: list[int] | None = None,
        breakpoints: list[tuple[int, float, str]] | None = None,
        level_ends: tuple[int, int, int] = (0, 0, 0),
        level_seeds: tuple[int, int, int] = (0, 0, 0),
        packed: tuple[bytes, bytes, bytes] = (b"", b"", b""),
        message_units: list[int] | None = None,
    ) -> None:
        self.model = model
        self.cum: list[int] = cum if cum is not None else []
        self.total = self.cum[-1] if self.cum else 0
        # (position, ttl seconds, ttl name) in render order
        self.breakpoints: list[tuple[int, float, str]] = breakpoints or []
        # number of positions in tools, tools+system, all
        self.level_ends = level_ends
        # the settings hash folded in at each level start
        self.level_seeds = level_seeds
        # the digests of tools, system and messages, each as native 64-bit words
        self.packed = packed
        # per position, the index of its lookback unit (only when counting whole messages)
        self.message_units = message_units
        self._keyed: bytes | None = None  # the packed digests with each level's settings hash
        self._keys: dict[int, int] = {}

    def keyed(self) -> bytes:
        """The packed digests with each level's settings hash in front of the level."""
        keyed = self._keyed
        if keyed is None:
            seeds = self.level_seeds
            tools, system, messages = self.packed
            keyed = self._keyed = b"".join(
                (
                    seeds[0].to_bytes(8, _BYTEORDER),
                    tools,
                    seeds[1].to_bytes(8, _BYTEORDER),
                    system,
                    seeds[2].to_bytes(8, _BYTEORDER),
                    messages,
                )
            )
        return keyed

    @property
    def digests(self) -> list[int]:
        """The content digest of every position, in cache order."""
        return array("Q", b"".join(self.packed)).tolist()

    def key(self, position: int) -> int:
        """Cumulative prefix key at `position`: every digest up to it plus the level settings."""
        found = self._keys.get(position)
        if found is None:
            tools_end, system_end, _ = self.level_ends
            index = position + 2 + (position >= tools_end) + (position >= system_end)
            found = self._keys[position] = _xxh64(self.keyed()[: index * 8])
        return found

    def keys(self) -> list[int]:
        """Every prefix key (for tests and tools; the simulator computes them on demand)."""
        return [self.key(position) for position in range(self.level_ends[2])]


class _Snapshot:
    """A recent request's messages: serialized bytes, per-message ends, and what they flattened to.

    A new request whose serialized `messages` starts with the same bytes as this one up to the
    end of message k reuses messages 0..k wholesale (byte-identical JSON is an identical prefix).
    Positions are relative to the first message. With the compiled core, `raw` is instead the
    list of the messages' frozen copies (`simcore.freeze`) and `first`/`ends` are unused.
    """

    __slots__ = ("ctokens", "ends", "first", "marks", "packed", "raw", "states", "tokens")

    def __init__(self) -> None:
        self.raw: Any = b""
        self.first = b""  # raw up to the end of the first message
        self.ends: list[int] = []  # byte offset just after each message's JSON
        # after each message: (positions so far, eligible, images so far, citations so far,
        # breakpoints so far, whether this message has no positions)
        self.states: list[tuple[int, Eligible | None, bool, bool, int, bool]] = []
        self.marks: list[Mark] = []
        self.tokens: list[int] = []
        self.packed = b""  # the digests as native 64-bit words
        # `tokens` as native 64-bit words, kept by the compiled `simcore.handle` (which then
        # need not convert the list); b"" from the Python path, where it is not used
        self.ctokens = b""

    def common(self, raw: bytes) -> int:
        """How many leading messages `raw` shares byte for byte with this snapshot."""
        if not raw.startswith(self.first):
            return 0
        ends = self.ends
        count = len(ends)
        view = memoryview(self.raw)
        # The first message is shared; the others are compared piece by piece from a shared end
        # (`startswith(piece, offset)`: no copies, each byte compared about once).
        low_end = ends[0]
        if raw.startswith(view[low_end : ends[-1]], low_end):
            return count
        if count < 3:
            return 1
        if raw.startswith(view[low_end : ends[-2]], low_end):
            return count - 1
        low, high = 1, count - 2  # invariant: the first `low` messages are shared
        while low < high:
            middle = (low + high + 1) // 2
            end = ends[middle - 1]
            if raw.startswith(view[low_end:end], low_end):
                low, low_end = middle, end
            else:
                high = middle - 1
        return low


def _without_cache_control(block: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in block.items() if key != "cache_control"}


def _copy(cache_control: Any) -> Any:
    # Segments are shared between requests: keep a copy, not the caller's (mutable) dict.
    return dict(cache_control) if _is_mapping(cache_control) else cache_control


def _contains_image(value: Any) -> bool:
    if _is_mapping(value):
        if value.get("type") == "image":
            return True
        content = value.get("content")
        if isinstance(content, list):
            return any(_contains_image(item) for item in content)
    return False


def _tools_segment(tools: Any, memo: Memo) -> Segment:
    if not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list")
    digests: list[int] = []
    token_counts: list[int] = []
    marks: list[SegmentMark] = []
    eligible: tuple[int, Any, str] | None = None
    toggles: list[str] = []
    for i, tool in enumerate(tools):
        if not _is_mapping(tool):
            raise invalid(f"tools.{i}: Input should be a valid dictionary")
        tool_type = tool.get("type")
        if isinstance(tool_type, str) and tool_type.startswith(_SYSTEM_TOGGLE_PREFIXES):
            toggles.append(tool_type)
            continue
        cc = tool.get("cache_control")
        if cc is not None:
            cc = _copy(cc)
        text = _dumps(_without_cache_control(tool) if cc is not None else tool).decode()
        digest, tokens = memo.block("tools", None, "tool", text)
        offset = len(digests)
        digests.append(digest)
        token_counts.append(tokens)
        if cc is not None:
            marks.append((offset, cc, f"tools.{i}", _verdict(cc)))
        eligible = (offset, cc, f"tools.{i}")
    return _segment_of(digests, token_counts, marks, eligible, toggles=tuple(toggles))


def _system_segment(system: Any, memo: Memo) -> Segment:
    if isinstance(system, str):
        if system:
            digest, tokens = memo.block("system", None, "text", system)
            return _single(digest, tokens, None, "system")
        return _segment_of([], [], [], None)
    if not isinstance(system, list):
        raise invalid("system: Input should be a valid string or list")
    digests: list[int] = []
    token_counts: list[int] = []
    marks: list[SegmentMark] = []
    eligible: tuple[int, Any, str] | None = None
    for i, item in enumerate(system):
        if not _is_mapping(item):
            raise invalid(f"system.{i}: Input should be a valid dictionary")
        if item.get("type") != "text":
            raise invalid(f"system.{i}.type: Input should be 'text'")
        cc = item.get("cache_control")
        if cc is not None:
            cc = _copy(cc)
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
        offset = len(digests)
        digests.append(digest)
        token_counts.append(tokens)
        if cc is not None:
            marks.append((offset, cc, f"system.{i}", _verdict(cc)))
        eligible = (offset, cc, f"system.{i}")
    return _segment_of(digests, token_counts, marks, eligible)


def _message_segment(message: Any, m: int, memo: Memo) -> Segment:
    """A message's positions; `m` is used only in error messages (paths are stored relative)."""
    fast_text = memo.fast_text
    if fast_text is not None:  # the C twin of the fast path below (plain text only)
        found = memo.native.text_message(
            message, fast_text[0], fast_text[1], memo.max_entries, memo.estimator
        )
        if found is not None:
            return found  # type: ignore[no-any-return]
    if message.__class__ is dict:
        # Fast path: the common shapes (a string, or one plain text block), same rules as below.
        role = message.get("role")
        content = message.get("content")
        if role == "user" or role == "assistant":
            cc = None
            if content.__class__ is str and content:
                text = content
            elif content.__class__ is list and len(content) == 1:
                item = content[0]
                if item.__class__ is not dict or item.get("type") != "text":
                    text = None
                else:
                    text = item.get("text")
                    cc = item.get("cache_control")
                    if text.__class__ is not str or not text or len(item) != 2 + (cc is not None):
                        text = None
            else:
                text = None
            if text is not None:
                seed, table = memo.text_table("messages", role, "text")
                found = table.get(text)
                if found is None:
                    found = memo.new_block(seed, table, "text", text)
                digest, tokens = found
                if cc is None:
                    path = "content" if content.__class__ is str else "content.0"
                    return (
                        (digest,),
                        (tokens,),
                        digest.to_bytes(8, _BYTEORDER),
                        (),
                        (0, None, path),
                        False,
                        False,
                        (),
                    )
                cc = _copy(cc)
                return _single(digest, tokens, cc, "content.0")
    if not _is_mapping(message):
        raise invalid(f"messages.{m}: Input should be a valid dictionary")
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise invalid(f"messages.{m}.role: Input should be 'user' or 'assistant'")
    content = message.get("content")
    if isinstance(content, str):
        if content:
            digest, tokens = memo.block("messages", role, "text", content)
            return _single(digest, tokens, None, "content")
        return _segment_of([], [], [], None)
    if not isinstance(content, list):
        raise invalid(f"messages.{m}.content: Input should be a valid string or list")
    digests: list[int] = []
    token_counts: list[int] = []
    marks: list[SegmentMark] = []
    images = has_citations = False
    eligible: tuple[int, Any, int] | None = None  # (offset, cache_control, content index)
    for c, item in enumerate(content):
        if not _is_mapping(item):
            raise invalid(f"messages.{m}.content.{c}: Input should be a valid dictionary")
        kind = item.get("type")
        if not isinstance(kind, str):
            raise invalid(f"messages.{m}.content.{c}.type: Field required")
        cc = item.get("cache_control")
        if cc is not None:
            cc = _copy(cc)
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
                    has_citations = True
                text = _dumps(_without_cache_control(item)).decode()
        else:
            if cc is not None and kind in _NOT_CACHEABLE_KINDS:
                raise invalid(
                    f"messages.{m}.content.{c}.{kind}.cache_control: Extra inputs are not permitted"
                )
            text = _dumps(_without_cache_control(item) if cc is not None else item).decode()
            if kind in ("image", "tool_result") and _contains_image(item):
                images = True
            if kind == "document":
                citations = item.get("citations")
                if _is_mapping(citations) and citations.get("enabled"):
                    has_citations = True
        digest, tokens = memo.block("messages", role, kind, text)
        offset = len(digests)
        digests.append(digest)
        token_counts.append(tokens)
        if cc is not None:
            marks.append((offset, cc, f"content.{c}", _verdict(cc)))
        if kind not in _NOT_CACHEABLE_KINDS:
            eligible = (offset, cc, c)
    return _segment_of(
        digests,
        token_counts,
        marks,
        None if eligible is None else (eligible[0], eligible[1], f"content.{eligible[2]}"),
        images,
        has_citations,
    )


# ---- tool_use / tool_result pairing ------------------------------------------------------------
# The API's texts, as quoted in 400 responses in public issue threads:
# - missing results: anthropics/claude-code#5989 (two ids, joined by ", "), #1237, #2697;
#   Kilo-Org/kilocode#5163. The same text answers a user message whose `tool_result` blocks do
#   not all come first: NousResearch/hermes-agent#65369 (content [text, tool_result]) and
#   shareAI-lab/learn-claude-code#55 (a text inserted before the tool_result).
# - unexpected ids: router-for-me/CLIProxyAPI#497 (`messages.12.content.0`), anthropics/claude-code
#   #13460 (`messages.48.content.1`), decocms/studio#1803 (`messages.0.content.0`).
# - blocks in the wrong role: V1ki/dsh-plugin-subscriptions#23 (`messages.52: \`tool_use\` blocks
#   can only be in \`assistant\` messages`); tghamm/Anthropic.SDK#128 quotes the tool_result one
#   without its `messages.N: ` prefix, which is assumed to be the same as the tool_use one's.
# - a server tool's result without its `server_tool_use`: anthropics/claude-code#62885, #64383,
#   #92611, #95406 (`messages.7.content.0: unexpected \`tool_use_id\` found in
#   \`advisor_tool_result\` blocks: srvtoolu_…. Each \`advisor_tool_result\` block must have a
#   corresponding \`server_tool_use\` block before it.`). Only the advisor's text is quoted; the
#   same text with their own type is assumed for the other server tools' results
#   (`web_search_tool_result`, `web_fetch_tool_result`, `code_execution_tool_result`, ...), and
#   "before it" is read as anywhere earlier in the request.


def _missing_results(m: int, ids: list[Any]) -> str:
    return (
        f"messages.{m}: `tool_use` ids were found without `tool_result` blocks immediately "
        f"after: {', '.join(str(i) for i in ids)}. Each `tool_use` block must have a "
        "corresponding `tool_result` block in the next message."
    )


def _unexpected_result(m: int, c: int, tool_use_id: Any) -> str:
    return (
        f"messages.{m}.content.{c}: unexpected `tool_use_id` found in `tool_result` blocks: "
        f"{tool_use_id}. Each `tool_result` block must have a corresponding `tool_use` block in "
        "the previous message."
    )


def _unpaired_server_result(m: int, c: int, kind: str, tool_use_id: Any) -> str:
    return (
        f"messages.{m}.content.{c}: unexpected `tool_use_id` found in `{kind}` blocks: "
        f"{tool_use_id}. Each `{kind}` block must have a corresponding `server_tool_use` block "
        "before it."
    )


def _is_server_result(kind: Any) -> bool:
    """A server tool's result block (`web_search_tool_result`, `advisor_tool_result`, ...):
    answered by the API in the assistant turn, after its `server_tool_use`. (`mcp_tool_result`
    pairs with `mcp_tool_use` instead, and `tool_result` is the client's.)"""
    return (
        kind.__class__ is str
        and kind.endswith("_tool_result")
        and kind != "tool_result"
        and kind != "mcp_tool_result"
    )


def _server_use_ids(blocks: Any) -> set[Any]:
    return {
        item.get("id")
        for item in blocks
        if _is_mapping(item) and item.get("type") == "server_tool_use"
    }


def _check_server_results(messages: Any, message: Any, m: int) -> None:
    """Each server tool result in `messages[m]` names the id of a `server_tool_use` block before
    it (earlier in the message, or in an earlier message); raises the API's 400 otherwise."""
    content = message.get("content")
    if content.__class__ is str or not isinstance(content, list):
        return
    earlier: set[Any] | None = None  # the ids of the messages before, read only when needed
    for c, item in enumerate(content):
        kind = item.get("type")
        if not _is_server_result(kind):
            continue
        tool_use_id = item.get("tool_use_id")
        if tool_use_id in _server_use_ids(content[:c]):
            continue
        if earlier is None:
            earlier = set()
            for before in messages[:m]:
                blocks = before.get("content") if _is_mapping(before) else None
                if isinstance(blocks, list):
                    earlier |= _server_use_ids(blocks)
        if tool_use_id not in earlier:
            raise invalid(_unpaired_server_result(m, c, kind, tool_use_id))


def _client_tool_uses(message: Any) -> list[Any]:
    """The ids of an assistant message's client `tool_use` blocks, in order.

    Server tools (`server_tool_use` with their `web_search_tool_result`, ...) are answered by the
    API inside the same assistant turn and need no `tool_result`, so they are not counted.
    """
    if message.get("role") != "assistant":
        return []
    content = message.get("content")
    if content.__class__ is str or not isinstance(content, list):
        return []
    return [item.get("id") for item in content if item.get("type") == "tool_use"]


def _check_tool_pairing(pending: list[Any], message: Any, m: int, messages: Any) -> list[Any]:
    """Check `messages[m]` against the client `tool_use` ids of the message before it, and its
    server tool results against the `server_tool_use` blocks before them.

    `message` has passed `_message_segment` (a mapping with a valid role; list content holds
    mappings with a str type). Raises the API's 400 when:
    - a `tool_use` block is in a user message, or a `tool_result` block in an assistant message;
    - `pending` (the previous message's ids) are not all answered by the `tool_result` blocks at
      the *start* of this message (a user message; a text or image before them does not count),
      reported at `messages.{m - 1}` with the missing ids in their order;
    - a `tool_result` of this user message names an id that is not in `pending`, reported at its
      block (`messages.{m}.content.{c}`), the first such block only.
    - a server tool result (`web_search_tool_result`, `advisor_tool_result`, ...) names no
      `server_tool_use` before it (`_check_server_results`).
    The four are checked in that order (the API's own order when several apply is not known).
    Returns the ids this message leaves pending (its own client `tool_use` blocks).

    A final assistant message with client `tool_use` blocks (a prefill) is refused by `plan`
    with the missing-results text at its index: no public source quotes the API's answer to that
    shape; the text is the one the API gives when the next message lacks the results.
    """
    content = message.get("content")
    if content.__class__ is str:
        if pending:
            raise invalid(_missing_results(m - 1, pending))
        return []
    role = message.get("role")
    blocks = content if isinstance(content, list) else ()
    user = role == "user"
    server_results = False
    for item in blocks:
        kind = item.get("type")
        if kind == "tool_use" and user:
            raise invalid(f"messages.{m}: `tool_use` blocks can only be in `assistant` messages")
        if kind == "tool_result" and not user:
            raise invalid(f"messages.{m}: `tool_result` blocks can only be in `user` messages")
        if not server_results and _is_server_result(kind):
            server_results = True
    if pending:
        leading: list[Any] = []
        if user:
            for item in blocks:
                if item.get("type") != "tool_result":
                    break
                leading.append(item.get("tool_use_id"))
        missing = [i for i in pending if i not in leading]
        if missing:
            raise invalid(_missing_results(m - 1, missing))
    if user:
        for c, item in enumerate(blocks):
            if item.get("type") == "tool_result":
                tool_use_id = item.get("tool_use_id")
                if tool_use_id not in pending:
                    raise invalid(_unexpected_result(m, c, tool_use_id))
    if server_results:
        _check_server_results(messages, message, m)
    if user:
        return []
    return [item.get("id") for item in blocks if item.get("type") == "tool_use"]


def _segment(table: dict[bytes, Segment], value: Any, memo: Memo, build: Any) -> Segment:
    """The memoized segment of a tools list or system prompt."""
    native = memo.native
    last = memo.last.get(id(table))
    if native is not None:
        # Usually the same as last time: a structural comparison with its frozen copy.
        if last is not None and native.matches(last[0], value):
            return last[1]
        raw = native.struct_hash(value)
        if raw is None:  # not plain JSON: compute without the memo
            return build(value, memo)  # type: ignore[no-any-return]
        found = table.get(raw)
        if found is None:
            found = memo.remember(table, raw, build(value, memo))
        memo.last[id(table)] = (native.freeze(value), found)
        return found
    try:
        raw = _dumps(value)
    except TypeError:  # not JSON-serializable: compute without the memo
        return build(value, memo)  # type: ignore[no-any-return]
    # Usually the same as last time: one memcmp instead of hashing a few KB for the dict.
    if last is not None and last[0] == raw:
        return last[1]
    found = table.get(raw)
    if found is None:
        found = memo.remember(table, raw, build(value, memo))
    memo.last[id(table)] = (raw, found)
    return found


_NO_SEGMENT: Segment = ((), (), b"", (), None, False, False, ())


def plan(
    body: Mapping[str, Any],
    memo: Memo,
    model_id: str,
    *,
    settings_before_tools: bool = False,
    count_messages_as_units: bool = False,
) -> Plan:
    """Flatten and validate a Messages request body (see module docstring)."""
    get = body.get
    # explicit breakpoints in render order
    raw_marks: list[Mark] = []
    eligible: Eligible | None = None

    tools = get("tools")
    _, tools_tokens, tools_packed, seg_marks, seg_eligible, _, _, toggles = (
        _segment(memo.tools, tools, memo, _tools_segment) if tools else _NO_SEGMENT
    )
    if seg_marks:
        for offset, cc, path, verdict in seg_marks:
            raw_marks.append((offset, cc, -1, path, verdict))
    if seg_eligible is not None:
        offset, cc, path = seg_eligible
        eligible = (offset, cc, -1, path)
    tools_end = len(tools_tokens)

    system = get("system")
    _, system_tokens, system_packed, seg_marks, seg_eligible, _, _, _ = (
        _segment(memo.systems, system, memo, _system_segment) if system else _NO_SEGMENT
    )
    if seg_marks:
        for offset, cc, path, verdict in seg_marks:
            raw_marks.append((tools_end + offset, cc, -1, path, verdict))
    if seg_eligible is not None:
        offset, cc, path = seg_eligible
        eligible = (tools_end + offset, cc, -1, path)
    system_end = tools_end + len(system_tokens)

    messages = get("messages")
    if messages.__class__ is not list:
        if messages is None:
            raise invalid("messages: Field required")
        if not isinstance(messages, list):
            raise invalid("messages: Input should be a valid list")
    count = len(messages)
    # ---- the longest shared prefix with the latest request of the same conversation ---------
    # With the compiled core, the snapshot holds frozen copies of the messages (`freeze`) and
    # the prefix is found by structural comparison (`common`), the memo keys are structural
    # digests (`struct_hash`); without it, the snapshot holds the JSON of `messages` and the
    # prefix is found by byte comparison. Either way an empty key means no reuse.
    native = memo.native
    raw = b""
    images = citations = False
    message_eligible: Eligible | None = None  # positions relative to the first message
    reused = 0
    previous: _Snapshot | None = None
    first_raw = b""
    if native is not None:
        if count:
            first_raw = native.struct_hash(messages[0]) or b""
            if first_raw:
                previous = memo.snapshots.get(first_raw)
                if previous is not None:
                    reused = native.common(previous.raw, messages)
    else:
        try:
            raw = _dumps(messages)
        except TypeError:  # not JSON-serializable (e.g. SDK objects passed to the core): no reuse
            raw = b""
        if raw and count:
            first_raw = _dumps(messages[0])
            previous = memo.snapshots.get(first_raw)
            if previous is not None:
                reused = previous.common(raw)
    if previous is not None and reused:
        positions, message_eligible, images, citations, mark_count, empty = previous.states[
            reused - 1
        ]
        if empty and reused < count:
            # an empty last assistant message (allowed) is no longer last
            role = messages[reused - 1].get("role")
            raise invalid(f"messages.{reused - 1}: {role} messages must have non-empty content")
        tokens = previous.tokens[:positions]
        marks = previous.marks[:mark_count]
        packed = previous.packed[: positions * 8]
    else:
        tokens, marks, packed = [], [], b""
        positions = 0

    # ---- the other messages, segment by segment ------------------------------------------------
    if reused < count:
        frozen: list[Any] | None = None
        if reused:
            assert previous is not None
            states = previous.states[:reused]
            if native is not None:
                frozen = previous.raw[:reused]
            else:
                ends = previous.ends[:reused]
                byte_end = ends[-1]
        else:
            states = []
            if native is not None:
                frozen = [] if first_raw else None
            else:
                ends, byte_end = [], 0
        table = memo.messages
        last = count - 1
        packed_parts = [packed]
        # the client tool_use ids the previous message leaves for this one to answer
        pending = _client_tool_uses(messages[reused - 1]) if reused else []
        for m in range(reused, count):
            message = messages[m]
            if native is not None:
                raw_message = first_raw if m == 0 else (native.struct_hash(message) or b"")
                if frozen is not None:
                    if raw_message:
                        frozen.append(native.freeze(message))
                    else:
                        frozen = None
            elif m == 0 and first_raw:
                raw_message = first_raw
            elif m == last and raw:
                raw_message = raw[byte_end + 1 : -1]  # between "," and the closing "]"
            else:
                try:
                    raw_message = _dumps(message)
                except TypeError:
                    raw_message = b""
            segment = table.get(raw_message)
            if segment is None:
                segment = _message_segment(message, m, memo)
                if raw_message:
                    if len(table) >= memo.max_entries:
                        table.clear()
                    table[raw_message] = segment
            _, seg_tokens, seg_packed, seg_marks, seg_eligible, seg_images, seg_citations, _ = (
                segment
            )
            if seg_tokens:
                empty = False
                tokens += seg_tokens
                packed_parts.append(seg_packed)
            else:
                empty = True
                if not (m == last and _is_mapping(message) and message.get("role") == "assistant"):
                    role = message.get("role") if _is_mapping(message) else None
                    raise invalid(f"messages.{m}: {role} messages must have non-empty content")
            pending = _check_tool_pairing(pending, message, m, messages)
            if seg_marks:
                for offset, cc, path, verdict in seg_marks:
                    marks.append((positions + offset, cc, m, path, verdict))
            if seg_eligible is not None:
                offset, cc, path = seg_eligible
                message_eligible = (positions + offset, cc, m, path)
            if seg_images:
                images = True
            if seg_citations:
                citations = True
            positions += len(seg_tokens)
            if native is None:
                byte_end += len(raw_message) + 1  # "[" or "," before each message
                ends.append(byte_end)
            states.append((positions, message_eligible, images, citations, len(marks), empty))
        packed = b"".join(packed_parts)
        if raw or frozen is not None:
            snapshot = _Snapshot()
            if frozen is not None:
                snapshot.raw = frozen
            else:
                snapshot.raw = raw
                snapshot.first = raw[: ends[0]]
                snapshot.ends = ends
            snapshot.states = states
            snapshot.marks = marks
            snapshot.tokens = tokens
            snapshot.packed = packed
            snapshots = memo.snapshots
            if snapshots.pop(first_raw, None) is None and len(snapshots) >= _CONVERSATIONS:
                del snapshots[next(iter(snapshots))]  # the least recently updated
            snapshots[first_raw] = snapshot
    else:
        pending = _client_tool_uses(messages[-1]) if count else []
        if count_messages_as_units:
            states = previous.states[:reused] if previous is not None else []
    if pending:  # a final assistant message with client tool_use blocks (see _check_tool_pairing)
        raise invalid(_missing_results(count - 1, pending))

    if message_eligible is not None:
        position, cc, m, path = message_eligible
        eligible = (system_end + position, cc, m, path)
    if marks:
        for position, cc, m, path, verdict in marks:
            raw_marks.append((system_end + position, cc, m, path, verdict))

    # ---- breakpoints: count, TTL order, automatic (top-level) cache_control ------------------
    top = get("cache_control")
    explicit = len(raw_marks)
    if explicit > MAX_BREAKPOINTS or (top is not None and explicit == MAX_BREAKPOINTS):
        found = explicit + (top is not None and explicit == MAX_BREAKPOINTS)
        raise invalid(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {found}."
        )
    breakpoints: list[tuple[int, float, str]] = []
    seen_5m = False
    for position, _cc, m, path, verdict in raw_marks:
        if isinstance(verdict, str):
            raise invalid(f"{_full_path(m, path)}.{verdict}")
        seconds, ttl = verdict
        if ttl == "5m":
            seen_5m = True
        elif seen_5m:
            raise invalid(_ttl_order_message(_full_path(m, path)))
        breakpoints.append((position, seconds, ttl))
    if top is not None:
        if not _is_mapping(top) or top.get("type") != "ephemeral":
            raise invalid("cache_control.type: Input should be 'ephemeral'")
        top_ttl = top.get("ttl") or "5m"
        if top_ttl not in TTL_SECONDS:
            raise invalid("cache_control.ttl: Input should be '5m' or '1h'")
        # The automatic breakpoint goes on the last block that can carry one (walking back over
        # thinking blocks); none at all means no caching and no error (PC).
        if eligible is not None:
            position, cc, m, path = eligible
            if cc is not None:
                own = (cc.get("ttl") if _is_mapping(cc) else None) or "5m"
                if own != top_ttl:
                    raise invalid(
                        f"cache_control.ttl: the top-level cache_control (ttl='{top_ttl}') "
                        f"conflicts with the explicit cache_control on {_full_path(m, path)} "
                        f"(ttl='{own}'); automatic caching would place its breakpoint on that "
                        "block. Use the same ttl or remove one of them."
                    )
            else:
                if top_ttl == "1h" and seen_5m:
                    raise invalid(_ttl_order_message("cache_control"))
                breakpoints.append((position, TTL_SECONDS[top_ttl], top_ttl))

    # ---- settings per level (spec §2 / §8) ---------------------------------------------------
    speed = get("speed")
    if toggles or citations or (speed is not None and speed != "standard"):
        system_settings: dict[str, Any] = {}
        if toggles:
            system_settings["server_tools"] = sorted(set(toggles))
        if citations:
            system_settings["citations"] = True
        if speed not in (None, "standard"):
            system_settings["speed"] = speed
        system_seed = memo.settings_hash(system_settings)
    else:
        system_seed = _EMPTY_SETTINGS
    tool_choice = get("tool_choice")
    thinking = get("thinking")
    output_config = get("output_config")
    if tool_choice is None and thinking is None and output_config is None and not images:
        tools_seed = memo.model_hash(model_id)
        message_seed = _EMPTY_SETTINGS
    else:
        message_settings: dict[str, Any] = {}
        if tool_choice is not None:
            message_settings["tool_choice"] = tool_choice
        if thinking is not None:
            message_settings["thinking"] = thinking
        if isinstance(output_config, Mapping) and output_config.get("effort") is not None:
            message_settings["effort"] = output_config["effort"]
        if images:
            message_settings["images"] = True
        if settings_before_tools and (
            "thinking" in message_settings or "effort" in message_settings
        ):
            tools_settings: dict[str, Any] = {"model": model_id}
            for name in ("thinking", "effort"):
                if name in message_settings:
                    tools_settings[name] = message_settings.pop(name)
            tools_seed = memo.settings_hash(tools_settings)
        else:
            tools_seed = memo.model_hash(model_id)
        message_seed = memo.settings_hash(message_settings)

    units: list[int] | None = None
    if count_messages_as_units:
        units = list(range(system_end))
        done = 0
        for m, state in enumerate(states):
            end = state[0]
            units.extend([system_end + m] * (end - done))
            done = end
    return Plan(
        model_id,
        list(accumulate(chain(tools_tokens, system_tokens, tokens))),
        breakpoints,
        (tools_end, system_end, system_end + positions),
        (tools_seed, system_seed, message_seed),
        (tools_packed, system_packed, packed),
        units,
    )


def _ttl_order_message(path: str) -> str:
    return (
        f"{path}.cache_control.ttl: a ttl='1h' cache_control block must not come after a "
        "ttl='5m' cache_control block. Note that blocks are processed in the following "
        "order: `tools`, `system`, `messages`."
    )
