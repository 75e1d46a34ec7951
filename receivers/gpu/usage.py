"""Who used each GPU's time and energy: the counters GPU cost is computed from.

Each scrape, the time since the previous one is charged to the jobs that held each GPU at its start
(a job holds a GPU while one of its processes is on it), weighted by their share: a MIG slice's
compute fraction of its GPU, split equally among the jobs time-slicing it. Time nobody holds is
unallocated. Active time is that share weighted by utilization (and by SM activity where GPM reports it); energy is the
``hw.energy`` increase split the same way. Integrating here, at the scrape rate, makes Prometheus's
``increase()`` and the RCA service's window sums exact for any range, whatever the scrape interval,
and survives counter resets (a restarted agent starts its counters again from zero).

Like ``hw.gpu.io``, these are counters this receiver integrates, so the backend (NVML, the simulator,
a recorded fixture) does not matter: the meter reads the scrape's own points.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from factorylens.gpus import mig_fraction
from factorylens.receivers.gpu.backend import AttributeMap, Point
from factorylens.registry import Attributes, Metrics

JOB, TEAM = Attributes.FACTORYLENS_JOB_ID, Attributes.FACTORYLENS_TEAM
ALLOCATION_TIME = Metrics.FACTORYLENS_GPU_ALLOCATION_TIME
ACTIVE_TIME = Metrics.FACTORYLENS_GPU_ACTIVE_TIME
ALLOCATION_ENERGY = Metrics.FACTORYLENS_GPU_ALLOCATION_ENERGY


@dataclass
class _Device:
    last_s: float | None = None
    last_energy_j: float | None = None
    updated_s: float = 0.0
    holders: list[tuple[str, str]] | None = None  # who held it at the last scrape (None: nobody)


@dataclass
class UsageMeter:
    """Integrates allocation, activity and energy per GPU and job across scrapes.

    Each interval is charged to whoever held the GPU at its start (the previous scrape), with the
    utilization and energy read at its end (they describe the interval). A new holder's counters
    appear at zero, so ``increase()`` and the RCA service count every interval from the first.

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
        identities: dict[str, AttributeMap] = {}
        allocated: dict[str, bool] = {}
        utilization: dict[str, float] = {}
        sm_activity: dict[str, float] = {}
        energy: dict[str, float] = {}
        jobs: dict[str, set[tuple[str, str]]] = {}
        for point in points:
            gpu = point.attributes.get(Attributes.HW_ID)
            if not gpu:
                continue
            gpu = str(gpu)
            metric = point.metric
            value = float(point.value)
            if metric == Metrics.HW_GPU_ALLOCATED:
                allocated[gpu] = value > 0  # NaN: not held
                identities[gpu] = point.attributes
            elif (
                metric == Metrics.HW_GPU_UTILIZATION
                and point.attributes.get(Attributes.HW_GPU_TASK, "general") == "general"
            ):
                utilization[gpu] = value
            elif metric == Metrics.HW_GPU_SM_UTILIZATION:
                sm_activity[gpu] = value
            elif metric == Metrics.HW_ENERGY:
                energy[gpu] = value
            elif metric == Metrics.PROCESS_GPU_MEMORY_USAGE:
                job = str(point.attributes.get(JOB, ""))
                jobs.setdefault(gpu, set()).add((job, str(point.attributes.get(TEAM, ""))))
        parents = {str(a[Attributes.HW_PARENT]) for a in identities.values() if a.get(Attributes.HW_PARENT)}
        for gpu, identity in identities.items():
            if gpu in parents:  # a GPU in MIG mode is charged through its slices
                continue
            parent = str(identity.get(Attributes.HW_PARENT) or "")
            held = allocated[gpu]
            self._charge(
                now,
                gpu,
                identity,
                holders=(sorted(jobs.get(gpu, ())) or [("", "")]) if held else None,
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
        identity: AttributeMap,
        *,
        holders: list[tuple[str, str]] | None,
        utilization: float | None,
        sm_activity: float | None,
        energy_j: float | None,
    ) -> None:
        """Charge the interval since the last scrape to the holders then; open the counters of the
        holders now (at zero) so that their first interval is counted too."""
        device = self._devices.get(gpu)
        if device is None:
            device = self._devices[gpu] = _Device()
        previous_s, previous_energy, previous_holders = device.last_s, device.last_energy_j, device.holders
        device.last_s, device.updated_s, device.holders = now, now, holders
        if energy_j is not None and math.isfinite(energy_j):
            device.last_energy_j = energy_j
        profile = identity.get(Attributes.GPU_MIG_PROFILE)
        fraction = mig_fraction(str(identity.get(Attributes.HW_NAME, "")), str(profile)) if profile else 1.0
        measured = {"utilization": utilization, "sm_activity": sm_activity}
        dt = now - previous_s if previous_s is not None else 0.0
        charged = 0 < dt <= self.max_gap_s
        if charged:
            energy_delta = 0.0
            if energy_j is not None and previous_energy is not None and energy_j >= previous_energy:
                energy_delta = (energy_j - previous_energy) * fraction
            if previous_holders is None:
                unallocated = {Attributes.FACTORYLENS_ALLOCATION_STATE: "unallocated"}
                self._add(ALLOCATION_TIME, identity, unallocated, dt * fraction, now)
                self._add(ALLOCATION_ENERGY, identity, unallocated, energy_delta, now)
            else:
                share = fraction / len(previous_holders)
                for job, team in previous_holders:
                    who = {k: v for k, v in ((JOB, job), (TEAM, team)) if v}
                    state = {**who, Attributes.FACTORYLENS_ALLOCATION_STATE: "allocated"}
                    self._add(ALLOCATION_TIME, identity, state, dt * share, now)
                    self._add(ALLOCATION_ENERGY, identity, state, energy_delta / len(previous_holders), now)
                    for basis, busy in measured.items():
                        if busy is not None:
                            busy = min(1.0, max(0.0, busy)) if math.isfinite(busy) else 0.0
                            self._add(
                                ACTIVE_TIME,
                                identity,
                                {**who, Attributes.FACTORYLENS_COST_BASIS: basis},
                                dt * share * busy,
                                now,
                            )
        if holders is None:
            if not charged or previous_holders is not None:  # free since this scrape: open at zero
                unallocated = {Attributes.FACTORYLENS_ALLOCATION_STATE: "unallocated"}
                self._add(ALLOCATION_TIME, identity, unallocated, 0.0, now)
                self._add(ALLOCATION_ENERGY, identity, unallocated, 0.0, now)
            return
        for job, team in holders:
            if charged and previous_holders is not None and (job, team) in previous_holders:
                continue  # charged above: its counters exist
            who = {k: v for k, v in ((JOB, job), (TEAM, team)) if v}
            state = {**who, Attributes.FACTORYLENS_ALLOCATION_STATE: "allocated"}
            self._add(ALLOCATION_TIME, identity, state, 0.0, now)
            self._add(ALLOCATION_ENERGY, identity, state, 0.0, now)
            for basis, busy in measured.items():
                if busy is not None:
                    self._add(ACTIVE_TIME, identity, {**who, Attributes.FACTORYLENS_COST_BASIS: basis}, 0.0, now)

    def _add(self, metric: str, identity: AttributeMap, extra: Mapping[str, Any], amount: float, now: float) -> None:
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
