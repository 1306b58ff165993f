"""Usage analytics from Claude Code transcripts and cachescope ledgers.

`load(paths)` reads every transcript (and ledger) into one priced row per API response;
`report(df)` turns those rows into totals, groupings, phases and cache rebuilds that render in a
notebook and as JSON (`cachescope usage --json`). Corpora with known totals for tests and
benchmarks come from `cachescope.logs.synthetic`.

The names that need numpy and pandas are imported on first use, so that the warm path of
`cachescope usage` (which replays a cached output) never pays for those imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cachescope.logs._discover import SourceFile, default_roots, find_files
from cachescope.logs._loadreport import CAVEAT, LoadReport, SkippedLine
from cachescope.logs._warm import cached_output, store_output

if TYPE_CHECKING:
    from cachescope.logs._load import load
    from cachescope.logs._phases import Phase
    from cachescope.logs._report import UsageReport, report

__all__ = [
    "CAVEAT",
    "LoadReport",
    "Phase",
    "SkippedLine",
    "SourceFile",
    "UsageReport",
    "cached_output",
    "default_roots",
    "find_files",
    "load",
    "report",
    "store_output",
]

_LAZY = {"load": "_load", "Phase": "_phases", "UsageReport": "_report", "report": "_report"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
