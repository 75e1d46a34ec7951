"""Write-ahead log and snapshots: group commit, replay, torn tails, write failures, truncation."""

from __future__ import annotations

import os
import threading

import pytest

from factorylens.rca_service.snapshot import load_latest, write_snapshot
from factorylens.rca_service.wal import FsyncPolicy, RecordKind, WalError, WriteAheadLog


def opened(path, **kwargs) -> WriteAheadLog:
    wal = WriteAheadLog(path, **kwargs)
    list(wal.replay())
    return wal


@pytest.mark.parametrize("policy", list(FsyncPolicy))
def test_concurrent_appends_get_unique_lsns_and_all_replay(tmp_path, policy):
    wal = opened(tmp_path, fsync=policy, fsync_interval_s=0.01)
    lsns: list[int] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for i in range(50):
            lsn = wal.append(RecordKind.METRICS, f"{n}:{i}".encode())
            with lock:
                lsns.append(lsn)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wal.close()
    assert sorted(lsns) == list(range(1, 401))
    replayed = list(WriteAheadLog(tmp_path).replay())
    assert [lsn for lsn, _, _ in replayed] == list(range(1, 401))
    assert {p for _, _, p in replayed} == {f"{n}:{i}".encode() for n in range(8) for i in range(50)}


def test_replay_skips_what_a_snapshot_covers_and_continues_numbering(tmp_path):
    wal = opened(tmp_path)
    for i in range(5):
        wal.append(RecordKind.LOGS, bytes([i]))
    wal.close()
    again = WriteAheadLog(tmp_path)
    assert [lsn for lsn, _, _ in again.replay(after_lsn=3)] == [4, 5]
    assert again.append(RecordKind.LOGS, b"x") == 6


def test_torn_tail_is_cut_and_reported_and_appends_continue(tmp_path):
    wal = opened(tmp_path)
    wal.append(RecordKind.METRICS, b"complete")
    wal.close()
    segment = wal.segments()[-1]
    with open(segment, "ab") as f:
        f.write(b"\x20\x00\x00\x00partial-record")  # a crash in the middle of a write
    again = WriteAheadLog(tmp_path)
    assert [p for _, _, p in again.replay()] == [b"complete"]
    assert again.truncated_bytes == 18
    again.append(RecordKind.METRICS, b"after")
    again.close()
    assert [p for _, _, p in WriteAheadLog(tmp_path).replay()] == [b"complete", b"after"]


def test_corrupt_record_is_detected_by_checksum(tmp_path):
    wal = opened(tmp_path)
    wal.append(RecordKind.METRICS, b"aaaa")
    wal.append(RecordKind.METRICS, b"bbbb")
    wal.close()
    segment = wal.segments()[-1]
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF
    segment.write_bytes(bytes(data))
    assert [p for _, _, p in WriteAheadLog(tmp_path).replay()] == [b"aaaa"]


def test_failed_write_refuses_the_append_and_leaves_no_garbage(tmp_path, monkeypatch):
    wal = opened(tmp_path)
    wal.append(RecordKind.METRICS, b"before")
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(WalError, match="No space left"):
        wal.append(RecordKind.METRICS, b"lost")
    monkeypatch.setattr(os, "write", real_write)
    wal.append(RecordKind.METRICS, b"after")
    wal.close()
    assert [p for _, _, p in WriteAheadLog(tmp_path).replay()] == [b"before", b"after"]


def test_rotation_and_truncation_bound_the_log(tmp_path):
    wal = opened(tmp_path, segment_bytes=200)
    for _i in range(20):
        wal.append(RecordKind.METRICS, b"x" * 50)
    assert len(wal.segments()) > 3
    covered = wal.rotate()
    assert covered == 20
    wal.append(RecordKind.METRICS, b"new")
    freed = wal.truncate_through(covered)
    assert freed > 0 and len(wal.segments()) == 1
    wal.close()
    assert [lsn for lsn, _, _ in WriteAheadLog(tmp_path).replay(after_lsn=covered)] == [21]


def test_snapshot_falls_back_to_the_previous_one_when_damaged(tmp_path):
    write_snapshot(tmp_path, 10, {"n": 1})
    newest = write_snapshot(tmp_path, 20, {"n": 2})
    assert load_latest(tmp_path) == (20, {"n": 2})
    newest.write_bytes(newest.read_bytes()[:-3])
    assert load_latest(tmp_path) == (10, {"n": 1})
    write_snapshot(tmp_path, 30, {"n": 3})
    write_snapshot(tmp_path, 40, {"n": 4})
    assert len(list(tmp_path.glob("snapshot-*.pkl"))) == 2


def test_any_write_failure_fails_exactly_its_batch(tmp_path, monkeypatch):
    wal = opened(tmp_path)
    original = wal._write
    monkeypatch.setattr(wal, "_write", lambda data: (_ for _ in ()).throw(MemoryError()))
    with pytest.raises(WalError, match="MemoryError"):
        wal.append(RecordKind.METRICS, b"lost")
    monkeypatch.setattr(wal, "_write", original)
    assert wal.append(RecordKind.METRICS, b"kept") == 2
    wal.close()
    assert [(lsn, p) for lsn, _, p in WriteAheadLog(tmp_path).replay()] == [(2, b"kept")]


def test_a_failed_rotation_is_retried_on_the_next_write(tmp_path, monkeypatch):
    wal = opened(tmp_path)
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda *a, **k: (_ for _ in ()).throw(OSError(24, "Too many open files")))
    with pytest.raises(OSError):
        wal.rotate()
    with pytest.raises(WalError, match="Too many open files"):
        wal.append(RecordKind.METRICS, b"refused")
    monkeypatch.setattr(os, "open", real_open)
    wal.append(RecordKind.METRICS, b"after")
    wal.close()
    assert [p for _, _, p in WriteAheadLog(tmp_path).replay()] == [b"after"]


def test_corruption_in_the_middle_keeps_the_records_after_it(tmp_path):
    wal = opened(tmp_path)
    for payload in (b"first", b"second", b"third"):
        wal.append(RecordKind.METRICS, payload)
    wal.close()
    segment = wal.segments()[-1]
    data = bytearray(segment.read_bytes())
    data[data.index(b"second")] ^= 0xFF  # bit rot inside the second record
    segment.write_bytes(bytes(data))
    again = WriteAheadLog(tmp_path)
    assert [p for _, _, p in again.replay()] == [b"first", b"third"]
    assert again.truncated_bytes > 0
