"""Fingerprints: a request's cache positions without their text, as the ledger keeps them.

`fingerprint(params)` lists the positions of `cachescope.blocks.flatten` in cache order (tools →
system → messages) with level, layer, xxh3 hash, token estimate and breakpoint TTL, plus the
request-level settings the API mixes into the prefix. It serializes without prompt text unless
asked (`to_dict` / `from_dict`), so the ledger can store it and `compare` can read it back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import xxhash

from cachescope.blocks import LEVEL_INDEX, Block, flatten, prefix_keys, with_automatic

__all__ = ["BlockPrint", "Fingerprint", "entry", "fingerprint"]


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
    # the stored prefix keys of a record whose settings were not kept (they fold the settings in)
    prefixes: tuple[int, ...] | None = field(default=None, compare=False, repr=False)

    @property
    def total_tokens(self) -> int:
        return sum(block.tokens for block in self.blocks)

    @property
    def has_text(self) -> bool:
        return bool(self.blocks) and all(block.text is not None for block in self.blocks)

    def breakpoints(self) -> list[tuple[int, str]]:
        """(index, TTL) of every breakpoint, the automatic one included."""
        points = [(b.index, b.breakpoint) for b in self.blocks if b.breakpoint]
        return with_automatic(points, self.blocks, self.automatic_ttl)

    def prefix_keys(self) -> list[int]:
        """Cumulative prefix hash at each position (settings folded in), as `blocks` computes it."""
        if self.prefixes is not None and (self.settings == {} or not self.blocks):
            return list(self.prefixes)
        return prefix_keys(self.blocks, self.settings)

    def to_dict(self, *, include_text: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; prompt text only with `include_text=True`."""
        blocks = [
            {"index": block.index, **entry(block, prefix, block.breakpoint, include_text)}
            for block, prefix in zip(self.blocks, self.prefix_keys())
        ]
        return {
            "model": self.model,
            "settings": _jsonable(self.settings),
            "automatic_ttl": self.automatic_ttl,
            "blocks": blocks,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fingerprint:
        """Rebuild a fingerprint from `to_dict()` output (or a ledger record's `blocks`)."""
        return from_blocks(
            str(data.get("model") or ""),
            data.get("blocks") or [],
            data.get("settings"),
            data.get("automatic_ttl"),
        )

    def __repr__(self) -> str:
        marks = sum(1 for block in self.blocks if block.breakpoint)
        return (
            f"Fingerprint(model={self.model!r}, blocks={len(self.blocks)}, "
            f"tokens={self.total_tokens}, breakpoints={marks})"
        )


def entry(
    block: Block | BlockPrint, prefix: int, breakpoint: str | None, include_text: bool = False
) -> dict[str, Any]:
    """One position as the ledger and `to_dict` keep it: level, path, kind, role, layer, content
    hash, cumulative prefix hash, tokens and breakpoint TTL; its text only with `include_text`."""
    item: dict[str, Any] = {
        "level": block.level,
        "path": block.path,
        "kind": block.kind,
        "role": block.role,
        "layer": block.layer,
        "hash": f"{block.hash:016x}",
        "prefix": f"{prefix:016x}",
        "tokens": block.tokens,
        "breakpoint": breakpoint,
    }
    if include_text and block.text is not None:
        item["text"] = block.text
    return item


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
    flat = flatten(params)
    if keep_text:
        prints = tuple(_print(block, block.text) for block in flat.blocks)
    else:
        prints = tuple(map(_print_of, flat.blocks))
    return Fingerprint(
        model=flat.model, blocks=prints, settings=flat.settings, automatic_ttl=flat.automatic_ttl
    )


def _print(block: Block, text: str | None) -> BlockPrint:
    return BlockPrint(
        block.index,
        block.level,
        block.path,
        block.kind,
        block.role,
        block.layer,
        block.hash,
        block.tokens,
        block.ttl,
        text,
    )


def _print_of(block: Block) -> BlockPrint:
    """The print of a block without its text, kept on the block (which the memo reuses)."""
    kept = block.derived
    if type(kept) is not BlockPrint:
        kept = block.derived = _print(block, None)
    return kept


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
        return xxhash.xxh3_64_intdigest(str(value).encode())


def _level_of(item: Mapping[str, Any]) -> str:
    level = item.get("level")
    if level in LEVEL_INDEX:
        return str(level)
    head = str(item.get("path") or "").split(".", 1)[0]
    if head in LEVEL_INDEX:
        return head
    layer = item.get("layer")
    if layer == "tools":
        return "tools"
    if layer in ("history", "user", "dynamic", None):
        return "messages"
    return "system"


def from_blocks(
    model: str, blocks: Iterable[Any], settings: Any, automatic_ttl: Any
) -> Fingerprint:
    """A fingerprint from stored per-block entries (`to_dict()["blocks"]`, a ledger record's
    `blocks`); settings None when they were not kept (the stored prefix keys stand for them)."""
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
    known = settings if isinstance(settings, Mapping) else None
    return Fingerprint(
        model=model,
        blocks=tuple(prints),
        settings=_jsonable(known) if known is not None else {},
        automatic_ttl=str(automatic_ttl) if automatic_ttl else None,
        prefixes=tuple(prefixes) if have_prefix and prints and known is None else None,
    )
