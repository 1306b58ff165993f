"""cachescope: make Anthropic prompt caching visible and debuggable in Jupyter.

Declare a prompt in layers, send it through a caching client built on the real `anthropic` SDK
(or its offline simulator), and see where the cached prefix broke, what each call cost and what
caching saved. Public names are imported lazily so `import cachescope` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cachescope._errors import (
    CachescopeError,
    CachescopeWarning,
    CellSyntaxError,
    DuplicateLayerError,
    InvalidLayerError,
    InvalidTTLError,
    PromptError,
    TooManyBreakpointsError,
    TTLOrderError,
    UnknownModelWarning,
)

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "Layer": "cachescope.prompt",
    "Prompt": "cachescope.prompt",
    "Cell": "cachescope.syntax",
    "Simulator": "cachescope.sim",
    "VirtualClock": "cachescope.sim",
    "CachingClient": "cachescope.client",
    "AsyncCachingClient": "cachescope.client",
    "Session": "cachescope.client",
    "CallRecord": "cachescope.ledger",
    "Ledger": "cachescope.ledger",
    "fingerprint": "cachescope.stability",
    "Fingerprint": "cachescope.stability",
    "compare": "cachescope.stability",
    "PrefixDiff": "cachescope.stability",
    "lint": "cachescope.lint",
    "Finding": "cachescope.lint",
}
_SUBMODULES = {"syntax", "pricing", "logs", "whatif", "sim", "views", "cli"}

__all__ = [
    "AsyncCachingClient",
    "CachescopeError",
    "CachescopeWarning",
    "CachingClient",
    "CallRecord",
    "Cell",
    "CellSyntaxError",
    "DuplicateLayerError",
    "Finding",
    "Fingerprint",
    "InvalidLayerError",
    "InvalidTTLError",
    "Layer",
    "Ledger",
    "PrefixDiff",
    "Prompt",
    "PromptError",
    "Session",
    "Simulator",
    "TTLOrderError",
    "TooManyBreakpointsError",
    "UnknownModelWarning",
    "VirtualClock",
    "compare",
    "fingerprint",
    "lint",
    "load_ipython_extension",
    "logs",
    "pricing",
    "syntax",
    "unload_ipython_extension",
    "whatif",
]


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext cachescope`: register `%%cached_prompt` and `%cache` (needs IPython)."""
    from cachescope.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext cachescope`: close dashboards and clients."""
    from cachescope.magics import unload_ipython_extension as unload

    unload(ipython)


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is not None:
        value = getattr(importlib.import_module(module_name), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"cachescope.{name}")
    raise AttributeError(f"module 'cachescope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(globals()))


if TYPE_CHECKING:  # pragma: no cover - names for type checkers and IDEs
    from cachescope import logs, pricing, syntax, whatif
    from cachescope.client import AsyncCachingClient, CachingClient, Session
    from cachescope.ledger import CallRecord, Ledger
    from cachescope.lint import Finding, lint
    from cachescope.prompt import Layer, Prompt
    from cachescope.sim import Simulator, VirtualClock
    from cachescope.stability import Fingerprint, PrefixDiff, compare, fingerprint
    from cachescope.syntax import Cell
