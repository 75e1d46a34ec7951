"""Per-mount storage throughput, operations and latency, and space used.

- local block devices (NVMe, SATA): ``<proc>/diskstats`` (sectors of 512 bytes, completed ops, ms
  spent), matched to mounts through ``<proc>/self/mounts``;
- NFS clients: ``<proc>/self/mountstats`` per-op statistics (READ/WRITE: ops, bytes, execute ms);
- Lustre clients: ``<proc>/fs/lustre/llite/<fsname>-<id>/stats`` (read_bytes / write_bytes: samples
  and sum of bytes; Lustre's client stats carry no latency);
- space: ``statvfs`` of each mount point (injectable).

Only file systems that hold data are watched (``WATCHED_TYPES``); the proc root is injectable so tests
read fixture trees. Counter resets (remounts) are stitched.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from factorylens.receivers.node._source import Counters, NodeSource, Points, SourceUnavailable, add
from factorylens.registry import Attributes, Metrics

log = logging.getLogger(__name__)

SECTOR_BYTES = 512
WATCHED_TYPES = frozenset(
    {"ext4", "xfs", "btrfs", "zfs", "nfs", "nfs4", "lustre", "beegfs", "gpfs", "wekafs", "cephfs", "fuse.juicefs"}
)
NFS_TYPES = frozenset({"nfs", "nfs4"})


_OCTAL = re.compile(rb"\\([0-7]{3})")


def unescape(path: str) -> str:
    """The kernel writes space, tab, newline and backslash in mount paths as octal escapes (\\040)."""
    raw = path.encode("utf-8", "surrogateescape")
    return _OCTAL.sub(lambda m: bytes([int(m[1], 8)]), raw).decode("utf-8", "replace")


def parse_mounts(text: str) -> list[tuple[str, str, str]]:
    """``[(device, mount point, type)]`` from a mounts file; a mount point mounted over keeps the last."""
    mounts: dict[str, tuple[str, str, str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            mountpoint = unescape(fields[1])
            mounts.pop(mountpoint, None)
            mounts[mountpoint] = (unescape(fields[0]), mountpoint, fields[2])
    return list(mounts.values())


def parse_diskstats(text: str) -> dict[str, tuple[int, int, int, int, int, int]]:
    """device → (read ops, read sectors, read ms, write ops, write sectors, write ms)."""
    stats = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 11:
            stats[f[2]] = (int(f[3]), int(f[5]), int(f[6]), int(f[7]), int(f[9]), int(f[10]))
    return stats


def parse_nfs_mountstats(text: str) -> dict[str, dict[str, tuple[int, int, int]]]:
    """mount point → {"READ"/"WRITE": (ops, payload bytes, execute ms)}."""
    result: dict[str, dict[str, tuple[int, int, int]]] = {}
    current: str | None = None
    in_ops = False
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith("device "):
            fields = line.split()
            current = unescape(fields[4]) if len(fields) > 7 and fields[3] == "on" and fields[7] in NFS_TYPES else None
            in_ops = False
        elif current and stripped == "per-op statistics":
            in_ops = True
        elif current and in_ops and stripped.startswith(("READ:", "WRITE:")):
            op, values = stripped.split(":", 1)
            v = [int(x) for x in values.split()]
            if len(v) >= 8:  # ops trans timeouts bytes_sent bytes_recv queue rtt execute
                payload = v[4] if op == "READ" else v[3]
                result.setdefault(current, {})[op] = (v[0], payload, v[7])
    return result


def parse_lustre_stats(text: str) -> dict[str, tuple[int, int]]:
    """{"read"/"write": (ops, bytes)} from an llite ``stats`` file."""
    result = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 7 and f[0] in ("read_bytes", "write_bytes"):
            result[f[0].split("_")[0]] = (int(f[1]), int(f[6]))
    return result


class StorageSource(NodeSource):
    name = "storage"

    def __init__(
        self, proc_root: str = "/proc", statvfs: Callable[[str], Any] = os.statvfs, statvfs_timeout_s: float = 1.0
    ) -> None:
        self.proc = Path(proc_root)
        # in a container (proc_root = the host's /proc, hostPID), the node's mounts are those of its
        # init process, and its file systems are reached through that process's root
        self._namespace = "1" if proc_root != "/proc" and (self.proc / "1").is_dir() else "self"
        self._root = self.proc / "1" / "root" if self._namespace == "1" else None
        self._statvfs = statvfs
        self._statvfs_timeout_s = statvfs_timeout_s
        self._pending: dict[str, concurrent.futures.Future] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="statvfs")
        self._counters = Counters()

    def _text(self, *parts: str) -> str | None:
        try:
            return self.proc.joinpath(*parts).read_text()
        except OSError:
            return None

    def read(self) -> Points:
        mounts_text = self._text(self._namespace, "mounts") or self._text("mounts")
        if mounts_text is None:
            raise SourceUnavailable(f"cannot read {self.proc}/{self._namespace}/mounts")
        mounts = [(d, m, t) for d, m, t in parse_mounts(mounts_text) if t in WATCHED_TYPES]
        diskstats = parse_diskstats(self._text("diskstats") or "")
        nfs = parse_nfs_mountstats(self._text(self._namespace, "mountstats") or "")
        points: Points = {}
        counted_devices: set[str] = set()
        for device, mountpoint, fstype in mounts:
            base = {Attributes.SYSTEM_FILESYSTEM_MOUNTPOINT: mountpoint, Attributes.SYSTEM_FILESYSTEM_TYPE: fstype}
            if fstype in NFS_TYPES and mountpoint in nfs:
                for op, direction in (("READ", "read"), ("WRITE", "write")):
                    ops, size, ms = nfs[mountpoint].get(op, (0, 0, 0))
                    self._io(points, base, direction, ops, size, ms / 1000.0)
            elif fstype == "lustre":
                self._lustre(points, base, device)
            elif (
                device.startswith("/dev/") and Path(device).name in diskstats and device not in counted_devices
            ):  # a device mounted twice (bind mounts) counts once
                counted_devices.add(device)
                r_ops, r_sectors, r_ms, w_ops, w_sectors, w_ms = diskstats[Path(device).name]
                self._io(points, base, "read", r_ops, r_sectors * SECTOR_BYTES, r_ms / 1000.0)
                self._io(points, base, "write", w_ops, w_sectors * SECTOR_BYTES, w_ms / 1000.0)
            self._space(points, base, mountpoint)
        return points

    def _io(
        self, points: Points, base: dict[str, Any], direction: str, ops: int, size: int, seconds: float | None
    ) -> None:
        labels = {**base, Attributes.DISK_IO_DIRECTION: direction}
        key = (base[Attributes.SYSTEM_FILESYSTEM_MOUNTPOINT], direction)
        add(points, Metrics.FACTORYLENS_STORAGE_OPERATIONS, labels, int(self._counters.total((*key, "ops"), ops)))
        add(points, Metrics.FACTORYLENS_STORAGE_IO, labels, int(self._counters.total((*key, "bytes"), size)))
        if seconds is not None:
            add(points, Metrics.FACTORYLENS_STORAGE_OPERATION_TIME, labels, self._counters.total((*key, "s"), seconds))

    def _lustre(self, points: Points, base: dict[str, Any], device: str) -> None:
        fsname = device.rsplit(":/", 1)[-1].strip("/")
        llite = self.proc / "fs" / "lustre" / "llite"
        instances = [
            i
            for i in sorted(llite.glob(f"{fsname}-*"))
            if llite.is_dir() and all(c in "0123456789abcdef" for c in i.name[len(fsname) + 1 :])
        ]  # not "scratch-2-…"
        for instance in instances:
            stats = parse_lustre_stats(self._text("fs", "lustre", "llite", instance.name, "stats") or "")
            for direction in ("read", "write"):
                ops, size = stats.get(direction, (0, 0))
                self._io(points, base, direction, ops, size, None)
            return

    def _space(self, points: Points, base: dict[str, Any], mountpoint: str) -> None:
        """statvfs on a worker with a deadline: on a hung hard-mounted NFS server it blocks for good, and
        the scrape (GPUs included) must not. A mount whose last call has not returned is skipped."""
        pending = self._pending.get(mountpoint)
        if pending is not None and not pending.done():
            return
        path = str(self._root / mountpoint.lstrip("/")) if self._root is not None else mountpoint
        future = self._pending[mountpoint] = self._pool.submit(self._statvfs, path)
        try:
            st = future.result(timeout=self._statvfs_timeout_s)
        except (OSError, concurrent.futures.TimeoutError):
            return  # unreachable or hung: the I/O counters above still tell
        total = st.f_blocks * st.f_frsize
        free = st.f_bavail * st.f_frsize
        used = total - st.f_bfree * st.f_frsize
        add(points, Metrics.SYSTEM_FILESYSTEM_USAGE, {**base, Attributes.SYSTEM_FILESYSTEM_STATE: "used"}, used)
        add(points, Metrics.SYSTEM_FILESYSTEM_USAGE, {**base, Attributes.SYSTEM_FILESYSTEM_STATE: "free"}, free)
        if used + free:
            add(points, Metrics.SYSTEM_FILESYSTEM_UTILIZATION, base, used / (used + free))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
