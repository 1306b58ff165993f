"""The levels of a request (tools → system → messages), the settings the API mixes into each, and
the cumulative prefix keys that fold them in where their level starts (spec §2, §8): part of
`cachescope.blocks`, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import xxhash

LEVELS: tuple[str, str, str] = ("tools", "system", "messages")
LEVEL_INDEX = {name: i for i, name in enumerate(LEVELS)}


def _cites(item: Any) -> bool:
    """Whether a content block is a document with citations enabled."""
    cited = item.get("citations") if isinstance(item, Mapping) else None
    return isinstance(cited, Mapping) and bool(cited.get("enabled"))


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
            key = xxhash.xxh3_64_intdigest(
                _settings_seed(settings.get(LEVELS[level_done], {})), seed=key
            )
        key = xxhash.xxh3_64_intdigest(block.hash.to_bytes(8, "little"), seed=key)
        keys.append(key)
    return keys
