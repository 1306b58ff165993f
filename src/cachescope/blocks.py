"""A Messages API request as the prompt cache sees it: blocks in cache order, with fast hashes.

The cache hashes the rendered prompt in the order tools → system → messages (spec §1.1). This
module flattens request params into that sequence of *positions* (spec §1.5: each tool definition,
each system block — a string system prompt is one — and each message content block — string content
is one) and gives each a 64-bit xxh3 hash of its content. `cache_control` is not part of a block's
content: moving a breakpoint does not change what is cached. Key order inside JSON is kept as sent,
because the real cache is byte-exact and re-ordered keys are a classic cache-buster.

Request-level settings that the API mixes into the prefix (spec §2) are returned per level and
folded into the cumulative prefix keys where their level starts: a change there invalidates that
level and everything after it, exactly like a changed block.

The simulator, `fingerprint`/`compare`, `lint` and the ledger all read requests through here.

When the optional C accelerator `cachescope._native.blocks` is built, the per-call walk over the
messages (keying each one from every byte of its content, memo hits, the block list) runs in C;
the pure-Python loop in `flatten_units` and the `_*_py` functions below are its twins, and tests
hold both paths to identical blocks.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from operator import attrgetter
from typing import Any, overload

import orjson
import xxhash

from cachescope.tokens import EstimatingCounter, counter_for

LEVELS: tuple[str, str, str] = ("tools", "system", "messages")
LEVEL_INDEX = {name: i for i, name in enumerate(LEVELS)}

# Tokens charged for one image block; the documented cap of the standard tier (spec §4.5).
IMAGE_TOKENS = 1568

# Server tools that the API treats as a system-level toggle, not as a tool definition (spec §2).
_SYSTEM_TOGGLE_TOOL_PREFIXES = ("web_search", "web_fetch")

_xxh64 = xxhash.xxh3_64_intdigest

# The C walk of `flatten_units` (`_native/blocks.c`), or None: then the pure-Python loop below
# does the same work (tests hold the two to identical results).
_native: Any = None


class LayeredBlocks(list):  # type: ignore[type-arg]
    """A list of content blocks that remembers which prompt layer each block came from.

    `Prompt.render` returns its `system`, `tools` and newest-turn content as `LayeredBlocks`, so the
    layer names survive `client.messages.create(**params)` (the dict is copied, the list is not) and
    `fingerprint` can name the layer a change is in. It serializes as a plain JSON list.
    """

    layer_names: list[str | None]

    def __init__(self, blocks: Iterable[Any] = (), layer_names: Sequence[str | None] = ()) -> None:
        super().__init__(blocks)
        names = list(layer_names)
        self.layer_names = names + [None] * (len(self) - len(names))


# the hash of long strings in the C module's keys ("aes" or "xxh3"; see `_key_text_hash`)
_NATIVE_TEXT_HASH: str = getattr(_native, "TEXT_HASH", "xxh3")


@dataclass(slots=True)
class Block:
    """One cache position."""

    index: int
    level: str
    path: str
    kind: str
    role: str | None
    hash: int
    tokens: int
    text: str
    cache_control: dict[str, Any] | None
    layer: str | None = None

    @property
    def ttl(self) -> str | None:
        """The breakpoint's TTL ("5m" or "1h"), or None when no breakpoint sits here."""
        if self.cache_control is None:
            return None
        return str(self.cache_control.get("ttl") or "5m")


@dataclass(slots=True)
class FlatRequest:
    """A request flattened into cache positions plus the settings mixed into each level."""

    model: str
    blocks: list[Block]
    settings: dict[str, dict[str, Any]]
    top_level_cache_control: dict[str, Any] | None
    # From the C walk only (None otherwise): indices of the blocks with cache_control, and the
    # cumulative token counts (native int64 bytes, len(blocks) + 1 of them, from 0).
    # (Derived data: left out of == and repr, which stay what they were.)
    marked: list[int] | None = field(default=None, compare=False, repr=False)
    cumulative: bytes | None = field(default=None, compare=False, repr=False)
    # The C walk's (counter, message keys, message memo entries), so that a later request
    # flattened with `prior=` this one takes the entries of its equal messages without a lookup.
    walk: tuple[Any, bytes, list[Any]] | None = field(default=None, compare=False, repr=False)

    @property
    def total_tokens(self) -> int:
        return sum(block.tokens for block in self.blocks)

    def breakpoints(self) -> list[Block]:
        return [block for block in self.blocks if block.cache_control is not None]

    def prefix_keys(self) -> list[int]:
        """Cumulative hash of the prefix ending at each block (settings folded in per level)."""
        return prefix_keys(self.blocks, self.settings)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


def _without_cache_control(block: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in block.items() if key != "cache_control"}


def _block_text(block: Any) -> tuple[str, str]:
    """(kind, text) of one content block; text is what is hashed and shown in diffs."""
    if isinstance(block, str):
        return "text", block
    if not isinstance(block, Mapping):
        return "unknown", _dumps(block)
    kind = str(block.get("type", "unknown"))
    if kind == "text" and len(block) <= 2 + ("cache_control" in block):
        text = block.get("text")
        if isinstance(text, str):
            return kind, text
    return kind, _dumps(_without_cache_control(block))


def _contains_image(value: Any) -> bool:
    if isinstance(value, Mapping):
        if value.get("type") == "image":
            return True
        content = value.get("content")
        if isinstance(content, list):
            return any(_contains_image(item) for item in content)
    return False


def _is_system_toggle_tool(tool: Any) -> bool:
    return isinstance(tool, Mapping) and str(tool.get("type", "")).startswith(
        _SYSTEM_TOGGLE_TOOL_PREFIXES
    )


def _layer_names(value: Any) -> list[str | None] | None:
    names = getattr(value, "layer_names", None)
    return list(names) if names is not None else None


# ---- memos that keep an unchanged block from being re-hashed or re-counted ---------------------
#
# A session re-renders the same history on every call: the dicts are new but the strings inside
# are the same objects. Digests are memoized by the identity of the text (the memo holds the string,
# so its id cannot be reused while the entry lives) and token counts by digest. Both are bounded.

_SEEDS: dict[tuple[str, str | None, str], int] = {}
_TEXT_MEMO: dict[tuple[int, int], tuple[str, int]] = {}
_TEXT_MEMO_CHARS = 0
_TEXT_MEMO_LIMIT_CHARS = 64 * 1024 * 1024
_TOKEN_MEMO: dict[int, int] = {}
_TOKEN_MEMO_LIMIT = 200_000
# Whole units (tool list, system prompt, one message) → their blocks; Blocks are never mutated.
_SEGMENT_MEMO: dict[tuple[Any, ...], tuple[tuple[Block, ...], bool, bool, tuple[str, ...]]] = {}
_SEGMENT_MEMO_LIMIT = 20_000
# The C walk's memo of messages, one per token counter: int key (`message_key`) → the same entries.
_MESSAGE_MEMOS: dict[Any, dict[int, Any]] = {}
_MESSAGE_MEMO_COUNTERS = 64
# The last C walk per counter: (counter, message keys, entries); see `flatten_units`.
_LAST_WALKS: dict[Any, tuple[Any, bytes, list[Any]]] = {}
# A `lean_messages` walk: keys, starts, cumulative tokens, breakpoints, per-message flags (bytes),
# all flags, {m: memo entry} of the messages not taken from the prior walk, and a TTL code for
# each breakpoint (bytes: 1 "5m", 2 "1h", 0 read the block).
_LeanWalk = tuple[bytes, bytes, bytes, bytes, bytes, int, dict[int, Any], bytes]
# The last `lean_messages` walk per counter; see `flatten_lean`.
_LAST_LEAN: dict[Any, _LeanWalk] = {}
# a walk of no messages and no blocks: the prior that lends nothing
_NO_WALK: _LeanWalk = (b"", bytes(8), bytes(8), b"", b"", 0, {}, b"")


def _layer_tuple(value: Any) -> tuple[Any, ...] | None:
    """Layer names that travel with a unit (not part of its JSON), for the memo key."""
    if type(value) is list or type(value) is str:  # the common units, before the ABC check
        return None
    if type(value) is dict or isinstance(value, Mapping):
        value = value.get("content")
    if type(value) is list or type(value) is str:
        return None
    names = getattr(value, "layer_names", None)
    return tuple(names) if names is not None else None


def _seed(level: str, role: str | None, kind: str) -> int:
    key = (level, role, kind)
    seed = _SEEDS.get(key)
    if seed is None:
        seed = _SEEDS[key] = _xxh64(f"{level}\x1f{role or ''}\x1f{kind}\x1f".encode())
    return seed


def _digest(text: str, seed: int) -> int:
    global _TEXT_MEMO_CHARS
    native = _native
    if native is not None and type(text) is str:
        return int(native.xxh3_64(text, seed))  # faster than remembering it
    key = (id(text), seed)
    hit = _TEXT_MEMO.get(key)
    if hit is not None and hit[0] is text:
        return hit[1]
    digest = _xxh64(text.encode("utf-8", "surrogatepass"), seed=seed)
    if len(text) > 256:  # short texts are cheaper to hash than to remember
        if _TEXT_MEMO_CHARS > _TEXT_MEMO_LIMIT_CHARS:
            _TEXT_MEMO.clear()
            _TEXT_MEMO_CHARS = 0
        _TEXT_MEMO[key] = (text, digest)
        _TEXT_MEMO_CHARS += len(text)
    return digest


# ---- content keys of whole units ----------------------------------------------------------
#
# The memo key of a unit must fix everything `flatten` makes of it, and must be cheap: the unit is
# keyed on every call. `_content_key` walks plain JSON values (exact dict / list / str / int /
# float / bool / None) into nested tuples: key order and types are kept, short strings enter as
# they are and long ones by their xxh3, so equal keys mean equal JSON. Anything else (SDK objects,
# subclasses) is keyed by the xxh3 of its orjson serialization, or not memoized when that fails.

_SHORT = 48
_DICT_TAG = object()
_LIST_TAG = object()
_JSON_TAG = object()
_MESSAGE_TAG = object()


class _Unkeyable(Exception):
    """A value that `_content_key` does not cover."""


def _scalar_key(value: Any) -> Any:
    kind = type(value)
    if kind is int or kind is bool or value is None:
        return (kind, value)
    if kind is float:
        return (kind, value.hex())  # 0.0 and -0.0 are equal but serialize differently
    raise _Unkeyable


def _long_key(text: str) -> int:
    try:
        return _xxh64(text.encode())
    except UnicodeEncodeError:  # lone surrogates
        return _xxh64(text.encode("utf-8", "surrogatepass"))


def _content_key(value: Any) -> Any:
    """A hashable key that determines the JSON of `value` (see the note above)."""
    kind = type(value)
    if kind is dict:
        parts: list[Any] = [_DICT_TAG]
        append = parts.append
        for name, item in value.items():
            if type(name) is not str:
                raise _Unkeyable
            append(name)
            item_kind = type(item)
            if item_kind is str:
                if len(item) <= _SHORT:
                    append(item)
                else:
                    # `.encode()` is the fast path; it equals surrogatepass wherever it succeeds
                    try:
                        append(_xxh64(item.encode()))
                    except UnicodeEncodeError:
                        append(_long_key(item))
            elif item_kind is list or item_kind is dict or item_kind is LayeredBlocks:
                append(_content_key(item))
            else:
                append(_scalar_key(item))
        return tuple(parts)
    if kind is str:
        return value if len(value) <= _SHORT else _long_key(value)
    if kind is list or kind is LayeredBlocks:
        return (_LIST_TAG, *[_content_key(item) for item in value])
    return _scalar_key(value)


def _unit_key(
    tag: int, value: Any, start: int, counter: Any, walk: bool = True
) -> tuple[Any, ...] | None:
    """Memo key of one unit starting at block `start`; None when it cannot be keyed.

    `walk=False` keys by the xxh3 of the unit's JSON right away: better for tool lists, whose many
    small schema dicts are slow to walk in Python and quick for orjson (no long escaped texts).
    """
    try:
        if not walk:
            raise _Unkeyable
        content = _content_key(value)
    except (_Unkeyable, RecursionError):
        try:
            content = (_JSON_TAG, _xxh64(orjson.dumps(value)))
        except TypeError:  # not plain JSON (e.g. SDK objects): build it without the memo
            return None
    return (tag, content, start, counter, _layer_tuple(value))


_NATIVE_TAG = object()
_TOKENS_OF = attrgetter("tokens")
# A memo entry of the C walk: (blocks, images, citations, toggles, token counts, marked offsets).
_NativeEntry = tuple[tuple[Block, ...], bool, bool, tuple[str, ...], bytes, tuple[int, ...]]


def _pack_tokens(counts: Iterable[int]) -> bytes:
    """Token counts as native int64 bytes (what `flatten_messages` reads)."""
    return array("q", counts).tobytes()


def _native_entry(entry: tuple[tuple[Block, ...], bool, bool, tuple[str, ...]]) -> _NativeEntry:
    unit = entry[0]
    marks = tuple(i for i, block in enumerate(unit) if block.cache_control is not None)
    return (*entry, _pack_tokens(map(_TOKENS_OF, unit)), marks)


def _native_unit_key(tag: int, value: Any, start: int, counter: Any) -> tuple[Any, ...] | None:
    """`_unit_key` through the C `value_key` (a list subclass such as `LayeredBlocks` is keyed
    as its items; its layer names are in the key anyway); None when the value is not plain."""
    plain = list(value) if type(value) is not list and isinstance(value, list) else value
    content = _native.value_key(plain)
    if content is None:
        return None
    return (tag, (_NATIVE_TAG, content), start, counter, _layer_tuple(value))


def _head_key(tag: int, value: Any, start: int, counter: Any) -> tuple[Any, ...] | None:
    """The memo key of the tool list (`tag` -2) or the system prompt (-1) starting at block
    `start`: through the C `value_key` when it can, else `_unit_key` (tools by their JSON)."""
    key = _native_unit_key(tag, value, start, counter) if _native is not None else None
    if key is None:
        key = _unit_key(tag, value, start, counter, walk=tag != -2)
    return key


def head_keys(params: Mapping[str, Any], counter: Any) -> tuple[Any, Any] | None:
    """The keys of a request's tool list and system prompt (None for one that is absent or
    empty, as `flatten_units` makes no unit of it), both as if starting at block 0; None when
    either cannot be keyed. Equal keys mean the same blocks."""
    tools, system = params.get("tools"), params.get("system")
    tools_key = _head_key(-2, tools, 0, counter) if tools else None
    system_key = _head_key(-1, system, 0, counter) if system else None
    if (tools and tools_key is None) or (system and system_key is None):
        return None
    return tools_key, system_key


def message_keys(messages: list[Any], previous: bytes = b"") -> tuple[bytes, int]:
    """The key of each message (its role and content, as `flatten_units` keys it, as if it
    started at block 0) packed as little-endian uint64, up to the first message that cannot be
    keyed; and how many of those lead `previous` (such a packing) unchanged."""
    if _native is not None:
        keys, same = _native.message_keys(messages, previous)
        return keys, same
    return _message_keys_py(messages, previous)


def message_units(
    messages: Sequence[Any],
    first: int,
    start: int,
    counter: EstimatingCounter,
    token_cache: dict[int, int],
) -> tuple[list[tuple[Block, ...]], bool, bool]:
    """The blocks of `messages[first:]`, one tuple per message, the first starting at block
    index `start` (the same blocks `flatten_units` makes of them, built without its memo); and
    whether they hold images, and documents with citations on."""
    builder = _UnitBuilder(counter, token_cache, 0)
    units: list[tuple[Block, ...]] = []
    images = citations = False
    for m in range(first, len(messages)):
        builder.base = start
        built: list[Block] = []
        has_images, cited, _ = builder.message(built, messages[m], m)
        units.append(tuple(built))
        start += len(built)
        images = images or has_images
        citations = citations or cited
    return units, images, citations


# ---- pure-Python twins of `_native/blocks.c` (tests hold the two to identical results) --------

_MAX_DEPTH = 200  # nesting past this is not keyed (the pure key and memo take over)
_INLINE_BYTES = 32
_U64 = (1 << 64) - 1


def _xxh3_py(data: str | bytes, seed: int = 0) -> int:
    """Twin of `blocks.xxh3_64`: xxh3-64 of a str's UTF-8 (surrogatepass) or of bytes."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return _xxh64(data, seed=seed)


def _put_str_py(text: str, out: bytearray) -> None:
    # CPython keeps a str in the narrowest of 1, 2 or 4 bytes per code point
    widest = max(map(ord, text), default=0)
    if widest < 0x100:
        width, raw = 1, text.encode("latin-1")
    elif widest < 0x10000:
        width, raw = 2, text.encode("utf-16-le", "surrogatepass")
    else:
        width, raw = 4, text.encode("utf-32-le", "surrogatepass")
    if len(raw) <= _INLINE_BYTES:  # one byte for the width and size, then the storage
        out.append(0x80 + 33 * (width >> 1) + len(raw))
        out += raw
    else:  # one word: the tag in the low byte, the width in the next, the length above
        out += (0x53 | width << 8 | len(text) << 16).to_bytes(8, "little")
        out += _key_text_hash(raw).to_bytes(8, "little")


def _key_text_hash(raw: bytes) -> int:
    """The hash a long string enters a key by: the C module's while it is loaded (its AES hash
    where the CPU has AES instructions, run here by the slow `aes_text_hash_py`, which only the
    tests comparing the two call), else xxh3. Keys never leave the process, so the pure path
    may key with its own hash."""
    return _xxh64(raw)


def _put_value_py(value: Any, out: bytearray, depth: int) -> bool:
    kind = type(value)
    if kind is str:
        _put_str_py(value, out)
        return True
    if kind is dict:
        if depth >= _MAX_DEPTH:
            return False
        out += (0x44 | len(value) << 8).to_bytes(8, "little")
        for name, item in value.items():
            if type(name) is not str:
                return False
            _put_str_py(name, out)
            if not _put_value_py(item, out, depth + 1):
                return False
        return True
    if kind is list:
        if depth >= _MAX_DEPTH:
            return False
        out += (0x4C | len(value) << 8).to_bytes(8, "little")
        return all(_put_value_py(item, out, depth + 1) for item in value)
    if kind is int:
        if not -(1 << 63) <= value < 1 << 63:
            return False
        out += b"I" + (value & _U64).to_bytes(8, "little")
        return True
    if kind is float:
        out += b"R" + struct.pack("<d", value)
        return True
    if value is True or value is False or value is None:
        out += {True: b"T", False: b"F", None: b"N"}[value]
        return True
    return False


def _value_key_py(value: Any) -> int | None:
    """Twin of `blocks.value_key`: xxh3 of the tagged encoding of a plain JSON value."""
    out = bytearray()
    return _xxh64(bytes(out)) if _put_value_py(value, out, 0) else None


def _put_layered_py(content: LayeredBlocks, out: bytearray) -> bool:
    """Twin of blocks.c's `put_layered`: a LayeredBlocks content with its layer names."""
    out += (0x59 | len(content) << 8).to_bytes(8, "little")
    if not all(_put_value_py(item, out, 2) for item in content):
        return False
    names = getattr(content, "layer_names", None)
    return type(names) is list and _put_value_py(names, out, 2)


def _message_key_py(message: Any, m: int, start: int) -> int | None:
    """Twin of `blocks.message_key`: the memo key of message `m` starting at block `start`."""
    if type(message) is not dict or any(type(name) is not str for name in message):
        return None
    out = bytearray(b"M" + m.to_bytes(8, "little") + b"M" + start.to_bytes(8, "little"))
    for name in ("role", "content"):
        if name not in message:
            out += b"-"
        elif name == "content" and type(message[name]) is LayeredBlocks:
            if not _put_layered_py(message[name], out):
                return None
        elif not _put_value_py(message[name], out, 1):
            return None
    return _xxh64(bytes(out))


def _message_keys_py(messages: list[Any], previous: bytes = b"") -> tuple[bytes, int]:
    """Twin of `blocks.message_keys`."""
    out = bytearray()
    for m, message in enumerate(messages):
        key = _message_key_py(message, m, 0)
        if key is None:
            break
        out += key.to_bytes(8, "little")
    same = 0
    known = min(len(out), len(previous)) // 8
    while same < known and out[8 * same : 8 * same + 8] == previous[8 * same : 8 * same + 8]:
        same += 1
    return bytes(out), same


@lru_cache(maxsize=256)
def _counter_for_model(model: str) -> EstimatingCounter:
    from cachescope._modeldata import default_table

    info = default_table().lookup(model)
    return counter_for(info.tokenizer if info else "classic")


def flatten(
    params: Mapping[str, Any],
    counter: EstimatingCounter | None = None,
    token_cache: dict[int, int] | None = None,
) -> FlatRequest:
    """Flatten Messages API params into cache positions.

    Parameters
    ----------
    params:
        Keyword arguments for `messages.create` (or a parsed request body).
    counter:
        Token estimator; by default the one for the model's tokenizer generation.
    token_cache:
        Memo of block hash → token count, so an unchanged block is never re-counted. By default a
        bounded module-level memo per tokenizer generation is used.
    """
    return flatten_units(params, counter, token_cache)[0]


class _UnitBuilder:
    """Builds the `Block`s of one unit (the tool list, the system prompt, one message) for
    `flatten_units` and `message_units`: `base` is the index of the unit's first block."""

    __slots__ = ("base", "counter", "factor_seed", "token_cache")

    def __init__(self, counter: EstimatingCounter, token_cache: dict[int, int], factor_seed: int):
        self.counter = counter
        self.token_cache = token_cache
        self.factor_seed = factor_seed
        self.base = 0

    def add(
        self,
        target: list[Block],
        level: str,
        path: str,
        kind: str,
        role: str | None,
        text: str,
        cache_control: Any,
        layer: str | None,
    ) -> None:
        digest = _digest(text, _seed(level, role, kind))
        if kind == "image":
            tokens = IMAGE_TOKENS
        else:
            memo_key = digest ^ self.factor_seed
            tokens = self.token_cache.get(memo_key)  # type: ignore[assignment]
            if tokens is None:
                tokens = self.token_cache[memo_key] = self.counter.count(text)
        target.append(
            Block(
                self.base + len(target),
                level,
                path,
                kind,
                role,
                digest,
                tokens,
                text,
                dict(cache_control)
                if cache_control is not None and isinstance(cache_control, Mapping)
                else None,
                layer,
            )
        )

    def tools(self, target: list[Block], tools: Any) -> tuple[bool, bool, tuple[str, ...]]:
        tool_layers = _layer_names(tools)
        found: list[str] = []
        for i, tool in enumerate(tools):
            if _is_system_toggle_tool(tool):
                found.append(str(tool.get("type")))
                continue
            if isinstance(tool, Mapping):
                text = _dumps(_without_cache_control(tool))
                cache_control = tool.get("cache_control")
            else:
                text, cache_control = _dumps(tool), None
            layer = tool_layers[i] if tool_layers and i < len(tool_layers) else "tools"
            self.add(target, "tools", f"tools.{i}", "tool", None, text, cache_control, layer)
        return False, False, tuple(found)

    def system(self, target: list[Block], system: Any) -> tuple[bool, bool, tuple[str, ...]]:
        if isinstance(system, str):
            self.add(target, "system", "system", "text", None, system, None, None)
            return False, False, ()
        names = _layer_names(system)
        for i, item in enumerate(system):
            kind, text = _block_text(item)
            cache_control = item.get("cache_control") if isinstance(item, Mapping) else None
            layer = names[i] if names and i < len(names) else None
            self.add(target, "system", f"system.{i}", kind, None, text, cache_control, layer)
        return False, False, ()

    def message(
        self, target: list[Block], message: Any, m: int
    ) -> tuple[bool, bool, tuple[str, ...]]:
        add = self.add
        if not isinstance(message, Mapping):
            add(target, "messages", f"messages.{m}", "unknown", None, _dumps(message), None, None)
            return False, False, ()
        role = str(message.get("role", ""))
        content = message.get("content")
        if isinstance(content, str):
            add(target, "messages", f"messages.{m}.content", "text", role, content, None, None)
            return False, False, ()
        names = _layer_names(content)
        images = citations = False
        for c, item in enumerate(content or []):
            layer = names[c] if names and c < len(names) else None
            cache_control = None
            if type(item) is dict:
                cache_control = item.get("cache_control")
                item_text = item.get("text")
                # The common case: a plain text block, optionally with cache_control.
                if (
                    item.get("type") == "text"
                    and type(item_text) is str
                    and len(item) == 2 + (cache_control is not None)
                ):
                    path = f"messages.{m}.content.{c}"
                    add(target, "messages", path, "text", role, item_text, cache_control, layer)
                    continue
            kind, text = _block_text(item)
            if isinstance(item, Mapping):
                cache_control = item.get("cache_control")
                images = images or _contains_image(item)
                cited = item.get("citations")
                citations = citations or (isinstance(cited, Mapping) and bool(cited.get("enabled")))
            add(
                target,
                "messages",
                f"messages.{m}.content.{c}",
                kind,
                role,
                text,
                cache_control,
                layer,
            )
        return images, citations, ()


def flatten_units(
    params: Mapping[str, Any],
    counter: EstimatingCounter | None = None,
    token_cache: dict[int, int] | None = None,
    *,
    prior: FlatRequest | None = None,
) -> tuple[FlatRequest, list[tuple[Block, ...]]]:
    """`flatten`, plus the blocks of each unit (the tool list, the system prompt, each message).

    Units with the same content at the same position are the *same* tuple of the same `Block`
    objects (they come from one memo entry, found by a content key computed on every call), so
    two requests can be compared unit by unit: identical tuples hold identical blocks.

    `prior`, an earlier request flattened with the same counter, only saves memo lookups: a
    message whose key (computed as always) equals the key of the prior's message at the same
    place takes that message's entry, which the memo would have returned.
    """
    model = str(params.get("model", ""))
    if counter is None:
        counter = _counter_for_model(model)
    if token_cache is None:
        token_cache = _TOKEN_MEMO
        if len(token_cache) > _TOKEN_MEMO_LIMIT:
            token_cache.clear()
        factor_seed = 0 if counter.factor == 1.0 else int(counter.factor * 1000)
    else:
        factor_seed = 0
    blocks: list[Block] = []
    units: list[tuple[Block, ...]] = []
    toggles: list[str] = []
    flags = [False, False]  # images present, citations on
    builder = _UnitBuilder(counter, token_cache, factor_seed)
    tools_segment, system_segment = builder.tools, builder.system
    message_segment = builder.message

    memo = _SEGMENT_MEMO
    if len(memo) > _SEGMENT_MEMO_LIMIT:
        memo.clear()

    def segment(key: Any, value: Any, build: Any, *args: Any) -> None:
        """Blocks of one unit (the tool list, the system prompt, one message), memoized by a
        content key of the unit (computed on every call) plus where it starts, so an unchanged
        unit costs one walk over its values, an xxh3 of each long string and a lookup."""
        entry = _unit_entry(memo, key, builder, len(blocks), build, value, *args)
        blocks.extend(entry[0])
        units.append(entry[0])
        if entry[1] or entry[2] or entry[3]:
            flags[0] = flags[0] or entry[1]
            flags[1] = flags[1] or entry[2]
            toggles.extend(entry[3])

    native = _native
    marked: list[int] | None = None
    cumulative: bytes | None = None
    walk: tuple[Any, bytes, list[Any]] | None = None
    tools = params.get("tools")
    if tools:
        segment(_head_key(-2, tools, 0, counter), tools, tools_segment)
    system = params.get("system")
    if system:
        segment(_head_key(-1, system, len(blocks), counter), system, system_segment)
    messages = params.get("messages")
    if native is not None and type(messages) is list:
        # The C walk: each message keyed by `message_key` (every text hashed), memo hits taken
        # in C; anything else comes back here one message at a time.
        message_memo = _message_memo(counter)
        slow = _slow_entries(builder, memo, message_memo, counter)

        # The entries of an earlier walk (the one asked for, else this counter's last one)
        # stand in for memo lookups of messages whose keys, computed now, equal its own.
        earlier = prior.walk if prior is not None else None
        if earlier is None or earlier[0] is not counter:
            earlier = _LAST_WALKS.get(counter)
        if earlier is not None:
            blocks, units_after, marked, cumulative, found, keys, entries = native.flatten_messages(
                messages, message_memo, blocks, None, slow, earlier[1], earlier[2]
            )
        else:
            blocks, units_after, marked, cumulative, found, keys, entries = native.flatten_messages(
                messages, message_memo, blocks, None, slow
            )
        walk = _LAST_WALKS[counter] = (counter, keys, entries)
        units.extend(units_after)
        if found:
            flags[0] = flags[0] or bool(found & 1)
            flags[1] = flags[1] or bool(found & 2)
        messages = None
    # Messages, the bulk of a request. Inlined for the common shapes (a role and a list of plain
    # text blocks and string tool results): the key holds the role, each block's key order and
    # short fields, and the xxh3 of its text. Anything else is keyed by `_unit_key`.
    memo_get = memo.get
    extend, add_unit = blocks.extend, units.append
    encode = str.encode
    for m, message in enumerate(messages or []):
        start = len(blocks)
        key: Any = None
        if type(message) is dict:
            role = message.get("role")
            content = message.get("content")
            if type(role) is str and type(content) is list and len(content) == 1:
                # one block, the most common message: a flat key
                item = content[0]
                if type(item) is dict:
                    size = len(item)
                    try:
                        if size == 2:
                            text = item["text"]
                            if type(text) is str and item["type"] == "text":
                                key = (m, start, counter, role, _xxh64(encode(text)))
                        elif size == 3:
                            text = item["content"]
                            use_id = item["tool_use_id"]
                            if (
                                type(text) is str
                                and type(use_id) is str
                                and item["type"] == "tool_result"
                            ):
                                # serialized as JSON, so the key order counts too
                                key = (m, start, counter, role, *item, use_id, _xxh64(encode(text)))
                    except (KeyError, UnicodeEncodeError):
                        key = None
            if key is None and type(role) is str and type(content) is list:
                parts: list[Any] = [_MESSAGE_TAG, m, start, counter, role]
                append = parts.append
                try:
                    for item in content:
                        if type(item) is dict:
                            text = item.get("text")
                            if text is not None:
                                if type(text) is str and len(item) == 2 and item["type"] == "text":
                                    append(_xxh64(encode(text)))
                                    continue
                            elif len(item) == 3 and item.get("type") == "tool_result":
                                text = item.get("content")
                                use_id = item.get("tool_use_id")
                                if type(text) is str and type(use_id) is str:
                                    # serialized as JSON, so the key order counts too
                                    append((*item, use_id, _xxh64(encode(text))))
                                    continue
                        append((_content_key(item),))
                    key = tuple(parts)
                except (UnicodeEncodeError, KeyError, _Unkeyable, RecursionError):
                    key = None
        if key is not None:
            hit = memo_get(key)
            if hit is not None and not (hit[1] or hit[2]):
                extend(hit[0])
                add_unit(hit[0])
                continue
        else:
            key = _unit_key(m, message, start, counter)
        segment(key, message, message_segment, m)
    has_images, citations = flags

    settings = request_settings(params, has_images=has_images, toggles=toggles, citations=citations)
    top = params.get("cache_control")
    flat = FlatRequest(
        model=model,
        blocks=blocks,
        settings=settings,
        top_level_cache_control=dict(top) if top is not None and isinstance(top, Mapping) else None,
        marked=marked,
        cumulative=cumulative,
        walk=walk,
    )
    return flat, units


def _unit_entry(
    memo: dict[Any, tuple[tuple[Block, ...], bool, bool, tuple[str, ...]]],
    key: Any,
    builder: _UnitBuilder,
    base: int,
    build: Any,
    value: Any,
    *args: Any,
) -> tuple[tuple[Block, ...], bool, bool, tuple[str, ...]]:
    """The memo entry of one unit under `key` (None: not memoized), built at block `base` with
    `build(target, value, *args)` when missing."""
    entry = memo.get(key) if key is not None else None
    if entry is None:
        built: list[Block] = []
        builder.base = base
        images, citations, found = build(built, value, *args)
        entry = (tuple(built), images, citations, found)
        if key is not None:
            memo[key] = entry
    return entry


def _message_memo(counter: Any) -> dict[int, Any]:
    """The C walk's memo of messages for this counter (bounded, like the unit memo)."""
    message_memo = _MESSAGE_MEMOS.get(counter)
    if message_memo is None:
        if len(_MESSAGE_MEMOS) >= _MESSAGE_MEMO_COUNTERS:
            _MESSAGE_MEMOS.clear()
            _LAST_WALKS.clear()
            _LAST_LEAN.clear()
        message_memo = _MESSAGE_MEMOS[counter] = {}
    elif len(message_memo) > _SEGMENT_MEMO_LIMIT:
        message_memo.clear()
    return message_memo


def _slow_entries(
    builder: _UnitBuilder,
    memo: dict[Any, tuple[tuple[Block, ...], bool, bool, tuple[str, ...]]],
    message_memo: dict[int, Any],
    counter: Any,
) -> Any:
    """The callback of the C walks for a message the memo does not hold: its entry, built (and
    stored under its key), or under the pure key when the C code could not key it."""
    message_segment = builder.message

    def slow(message: Any, m: int, start: int, key: int | None) -> _NativeEntry:
        if key is None:  # not plain JSON: the pure key and memo
            unit_key = _unit_key(m, message, start, counter)
            return _native_entry(
                _unit_entry(memo, unit_key, builder, start, message_segment, message, m)
            )
        builder.base = start
        built: list[Block] = []
        images, citations, found = message_segment(built, message, m)
        native_entry = _native_entry((tuple(built), images, citations, found))
        message_memo[key] = native_entry
        return native_entry

    return slow


class LeanRequest:
    """A request walked for `compare` (`flatten_lean`): the blocks of its tool list and system
    prompt, and of its messages only numbers (keys, first blocks, cumulative token counts,
    breakpoints); a message's blocks are taken from the memo, or made, when asked for."""

    __slots__ = (
        "_blocks",
        "_builder_made",
        "_found",
        "_memo",
        "_slow_fn",
        "_token_cache",
        "_units",
        "counter",
        "cumulative",
        "head",
        "head_units",
        "marked",
        "messages",
        "model",
        "settings",
        "starts",
        "top_level_cache_control",
        "walk",
    )

    walk: _LeanWalk
    starts: memoryview
    cumulative: memoryview
    marked: list[int]

    def __init__(self, params: Mapping[str, Any], counter: Any, token_cache: dict[int, int]):
        """The head of the request (tool list, system prompt) and its settings; the messages'
        numbers come with `_walk`."""
        self.model = str(params.get("model", ""))
        self.counter = counter
        self.messages: list[Any] = params["messages"]
        self._token_cache = token_cache
        self._builder_made: _UnitBuilder | None = None  # made on the first memo miss
        memo = _SEGMENT_MEMO
        if len(memo) > _SEGMENT_MEMO_LIMIT:
            memo.clear()
        head: list[Block] = []
        units: list[tuple[Block, ...]] = []
        toggles: list[str] = []
        images = citations = False
        tools = params.get("tools")
        if tools:
            key = _head_key(-2, tools, 0, counter)
            entry = memo.get(key) if key is not None else None
            if entry is None:
                builder = self._builder
                entry = _unit_entry(memo, key, builder, 0, builder.tools, tools)
            head.extend(entry[0])
            units.append(entry[0])
            images, citations = entry[1], entry[2]
            toggles.extend(entry[3])
        system = params.get("system")
        if system:
            key = _head_key(-1, system, len(head), counter)
            entry = memo.get(key) if key is not None else None
            if entry is None:
                builder = self._builder
                entry = _unit_entry(memo, key, builder, len(head), builder.system, system)
            head.extend(entry[0])
            units.append(entry[0])
            images, citations = images or entry[1], citations or entry[2]
            toggles.extend(entry[3])
        self.head = head
        self.head_units = units
        self._found = (images, citations)
        # the settings now (images and citations in the messages are added after the walk)
        self.settings = request_settings(
            params, has_images=images, toggles=toggles, citations=citations
        )
        self._memo = _message_memo(counter)
        self._slow_fn: Any = None
        self._units: dict[int, tuple[Block, ...]] = {}
        self._blocks: dict[int, Block] = {}
        top = params.get("cache_control")
        self.top_level_cache_control = (
            dict(top) if top is not None and isinstance(top, Mapping) else None
        )

    @property
    def _builder(self) -> _UnitBuilder:
        builder = self._builder_made
        if builder is None:
            builder = self._builder_made = _UnitBuilder(self.counter, self._token_cache, 0)
        return builder

    def _slow(self, message: Any, m: int, start: int, key: int | None) -> _NativeEntry:
        """The C walk's callback for a message the memo does not hold (see `_slow_entries`)."""
        slow = self._slow_fn
        if slow is None:
            slow = self._slow_fn = _slow_entries(
                self._builder, _SEGMENT_MEMO, self._memo, self.counter
            )
        entry: _NativeEntry = slow(message, m, start, key)
        return entry

    def _walk(self, prior: LeanRequest | None) -> None:
        """The C walk of the messages (`prior`: an earlier request of the same counter, else this
        counter's last walk, whose numbers stand in for equal messages)."""
        counter = self.counter
        earlier = prior.walk if prior is not None and prior.counter is counter else None
        if earlier is None:
            earlier = _LAST_LEAN.get(counter)
        native = _native
        if earlier is not None:
            walk = native.lean_messages(self.messages, self._memo, self.head, self._slow, earlier)
        else:
            walk = native.lean_messages(self.messages, self._memo, self.head, self._slow)
        self._take(walk)

    def _take(self, walk: _LeanWalk) -> None:
        """The numbers of the C walk of the messages."""
        _LAST_LEAN[self.counter] = self.walk = walk
        self.starts = memoryview(walk[1]).cast("q")  # first block of each message, then total
        self.cumulative = memoryview(walk[2]).cast("q")
        self.marked = memoryview(walk[3]).cast("q").tolist()
        found = walk[5]
        if found:
            images, citations = self._found
            if found & 1 and not images:
                self.settings["messages"]["images"] = True
            if found & 2 and not citations:
                # in the place `request_settings` gives it (before speed), for equal reprs
                system = self.settings["system"]
                speed = system.pop("speed", None)
                system["citations"] = True
                if speed is not None:
                    system["speed"] = speed

    def __len__(self) -> int:
        return self.starts[-1]

    def token_sum(self, start: int, end: int) -> int:
        """Tokens of positions start..end (both included; `end` past the last is the last)."""
        cumulative = self.cumulative
        end = min(end, len(cumulative) - 2)
        return cumulative[end + 1] - cumulative[start] if end >= start else 0

    def key_of(self, m: int) -> int | None:
        """The key of message m (None when the C walk could not key it)."""
        keys = self.walk[0]
        if not keys[16 * m + 8]:
            return None
        return int.from_bytes(keys[16 * m : 16 * m + 8], "little")

    def message_unit(self, m: int) -> tuple[Block, ...]:
        """The blocks of message m: the memo's entry under its key, else built now."""
        unit = self._units.get(m)
        if unit is None:
            start, end = self.starts[m], self.starts[m + 1]
            entry = self.walk[6].get(m)  # the walk's own lookup, for a message that changed
            if entry is None:
                key = self.key_of(m)
                entry = self._memo.get(key) if key is not None else None
            if entry is not None and len(entry[0]) == end - start:
                unit = entry[0]
            else:  # not keyed, or the memo was cleared since the walk
                builder = self._builder
                builder.base = start
                built: list[Block] = []
                builder.message(built, self.messages[m], m)
                unit = tuple(built)
            self._units[m] = unit
        return unit

    @overload
    def __getitem__(self, i: int) -> Block: ...
    @overload
    def __getitem__(self, i: slice) -> list[Block]: ...
    def __getitem__(self, i: int | slice) -> Block | list[Block]:
        """The block at position i (a list for a slice), as a list of every block would give."""
        if isinstance(i, slice):
            return [self.block(j) for j in range(len(self))[i]]
        return self.block(i + len(self) if i < 0 else i)

    def __iter__(self) -> Iterator[Block]:
        return map(self.block, range(len(self)))

    def remember(self, i: int, block: Block) -> None:
        """Remember that the block at position i is `block` (found by its message's unit)."""
        self._blocks[i] = block

    def block(self, i: int) -> Block:
        """The block at position i."""
        found = self._blocks.get(i)
        if found is None:
            head = self.head
            if 0 <= i < len(head):
                found = head[i]
            elif not 0 <= i < self.starts[-1]:
                raise IndexError(i)
            else:
                m = bisect_right(self.starts, i, 0, len(self.starts) - 1) - 1
                found = self.message_unit(m)[i - self.starts[m]]
            self._blocks[i] = found
        return found


def _shares_messages(a: list[Any], b: list[Any]) -> bool:
    """Whether two message lists hold some of the same message objects (sampled at the start,
    the middle and near the end): only a hint of how to walk them, never of their content."""
    n = min(len(a), len(b))
    return n > 0 and (
        a[0] is b[0] or a[n // 2] is b[n // 2] or a[max(0, n - 2)] is b[max(0, n - 2)]
    )


def flatten_lean(
    requests: Sequence[tuple[Mapping[str, Any], EstimatingCounter, dict[int, int]]],
) -> list[LeanRequest] | None:
    """The walk of `flatten_units` for `compare`, of several requests (params, counter, token
    memo) at once, through the C `lean_messages`: the same blocks, memo and keys (every text
    hashed on every call), but of the messages only numbers come out. None without the C module
    or when some request's messages are not a list.

    Each request after the first is walked with the one before it as its prior (else the
    counter's last walk): that only saves work, as a message whose key, computed as always,
    equals the prior's key of the same message takes the prior's numbers, which its memo entry
    holds too. The heads come first and the C walks last, back to back: a walk streams every
    text through the CPU caches, and the Python of the heads runs faster before it."""
    if _native is None:
        return None
    for params, _, _ in requests:
        if type(params.get("messages")) is not list:
            return None
    leans = [LeanRequest(params, counter, cache) for params, counter, cache in requests]
    if len(leans) == 2 and _shares_messages(leans[0].messages, leans[1].messages):
        # Requests that share message objects (consecutive renders of a `Prompt`, a session's
        # history) are walked in lockstep, message m of the first and then of the second: a
        # shared message is still keyed twice, every text hashed twice, but the second time
        # from the CPU caches. Requests that share nothing are walked one after the other,
        # which the memory system streams better. Either way the results are the same.
        a, b = leans
        prior_a = _LAST_LEAN.get(a.counter)
        prior_b = None if b.counter is a.counter else _LAST_LEAN.get(b.counter, _NO_WALK)
        walk_a, walk_b = _native.lean_pair(
            a.messages, a._memo, a.head, a._slow, prior_a,
            b.messages, b._memo, b.head, b._slow, prior_b,
        )  # fmt: skip
        a._take(walk_a)
        b._take(walk_b)
        return leans
    prior: LeanRequest | None = None
    for lean in leans:
        lean._walk(prior)
        prior = lean
    return leans


def _has_citations(params: Mapping[str, Any]) -> bool:
    return any(
        isinstance(block, Mapping)
        and isinstance(block.get("citations"), Mapping)
        and block["citations"].get("enabled")
        for message in params.get("messages") or []
        if isinstance(message, Mapping) and isinstance(message.get("content"), list)
        for block in message["content"]
    )


def request_settings(
    params: Mapping[str, Any],
    *,
    has_images: bool = False,
    toggles: Sequence[str] = (),
    citations: bool | None = None,
) -> dict[str, dict[str, Any]]:
    """Request-level settings the API mixes into the prefix, by the level where they take effect.

    Spec §2 / §8: the model at every level (it starts the chain); web search, web fetch,
    citations and speed from the system level on; tool_choice (with disable_parallel_tool_use),
    images present, thinking and effort at the messages level. `citations=None` scans the
    messages for document blocks with citations enabled.
    """
    output_config = params.get("output_config")
    effort = (
        output_config.get("effort")
        if output_config is not None and isinstance(output_config, Mapping)
        else None
    )  # (None first: an ABC isinstance of None costs ~0.4 us)
    if citations is None:
        citations = _has_citations(params)
    system_level: dict[str, Any] = {}
    if toggles:
        system_level["server_tools"] = sorted(set(toggles))
    if citations:
        system_level["citations"] = True
    if params.get("speed") not in (None, "standard"):
        system_level["speed"] = params.get("speed")
    messages_level: dict[str, Any] = {}
    for name in ("tool_choice", "thinking"):
        if params.get(name) is not None:
            messages_level[name] = params[name]
    if effort is not None:
        messages_level["effort"] = effort
    if has_images:
        messages_level["images"] = True
    return {
        "tools": {"model": str(params.get("model", ""))},
        "system": system_level,
        "messages": messages_level,
    }


def _settings_seed(settings: Mapping[str, Any]) -> bytes:
    return orjson.dumps(settings, option=orjson.OPT_SORT_KEYS)


def prefix_keys(blocks: Sequence[Block], settings: Mapping[str, Mapping[str, Any]]) -> list[int]:
    """Cumulative prefix hash at each block: key[i] depends on every block ≤ i and the settings of
    every level up to block i's level."""
    keys: list[int] = []
    key = 0
    level_done = -1
    for block in blocks:
        level = LEVEL_INDEX[block.level]
        while level_done < level:
            level_done += 1
            key = _xxh64(_settings_seed(settings.get(LEVELS[level_done], {})), seed=key)
        key = _xxh64(block.hash.to_bytes(8, "little"), seed=key)
        keys.append(key)
    return keys


def clear_memos() -> None:
    """Forget every memoized unit, digest and token count (for measuring a cold start)."""
    global _TEXT_MEMO_CHARS
    _SEGMENT_MEMO.clear()
    _MESSAGE_MEMOS.clear()
    _LAST_WALKS.clear()
    _LAST_LEAN.clear()
    _TEXT_MEMO.clear()
    _TEXT_MEMO_CHARS = 0
    _TOKEN_MEMO.clear()
