"""A validated request as the simulated cache sees it, read through `cachescope.blocks.flatten`.

Positions, token counts, breakpoints with their TTL (the automatic one included) and prefix keys
all come from the one walk in `cachescope.blocks`; this module adds what the cache rules need on
top: cumulative token counts, where each level ends, and the model's resolved ID and the
simulator's settings in the prefix keys.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from itertools import accumulate
from operator import attrgetter
from typing import Any

import orjson

from cachescope.blocks import TTL_SECONDS, Block, flatten, prefix_keys
from cachescope.tokens import TokenCounter

_TOKENS = attrgetter("tokens")


class CacheRequest:
    """A request as cache positions: tokens, breakpoints, level ends and prefix keys."""

    __slots__ = ("blocks", "breakpoints", "cum", "keys", "level_ends", "model", "settings", "total")

    def __init__(
        self,
        model: str,
        blocks: list[Block],
        breakpoints: list[tuple[int, float, str]],
        settings: dict[str, dict[str, Any]],
    ) -> None:
        self.model = model
        self.blocks = blocks
        self.cum: list[int] = list(accumulate(map(_TOKENS, blocks)))
        self.total = self.cum[-1] if self.cum else 0
        # (position, ttl seconds, ttl name) in render order
        self.breakpoints = breakpoints
        self.settings = settings
        count = len(blocks)
        tools_end = 0  # blocks come in level order: only the few of tools and system are read
        while tools_end < count and blocks[tools_end].level == "tools":
            tools_end += 1
        system_end = tools_end
        while system_end < count and blocks[system_end].level == "system":
            system_end += 1
        self.level_ends = (tools_end, system_end, count)
        self.keys = prefix_keys(blocks, settings)

    def units(self) -> list[int]:
        """Per position, its lookback unit when whole messages count as one: each tool and system
        block is its own unit, each message one."""
        _, system_end, _ = self.level_ends
        units = list(range(system_end))
        units += [
            system_end + int(block.path.split(".", 2)[1]) for block in self.blocks[system_end:]
        ]
        return units

    def level_settings(self) -> tuple[bytes, bytes, bytes]:
        """The settings of each level as canonical JSON (for diagnostics)."""
        settings = self.settings
        return tuple(  # type: ignore[return-value]
            orjson.dumps(settings.get(level, {}), option=orjson.OPT_SORT_KEYS)
            for level in ("tools", "system", "messages")
        )

    def packed_hashes(self) -> bytes:
        """The content hash of every position, as 64-bit words (for diagnostics)."""
        return array("Q", [block.hash for block in self.blocks]).tobytes()


def read_request(
    body: Mapping[str, Any],
    model_id: str,
    counter: TokenCounter,
    *,
    settings_before_tools: bool,
    tool_use_prompt: bool = True,
) -> CacheRequest:
    """The cache view of a request body that `validate` accepted."""
    flat = flatten(body, counter, tool_use_prompt=tool_use_prompt)
    blocks = flat.blocks
    if blocks:
        last = blocks[-1]
        # An empty final assistant message (allowed, as a prefill) holds nothing to cache.
        if last.level == "messages" and last.kind == "text" and not last.text:
            blocks = blocks[:-1]
    # explicit breakpoints and the automatic one of a top-level `cache_control` (which walks back
    # over thinking blocks and the empty prefill); `validate` has checked them against each other
    breakpoints = [(at, TTL_SECONDS[ttl], ttl) for at, ttl in flat.cache_points()]
    settings = {level: dict(values) for level, values in flat.settings.items()}
    # One model answers to its aliases and its dated ID alike: the cache keys on the model.
    settings["tools"] = {"model": model_id}
    if settings_before_tools:
        messages = settings["messages"]
        for name in ("thinking", "effort"):
            if name in messages:
                settings["tools"][name] = messages.pop(name)
    return CacheRequest(model_id, blocks, breakpoints, settings)
