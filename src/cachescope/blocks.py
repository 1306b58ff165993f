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

The simulator, `fingerprint`, `compare` and `lint` all read requests through `flatten`. The blocks
of each unit (tool list, system prompt, one message) are kept under its content key in one bounded
LRU memo: a unit sent again is keyed again but never re-serialized, re-hashed or re-counted.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import accumulate, chain, compress, count, repeat
from operator import attrgetter, is_not, not_
from typing import Any

import orjson
import xxhash

from cachescope._levels import LEVEL_INDEX as LEVEL_INDEX  # these four are part of blocks
from cachescope._levels import LEVELS as LEVELS
from cachescope._levels import _cites
from cachescope._levels import prefix_keys as prefix_keys
from cachescope._levels import request_settings as request_settings
from cachescope._memo import _MEMO, _PRIORS, _message_key, _Prior, _remembered, _Unit, same_as
from cachescope._memo import _content_key as _content_key
from cachescope.tokens import EstimatingCounter, TokenCounter, counter_for

# Tokens charged for one image block; the documented cap of the standard tier (spec §4.5).
IMAGE_TOKENS = 1568

# Server tools that the API treats as a system-level toggle, not as a tool definition (spec §2).
_SYSTEM_TOGGLE_TOOL_PREFIXES = ("web_search", "web_fetch")
# Blocks that cannot carry the automatic breakpoint (spec §1.2).
NOT_CACHEABLE_KINDS = frozenset({"thinking", "redacted_thinking"})
# How long a cache entry of each TTL lives (spec §1.6).
TTL_SECONDS: dict[str, float] = {"5m": 300.0, "1h": 3600.0}

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
    # what a reader derives from this block alone (a fingerprint's `BlockPrint`), kept with it
    derived: Any = field(default=None, compare=False, repr=False)

    @property
    def ttl(self) -> str | None:
        """The breakpoint's TTL ("5m" or "1h"), or None when no breakpoint sits here."""
        if self.cache_control is None:
            return None
        return str(self.cache_control.get("ttl") or "5m")


_TOKENS = attrgetter("tokens")
_FOUND = attrgetter("found")
_CACHE_CONTROL = attrgetter("cache_control")


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
    # how the messages were read, for a request flattened `alongside` this one
    read: _Prior | None = field(default=None, compare=False, repr=False)
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
        controls = map(_CACHE_CONTROL, self.blocks)
        return list(compress(self.blocks, map(is_not, controls, repeat(None))))

    def cache_points(self) -> list[tuple[int, str]]:
        """(index, TTL) of every breakpoint in position order, the automatic one included."""
        points = [(block.index, block.ttl or "5m") for block in self.breakpoints()]
        return with_automatic(points, self.blocks, self.automatic_ttl)

    def cumulative_tokens(self) -> list[int]:
        """Tokens before each position: `len(blocks) + 1` sums, from 0 to the total."""
        if self._cumulative is None:
            self._cumulative = [0, *accumulate(map(_TOKENS, self.blocks))]
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
        if block.kind not in NOT_CACHEABLE_KINDS and not empty:
            if not points or points[-1][0] != i:
                points = sorted([*points, (i, automatic_ttl)])
            break
    return points


def clear_memos() -> None:
    """Forget every memoized unit and recent request (for measuring a cold start)."""
    _MEMO.clear()
    _PRIORS.clear()


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


@lru_cache(maxsize=256)
def _tool_use_tokens(model: str, forced: bool) -> int:
    """Tokens of the tool-use system prompt for `model` (`forced`: tool_choice any or tool)."""
    from cachescope._modeldata import default_table

    info = default_table().lookup(model)
    pair = info.tool_use_system_tokens if info else None
    return 0 if pair is None else pair[1 if forced else 0]


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
    tool_use_prompt: bool = True,
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
        A request flattened just before this one in the same call, with nothing changed in
        between (`compare` reads its two requests so): a message that is the very same object at
        the same place is taken as read there. Never pass one whose params may have been changed
        in place since.
    tool_use_prompt:
        Count the system prompt the API adds when tools are present (spec §4.5) on the first
        tool; False for params whose token counts already hold it (what-if replays).
    """
    model = str(params.get("model", ""))
    if counter is None:
        counter = _counter_for_model(model)
    blocks: list[Block] = []
    units: list[tuple[Block, ...]] = []
    read: list[_Unit] = []
    for level in ("tools", "system"):
        if params.get(level):
            read.append(_unit(counter, default, level, -1, params[level]))
            units.append(read[-1].placed(len(blocks), -1))
            blocks += units[-1]
    heads = len(read)
    if tool_use_prompt and blocks and blocks[0].level == "tools":
        # the system prompt the API adds in front of tool definitions is billed and cached with
        # them: it is counted on the first tool (spec §4.5; unknown for some models: nothing)
        choice = params.get("tool_choice")
        forced = isinstance(choice, Mapping) and choice.get("type") in ("any", "tool")
        extra = _tool_use_tokens(model, forced)
        if extra:
            tools = read[0]
            kept = tools.overhead  # the same block on every call, for readers that skip by identity
            if kept is None or kept[0] != extra or kept[1] is not units[0]:
                head = replace(blocks[0], tokens=blocks[0].tokens + extra, derived=None)
                kept = tools.overhead = (extra, units[0], (head, *units[0][1:]))
            units[0] = kept[2]
            blocks[0] = kept[2][0]

    # The messages, the bulk of a request. Those equal to a recent request's at the same places
    # take its blocks a run at a time; every other one is keyed by its content.
    messages = list(params.get("messages") or [])
    head_blocks = len(blocks)
    earlier = alongside.read if alongside is not None else None
    if earlier is not None and (earlier.counter is not counter or earlier.heads != head_blocks):
        earlier = None
    try:
        prior = earlier or _PRIORS.find(messages, counter, head_blocks)
        same = same_as(prior, messages, prior is earlier) if prior is not None else []
    except Exception:  # an object in the messages whose == raises (not JSON): read them all
        prior, same = None, []
    n = len(messages)
    same += [False] * (n - len(same))
    entries = _MEMO.entries
    starts: list[int] = []
    m = 0
    while m < n:
        start = len(blocks)
        if same[m] and prior is not None and prior.starts[m] == start:
            # equal units have equal block counts, so the whole run starts where it did
            end = next(compress(count(m), map(not_, same[m:])), n)
            read += prior.units[m:end]
            starts += prior.starts[m:end]
            units += prior.placed[m:end]
            blocks += chain.from_iterable(prior.placed[m:end])
            m = end
            continue
        starts.append(start)
        message = messages[m]
        key = _message_key(message)
        unit = entries.get(key)  # (None for a message that has no key)
        if unit is not None and unit.counter is counter:
            _MEMO.used(key)
        else:
            unit = _unit(counter, default, "messages", m, message, key)
        first, number, placed = unit.at
        if first != start or number != m:
            placed = unit.placed(start, m)
        read.append(unit)
        units.append(placed)
        blocks += placed
        m += 1
    remembered = None
    if messages:
        remembered = _remembered(
            prior, same, messages, counter, head_blocks, read[heads:], units[heads:], starts
        )
        _PRIORS.remember(remembered)

    changed = list(compress(read, map(_FOUND, read)))
    settings = request_settings(
        params,
        has_images=any(unit.images for unit in changed),
        toggles=[name for unit in changed for name in unit.toggles],
        citations=any(unit.citations for unit in changed),
    )
    top = params.get("cache_control")
    return FlatRequest(
        model=model,
        blocks=blocks,
        settings=settings,
        top_level_cache_control=dict(top) if isinstance(top, Mapping) else None,
        units=units,
        read=remembered,
    )


_UNKNOWN = object()


def _unit(
    counter: TokenCounter,
    default: Callable[[Any], Any] | None,
    level: str,
    m: int,
    value: Any,
    key: Hashable = _UNKNOWN,
) -> _Unit:
    """The memo entry of one unit under `key` (computed here unless given; None: no memo), built
    and remembered when the memo does not hold it for this counter."""
    unit = None
    if key is _UNKNOWN:
        try:
            key = (level, _content_key(value))
            unit = _MEMO.get(key)
        except (TypeError, RecursionError):
            key = None  # not plain JSON: no memo
    if unit is None or unit.counter is not counter:
        builder = _Builder(counter, default)
        found = _BUILDS[level](builder, value, m)
        unit = _Unit(counter, builder.blocks, builder.suffixes, m, found)
        if key is not None:
            _MEMO.put(key, unit)
    return unit
