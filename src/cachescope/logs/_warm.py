"""The warm path of `cachescope usage`: what a run depends on, and its rendered output, cached.

Light on purpose (no numpy, no pandas): a second `cachescope usage` over unchanged files is Python
start-up, discovery, one `stat` per file and one read of the stored output. The stored output is
keyed by everything it depends on: every input file's (path, names, size, mtime), the shipped
price table, the cache format, cachescope's version and sources, and the command's arguments.
The load report's per-run figures (files read vs from cache, seconds) are filled in anew on
every replay, as a warm run of the full path would report them; warnings are replayed too.
`--no-cache` bypasses all of it.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import xxhash

from cachescope.logs._discover import SourceFile, default_roots, find_files

# Bump when the scanner's output changes meaning (also stamps `_cache`'s files).
CACHE_VERSION = "cachescope.logs.cache/5"
OUTPUT_VERSION = "cachescope.usage.output/1"
LISTING_VERSION = "cachescope.logs.listing/1"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cachescope" / "logs"


def cache_path(roots: list[str]) -> Path:
    digest = xxhash.xxh3_64_hexdigest("\x00".join(sorted(roots)).encode())
    return cache_dir() / f"{digest}.pickle"


def rows_path(roots: list[str]) -> Path:
    return cache_path(roots).with_suffix(".rows.pickle")


def roots_of(path_list: list[str | os.PathLike[str]] | None) -> list[str]:
    """The cache's name for a set of inputs (the default folders, or the given paths)."""
    if path_list is None:
        return ["<default>", *(str(root) for root in default_roots())]
    return sorted({os.path.realpath(os.path.expanduser(os.fspath(p))) for p in path_list})


def _state(path: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_ino, info.st_mode)


def find_files_cached(
    path_list: list[str | os.PathLike[str]] | None, roots: list[str], *, use_cache: bool = True
) -> list[SourceFile]:
    """`find_files`, reusing the last listing while no folder it looked at has changed.

    A file appearing, disappearing or being renamed changes its folder's mtime, so one `stat`
    per folder (and per root) tells whether the stored listing still holds; the files' own
    changes are the signature's business. Anything unreadable falls back to a fresh walk.
    """
    if not use_cache:
        return find_files(path_list)
    where = cache_path(roots).with_suffix(".files.pickle")
    try:
        with open(where, "rb") as fh:
            stored = pickle.load(fh)
        if (
            isinstance(stored, dict)
            and stored.get("version") == LISTING_VERSION
            and all(_state(p) == state for p, state in stored["probe"])
        ):
            return list(stored["sources"])
    except Exception:  # unreadable or foreign: list again
        pass
    visited: list[str] = []
    sources = find_files(path_list, visited=visited)
    entry = {
        "version": LISTING_VERSION,
        "probe": [(p, _state(p)) for p in visited],
        "sources": sources,
    }
    try:
        write_pickle(where, entry)
    except OSError:
        pass
    return sources


def stat_sources(sources: list[SourceFile]) -> list[tuple[int, int] | None]:
    """(size, mtime_ns) of each file, None when it cannot be read."""
    out: list[tuple[int, int] | None] = []
    for source in sources:
        try:
            info = os.stat(source.path)
        except OSError:
            out.append(None)
        else:
            out.append((info.st_size, info.st_mtime_ns))
    return out


def rows_signature(sources: list[Any], stats: list[tuple[int, int] | None]) -> str:
    """What the final rows depend on: every file (path, names, size, mtime) and the price table."""
    digest = xxhash.xxh3_128()
    digest.update(CACHE_VERSION.encode())
    digest.update(resources.files("cachescope").joinpath("data/prices.toml").read_bytes())
    digest.update(
        "\x00".join(
            f"{s.path}\x01{s.project}\x01{s.session}\x01{s.agent}\x01{st}"
            for s, st in zip(sources, stats)
        ).encode("utf-8", "surrogateescape")
    )
    return digest.hexdigest()


def _code_stamp() -> str:
    """cachescope's version and the (size, mtime) of its Python sources."""
    import cachescope

    package = Path(cachescope.__file__).resolve().parent
    parts = [str(getattr(cachescope, "__version__", ""))]
    for folder in (package, package / "logs"):
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith(".py"):
                info = entry.stat()
                parts.append(f"{entry.name}:{info.st_size}:{info.st_mtime_ns}")
    data = package / "data" / "prices.toml"
    try:
        info = data.stat()
        parts.append(f"prices:{info.st_size}:{info.st_mtime_ns}")
    except OSError:
        pass
    return "\x00".join(parts)


def output_path(roots: list[str], signature: str, arguments: Iterable[str]) -> tuple[Path, str]:
    """Where the rendered output for these inputs and arguments lives, and its full key."""
    key = xxhash.xxh3_128_hexdigest(
        "\x00".join([OUTPUT_VERSION, signature, _code_stamp(), *arguments]).encode(
            "utf-8", "surrogateescape"
        )
    )
    name = xxhash.xxh3_64_hexdigest("\x00".join(arguments).encode("utf-8", "surrogateescape"))
    return cache_path(roots).with_suffix(f".out-{name}.pickle"), key


def read_output(path: Path, key: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            data = pickle.load(fh)
    except Exception:  # any unreadable or foreign file is a miss
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    return data


def write_output(path: Path, key: str, entry: dict[str, Any]) -> None:
    write_pickle(path, dict(entry, key=key))


def write_pickle(path: Path, data: Any) -> None:
    """Pickle `data` to `path` atomically (a temp file beside it, then a rename)."""
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


def cached_output(
    paths: list[str | os.PathLike[str]] | None, arguments: Iterable[str]
) -> tuple[dict[str, Any] | None, tuple[Path, str]]:
    """What an identical earlier `cachescope usage` run (same `arguments`) printed over the same,
    unchanged files, or None; and where this run's output is to be stored."""
    roots = roots_of(paths)
    sources = find_files_cached(paths, roots)
    where = output_path(roots, rows_signature(sources, stat_sources(sources)), arguments)
    return read_output(*where), where


def store_output(where: tuple[Path, str], entry: dict[str, Any]) -> None:
    """Keep a run's output for `cached_output` (OSError when the cache folder is not writable)."""
    write_output(where[0], where[1], entry)
