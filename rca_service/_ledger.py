"""The cost inputs' running sums, per series and time bucket, read from the store incrementally.

Each update reads only the points that arrived since the last one (:meth:`SeriesStore.tails`), turns
counters into increases (a drop or a new start time is a reset: the count starts again from zero)
and adds them into two rings of buckets per series: hours over the live window, minutes over the
waste window. A window's sum is then a sum of buckets, so the live cost figures of thousands of
GPUs cost about a store read of a few new points per series per update, not a read of the window.
Windows are resolved to the bucket: the live figures cover the last ``window`` to the hour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from factorylens.processors.cost import JobOutput, UsageRow
from factorylens.rca_service.store import SeriesInfo, SeriesKind, SeriesStore
from factorylens.registry import Attributes, Metrics

NS = 1_000_000_000
JOB, TEAM, CLUSTER = Attributes.FACTORYLENS_JOB_ID, Attributes.FACTORYLENS_TEAM, Attributes.FACTORYLENS_CLUSTER_NAME
ALLOCATION_TIME = Metrics.FACTORYLENS_GPU_ALLOCATION_TIME
ACTIVE_TIME = Metrics.FACTORYLENS_GPU_ACTIVE_TIME
ALLOCATION_ENERGY = Metrics.FACTORYLENS_GPU_ALLOCATION_ENERGY
OUTPUT_COUNTERS = {Metrics.FACTORYLENS_TRAIN_SAMPLES: "samples", Metrics.FACTORYLENS_TRAIN_TOKENS: "tokens"}
MFU = Metrics.FACTORYLENS_TRAIN_MFU
USAGE_METRICS = (ALLOCATION_TIME, ACTIVE_TIME, ALLOCATION_ENERGY)
_VECTOR_FROM = 32  # new points per series above which a read is processed with numpy


def usage_field(info: SeriesInfo) -> str:
    """Which :class:`UsageRow` field a usage counter adds to."""
    a = info.attributes
    unallocated = a.get(Attributes.FACTORYLENS_ALLOCATION_STATE) == "unallocated"
    if info.metric == ACTIVE_TIME:
        return "active_sm_s" if a.get(Attributes.FACTORYLENS_COST_BASIS) == "sm_activity" else "active_s"
    if info.metric == ALLOCATION_TIME:
        return "unallocated_s" if unallocated else "allocated_s"
    return "unallocated_energy_j" if unallocated else "energy_j"


def usage_key(info: SeriesInfo) -> tuple[str, str, str, str, str, str, bool]:
    """(GPU, GPU name, job, team, cluster, host, unallocated) of a usage counter. Unallocated time has no
    job, and its own row: a process of no known job holding the GPU is not the GPU being free."""
    a = info.attributes
    unallocated = a.get(Attributes.FACTORYLENS_ALLOCATION_STATE) == "unallocated"
    job, team = ("", "") if unallocated else (str(a.get(JOB, "")), str(a.get(TEAM, "")))
    cluster = str(a.get(CLUSTER) or info.resource.get(CLUSTER) or info.resource.get(Attributes.K8S_CLUSTER_NAME) or "")
    host = str(info.resource.get(Attributes.HOST_NAME, ""))
    return (str(a.get(Attributes.HW_ID, "")), str(a.get(Attributes.HW_NAME, "")), job, team, cluster, host, unallocated)


def job_of(info: SeriesInfo) -> str:
    return str(info.attributes.get(JOB) or info.resource.get(JOB) or "")


class _Ring:
    """Per entry, ``slots`` buckets of ``bucket_s`` each: a value and the bucket each slot holds now."""

    def __init__(self, bucket_s: float, window_s: float) -> None:
        self.bucket_ns = int(bucket_s * NS)
        self.slots = int(math.ceil(window_s / bucket_s)) + 1
        self.values = np.zeros((0, self.slots))
        self.buckets = np.full((0, self.slots), -1, dtype=np.int64)

    def grow(self, rows: int) -> None:
        if rows > len(self.values):
            size = max(rows, 2 * len(self.values), 64)
            values, buckets = np.zeros((size, self.slots)), np.full((size, self.slots), -1, dtype=np.int64)
            values[: len(self.values)], buckets[: len(self.buckets)] = self.values, self.buckets
            self.values, self.buckets = values, buckets

    def clear(self, row: int) -> None:
        self.values[row] = 0.0
        self.buckets[row] = -1

    def add(self, row: int, ts: int, amount: float) -> None:
        bucket = ts // self.bucket_ns
        slot = bucket % self.slots
        if self.buckets[row, slot] != bucket:
            if self.buckets[row, slot] > bucket:  # older than the ring holds
                return
            self.buckets[row, slot] = bucket
            self.values[row, slot] = 0.0
        self.values[row, slot] += amount

    def add_many(self, row: int, buckets: np.ndarray, amounts: np.ndarray) -> None:
        """:meth:`add` for distinct buckets that fit in the ring (one per slot), in one numpy step."""
        slots = buckets % self.slots
        held = self.buckets[row, slots]
        newer, same = buckets > held, buckets == held
        self.values[row, slots[newer]] = amounts[newer]
        self.buckets[row, slots[newer]] = buckets[newer]
        self.values[row, slots[same]] += amounts[same]

    def sums(self, start_ns: int, end_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """Per entry, the sum of the buckets that start in [start_ns, end_ns], and whether it had any."""
        inside = (self.buckets >= start_ns // self.bucket_ns) & (self.buckets <= end_ns // self.bucket_ns)
        return (self.values * inside).sum(axis=1), np.asarray(inside.any(axis=1))


@dataclass
class _Entry:
    row: int
    kind: str  # a UsageRow field, "samples", "tokens", or "mfu"
    key: tuple[Any, ...]
    last_ts: int
    last_value: float | None = None


class UsageLedger:
    """Usage and output sums per series over a live window (hour buckets) and a short one (minutes)."""

    def __init__(self, window_s: float, short_window_s: float, *, short_bucket_s: float = 60.0) -> None:
        self.window_s = window_s
        self.short_window_s = short_window_s
        self._long = _Ring(3600.0, window_s)
        self._short = _Ring(short_bucket_s, short_window_s)
        self._counts_long = _Ring(3600.0, window_s)  # gauges (MFU): points per bucket, for the mean
        self._entries: dict[str, _Entry] = {}
        self._free: list[int] = []
        self._rows = 0

    def __len__(self) -> int:
        return len(self._entries)

    def advance(self, store: SeriesStore, now_ns: int) -> None:
        """Read what arrived since the last call (the whole live window the first time)."""
        first_ns = now_ns - int(self.window_s * NS)
        for metric in (*USAGE_METRICS, *OUTPUT_COUNTERS, MFU):
            for info in store.of_metric(metric):
                if info.id not in self._entries:
                    self._track(info, first_ns)
        ids = list(self._entries)
        results = store.tails((sid, self._entries[sid].last_ts) for sid in ids)
        for sid, result in zip(ids, results, strict=True):
            entry = self._entries[sid]
            if result is None:
                self._forget(sid)
                continue
            info, ts, values, starts = result
            if len(ts):
                self._take(entry, ts, values, starts, delta=info.kind is SeriesKind.DELTA)

    def _track(self, info: SeriesInfo, first_ns: int) -> None:
        key: tuple[Any, ...]
        if info.metric in USAGE_METRICS:
            kind, key = usage_field(info), usage_key(info)
        elif info.metric == MFU:
            kind, key = "mfu", (job_of(info),)
        else:
            kind, key = OUTPUT_COUNTERS[info.metric], (job_of(info),)
        if self._free:
            row = self._free.pop()
        else:
            row, self._rows = self._rows, self._rows + 1
            for ring in (self._long, self._short, self._counts_long):
                ring.grow(self._rows)
        for ring in (self._long, self._short, self._counts_long):
            ring.clear(row)
        self._entries[info.id] = _Entry(row, kind, key, first_ns)

    def _forget(self, sid: str) -> None:
        entry = self._entries.pop(sid)
        self._free.append(entry.row)

    def _take(
        self, entry: _Entry, ts: Sequence[int], values: Sequence[float], starts: list[int], *, delta: bool = False
    ) -> None:
        """Add the new points: a gauge's values, a delta counter's values (each is an increase), a
        cumulative counter's increases between points."""
        if len(ts) > _VECTOR_FROM:
            array_ts, array_values = np.asarray(ts, dtype=np.int64), np.asarray(values, dtype=np.float64)
            self._take_many(entry, array_ts, array_values, starts, delta=delta)
            return
        previous_ts, previous = entry.last_ts, entry.last_value
        times: list[int] = []
        amounts: list[float] = []
        if entry.kind == "mfu" or delta:
            for t, v in zip(ts, values, strict=True):
                if math.isfinite(v):
                    times.append(t)
                    amounts.append(v)
            if entry.kind == "mfu":
                self._add(self._counts_long, entry.row, times, [1.0] * len(times))
        else:
            for t, v in zip(ts, values, strict=True):
                if not math.isfinite(v):
                    continue
                if previous is not None:
                    reset = v < previous or (starts and any(previous_ts < s <= t for s in starts))
                    times.append(t)  # zeros too: an idle GPU's active time was measured
                    amounts.append(v if reset else v - previous)
                previous, previous_ts = v, t
        self._add(self._long, entry.row, times, amounts)
        self._add(self._short, entry.row, times, amounts)
        entry.last_ts, entry.last_value = int(ts[-1]), previous

    def _take_many(
        self, entry: _Entry, ts: np.ndarray, values: np.ndarray, starts: list[int], *, delta: bool = False
    ) -> None:
        """:meth:`_take` for a long stretch (the first read of a window), with numpy."""
        last_ts = int(ts[-1])
        finite = np.isfinite(values)
        ts, values = ts[finite], values[finite]
        if entry.kind == "mfu" or delta:
            if entry.kind == "mfu":
                self._add_many(self._counts_long, entry.row, ts, np.ones(len(ts)))
            times, amounts = ts, values
        else:
            if entry.last_value is not None:
                before_ts = np.concatenate(([entry.last_ts], ts[:-1]))
                before = np.concatenate(([entry.last_value], values[:-1]))
                times, now = ts, values
            else:
                before_ts, before, times, now = ts[:-1], values[:-1], ts[1:], values[1:]
            reset = now < before
            for start in starts:
                reset |= (before_ts < start) & (start <= times)
            amounts = np.where(reset, now, now - before)
            if len(values):
                entry.last_value = float(values[-1])
        self._add_many(self._long, entry.row, times, amounts)
        self._add_many(self._short, entry.row, times, amounts)
        entry.last_ts = last_ts

    @staticmethod
    def _add_many(ring: _Ring, row: int, times: np.ndarray, amounts: np.ndarray) -> None:
        if not len(times):
            return
        buckets = times // ring.bucket_ns
        keep = buckets > buckets[-1] - ring.slots  # what the ring can hold
        times, amounts, buckets = times[keep], amounts[keep], buckets[keep]
        if not len(times):
            return
        edges = np.concatenate(([0], np.flatnonzero(np.diff(buckets)) + 1))
        ring.add_many(row, buckets[edges], np.add.reduceat(amounts, edges))

    @staticmethod
    def _add(ring: _Ring, row: int, times: list[int], amounts: list[float]) -> None:
        """Add into the ring, one call per bucket (a minute of scrapes usually falls in one)."""
        if not times:
            return
        bucket_ns = ring.bucket_ns
        first, total = times[0], 0.0
        bucket = first // bucket_ns
        for t, amount in zip(times, amounts, strict=True):
            if t // bucket_ns != bucket:
                ring.add(row, first, total)
                first, total, bucket = t, 0.0, t // bucket_ns
            total += amount
        ring.add(row, first, total)

    def held_share(self, start_ns: int, end_ns: int) -> dict[str, float]:
        """Per job, the share of the short window from the first to the last bucket in which it held a
        GPU (had allocated time): how long it has held its GPUs, in clock time whatever the counters say
        (a simulated cluster's GPU-seconds run faster than the clock)."""
        ring = self._short
        first, last = start_ns // ring.bucket_ns + 1, end_ns // ring.bucket_ns  # whole buckets only
        if last < first:
            return {}
        spans: dict[str, tuple[int, int]] = {}  # job -> first and last bucket with allocated time
        for entry in self._entries.values():
            if entry.kind != "allocated_s" or not entry.key[2]:
                continue
            buckets = ring.buckets[entry.row]
            inside = buckets[(buckets >= first - 1) & (buckets <= last) & (ring.values[entry.row] > 0)]
            if len(inside):
                low, high = spans.get(entry.key[2], (last + 1, first - 2))
                spans[entry.key[2]] = (min(low, int(inside.min())), max(high, int(inside.max())))
        return {job: (high - max(low, first - 1)) / (last - first + 1) for job, (low, high) in spans.items()}

    def rows(self, start_ns: int, end_ns: int, *, short: bool = False) -> tuple[list[UsageRow], dict[str, JobOutput]]:
        """Usage rows and job outputs over [start_ns, end_ns], to the bucket of the ring asked for."""
        ring = self._short if short else self._long
        sums, present = ring.sums(start_ns, end_ns)
        counts = self._counts_long.sums(start_ns, end_ns)[0] if not short else None
        usage: dict[tuple[Any, ...], dict[str, float]] = {}
        outputs: dict[str, dict[str, float]] = {}
        for entry in self._entries.values():
            if not present[entry.row]:
                continue
            value = float(sums[entry.row])
            if entry.kind == "mfu":
                if counts is not None and counts[entry.row] > 0:
                    job = outputs.setdefault(entry.key[0], {})
                    job["mfu_sum"] = job.get("mfu_sum", 0.0) + value / counts[entry.row]
                    job["mfu_n"] = job.get("mfu_n", 0.0) + 1
            elif entry.kind in ("samples", "tokens"):
                job = outputs.setdefault(entry.key[0], {})
                job[entry.kind] = job.get(entry.kind, 0.0) + value
            else:
                fields = usage.setdefault(entry.key, {})
                fields[entry.kind] = fields.get(entry.kind, 0.0) + value
        rows = [
            UsageRow(gpu, name, job, team, cluster, host, **fields)
            for (gpu, name, job, team, cluster, host, _), fields in usage.items()
        ]
        jobs = {
            job: JobOutput(v.get("samples"), v.get("tokens"), v["mfu_sum"] / v["mfu_n"] if v.get("mfu_n") else None)
            for job, v in outputs.items()
            if job
        }
        return rows, jobs
