"""A Messages API request as the prompt cache sees it: blocks in cache order.

The cache reads the rendered prompt in the order tools → system → messages (spec §1.1). `flatten`
walks a request once into that sequence of *positions* (spec §1.5: each tool definition, each
system block — a string system prompt is one — and each message content block — string content is
one). Each `Block` carries its level, path, layer, breakpoint, token estimate and the xxh3 of its
content. `cache_control` is not content (moving a breakpoint does not change what is cached); key
order inside JSON is, because the real cache is byte-exact and re-ordered keys bust it.

Request-level settings that the API mixes into the prefix (spec §2) are returned per level and
folded into the cumulative prefix keys where their level starts: a change there invalidates that
level and everything after it, exactly like a changed block.

The simulator, `fingerprint`, `compare` and `lint` all read requests through `flatten`. A session
sends its history again on every call, so the blocks of each unit (the tool list, the system prompt,
one message) are remembered under the unit's content key in one bounded LRU memo: an unchanged
unit is keyed again (its content decides the key) but never re-serialized, re-hashed or re-counted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import accumulate
from typing import Any

import orjson
import xxhash

from cachescope.tokens import EstimatingCounter, TokenCounter, counter_for

LEVELS: tuple[str, str, str] = ("tools", "system", "messages")
LEVEL_INDEX = {name: i for i, name in enumerate(LEVELS)}

# Tokens charged for one image block; the documented cap of the standard tier (spec §4.5).
IMAGE_TOKENS = 1568

# Server tools that the API treats as a system-level toggle, not as a tool definition (spec §2).
_SYSTEM_TOGGLE_TOOL_PREFIXES = ("web_search", "web_fetch")
# Blocks that cannot carry the automatic breakpoint (spec §1.2).
_NOT_CACHEABLE_KINDS = frozenset({"thinking", "redacted_thinking"})

_xxh64 = xxhash.xxh3_64_intdigest


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
    # the blocks of each unit (tool list, system prompt, each message), in order: a unit whose
    # content and place did not change is the very same tuple on the next call
    units: list[tuple[Block, ...]] = field(default_factory=list, compare=False, repr=False)
    # per unit: (source value, level, message number, start, memo entry, blocks), for `alongside`
    sources: list[_Source] = field(default_factory=list, compare=False, repr=False)
    counter: Any = field(default=None, compare=False, repr=False)
    _cumulative: list[int] | None = field(default=None, compare=False, repr=False)

    @property
    def total_tokens(self) -> int:
        return self.cumulative_tokens()[-1]

    @property
    def automatic_ttl(self) -> str | None:
        """TTL of a top-level (automatic) `cache_control`, None when there is none."""
        top = self.top_level_cache_control
        return None if top is None else str(top.get("ttl") or "5m")

    def breakpoints(self) -> list[Block]:
        """The blocks that carry an explicit `cache_control` (an empty one counts)."""
        return [block for block in self.blocks if block.cache_control is not None]

    def cache_points(self) -> list[tuple[int, str]]:
        """(index, TTL) of every breakpoint in position order, the automatic one included."""
        points = [(block.index, block.ttl or "5m") for block in self.breakpoints()]
        return with_automatic(points, self.blocks, self.automatic_ttl)

    def cumulative_tokens(self) -> list[int]:
        """Tokens before each position: `len(blocks) + 1` sums, from 0 to the total."""
        if self._cumulative is None:
            self._cumulative = [0, *accumulate(block.tokens for block in self.blocks)]
        return self._cumulative

    def prefix_keys(self) -> list[int]:
        """Cumulative hash of the prefix ending at each block (settings folded in per level)."""
        return prefix_keys(self.blocks, self.settings)


def with_automatic(
    points: list[tuple[int, str]], blocks: Sequence[Any], automatic_ttl: str | None
) -> list[tuple[int, str]]:
    """`points` plus the automatic breakpoint of a top-level `cache_control` with `automatic_ttl`:
    it marks the last block that can carry one (spec §1.2), unless a breakpoint is there already.
    `blocks` are `Block`s or anything with `kind`, `text` (None when unknown) and `tokens`."""
    if not automatic_ttl:
        return points
    for i in range(len(blocks) - 1, -1, -1):
        block = blocks[i]
        empty = block.text == "" if block.text is not None else block.tokens == 0
        if block.kind not in _NOT_CACHEABLE_KINDS and not empty:
            if not points or points[-1][0] != i:
                points = sorted([*points, (i, automatic_ttl)])
            break
    return points


# ---- the content key of a unit -------------------------------------------------------------
#
# The memo key of a unit must decide everything `flatten` makes of it, and be cheap: the unit is
# keyed on every call. `_content_key` turns plain JSON values into nested tuples that keep key
# order and types (`True` is not `1`, `-0.0` is not `0.0`), so equal keys mean equal JSON. The
# strings enter as they are: Python caches a string's hash in the string, so a history sent again
# (the same string objects) is keyed without reading its text, and a copy is hashed once. Layer
# names of a `LayeredBlocks` are part of the key. Anything else raises TypeError (the unit is then
# built without the memo).

_DICT = object()
_LIST = object()
_LAYERS = object()


def _content_key(value: Any) -> Hashable:
    kind = type(value)
    if kind is str:
        return str(value)  # (already a str: returned as it is)
    if kind is dict:
        for item in value.values():
            if type(item) is not str:
                return (_DICT, *[(name, _content_key(item)) for name, item in value.items()])
        return (_DICT, *value.items())
    if kind is list:
        return (_LIST, *[_content_key(item) for item in value])
    if kind is int or kind is bool:
        return (kind, value)
    if kind is float:
        return (kind, value.hex())
    if value is None:
        return None
    if isinstance(value, Mapping):
        return _content_key(dict(value))
    if isinstance(value, (list, tuple)):
        key = (_LIST, *[_content_key(item) for item in value])
        names = getattr(value, "layer_names", None)
        return key if names is None else (*key, _LAYERS, *names)
    raise TypeError(f"not JSON: {kind.__name__}")


class _Unit:
    """The memo entry of one unit: its blocks placed where it was last seen, what it found."""

    __slots__ = ("blocks", "chars", "citations", "images", "m", "start", "suffixes", "toggles")

    def __init__(
        self,
        blocks: list[Block],
        suffixes: list[str],
        m: int,
        found: tuple[bool, bool, tuple[str, ...]],
    ) -> None:
        self.blocks = tuple(blocks)
        self.suffixes = tuple(suffixes)  # paths after "messages.{m}" (messages only)
        self.start = blocks[0].index if blocks else 0
        self.m = m
        self.images, self.citations, self.toggles = found
        self.chars = sum(len(block.text) for block in blocks)

    def placed(self, start: int, m: int) -> tuple[Block, ...]:
        """The blocks, starting at position `start` (as message `m`)."""
        if start != self.start or m != self.m:
            self.blocks = tuple(
                Block(
                    start + j,
                    b.level,
                    f"messages.{m}{suffix}" if m >= 0 else b.path,
                    b.kind,
                    b.role,
                    b.hash,
                    b.tokens,
                    b.text,
                    b.cache_control,
                    b.layer,
                )
                for j, (b, suffix) in enumerate(zip(self.blocks, self.suffixes))
            )
            self.start, self.m = start, m
        return self.blocks


_Source = tuple[Any, str, int, int, _Unit, tuple[Block, ...]]


class _Memo:
    """Content key of a unit → its `_Unit`, least recently used out first; bounded by units and
    by the characters of text they hold."""

    def __init__(self, units: int, chars: int) -> None:
        self.max_units, self.max_chars = units, chars
        self.chars = 0
        self.entries: OrderedDict[Hashable, _Unit] = OrderedDict()

    def get(self, key: Hashable) -> _Unit | None:
        unit = self.entries.get(key)
        if unit is not None:
            self.entries.move_to_end(key)
        return unit

    def put(self, key: Hashable, unit: _Unit) -> None:
        entries = self.entries
        old = entries.pop(key, None)
        if old is not None:
            self.chars -= old.chars
        entries[key] = unit
        self.chars += unit.chars
        while len(entries) > self.max_units or (self.chars > self.max_chars and len(entries) > 1):
            _, dropped = entries.popitem(last=False)
            self.chars -= dropped.chars

    def clear(self) -> None:
        self.entries.clear()
        self.chars = 0


# Enough for a few long sessions side by side (a 1 MB request is ~1M characters).
_MEMO = _Memo(units=20_000, chars=32_000_000)


def clear_memos() -> None:
    """Forget every memoized unit (for measuring a cold start)."""
    _MEMO.clear()


# ---- building the blocks of one unit -------------------------------------------------------


def _dumps(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    return orjson.dumps(value, default=default).decode("utf-8")


def _without_cache_control(block: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in block.items() if key != "cache_control"}


def _block_text(block: Any, default: Callable[[Any], Any] | None = None) -> tuple[str, str]:
    """(kind, text) of one content block; text is what is hashed and shown in diffs."""
    if isinstance(block, str):
        return "text", block
    if not isinstance(block, Mapping):
        return "unknown", _dumps(block, default)
    kind = str(block.get("type", "unknown"))
    if kind == "text" and len(block) <= 2 + ("cache_control" in block):
        text = block.get("text")
        if isinstance(text, str):
            return kind, text
    return kind, _dumps(_without_cache_control(block), default)


def _contains_image(value: Any) -> bool:
    if isinstance(value, Mapping):
        if value.get("type") == "image":
            return True
        content = value.get("content")
        if isinstance(content, list):
            return any(_contains_image(item) for item in content)
    return False


def _cites(item: Any) -> bool:
    cited = item.get("citations") if isinstance(item, Mapping) else None
    return isinstance(cited, Mapping) and bool(cited.get("enabled"))


def _is_system_toggle_tool(tool: Any) -> bool:
    return isinstance(tool, Mapping) and str(tool.get("type", "")).startswith(
        _SYSTEM_TOGGLE_TOOL_PREFIXES
    )


def _layer_names(value: Any) -> list[str | None] | None:
    names = getattr(value, "layer_names", None)
    return list(names) if names is not None else None


@lru_cache(maxsize=1024)
def _seed(level: str, role: str | None, kind: str) -> int:
    return _xxh64(f"{level}\x1f{role or ''}\x1f{kind}\x1f".encode())


def block_hash(level: str, role: str | None, kind: str, text: str) -> int:
    """The xxh3 of one position's content, as `flatten` gives it."""
    return _xxh64(text.encode("utf-8", "surrogatepass"), seed=_seed(level, role, kind))


class _Builder:
    """Makes the blocks of one unit, numbered from 0, when the memo does not hold it."""

    def __init__(self, counter: TokenCounter, default: Callable[[Any], Any] | None) -> None:
        self.counter = counter
        self.default = default
        self.blocks: list[Block] = []
        self.suffixes: list[str] = []

    def add(self, level: str, path: str, kind: str, role: str | None, text: str, item: Any,
            layer: str | None, suffix: str = "") -> None:  # fmt: skip
        control = item.get("cache_control") if isinstance(item, Mapping) else None
        tokens = IMAGE_TOKENS if kind == "image" else self.counter.count(text)
        self.blocks.append(
            Block(
                len(self.blocks),
                level,
                path,
                kind,
                role,
                block_hash(level, role, kind, text),
                tokens,
                text,
                dict(control) if isinstance(control, Mapping) else None,
                layer,
            )
        )
        self.suffixes.append(suffix)

    def tools(self, tools: Any, m: int) -> tuple[bool, bool, tuple[str, ...]]:
        names = _layer_names(tools)
        toggles: list[str] = []
        for i, tool in enumerate(tools):
            if _is_system_toggle_tool(tool):
                toggles.append(str(tool.get("type")))
                continue
            plain = _without_cache_control(tool) if isinstance(tool, Mapping) else tool
            layer = names[i] if names and i < len(names) else "tools"
            text = _dumps(plain, self.default)
            self.add("tools", f"tools.{i}", "tool", None, text, tool, layer)
        return False, False, tuple(toggles)

    def system(self, system: Any, m: int) -> tuple[bool, bool, tuple[str, ...]]:
        if isinstance(system, str):
            self.add("system", "system", "text", None, system, None, None)
            return False, False, ()
        names = _layer_names(system)
        for i, item in enumerate(system):
            kind, text = _block_text(item, self.default)
            layer = names[i] if names and i < len(names) else None
            self.add("system", f"system.{i}", kind, None, text, item, layer)
        return False, False, ()

    def message(self, message: Any, m: int) -> tuple[bool, bool, tuple[str, ...]]:
        if not isinstance(message, Mapping):
            text = _dumps(message, self.default)
            self.add("messages", f"messages.{m}", "unknown", None, text, None, None)
            return False, False, ()
        role = str(message.get("role", ""))
        content = message.get("content")
        if isinstance(content, str):
            path = f"messages.{m}.content"
            self.add("messages", path, "text", role, content, None, None, ".content")
            return False, False, ()
        names = _layer_names(content)
        images = citations = False
        for c, item in enumerate(content or []):
            kind, text = _block_text(item, self.default)
            layer = names[c] if names and c < len(names) else None
            suffix = f".content.{c}"
            self.add("messages", f"messages.{m}{suffix}", kind, role, text, item, layer, suffix)
            images = images or _contains_image(item)
            citations = citations or _cites(item)
        return images, citations, ()


# ---- the walk ------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _counter_for_model(model: str) -> EstimatingCounter:
    from cachescope._modeldata import default_table

    info = default_table().lookup(model)
    return counter_for(info.tokenizer if info else "classic")


_Build = Callable[[_Builder, Any, int], tuple[bool, bool, tuple[str, ...]]]
_BUILDS: dict[str, _Build] = {
    "tools": _Builder.tools,
    "system": _Builder.system,
    "messages": _Builder.message,
}


def flatten(
    params: Mapping[str, Any],
    counter: TokenCounter | None = None,
    *,
    default: Callable[[Any], Any] | None = None,
    alongside: FlatRequest | None = None,
) -> FlatRequest:
    """Flatten Messages API params into cache positions.

    Parameters
    ----------
    params:
        Keyword arguments for `messages.create` (or a parsed request body).
    counter:
        Token estimator; by default the one for the model's tokenizer generation.
    default:
        Turns a value that is not JSON into one that is, as `orjson.dumps(default=...)`; without
        it such a value raises TypeError.
    alongside:
        A request flattened just before this one, with nothing changed in between (`compare`
        reads its two requests so): a unit that is the very same object at the same place takes
        that request's blocks without being keyed again. Never pass one whose params may have
        been changed in place since.
    """
    model = str(params.get("model", ""))
    if counter is None:
        counter = _counter_for_model(model)
    work: list[tuple[str, int, Any]] = []
    if params.get("tools"):
        work.append(("tools", -1, params["tools"]))
    if params.get("system"):
        work.append(("system", -1, params["system"]))
    work.extend(("messages", m, message) for m, message in enumerate(params.get("messages") or []))
    earlier = alongside.sources if alongside is not None and alongside.counter is counter else []
    blocks: list[Block] = []
    units: list[tuple[Block, ...]] = []
    sources: list[_Source] = []
    toggles: list[str] = []
    images = citations = False
    for j, (level, m, value) in enumerate(work):
        start = len(blocks)
        if j < len(earlier) and earlier[j][0] is value and earlier[j][1:4] == (level, m, start):
            unit, placed = earlier[j][4], earlier[j][5]
        else:
            unit = _unit(counter, default, level, m, value)
            placed = unit.placed(start, m)
        blocks.extend(placed)
        units.append(placed)
        sources.append((value, level, m, start, unit, placed))
        if unit.images or unit.citations or unit.toggles:
            images = images or unit.images
            citations = citations or unit.citations
            toggles.extend(unit.toggles)
    settings = request_settings(params, has_images=images, toggles=toggles, citations=citations)
    top = params.get("cache_control")
    return FlatRequest(
        model=model,
        blocks=blocks,
        settings=settings,
        top_level_cache_control=dict(top) if isinstance(top, Mapping) else None,
        units=units,
        sources=sources,
        counter=counter,
    )


def _unit(
    counter: TokenCounter, default: Callable[[Any], Any] | None, level: str, m: int, value: Any
) -> _Unit:
    """The memo entry of one unit, built (and remembered) when the memo does not hold it."""
    key: Hashable = None
    try:
        key = (counter, level, _content_key(value))
        unit = _MEMO.get(key)
    except (TypeError, RecursionError):
        key = unit = None  # not plain JSON (or a counter that cannot be hashed): no memo
    if unit is None:
        builder = _Builder(counter, default)
        found = _BUILDS[level](builder, value, m)
        unit = _Unit(builder.blocks, builder.suffixes, m, found)
        if key is not None:
            _MEMO.put(key, unit)
    return unit


def _has_citations(params: Mapping[str, Any]) -> bool:
    return any(
        _cites(block)
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
    effort = output_config.get("effort") if isinstance(output_config, Mapping) else None
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


def prefix_keys(blocks: Sequence[Any], settings: Mapping[str, Mapping[str, Any]]) -> list[int]:
    """Cumulative prefix hash at each block: key[i] depends on every block ≤ i and the settings of
    every level up to block i's level. `blocks` are `Block`s or anything with `level` and `hash`."""
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


# ---- for `_client_record` until it calls `stability.fingerprint` (issue 15; delete then) -------

_native = None  # no C walk: the client never takes its tail path, so the keys below go unused


def flatten_units(
    params: Mapping[str, Any], counter: TokenCounter | None = None, token_cache: Any = None
) -> tuple[FlatRequest, list[tuple[Block, ...]]]:
    flat = flatten(params, counter)
    return flat, flat.units


def head_keys(*args: Any) -> Any:
    raise NotImplementedError("the client's tail path was removed with the C walk")


message_keys = message_units = head_keys
