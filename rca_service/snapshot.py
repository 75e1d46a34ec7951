"""Store snapshots: the state up to a WAL LSN, so the log before it can be deleted.

A snapshot is written to a temporary file, fsynced, checksummed and renamed into place, so a crash
leaves either the old or the new one. The previous snapshot is kept as a fallback, and the service
keeps the WAL back to it. Snapshots are
pickles of our own objects in the service's private data directory: never load one from elsewhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAGIC = b"FLSNAP1\n"
KEEP = 2


def _path(directory: Path, lsn: int) -> Path:
    return directory / f"snapshot-{lsn:020d}.pkl"


def write_snapshot(directory: str | os.PathLike, lsn: int, state: Any) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    final = _path(directory, lsn)
    tmp = final.with_suffix(".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC)
            f.write(hashlib.sha256(payload).digest())
            f.write(payload)
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


def load_latest(directory: str | os.PathLike) -> tuple[int, Any]:
    """``(lsn, state)`` of the newest readable snapshot, or ``(0, None)``."""
    directory = Path(directory)
    for stale in directory.glob("snapshot-*.tmp"):
        stale.unlink()
    for path in sorted(directory.glob("snapshot-*.pkl"), reverse=True):
        try:
            data = path.read_bytes()
            digest, payload = data[len(MAGIC):len(MAGIC) + 32], data[len(MAGIC) + 32:]
            if not data.startswith(MAGIC) or hashlib.sha256(payload).digest() != digest:
                raise ValueError("checksum mismatch")
            return int(path.stem.split("-")[1]), pickle.loads(payload)
        except (OSError, ValueError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
            log.error("snapshot %s is unreadable (%s); set aside as .bad, trying the older one (the WAL "
                      "reaches back to it)", path.name, exc)
            path.rename(path.with_suffix(".bad"))
    return 0, None
