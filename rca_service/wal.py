"""Write-ahead log: every accepted OTLP request is on disk before it is acknowledged.

Records are the raw request bytes, framed as ``length | crc32 | lsn | kind | payload``, in
segment files named by their first LSN. Concurrent appends share one write (and one fsync): the
first waiting appender writes everyone's records, the others wait for it (group commit).

Fsync policies: ``always`` fsyncs each group before acknowledging (survives power loss);
``interval`` acknowledges once the bytes are in the OS page cache and fsyncs on a timer (survives a
killed process, loses at most the interval on power loss); ``never`` leaves it to the OS.
On start the log is read back from the last snapshot's LSN; a torn record at the end of the newest
segment (a crash mid-write, never acknowledged) is cut off and reported.
"""

from __future__ import annotations

import enum
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

from factorylens.rca_service._ratelimit import RateLimitedLog

log = logging.getLogger(__name__)
limited_log = RateLimitedLog(log)

HEADER = struct.Struct("<IIQB")  # payload length, crc32(lsn|kind|payload), lsn, kind
SEGMENT_SUFFIX = ".wal"
MAX_RECORD_BYTES = 1 << 30


class FsyncPolicy(str, enum.Enum):
    ALWAYS = "always"
    INTERVAL = "interval"
    NEVER = "never"


class RecordKind(enum.IntEnum):
    METRICS = 1
    TRACES = 2
    LOGS = 3


class WalError(Exception):
    """An append could not be made durable; the request must not be acknowledged."""


def _crc(lsn: int, kind: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<QB", lsn, kind)))


def _record_at(data: bytes, offset: int) -> tuple[int, int, bytes, int] | None:
    """``(lsn, kind, payload, end)`` of a complete, checksummed record at ``offset``, else None."""
    if offset + HEADER.size > len(data):
        return None
    length, crc, lsn, kind = HEADER.unpack_from(data, offset)
    end = offset + HEADER.size + length
    if length > MAX_RECORD_BYTES or end > len(data):
        return None
    payload = data[offset + HEADER.size : end]
    if _crc(lsn, kind, payload) != crc:
        return None
    return lsn, kind, payload, end


def _next_record(data: bytes, start: int) -> int | None:
    """The offset of the next valid record after corruption, or None when none follows."""
    for offset in range(start, len(data) - HEADER.size + 1):
        if _record_at(data, offset) is not None:
            return offset
    return None


def encode_record(lsn: int, kind: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), _crc(lsn, kind, payload), lsn, kind) + payload


class WriteAheadLog:
    """Call :meth:`replay` once (it finds the last LSN), then :meth:`append` from any thread."""

    def __init__(
        self,
        directory: str | os.PathLike,
        fsync: FsyncPolicy = FsyncPolicy.ALWAYS,
        fsync_interval_s: float = 0.2,
        segment_bytes: int = 64 << 20,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync = FsyncPolicy(fsync)
        self.fsync_interval_s = fsync_interval_s
        self.segment_bytes = segment_bytes
        self._cond = threading.Condition()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._writing = False
        self._failures: dict[int, str] = {}  # LSN → why its write failed, until its appender has read it
        self._next_lsn = 1
        self._written_lsn = 0
        self._fd: int | None = None
        self._segment_first_lsn = 0
        self._segment_size = 0
        self._closed_bytes: int | None = None  # bytes in segments other than the open one (None: recount)
        self._unsynced_bytes = 0
        self._needs_new_segment = False
        self._closed = False
        self._replayed = False
        self.truncated_bytes = 0
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()

    # ---- reading -------------------------------------------------------------------------------
    def segments(self) -> list[Path]:
        return sorted(self.directory.glob("*" + SEGMENT_SUFFIX))

    def replay(self, after_lsn: int = 0) -> Iterator[tuple[int, int, bytes]]:
        """Yield ``(lsn, kind, payload)`` for every record after ``after_lsn``; then open for appends."""
        last_lsn = after_lsn
        segments = self.segments()
        for index, path in enumerate(segments):
            is_last = index == len(segments) - 1
            good_end = 0
            with open(path, "rb") as f:
                data = f.read()
            offset = 0
            while offset < len(data):
                record = _record_at(data, offset)
                if record is None:
                    resume = _next_record(data, offset + 1)
                    if resume is None:
                        break  # nothing valid follows: a torn tail
                    log.error(
                        "WAL %s: %d corrupt bytes at offset %d skipped; the records after them are kept",
                        path.name,
                        resume - offset,
                        offset,
                    )
                    self.truncated_bytes += resume - offset
                    offset = resume
                    continue
                lsn, kind, payload, end = record
                offset = good_end = end
                last_lsn = max(last_lsn, lsn)
                if lsn > after_lsn:
                    yield lsn, kind, payload
            if good_end < len(data):
                lost = len(data) - good_end
                if is_last:
                    log.warning(
                        "WAL %s: cutting a torn tail of %d bytes after the last complete record "
                        "(a write interrupted by a crash; it was never acknowledged)",
                        path.name,
                        lost,
                    )
                    with open(path, "r+b") as f:
                        f.truncate(good_end)
                        os.fsync(f.fileno())
                else:
                    log.error("WAL %s: %d bytes at its end are incomplete and cannot be replayed", path.name, lost)
                self.truncated_bytes += lost
        self._next_lsn = last_lsn + 1
        self._written_lsn = last_lsn
        self._replayed = True
        self._open_segment()
        if self.fsync is FsyncPolicy.INTERVAL:
            self._flusher = threading.Thread(target=self._flush_loop, name="wal-fsync", daemon=True)
            self._flusher.start()

    # ---- writing -------------------------------------------------------------------------------
    def _open_segment(self) -> None:
        self._needs_new_segment = True  # until the new one is open: a failure here is retried next write
        if self._fd is not None:
            if self.fsync is not FsyncPolicy.NEVER:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        path = self.directory / f"{self._next_lsn:020d}{SEGMENT_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._segment_first_lsn = self._next_lsn
        self._segment_size = os.fstat(self._fd).st_size
        self._closed_bytes = None
        _fsync_directory(self.directory)
        self._needs_new_segment = False

    def append(self, kind: int, payload: bytes) -> int:
        """Append one record; returns its LSN once it is durable under the fsync policy."""
        with self._cond:
            if self._closed or not self._replayed:
                raise WalError("write-ahead log is not open")
            if len(payload) > MAX_RECORD_BYTES:
                raise WalError(f"a {len(payload)}-byte record is larger than the WAL's limit of {MAX_RECORD_BYTES}")
            lsn = self._next_lsn
            self._next_lsn += 1
            record = encode_record(lsn, kind, payload)
            self._pending.append(record)
            self._pending_bytes += len(record)
            while True:
                failure = self._failures.pop(lsn, None)
                if failure:
                    raise WalError(f"write-ahead log write failed: {failure}")
                if self._written_lsn >= lsn:
                    return lsn
                if not self._writing:
                    self._commit_pending()
                else:
                    self._cond.wait()

    def _commit_pending(self) -> None:
        """Write (and maybe fsync) every pending record; called with the condition held.

        Every record of the batch ends either durable (``_written_lsn`` covers it) or failed (its
        appender is told), whatever goes wrong, so nothing is acknowledged that was not written.
        """
        batch, self._pending = self._pending, []
        batch_bytes, self._pending_bytes = self._pending_bytes, 0
        if not batch:
            return
        last = self._next_lsn - 1
        first = last - len(batch) + 1
        self._writing = True
        self._cond.release()
        error = None
        try:
            self._write(b"".join(batch))
        except BaseException as exc:
            error = f"{getattr(exc, 'strerror', None) or exc} ({type(exc).__name__})"
        finally:
            self._cond.acquire()
            self._writing = False
        if error:
            for lsn in range(first, last + 1):
                self._failures[lsn] = error
            limited_log.log(
                logging.ERROR,
                "append",
                "WAL append of %d records failed: %s; the requests are refused (clients retry)",
                len(batch),
                error,
            )
        else:
            self._written_lsn = last
            self._unsynced_bytes += batch_bytes if self.fsync is not FsyncPolicy.ALWAYS else 0
        self._cond.notify_all()

    def _write(self, data: bytes) -> None:
        if self._needs_new_segment or self._fd is None or self._segment_size >= self.segment_bytes:
            self._open_segment()
        fd = self._fd
        if fd is None:
            raise OSError("no open WAL segment")
        before = self._segment_size
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if self.fsync is FsyncPolicy.ALWAYS:
                os.fsync(fd)
        except OSError:
            try:  # never leave half a batch in front of later records
                os.ftruncate(fd, before)
            except OSError:
                self._needs_new_segment = True
            raise
        self._segment_size = before + len(data)

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.fsync_interval_s):
            self.sync()

    def sync(self) -> None:
        with self._cond:
            fd, unsynced = self._fd, self._unsynced_bytes
            if fd is None or not unsynced:
                return
            self._unsynced_bytes = 0
        try:
            os.fsync(fd)
        except OSError as exc:
            limited_log.log(logging.ERROR, "fsync", "WAL fsync failed: %s", exc)

    def rotate(self) -> int:
        """Start a new segment; returns the last LSN in the closed ones (call with appends paused)."""
        with self._cond:
            while self._writing:
                self._cond.wait()
            if self._pending:
                self._commit_pending()
            self._open_segment()
            return self._next_lsn - 1

    def truncate_through(self, lsn: int) -> int:
        """Delete segments whose records are all at or before ``lsn``; returns bytes freed."""
        freed = 0
        segments = self.segments()
        firsts = [int(p.stem) for p in segments]
        for path, following in zip(segments, firsts[1:], strict=False):
            if following - 1 <= lsn and int(path.stem) != self._segment_first_lsn:
                freed += path.stat().st_size
                path.unlink()
        if freed:
            self._closed_bytes = None
            _fsync_directory(self.directory)
        return freed

    # ---- state ---------------------------------------------------------------------------------
    @property
    def last_lsn(self) -> int:
        return self._written_lsn

    @property
    def unsynced_bytes(self) -> int:
        return self._unsynced_bytes

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def size_bytes(self) -> int:
        """Bytes in all segments: the closed ones are counted once after each segment change (Health
        and the snapshot trigger ask often), the open one is tracked as it grows."""
        closed = self._closed_bytes
        if closed is None:
            closed = 0
            for path in self.segments():
                if self._fd is not None and int(path.stem) == self._segment_first_lsn:
                    continue
                try:
                    closed += path.stat().st_size
                except FileNotFoundError:
                    pass
            self._closed_bytes = closed
        return closed + (self._segment_size if self._fd is not None else 0)

    def close(self) -> None:
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        with self._cond:
            while self._writing:
                self._cond.wait()
            self._closed = True
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                finally:
                    os.close(self._fd)
                    self._fd = None
                    self._closed_bytes = None


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
