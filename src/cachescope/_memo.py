"""The memo behind `blocks.flatten`: each unit's blocks under its content key (bounded LRU), and
the last few requests' reads, so that messages equal to a recent request's at the same places are
taken a run at a time. Part of `blocks`; nothing else reads it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, replace
from itertools import compress, count
from operator import eq, is_, not_
from typing import TYPE_CHECKING, Any

import orjson
import xxhash

if TYPE_CHECKING:
    from cachescope.blocks import Block
    from cachescope.tokens import TokenCounter


# ---- the content key of a unit -------------------------------------------------------------
#
# The memo key of a unit must decide everything `flatten` makes of it, and be cheap: the unit is
# keyed on every call. The content key of a JSON value is the 128-bit xxh3 of its orjson
# serialization (key order and types kept, as the cache sees them), with the layer names of a
# `LayeredBlocks` beside it; a value orjson cannot serialize raises TypeError (the unit is then
# built without the memo). A message is keyed by its role and its blocks, where a block whose
# values are all strings (a text block, a tool result: most of a history) enters as the tuple of
# its items: Python keeps a string's hash in the string, so a history sent again (the same string
# objects) is keyed without reading its text.

_LIST = object()
_OTHER = object()


def _content_key(value: Any) -> Hashable:
    key = xxhash.xxh3_128_intdigest(orjson.dumps(value))
    names = getattr(value, "layer_names", None)
    return key if names is None else (key, *names)


def _message_key(message: Any) -> Hashable:
    """The content key of one message: what `flatten` reads of it, its role and its content;
    None when it has none (not plain JSON)."""
    try:
        if type(message) is not dict or type(message.get("role")) is not str:
            return (_OTHER, _content_key(message))
        role = message["role"]
        content = message.get("content")
        if type(content) is str:
            return (role, content)
        if type(content) is not list:
            return (role, _OTHER, _content_key(content))
        parts: list[Hashable] = [role, _LIST]
        for block in content:
            if type(block) is dict:
                for value in block.values():
                    if type(value) is not str:
                        break
                else:
                    parts.append(tuple(block.items()))
                    continue
            parts.append(_content_key(block))
        return tuple(parts)
    except (TypeError, RecursionError):
        return None


class _Unit:
    """The memo entry of one unit: its blocks placed where it was last seen, what it found."""

    __slots__ = (
        "at", "chars", "citations", "counter", "found", "images", "overhead", "suffixes", "toggles",
    )  # fmt: skip

    def __init__(
        self,
        counter: TokenCounter,
        blocks: list[Block],
        suffixes: list[str],
        m: int,
        found: tuple[bool, bool, tuple[str, ...]],
    ) -> None:
        self.counter = counter  # the token counts are this counter's
        # (first position, message number, blocks): one value, so threads see whole placements
        self.at = (blocks[0].index if blocks else 0, m, tuple(blocks))
        self.suffixes = tuple(suffixes)  # paths after "messages.{m}" (messages only)
        self.images, self.citations, self.toggles = found
        self.found = any(found)  # images, citations or server tools: the settings change
        self.chars = sum(len(block.text) for block in blocks)
        # a tool list's blocks with the tool-use system prompt counted: (tokens, from, blocks)
        self.overhead: tuple[int, tuple[Block, ...], tuple[Block, ...]] | None = None

    def placed(self, start: int, m: int) -> tuple[Block, ...]:
        """The blocks, starting at position `start` (as message `m`)."""
        first, number, blocks = self.at
        if first != start or number != m:
            blocks = tuple(
                replace(b, index=start + j, path=f"messages.{m}{suffix}" if m >= 0 else b.path,
                        derived=None)
                for j, (b, suffix) in enumerate(zip(blocks, self.suffixes))
            )  # fmt: skip
            self.at = (start, m, blocks)
        return blocks


@dataclass(frozen=True, slots=True)
class _Prior:
    """How `flatten` read the messages of a recent request: a snapshot of each message (or
    `_NEVER`), the memo entry of each, the blocks it placed for each and where each started."""

    counter: TokenCounter
    heads: int  # blocks before the first message
    messages: list[Any]  # the objects read, for a request read alongside in the same call
    snapshots: list[Any]
    # message → the key order of its blocks, where it counts (see `_snapshot`)
    orders: dict[int, tuple[tuple[str, ...], ...]]
    units: list[_Unit]
    placed: list[tuple[Block, ...]]
    starts: list[int]


class _NeverEqual:
    """The snapshot of a message that `==` cannot vouch for: equal to nothing."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = object.__hash__


_NEVER = _NeverEqual()
_ONLY_STR = {str}


def _snapshot(message: Any) -> tuple[Any, tuple[tuple[str, ...], ...] | None]:
    """A copy of `message` that `==` compares as `flatten` reads it, and the key order of its
    blocks when that counts; (`_NEVER`, None) for a message `==` cannot vouch for.

    Vouched for: string content, and lists of blocks whose values are all strings (where `==`
    cannot confuse `1` with `True`). A block's key order counts unless it is a plain text block
    (`{"type": "text", "text": ...}`, whose text is its content in any order); anything else is
    keyed on every call."""
    if type(message) is not dict or type(message.get("role")) is not str:
        return _NEVER, None
    content = message.get("content")
    if type(content) is str:
        return dict(message), None
    if type(content) is not list:
        return _NEVER, None
    blocks = []
    ordered = False
    for block in content:
        if type(block) is not dict or {*map(type, block.values())} != _ONLY_STR:
            return _NEVER, None
        ordered = ordered or len(block) != 2 or block.get("type") != "text"
        blocks.append(dict(block))
    order = tuple(map(tuple, content)) if ordered else None
    return {**message, "content": blocks}, order


class _Priors:
    """The last few requests' reads, so that a request whose messages equal a recent one's at the
    same places (a conversation sent again, grown by a turn) takes their blocks without keying
    them. Equality is checked against the snapshots, never trusted from object identity: a message
    changed in place since is read again."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.reads: list[_Prior] = []
        self.lock = threading.Lock()

    def find(self, messages: list[Any], counter: TokenCounter, heads: int) -> _Prior | None:
        if not messages:
            return None
        first = messages[0]
        for prior in reversed(self.reads):
            if prior.counter is counter and prior.heads == heads and prior.snapshots[0] == first:
                return prior
        return None

    def remember(self, prior: _Prior) -> None:
        if not prior.snapshots:
            return
        with self.lock:
            self.reads = [*self.reads[1 - self.size :], prior]

    def clear(self) -> None:
        with self.lock:
            self.reads = []


class _Memo:
    """Content key of a unit → its `_Unit`, least recently used out first; bounded by units and
    by the characters of their blocks' text (a key holds at most as much again)."""

    def __init__(self, units: int, chars: int) -> None:
        self.max_units, self.max_chars = units, chars
        self.chars = 0
        self.entries: OrderedDict[Hashable, _Unit] = OrderedDict()
        self.lock = threading.Lock()  # for changes of size; lookups go without it

    def get(self, key: Hashable) -> _Unit | None:
        unit = self.entries.get(key)
        if unit is not None:
            self.used(key)
        return unit

    def used(self, key: Hashable) -> None:
        try:
            self.entries.move_to_end(key)
        except KeyError:  # dropped by another thread meanwhile
            pass

    def put(self, key: Hashable, unit: _Unit) -> None:
        with self.lock:
            entries = self.entries
            old = entries.pop(key, None)
            if old is not None:
                self.chars -= old.chars
            entries[key] = unit
            self.chars += unit.chars
            while len(entries) > self.max_units or (
                self.chars > self.max_chars and len(entries) > 1
            ):
                _, dropped = entries.popitem(last=False)
                self.chars -= dropped.chars

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.chars = 0


_MEMO = _Memo(units=20_000, chars=32_000_000)
_PRIORS = _Priors(size=8)


def _order_of(content: list[Any], blocks: int) -> tuple[tuple[str, ...], ...]:
    """The key order of each block of `content` (a message of one block is the common case)."""
    if blocks == 1 and len(content) == 1:
        return (tuple(content[0]),)
    return tuple(map(tuple, content))


def same_as(prior: _Prior, messages: list[Any], alongside: bool) -> list[bool]:
    """Which of `messages` equal `prior`'s at the same places: by the snapshots (and the key
    order where it counts); or, for a request read `alongside` prior in the same call (nothing can
    have changed in between), first by being the very same objects."""
    n = len(messages)
    orders = prior.orders
    checks: Iterable[tuple[int, tuple[tuple[str, ...], ...]]]
    same = list(map(is_, messages, prior.messages)) if alongside else []
    others = list(compress(count(), map(not_, same)))
    if alongside and len(others) <= len(same) // 2:
        for m in others:
            same[m] = prior.snapshots[m] == messages[m]
        checks = [(m, orders[m]) for m in others if m in orders]
    else:  # mostly other objects (or not alongside): every message against its snapshot, in C
        same = list(map(eq, messages, prior.snapshots))
        checks = orders.items()
    same += [False] * (n - len(same))
    for m, keys in checks:
        if m < n and same[m] and _order_of(messages[m]["content"], len(keys)) != keys:
            same[m] = False  # equal, but its keys came in another order
    return same


def _remembered(prior: _Prior | None, same: list[bool], messages: list[Any], counter: TokenCounter,
                heads: int, units: list[_Unit], placed: list[tuple[Block, ...]],
                starts: list[int]) -> _Prior:  # fmt: skip
    """The read of `messages` as a prior for the next request: the snapshots of the messages
    equal to `prior`'s are its own; only the others are copied."""
    n = len(messages)
    snapshots: list[Any] = list(prior.snapshots[:n]) if prior is not None else [_NEVER] * n
    snapshots += [_NEVER] * (n - len(snapshots))
    orders = dict(prior.orders) if prior is not None else {}
    if prior is not None and len(prior.snapshots) > n:
        orders = {m: keys for m, keys in orders.items() if m < n}
    for m in compress(count(), map(not_, same)):
        snapshots[m], keys = _snapshot(messages[m])
        if keys is None:
            orders.pop(m, None)
        else:
            orders[m] = keys
    return _Prior(counter, heads, messages, snapshots, orders, units, placed, starts)
