"""Who used each GPU's time and energy: the counters GPU cost is computed from.

Each scrape, the time since the previous one is charged to the jobs holding each GPU (a job holds a GPU
while one of its processes is on it), weighted by their share: a MIG slice's compute fraction of its
GPU, split equally among the jobs time-slicing it. Time nobody holds is unallocated. Active time is
that share weighted by utilization (and by SM activity where GPM reports it); energy is the
``hw.energy`` increase split the same way. Integrating here, at the scrape rate, makes Prometheus's
``increase()`` and the RCA service's window sums exact for any range, whatever the scrape interval,
and survives counter resets (a restarted agent starts its counters again from zero).

Like ``hw.gpu.io``, these are counters this receiver integrates, so the backend (NVML, the simulator,
a recorded fixture) does not matter: the meter reads the scrape's own points.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from factorylens.gpus import mig_fraction
from factorylens.receivers.gpu.backend import Attributes, Point

JOB, TEAM = "factorylens.job.id", "factorylens.team"
ALLOCATION_TIME = "factorylens.gpu.allocation.time"
ACTIVE_TIME = "factorylens.gpu.active.time"
ALLOCATION_ENERGY = "factorylens.gpu.allocation.energy"


@dataclass
class _Device:
    last_s: float | None = None
    last_energy_j: float | None = None
    updated_s: float = 0.0


@dataclass
class UsageMeter:
    """Integrates allocation, activity and energy per GPU and job across scrapes.

    Args:
        attributes: added to every usage point (the cluster name from the resource).
        max_gap_s: a device unseen for longer is not charged for the gap (nobody knows who held it);
            its next scrape starts a new interval.
        forget_after_s: counters not charged for this long are dropped (ended jobs), bounding memory.
        max_counters: a hard bound on the counters kept; the least recently charged go first.
        clock: monotonic seconds (injectable for tests).
    """

    attributes: Mapping[str, Any] = field(default_factory=dict)
    max_gap_s: float = 300.0
    forget_after_s: float = 3600.0
    max_counters: int = 20_000
    clock: Callable[[], float] = time.monotonic
    _devices: dict[str, _Device] = field(default_factory=dict)
    _counters: dict[tuple[str, tuple[tuple[str, Any], ...]], list[float]] = field(default_factory=dict)

    def observe(self, points: list[Point]) -> list[Point]:
        """The usage counters after one scrape's ``points`` (all of them, every scrape)."""
        now = self.clock()
        identities: dict[str, Attributes] = {}
        allocated: dict[str, int] = {}
        utilization: dict[str, float] = {}
        sm_activity: dict[str, float] = {}
        energy: dict[str, float] = {}
        jobs: dict[str, set[tuple[str, str]]] = {}
        for point in points:
            gpu = point.attributes.get("hw.id")
            if not gpu:
                continue
            gpu = str(gpu)
            metric = point.metric
            if metric == "hw.gpu.allocated":
                allocated[gpu] = int(point.value)
                identities[gpu] = point.attributes
            elif metric == "hw.gpu.utilization" and point.attributes.get("hw.gpu.task", "general") == "general":
                utilization[gpu] = float(point.value)
            elif metric == "hw.gpu.sm.utilization":
                sm_activity[gpu] = float(point.value)
            elif metric == "hw.energy":
                energy[gpu] = float(point.value)
            elif metric == "process.gpu.memory.usage":
                job = str(point.attributes.get(JOB, ""))
                jobs.setdefault(gpu, set()).add((job, str(point.attributes.get(TEAM, ""))))
        parents = {str(a["hw.parent"]) for a in identities.values() if a.get("hw.parent")}
        for gpu, identity in identities.items():
            if gpu in parents:  # a GPU in MIG mode is charged through its slices
                continue
            parent = str(identity.get("hw.parent") or "")
            self._charge(
                now,
                gpu,
                identity,
                held=allocated[gpu] > 0,
                jobs=jobs.get(gpu, set()),
                utilization=utilization.get(gpu),
                sm_activity=sm_activity.get(gpu),
                energy_j=energy.get(parent or gpu),
            )
        self._forget(now)
        return [Point(metric, total[0], dict(attrs)) for (metric, attrs), total in self._counters.items()]

    def _charge(
        self,
        now: float,
        gpu: str,
        identity: Attributes,
        *,
        held: bool,
        jobs: set[tuple[str, str]],
        utilization: float | None,
        sm_activity: float | None,
        energy_j: float | None,
    ) -> None:
        device = self._devices.get(gpu)
        if device is None:
            device = self._devices[gpu] = _Device()
        previous_s, previous_energy = device.last_s, device.last_energy_j
        device.last_s, device.updated_s = now, now
        if energy_j is not None:
            device.last_energy_j = energy_j
        if previous_s is None or not 0 < now - previous_s <= self.max_gap_s:
            return
        dt = now - previous_s
        profile = identity.get("gpu.mig.profile")
        fraction = mig_fraction(str(identity.get("hw.name", "")), str(profile)) if profile else 1.0
        energy_delta = 0.0
        if energy_j is not None and previous_energy is not None and energy_j >= previous_energy:
            energy_delta = (energy_j - previous_energy) * fraction
        if not held:
            unallocated = {"factorylens.allocation.state": "unallocated"}
            self._add(ALLOCATION_TIME, identity, unallocated, dt * fraction, now)
            self._add(ALLOCATION_ENERGY, identity, unallocated, energy_delta, now)
            return
        holders = sorted(jobs) or [("", "")]  # a process whose job is unknown still holds the GPU
        share = fraction / len(holders)
        for job, team in holders:
            who = {k: v for k, v in ((JOB, job), (TEAM, team)) if v}
            state = {**who, "factorylens.allocation.state": "allocated"}
            self._add(ALLOCATION_TIME, identity, state, dt * share, now)
            self._add(ALLOCATION_ENERGY, identity, state, energy_delta / len(holders), now)
            if utilization is not None:
                busy = min(1.0, max(0.0, utilization))
                self._add(
                    ACTIVE_TIME, identity, {**who, "factorylens.cost.basis": "utilization"}, dt * share * busy, now
                )
            if sm_activity is not None:
                busy = min(1.0, max(0.0, sm_activity))
                self._add(
                    ACTIVE_TIME, identity, {**who, "factorylens.cost.basis": "sm_activity"}, dt * share * busy, now
                )

    def _add(self, metric: str, identity: Attributes, extra: Mapping[str, Any], amount: float, now: float) -> None:
        key = (metric, tuple(sorted({**identity, **self.attributes, **extra}.items())))
        total = self._counters.get(key)
        if total is None:
            if len(self._counters) >= self.max_counters:
                oldest = min(self._counters, key=lambda k: self._counters[k][1])
                del self._counters[oldest]
            total = self._counters[key] = [0.0, now]
        total[0] += amount
        total[1] = now

    def _forget(self, now: float) -> None:
        stale = [key for key, (_, charged) in self._counters.items() if now - charged > self.forget_after_s]
        for key in stale:
            del self._counters[key]
        for gpu in [g for g, d in self._devices.items() if now - d.updated_s > self.forget_after_s]:
            del self._devices[gpu]
