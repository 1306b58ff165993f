"""Ledger: durable append-only JSONL, torn lines, threads, processes, summaries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import orjson
import pytest

import cachescope.ledger as ledger_module
from cachescope.ledger import (
    CallRecord,
    Ledger,
    LedgerError,
    LedgerWarning,
    LedgerWriteError,
)


def record(n: int = 0, **fields: object) -> CallRecord:
    base: dict[str, object] = {
        "time": f"2026-11-21T10:00:{n % 60:02d}.000Z",
        "model": "claude-sonnet-4-5",
        "session": "aura",
        "message_id": f"msg_{n}",
        "input_tokens": 50,
        "cache_read_input_tokens": 100_000,
        "output_tokens": 20,
    }
    base.update(fields)
    return CallRecord(**base)  # type: ignore[arg-type]


def test_in_memory_ledger_keeps_records_in_order() -> None:
    ledger = Ledger()
    for n in range(3):
        ledger.append(record(n))
    assert [r.message_id for r in ledger.records] == ["msg_0", "msg_1", "msg_2"]


def test_ledger_line_has_the_contract_keys(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    Ledger(path).append(record(1, ephemeral_5m_input_tokens=7, cache_creation_input_tokens=7))
    line = orjson.loads(path.read_bytes().splitlines()[0])
    assert line["type"] == "cachescope.call"
    assert line["schema"] == 1
    for key in (
        "time", "session", "backend", "model", "ok", "message_id", "input_tokens",
        "cache_creation_input_tokens", "ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens",
        "cache_read_input_tokens", "output_tokens",
    ):  # fmt: skip
        assert key in line
    assert line["ephemeral_5m_input_tokens"] == 7


def test_reopening_loads_every_record(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    ledger = Ledger(path)
    for n in range(5):
        ledger.append(record(n, blocks=[{"hash": "ab", "layer": "stable", "tokens": 3}]))
    again = Ledger(path)
    assert again.records == ledger.records


def test_record_is_on_disk_when_append_returns(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    ledger = Ledger(path)
    ledger.append(record(1))
    assert path.read_bytes().count(b"\n") == 1


def test_torn_last_line_is_skipped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    ledger = Ledger(path)
    ledger.append(record(1))
    ledger.append(record(2))
    with path.open("ab") as fh:
        fh.write(b'{"type": "cachescope.call", "model": "claude-so')
    with pytest.warns(LedgerWarning, match="torn"):
        loaded = Ledger(path)
    assert len(loaded) == 2
    assert loaded.skipped_lines == [3]


def test_append_after_a_torn_line_starts_on_a_fresh_line(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    path.write_bytes(orjson.dumps(record(1).to_dict()) + b"\n" + b'{"torn": ')
    with pytest.warns(LedgerWarning):
        ledger = Ledger(path)
    ledger.append(record(2))
    with pytest.warns(LedgerWarning):
        loaded = Ledger(path)
    assert [r.message_id for r in loaded.records] == ["msg_1", "msg_2"]


def test_unknown_keys_are_kept_and_ignored(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    line = record(1).to_dict() | {"future_key": 42}
    path.write_bytes(orjson.dumps(line) + b"\n")
    loaded = Ledger(path).records[0]
    assert loaded.extra == {"future_key": 42}
    assert loaded.to_dict()["future_key"] == 42


def test_unserializable_record_raises_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    ledger = Ledger(path)
    ledger.append(record(1))
    before = path.read_bytes()
    bad = record(2, extra={"oops": object()})
    with pytest.raises(LedgerError, match="untouched"):
        ledger.append(bad)
    assert path.read_bytes() == before
    assert len(ledger) == 1


def test_disk_write_failure_says_so_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "calls.jsonl"
    ledger = Ledger(path)
    ledger.append(record(1))

    def full_disk(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(LedgerWriteError, match=r"could not be written.*1 record\(s\) already"):
        ledger.append(record(2, message="the SDK message"))
    monkeypatch.undo()
    assert len(ledger) == 1
    assert len(Ledger(path)) == 1


def test_disk_write_failure_carries_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger(tmp_path / "calls.jsonl")
    monkeypatch.setattr(
        ledger_module, "_sync", lambda fd: (_ for _ in ()).throw(OSError(5, "I/O error"))
    )
    with pytest.raises(LedgerWriteError) as info:
        ledger.append(record(2, message="the SDK message"))
    assert info.value.message == "the SDK message"


def test_eight_threads_of_250_appends_give_exactly_2000_records(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    ledger = Ledger(path)

    def work(t: int) -> None:
        for n in range(250):
            ledger.append(record(n, message_id=f"msg_{t}_{n}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ledger) == 2_000
    reloaded = Ledger(path)
    assert len(reloaded) == 2_000
    assert len({r.message_id for r in reloaded.records}) == 2_000


_WRITER = textwrap.dedent(
    """
    import sys
    from cachescope.ledger import CallRecord, Ledger
    ledger = Ledger(sys.argv[1])
    n = 0
    while True:
        ledger.append(CallRecord(time="2026-11-21T10:00:00.000Z", model="claude-sonnet-4-5",
                                 message_id=f"msg_{sys.argv[2]}_{n}", input_tokens=n,
                                 blocks=[{"hash": "0" * 16, "tokens": 10}] * 50))
        n += 1
    """
)


def _start_writer(path: Path, tag: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(path), tag])


def _wait_for_lines(path: Path, lines: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= lines:
            return
        time.sleep(0.02)
    raise AssertionError(f"the writer did not reach {lines} lines")


def test_process_killed_with_sigkill_while_appending_leaves_a_loadable_ledger(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calls.jsonl"
    writer = _start_writer(path, "a")
    try:
        _wait_for_lines(path, 50)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    complete = path.read_bytes().count(b"\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LedgerWarning)  # a torn last line is allowed
        ledger = Ledger(path)
    assert len(ledger) == complete
    assert len(ledger.skipped_lines) <= 1


def _wait_for_both(path: Path, lines_each: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        data = path.read_bytes() if path.exists() else b""
        if data.count(b'"msg_a_') >= lines_each and data.count(b'"msg_b_') >= lines_each:
            return
        time.sleep(0.02)
    raise AssertionError(f"the writers did not reach {lines_each} lines each")


def test_two_processes_appending_to_one_file_interleave_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    writers = [_start_writer(path, tag) for tag in ("a", "b")]
    try:
        _wait_for_both(path, 100)
    finally:
        for writer in writers:
            writer.send_signal(signal.SIGKILL)
            writer.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LedgerWarning)
        ledger = Ledger(path)
    ids = [r.message_id or "" for r in ledger.records]
    assert sum(i.startswith("msg_a_") for i in ids) >= 100
    assert sum(i.startswith("msg_b_") for i in ids) >= 100
    assert len(ledger.skipped_lines) <= 2  # at most one torn line per killed writer


def _summary_ledger() -> Ledger:
    ledger = Ledger()
    ledger.append(record(1, input_tokens=100, cache_read_input_tokens=0, cache_creation_input_tokens=1_000,
                         ephemeral_5m_input_tokens=1_000, cost=0.5, cost_without_cache=0.4))  # fmt: skip
    ledger.append(
        record(2, input_tokens=100, cache_read_input_tokens=3_000, cost=0.1, cost_without_cache=0.6)
    )
    ledger.append(record(3, ok=False, input_tokens=0, cache_read_input_tokens=0, output_tokens=0,
                         error_type="RateLimitError", error_status=429))  # fmt: skip
    return ledger


def test_summary_hit_share_is_read_over_fresh_plus_write_plus_read() -> None:
    summary = _summary_ledger().summary()
    assert summary.hit_share == pytest.approx(3_000 / (200 + 1_000 + 3_000))
    assert summary.reads_per_fresh_token == pytest.approx(3_000 / 200)
    assert summary.read_write_ratio == pytest.approx(3.0)


def test_summary_cost_savings_and_factor() -> None:
    summary = _summary_ledger().summary()
    assert summary.cost == pytest.approx(0.6)
    assert summary.cost_without_cache == pytest.approx(1.0)
    assert summary.savings == pytest.approx(0.4)
    assert summary.savings_factor == pytest.approx(1.0 / 0.6)
    assert summary.failed_calls == 1


def _fingerprint(*prefixes: str, breakpoint_at: int) -> list[dict[str, object]]:
    return [
        {"hash": p, "prefix": p, "tokens": 10, "breakpoint": "5m" if i == breakpoint_at else None}
        for i, p in enumerate(prefixes)
    ]


def test_summary_counts_writes_never_read_again() -> None:
    ledger = Ledger()
    # call 1 writes 1,000 at prefix "b"; call 2 shares "a","b" and reads 1,000 back, writes 500 at "c";
    # nobody reads "c".
    ledger.append(record(1, input_tokens=10, cache_read_input_tokens=0, cache_creation_input_tokens=1_000,
                         ephemeral_5m_input_tokens=1_000, blocks=_fingerprint("a", "b", breakpoint_at=1)))  # fmt: skip
    ledger.append(record(2, input_tokens=10, cache_read_input_tokens=1_000, cache_creation_input_tokens=500,
                         ephemeral_5m_input_tokens=500, blocks=_fingerprint("a", "b", "c", breakpoint_at=2)))  # fmt: skip
    summary = ledger.summary()
    assert summary.unread_writes == 1
    assert summary.unread_write_tokens == 500


def test_summary_renders_as_text_and_escaped_html() -> None:
    ledger = _summary_ledger()
    bundle = ledger.summary()._repr_mimebundle_()
    assert "hit share" in bundle["text/plain"]
    assert "<table" in bundle["text/html"]
    assert "read : write" in bundle["text/plain"]
    assert "<script" not in bundle["text/html"]


def test_summary_of_one_session() -> None:
    ledger = _summary_ledger()
    ledger.append(record(9, session="other", input_tokens=7, cache_read_input_tokens=0))
    assert ledger.summary(session="other").input_tokens == 7


def test_to_pandas_has_one_row_per_call_with_utc_times() -> None:
    frame = _summary_ledger().to_pandas()
    assert len(frame) == 3
    assert str(frame["time"].dt.tz) == "UTC"
    assert list(frame["error_status"].fillna(0).astype(int)) == [0, 0, 429]


def test_append_waits_for_a_filelock_holder_of_the_lock_file(tmp_path: Path) -> None:
    from filelock import FileLock

    path = tmp_path / "calls.jsonl"
    ledger = Ledger(path)
    ledger.append(record(0))  # the ledger's lock file is open from here on
    done = threading.Event()
    with FileLock(str(path) + ".lock"):
        thread = threading.Thread(target=lambda: (ledger.append(record(1)), done.set()))
        thread.start()
        time.sleep(0.3)
        assert not done.is_set()  # blocked on the lock another holder has
        assert path.read_bytes().count(b"\n") == 1
    thread.join(10)
    assert done.is_set()
    assert path.read_bytes().count(b"\n") == 2


def test_filelock_waits_while_the_ledger_holds_its_lock(tmp_path: Path) -> None:
    from filelock import FileLock, Timeout

    path = tmp_path / "calls.jsonl"
    ledger = Ledger(path)
    with ledger._file_lock, pytest.raises(Timeout):
        FileLock(str(path) + ".lock").acquire(timeout=0.2)
    with FileLock(str(path) + ".lock").acquire(timeout=5):
        pass  # free again afterwards


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_takes_the_lock_on_its_own_open_file(tmp_path: Path) -> None:
    import fcntl

    path = tmp_path / "calls.jsonl"
    ledger = Ledger(path)
    ledger.append(record(0))
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            with ledger._file_lock:
                os.write(write_end, b"x")
                time.sleep(1.0)
        finally:
            os._exit(0)
    try:
        assert os.read(read_end, 1) == b"x"
        # the parent's own descriptor: shared with the child, a flock on it would not exclude
        with pytest.raises(BlockingIOError):
            fcntl.flock(ledger._file_lock._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.waitpid(child, 0)
        os.close(read_end)
        os.close(write_end)
    ledger.append(record(1))
    assert len(Ledger(path)) == 2


def test_lock_file_unlinked_between_appends_is_recreated(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    ledger = Ledger(path)
    ledger.append(record(0))
    os.unlink(str(path) + ".lock")
    ledger.append(record(1))
    assert os.path.exists(str(path) + ".lock")
    assert len(Ledger(path)) == 2
