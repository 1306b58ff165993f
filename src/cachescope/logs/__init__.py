"""Usage analytics from Claude Code transcripts and cachescope ledgers.

`load(paths)` reads every transcript (and ledger) into one priced row per API response;
`report(df)` turns those rows into totals, groupings, phases and cache rebuilds that render in a
notebook and as JSON (`cachescope usage --json`). Corpora with known totals for tests and
benchmarks come from `cachescope.logs.synthetic`.
"""

from __future__ import annotations

from cachescope.logs._discover import SourceFile, default_roots, find_files
from cachescope.logs._load import CAVEAT, LoadReport, SkippedLine, load
from cachescope.logs._phases import Phase
from cachescope.logs._report import UsageReport, report

__all__ = [
    "CAVEAT",
    "LoadReport",
    "Phase",
    "SkippedLine",
    "SourceFile",
    "UsageReport",
    "default_roots",
    "find_files",
    "load",
    "report",
]
