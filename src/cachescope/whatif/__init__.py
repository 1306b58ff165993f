"""What-if replay: a recorded session through a fresh simulator under another layout.

A `Recording` is a session as the cache saw it: per call, the time it started, the model, and its
cache positions (identity, tokens, layer, breakpoint). It comes from a cachescope ledger (the
fingerprint every `CallRecord` keeps) or from a Claude Code session (`cachescope.logs`), where the
prompt is rebuilt from the usage numbers as an append-only chain that grows by each turn's new
tokens. Replaying keeps the original timing — the gaps between calls decide what expired — and
changes one thing at a time:

- `ttl="1h"` or `"5m"`: every breakpoint gets that TTL;
- `model="..."`: another model (its prices and minimum cacheable length);
- `stabilize="stable"` (or `"auto"`): the layer stops changing, as if its changing part (the
  timestamp) had moved to the dynamic layer in the user turn (`dynamic_tokens` tokens a turn);
- `move_to_user="dynamic"`: a system layer moves into the newest user turn (the Aura fix for a
  `dynamic_placement="system"` prompt);
- `prewarm=True`: a `max_tokens=0` pre-warm shortly before each call that would find the cache cold
  (saves time to first token, not money);
- `keepalive_minutes=N`: `max_tokens=0` pings during idle gaps of up to N minutes keep a 5-minute
  cache alive (each ping costs a read).

`Recording.compare()` puts the original and the replays side by side (cost, hit share, time to
first token); `Recording.break_even()` says whether 1h beats 5m for the observed gaps.

Replays use the simulator's rules and its latency model; request settings other than the model
(tool_choice, thinking, ...) are not in a fingerprint and are replayed as unchanged.
"""

from __future__ import annotations

from cachescope.whatif._calls import (
    CAVEAT,
    REPLAY_API_KEY,
    TTL_SECONDS,
    Position,
    RecordedCall,
    model_minimum,
)
from cachescope.whatif._recording import Recording
from cachescope.whatif._results import BreakEven, CallResult, ReplayResult, WhatIf

__all__ = [
    "CAVEAT",
    "REPLAY_API_KEY",
    "TTL_SECONDS",
    "BreakEven",
    "CallResult",
    "Position",
    "RecordedCall",
    "Recording",
    "ReplayResult",
    "WhatIf",
    "model_minimum",
]
