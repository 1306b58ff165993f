"""Recreate the synthetic Claude Code corpus that notebook 04 analyses (`claude-code/projects/...`).

The corpus is written by `cachescope.logs.synthetic.write_corpus` with a fixed seed, so the same
version of cachescope writes the same bytes: placeholder text and made-up IDs only, in the layout
and record types of real Claude Code transcripts (streamed responses, subagents, sidechain replays,
compactions, `<synthetic>` errors, 5m and 1h writes, a few malformed lines). Run it from anywhere:

    python notebooks/data/regenerate.py
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from cachescope.logs.synthetic import write_corpus

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "claude-code"
SETTINGS = {
    "sessions": 60,
    "seed": 3007,
    "start": dt.date(2026, 9, 1),
    "days": 55,
    "turns": (5, 30),
    "subagent_rate": 0.35,
    "padding": 40,
    "flaws": True,
}


def main() -> None:
    if CORPUS.exists():
        shutil.rmtree(CORPUS)
    truth = write_corpus(CORPUS, **SETTINGS)  # type: ignore[arg-type]
    print(
        f"wrote {truth.files} files, {truth.bytes / 1e6:.1f} MB, {truth.responses:,} responses "
        f"to {CORPUS.relative_to(HERE.parent.parent)}"
    )


if __name__ == "__main__":
    main()
