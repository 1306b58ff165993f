"""Reading one transcript or ledger file into columns: the hot path, run in worker processes.

A file is read in 4 MiB blocks, never whole. Python only looks at lines that contain `"usage":{`,
`"compact_boundary"` or `"cachescope.call"`, found with `bytes.find` over the block. A usage line
takes a fast path when its layout is the usual one (flat envelope, `message.model` and `message.id`
before `content`, `usage` closing `message`, one `timestamp`): the envelope strings are cut out by
position and only the small `usage` object goes through orjson. Anything unusual goes through a full
orjson parse, so odd layouts cost time, never correctness. A line that does not end in `}` is broken
(a truncated write) and is reported; so are usage lines with broken JSON or bad counts.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import xxhash

from cachescope.logs._discover import SourceFile

USAGE_MARK = b'"usage":{'
COMPACT_MARK = b'"compact_boundary"'
LEDGER_MARK = b'"cachescope.call"'
BLOCK_SIZE = 1 << 22

TS_KEY = b'"timestamp":"'
MESSAGE_KEY = b'"message":{'
CONTENT_KEY = b'"content":'
MODEL_KEY = b'"model":"'
ID_KEY = b'"id":"'
REQUEST_KEY = b'"requestId":"'
SIDECHAIN_KEY = b'"isSidechain":'
ASSISTANT_KEY = b'"type":"assistant"'
SESSION_KEY = b'"sessionId":"'


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

_hash = xxhash.xxh3_64_intdigest
SYNTHETIC_MODEL = b"<synthetic>"
_SIGN = 1 << 63  # xxh3 digests are unsigned; stored shifted into int64


@dataclass
class FileResult:
    """What one file holds, as columns (one row per usage line, before de-duplication)."""

    source: SourceFile
    size: int
    mtime_ns: int
    lines: int = 0
    usage_lines: int = 0
    synthetic: int = 0
    columns: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    compactions: list[int] = field(default_factory=list)
    malformed: list[tuple[int, str]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.columns["time"]) if self.columns else 0


class BadCount(ValueError):
    pass


class BadStamp(ValueError):
    """A timestamp that no ISO-8601 reading accepts. Raised by `parse_times`; `scan_file` then
    reads the file again carefully, reporting each such line as malformed instead."""


# A string cut out of a line by position is taken as it is only when it holds no escape and no
# control byte (either would make it differ from what a JSON parser reads, or the line invalid).
_ODD_STRING = re.compile(rb"[\x00-\x1f\\]").search


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
    return value


def usage_numbers(usage: dict[str, Any]) -> tuple[int, int, int, int, int]:
    """(fresh, write_5m, write_1h, read, output) of a `usage` object; raises BadCount."""
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


def parse_times(stamps: list[bytes]) -> np.ndarray[Any, Any]:
    """ISO-8601 stamps (UTC, `Z` or offset) to int64 milliseconds since the epoch.

    Raises `BadStamp` naming the first stamp that is not a date and time.
    """
    if not stamps:
        return np.zeros(0, dtype=np.int64)
    try:
        return _numpy_times(stamps)
    except ValueError:
        out = np.empty(len(stamps), dtype=np.int64)
        for i, t in enumerate(stamps):
            ms = stamp_ms(t)
            if ms is None:
                raise BadStamp(f"bad timestamp {t.decode('utf-8', 'replace')!r}") from None
            out[i] = ms
        return out


def _numpy_times(stamps: list[bytes]) -> np.ndarray[Any, Any]:
    """`parse_times`'s vectorised path (element by element; ValueError when any stamp fails)."""
    if max(map(len, stamps)) > 31:  # would be cut to fit U32 below, and might then parse
        raise ValueError("a stamp too long for the vectorised path")
    trimmed = np.array([t[:-1] if t.endswith(b"Z") else t + b"!" for t in stamps])
    with warnings.catch_warnings():
        # A stamp with an offset is converted to UTC correctly; numpy only warns that it is
        # deprecated, which would reach the user once per odd file.
        warnings.filterwarnings("ignore", "no explicit representation of timezones")
        return trimmed.astype("U32").astype("datetime64[ms]").astype(np.int64)


def format_times(ms: np.ndarray[Any, Any]) -> list[bytes]:
    """int64 milliseconds to `YYYY-MM-DDTHH:MM:SS.sssZ` (the inverse of `parse_times` on that form)."""
    text = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
    return [t.encode() + b"Z" for t in text.tolist()]


def stamp_ms(stamp: bytes) -> int | None:
    """One ISO-8601 stamp to milliseconds since the epoch (no zone: UTC), or None when it is not
    one. This is the definition `parse_times` follows; its vectorised path is only faster."""
    try:
        text = stamp.decode("utf-8")
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        moment = _dt.datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_dt.timezone.utc)
        return int(moment.timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        return None


class _Scanner:
    def __init__(self, source: SourceFile, careful: bool = False) -> None:
        self.source = source
        # Careful: every usage line through the per-line paths, which check each timestamp as
        # they read it (a second reading, after `parse_times` met a bad stamp in this file).
        self.careful = careful
        self.want_session = not source.session
        self.found_session = ""
        self.malformed: list[tuple[int, str]] = []
        self.bad_lines: set[int] = set()
        self.compactions: list[bytes] = []
        self.synthetic = 0
        self.usage_lines = 0
        self.models: dict[bytes, int] = {}
        self.sessions: dict[str, int] = {"": 0}
        # one list per column (COLUMNS order), one item per row, rows in file order
        self.cols: tuple[list[Any], ...] = tuple([] for _ in COLUMNS)

    # -- one block of complete lines: buf[0:end], first line numbered line_base -----------------
    def scan(self, buf: bytes, end: int, line_base: int) -> int:
        """Read the complete lines `buf[0:end]`; returns how many there are."""
        raw = np.frombuffer(buf, dtype=np.uint8, count=end)
        newlines = np.flatnonzero(raw == 10)
        if not (raw[newlines - 1] == 125).all():  # a line that does not end in `}` (or is empty)
            self._check_line_ends(buf, end, line_base)
        if self.want_session and not self.found_session:
            at = buf.find(SESSION_KEY, 0, end)
            if at != -1:
                self.found_session = buf[at + 13 : buf.find(b'"', at + 13)].decode(
                    "utf-8", "replace"
                )
        self._usage_block(buf, end, line_base)
        if buf.find(COMPACT_MARK, 0, end) != -1:
            self._find_lines(buf, end, line_base, COMPACT_MARK, self._compact_line)
        if buf.find(LEDGER_MARK, 0, end) != -1:
            self._find_lines(buf, end, line_base, LEDGER_MARK, self._ledger_line)
        return len(newlines)

    def _find_lines(self, buf: bytes, end: int, line_base: int, mark: bytes, handle: Any) -> None:
        find, count = buf.find, buf.count
        pos = find(mark, 0, end)
        last_start, last_line = 0, line_base
        while pos != -1:
            start = buf.rfind(b"\n", 0, pos) + 1
            stop = find(b"\n", pos, end)
            last_line += count(b"\n", last_start, start)
            last_start = start
            if last_line not in self.bad_lines:
                handle(buf, start, stop, pos, last_line)
            pos = find(mark, stop, end)

    def _check_line_ends(self, buf: bytes, end: int, line_base: int) -> None:
        for offset, line in enumerate(buf[:end].split(b"\n")[:-1]):
            line = line.rstrip(b"\r")
            if line and not line.endswith(b"}"):
                number = line_base + offset
                self.bad_lines.add(number)
                self.malformed.append((number, "broken JSON: the line is cut off"))

    def _add(
        self,
        stamp: bytes,
        numbers: tuple[int, int, int, int, int],
        model: bytes,
        session: int,
        flags: int,
        key: int,
        message: int,
    ) -> None:
        """One row (the per-line paths; `_usage_block` inlines this)."""
        self.usage_lines += 1
        if model == SYNTHETIC_MODEL:
            self.synthetic += 1
            return
        code = self.models.get(model)
        if code is None:
            code = self.models[model] = len(self.models)
        row = (stamp, *numbers, code, session, flags, key - _SIGN, message - _SIGN)
        for col, value in zip(self.cols, row):
            col.append(value)

    # -- usage lines ---------------------------------------------------------------------------------
    def _usage_block(self, buf: bytes, end: int, line_base: int, begin: int = 0) -> None:
        """Every line of `buf[begin:end]` holding `"usage":{`, in file order (`begin` starts line
        `line_base`).

        The usual line is read with one orjson parse of the line without its `content` (the bulk of
        its bytes): the bytes from `"content":` up to `"usage":{` are cut out, which leaves valid
        JSON only when both sit at the same depth of the same object — otherwise the parse fails and
        the line takes the per-line path (`_usage_line`, then a full parse), as does any line this
        loop does not take as it is (bad counts, `<synthetic>`, missing fields...). Rows are
        appended to the column lists directly; line numbers, needed only on the per-line path, are
        counted incrementally.
        """
        find, rfind, loads = buf.find, buf.rfind, orjson.loads
        models, hash_ = self.models, _hash
        (c_time, c_fresh, c_w5, c_w1, c_read, c_output, c_model, c_session, c_flags, c_key,
         c_message) = (col.append for col in self.cols)  # fmt: skip
        sign = _SIGN
        counted, counted_line = begin, line_base
        taken = 0
        fast = not self.careful
        pos = find(USAGE_MARK, begin, end)
        while pos != -1:
            stop = find(b"\n", pos, end)
            start = rfind(b"\n", 0, pos) + 1
            e = stop - 1 if buf[stop - 1] == 13 else stop
            m = find(MESSAGE_KEY, start, pos)
            if fast and buf[e - 1] == 125 and m != -1:
                c = find(CONTENT_KEY, m, pos)
                try:
                    record = loads(buf[start:c] + buf[pos:e] if c != -1 else buf[start:e])
                except orjson.JSONDecodeError:
                    record = None
                message = record.get("message") if type(record) is dict else None
                usage = message.get("usage") if type(message) is dict else None
                if type(usage) is dict:
                    get = usage.get
                    fresh = get("input_tokens")
                    output = get("output_tokens")
                    read = get("cache_read_input_tokens", 0)
                    creation = get("cache_creation_input_tokens", 0)
                    breakdown = get("cache_creation")
                    if type(breakdown) is dict and (
                        "ephemeral_5m_input_tokens" in breakdown
                        or "ephemeral_1h_input_tokens" in breakdown
                    ):
                        w5 = breakdown.get("ephemeral_5m_input_tokens", 0)
                        w1 = breakdown.get("ephemeral_1h_input_tokens", 0)
                    else:
                        w5, w1 = creation, 0
                    rget = record.get
                    stamp = rget("timestamp")
                    model = message.get("model")  # type: ignore[union-attr]
                    message_id = message.get("id")  # type: ignore[union-attr]
                    if (
                        type(fresh) is int
                        and type(output) is int
                        and type(read) is int
                        and type(w5) is int
                        and type(w1) is int
                        and type(creation) is int
                        and fresh >= 0
                        and output >= 0
                        and read >= 0
                        and w5 >= 0
                        and w1 >= 0
                        and type(stamp) is str
                        and type(model) is str
                        and type(message_id) is str
                        and model != "<synthetic>"
                    ):
                        flags = FLAG_SIDECHAIN if rget("isSidechain") is True else 0
                        speed = get("speed")
                        if speed is not None:
                            flags |= (
                                (FLAG_HAS_SPEED | FLAG_FAST) if speed == "fast" else FLAG_HAS_SPEED
                            )
                        model_bytes = model.encode()
                        code = models.get(model_bytes)
                        if code is None:
                            code = models[model_bytes] = len(models)
                        mid = message_id.encode()
                        msg_hash = hash_(mid)
                        request = rget("requestId")
                        c_time(stamp.encode())
                        c_fresh(fresh)
                        c_w5(w5)
                        c_w1(w1)
                        c_read(read)
                        c_output(output)
                        c_model(code)
                        c_session(0)
                        c_flags(flags)
                        c_key(
                            (
                                hash_(mid + b"\x00" + request.encode())
                                if type(request) is str
                                else msg_hash
                            )
                            - sign
                        )
                        c_message(msg_hash - sign)
                        taken += 1
                        pos = find(USAGE_MARK, stop, end)
                        continue
            # anything else: the per-line path, with its line number
            counted_line += buf.count(b"\n", counted, start)
            counted = start
            if counted_line not in self.bad_lines:
                self._usage_line(buf, start, stop, pos, counted_line)
            pos = find(USAGE_MARK, stop, end)
        self.usage_lines += taken

    def _usage_line(self, buf: bytes, start: int, stop: int, pos: int, line_no: int) -> None:
        # Positions: start [envelope] m "message":{ [model, id] c "content": ... pos "usage":{...}
        # u_end }} [tail: requestId, type, timestamp] end. Every check failing -> full parse.
        find = buf.find
        end = stop - 1 if buf[stop - 1] == 13 else stop
        if buf[end - 1] != 125:  # no closing brace: reported by _check_line_ends
            return
        m = find(MESSAGE_KEY, start, pos)
        if buf[start] != 123 or m == -1 or find(b"{", start + 1, m) != -1:
            return self._full_line(buf, start, end, line_no)
        c = find(CONTENT_KEY, m, pos)
        if c == -1:
            c = pos
        mo = find(MODEL_KEY, m, c)
        i = find(ID_KEY, m, c)
        # usage is the last key of message: it ends right before the message's closing brace
        u_end = find(b'}},"', pos, end) + 1
        if (
            mo == -1
            or i == -1
            or u_end == 0
            or find(b"{", m + 11, c) != -1
            or find(USAGE_MARK, u_end, end) != -1
        ):
            return self._full_line(buf, start, end, line_no)
        t = find(TS_KEY, u_end, end)
        if t == -1 or find(ASSISTANT_KEY, u_end, end) == -1:
            return self._full_line(buf, start, end, line_no)
        try:
            usage = orjson.loads(buf[pos + 8 : u_end])
        except orjson.JSONDecodeError:
            return self._full_line(buf, start, end, line_no)
        get = usage.get
        fresh = get("input_tokens")
        output = get("output_tokens")
        read = get("cache_read_input_tokens", 0)
        breakdown = get("cache_creation")
        if type(breakdown) is dict and (
            "ephemeral_5m_input_tokens" in breakdown or "ephemeral_1h_input_tokens" in breakdown
        ):
            w5 = breakdown.get("ephemeral_5m_input_tokens", 0)
            w1 = breakdown.get("ephemeral_1h_input_tokens", 0)
        else:
            w5, w1 = get("cache_creation_input_tokens", 0), 0
        if not (
            type(fresh) is int
            and type(output) is int
            and type(read) is int
            and type(w5) is int
            and type(w1) is int
            and fresh >= 0
            and output >= 0
            and read >= 0
            and w5 >= 0
            and w1 >= 0
            and type(get("cache_creation_input_tokens", 0)) is int
        ):
            try:
                fresh, w5, w1, read, output = usage_numbers(usage)
            except BadCount as bad:
                self.malformed.append((line_no, str(bad)))
                return
        flags = 0
        sc = find(SIDECHAIN_KEY, start, m)
        if sc != -1 and buf[sc + 14] == 116:  # t(rue)
            flags = FLAG_SIDECHAIN
        speed = get("speed")
        if speed is not None:
            flags |= (FLAG_HAS_SPEED | FLAG_FAST) if speed == "fast" else FLAG_HAS_SPEED
        # the strings, each cut out up to its closing quote, which must lie within the line
        r = find(REQUEST_KEY, u_end, end)
        if r == -1:
            r = find(REQUEST_KEY, start, m)
        i_end = find(b'"', i + 6, c)
        mo_end = find(b'"', mo + 9, c)
        t_end = find(b'"', t + 13, end)
        r_end = find(b'"', r + 13, end) if r != -1 else 0
        if i_end == -1 or mo_end == -1 or t_end == -1 or r_end == -1:
            return self._full_line(buf, start, end, line_no)
        message_id = buf[i + 6 : i_end]
        model = buf[mo + 9 : mo_end]
        stamp = buf[t + 13 : t_end]
        request = buf[r + 13 : r_end] if r != -1 else None
        if (
            _ODD_STRING(message_id)
            or _ODD_STRING(model)
            or _ODD_STRING(stamp)
            or (request is not None and _ODD_STRING(request))
            or (self.careful and stamp_ms(stamp) is None)
        ):
            return self._full_line(buf, start, end, line_no)
        message = _hash(message_id)
        self._add(
            stamp,
            (fresh, w5, w1, read, output),
            model,
            0,
            flags,
            _hash(message_id + b"\x00" + request) if request is not None else message,
            message,
        )

    def _full_line(self, buf: bytes, start: int, end: int, line_no: int) -> None:
        try:
            record = orjson.loads(buf[start:end])
        except orjson.JSONDecodeError:
            self.malformed.append((line_no, "broken JSON"))
            return
        if not isinstance(record, dict):
            self.malformed.append((line_no, "not a JSON object"))
            return
        message = record.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("usage"), dict):
            return  # no top-level message.usage: not an API response (a tool result, progress, ...)
        try:
            numbers = usage_numbers(message["usage"])
        except BadCount as bad:
            self.malformed.append((line_no, str(bad)))
            return
        stamp = record.get("timestamp")
        if not isinstance(stamp, str):
            self.malformed.append((line_no, "missing timestamp"))
            return
        if self.careful and stamp_ms(stamp.encode()) is None:
            self.malformed.append((line_no, f"bad timestamp {stamp!r}"))
            return
        flags = FLAG_SIDECHAIN if record.get("isSidechain") is True else 0
        speed = message["usage"].get("speed")
        if speed is not None:
            flags |= FLAG_HAS_SPEED | (FLAG_FAST if speed == "fast" else 0)
        model = message.get("model")
        message_id = message.get("id")
        request = record.get("requestId")
        if isinstance(message_id, str):
            mid = message_id.encode()
            key = (
                _hash(mid + b"\x00" + request.encode()) if isinstance(request, str) else _hash(mid)
            )
            msg = _hash(mid)
        else:  # nothing to de-duplicate by: the line is its own response
            key = msg = _hash(f"{self.source.path}\x00{line_no}".encode())
        self._add(
            stamp.encode(),
            numbers,
            model.encode() if isinstance(model, str) else b"unknown",
            0,
            flags,
            key,
            msg,
        )

    # -- compactions and ledgers -------------------------------------------------------------------
    def _compact_line(self, buf: bytes, start: int, stop: int, pos: int, line_no: int) -> None:
        try:
            record = orjson.loads(buf[start:stop])
        except orjson.JSONDecodeError:
            return  # reported by the line-end check or the usage path
        if isinstance(record, dict) and record.get("subtype") == "compact_boundary":
            stamp = record.get("timestamp")
            if not isinstance(stamp, str) or (self.careful and stamp_ms(stamp.encode()) is None):
                self.malformed.append((line_no, f"compaction with a bad timestamp {stamp!r}"))
            else:
                self.compactions.append(stamp.encode())

    def _ledger_line(self, buf: bytes, start: int, stop: int, pos: int, line_no: int) -> None:
        try:
            record = orjson.loads(buf[start:stop])
        except orjson.JSONDecodeError:
            self.malformed.append((line_no, "broken JSON"))
            return
        if not isinstance(record, dict) or record.get("type") != "cachescope.call":
            return
        try:
            numbers = usage_numbers(record)
        except BadCount as bad:
            self.malformed.append((line_no, str(bad)))
            return
        stamp = record.get("time")
        if not isinstance(stamp, str):
            self.malformed.append((line_no, "missing time"))
            return
        if self.careful and stamp_ms(stamp.encode()) is None:
            self.malformed.append((line_no, f"bad time {stamp!r}"))
            return
        session_name = record.get("session")
        session = 0
        if isinstance(session_name, str) and session_name:
            session = self.sessions.setdefault(session_name, len(self.sessions))
        message_id = record.get("message_id")
        if isinstance(message_id, str) and message_id:
            key = msg = _hash(message_id.encode())
        else:
            key = msg = _hash(f"{self.source.path}\x00{line_no}".encode())
        model = record.get("model")
        self._add(
            stamp.encode(),
            numbers,
            model.encode() if isinstance(model, str) else b"unknown",
            session,
            FLAG_LEDGER,
            key,
            msg,
        )

    def result(self, size: int, mtime_ns: int, lines: int) -> FileResult:
        source = self.source
        if self.want_session and self.found_session:
            source = SourceFile(source.path, source.project, self.found_session, source.agent)
        columns = {"time": parse_times(self.cols[0])}
        for name, col in zip(COLUMNS[1:], self.cols[1:]):
            columns[name] = np.array(col, dtype=COLUMN_TYPES.get(name, np.int64))
        model_names = list(self.models)
        return FileResult(
            source=source,
            size=size,
            mtime_ns=mtime_ns,
            lines=lines,
            usage_lines=self.usage_lines,
            synthetic=self.synthetic,
            columns=columns,
            models=[m.decode("utf-8", "replace") for m in model_names],
            sessions=list(self.sessions),
            compactions=parse_times(self.compactions).tolist() if self.compactions else [],
            malformed=sorted(self.malformed),
        )


def scan_file(source: SourceFile) -> FileResult:
    """Read one file into columns. Errors reading the file itself (gone, unreadable) propagate.

    Timestamps are checked in bulk at the end; when one is not a date, the file is read again
    carefully (pure path, each stamp checked on its line) so the line is reported as malformed
    and every other row kept.
    """
    info = os.stat(source.path)
    try:
        return _scan_file(source, info)
    except BadStamp:
        return _scan_file(source, info, careful=True)


def _scan_file(source: SourceFile, info: os.stat_result, careful: bool = False) -> FileResult:
    scanner = _Scanner(source, careful=careful)
    pending: list[bytes] = []
    line_base = 1
    with open(source.path, "rb", buffering=0) as fh:
        while True:
            block = fh.read(BLOCK_SIZE)
            if not block:
                break
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                pending.append(block)
                continue
            if pending:
                pending.append(block)
                block = b"".join(pending)
                cut = block.rfind(b"\n") + 1
                pending = []
            line_base += scanner.scan(block, cut, line_base)
            if cut < len(block):
                pending.append(block[cut:])
    tail = b"".join(pending)
    if tail.strip():
        scanner.scan(tail + b"\n", len(tail) + 1, line_base)
        line_base += 1
    return scanner.result(info.st_size, info.st_mtime_ns, line_base - 1)


def scan_many(sources: list[SourceFile]) -> Any:
    """`scan_file` over a batch (one task for a worker process), as one `_cache.Batch`.

    One set of concatenated columns per task instead of one per file: far less to pickle.
    """
    from cachescope.logs._cache import Batch

    return Batch.from_results([scan_file(source) for source in sources])
