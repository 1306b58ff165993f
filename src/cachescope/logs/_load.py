"""`load`: Claude Code transcripts and cachescope ledgers to one row per API response, priced.

Files are scanned in a process pool (one worker per core) unless the incremental cache already
holds them. De-duplication (`_dedup`) is global, so every report sees the same rows. Money comes
from `cachescope.pricing` (`cost_arrays`) on every call, never from a cache, so `set_price` reaches
every figure.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time as _time
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from cachescope import pricing
from cachescope._errors import UnknownModelWarning
from cachescope.logs._cache import (
    Batch,
    cache_path,
    read_cache,
    read_rows,
    rows_path,
    rows_signature,
    write_cache,
    write_rows,
)
from cachescope.logs._dedup import TOKENS, deduplicate
from cachescope.logs._discover import SourceFile
from cachescope.logs._loadreport import CAVEAT as CAVEAT
from cachescope.logs._loadreport import LoadReport as LoadReport
from cachescope.logs._loadreport import SkippedLine as SkippedLine
from cachescope.logs._scan import (
    FLAG_FAST,
    FLAG_LEDGER,
    FLAG_SIDECHAIN,
    scan_many,
)
from cachescope.logs._warm import find_files_cached, roots_of, stat_sources

if TYPE_CHECKING:
    import pandas as pd

DAY_MS = 86_400_000
# Below this many bytes to read, a process pool costs more than it saves.
POOL_MIN_BYTES = 16 << 20
PROGRESS_MIN_BYTES = 256 << 20


def _parse_day(value: str | _dt.date | None, name: str) -> _dt.date | None:
    if value is None or isinstance(value, _dt.date):
        return value
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return _dt.datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    from cachescope._errors import CachescopeError

    raise CachescopeError(f"{name}={value!r} is not a date: write it as YYYY-MM-DD or YYYYMMDD.")


def _scan_all(
    sources: list[SourceFile],
    sizes: list[int],
    workers: int | None,
    progress: bool | None,
) -> list[tuple[Batch, int]]:
    """(batch, index in it) of each source, in order."""
    total = sum(sizes)
    workers = workers or os.cpu_count() or 1
    show = (
        progress if progress is not None else (total >= PROGRESS_MIN_BYTES and sys.stderr.isatty())
    )
    pooled = workers > 1 and total >= POOL_MIN_BYTES and len(sources) > 1
    method = _start_method() if pooled else ""  # before the bar, which starts a thread of its own
    from tqdm import tqdm

    bar = tqdm(
        total=total, unit="B", unit_scale=True, desc="reading logs", disable=not show, leave=False
    )
    try:
        if pooled:
            return _scan_in_pool(sources, sizes, workers, method, bar)
        batch = scan_many(sources)
        bar.update(total)
        return [(batch, i) for i in range(len(sources))]
    finally:
        bar.close()


def _start_method() -> str:
    """How to start the workers: `fork` (cheapest) only in a single-threaded process such as the
    command line, since forking a process with threads (a Jupyter kernel's) can leave a lock held
    in the child; there, `forkserver` where the platform has it, else `spawn`."""
    import multiprocessing
    import threading

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _scan_in_pool(
    sources: list[SourceFile], sizes: list[int], workers: int, method: str, bar: Any
) -> list[tuple[Batch, int]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # Batches of about equal bytes, biggest files first, several per worker so the pool balances.
    order = sorted(range(len(sources)), key=lambda i: -sizes[i])
    target = max(1, sum(sizes) // (workers * 8))
    batches: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for i in order:
        current.append(i)
        current_bytes += sizes[i]
        if current_bytes >= target:
            batches.append(current)
            current, current_bytes = [], 0
    if current:
        batches.append(current)
    context = multiprocessing.get_context(method)
    if context.get_start_method() == "forkserver":  # its workers fork with the scanner imported
        context.set_forkserver_preload(["cachescope.logs._scan"])
    placed: list[tuple[Batch, int] | None] = [None] * len(sources)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(scan_many, [sources[i] for i in batch]): batch for batch in batches}
        # the main process only waits from here: import pandas (needed next) while the workers read
        import pandas  # noqa: F401

        for future in as_completed(futures):
            batch = futures[future]
            done = future.result()
            for k, i in enumerate(batch):
                placed[i] = (done, k)
            bar.update(sum(sizes[i] for i in batch))
    return [p for p in placed if p is not None]


def _gather(
    sources: list[SourceFile],
    stats: list[tuple[int, int] | None],
    no_cache: bool,
    workers: int | None,
    progress: bool | None,
    roots: list[str],
) -> tuple[Batch, int]:
    """The batch for `sources`, from the cache where (path, size, mtime) still match."""
    cached = None if no_cache else read_cache(cache_path(roots))
    index: dict[str, int] = {}
    if cached is not None:
        index = {f.source.path: i for i, f in enumerate(cached.files)}
    fresh: list[int] = []
    pieces: list[tuple[Batch, int] | None] = []
    for k, (source, stat) in enumerate(zip(sources, stats)):
        i = index.get(source.path)
        if i is not None and cached is not None and stat is not None:
            meta = cached.files[i]
            if stat == (meta.size, meta.mtime_ns):
                pieces.append((cached, i))
                continue
        pieces.append(None)
        fresh.append(k)
    if (
        cached is not None
        and not fresh
        and len(sources) == len(cached.files)
        and all(p is not None and p[1] == k for k, p in enumerate(pieces))
    ):
        return cached, 0
    scanned = _scan_all(
        [sources[k] for k in fresh],
        [stats[k][0] if stats[k] is not None else 0 for k in fresh],  # type: ignore[index]
        workers,
        progress,
    )
    for k, piece in zip(fresh, scanned):
        pieces[k] = piece
    batch = Batch.assemble([p for p in pieces if p is not None])
    if not no_cache:
        try:
            write_cache(cache_path(roots), batch)
        except OSError as error:  # a read-only cache folder must not stop the report
            warnings.warn(
                f"cachescope could not write its log cache ({error}); the next run reads every file again.",
                RuntimeWarning,
                stacklevel=3,
            )
    return batch, len(fresh)


def _names(batch: Batch) -> dict[str, Any]:
    """Per-row codes into global name tables (project, session, agent, model, file).

    A file's local session and model codes map into the global tables through one lookup
    table for all files (names are registered in file order, files without rows skipped).
    """
    rows = batch.offsets[1:] - batch.offsets[:-1]
    projects: dict[str, int] = {}
    sessions: dict[str, int] = {}
    agents: dict[str, int] = {"": 0}
    models: dict[str, int] = {}
    n = len(batch.files)
    file_project = np.zeros(n, dtype=np.int32)
    file_agent = np.zeros(n, dtype=np.int32)
    session_table: list[int] = []
    model_table: list[int] = []
    session_base = np.zeros(n, dtype=np.int64)
    model_base = np.zeros(n, dtype=np.int64)
    counts = rows.tolist()
    for i, f in enumerate(batch.files):
        src = f.source
        file_project[i] = projects.setdefault(src.project, len(projects))
        file_agent[i] = agents.setdefault(src.agent, len(agents))
        if not counts[i]:
            continue
        session_base[i] = len(session_table)
        session_table.append(
            sessions.setdefault(src.session or f"{src.agent or 'unknown'}", len(sessions))
        )
        for name in f.sessions[1:]:
            session_table.append(sessions.setdefault(name, len(sessions)))
        model_base[i] = len(model_table)
        for name in f.models:
            model_table.append(models.setdefault(name, len(models)))
    session_codes = (
        np.array(session_table, dtype=np.int32)[
            np.repeat(session_base, rows) + batch.columns["session"]
        ]
        if len(batch.columns["session"])
        else np.empty(0, dtype=np.int32)
    )
    model_codes = (
        np.array(model_table, dtype=np.int32)[np.repeat(model_base, rows) + batch.columns["model"]]
        if len(batch.columns["model"])
        else np.empty(0, dtype=np.int32)
    )
    return {
        "project": (np.repeat(file_project, rows), list(projects)),
        "agent": (np.repeat(file_agent, rows), list(agents)),
        "session": (session_codes, list(sessions)),
        "model": (model_codes, list(models)),
    }


def _build_rows(
    sources: list[SourceFile],
    stats: list[tuple[int, int] | None],
    no_cache: bool,
    workers: int | None,
    progress: bool | None,
    roots: list[str],
) -> dict[str, Any]:
    """Every response of `sources`, de-duplicated and in time order, with what was skipped.

    Covers all dates (`load` filters by date afterwards), so the result can be cached as it is.
    It holds no money: `load` prices the rows it returns, so that prices set since (`set_price`)
    reach a warm run too.
    """
    batch, files_read = _gather(sources, stats, no_cache, workers, progress, roots)
    columns = batch.columns
    names = _names(batch)
    keep, duplicates, replays = deduplicate(columns)
    times = columns["time"][keep]
    order = np.argsort(times, kind="stable")
    keep, times = keep[order], times[order]
    flags = columns["flags"][keep]
    counts = {name: columns[name][keep] for name in TOKENS}
    rows: dict[str, Any] = {"time": times, "flags": flags, **counts}
    for name in ("project", "session", "agent", "model"):
        rows[name] = np.ascontiguousarray(names[name][0][keep])
        rows[f"{name}_names"] = names[name][1]
    rows.update(
        files=len(batch.files),
        bytes=sum(f.size for f in batch.files),
        lines=sum(f.lines for f in batch.files),
        usage_lines=sum(f.usage_lines for f in batch.files),
        duplicates=duplicates + sum(f.duplicates for f in batch.files),
        replays=replays,
        synthetic=sum(f.synthetic for f in batch.files),
        malformed=[
            (f.source.path, line, reason) for f in batch.files for line, reason in f.malformed
        ],
        compactions=[
            (f.source.session or f.source.agent, stamp)
            for f in batch.files
            for stamp in f.compactions
        ],
        files_read=files_read,
    )
    return rows


def _unpriced(
    names: list[str],
    model_codes: np.ndarray[Any, Any],
    fast: np.ndarray[Any, Any],
    cost: np.ndarray[Any, Any],
) -> list[str]:
    """The models (and fast modes) of the rows `pricing` could not price, in order of first use."""
    unpriced = np.isnan(cost)
    if not unpriced.any():
        return []
    kinds, first = np.unique(model_codes[unpriced] * 2 + fast[unpriced], return_index=True)
    labels = []
    for kind in kinds[np.argsort(first)].tolist():
        name = names[kind // 2]
        labels.append(f"{name} (speed='fast')" if kind % 2 else name)
    return labels


def load(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
    since: str | _dt.date | None = None,
    until: str | _dt.date | None = None,
    *,
    no_cache: bool = False,
    progress: bool | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """One row per API response from Claude Code transcripts and cachescope ledgers.

    Parameters
    ----------
    paths:
        Files or folders to read (a Claude folder, a `projects/` folder, a folder of transcripts, a
        `.jsonl` transcript or ledger). Default: the folders Claude Code writes to
        (`CLAUDE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/claude` and `~/.claude`).
    since, until:
        Keep responses from/through these UTC days (`YYYY-MM-DD` or `YYYYMMDD`, inclusive).
        De-duplication happens before the filter, so a window never changes what counts as a copy.
    no_cache:
        Read every file again and leave the incremental cache alone.
    progress:
        Show a progress bar (default: on long loads when stderr is a terminal).
    workers:
        Worker processes for reading (default: one per core).

    Returns
    -------
    pandas.DataFrame
        Columns `timestamp` (UTC), `project`, `session`, `agent` ("" for the main chain),
        `sidechain`, `model`, `fresh`, `write_5m`, `write_1h`, `read`, `output`, `speed`, `cost`,
        `cost_without_cache` (USD, NaN for a model without a known price) and `source`
        ("claude-code" or "ledger"). `df.attrs["load_report"]` is the `LoadReport`.
    """
    started = _time.perf_counter()
    if paths is None:
        path_list: list[str | os.PathLike[str]] | None = None
    elif isinstance(paths, (str, os.PathLike)):
        path_list = [paths]
    else:
        path_list = list(paths)
    first_day = _parse_day(since, "since")
    last_day = _parse_day(until, "until")
    roots = roots_of(path_list)
    sources = find_files_cached(path_list, roots, use_cache=not no_cache)
    stats = stat_sources(sources)
    signature = rows_signature(sources, stats)
    rows = None if no_cache else read_rows(rows_path(roots), signature)
    if rows is None:
        rows = _build_rows(sources, stats, no_cache, workers, progress, roots)
        if not no_cache:
            try:
                write_rows(rows_path(roots), signature, rows)
            except OSError:
                pass  # _gather already warned that the cache folder cannot be written
    else:
        rows = dict(rows, files_read=0)
    import pandas as pd

    times = rows["time"]
    keep = slice(None)
    outside = 0
    if first_day is not None or last_day is not None:
        day = times // DAY_MS
        epoch = _dt.date(1970, 1, 1)
        inside = np.ones(len(times), dtype=bool)
        if first_day is not None:
            inside &= day >= (first_day - epoch).days
        if last_day is not None:
            inside &= day <= (last_day - epoch).days
        outside = int((~inside).sum())
        keep = inside  # type: ignore[assignment]
    flags = rows["flags"][keep]
    times = times[keep]
    counts = {name: rows[name][keep] for name in TOKENS}
    model_codes = rows["model"][keep]
    fast = (flags & FLAG_FAST) != 0
    cost, uncached = pricing.cost_arrays(
        rows["model_names"],
        model_codes,
        times // DAY_MS,
        counts["fresh"],
        counts["write_5m"],
        counts["write_1h"],
        counts["read"],
        counts["output"],
        fast,
    )
    unknown = _unpriced(rows["model_names"], model_codes, fast, cost)
    if unknown:
        warnings.warn(
            UnknownModelWarning(
                f"No price is known for {', '.join(repr(m) for m in unknown)}: the cost of those responses is "
                "reported as unknown (NaN), not $0. Add the model to a prices file to price it."
            ),
            stacklevel=2,
        )

    def categorical(name: str) -> Any:
        return pd.Categorical.from_codes(
            rows[name][keep], categories=pd.Index(rows[f"{name}_names"], dtype=object)
        ).remove_unused_categories()

    df = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(times, unit="ms", utc=True),
            "project": categorical("project"),
            "session": categorical("session"),
            "agent": categorical("agent"),
            "sidechain": (flags & FLAG_SIDECHAIN) != 0,
            "model": categorical("model"),
            **counts,
            "speed": pd.Categorical.from_codes(
                fast.astype(np.int8), categories=pd.Index(["standard", "fast"])
            ),
            "cost": cost,
            "cost_without_cache": uncached,
            "source": pd.Categorical.from_codes(
                ((flags & FLAG_LEDGER) != 0).astype(np.int8),
                categories=pd.Index(["claude-code", "ledger"]),
            ),
        }
    )
    files = rows["files"]
    df.attrs["load_report"] = LoadReport(
        files=files,
        bytes=rows["bytes"],
        lines=rows["lines"],
        usage_lines=rows["usage_lines"],
        responses=len(df),
        duplicates_dropped=rows["duplicates"],
        replays_dropped=rows["replays"],
        synthetic_skipped=rows["synthetic"],
        outside_dates=outside,
        malformed=tuple(SkippedLine(*m) for m in rows["malformed"]),
        files_read=rows["files_read"],
        files_from_cache=files - rows["files_read"],
        seconds=_time.perf_counter() - started,
        unknown_models=tuple(unknown),
        compactions=tuple(rows["compactions"]),
    )
    return cast("pd.DataFrame", df)
