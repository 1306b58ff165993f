"""Where (and why, and at what cost) a cached prefix broke: `compare` → `PrefixDiff`.

`compare(a, b)` finds the first position where `b` no longer matches `a` and says what that costs:

* the divergent block: index, level, layer, character offset, line and column inside the block and
  a short window of old vs new text (when both texts are at hand);
* the cause in the API's diagnostics vocabulary (`model_changed`, `tools_changed`, `system_changed`,
  `messages_changed` for edited or truncated history, or `<setting>_changed` for a setting such as
  `tool_choice`), and `expired` / `below_minimum` when times and the model table say so;
* `tokens_lost`, defined precisely in `PrefixDiff`.

Appending to the conversation is not a break. Each side (params, a `Fingerprint`, its `to_dict()`,
a ledger record) is read into one `_Request`: its positions from `cachescope.blocks.flatten` or the
fingerprint, its breakpoints and its cumulative token counts. Positions are compared in order, the
shared ones by identity (the blocks of an unchanged unit are the same objects); only the one
divergent block is searched for the changed characters.
"""

from __future__ import annotations

import datetime as _dt
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate, compress, count, islice
from operator import is_not
from typing import Any

from cachescope._prefixdiff import WINDOW, PrefixDiff, change_window
from cachescope.blocks import (
    LEVEL_INDEX,
    LEVELS,
    TTL_SECONDS,
    Block,
    FlatRequest,
    clear_memos,
    flatten,
)
from cachescope.fingerprints import BlockPrint, Fingerprint, fingerprint, from_blocks

__all__ = [
    "WINDOW",
    "BlockPrint",
    "Fingerprint",
    "PrefixDiff",
    "clear_memos",
    "compare",
    "fingerprint",
]


#: The API's lookback window: a breakpoint and the 19 positions before it (spec §1.5).
LOOKBACK = 20

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


@lru_cache(maxsize=256)
def _model_minimum(model: str) -> int | None:
    """The model's minimum cacheable tokens, or None when the model is unknown."""
    from cachescope._modeldata import default_table

    info = default_table().lookup(model)
    return None if info is None else info.min_cacheable_tokens


# --------------------------------------------------------------------------------------------
# one side of a comparison: params, a fingerprint, its dict, or a ledger record


@dataclass
class _Request:
    """One side of a comparison: its positions in cache order and what they cost."""

    model: str
    blocks: Sequence[Block | BlockPrint]
    points: list[tuple[int, str]]  # breakpoints (index, TTL) in order, the automatic one included
    settings: Mapping[str, Mapping[str, Any]] | None  # None: not kept (see `prefixes`)
    prefixes: Sequence[int] | None = None  # stored prefix keys, when the settings were not kept
    time: float | None = None
    miss_reason: Any = None
    flat: FlatRequest | None = None  # read from params
    _cumulative: list[int] | None = None

    def tokens_before(self, position: int) -> int:
        """Tokens of the positions before `position` (only the earlier side's are ever read)."""
        if self._cumulative is None:
            if self.flat is not None:
                self._cumulative = self.flat.cumulative_tokens()
            else:
                self._cumulative = [0, *accumulate(block.tokens for block in self.blocks)]
        return self._cumulative[min(position, len(self.blocks))]

    def token_sum(self, start: int, end: int) -> int:
        """Tokens of positions start..end, both included (`end` past the last is the last)."""
        return max(0, self.tokens_before(end + 1) - self.tokens_before(start))


def _stand_in(value: Any) -> Any:
    """What a value that is not JSON is compared as: an SDK (pydantic) object as its fields,
    anything else as itself, by identity."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return f"<{type(value).__qualname__} object at {id(value):#x}>"


def _from_params(params: Mapping[str, Any], alongside: _Request | None) -> _Request:
    earlier = alongside.flat if alongside is not None else None
    try:
        flat = flatten(params, alongside=earlier)
    except TypeError:
        flat = flatten(params, default=_stand_in, alongside=earlier)
    return _Request(
        model=flat.model,
        blocks=flat.blocks,
        points=flat.cache_points(),
        settings=flat.settings,
        flat=flat,
    )


def _from_fingerprint(fp: Fingerprint) -> _Request:
    settings = fp.settings or None
    return _Request(
        model=fp.model,
        blocks=fp.blocks,
        points=fp.breakpoints(),
        settings=settings,
        prefixes=fp.prefixes if settings is None else None,
    )


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


def _read(value: Any, alongside: _Request | None = None) -> _Request:
    """One side of a comparison. `alongside`: the other side, read just before (see `flatten`)."""
    if isinstance(value, Fingerprint):
        return _from_fingerprint(value)
    if isinstance(value, Mapping):
        if "blocks" in value and "messages" not in value and "system" not in value:
            return _from_fingerprint(Fingerprint.from_dict(value))
        return _from_params(value, alongside)
    # A ledger record or anything like it: .fingerprint / .blocks, .model, .time, miss reason.
    fp = getattr(value, "fingerprint", None)
    if callable(fp):
        fp = fp()
    model = str(getattr(value, "model", "") or "")
    if isinstance(fp, Fingerprint):
        side = _from_fingerprint(fp)
    elif isinstance(fp, Mapping):
        side = _from_fingerprint(Fingerprint.from_dict({"model": model, **fp}))
    else:
        blocks = getattr(value, "blocks", None)
        if not isinstance(blocks, (list, tuple)):
            raise TypeError(
                "compare() takes request params (a dict), a Fingerprint, or a ledger record; "
                f"got {type(value).__name__}."
            )
        side = _from_fingerprint(from_blocks(model, blocks, None, None))
    if model and not side.model:
        side.model = model
    stamp = getattr(value, "timestamp", None)
    side.time = _to_seconds(
        stamp if isinstance(stamp, (int, float)) else getattr(value, "time", None)
    )
    side.miss_reason = getattr(value, "cache_miss_reason", None)
    return side


# --------------------------------------------------------------------------------------------
# where the two sides part


def _differ(old: Block | BlockPrint, new: Block | BlockPrint) -> bool:
    """Whether `new` fails to reproduce `old`: another hash, level, kind or role, or (when both
    texts are at hand) another text."""
    return (
        old.hash != new.hash
        or old.level != new.level
        or old.kind != new.kind
        or old.role != new.role
        or (old.text is not None and new.text is not None and old.text != new.text)
    )


def _first_divergence(a: _Request, b: _Request) -> int | None:
    """First position of `a` that `b` does not reproduce (content only); None if none in common."""
    n = min(len(a.blocks), len(b.blocks))
    if a.prefixes is not None and b.prefixes is not None:
        # records without settings: their prefix keys fold the settings in
        return next(compress(count(), map(int.__ne__, a.prefixes[:n], b.prefixes[:n])), None)
    old, new = a.blocks, b.blocks
    i = 0
    while True:
        # positions holding the same block object (an unchanged unit) are skipped at C speed
        found = next(compress(count(i), map(is_not, islice(old, i, n), islice(new, i, n))), None)
        if found is None or _differ(old[found], new[found]):
            return found
        i = found + 1


def _setting_divergence(a: _Request, b: _Request) -> tuple[int, str, str] | None:
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
        changed = [name for name in sorted({*old, *new}) if old.get(name) != new.get(name)]
        level_no = LEVEL_INDEX[level]
        position = next(
            (i for i, block in enumerate(a.blocks) if LEVEL_INDEX[block.level] >= level_no),
            len(a.blocks),
        )
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


# --------------------------------------------------------------------------------------------
# compare


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
    old = _read(a)
    new = _read(b, alongside=old)
    if gap_seconds is None and old.time is not None and new.time is not None:
        gap_seconds = new.time - old.time
    if server_reason is None:
        server_reason = new.miss_reason
    if minimum is None:
        minimum = _model_minimum(old.model)
    len_a, len_b = len(old.blocks), len(new.blocks)

    # 1. locate: the first changed block, setting or removed block
    index = _first_divergence(old, new)
    if index is None and len_b < len_a:
        index = len_b
    cause = None if index is None else _LEVEL_CAUSE.get(old.blocks[index].level)
    setting = setting_level = None
    changed_setting = _setting_divergence(old, new)
    if changed_setting is not None and (index is None or changed_setting[0] <= index):
        index, setting_level, setting = changed_setting
        cause = "model_changed" if setting == "model" else f"{setting}_changed"
    if index is not None and index >= len_a:
        # a setting changed at a level a has no blocks in: nothing of a is affected
        index = cause = setting = None

    # 2. cost: a's cache entries are its breakpoints whose prefix reaches the minimum
    points = old.points
    first_entry = 0
    if minimum is not None:
        first_entry = next(
            (n for n, (at, _) in enumerate(points) if old.tokens_before(at + 1) >= minimum),
            len(points),
        )
    entries = points[first_entry:]
    below_minimum = bool(points) and not entries
    # breakpoints come in position order: the surviving entries are those before `index`
    surviving = entries if index is None else entries[: bisect_left(entries, (index,))]
    tokens_lost = 0
    if index is not None and entries and entries[-1][0] >= index:
        start = surviving[-1][0] + 1 if surviving else 0
        tokens_lost = old.token_sum(start, entries[-1][0])

    # 3. time: entries whose TTL passed before b was sent
    expired = False
    tokens_expired = 0
    if gap_seconds is not None and entries:
        expired = gap_seconds > TTL_SECONDS.get(ttl or entries[-1][1], 300.0)
        alive = [e for e in surviving if gap_seconds <= TTL_SECONDS.get(ttl or e[1], 300.0)]
        if surviving and (not alive or alive[-1][0] < surviving[-1][0]):
            start = alive[-1][0] + 1 if alive else 0
            tokens_expired = old.token_sum(start, surviving[-1][0])

    # 4. lookback: b must have a breakpoint within 20 positions after the entry it reads
    beyond_lookback = False
    if surviving and (index is None or surviving[-1][0] < index):
        target = surviving[-1][0]
        later = [at for at, _ in new.points]
        first = bisect_left(later, target)
        beyond_lookback = first < len(later) and later[first] - target >= LOOKBACK

    if cause is None and index is None:
        if expired and tokens_expired:
            cause = "expired"
        elif below_minimum:
            cause = "below_minimum"

    # 5. the changed characters, only inside the one divergent block
    offset = line = column = None
    old_window = new_window = None
    old_span = new_span = None
    if index is not None and setting is None and index < len_b:
        old_text, new_text = old.blocks[index].text, new.blocks[index].text
        if old_text is not None and new_text is not None:
            offset, line, column, old_window, old_span, new_window, new_span = change_window(
                old_text, new_text
            )

    server_type, server_missed = _server_type(server_reason)
    agrees: bool | None = None
    if server_reason is not None or server_type is not None:
        expected = _expected_server(cause, setting_level)
        if server_type in _SERVER_UNSURE and expected != server_type:
            agrees = None
        else:
            agrees = server_type == expected

    where = old.blocks[index] if index is not None and index < len_a else None
    return PrefixDiff(
        broken=cause is not None,
        cause=cause,
        index=index,
        level=where.level if where else None,
        layer=where.layer if where else None,
        path=where.path if where else None,
        kind=where.kind if where else None,
        setting=setting if setting != "model" else None,
        offset=offset,
        line=line,
        column=column,
        old_window=old_window,
        new_window=new_window,
        old_span=old_span,
        new_span=new_span,
        appended_blocks=max(0, len_b - len_a) if index is None else 0,
        tokens_lost=tokens_lost,
        tokens_expired=tokens_expired,
        expired=expired,
        below_minimum=below_minimum,
        beyond_lookback=beyond_lookback,
        gap_seconds=gap_seconds,
        ttl=ttl or (entries[-1][1] if entries else None),
        model=old.model or None,
        minimum=minimum,
        server_reason=server_type,
        server_missed_tokens=server_missed,
        agrees=agrees,
    )
