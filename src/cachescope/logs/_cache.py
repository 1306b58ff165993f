"""The incremental cache: what each file held, keyed on (path, size, mtime), in the user's cache folder.

One cache file per set of input folders, under `$XDG_CACHE_HOME/cachescope/logs/` (default
`~/.cache/...`). It holds every file's metadata and all rows as concatenated columns, so a warm run
with nothing changed is one read and no concatenation. Written atomically (temp file + rename);
an unreadable or outdated cache is ignored and rebuilt.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from cachescope.logs._scan import COLUMNS, FileResult

# Bump when the scanner's output changes meaning.
CACHE_VERSION = "cachescope.logs.cache/2"


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


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cachescope" / "logs"


def cache_path(roots: list[str]) -> Path:
    digest = xxhash.xxh3_64_hexdigest("\x00".join(sorted(roots)).encode())
    return cache_dir() / f"{digest}.pickle"


def read_cache(path: Path) -> Batch | None:
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
    batch = data.get("batch")
    return batch if isinstance(batch, Batch) else None


def write_cache(path: Path, batch: Batch) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pickle")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(
                {"version": CACHE_VERSION, "batch": batch}, fh, protocol=pickle.HIGHEST_PROTOCOL
            )
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
