"""The incremental cache: what each file held, keyed on (path, size, mtime), in the user's cache folder.

Two cache files per set of input folders, under `$XDG_CACHE_HOME/cachescope/logs/` (default
`~/.cache/...`):
- `<roots>.pickle`: every file's metadata and all its rows (before de-duplication) as concatenated
  columns. When some files changed, only those are read again and de-duplication re-runs over
  the arrays.
- `<roots>.rows.pickle`: the final rows (de-duplicated, priced, in time order) and the load
  report's figures, stamped with a signature of every input file's (path, names, size, mtime) and
  of the price table. A warm run whose files are all unchanged loads only this: no parsing, no
  de-duplication, no pricing.
Both are written atomically (temp file + rename); an unreadable or outdated cache is ignored and
rebuilt.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cachescope.logs._scan import COLUMNS, FileResult
from cachescope.logs._warm import CACHE_VERSION as CACHE_VERSION
from cachescope.logs._warm import cache_dir as cache_dir
from cachescope.logs._warm import cache_path as cache_path
from cachescope.logs._warm import rows_path as rows_path
from cachescope.logs._warm import rows_signature as rows_signature


@dataclass
class Batch:
    """Files (metadata only) and their rows as concatenated columns; file i owns rows offsets[i]:offsets[i+1]."""

    files: list[FileResult]
    columns: dict[str, np.ndarray[Any, Any]]
    offsets: np.ndarray[Any, Any]

    @classmethod
    def from_results(cls, results: list[FileResult]) -> Batch:
        counts = [r.rows for r in results]
        offsets = np.zeros(len(results) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        columns: dict[str, np.ndarray[Any, Any]] = {}
        for name in COLUMNS:
            parts = [r.columns[name] for r in results if r.rows]
            columns[name] = (
                np.concatenate(parts) if parts else np.zeros(0, dtype=_empty_dtype(name))
            )
        return cls([replace(r, columns={}) for r in results], columns, offsets)

    def result(self, index: int) -> FileResult:
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        return replace(
            self.files[index], columns={k: v[start:stop] for k, v in self.columns.items()}
        )


def _empty_dtype(name: str) -> Any:
    return {
        "model": np.int32,
        "session": np.int32,
        "flags": np.uint8,
        "key": np.uint64,
        "message": np.uint64,
    }.get(name, np.int64)


def read_rows(path: Path, signature: str) -> dict[str, Any] | None:
    """The cached final rows when their signature still matches, else None."""
    data = _read(path)
    if not isinstance(data, dict) or data.get("signature") != signature:
        return None
    rows = data.get("rows")
    return rows if isinstance(rows, dict) else None


def write_rows(path: Path, signature: str, rows: dict[str, Any]) -> None:
    _write(path, {"version": CACHE_VERSION, "signature": signature, "rows": rows})


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
    _write(path, {"version": CACHE_VERSION, "batch": batch})


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pickle")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
