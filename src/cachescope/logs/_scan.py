"""Reading one transcript or ledger file into columns (run in worker processes).

Every line is parsed as JSON by msgspec, and none is skipped unread: a line that is not JSON is
reported as malformed, with its file and line number. Each line is decoded into a `Record`, a typed
struct that declares only the fields counting needs (msgspec still parses and checks the rest of
the line, then drops it). Its types describe a line in its usual form, so a negative or
non-integer count, a timestamp that is not an RFC 3339 date and time, or a field of an unexpected
type fails the decode; such lines, and the rare kinds the loop does not take itself (ledger lines,
compactions, responses without an id...), go to `_plain`, which reads the line as plain JSON and
either takes it or reports what is wrong with it.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
import numpy as np
import xxhash

from cachescope.logs._discover import SourceFile

BLOCK_SIZE = 1 << 22

FLAG_SIDECHAIN = 1
FLAG_FAST = 2
FLAG_HAS_SPEED = 4
FLAG_LEDGER = 8

COLUMNS = (
    "time",
    "fresh",
    "write_5m",
    "write_1h",
    "read",
    "output",
    "model",
    "session",
    "flags",
    "key",
    "message",
)
COLUMN_TYPES: dict[str, Any] = {"model": np.int32, "session": np.int32, "flags": np.uint8}

SYNTHETIC_MODEL = "<synthetic>"
LEDGER_TYPE = "cachescope.call"
COMPACTION = "compact_boundary"
_hash = xxhash.xxh3_64_intdigest
_SIGN = 1 << 63  # xxh3 digests are unsigned; stored shifted into int64
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_MS = _dt.timedelta(milliseconds=1)

# -- the usual form of a line, as msgspec checks it ------------------------------------------------
# A count above MAX_COUNT (a trillion tokens in one response) is not a real one, and would not fit
# the int64 sums of a corpus.
MAX_COUNT = 1 << 40
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]


class CacheCreation(msgspec.Struct, gc=False):
    # UNSET tells a missing key from `null`: either key present means the breakdown is used.
    ephemeral_5m_input_tokens: Count | msgspec.UnsetType | None = msgspec.UNSET
    ephemeral_1h_input_tokens: Count | msgspec.UnsetType | None = msgspec.UNSET


class Usage(msgspec.Struct, gc=False):
    input_tokens: Count
    output_tokens: Count
    cache_creation_input_tokens: Count | None = None
    cache_read_input_tokens: Count | None = None
    cache_creation: CacheCreation | None = None
    speed: str | None = None


class Message(msgspec.Struct, gc=False):
    id: str | None = None
    model: str | None = None
    usage: Usage | None = None


class Record(
    msgspec.Struct,
    gc=False,
    rename={"is_sidechain": "isSidechain", "request_id": "requestId", "session_id": "sessionId"},
):
    type: str | None = None
    subtype: str | None = None
    timestamp: _dt.datetime | None = None
    is_sidechain: bool | None = None
    request_id: str | None = None
    session_id: str | None = None
    message: Message | None = None


_decoder = msgspec.json.Decoder(Record)

Row = tuple[int, int, int, int, int, int, int, int, int, int, int]  # one value per column


@dataclass
class FileResult:
    """What one file holds besides its rows (which are in its batch's columns)."""

    source: SourceFile
    size: int
    mtime_ns: int
    lines: int = 0
    usage_lines: int = 0
    synthetic: int = 0
    duplicates: int = 0  # lines dropped for a better line of the same response in this file
    models: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    compactions: list[int] = field(default_factory=list)
    malformed: list[tuple[int, str]] = field(default_factory=list)


class BadCount(ValueError):
    pass


def _count(usage: dict[str, Any], name: str, required: bool = False) -> int:
    value = usage.get(name)
    if value is None:
        if required:
            raise BadCount(f"missing {name}")
        return 0
    if type(value) is not int:
        raise BadCount(f"non-integer {name} ({value!r})")
    if value < 0:
        raise BadCount(f"negative {name} ({value})")
    if value > MAX_COUNT:
        raise BadCount(f"implausible {name} ({value})")
    return value


def usage_numbers(usage: dict[str, Any]) -> tuple[int, int, int, int, int]:
    """(fresh, write_5m, write_1h, read, output) of a plain `usage` object; raises BadCount."""
    fresh = _count(usage, "input_tokens", required=True)
    output = _count(usage, "output_tokens", required=True)
    read = _count(usage, "cache_read_input_tokens")
    creation = _count(usage, "cache_creation_input_tokens")
    breakdown = usage.get("cache_creation")
    if isinstance(breakdown, dict) and (
        "ephemeral_5m_input_tokens" in breakdown or "ephemeral_1h_input_tokens" in breakdown
    ):
        write_5m = _count(breakdown, "ephemeral_5m_input_tokens")
        write_1h = _count(breakdown, "ephemeral_1h_input_tokens")
    else:
        write_5m, write_1h = creation, 0
    return fresh, write_5m, write_1h, read, output


def stamp_ms(stamp: str) -> int | None:
    """An ISO-8601 stamp to milliseconds since the epoch (no zone: UTC), or None when it is not one."""
    try:
        moment = _dt.datetime.fromisoformat(stamp[:-1] + "+00:00" if stamp.endswith("Z") else stamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return (moment - _EPOCH) // _MS


def _speed_flags(speed: object) -> int:
    if speed is None:
        return 0
    return FLAG_HAS_SPEED | FLAG_FAST if speed == "fast" else FLAG_HAS_SPEED


class _Scanner:
    """One file's rows, model and session names, compactions and malformed lines, in file order."""

    def __init__(self, source: SourceFile, rows: list[Row]) -> None:
        self.path = source.path
        self.session = source.session  # found in the file when its name does not give it
        self.malformed: list[tuple[int, str]] = []
        self.compactions: list[int] = []
        self.synthetic = 0
        self.models: dict[str, int] = {}
        self.sessions: dict[str, int] = {"": 0}
        self.rows = rows  # shared by the files of a batch; this file's start at first_row
        self.first_row = len(rows)

    def block(self, buf: bytes, line_base: int) -> int:
        """Read the complete lines of `buf` (which ends in a newline), the first numbered
        `line_base`; returns how many lines there are."""
        lines = buf.split(b"\n")
        decode, plain, rows, models = _decoder.decode, self._plain, self.rows, self.models
        hash_, sign, epoch, ms, unset = _hash, _SIGN, _EPOCH, _MS, msgspec.UNSET
        for line_no, line in enumerate(lines, line_base):
            try:
                record = decode(line)
            except msgspec.ValidationError:  # JSON, but not in the usual form
                plain(line, line_no)
                continue
            except msgspec.DecodeError:
                if line.strip():
                    cut_off = not line.rstrip().endswith(b"}")
                    reason = "broken JSON: the line is cut off" if cut_off else "broken JSON"
                    self.malformed.append((line_no, reason))
                continue  # (an empty line is no record)
            message = record.message
            if message is None or message.usage is None:  # not an API response: a prompt, a
                # tool result, a snapshot... unless it is a ledger line or a compaction
                if record.type == LEDGER_TYPE or record.subtype is not None:
                    plain(line, line_no)
                elif not self.session and record.session_id:
                    self.session = record.session_id
                continue
            usage = message.usage
            stamp, model, message_id = record.timestamp, message.model, message.id
            if (
                stamp is None
                or model is None
                or message_id is None
                or model == SYNTHETIC_MODEL
                or stamp.tzinfo is None  # no zone: `_plain` reads it as UTC
                or record.type == LEDGER_TYPE
                or record.subtype is not None
                or not self.session
            ):
                plain(line, line_no)  # rare lines: one reading for all their cases
                continue
            breakdown = usage.cache_creation
            if breakdown is not None and (
                breakdown.ephemeral_5m_input_tokens is not unset
                or breakdown.ephemeral_1h_input_tokens is not unset
            ):
                write_5m = breakdown.ephemeral_5m_input_tokens or 0
                write_1h = breakdown.ephemeral_1h_input_tokens or 0
            else:
                write_5m, write_1h = usage.cache_creation_input_tokens or 0, 0
            flags = FLAG_SIDECHAIN if record.is_sidechain else 0
            if usage.speed is not None:
                flags |= _speed_flags(usage.speed)
            code = models.get(model)
            if code is None:
                code = models[model] = len(models)
            mid = message_id.encode()
            message_key = hash_(mid)
            request = record.request_id
            key = hash_(request.encode(), message_key) if request is not None else message_key
            rows.append(
                (
                    (stamp - epoch) // ms,
                    usage.input_tokens,
                    write_5m,
                    write_1h,
                    usage.cache_read_input_tokens or 0,
                    usage.output_tokens,
                    code,
                    0,
                    flags,
                    key - sign,
                    message_key - sign,
                )
            )
        return len(lines) - 1

    # -- a line as plain JSON: what the structs cannot hold -----------------------------------------
    def _plain(self, line: bytes, line_no: int) -> None:
        try:
            record = msgspec.json.decode(line)
        except msgspec.DecodeError:  # only where the typed decode stopped before the syntax error
            self.malformed.append((line_no, "broken JSON"))
            return
        if not isinstance(record, dict):
            self.malformed.append((line_no, "not a JSON object"))
            return
        session = record.get("sessionId")
        if not self.session and isinstance(session, str) and session:
            self.session = session
        if record.get("type") == LEDGER_TYPE:
            self._ledger(record, line_no)
            return
        if record.get("subtype") == COMPACTION:
            stamp = record.get("timestamp")
            when = stamp_ms(stamp) if isinstance(stamp, str) else None
            if when is None:
                self.malformed.append((line_no, f"compaction with a bad timestamp {stamp!r}"))
            else:
                self.compactions.append(when)
        message = record.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("usage"), dict):
            return  # no top-level message.usage: not an API response
        try:
            numbers = usage_numbers(message["usage"])
        except BadCount as bad:
            self.malformed.append((line_no, str(bad)))
            return
        stamp = record.get("timestamp")
        if not isinstance(stamp, str):
            self.malformed.append((line_no, "missing timestamp"))
            return
        when = stamp_ms(stamp)
        if when is None:
            self.malformed.append((line_no, f"bad timestamp {stamp!r}"))
            return
        flags = FLAG_SIDECHAIN if record.get("isSidechain") is True else 0
        flags |= _speed_flags(message["usage"].get("speed"))
        message_id = message.get("id")
        request = record.get("requestId")
        if isinstance(message_id, str):
            mid = message_id.encode()
            msg = _hash(mid)
            key = _hash(request.encode(), msg) if isinstance(request, str) else msg
        else:  # nothing to de-duplicate by: the line is its own response
            key = msg = self._line_key(line_no)
        self._add(when, numbers, message.get("model"), 0, flags, key, msg)

    def _ledger(self, record: dict[str, Any], line_no: int) -> None:
        try:
            numbers = usage_numbers(record)
        except BadCount as bad:
            self.malformed.append((line_no, str(bad)))
            return
        stamp = record.get("time")
        if not isinstance(stamp, str):
            self.malformed.append((line_no, "missing time"))
            return
        when = stamp_ms(stamp)
        if when is None:
            self.malformed.append((line_no, f"bad time {stamp!r}"))
            return
        name = record.get("session")
        session = 0
        if isinstance(name, str) and name:
            session = self.sessions.setdefault(name, len(self.sessions))
        message_id = record.get("message_id")
        if isinstance(message_id, str) and message_id:
            key = _hash(message_id.encode())
        else:
            key = self._line_key(line_no)
        self._add(when, numbers, record.get("model"), session, FLAG_LEDGER, key, key)

    def _line_key(self, line_no: int) -> int:
        return _hash(f"{self.path}\x00{line_no}".encode("utf-8", "surrogateescape"))

    def _add(
        self,
        when: int,
        numbers: tuple[int, int, int, int, int],
        model: object,
        session: int,
        flags: int,
        key: int,
        message: int,
    ) -> None:
        name = model if isinstance(model, str) else "unknown"
        if name == SYNTHETIC_MODEL:
            self.synthetic += 1
            return
        code = self.models.setdefault(name, len(self.models))
        self.rows.append((when, *numbers, code, session, flags, key - _SIGN, message - _SIGN))

    def result(self, source: SourceFile, size: int, mtime_ns: int, lines: int) -> FileResult:
        """What the file held, without its rows (they are in the shared row list)."""
        if self.session and not source.session:
            source = SourceFile(source.path, source.project, self.session, source.agent)
        return FileResult(
            source=source,
            size=size,
            mtime_ns=mtime_ns,
            lines=lines,
            usage_lines=len(self.rows) - self.first_row + self.synthetic,
            synthetic=self.synthetic,
            models=list(self.models),
            sessions=list(self.sessions),
            compactions=self.compactions,
            malformed=sorted(self.malformed),
        )


def _read(source: SourceFile, rows: list[Row]) -> FileResult:
    """Read one file, appending its rows to `rows`. Errors reading the file itself (gone,
    unreadable) propagate."""
    scanner = _Scanner(source, rows)
    line_base = 1
    pending = b""
    with open(source.path, "rb", buffering=0) as fh:
        info = os.fstat(fh.fileno())
        # a small file in one read of its size (+1: a file still being written may have grown)
        chunk = BLOCK_SIZE if info.st_size >= BLOCK_SIZE else info.st_size + 1
        while block := fh.read(chunk):
            if pending:
                block = pending + block
            cut = block.rfind(b"\n") + 1
            pending = block[cut:]
            if cut:
                line_base += scanner.block(block if cut == len(block) else block[:cut], line_base)
    if pending.strip():  # a last line without its newline
        line_base += scanner.block(pending + b"\n", line_base)
    return scanner.result(source, info.st_size, info.st_mtime_ns, line_base - 1)


def _columns(rows: list[Row]) -> dict[str, np.ndarray[Any, Any]]:
    table = np.fromiter(
        itertools.chain.from_iterable(rows), dtype=np.int64, count=len(rows) * len(COLUMNS)
    ).reshape(len(rows), len(COLUMNS))
    return {
        name: np.ascontiguousarray(table[:, j], dtype=COLUMN_TYPES.get(name, np.int64))
        for j, name in enumerate(COLUMNS)
    }


def scan_many(sources: list[SourceFile]) -> Any:
    """Read the files of a batch (one task for a worker process), as one `_cache.Batch`: one
    set of columns for all its files, far less to build and to pickle than one per file. Each
    file keeps one line per response key (the first step of de-duplication, `_dedup`)."""
    from cachescope.logs._cache import Batch
    from cachescope.logs._dedup import best_lines

    rows: list[Row] = []
    files = []
    counts = np.zeros(len(sources), dtype=np.int64)
    for i, source in enumerate(sources):
        before = len(rows)
        files.append(_read(source, rows))
        counts[i] = len(rows) - before
    columns = _columns(rows)
    file_of = np.repeat(np.arange(len(files)), counts)
    keep = best_lines(columns, within=file_of)
    if len(keep) < len(rows):
        columns = {name: column[keep] for name, column in columns.items()}
        kept = np.bincount(file_of[keep], minlength=len(files))
        for result, before, after in zip(files, counts.tolist(), kept.tolist()):
            result.duplicates = before - after
        counts = kept
    offsets = np.zeros(len(sources) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Batch(files, columns, offsets)
