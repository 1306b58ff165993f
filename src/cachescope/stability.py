"""Prefix stability: fingerprints of requests, and where (and why, and at what cost) a prefix broke.

`fingerprint(params)` lists a request's cache positions in cache order (tools → system → messages)
with level, layer, xxh3 hash, token estimate and breakpoint TTL, plus the request-level settings the
API mixes into the prefix. It serializes without prompt text unless asked, so the ledger can keep it.

`compare(a, b)` finds the first position where `b` no longer matches `a` and says what that costs:

* the divergent block: index, level, layer, character offset, line and column inside the block and
  a short window of old vs new text (when both texts are at hand);
* the cause in the API's diagnostics vocabulary (`model_changed`, `tools_changed`, `system_changed`,
  `messages_changed` for edited or truncated history, or `<setting>_changed` for a setting such as
  `tool_choice`), and `expired` / `below_minimum` when times and the model table say so;
* `tokens_lost`, defined precisely in `PrefixDiff`.

Appending to the conversation is not a break. Locating the break never diffs text: params are
flattened through `_blocks.flatten_units`, which hashes every message's texts with xxh3 on every
call and reuses the blocks memoized under an equal content key, so equal units are skipped as one
memo entry and the first other block is found by its hash (then checked field by field); two
fingerprints are scanned by their hashes. Only the one divergent block is searched for the
character offset, and token estimates are read from the blocks the cost depends on.
"""

from __future__ import annotations

import datetime as _dt
import html
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import compress, count, repeat
from operator import attrgetter, is_not
from typing import Any

from cachescope import blocks as _blocks
from cachescope._render import mimebundle
from cachescope.blocks import (
    IMAGE_TOKENS,
    LEVEL_INDEX,
    LEVELS,
    Block,
    FlatRequest,
    LeanRequest,
    _block_text,
    _contains_image,
    _dumps,
    _is_system_toggle_tool,
    _layer_names,
    _without_cache_control,
    _xxh64,
    flatten,
    flatten_lean,
    flatten_units,
    prefix_keys,
    request_settings,
)
from cachescope.blocks import clear_memos as _clear_block_memos
from cachescope.tokens import counter_for

__all__ = ["BlockPrint", "Fingerprint", "PrefixDiff", "compare", "fingerprint"]

TTL_SECONDS: dict[str, float] = {"5m": 300.0, "1h": 3600.0}
#: The API's lookback window: a breakpoint and the 19 positions before it (spec §1.5).
LOOKBACK = 20
#: Characters of context shown on each side of a change.
WINDOW = 60

# Settings the API keeps under a name of its own; the rest are reported as "<name>_changed".
_LEVEL_CAUSE = {
    "tools": "tools_changed",
    "system": "system_changed",
    "messages": "messages_changed",
}
# What the server's cache diagnostics is expected to say for each of our causes (spec §1.9):
# settings at the messages level (tool_choice, thinking, effort) are reported as "unavailable".
_SERVER_FOR_SETTING_LEVEL = {"tools": "model_changed", "system": "system_changed"}
_SERVER_UNSURE = frozenset({"previous_message_not_found", "unavailable"})

_MEMO_LIMIT = 200_000


# --------------------------------------------------------------------------------------------
# token memos: an unchanged block is never re-counted (the ledger fingerprints every call, so
# the previous request's counts are always at hand when the next one is compared)


_hash_tokens: dict[str, dict[int, int]] = {}
_text_tokens: dict[str, dict[str, int]] = {}


def _hash_memo(tokenizer: str) -> dict[int, int]:
    memo = _hash_tokens.setdefault(tokenizer, {})
    if len(memo) > _MEMO_LIMIT:
        memo.clear()
    return memo


def _text_memo(tokenizer: str) -> dict[str, int]:
    memo = _text_tokens.setdefault(tokenizer, {})
    if len(memo) > _MEMO_LIMIT:
        memo.clear()
    return memo


def clear_memos() -> None:
    """Forget every memoised token count and flattened unit (benchmarks use it for a cold start)."""
    _hash_tokens.clear()
    _text_tokens.clear()
    _clear_block_memos()


@lru_cache(maxsize=256)
def _model_facts(model: str) -> tuple[str, int | None]:
    """(tokenizer, minimum cacheable tokens or None when the model is unknown)."""
    from cachescope._modeldata import default_table

    info = default_table().lookup(model)
    if info is None:
        return "classic", None
    return info.tokenizer, info.min_cacheable_tokens


def block_hash(level: str, role: str | None, kind: str, text: str) -> int:
    """The xxh3 digest of one position, the same as `cachescope.blocks.flatten` gives."""
    seed = _xxh64(f"{level}\x1f{role or ''}\x1f{kind}\x1f".encode())
    return _xxh64(text.encode("utf-8", "surrogatepass"), seed=seed)


# --------------------------------------------------------------------------------------------
# Fingerprint


@dataclass(frozen=True, slots=True)
class BlockPrint:
    """One cache position of a fingerprint."""

    index: int
    level: str
    path: str
    kind: str
    role: str | None
    layer: str | None
    hash: int
    tokens: int
    breakpoint: str | None
    text: str | None = None


@dataclass(frozen=True)
class Fingerprint:
    """A request as the prompt cache sees it, without its text unless asked.

    Attributes
    ----------
    model:
        The model ID (the cache is per model).
    blocks:
        The positions in cache order (tools → system → messages).
    settings:
        Request-level settings mixed into the prefix, by the level where they take effect
        (`{"tools": {"model": ...}, "system": {...}, "messages": {"tool_choice": ...}}`).
    automatic_ttl:
        TTL of a top-level (automatic) `cache_control`, None when there is none.
    """

    model: str
    blocks: tuple[BlockPrint, ...]
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    automatic_ttl: str | None = None
    prefixes: tuple[int, ...] | None = field(default=None, compare=False, repr=False)

    @property
    def total_tokens(self) -> int:
        return sum(block.tokens for block in self.blocks)

    @property
    def has_text(self) -> bool:
        return bool(self.blocks) and all(block.text is not None for block in self.blocks)

    def breakpoints(self) -> list[tuple[int, str]]:
        """(index, TTL) of every breakpoint, the automatic one included."""
        return _effective_breakpoints(
            [b.breakpoint for b in self.blocks],
            [b.kind for b in self.blocks],
            lambda i: self.blocks[i].text != "",
            self.automatic_ttl,
        )

    def prefix_keys(self) -> list[int]:
        """Cumulative prefix hash at each position (settings folded in), as `_blocks` computes it."""
        if self.prefixes is not None and (self.settings == {} or not self.blocks):
            return list(self.prefixes)
        return prefix_keys(self.blocks, self.settings)  # type: ignore[arg-type]

    def to_dict(self, *, include_text: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; prompt text only with `include_text=True`."""
        prefixes = self.prefix_keys()
        blocks = []
        for block, prefix in zip(self.blocks, prefixes):
            item: dict[str, Any] = {
                "index": block.index,
                "level": block.level,
                "path": block.path,
                "kind": block.kind,
                "role": block.role,
                "layer": block.layer,
                "hash": f"{block.hash:016x}",
                "prefix": f"{prefix:016x}",
                "tokens": block.tokens,
                "breakpoint": block.breakpoint,
            }
            if include_text and block.text is not None:
                item["text"] = block.text
            blocks.append(item)
        return {
            "model": self.model,
            "settings": _jsonable(self.settings),
            "automatic_ttl": self.automatic_ttl,
            "blocks": blocks,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fingerprint:
        """Rebuild a fingerprint from `to_dict()` output (or a ledger record's `blocks`)."""
        blocks = data.get("blocks") or []
        return _fingerprint_from_blocks(
            str(data.get("model") or ""),
            blocks,
            data.get("settings"),
            data.get("automatic_ttl"),
        )

    def __repr__(self) -> str:
        marks = sum(1 for block in self.blocks if block.breakpoint)
        return (
            f"Fingerprint(model={self.model!r}, blocks={len(self.blocks)}, "
            f"tokens={self.total_tokens}, breakpoints={marks})"
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _parse_hash(value: Any) -> int:
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 16)
    except ValueError:
        return _xxh64(str(value).encode())


def _level_of(item: Mapping[str, Any]) -> str:
    level = item.get("level")
    if level in LEVEL_INDEX:
        return str(level)
    path = str(item.get("path") or "")
    head = path.split(".", 1)[0]
    if head in LEVEL_INDEX:
        return head
    layer = item.get("layer")
    if layer == "tools":
        return "tools"
    if layer in ("history", "user", "dynamic", None):
        return "messages"
    return "system"


def _fingerprint_from_blocks(
    model: str,
    blocks: Iterable[Any],
    settings: Any,
    automatic_ttl: Any,
) -> Fingerprint:
    prints: list[BlockPrint] = []
    prefixes: list[int] = []
    have_prefix = True
    for i, item in enumerate(blocks):
        if not isinstance(item, Mapping):
            continue
        level = _level_of(item)
        mark = item.get("breakpoint")
        if mark is True:
            mark = "5m"
        text = item.get("text")
        prints.append(
            BlockPrint(
                index=len(prints),
                level=level,
                path=str(item.get("path") or f"{level}.{i}"),
                kind=str(item.get("kind") or "text"),
                role=item.get("role"),
                layer=item.get("layer"),
                hash=_parse_hash(item.get("hash", 0)),
                tokens=int(item.get("tokens") or 0),
                breakpoint=str(mark) if mark else None,
                text=text if isinstance(text, str) else None,
            )
        )
        if "prefix" in item:
            prefixes.append(_parse_hash(item["prefix"]))
        else:
            have_prefix = False
    known_settings = settings if isinstance(settings, Mapping) else None
    return Fingerprint(
        model=model,
        blocks=tuple(prints),
        settings=_jsonable(known_settings) if known_settings is not None else {},
        automatic_ttl=str(automatic_ttl) if automatic_ttl else None,
        prefixes=tuple(prefixes) if have_prefix and prints and known_settings is None else None,
    )


def fingerprint(params: Mapping[str, Any], *, keep_text: bool = False) -> Fingerprint:
    """The fingerprint of a request.

    Parameters
    ----------
    params:
        Keyword arguments for `messages.create` (for example `Prompt.render(...)`). Layer names
        come along when the request was rendered from a `Prompt`.
    keep_text:
        Keep each block's text, so a later `compare` can show the changed characters. Off by
        default: fingerprints go into the ledger, which stores no prompt text unless asked.
    """
    tokenizer, _ = _model_facts(str(params.get("model", "")))
    flat = flatten(params, counter_for(tokenizer), _hash_memo(tokenizer))
    top = flat.top_level_cache_control
    blocks = tuple(
        BlockPrint(
            index=block.index,
            level=block.level,
            path=block.path,
            kind=block.kind,
            role=block.role,
            layer=block.layer,
            hash=block.hash,
            tokens=block.tokens,
            breakpoint=block.ttl,
            text=block.text if keep_text else None,
        )
        for block in flat.blocks
    )
    return Fingerprint(
        model=flat.model,
        blocks=blocks,
        settings=flat.settings,
        automatic_ttl=str(top.get("ttl") or "5m") if top is not None else None,
    )


def _effective_breakpoints(
    marks: Sequence[str | None],
    kinds: Sequence[str],
    nonempty: Callable[[int], bool],
    automatic_ttl: str | None,
) -> list[tuple[int, str]]:
    points = [(i, mark) for i, mark in enumerate(marks) if mark]
    return _with_automatic(points, len(marks), kinds, nonempty, automatic_ttl)


def _with_automatic(
    points: list[tuple[int, str]],
    count: int,
    kinds: Sequence[str],
    nonempty: Callable[[int], bool],
    automatic_ttl: str | None,
) -> list[tuple[int, str]]:
    if automatic_ttl:
        # Automatic caching marks the last block that can carry cache_control (spec §1.2).
        for i in range(count - 1, -1, -1):
            if kinds[i] not in ("thinking", "redacted_thinking") and nonempty(i):
                if not points or points[-1][0] != i:
                    points.append((i, automatic_ttl))
                    points.sort()
                break
    return points


# --------------------------------------------------------------------------------------------
# one side of a comparison: params, a fingerprint, or a ledger record


_TOOL, _CONTENT = 1, 2


class _Texts:
    """Block texts made on first use: a tool or a non-text block is serialized only if needed.

    `raw(i)` is the object the text comes from, so two requests that share a block object (as
    consecutive renders of a `Prompt` and a session's history do) compare it without reading it.
    """

    __slots__ = ("_makers", "_raws", "_texts")

    def __init__(self) -> None:
        self._raws: list[Any] = []
        self._makers: list[int] = []
        self._texts: list[str | None] = []

    def add(self, text: str) -> None:
        self._raws.append(text)
        self._makers.append(0)
        self._texts.append(text)

    def add_later(self, raw: Any, maker: int) -> None:
        self._raws.append(raw)
        self._makers.append(maker)
        self._texts.append(None)

    def raw(self, i: int) -> Any:
        return self._raws[i]

    def __len__(self) -> int:
        return len(self._raws)

    def __getitem__(self, i: int) -> str:
        text = self._texts[i]
        if text is None:
            raw = self._raws[i]
            if self._makers[i] == _TOOL:
                text = _dumps(_without_cache_control(raw) if isinstance(raw, Mapping) else raw)
            else:
                text = _block_text(raw)[1]
            self._texts[i] = text
        return text

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self._raws)))


def _kind_of(item: Any) -> str:
    if type(item) is dict:
        return str(item.get("type", "unknown"))
    if isinstance(item, str):
        return "text"
    if isinstance(item, Mapping):
        return str(item.get("type", "unknown"))
    return "unknown"


# made once: `compare` reads seven fields of each flattened side
_FIELD_GETTERS = {
    name: attrgetter(name) for name in ("level", "kind", "role", "path", "layer", "ttl", "text")
}


class _Field(Sequence[Any]):
    """One attribute of every block of a flattened request, read on demand (no per-block lists);
    of a `LeanRequest`, block by block from the memo."""

    __slots__ = ("_blocks", "_get")

    def __init__(self, blocks: Sequence[Block] | LeanRequest, name: str) -> None:
        self._blocks = blocks
        getter = _FIELD_GETTERS.get(name)
        self._get = getter if getter is not None else attrgetter(name)

    def __len__(self) -> int:
        return len(self._blocks)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._get(block) for block in self._blocks[i]]
        return self._get(self._blocks[i])

    def __iter__(self) -> Iterator[Any]:
        return map(self._get, self._blocks)


_TOKENS_OF = attrgetter("tokens")
_CACHE_CONTROL_OF = attrgetter("cache_control")


class _Side:
    """The positions of one request, with hashes and token counts produced only on demand."""

    __slots__ = (
        "_hashes",
        "_tokens",
        "automatic_ttl",
        "blocks",
        "cumulative",
        "fingerprint",
        "flat",
        "kinds",
        "layers",
        "lean",
        "levels",
        "marked",
        "marks",
        "miss_reason",
        "model",
        "paths",
        "prefixes",
        "roles",
        "settings",
        "texts",
        "time",
        "tokenizer",
        "units",
    )

    def __init__(self) -> None:
        self.model = ""
        self.levels: Sequence[str] = []
        self.kinds: Sequence[str] = []
        self.roles: Sequence[str | None] = []
        self.paths: Sequence[str] = []
        self.layers: Sequence[str | None] = []
        self.marks: Sequence[str | None] = []
        self.texts: _Texts | Sequence[str] | None = None
        self._hashes: list[int | None] = []
        self._tokens: list[int | None] = []
        # set for params read through `flatten_units`: the blocks, and the blocks of each unit
        self.blocks: list[Block] | None = None
        self.units: list[tuple[Block, ...]] | None = None
        # from the C walk: indices of the blocks with cache_control, cumulative token counts
        self.marked: list[int] | None = None
        self.cumulative: Sequence[int] | None = None
        self.flat: FlatRequest | None = None
        # set for params read through `flatten_lean` (the C walk of compare): blocks on demand
        self.lean: LeanRequest | None = None
        self.prefixes: list[int] | None = None
        self.settings: Mapping[str, Mapping[str, Any]] | None = None
        self.automatic_ttl: str | None = None
        self.time: float | None = None
        self.miss_reason: Any = None
        self.fingerprint: Fingerprint | None = None
        self.tokenizer = "classic"

    def __len__(self) -> int:
        blocks = self.blocks
        return len(blocks) if blocks is not None else len(self.levels)

    def hash(self, i: int) -> int:
        if self.blocks is not None:
            return self.blocks[i].hash
        if self.lean is not None:
            return self.lean.block(i).hash
        value = self._hashes[i]
        if value is None:
            assert self.texts is not None
            value = self._hashes[i] = block_hash(
                self.levels[i], self.roles[i], self.kinds[i], self.texts[i]
            )
        return value

    def tokens(self, i: int) -> int:
        if self.blocks is not None:
            return self.blocks[i].tokens
        if self.lean is not None:
            return self.lean.block(i).tokens
        value = self._tokens[i]
        if value is None:
            assert self.texts is not None
            if self.kinds[i] == "image":
                value = IMAGE_TOKENS
            else:
                text = self.texts[i]
                memo = _text_memo(self.tokenizer)
                value = memo.get(text)
                if value is None:
                    value = memo[text] = counter_for(self.tokenizer).count(text)
            self._tokens[i] = value
        return value

    def token_sum(self, start: int, end: int) -> int:
        """Tokens of positions start..end (both included)."""
        cumulative = self.cumulative
        if cumulative is not None:
            end = min(end, len(cumulative) - 2)
            return cumulative[end + 1] - cumulative[start] if end >= start else 0
        if self.blocks is not None:
            return sum(map(_TOKENS_OF, self.blocks[start : end + 1]))
        return sum(self.tokens(i) for i in range(start, end + 1))

    def breakpoints(self) -> list[tuple[int, str]]:
        if self.lean is not None:
            return _lean_breakpoints(self.lean)
        blocks = self.blocks
        if blocks is not None:
            # `cache_control={}` is a breakpoint too, so select on `is not None`, not truth
            marked: Iterable[Block] = (
                map(blocks.__getitem__, self.marked)
                if self.marked is not None
                else compress(blocks, map(is_not, map(_CACHE_CONTROL_OF, blocks), repeat(None)))
            )
            points = [(b.index, b.ttl or "5m") for b in marked]
            return _with_automatic(
                points,
                len(blocks),
                self.kinds,
                lambda i: blocks[i].text != "",
                self.automatic_ttl,
            )
        texts, tokens = self.texts, self._tokens

        def nonempty(i: int) -> bool:
            return texts[i] != "" if texts is not None else tokens[i] != 0

        return _effective_breakpoints(self.marks, self.kinds, nonempty, self.automatic_ttl)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> _Side:
        side = cls()
        side.model = str(params.get("model", ""))
        side.tokenizer = _model_facts(side.model)[0]
        texts = _Texts()
        levels: list[str] = []
        kinds: list[str] = []
        roles: list[str | None] = []
        paths: list[str] = []
        layers: list[str | None] = []
        marks: list[str | None] = []
        side.levels, side.kinds, side.roles = levels, kinds, roles
        side.paths, side.layers, side.marks = paths, layers, marks
        toggles: list[str] = []
        has_images = False
        citations = False

        def mark_of(raw: Any) -> str | None:
            if type(raw) is str:
                return None
            if type(raw) is dict or isinstance(raw, Mapping):
                control = raw.get("cache_control")
                if isinstance(control, Mapping):
                    return str(control.get("ttl") or "5m")
            return None

        tools = params.get("tools") or []
        tool_layers = _layer_names(tools)
        for i, tool in enumerate(tools):
            if _is_system_toggle_tool(tool):
                toggles.append(str(tool.get("type")))
                continue
            texts.add_later(tool, _TOOL)
            levels.append("tools")
            kinds.append("tool")
            roles.append(None)
            paths.append(f"tools.{i}")
            layers.append(tool_layers[i] if tool_layers and i < len(tool_layers) else "tools")
            marks.append(mark_of(tool))

        system = params.get("system")
        if isinstance(system, str):
            if system:
                texts.add(system)
                levels.append("system")
                kinds.append("text")
                roles.append(None)
                paths.append("system")
                layers.append(None)
                marks.append(None)
        elif system:
            names = _layer_names(system)
            for i, item in enumerate(system):
                kind = _kind_of(item)
                texts.add_later(item, _CONTENT)
                levels.append("system")
                kinds.append(kind)
                roles.append(None)
                paths.append(f"system.{i}")
                layers.append(names[i] if names and i < len(names) else None)
                marks.append(mark_of(item))

        for m, message in enumerate(params.get("messages") or []):
            if not isinstance(message, Mapping):
                texts.add_later(message, _CONTENT)
                levels.append("messages")
                kinds.append("unknown")
                roles.append(None)
                paths.append(f"messages.{m}")
                layers.append(None)
                marks.append(None)
                continue
            role = str(message.get("role", ""))
            content = message.get("content")
            if isinstance(content, str):
                texts.add(content)
                levels.append("messages")
                kinds.append("text")
                roles.append(role)
                paths.append(f"messages.{m}.content")
                layers.append(None)
                marks.append(None)
                continue
            names = _layer_names(content)
            for c, item in enumerate(content or []):
                kind = _kind_of(item)
                if type(item) is not str and not has_images:
                    has_images = _contains_image(item)
                if not citations and type(item) is dict and item.get("citations"):
                    control = item["citations"]
                    citations = isinstance(control, Mapping) and bool(control.get("enabled"))
                texts.add_later(item, _CONTENT)
                levels.append("messages")
                kinds.append(kind)
                roles.append(role)
                paths.append(f"messages.{m}.content.{c}")
                layers.append(names[c] if names and c < len(names) else None)
                marks.append(mark_of(item))

        side.texts = texts
        side._hashes = [None] * len(texts)
        side._tokens = [None] * len(texts)
        # citations were found in the loop above; the rest of the settings come from `_blocks`
        settings = request_settings(
            {k: v for k, v in params.items() if k != "messages"},
            has_images=has_images,
            toggles=toggles,
        )
        if citations:
            settings["system"]["citations"] = True
        side.settings = settings
        top = params.get("cache_control")
        side.automatic_ttl = str(top.get("ttl") or "5m") if isinstance(top, Mapping) else None
        return side

    @classmethod
    def from_flat(cls, params: Mapping[str, Any], prior: _Side | None = None) -> _Side:
        """Params read through `flatten_units`: every block hashed (an unchanged message is found
        in the memo by its content key, with its token counts), fields read on demand.

        `prior` (the other side, already read) only saves memo lookups for the messages whose
        keys equal its own at the same place."""
        side = cls()
        side.model = str(params.get("model", ""))
        side.tokenizer = _model_facts(side.model)[0]
        counter = counter_for(side.tokenizer)
        flat, units = flatten_units(
            params,
            counter,
            _hash_memo(side.tokenizer),
            prior=prior.flat if prior is not None else None,
        )
        side.flat = flat
        blocks = flat.blocks
        side.blocks, side.units = blocks, units
        side.marked = flat.marked
        if flat.cumulative is not None:
            side.cumulative = memoryview(flat.cumulative).cast("q")
        side._read_blocks(lambda name: _Field(blocks, name), flat)
        return side

    def _read_blocks(self, field: Callable[[str], Any], read: FlatRequest | LeanRequest) -> None:
        """The per-block fields (`field(name)` reads one attribute of every block) and the
        settings of a request read by `flatten_units` or `flatten_lean`."""
        self.levels = field("level")
        self.kinds = field("kind")
        self.roles = field("role")
        self.paths = field("path")
        self.layers = field("layer")
        self.marks = field("ttl")
        self.texts = field("text")
        self.settings = read.settings
        top = read.top_level_cache_control
        self.automatic_ttl = str(top.get("ttl") or "5m") if top is not None else None

    @classmethod
    def from_lean(cls, lean: LeanRequest, tokenizer: str) -> _Side:
        """A request read by `flatten_lean`: fields read block by block, on demand."""
        side = cls()
        side.model = lean.model
        side.tokenizer = tokenizer
        side.lean = lean
        side.marked = lean.marked
        side.cumulative = lean.cumulative
        side._read_blocks(lambda name: _Field(lean, name), lean)
        return side

    @classmethod
    def from_fingerprint(cls, fp: Fingerprint) -> _Side:
        side = cls()
        side.fingerprint = fp
        side.model = fp.model
        side.tokenizer = _model_facts(fp.model)[0]
        blocks = fp.blocks
        side.levels = [b.level for b in blocks]
        side.kinds = [b.kind for b in blocks]
        side.roles = [b.role for b in blocks]
        side.paths = [b.path for b in blocks]
        side.layers = [b.layer for b in blocks]
        side.marks = [b.breakpoint for b in blocks]
        side._hashes = [b.hash for b in blocks]
        side._tokens = [b.tokens for b in blocks]
        if blocks and all(b.text is not None for b in blocks):
            side.texts = [b.text or "" for b in blocks]
        side.settings = fp.settings if fp.settings else None
        if side.settings is None:
            side.prefixes = list(fp.prefixes) if fp.prefixes is not None else None
        side.automatic_ttl = fp.automatic_ttl
        return side


def _to_seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, _dt.datetime):
        moment: _dt.datetime = value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_dt.timezone.utc)
        return float(moment.timestamp())
    if isinstance(value, str):
        try:
            stamp = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=_dt.timezone.utc)
        return stamp.timestamp()
    return None


def _side(value: Any, prior: _Side | None = None) -> _Side:
    plain = type(value) is dict  # request params, the common case: no ABC checks
    if not plain and isinstance(value, Fingerprint):
        return _Side.from_fingerprint(value)
    if plain or isinstance(value, Mapping):
        if "blocks" in value and "messages" not in value and "system" not in value:
            return _Side.from_fingerprint(Fingerprint.from_dict(value))
        try:
            return _Side.from_flat(value, prior)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError):
            # e.g. SDK objects that only serialize when asked: read lazily, as lint does
            return _Side.from_params(value)
    # A ledger record or anything like it: .fingerprint / .blocks, .model, .time, miss reason.
    fp = getattr(value, "fingerprint", None)
    if callable(fp):
        fp = fp()
    model = str(getattr(value, "model", "") or "")
    if isinstance(fp, Fingerprint):
        side = _Side.from_fingerprint(fp)
    elif isinstance(fp, Mapping):
        side = _Side.from_fingerprint(Fingerprint.from_dict({"model": model, **fp}))
    else:
        blocks = getattr(value, "blocks", None)
        if not isinstance(blocks, (list, tuple)):
            raise TypeError(
                "compare() takes request params (a dict), a Fingerprint, or a ledger record; "
                f"got {type(value).__name__}."
            )
        side = _Side.from_fingerprint(_fingerprint_from_blocks(model, blocks, None, None))
    if model and not side.model:
        side.model = model
    stamp = getattr(value, "timestamp", None)
    side.time = _to_seconds(
        stamp if isinstance(stamp, (int, float)) else getattr(value, "time", None)
    )
    side.miss_reason = getattr(value, "cache_miss_reason", None)
    return side


# --------------------------------------------------------------------------------------------
# PrefixDiff


@dataclass(frozen=True)
class PrefixDiff:
    """Where `b` stopped matching the cached prefix of `a`, why, and what that costs.

    Attributes
    ----------
    broken:
        True when `b` cannot read everything `a` cached (a changed block or setting, truncated
        history, an expired TTL, or a prefix below the model's minimum).
    cause:
        The API's diagnostics vocabulary: `model_changed`, `tools_changed`, `system_changed`,
        `messages_changed` (history edited or truncated — appending is not a break),
        `<setting>_changed` (e.g. `tool_choice_changed`), or `expired` / `below_minimum` when
        nothing changed but time or length explain the miss; None when nothing broke.
    index, level, layer, path, kind:
        The first divergent position of `a` (cache order) and what it is.
    offset, line, column:
        Character offset (0-based) and line and column (1-based) of the first changed character
        inside that block; None when a text is not at hand (stored fingerprints) or the block was
        removed.
    old_window, new_window:
        The changed line of `a` and of `b`, clipped to a short window around the change;
        `old_span` / `new_span` are (start, end) of the changed characters inside each window.
    tokens_lost:
        Tokens that `b` can no longer read from cache because of the change: tokens of `a`'s
        positions after the last cache entry of `a` that lies strictly before the divergent
        position, up to and including `a`'s last cache entry. A cache entry is a breakpoint
        (explicit or automatic) whose prefix reaches the model's minimum length. 0 when the
        divergence comes after `a`'s last entry, and when nothing diverged.
        The figure assumes `b` has a breakpoint within 20 positions after the surviving entry;
        `beyond_lookback` says when it has not.
    tokens_expired:
        Further tokens that cannot be read because their entries' TTL passed between the calls.
    expired, below_minimum:
        Flags, independent of the cause: the TTL of `a`'s last entry passed before `b` was sent;
        `a`'s prefix up to its last breakpoint is shorter than the model's minimum.
    server_reason, agrees:
        The server's `cache_miss_reason` type when known, and whether it matches `cause` (None
        when the server could not tell).
    """

    broken: bool
    cause: str | None
    index: int | None = None
    level: str | None = None
    layer: str | None = None
    path: str | None = None
    kind: str | None = None
    setting: str | None = None
    offset: int | None = None
    line: int | None = None
    column: int | None = None
    old_window: str | None = None
    new_window: str | None = None
    old_span: tuple[int, int] | None = None
    new_span: tuple[int, int] | None = None
    appended_blocks: int = 0
    tokens_lost: int = 0
    tokens_expired: int = 0
    expired: bool = False
    below_minimum: bool = False
    beyond_lookback: bool = False
    gap_seconds: float | None = None
    ttl: str | None = None
    model: str | None = None
    minimum: int | None = None
    server_reason: str | None = None
    server_missed_tokens: int | None = None
    agrees: bool | None = None

    # -- presentation --------------------------------------------------------------------------

    def summary(self) -> str:
        """One sentence: what broke, where, and what it cost."""
        if not self.broken:
            if self.appended_blocks:
                return f"Prefix intact: {self.appended_blocks} block(s) appended, nothing lost."
            return "Prefix intact: nothing changed before the last breakpoint."
        where = []
        if self.layer:
            where.append(f"layer {self.layer!r}")
        if self.path:
            where.append(self.path)
        if self.line is not None:
            where.append(f"line {self.line}, column {self.column}")
        place = f" in {', '.join(where)}" if where else ""
        if self.cause in ("expired", "below_minimum"):
            if self.cause == "expired":
                return f"expired: {self.tokens_expired:,} cached tokens outlived their TTL."
            return "below_minimum: the prefix was too short to be cached, so nothing was read."
        text = f"{self.cause}{place}: {self.tokens_lost:,} tokens can no longer be read from cache"
        if self.tokens_expired:
            text += f", {self.tokens_expired:,} more expired"
        return text + "."

    def _notes(self) -> list[str]:
        notes: list[str] = []
        if self.setting:
            notes.append(f"setting {self.setting!r} differs")
        if self.expired:
            gap = f"{self.gap_seconds:.0f} s" if self.gap_seconds is not None else "the gap"
            notes.append(f"expired: {gap} between the calls exceeds the {self.ttl} TTL")
        if self.below_minimum:
            notes.append(
                f"below_minimum: the cached prefix is under {self.model}'s minimum of "
                f"{self.minimum:,} tokens, so nothing was written"
            )
        if self.beyond_lookback:
            notes.append(
                "the next breakpoint is more than 20 positions after the last cache entry: "
                "the lookback cannot reach it"
            )
        if self.server_reason is not None or self.agrees is not None:
            server = self.server_reason or "no miss"
            if self.agrees is False:
                notes.append(f"server says {server}; cachescope says {self.cause or 'no break'}")
            elif self.agrees is True:
                notes.append(f"server agrees: {server}")
            else:
                notes.append(f"server says {server} (cannot be checked)")
        return notes

    def __str__(self) -> str:
        lines = [self.summary()]
        if self.old_window is not None and self.new_window is not None:
            lines.append(f"  - {self.old_window}")
            lines.append(f"  + {self.new_window}")
            if self.old_span is not None:
                start, end = self.old_span
                lines.append("    " + " " * start + "^" * max(1, end - start))
        lines.extend(f"  note: {note}" for note in self._notes())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<PrefixDiff {self.summary()}>"

    def _repr_html_(self) -> str:
        esc = html.escape
        state = "broken" if self.broken else "intact"
        parts = [
            f'<div class="cachescope-diff cachescope-{state}">',
            f"<p><strong>{esc(self.summary())}</strong></p>",
        ]
        if self.old_window is not None and self.new_window is not None:
            parts.append('<pre style="margin:0">')
            parts.append(
                '<span style="color:#b31d28">- </span>'
                + _marked(self.old_window, self.old_span, "#ffdce0")
            )
            parts.append(
                '\n<span style="color:#22863a">+ </span>'
                + _marked(self.new_window, self.new_span, "#cdffd8")
            )
            parts.append("</pre>")
        notes = self._notes()
        if notes:
            parts.append("<ul>" + "".join(f"<li>{esc(note)}</li>" for note in notes) + "</ul>")
        parts.append("</div>")
        return "".join(parts)

    def _repr_mimebundle_(
        self, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
    ) -> dict[str, str]:
        return mimebundle(str(self), self._repr_html_(), include, exclude)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field plus the summary sentence."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        out["summary"] = self.summary()
        return out


def _prefix_diff(**fields: Any) -> PrefixDiff:
    """A PrefixDiff of every field (as `compare` passes them), made without the frozen
    dataclass's one `object.__setattr__` per field (3.5 µs of a ~0.1 ms `compare`); it stays
    frozen."""
    diff: PrefixDiff = object.__new__(PrefixDiff)
    diff.__dict__.update(fields)
    return diff


def _marked(window: str, span: tuple[int, int] | None, colour: str) -> str:
    if span is None:
        return html.escape(window)
    start, end = span
    return (
        html.escape(window[:start])
        + f'<mark style="background:{colour}">{html.escape(window[start:end])}</mark>'
        + html.escape(window[end:])
    )


# --------------------------------------------------------------------------------------------
# compare


def _common_prefix_length_py(a: str, b: str) -> int:
    """Twin of `blocks.common_prefix`, by C-speed slice comparisons."""
    limit = min(len(a), len(b))
    low = 0
    step = 4096
    while low < limit:
        high = min(limit, low + step)
        if a[low:high] == b[low:high]:
            low = high
            step *= 2
            continue
        # binary search inside [low, high)
        lo, hi = low, high
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if a[lo:mid] == b[lo:mid]:
                lo = mid
            else:
                hi = mid
        return lo
    return limit


def _common_suffix_length_py(a: str, b: str, floor: int) -> int:
    """Twin of `blocks.common_suffix`."""
    limit = min(len(a), len(b)) - floor
    lo, hi = 0, max(0, limit)
    if hi and a[len(a) - hi :] == b[len(b) - hi :]:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[len(a) - mid :] == b[len(b) - mid :]:
            lo = mid
        else:
            hi = mid
    return lo


def _change_window(
    old: str, new: str
) -> tuple[int, int, int, str, tuple[int, int], str, tuple[int, int]]:
    """Where two texts first differ (offset, 1-based line and column in `old`) and the changed
    line of each with its changed span (`blocks.change_window` when built)."""
    native = _blocks._native
    if native is not None and type(old) is str and type(new) is str:
        found: tuple[int, int, int, str, tuple[int, int], str, tuple[int, int]]
        found = native.change_window(old, new, WINDOW)
        return found
    return _change_window_py(old, new, WINDOW)


def _change_window_py(
    old: str, new: str, window: int
) -> tuple[int, int, int, str, tuple[int, int], str, tuple[int, int]]:
    """Twin of `blocks.change_window`."""
    offset = _common_prefix_length_py(old, new)
    line = old.count("\n", 0, offset) + 1
    column = offset - (old.rfind("\n", 0, offset) + 1) + 1
    suffix = _common_suffix_length_py(old, new, offset)
    old_window, old_span = _line_window(old, offset, len(old) - suffix, window)
    new_window, new_span = _line_window(new, offset, len(new) - suffix, window)
    return offset, line, column, old_window, old_span, new_window, new_span


def _line_window(
    text: str, start: int, end: int, window: int = WINDOW
) -> tuple[str, tuple[int, int]]:
    """The line around text[start:end], clipped to `window` characters of context on each side."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    if line_end == -1:
        line_end = len(text)
    # a change that spans lines is shown up to the end of its first line
    first_break = text.find("\n", start, end)
    shown_end = first_break if first_break != -1 else end
    lo = max(line_start, start - window)
    hi = min(line_end, shown_end + window) if first_break == -1 else shown_end
    prefix = "…" if lo > line_start else ""
    suffix = "…" if hi < line_end and first_break == -1 else ""
    shown = prefix + text[lo:hi] + suffix
    span_start = len(prefix) + (start - lo)
    span_end = len(prefix) + (min(shown_end, hi) - lo)
    return shown.replace("\t", " ").replace("\r", " "), (span_start, span_end)


def _first_different_py(a: Sequence[Any], b: Sequence[Any]) -> int | None:
    """Twin of `blocks.first_different`: first index where a and b hold different objects."""
    return next(compress(count(), map(is_not, a, b)), None)


def _first_different(a: Sequence[Any], b: Sequence[Any]) -> int | None:
    native = _blocks._native
    if native is not None and type(a) is list and type(b) is list:
        found: int | None = native.first_different(a, b)
        return found
    return _first_different_py(a, b)


def _differ(old: Block, new: Block) -> bool:
    """Whether `new` fails to reproduce `old` (the same object, or equal hash, level, kind, role
    and text)."""
    return old is not new and (
        old.hash != new.hash
        or old.level != new.level
        or old.kind != new.kind
        or old.role != new.role
        or old.text != new.text
    )


def _lean_divergence(a: LeanRequest, b: LeanRequest) -> int | None:
    """`_first_divergence` of two requests read by `flatten_lean`: the head block by block, then
    messages with equal keys (the same content at the same place) skipped whole."""
    starts_a, starts_b = a.starts, b.starts
    n = min(starts_a[-1], starts_b[-1])
    head_a, head_b = a.head, b.head
    heads = min(len(head_a), len(head_b), n)
    units_a, units_b = a.head_units, b.head_units
    if len(units_a) != len(units_b) or any(map(is_not, units_a, units_b)):
        # equal units are the same memo entry (same content key): only other ones are read
        for i in range(heads):
            if _differ(head_a[i], head_b[i]):
                return i
    start = heads
    if len(head_a) == len(head_b):
        # message keys hold the message's place and first block: equal keys, equal blocks
        first: int | None = _blocks._native.first_different_key(a.walk[0], b.walk[0])
        if first is None:
            first = min(len(starts_a), len(starts_b)) - 1
        start = starts_a[first]
        if first < len(starts_a) - 1 and first < len(starts_b) - 1:
            # the first message that differs, unit against unit (both start at `start`)
            unit_b = b.message_unit(first)
            for j, old in enumerate(a.message_unit(first)):
                if j == len(unit_b):
                    break
                if _differ(old, unit_b[j]):
                    a.remember(start + j, old)  # compare reads both blocks next
                    b.remember(start + j, unit_b[j])
                    return start + j
            start += min(starts_a[first + 1], starts_b[first + 1]) - starts_a[first]
    block_a, block_b = a.block, b.block
    for i in range(start, n):
        if _differ(block_a(i), block_b(i)):
            return i
    return None


def _first_divergence(a: _Side, b: _Side) -> int | None:
    """First position of `a` that `b` does not reproduce (content only); None if none in common."""
    if a.lean is not None and b.lean is not None:
        return _lean_divergence(a.lean, b.lean)
    n = min(len(a), len(b))
    if (
        a.units is not None
        and b.units is not None
        and a.blocks is not None
        and b.blocks is not None
    ):
        # Equal units are the same memo entry (same content key), so whole units are skipped;
        # from the first other unit on, blocks are compared by hash, then exactly.
        same = _first_different(a.units, b.units)
        if same is None:
            start = len(a.blocks)  # the units cover every block
        elif a.units[same]:
            start = a.units[same][0].index  # a block's index is its position
        else:
            start = sum(map(len, a.units[:same]))
        blocks_a, blocks_b = a.blocks, b.blocks
        for i in range(start, n):
            if _differ(blocks_a[i], blocks_b[i]):
                return i
        return None
    la, lb = a.levels, b.levels
    ka, kb = a.kinds, b.kinds
    ra, rb = a.roles, b.roles
    if a.texts is not None and b.texts is not None:
        ta, tb = a.texts, b.texts
        same_shape = la[:n] == lb[:n] and ka[:n] == kb[:n] and ra[:n] == rb[:n]
        if isinstance(ta, _Texts) and isinstance(tb, _Texts):
            raw_a, raw_b = ta.raw, tb.raw
            for i in range(n):
                if not same_shape and (la[i] != lb[i] or ka[i] != kb[i] or ra[i] != rb[i]):
                    return i
                if raw_a(i) is not raw_b(i):
                    x, y = ta[i], tb[i]
                    if x is not y and x != y:
                        return i
            return None
        for i in range(n):
            if la[i] != lb[i] or ka[i] != kb[i] or ra[i] != rb[i] or ta[i] != tb[i]:
                return i
        return None
    if a.prefixes is not None and b.prefixes is not None:
        for i in range(n):
            if a.prefixes[i] != b.prefixes[i]:
                return i
        return None
    for i in range(n):
        if a.hash(i) != b.hash(i):
            return i
    return None


def _setting_divergence(a: _Side, b: _Side) -> tuple[int, str, str] | None:
    """(position, level, setting name) of the earliest setting change, if any."""
    if a.settings is None or b.settings is None:
        if a.model and b.model and a.model != b.model:
            return 0, "tools", "model"
        return None
    for level in LEVELS:
        old = a.settings.get(level, {}) or {}
        new = b.settings.get(level, {}) or {}
        if old == new:
            continue
        names = sorted({*old, *new})
        changed = [name for name in names if old.get(name) != new.get(name)]
        level_no = LEVEL_INDEX[level]
        position = next((i for i, lv in enumerate(a.levels) if LEVEL_INDEX[lv] >= level_no), len(a))
        return position, level, changed[0] if changed else level
    return None


def _server_type(reason: Any) -> tuple[str | None, int | None]:
    if reason is None:
        return None, None
    if isinstance(reason, Mapping):
        inner = reason.get("cache_miss_reason", reason)
        if isinstance(inner, Mapping):
            missed = inner.get("cache_missed_input_tokens")
            kind = inner.get("type")
            return (str(kind) if kind else None), (int(missed) if isinstance(missed, int) else None)
        return (str(inner) if inner else None), None
    kind = getattr(reason, "type", reason)
    return str(kind), None


def _expected_server(cause: str | None, level: str | None) -> str | None:
    if cause is None or cause in ("expired", "below_minimum"):
        return None
    if cause in ("model_changed", "tools_changed", "system_changed", "messages_changed"):
        return cause
    if level in _SERVER_FOR_SETTING_LEVEL:
        return _SERVER_FOR_SETTING_LEVEL[level]
    if cause == "images_changed":
        return "messages_changed"
    return "unavailable"


def compare(
    a: Any,
    b: Any,
    *,
    gap_seconds: float | None = None,
    ttl: str | None = None,
    server_reason: Any = None,
    minimum: int | None = None,
) -> PrefixDiff:
    """Where `b` stops matching the cached prefix of `a`, why, and how many tokens that costs.

    Parameters
    ----------
    a, b:
        The earlier and the later request: params dicts (full detail, with the changed text),
        `Fingerprint`s (no text window unless fingerprinted with `keep_text=True`), their
        `to_dict()` output, or ledger records (anything with `.fingerprint` or `.blocks`, `.model`
        and `.time`).
    gap_seconds:
        Seconds between the two requests; by default taken from the records' times when known.
    ttl:
        Override the TTL of `a`'s cache entries ("5m" or "1h") for the expiry check.
    server_reason:
        The server's `cache_miss_reason` for `b` (a type string or the diagnostics dict); by
        default taken from a record's `cache_miss_reason`.
    minimum:
        Minimum cacheable tokens; by default from the model table (none for an unknown model).
    """
    leans = _lean_pair(a, b)
    if leans is not None:
        return _compare_lean(*leans, gap_seconds, ttl, server_reason, minimum)
    side_a = _side(a)
    side_b = _side(b, side_a)
    if gap_seconds is None and side_a.time is not None and side_b.time is not None:
        gap_seconds = side_b.time - side_a.time
    if server_reason is None:
        server_reason = side_b.miss_reason
    if minimum is None:
        minimum = _model_facts(side_a.model)[1]
    texts_a, texts_b = side_a.texts, side_b.texts
    return _assess(
        _first_divergence(side_a, side_b),
        side_a.levels.__getitem__,
        _setting_divergence(side_a, side_b),
        len(side_a),
        len(side_b),
        side_a.breakpoints(),
        side_a.token_sum,
        lambda: [point for point, _ in side_b.breakpoints()],
        (lambda at: (texts_a[at], texts_b[at]))
        if texts_a is not None and texts_b is not None
        else None,
        lambda at: (side_a.levels[at], side_a.layers[at], side_a.paths[at], side_a.kinds[at]),
        gap_seconds=gap_seconds,
        ttl=ttl,
        server_reason=server_reason,
        minimum=minimum,
        model=side_a.model,
    )


def _lean_pair(a: Any, b: Any) -> tuple[LeanRequest, LeanRequest, str, str] | None:
    """Two params dicts (the common case) read by one `flatten_lean`, with their tokenizers;
    None for anything else (then each side is read the general way)."""
    if not (
        type(a) is dict
        and type(b) is dict
        and ("messages" in a or "system" in a or "blocks" not in a)
        and ("messages" in b or "system" in b or "blocks" not in b)
    ):
        return None
    tokenizer_a = _model_facts(str(a.get("model", "")))[0]
    tokenizer_b = _model_facts(str(b.get("model", "")))[0]
    try:
        leans = flatten_lean(
            [
                (a, counter_for(tokenizer_a), _hash_memo(tokenizer_a)),
                (b, counter_for(tokenizer_b), _hash_memo(tokenizer_b)),
            ]
        )
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):
        return None  # e.g. SDK objects inside: each side is read the general way
    if leans is None:
        return None
    return leans[0], leans[1], tokenizer_a, tokenizer_b


def _lean_breakpoints(lean: LeanRequest) -> list[tuple[int, str]]:
    """`_Side.breakpoints` of a request read by `flatten_lean`."""
    block = lean.block
    # the walk's TTL codes name the usual TTLs without reading the block
    points = [
        (i, _TTL_NAMES[code] or block(i).ttl or "5m") for i, code in zip(lean.marked, lean.walk[7])
    ]
    top = lean.top_level_cache_control
    if top is None:
        return points
    return _with_automatic(
        points,
        len(lean),
        _Field(lean, "kind"),
        lambda i: block(i).text != "",
        str(top.get("ttl") or "5m"),
    )


_TTL_NAMES = (None, "5m", "1h")  # by `lean_messages`' TTL code


def _lean_positions(lean: LeanRequest) -> list[int]:
    """The positions of `_lean_breakpoints` (no block is read without automatic caching)."""
    if lean.top_level_cache_control is None:
        return lean.marked
    return [point for point, _ in _lean_breakpoints(lean)]


def _compare_lean(
    a: LeanRequest,
    b: LeanRequest,
    tokenizer_a: str,
    tokenizer_b: str,
    gap_seconds: float | None,
    ttl: str | None,
    server_reason: Any,
    minimum: int | None,
) -> PrefixDiff:
    """`compare` of two requests read by `flatten_lean`: the same steps, each reading only the
    few blocks it needs (one Python function for the common case, which runs right after the C
    walks have streamed both requests through the CPU caches)."""
    if minimum is None:
        minimum = _model_facts(a.model)[1]
    changed = None
    if a.settings != b.settings:
        changed = _setting_divergence(
            _Side.from_lean(a, tokenizer_a), _Side.from_lean(b, tokenizer_b)
        )
    block_a, block_b = a.block, b.block

    def fields(at: int) -> tuple[str, str | None, str, str]:
        found = block_a(at)
        return found.level, found.layer, found.path, found.kind

    return _assess(
        _lean_divergence(a, b),
        lambda at: block_a(at).level,
        changed,
        len(a),
        len(b),
        _lean_breakpoints(a),
        a.token_sum,
        lambda: _lean_positions(b),
        lambda at: (block_a(at).text, block_b(at).text),
        fields,
        gap_seconds=gap_seconds,
        ttl=ttl,
        server_reason=server_reason,
        minimum=minimum,
        model=a.model,
    )


def _assess(
    index: int | None,
    level_at: Callable[[int], str],
    changed_setting: tuple[int, str, str] | None,
    len_a: int,
    len_b: int,
    points: list[tuple[int, str]],
    token_sum: Callable[[int, int], int],
    positions_b: Callable[[], Sequence[int]],
    texts_at: Callable[[int], tuple[str, str]] | None,
    fields_at: Callable[[int], tuple[str, str | None, str, str]],
    *,
    gap_seconds: float | None,
    ttl: str | None,
    server_reason: Any,
    minimum: int | None,
    model: str,
) -> PrefixDiff:
    """The steps of `compare` after reading both sides: `index` is the first position of `a`
    whose block `b` does not reproduce (None: none in common), `points` a's breakpoints
    (`positions_b()` b's, positions only),
    `token_sum(start, end)` a's tokens over positions start..end, `texts_at(i)` the texts of
    both blocks at i (None when not at hand), `fields_at(i)` (level, layer, path, kind) of a's."""
    # 1. locate: the first changed block, setting or removed block
    cause: str | None = None
    setting: str | None = None
    if index is not None:
        cause = _LEVEL_CAUSE.get(level_at(index), "messages_changed")
    elif len_b < len_a:
        index = len_b
        cause = _LEVEL_CAUSE.get(level_at(index), "messages_changed")
    setting_level: str | None = None
    if changed_setting is not None and (index is None or changed_setting[0] <= index):
        index, setting_level, setting = changed_setting
        cause = "model_changed" if setting == "model" else f"{setting}_changed"
    if index is not None and index >= len_a:
        # a setting changed at a level a has no blocks in: nothing of a is affected
        index, cause, setting = None, None, None

    # 2. cost: a's cache entries are its breakpoints whose prefix reaches the minimum. Tokens
    # are counted only up to the first entry (to find it) and over the lost range.
    first_entry = 0
    if minimum is not None:
        cumulative, done = 0, -1
        first_entry = len(points)
        for number, (point, _) in enumerate(points):
            cumulative += token_sum(done + 1, point)
            done = point
            if cumulative >= minimum:
                first_entry = number
                break
    entries = points[first_entry:]
    below_minimum = bool(points) and not entries
    # breakpoints come in position order: the surviving entries are those before `index`
    surviving = entries if index is None else entries[: bisect_left(entries, (index,))]

    tokens_lost = 0
    if index is not None and entries and entries[-1][0] >= index:
        start = surviving[-1][0] + 1 if surviving else 0
        tokens_lost = token_sum(start, entries[-1][0])

    # 3. time: entries whose TTL passed before b was sent
    expired = False
    tokens_expired = 0
    shown_ttl: str | None = ttl or (entries[-1][1] if entries else None)
    if gap_seconds is not None and entries:
        expired = gap_seconds > TTL_SECONDS.get(ttl or entries[-1][1], 300.0)
        alive = [e for e in surviving if gap_seconds <= TTL_SECONDS.get(ttl or e[1], 300.0)]
        if surviving and (not alive or alive[-1][0] < surviving[-1][0]):
            start = alive[-1][0] + 1 if alive else 0
            tokens_expired = token_sum(start, surviving[-1][0])

    # 4. lookback: b must have a breakpoint within 20 positions after the entry it reads
    beyond_lookback = False
    if surviving and (index is None or surviving[-1][0] < index):
        target = surviving[-1][0]
        later = positions_b()  # in position order
        first = bisect_left(later, target)
        if first < len(later) and later[first] - target >= LOOKBACK:
            beyond_lookback = True

    if cause is None and index is None:
        if expired and tokens_expired:
            cause = "expired"
        elif below_minimum and points:
            cause = "below_minimum"
    broken = cause is not None

    # 5. the changed characters, only inside the one divergent block
    offset = line = column = None
    old_window = new_window = None
    old_span = new_span = None
    if index is not None and setting is None and index < len_b and texts_at is not None:
        old, new = texts_at(index)
        offset, line, column, old_window, old_span, new_window, new_span = _change_window(old, new)

    server_type, server_missed = _server_type(server_reason)
    agrees: bool | None = None
    if server_reason is not None or server_type is not None:
        if server_type in _SERVER_UNSURE and _expected_server(cause, setting_level) != server_type:
            agrees = None
        else:
            agrees = server_type == _expected_server(cause, setting_level)

    appended = max(0, len_b - len_a) if index is None else 0
    level = layer = path = kind = None
    if index is not None and index < len_a:
        level, layer, path, kind = fields_at(index)
    return _prefix_diff(
        broken=broken,
        cause=cause,
        index=index,
        level=level,
        layer=layer,
        path=path,
        kind=kind,
        setting=setting if setting != "model" else None,
        offset=offset,
        line=line,
        column=column,
        old_window=old_window,
        new_window=new_window,
        old_span=old_span,
        new_span=new_span,
        appended_blocks=appended,
        tokens_lost=tokens_lost,
        tokens_expired=tokens_expired,
        expired=expired,
        below_minimum=below_minimum,
        beyond_lookback=beyond_lookback,
        gap_seconds=gap_seconds,
        ttl=shown_ttl,
        model=model or None,
        minimum=minimum,
        server_reason=server_type,
        server_missed_tokens=server_missed,
        agrees=agrees,
    )
