"""Store snapshots: the state up to a WAL LSN, so the log before it can be deleted.

A snapshot is written to a temporary file, fsynced, checksummed and renamed into place, so a crash
leaves either the old or the new one. The previous snapshot is kept as a fallback, and the service
keeps the WAL back to it. The state is pickled in pieces (long lists in chunks of ``CHUNK_ITEMS``),
each written as it is made: one ``pickle.dumps`` of a large store holds the GIL for as long as it
takes, which would stall every export and Health call meanwhile. Snapshots are pickles of our own
objects in the service's private data directory: never load one from elsewhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAGIC_V1 = b"FLSNAP1\n"  # one pickle after the checksum (read only)
MAGIC = b"FLSNAP2\n"  # length-prefixed pieces, the checksum of them all at the end
KEEP = 2
CHUNK_ITEMS = 2000


def _path(directory: Path, lsn: int) -> Path:
    return directory / f"snapshot-{lsn:020d}.pkl"


def _pieces(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, tuple[str, ...], Any]]:
    """``("set" | "extend", key path, value)`` steps that rebuild ``value``: dicts are walked, long
    lists are cut into chunks."""
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        yield "set", path, {}
        for key, item in value.items():
            yield from _pieces(item, (*path, key))
    elif isinstance(value, list) and len(value) > CHUNK_ITEMS:
        yield "set", path, []
        for start in range(0, len(value), CHUNK_ITEMS):
            yield "extend", path, value[start : start + CHUNK_ITEMS]
    else:
        yield "set", path, value


def _rebuild(steps: Iterator[tuple[str, tuple[str, ...], Any]]) -> Any:
    root: dict[str, Any] = {"": None}
    for op, path, value in steps:
        parent, key = root, ""
        for part in path:
            parent, key = parent[key], part
        if op == "set":
            parent[key] = value
        else:
            parent[key].extend(value)
    return root[""]


def write_snapshot(directory: str | os.PathLike[str], lsn: int, state: Any) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = _path(directory, lsn)
    tmp = final.with_suffix(".tmp")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC)
            for step in _pieces(state):
                data = pickle.dumps(step, protocol=pickle.HIGHEST_PROTOCOL)
                record = len(data).to_bytes(8, "little") + data
                digest.update(record)
                f.write(record)
                time.sleep(0)  # let export and API threads run between pieces
            f.write((0).to_bytes(8, "little") + digest.digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk must not be filled further by half-written snapshots
        raise
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for old in sorted(directory.glob("snapshot-*.pkl"))[:-KEEP]:
        old.unlink()
    return final


def _read(data: bytes) -> Any:
    if data.startswith(MAGIC_V1):
        digest, payload = data[len(MAGIC_V1) : len(MAGIC_V1) + 32], data[len(MAGIC_V1) + 32 :]
        if hashlib.sha256(payload).digest() != digest:
            raise ValueError("checksum mismatch")
        return pickle.loads(payload)
    if not data.startswith(MAGIC):
        raise ValueError("not a snapshot")
    if len(data) < len(MAGIC) + 40 or data[-40:-32] != bytes(8):
        raise ValueError("truncated")
    body = memoryview(data)[len(MAGIC) : -40]
    if hashlib.sha256(body).digest() != data[-32:]:
        raise ValueError("checksum mismatch")

    def steps() -> Iterator[Any]:
        offset = 0
        while offset < len(body):
            size = int.from_bytes(body[offset : offset + 8], "little")
            yield pickle.loads(body[offset + 8 : offset + 8 + size])
            offset += 8 + size

    return _rebuild(steps())


def load_latest(directory: str | os.PathLike[str]) -> tuple[int, Any]:
    """``(lsn, state)`` of the newest readable snapshot, or ``(0, None)``."""
    directory = Path(directory)
    for stale in directory.glob("snapshot-*.tmp"):
        stale.unlink()
    for path in sorted(directory.glob("snapshot-*.pkl"), reverse=True):
        try:
            return int(path.stem.split("-")[1]), _read(path.read_bytes())
        except (
            OSError,
            ValueError,
            pickle.UnpicklingError,
            EOFError,
            AttributeError,
            KeyError,
            TypeError,
            IndexError,
        ) as exc:
            log.error(
                "snapshot %s is unreadable (%s); set aside as .bad, trying the older one (the WAL reaches back to it)",
                path.name,
                exc,
            )
            path.rename(path.with_suffix(".bad"))
    return 0, None
