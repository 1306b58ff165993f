"""The compiled transcript scanner (`cachescope._native.logscan`) against its pure-Python twin.

Every test compares the two paths of `_scan.scan_file` (or of `load`) on the same bytes: the
compiled one may hand any line back to Python, but whatever it decides itself must be exactly
what the pure path decides — rows, their order, model codes, times, counts and malformed lines.
"""

from __future__ import annotations

import datetime as _dt
import random
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachescope.logs import _load, _scan, load, synthetic
from cachescope.logs._discover import SourceFile, find_files

native = _scan._logscan()
needs_native = pytest.mark.skipif(native is None, reason="no compiled accelerators")


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def assert_same(pure: _scan.FileResult, fast: _scan.FileResult) -> None:
    for name in (
        "source",
        "size",
        "mtime_ns",
        "lines",
        "usage_lines",
        "synthetic",
        "models",
        "sessions",
        "compactions",
        "malformed",
    ):
        assert getattr(fast, name) == getattr(pure, name), name
    assert list(fast.columns) == list(pure.columns)
    for name, column in pure.columns.items():
        other = fast.columns[name]
        assert other.dtype == column.dtype, name
        assert np.array_equal(other, column), name


def both(
    path: Path, source: SourceFile | None = None
) -> tuple[_scan.FileResult, _scan.FileResult] | None:
    """Both paths' results, or None when both raise the same exception."""
    source = source or SourceFile(str(path), "proj", "", "")
    try:
        pure = _scan.scan_file(source, pure=True)
    except Exception as error:  # the compiled path must fail the same way
        with pytest.raises(type(error)) as raised:
            _scan.scan_file(source)
        assert str(raised.value) == str(error)
        return None
    return pure, _scan.scan_file(source)


def scan_both(path: Path, source: SourceFile | None = None) -> _scan.FileResult:
    """The compiled path's result after checking it equals the pure one (which must not raise)."""
    results = both(path, source)
    assert results is not None
    assert_same(*results)
    return results[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    synthetic.write_corpus(folder, sessions=40, seed=23, padding=200)
    return folder


@needs_native
def test_the_logscan_module_is_built_and_fresh() -> None:
    import cachescope._native as natives

    assert natives.source_hash("logscan") == native.SOURCE_HASH
    assert _scan.ROW_DTYPE.itemsize == native.ROW_SIZE


@needs_native
def test_every_corpus_file_scans_identically(corpus: Path) -> None:
    sources = find_files([str(corpus)])
    assert len(sources) > 40
    taken = odd = 0
    for source in sources:
        taken += scan_both(Path(source.path), source).rows
    assert taken > 1000
    # the corpus's oddities really do go through both paths
    for source in sources:
        data = Path(source.path).read_bytes()
        odd += len(native.scan_block(data, len(data), 1, {})[4])
    assert odd > 0


@needs_native
def test_load_gives_identical_frames_and_reports(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = load(corpus, no_cache=True, workers=1)
    monkeypatch.setattr(_scan, "_logscan", lambda: None)
    pure = load(corpus, no_cache=True, workers=1)
    assert fast.equals(pure)
    for name in fast.columns:
        assert fast[name].dtype == pure[name].dtype
        if hasattr(fast[name], "cat"):
            assert list(fast[name].cat.categories) == list(pure[name].cat.categories)
    a, b = fast.attrs["load_report"].to_dict(), pure.attrs["load_report"].to_dict()
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    assert fast.attrs["load_report"].compactions == pure.attrs["load_report"].compactions


@needs_native
def test_the_pool_path_agrees_too(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_load, "POOL_MIN_BYTES", 0)
    fast = load(corpus, no_cache=True, workers=2)
    monkeypatch.setattr(_scan, "_logscan", lambda: None)
    pure = load(corpus, no_cache=True, workers=2)
    assert fast.equals(pure)


def _assistant(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "parentUuid": "7c554da0-8afb-4356-84c4-4b7e221939d6",
        "isSidechain": False,
        "userType": "external",
        "cwd": "/home/user/work/project",
        "sessionId": "3aaee642-4bc4-4381-8caa-225acb6ba595",
        "version": "2.1.63",
        "gitBranch": "main",
        "message": {
            "model": "claude-sonnet-4-6",
            "id": "msg_01000000348754e3e056893a",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": "PLACEHOLDER"}],
            "stop_reason": None,
            "usage": {
                "input_tokens": 2,
                "cache_creation_input_tokens": 6415,
                "cache_read_input_tokens": 0,
                "output_tokens": 12,
                "server_tool_use": {"web_search_requests": 0},
                "service_tier": "standard",
                "cache_creation": {
                    "ephemeral_1h_input_tokens": 6415,
                    "ephemeral_5m_input_tokens": 0,
                },
                "iterations": [],
                "speed": "standard",
            },
        },
        "requestId": "req_011C000000348755bc004cd1c2",
        "type": "assistant",
        "uuid": "da44df1c-54ae-4007-8dc7-993365d72cea",
        "timestamp": "2026-10-21T14:24:56.136Z",
    }
    record.update(changes)
    return record


BASE = orjson.dumps(_assistant())

# Byte-level edits that move a line off the usual layout, each in a way the pure path has an
# answer for (often a different one from the usual line's).
EDITS: list[tuple[bytes, bytes]] = [
    (b'"input_tokens":2', b'"input_tokens":-2'),
    (b'"input_tokens":2', b'"input_tokens":2.0'),
    (b'"input_tokens":2', b'"input_tokens":2e0'),
    (b'"input_tokens":2', b'"input_tokens":null'),
    (b'"input_tokens":2', b'"input_tokens":"2"'),
    (b'"input_tokens":2', b'"input_tokens":true'),
    (b'"input_tokens":2', b'"input_tokens":123456789012345678901'),
    (b'"input_tokens":2', b'"input_tokens":02'),
    (b'"input_tokens":2,', b""),
    (b'"output_tokens":12', b'"output_tokens":12,"output_tokens":99'),
    (b'"output_tokens":12', b'"output_tokens" : 12'),
    (b'"cache_read_input_tokens":0', b'"cache_read_input_tokens":-1'),
    (b'"cache_creation_input_tokens":6415', b'"cache_creation_input_tokens":-3'),
    (b'"ephemeral_1h_input_tokens":6415', b'"ephemeral_1h_input_tokens":-1'),
    (b'"ephemeral_1h_input_tokens":6415,', b""),
    (b'"ephemeral_1h_input_tokens":6415,"ephemeral_5m_input_tokens":0', b'"other":1'),
    (b'"cache_creation":{', b'"cache_creation":null,"x":{'),
    (b'"cache_creation":{', b'"cache_creation":7,"x":{'),
    (b'"speed":"standard"', b'"speed":"fast"'),
    (b'"speed":"standard"', b'"speed":null'),
    (b'"speed":"standard"', b'"speed":1'),
    (b'"speed":"standard"', b'"speed":"f\\u0061st"'),
    (b'"speed":"standard"', b'"speed":"fa\\/st"'),
    (b'"isSidechain":false', b'"isSidechain":true'),
    (b'"isSidechain":false', b'"isSidechain":"true"'),
    (b'"isSidechain":false', b'"isSidechain":1'),
    (b'"requestId":"req_011C000000348755bc004cd1c2",', b""),
    (b'"requestId":"req_011C000000348755bc004cd1c2"', b'"requestId":null'),
    (b'"requestId":"req_011C000000348755bc004cd1c2"', b'"requestId":"req_\\n1"'),
    (b'"model":"claude-sonnet-4-6"', b'"model":"<synthetic>"'),
    (b'"model":"claude-sonnet-4-6"', b'"model":"claude-opus-4-1"'),
    (b'"model":"claude-sonnet-4-6"', b'"model":"claude-\\u0073onnet-4-6"'),
    (b'"model":"claude-sonnet-4-6"', b'"model":null'),
    (b'"model":"claude-sonnet-4-6",', b""),
    (b'"id":"msg_01000000348754e3e056893a"', b'"id":"msg_02"'),
    (b'"id":"msg_01000000348754e3e056893a"', b'"id":"m\\"sg"'),
    (b'"id":"msg_01000000348754e3e056893a",', b""),
    (b'"timestamp":"2026-10-21T14:24:56.136Z"', b'"timestamp":"2026-10-21T14:24:56Z"'),
    (b'"timestamp":"2026-10-21T14:24:56.136Z"', b'"timestamp":"2026-10-21T14:24:56.136+02:00"'),
    (b'"timestamp":"2026-10-21T14:24:56.136Z"', b'"timestamp":"2026-10-21T14:24:56.136789Z"'),
    (b'"timestamp":"2026-10-21T14:24:56.136Z"', b'"timestamp":"2024-02-29T23:59:59.999Z"'),
    (b'"timestamp":"2026-10-21T14:24:56.136Z"', b'"timestamp":"1969-12-31T23:59:59.999Z"'),
    (b'"timestamp":"2026-10-21T14:24:56.136Z"', b'"timestamp":"2026-10-21 14:24:56.136"'),
    (b'"timestamp":"2026-10-21T14:24:56.136Z"', b'"timestamp":5'),
    (b',"timestamp":"2026-10-21T14:24:56.136Z"', b""),
    (b'"timestamp":"2026-10-21T14:24:56.136Z"', b'"timestamp":"yesterday"'),
    (b'"timestamp":"2026-10-21T14:24:56.136Z"', b'"timestamp":"2026-13-21T14:24:56.136Z"'),
    (b'"timestamp":"2026-10-21T14:24:56.136Z"', b'"timestamp":"2026-10-21T14:24:56.1\\u00336Z"'),
    (
        b'"timestamp":"2026-10-21T14:24:56.136Z"',
        b'"timestamp":"2026-10-21T14:24:56.136000000000000Z"',
    ),
    (b'"timestamp":"2026-10-21T14:24:56.136Z"', b'"timestamp":"2026-10-21T14:24:56.136Zgarbage"'),
    (b'"timestamp":"2026-10-21T14:24:56.136Z"', b'"timestamp":""'),
    (b'.136Z"', b".136Z\x01"),
    (b'"cwd":"/home/user/work/project"', '"cwd":"/home/jos\u00e9/\u6f22\u5b57"'.encode()),
    (b'"cwd":"/home/user/work/project"', b'"cwd":"/home/\xff\xfe"'),
    (b'"cwd":"/home/user/work/project"', b'"cwd":"/home/\xed\xa0\x80"'),
    (b'"cwd":"/home/user/work/project"', b'"cwd":"C:\\\\Users\\\\me"'),
    (b'"cwd":"/home/user/work/project"', b'"cwd":"tab\there"'),
    (b'"cwd":"/home/user/work/project"', b'"cwd":"\\ud83d\\ude00"'),
    (b'"cwd":"/home/user/work/project"', b'"cwd":"\\ud83d"'),
    (b'"gitBranch":"main"', b'"gitBranch":"main","message":{"usage":{}}'),
    (b'"gitBranch":"main"', b'"gitBranch":{"message":{"a":1}}'),
    (b'"gitBranch":"main"', b'"git\\u0042ranch":"main"'),
    (b'"gitBranch":"main"', b'"timestamp":"2026-10-21T14:24:56.136Z"'),
    (b'"text":"PLACEHOLDER"', b'"text":"PLACE\\"usage\\":{HOLDER"'),
    (b'"text":"PLACEHOLDER"', b'"input":{"usage":{"input_tokens":5,"output_tokens":1}}'),
    (b'"text":"PLACEHOLDER"', b'"text":"}}]broken'),
    (b'"content":[', b'"content":[{"message":{"content":1}},'),
    (b'"type":"assistant"', b'"type":"user"'),
    (b'"stop_reason":null', b'"stop_reason":null,"usage":{"input_tokens":1,"output_tokens":1}'),
    (b'"iterations":[]', b'"iterations":[1,2.5,-3,{"a":[true,false,null]}]'),
    (b'"iterations":[]', b'"iterations":[1e999]'),
    (b'"iterations":[]', b'"iterations":[1,]'),
    (b'"iterations":[]', b'"iterations":' + b"[" * 300 + b"]" * 300),
    (b'{"parentUuid"', b' {"parentUuid"'),
    (b'{"parentUuid"', b'[{"parentUuid"'),
    (b'"uuid":"da44df1c', b'"uuid": "da44df1c'),
    (b'"message":{', b'"message": {'),
    (b'"message":{', b'"data":{"message":{'),
    (b'"usage":{', b'"usage": {'),
]


def _line(edits: list[int], cut: int | None, flip: tuple[int, int] | None) -> bytes:
    line = BASE
    for i in edits:
        old, new = EDITS[i]
        line = line.replace(old, new, 1)
    if flip is not None:
        at, value = flip
        at %= len(line)
        line = line[:at] + bytes([value]) + line[at + 1 :]
    if cut is not None:
        line = line[: cut % len(line)]
    return line


line_strategy = st.builds(
    _line,
    st.lists(st.integers(0, len(EDITS) - 1), max_size=3),
    st.one_of(st.none(), st.none(), st.none(), st.integers(1, 10_000)),
    st.one_of(st.none(), st.none(), st.tuples(st.integers(0, 10_000), st.integers(0, 255))),
)


@needs_native
@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    lines=st.lists(line_strategy, min_size=1, max_size=6),
    crlf=st.booleans(),
    extras=st.lists(
        st.sampled_from(
            [
                b'{"type":"system","subtype":"compact_boundary","timestamp":"2026-10-21T15:00:00.000Z"}',
                b'{"type":"system","subtype":"compact_boundary","timestamp":"2026-10-21T15:00:00Z"}',
                b'{"type":"cachescope.call","time":"2026-10-21T15:00:00.000Z","model":"claude-sonnet-4-6",'
                b'"input_tokens":5,"output_tokens":6,"session":"nb","message_id":"m1"}',
                b'{"type":"progress","data":{"message":{"type":"assistant","message":{"model":"x",'
                b'"id":"msg_P","usage":{"input_tokens":3,"output_tokens":4}}}},"timestamp":"2026-10-21T15:00:00.000Z"}',
                b'{"type":"user","message":{"role":"user","content":[{"type":"tool_result"}]},'
                b'"timestamp":"2026-10-21T15:00:00.000Z","toolUseResult":{"usage":{"input_tokens":5,"output_tokens":7}}}',
                b"",
                b"not json at all",
            ]
        ),
        max_size=3,
    ),
    data=st.data(),
)
def test_mutated_lines_scan_identically(
    tmp_path: Path,
    lines: list[bytes],
    crlf: bool,
    extras: list[bytes],
    data: st.DataObject,
) -> None:
    every = [BASE, *lines, *extras]
    order = data.draw(st.permutations(range(len(every))))
    end = b"\r\n" if crlf else b"\n"
    text = end.join(every[i] for i in order) + data.draw(st.sampled_from([end, b""]))
    path = tmp_path / "t.jsonl"
    path.write_bytes(text)
    results = both(path)
    if results is not None:
        assert_same(*results)


def test_a_bad_timestamp_is_one_malformed_line_not_a_failed_file(tmp_path: Path) -> None:
    good = [orjson.dumps(_assistant(requestId=f"req_{i}")) for i in range(3)]
    bad_date = BASE.replace(b'"2026-10-21T14:24:56.136Z"', b'"yesterday"')
    # the closing quote of the stamp is lost: the line is not JSON, and the next line's quote
    # must not be taken for it
    no_quote = BASE.replace(b'.136Z"', b".136Z\x01")
    compaction = b'{"type":"system","subtype":"compact_boundary","timestamp":"soon"}'
    path = tmp_path / "t.jsonl"
    path.write_bytes(
        b"\n".join([good[0], bad_date, good[1], no_quote, good[2], compaction]) + b"\n"
    )
    source = SourceFile(str(path), "proj", "", "")
    for result in (_scan.scan_file(source, pure=True), _scan.scan_file(source)):
        assert result.malformed == [
            (2, "bad timestamp 'yesterday'"),
            (4, "broken JSON"),
            (6, "compaction with a bad timestamp 'soon'"),
        ]
        assert result.rows == 3
        assert result.columns["time"].tolist() == [1792592696136] * 3
        assert result.compactions == []


@needs_native
def test_blocks_and_long_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # small blocks: lines cross block ends, some lines are longer than a block
    monkeypatch.setattr(_scan, "BLOCK_SIZE", 1 << 10)
    rng = random.Random(3)
    lines = []
    for i in range(300):
        record = _assistant(timestamp=f"2026-10-{1 + i % 28:02d}T10:00:00.{i % 1000:03d}Z")
        record["message"]["id"] = f"msg_{i // 3}"
        record["message"]["content"][0]["text"] = "x" * rng.choice([10, 500, 3000])
        if i % 7 == 0:
            record["message"]["model"] = "<synthetic>"
        if i % 11 == 0:
            record["message"]["usage"]["input_tokens"] = -1
        lines.append(orjson.dumps(record))
        if i % 13 == 0:
            lines.append(b'{"type":"cachescope.call","time":"2026-10-02T00:00:00.000Z",'
                         b'"model":"claude-opus-4-1","input_tokens":1,"output_tokens":2}')  # fmt: skip
        if i % 17 == 0:
            lines.append(b'{"broken": ')
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(lines))
    fast = scan_both(path)
    assert fast.rows > 200 and fast.synthetic > 10 and len(fast.malformed) > 20


@needs_native
def test_a_stamp_the_slow_way_sends_the_whole_file_the_slow_way(tmp_path: Path) -> None:
    good = orjson.dumps(_assistant())
    odd = orjson.dumps(_assistant(timestamp="2026-10-21T16:24:56.137+02:00", requestId="req_2"))
    path = tmp_path / "t.jsonl"
    path.write_bytes(good + b"\n" + odd + b"\n")
    fast = scan_both(path)
    assert fast.columns["time"].tolist()[1] == fast.columns["time"].tolist()[0] + 1


@needs_native
@given(st.datetimes(min_value=_dt.datetime(1970, 1, 1), max_value=_dt.datetime(9999, 12, 31)))
def test_stamp_ms_equals_numpy(moment: _dt.datetime) -> None:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    assert native.stamp_ms(text.encode()) == _scan.parse_times([text.encode()])[0]
    assert _scan.format_times(np.array([native.stamp_ms(text.encode())]))[0] == text.encode()


@needs_native
@pytest.mark.parametrize(
    "text",
    [b"2026-02-29T00:00:00.000Z", b"2026-13-01T00:00:00.000Z", b"2026-10-21T24:00:00.000Z",
     b"2026-10-21T14:24:56.136", b"2026-10-21T14:24:56.13Z", b"x" * 24, b""],
)  # fmt: skip
def test_stamp_ms_refuses_other_forms(text: bytes) -> None:
    assert native.stamp_ms(text) is None


@needs_native
def test_hostile_arguments_raise() -> None:
    with pytest.raises(TypeError):
        native.scan_block("text\n", 5, 1, {})
    with pytest.raises(TypeError):
        native.scan_block(b"{}\n", 3, 1, [])
    with pytest.raises(TypeError):
        native.scan_block(b"{}\n", "3", 1, {})
    with pytest.raises(ValueError):
        native.scan_block(b"{}\n", 4, 1, {})
    with pytest.raises(ValueError):
        native.scan_block(b"{}\n", -1, 1, {})
    with pytest.raises(ValueError, match="newline"):
        native.scan_block(b"{}\n{}", 5, 1, {})
    with pytest.raises(TypeError):
        native.stamp_ms("2026-10-21T14:24:56.136Z")
    models: dict[Any, Any] = {b"claude-sonnet-4-6": "not a code"}
    with pytest.raises(TypeError):
        native.scan_block(BASE + b"\n", len(BASE) + 1, 1, models)
    assert native.scan_block(b"", 0, 1, {})[:4] == (0, b"", 0, 0)
    with pytest.raises(ValueError):
        native.scan_block(b"{}\n{}\n", 3, 1, {}, 4)
    with pytest.raises(ValueError):
        native.scan_block(b"{}\n{}\n", 6, 1, {}, -1)
    # begin: the same lines as a slice, positions counted in the whole buffer
    two = b"{}\n" + BASE + b"\n"
    sliced = native.scan_block(BASE + b"\n", len(BASE) + 1, 2, {})
    offset = native.scan_block(two, len(two), 2, {}, 3)
    assert offset[:4] == sliced[:4] and offset[6:] == sliced[6:]
    # a bytearray or memoryview reads like bytes
    data = BASE + b"\n"
    a = native.scan_block(data, len(data), 1, {})
    assert native.scan_block(bytearray(data), len(data), 1, {}) == a
    assert native.scan_block(memoryview(data), len(data), 1, {}) == a


def _dedup_columns(draw_rows: list[tuple[int, int, int, int, int]]) -> dict[str, Any]:
    key, total, flags, message, time = (np.array(c, dtype=np.int64) for c in zip(*draw_rows))
    zeros = np.zeros(len(key), dtype=np.int64)
    return {
        "key": key,
        "message": message,
        "time": time,
        "flags": flags.astype(np.uint8),
        "fresh": total,
        "write_5m": zeros,
        "write_1h": zeros,
        "read": zeros,
        "output": zeros,
    }


@needs_native
@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-3, 3) | st.integers(-(2**63), 2**63 - 1),
            st.integers(0, 3),
            st.integers(0, 7),
            st.integers(-2, 2),
            st.integers(0, 4),
        ),
        max_size=60,
    )
)
def test_native_dedup_equals_numpy(rows: list[tuple[int, int, int, int, int]]) -> None:
    if not rows:
        rows = [(0, 0, 0, 0, 0)]
    columns = _dedup_columns(rows)
    fast = _load.deduplicate(columns)
    pure = _load.deduplicate(columns, pure=True)
    assert fast[0].dtype == pure[0].dtype
    assert fast[0].tolist() == pure[0].tolist()
    assert fast[1:] == pure[1:]


@needs_native
def test_native_dedup_on_the_corpus_and_hostile_input(corpus: Path) -> None:
    df_rows = _load.Batch.from_results([_scan.scan_file(s) for s in find_files([str(corpus)])])
    fast = _load.deduplicate(df_rows.columns)
    pure = _load.deduplicate(df_rows.columns, pure=True)
    assert fast[0].tolist() == pure[0].tolist() and fast[1:] == pure[1:]
    assert fast[1] > 0 and fast[2] > 0
    eight = np.zeros(2, dtype=np.int64)
    with pytest.raises(ValueError, match="wrong length"):
        native.dedup(eight, np.zeros(3, dtype=np.int64), b"\0\0", eight, eight)
    with pytest.raises(ValueError, match="wrong length"):
        native.dedup(b"1234567", eight, b"\0\0", eight, eight)
    with pytest.raises(TypeError):
        native.dedup([1], eight, b"\0\0", eight, eight)
    assert native.dedup(b"", b"", b"", b"", b"") == (b"", 0, 0)
