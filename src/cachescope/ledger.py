"""The call ledger: one `CallRecord` per API call, in memory or as append-only JSONL on disk.

Durability guarantee: when `Ledger.append` returns (and so before `CachingClient.messages.create`
returns) the record's line has been written with `os.write`, and `os.fdatasync` (`os.fsync` where
there is none) has been called on the file — it flushes the data and the file size, which is all an
append needs — and `os.fsync` on its directory when the file was created. A crash after that cannot lose the record. A
process killed *during* a write can leave a torn last line; loading skips it and reports it
(`Ledger.skipped_lines` and a `LedgerWarning`), and the next append starts on a fresh line so later
records are never glued to it.

Several threads and several processes may append to the same file: writes are serialized by a
thread lock and an inter-process file lock (`<path>.lock`). Nothing is ever rewritten in place.

A record holds usage, cost, latency, errors and a fingerprint of the request (per-block hash, layer,
token estimate, breakpoint) — never API keys or headers, and no prompt text unless the client was
created with `store_text=True`. The line format is the flat one of `docs/internal/contracts.md`;
readers ignore keys they do not know.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from cachescope._errors import CachescopeError, CachescopeWarning
from cachescope._ledger_summary import LedgerSummary, summarize
from cachescope._ledger_summary import ratio as _ratio

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "CallRecord",
    "Ledger",
    "LedgerError",
    "LedgerSummary",
    "LedgerWarning",
    "LedgerWriteError",
]

RECORD_TYPE = "cachescope.call"
SCHEMA = 1


class LedgerError(CachescopeError):
    """A record could not be added to the ledger (the records already in it are untouched)."""


class LedgerWriteError(LedgerError, OSError):
    """The ledger file could not be written.

    Attributes
    ----------
    record:
        The record that was not saved.
    message:
        The SDK `Message` of the call, when the call itself succeeded.
    """

    def __init__(self, text: str, *, record: CallRecord | None = None) -> None:
        super().__init__(text)
        self.record = record
        self.message: Any = record.message if record is not None else None


class LedgerWarning(CachescopeWarning):
    """Something in a ledger file was skipped (a torn or unreadable line)."""


_DAY_PREFIXES: dict[int, str] = {}


def format_time(seconds: float) -> str:
    """Epoch seconds as the ledger's UTC timestamp, e.g. `2026-11-21T23:20:43.123Z`.

    The same string as `datetime.fromtimestamp(seconds, timezone.utc)` formatted to the
    millisecond (microseconds rounded half-even first, as CPython does, then truncated): the
    date comes from datetime once per day (POSIX days are 86,400 s), the time of day by
    arithmetic — `strftime` alone costs tens of µs a call on a busy machine.
    """
    if not (0.0 <= seconds < 253_402_300_800.0):  # NaN, inf, before 1970, after 9999
        return _format_time_slow(seconds)
    fraction, whole = math.modf(seconds)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        micros -= 1_000_000
        whole += 1.0
    day, rest = divmod(int(whole), 86_400)
    prefix = _DAY_PREFIXES.get(day)
    if prefix is None:
        if len(_DAY_PREFIXES) > 4096:
            _DAY_PREFIXES.clear()
        stamp = _dt.datetime.fromtimestamp(day * 86_400, tz=_dt.timezone.utc)
        prefix = _DAY_PREFIXES[day] = stamp.strftime("%Y-%m-%dT")
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    return f"{prefix}{hours:02d}:{minutes:02d}:{secs:02d}.{micros // 1000:03d}Z"


def _format_time_slow(seconds: float) -> str:
    stamp = _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class CallRecord:
    """What one API call used, cost and saved, successful or not.

    Token fields are the server's `usage` (0 for a failed call). Costs are USD, None when the
    model's price is unknown. `blocks` is the request fingerprint in cache order: per position the
    xxh3 `hash` and cumulative `prefix` hash (hex), the prompt `layer`, estimated `tokens`, the
    `breakpoint` TTL (None when unmarked) and, only with `store_text=True`, the `text`. The
    client's records share the entry dicts of unchanged blocks with earlier records: treat them
    as read-only.
    """

    time: str
    model: str
    backend: str = "sim"
    session: str | None = None
    ok: bool = True
    message_id: str | None = None
    request_id: str | None = None
    call: str = "create"
    stream: bool = False
    input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    output_tokens: int = 0
    service_tier: str | None = None
    speed: str | None = None
    inference_geo: str | None = None
    stop_reason: str | None = None
    ttft_ms: float | None = None
    latency_ms: float | None = None
    latency_source: str | None = None
    cost: float | None = None
    cost_without_cache: float | None = None
    savings: float | None = None
    cache_miss_reason: str | None = None
    cache_missed_input_tokens: int | None = None
    previous_message_id: str | None = None
    error_type: str | None = None
    api_error_type: str | None = None
    error_status: int | None = None
    error_message: str | None = None
    retries: int = 0
    prompt_tokens_estimate: int | None = None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    message: Any = field(default=None, compare=False, repr=False)

    @property
    def cache_write_tokens(self) -> int:
        return self.ephemeral_5m_input_tokens + self.ephemeral_1h_input_tokens

    @property
    def prompt_tokens(self) -> int:
        """fresh + written + read: every input token of the call (spec §3.2)."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    @property
    def hit_share(self) -> float | None:
        """Share of the prompt read from cache: read / (fresh + write + read); None with no prompt."""
        return _ratio(self.cache_read_input_tokens, self.prompt_tokens)

    @property
    def timestamp(self) -> float:
        return _dt.datetime.fromisoformat(self.time.replace("Z", "+00:00")).timestamp()

    def to_dict(self) -> dict[str, Any]:
        """The ledger line as a dict (flat keys; see `docs/internal/contracts.md`)."""
        out: dict[str, Any] = {"type": RECORD_TYPE, "schema": SCHEMA}
        for f in _FIELDS:
            if f == "extra":
                continue
            out[f] = getattr(self, f)
        out["hit_share"] = self.hit_share
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    def to_json(self) -> bytes:
        """One JSON line (without the newline). Raises `LedgerError` if it cannot be serialized."""
        try:
            return orjson.dumps(self.to_dict())
        except (TypeError, ValueError) as err:
            raise LedgerError(
                f"The record of this {self.model!r} call could not be serialized to JSON ({err}); "
                "it was not added to the ledger. Records already in the ledger are untouched."
            ) from err

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallRecord:
        """A record from a ledger line; unknown keys go to `extra`, missing ones take defaults."""
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if key in _FIELD_SET and key not in ("extra", "message"):
                known[key] = value
            elif key not in ("type", "schema", "hit_share"):
                extra[key] = value
        known.setdefault("time", format_time(0))
        known.setdefault("model", "")
        return cls(**known, extra=extra)


_FIELDS = tuple(f.name for f in dataclasses.fields(CallRecord) if f.name != "message")
_FIELD_SET = frozenset(_FIELDS)


class Ledger:
    """Every call's record, in memory or in an append-only JSONL file.

    Parameters
    ----------
    path:
        A JSONL file to append to (created when missing; existing records are loaded), or None to
        keep records in memory only.

    Attributes
    ----------
    skipped_lines:
        1-based line numbers of the file that could not be read when it was loaded (a torn last
        line from a killed process, or garbage); each is also reported once with a `LedgerWarning`.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path: str | None = os.fspath(path) if path is not None else None
        self._records: list[CallRecord] = []
        self._lock = threading.Lock()
        self.skipped_lines: list[int] = []
        self._file_lock: Any = None
        if self.path is not None:
            self._file_lock = _interprocess_lock(self.path + ".lock")
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return
        for number, line in enumerate(data.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
                if not isinstance(value, dict):
                    raise ValueError("not a JSON object")
                if value.get("type", RECORD_TYPE) != RECORD_TYPE:
                    continue
                self._records.append(CallRecord.from_dict(value))
            except (ValueError, TypeError):
                self.skipped_lines.append(number)
        if self.skipped_lines:
            torn = " (the last line is torn: a process was probably killed while writing it)"
            last = data.rstrip(b"\n").count(b"\n") + 1
            warnings.warn(
                f"Ledger {self.path}: skipped {len(self.skipped_lines)} unreadable line(s) "
                f"{self.skipped_lines[:10]}{torn if last in self.skipped_lines else ''}; "
                f"loaded {len(self._records)} record(s). The file is left as it is.",
                LedgerWarning,
                stacklevel=3,
            )

    def append(self, record: CallRecord) -> None:
        """Add a record: serialize it, write it to disk (flush + fsync), then keep it in memory.

        Raises `LedgerError` when the record cannot be serialized and `LedgerWriteError` when the
        disk write fails; in both cases nothing already in the ledger is touched.
        """
        line = record.to_json() + b"\n" if self.path is not None else b""
        with self._lock:
            if self.path is not None:
                try:
                    with self._file_lock:
                        self._write(line)
                except OSError as err:
                    raise LedgerWriteError(
                        f"The record of this {record.model!r} call could not be written to "
                        f"{self.path} ({err}); it is not in the ledger. The "
                        f"{len(self._records):,} record(s) already in the ledger are untouched.",
                        record=record,
                    ) from err
            self._records.append(record)

    def _write(self, line: bytes) -> None:
        assert self.path is not None
        created = not os.path.exists(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # never glue a record onto a torn line
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            _sync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(os.path.dirname(os.path.abspath(self.path)))

    @property
    def records(self) -> list[CallRecord]:
        """A copy of the records, oldest first."""
        with self._lock:
            return list(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[CallRecord]:
        return iter(self.records)

    def __getitem__(self, index: int) -> CallRecord:
        return self._records[index]

    def summary(self, session: str | None = None) -> LedgerSummary:
        """Totals over every record (or one session's)."""
        records = self.records
        if session is not None:
            records = [r for r in records if r.session == session]
        return summarize(records)

    def to_pandas(self) -> pd.DataFrame:
        """One row per call, the ledger line's columns, `time` as UTC datetimes."""
        try:
            import pandas as pd
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "Ledger.to_pandas() needs pandas: pip install 'cachescope[notebook]'"
            ) from err
        rows = [record.to_dict() for record in self.records]
        frame: pd.DataFrame = pd.DataFrame(rows)
        if rows:
            frame["time"] = pd.to_datetime(frame["time"], utc=True)
        return frame

    def __repr__(self) -> str:
        where = self.path if self.path is not None else "memory"
        return f"Ledger({where!s}, {len(self):,} records)"


class _FlockLock:
    """An exclusive `flock` on `<ledger>.lock`, the lock `filelock.FileLock` takes on POSIX (so
    the two exclude each other), without its per-acquire bookkeeping (~0.6 ms a call here).

    The lock file stays open between appends; it is reopened in a forked child (which shares
    the parent's open file and so its `flock`) and when the file was unlinked while unlocked.
    Callers serialize threads themselves (`Ledger._lock`).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        self._pid = 0

    def _open(self) -> int:
        if self._fd >= 0:
            if self._pid == os.getpid():
                return self._fd
            # A forked child: the inherited descriptor shares the parent's lock; closing the
            # child's copy leaves the parent's lock alone.
            try:
                os.close(self._fd)
            except OSError:  # pragma: no cover
                pass
        self._fd = -1
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._pid = os.getpid()
        return self._fd

    def _drop(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> _FlockLock:
        while True:
            fd = self._open()
            try:
                _fcntl.flock(fd, _fcntl.LOCK_EX)
                if os.fstat(fd).st_nlink:
                    return self
                _fcntl.flock(fd, _fcntl.LOCK_UN)  # unlinked meanwhile: lock the file by its name
            except BaseException:
                self._drop()
                raise
            self._drop()

    def __exit__(self, *exc: object) -> None:
        try:
            _fcntl.flock(self._fd, _fcntl.LOCK_UN)
        except OSError:  # pragma: no cover - closing releases it too
            self._drop()

    def __del__(self) -> None:
        try:
            self._drop()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]


def _interprocess_lock(path: str) -> Any:
    """The lock that serializes appends across processes: `flock` where there is one, else
    `filelock.FileLock` (Windows)."""
    if _fcntl is not None and hasattr(_fcntl, "flock"):
        return _FlockLock(path)
    from filelock import FileLock  # pragma: no cover - Windows

    return FileLock(path)  # pragma: no cover


# fdatasync persists the appended bytes and the new size without the inode's timestamps.
_sync = getattr(os, "fdatasync", os.fsync)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
