"""Map a GPU process (host PID) to the job, team and pod that own it.

Reads the process environment (``FACTORYLENS_JOB_ID``, ``FACTORYLENS_TEAM``, ``SLURM_JOB_ID``) and
its cgroup (Kubernetes pod UID) under an injectable ``/proc`` root, like prometheus client_python's
``ProcessCollector``, so tests run against a fixture tree.
"""

from __future__ import annotations

import abc
import os
import re
from collections.abc import Mapping

from factorylens.receivers.gpu.backend import AttributeMap
from factorylens.registry import Attributes

_POD_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})", re.IGNORECASE)
_ENVIRON_LIMIT_BYTES = 1 << 20


class JobResolver(abc.ABC):
    @abc.abstractmethod
    def resolve(self, pid: int) -> AttributeMap:
        """Registry attributes for the process (may be empty; never raises)."""

    def forget_except(self, live_pids: set[int]) -> None:  # noqa: B027 - an optional hook
        """Drop cached entries for processes that are gone (bounds memory)."""


class ProcJobResolver(JobResolver):
    def __init__(self, proc_root: str = "/proc") -> None:
        self._proc_root = proc_root
        self._cache: dict[int, AttributeMap] = {}

    def resolve(self, pid: int) -> AttributeMap:
        cached = self._cache.get(pid)
        if cached is None:
            cached = self._cache[pid] = self._read(pid)
        return cached

    def forget_except(self, live_pids: set[int]) -> None:
        for pid in [p for p in self._cache if p not in live_pids]:
            del self._cache[pid]

    def _read(self, pid: int) -> AttributeMap:
        base = os.path.join(self._proc_root, str(pid))
        attrs: dict[str, str] = {}
        comm = _read_text(os.path.join(base, "comm"))
        if comm:
            attrs[Attributes.PROCESS_EXECUTABLE_NAME] = comm.strip()
        env = _parse_environ(_read_bytes(os.path.join(base, "environ")))
        pod_uid = _pod_uid(_read_text(os.path.join(base, "cgroup")) or "")
        if pod_uid:
            attrs[Attributes.K8S_POD_UID] = pod_uid
        if env.get("SLURM_JOB_ID"):
            attrs[Attributes.SLURM_JOB_ID] = env["SLURM_JOB_ID"]
        if env.get("FACTORYLENS_TEAM"):
            attrs[Attributes.FACTORYLENS_TEAM] = env["FACTORYLENS_TEAM"]
        job = env.get("FACTORYLENS_JOB_ID") or env.get("SLURM_JOB_ID") or pod_uid
        if job:
            attrs[Attributes.FACTORYLENS_JOB_ID] = job
        return attrs


class StaticJobResolver(JobResolver):
    """A fixed pid → attributes table (the simulator's processes live in no /proc)."""

    def __init__(self, table: Mapping[int, AttributeMap]) -> None:
        self._table = table

    def resolve(self, pid: int) -> AttributeMap:
        return self._table.get(pid, {})


def _pod_uid(cgroup: str) -> str | None:
    match = _POD_UID.search(cgroup)
    return match.group(1).replace("_", "-").lower() if match else None


def _parse_environ(raw: bytes) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(_ENVIRON_LIMIT_BYTES)
    except OSError:  # gone, or not ours to read (needs hostPID / same user): attribution degrades
        return b""


def _read_text(path: str) -> str | None:
    raw = _read_bytes(path)
    return raw.decode(errors="replace") if raw else None
