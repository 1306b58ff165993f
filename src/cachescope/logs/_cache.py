"""The incremental cache: what each file held, keyed on (path, size, mtime), in the user's cache folder.

Two cache files per set of input folders, under `$XDG_CACHE_HOME/cachescope/logs/` (default
`~/.cache/...`):
- `<roots>.pickle`: every file's metadata and all its rows (before de-duplication) as concatenated
  columns. When some files changed, only those are read again and de-duplication re-runs over
  the arrays.
- `<roots>.rows.pickle`: the final rows (de-duplicated, in time order, not priced) and the load
  report's figures, stamped with a signature of every input file's (path, names, size, mtime) and
  of the price table. A warm run whose files are all unchanged loads only this: no parsing, no
  de-duplication, no pricing.
Both are written atomically (temp file + rename); an unreadable or outdated cache is ignored and
rebuilt.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cachescope.logs._scan import COLUMNS, FileResult
from cachescope.logs._warm import CACHE_VERSION as CACHE_VERSION
from cachescope.logs._warm import cache_dir as cache_dir
from cachescope.logs._warm import cache_path as cache_path
from cachescope.logs._warm import rows_path as rows_path
from cachescope.logs._warm import rows_signature as rows_signature
from cachescope.logs._warm import write_pickle


@dataclass
class Batch:
    """Files (metadata only) and their rows as concatenated columns; file i owns rows offsets[i]:offsets[i+1]."""

    files: list[FileResult]
    columns: dict[str, np.ndarray[Any, Any]]
    offsets: np.ndarray[Any, Any]

    @classmethod
    def assemble(cls, pieces: list[tuple[Batch, int]]) -> Batch:
        """File `i` of batch `b` for each (b, i) of `pieces`, in that order, as one batch."""
        batches: list[Batch] = []
        number: dict[int, int] = {}
        for b, _ in pieces:
            if id(b) not in number:
                number[id(b)] = len(batches)
                batches.append(b)
        base = np.zeros(len(batches) + 1, dtype=np.int64)
        np.cumsum([int(b.offsets[-1]) for b in batches], out=base[1:])
        which = np.array([number[id(b)] for b, _ in pieces], dtype=np.int64)
        index = np.array([i for _, i in pieces], dtype=np.int64)
        starts = np.empty(len(pieces), dtype=np.int64)
        stops = np.empty(len(pieces), dtype=np.int64)
        for k, b in enumerate(batches):
            mine = which == k
            starts[mine] = b.offsets[index[mine]] + base[k]
            stops[mine] = b.offsets[index[mine] + 1] + base[k]
        lengths = stops - starts
        offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        columns: dict[str, np.ndarray[Any, Any]] = {}
        identity = (
            len(batches) == 1 and bool((starts == offsets[:-1]).all()) and (offsets[-1] == base[-1])
        )
        take = None
        if not identity:
            take = np.arange(offsets[-1], dtype=np.int64) + np.repeat(
                starts - offsets[:-1], lengths
            )
        for name in COLUMNS:
            whole = (
                batches[0].columns[name]
                if len(batches) == 1
                else np.concatenate([b.columns[name] for b in batches])
            )
            columns[name] = whole if take is None else whole[take]
        return cls([b.files[i] for b, i in pieces], columns, offsets)


def read_rows(path: Path, signature: str) -> dict[str, Any] | None:
    """The cached final rows when their signature still matches, else None."""
    data = _read(path)
    if not isinstance(data, dict) or data.get("signature") != signature:
        return None
    rows = data.get("rows")
    return rows if isinstance(rows, dict) else None


def write_rows(path: Path, signature: str, rows: dict[str, Any]) -> None:
    write_pickle(path, {"version": CACHE_VERSION, "signature": signature, "rows": rows})


def _read(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            data = pickle.load(fh)
    except (
        OSError,
        pickle.UnpicklingError,
        EOFError,
        AttributeError,
        ImportError,
        TypeError,
        ValueError,
    ):
        return None
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return None
    return data


def read_cache(path: Path) -> Batch | None:
    data = _read(path)
    batch = data.get("batch") if isinstance(data, dict) else None
    return batch if isinstance(batch, Batch) else None


def write_cache(path: Path, batch: Batch) -> None:
    write_pickle(path, {"version": CACHE_VERSION, "batch": batch})
