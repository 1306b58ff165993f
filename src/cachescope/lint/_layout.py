"""A request as lint reads it (`cachescope.blocks.flatten`, breakpoints, the model's minimum) and
the checks of the request and change rules in `rules.py`: breakpoint order, lookback, minimum
length, dynamic placement, and what changed since the previous render."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from cachescope._modeldata import ModelTable, default_table
from cachescope.blocks import Block, flatten
from cachescope.lint._findings import Finding
from cachescope.lint._kinds import Hit
from cachescope.stability import LOOKBACK, PrefixDiff, compare

# What reading odd params can raise: such a request is not one the API would accept.
UNREADABLE = (TypeError, ValueError, AttributeError, KeyError, IndexError)


@lru_cache(maxsize=1)
def _table() -> ModelTable:
    return default_table()


@lru_cache(maxsize=256)
def minimum_tokens(model: str) -> int | None:
    """The model's minimum cacheable prefix, or None for a model the table does not know."""
    info = _table().lookup(model)
    return info.min_cacheable_tokens if info is not None else None


@dataclass(frozen=True)
class Request:
    """Request params read for lint.

    Attributes
    ----------
    params:
        The params as given.
    blocks:
        Its cache positions, from `cachescope.blocks.flatten`.
    model:
        The model the minimum-length check uses (the request's unless told otherwise).
    points:
        (block index, TTL) of every breakpoint, explicit or automatic, in order.
    scope:
        Index of the last block that is read from cache on every call: the last breakpoint, or
        without one the last tools/system block (-1 when there is none).
    """

    params: Mapping[str, Any]
    blocks: list[Block]
    model: str
    points: list[tuple[int, str]]
    scope: int

    @classmethod
    def read(cls, params: Mapping[str, Any], model: str | None = None) -> Request:
        flat = flatten(params)
        blocks = flat.blocks
        points = [(block.index, block.ttl or "5m") for block in blocks if block.ttl is not None]
        automatic = params.get("cache_control")
        if isinstance(automatic, Mapping):
            # Automatic caching marks the last block that can carry cache_control (spec §1.2).
            for block in reversed(blocks):
                if block.kind not in ("thinking", "redacted_thinking") and block.text != "":
                    if not points or points[-1][0] != block.index:
                        points.append((block.index, str(automatic.get("ttl") or "5m")))
                        points.sort()
                    break
        if points:
            scope = points[-1][0]
        else:
            scope = max((b.index for b in blocks if b.level != "messages"), default=-1)
        return cls(params, blocks, model or flat.model, points, scope)

    def where(self, index: int) -> tuple[str | None, str]:
        """(layer or path, path) of a block, as a finding names it."""
        block = self.blocks[index]
        return block.layer or block.path, block.path


# -- request rules -------------------------------------------------------------------------------


def ttl_order(request: Request) -> Iterator[Hit]:
    """A 1h breakpoint after a 5m one (spec §1.6)."""
    first_5m: int | None = None
    for index, ttl in request.points:
        if ttl == "5m" and first_5m is None:
            first_5m = index
        elif ttl == "1h" and first_5m is not None:
            earlier = request.blocks[first_5m].path
            yield Hit(*request.where(index), f"1h breakpoint after the 5m one at {earlier}")


def lookback(request: Request) -> Iterator[Hit]:
    """More than 20 positions between two breakpoints (spec §1.5)."""
    for (previous, _), (index, _) in zip(request.points, request.points[1:]):
        if index - previous > LOOKBACK:
            since = (
                f"{index - previous} blocks since the breakpoint at {request.blocks[previous].path}"
            )
            yield Hit(*request.where(index), since)


def below_minimum(request: Request) -> Iterator[Hit]:
    """Each breakpoint up to the first whose prefix reaches the model's minimum (spec §1.7)."""
    minimum = minimum_tokens(request.model)
    if minimum is None:
        return
    cumulative, done = 0, -1
    for index, _ in request.points:
        cumulative += sum(block.tokens for block in request.blocks[done + 1 : index + 1])
        done = index
        if cumulative >= minimum:
            return
        shown = f"{cumulative:,} tokens up to here; {request.model} caches from {minimum:,}"
        yield Hit(*request.where(index), shown)


def dynamic_in_system(request: Request) -> Iterator[Hit]:
    """The dynamic layer rendered into the system prompt (`dynamic_placement="system"`) ahead
    of a breakpoint in the messages: the cached history's prefix then changes on every call."""
    history = [index for index, _ in request.points if request.blocks[index].level == "messages"]
    if not history:
        return
    for block in request.blocks[: history[-1]]:
        if block.level == "system" and block.layer == "dynamic" and block.text:
            shown = "dynamic layer in the system prompt, ahead of the cached history"
            yield Hit("dynamic", block.path, shown)
            return


# -- change rules (against the previous render) --------------------------------------------------


def _tool_names(request: Request) -> list[str]:
    names: list[str] = []
    for block in request.blocks:
        if block.level != "tools":
            continue
        try:
            tool = orjson.loads(block.text)
        except orjson.JSONDecodeError:
            continue
        if isinstance(tool, dict) and isinstance(tool.get("name"), str):
            names.append(tool["name"])
    return names


def tool_order(new: Request, old: Request, found: Sequence[Finding]) -> Iterator[Hit]:
    new_tools, old_tools = _tool_names(new), _tool_names(old)
    if new_tools != old_tools and sorted(new_tools) == sorted(old_tools):
        yield Hit("tools", "tools", ", ".join(new_tools)[:80])


def _json_value(text: str) -> Any:
    stripped = text.lstrip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _changed_blocks(new: Request, old: Request) -> Iterator[tuple[Block, bool]]:
    """Each cached block of `new` whose text differs from `old`'s at the same place and level,
    and whether both are the same JSON value (only the key order changed)."""
    for block, before in zip(new.blocks[: new.scope + 1], old.blocks):
        if block.text is before.text or block.text == before.text or block.level != before.level:
            continue
        value = _json_value(block.text)
        yield block, value is not None and value == _json_value(before.text)


def json_key_order(new: Request, old: Request, found: Sequence[Finding]) -> Iterator[Hit]:
    for block, same_value in _changed_blocks(new, old):
        if same_value:
            yield Hit(*new.where(block.index), block.text[:80])


def changing_breakpoint(new: Request, old: Request, found: Sequence[Finding]) -> Iterator[Hit]:
    marks = {index for index, _ in new.points}
    for block, same_value in _changed_blocks(new, old):
        if not same_value and block.index in marks:
            yield Hit(*new.where(block.index), block.text[:80])


def prefix_changed(new: Request, old: Request, found: Sequence[Finding]) -> Iterator[Hit]:
    """A cached block that differs from the previous render, pointing at the value that changed
    and saying what it was; quiet where another rule already flags that value."""
    try:
        diff = compare(old.params, new.params)
    except UNREADABLE:
        return
    if not diff.broken or diff.index is None or diff.cause == "expired" or diff.setting is not None:
        return
    if any(f.path == diff.path and f.rule == "json_key_order" for f in found):
        return
    hit = _changed_value(diff)
    if not any(
        f.path == hit.path
        and f.line == hit.line
        and f.column < hit.end_column
        and f.end_column > hit.column
        for f in found
    ):
        yield hit


def _changed_token(window: str | None, span: tuple[int, int] | None) -> tuple[str, int]:
    """The run of non-blank characters around a diff window's changed span (what a reader
    calls the value that changed: `88-2231-8`, `09:13:25`), and how far it starts before the
    span; ("", 0) without a window."""
    if not window or span is None:
        return "", 0
    start, end = span
    while start > 0 and not window[start - 1].isspace() and window[start - 1] != "…":
        start -= 1
    while end < len(window) and not window[end].isspace() and window[end] != "…":
        end += 1
    return window[start:end], span[0] - start


def _changed_value(diff: PrefixDiff) -> Hit:
    token, before = _changed_token(diff.new_window, diff.new_span)
    old_token, _ = _changed_token(diff.old_window, diff.old_span)
    column = max(1, (diff.column or 1) - before) if diff.line else 0
    was = f" (was {old_token[:40]!r})" if old_token and old_token != token else ""
    return Hit(
        diff.layer or diff.path,
        diff.path or "",
        (token or diff.new_window or "")[:80],
        diff.line or 0,
        column,
        column + max(1, len(token)) if diff.line else 0,
        {"was": was},
    )
