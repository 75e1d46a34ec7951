"""The instrumented workloads of the scenario suite, stepped in simulated time.

A multi-node data-parallel training job runs one rank per training GPU of the simulated cluster.
Each step of each rank is planned from what the cluster says at the step's start, the way a real
synchronous job behaves:

- ``data``: the input pipeline prefetches while the step computes, so a rank waits for its batch only
  when producing one takes longer than the step hides (``LOADER_S`` against ``HIDDEN_S``); a starved
  host (the node's ``data_factor``: saturated CPU, swapping) or a starved loader stretches it;
- ``h2d``: the batch's copy to the GPU, over the GPU's PCIe link;
- ``forward`` / ``backward`` / ``optimizer``: the rank's own compute, at its GPU's clocks (throttling)
  or slower when the rank straggles for a reason of its own;
- ``collective``: the gradient all-reduce; every rank waits there for the slowest one, then the
  exchange itself runs over NVLink (intra-node) and the fabric (inter-node; GPUDirect RDMA crosses
  the GPU's PCIe link), each at the pace of its slowest link;
- ``checkpoint.save`` every ``CHECKPOINT_EVERY_S`` to ``/mnt/ckpt`` at the speed of each host's mount,
  with a barrier after it; a restarted job first loads its last checkpoint (``checkpoint.load``).

Finished steps become :class:`StepRecord` s that the real instrumentation (``StepRecorder`` →
``TrainingTelemetry``) turns into metrics. The job's pace and whether it is checkpointing go back to
the simulated GPUs (``SimulatedCluster.job_pace`` and the job's load), so GPU utilization follows
the job. A noisy-neighbour batch job (one instrumented process on a spare GPU) runs beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from factorylens.instrumentation._recorder import StepRecord
from factorylens.receivers.gpu.sim.cluster import Job, SimulatedCluster, SimulatedGpu

NS = 1_000_000_000
# a healthy step of the 7B job (seconds): the input pipeline's visible wait, host-to-device copy,
# compute, the all-reduce's exposed part (intra-node over NVLink, inter-node over the fabric)
DATA_S = 0.02
H2D_S = 0.03
FORWARD_S = 0.55
BACKWARD_S = 1.05
OPTIMIZER_S = 0.10
COLLECTIVE_INTRA_S = 0.15
COLLECTIVE_INTER_S = 0.15
HEALTHY_STEP_S = DATA_S + H2D_S + FORWARD_S + BACKWARD_S + OPTIMIZER_S + COLLECTIVE_INTRA_S + COLLECTIVE_INTER_S
LOADER_S = 1.3  # producing one batch (decode, tokenize, collate) on the host's CPUs
HIDDEN_S = 1.9  # how much of it the prefetch hides behind the step
SAMPLES_PER_STEP = 32
TOKENS_PER_SAMPLE = 4096
GRADIENT_BYTES = 2 * 7_000_000_000 // 8  # a rank's share of the 7B model's bf16 gradients (8-way sharded)
# every 6 simulated minutes from 90 s: a real job saves every 10-60 minutes, but a run here is 20
# minutes and a detector needs checkpoints in its history to learn that they recur (two before a fault,
# whose onset falls between two of them; see the run's ONSET_RANGE_S)
CHECKPOINT_FIRST_S = 90.0
CHECKPOINT_EVERY_S = 360.0
CHECKPOINT_SAVE_S = 20.0
CHECKPOINT_LOAD_S = 12.0
CHECKPOINT_BYTES = 14 * 2**30
CHECKPOINT_MOUNT = "/mnt/ckpt"
NIC_GBYTES_PER_GPU = 50.0  # one 400 Gb/s port per GPU: what GPUDirect RDMA pushes through its PCIe link
HEALTHY_MFU = 0.42
TRAINING_LOAD = 0.93  # GPU utilization of a computing step
CHECKPOINT_LOAD = 0.08  # GPUs idle while the checkpoint is written (the node writes to /mnt/ckpt)
RESTORE_LOAD = 0.12  # GPUs idle while the last checkpoint is read back
# lognormal jitter (sigma) of each phase, per rank and step
JITTER = {
    "data": 0.2,
    "h2d": 0.1,
    "forward": 0.02,
    "backward": 0.02,
    "optimizer": 0.03,
    "loader": 0.08,
    "checkpoint": 0.06,
}
_JITTER_KEYS = tuple(JITTER)
_JITTER_SIGMA = np.array([JITTER[k] for k in _JITTER_KEYS])


def mountpoint_of(path: str) -> str:
    """The simulated node's file system holding ``path`` (the checkpoint mount or the root)."""
    return CHECKPOINT_MOUNT if path == CHECKPOINT_MOUNT or path.startswith(CHECKPOINT_MOUNT + "/") else "/"


@dataclass(frozen=True)
class WorkloadFault:
    """A fault of the workload itself, which no hardware counter shows.

    kind: ``straggler`` (the rank computes ``factor`` × slower: a CPU-bound launch loop, a bad core
    binding), ``input_starvation`` (the rank's input pipeline needs ``factor`` × longer per batch: a
    slow data shard, too few loader workers), ``restart`` (the job is torn down at ``start_s`` and
    back ``duration_s`` later, then reloads its last checkpoint), ``neighbour_burst`` (the
    neighbour job turns heavy).
    """

    kind: str
    start_s: float
    duration_s: float = math.inf
    rank: int | None = None
    factor: float = 1.0

    def active(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.start_s + self.duration_s


@dataclass(frozen=True)
class RankInfo:
    rank: int
    host_index: int
    host: str
    gpu: SimulatedGpu

    @property
    def gpu_id(self) -> str:
        return self.gpu.uuid


@dataclass(frozen=True)
class DrivenJob(Job):
    """A job whose GPU demand comes from its workload model (``load`` of the driver)."""

    driver: Any = field(default=None, compare=False, repr=False)

    def load(self, t: float, elapsed: float, phase: float = 0.0) -> float:
        return self.driver.gpu_demand(elapsed)


@dataclass(frozen=True)
class SurgingJob(Job):
    """An inference service whose traffic surges to ``surge_load`` over ``[surge_start_s, surge_end_s)``."""

    surge_start_s: float = math.inf
    surge_end_s: float = math.inf
    surge_load: float = 0.97

    def load(self, t: float, elapsed: float, phase: float = 0.0) -> float:
        if self.surge_start_s <= elapsed < self.surge_end_s:
            return self.surge_load
        return super().load(t, elapsed, phase)


@dataclass
class _PlannedStep:
    start: float
    end: float
    records: list[tuple[int, float, float, list]]  # (rank index, start, end, phases)
    compute_end: float  # when the GPUs stop computing (a checkpoint or a restore follows)
    restore_end: float  # when the restore (checkpoint.load) at its start ends
    pace: float  # healthy step time / this step's time without its checkpoint


class TrainingWorkload:
    """The ranks of one synchronous data-parallel training job over a :class:`SimulatedCluster`.

    ``advance_to(t)`` plans and finishes every step that ends by simulated second ``t`` and returns
    ``[(rank index, StepRecord)]``; ``gpu_demand`` and ``pace`` tell the cluster what the job's GPUs
    are doing.
    """

    def __init__(
        self,
        cluster: SimulatedCluster,
        job_id: str,
        ranks: list[RankInfo],
        faults: list[WorkloadFault],
        rng: np.random.Generator,
        epoch_ns: int,
    ) -> None:
        self.cluster = cluster
        self.job_id = job_id
        self.ranks = ranks
        self.faults = [f for f in faults if f.kind in ("straggler", "input_starvation", "restart")]
        self._rng = rng
        self._epoch_ns = epoch_ns
        self._host = {h.index: h for h in cluster.hosts}
        self.t = 0.0  # when the next step starts
        self.number = 0
        self._pending: _PlannedStep | None = None
        self._next_checkpoint = CHECKPOINT_FIRST_S
        self._restore = False
        self.hung = False

    # what the GPUs see ---------------------------------------------------------------------------
    def gpu_demand(self, elapsed: float) -> float:
        step = self._pending
        if step is not None and step.start <= elapsed < step.end:
            if elapsed < step.restore_end:
                return RESTORE_LOAD
            if elapsed >= step.compute_end:
                return CHECKPOINT_LOAD
        return TRAINING_LOAD

    def pace(self, elapsed: float) -> float:
        """Healthy step time over the current step's (0 while the job is down or hung)."""
        if self.hung or self._down(elapsed) is not None:
            return 0.0
        step = self._pending
        return step.pace if step is not None else 1.0

    # stepping ------------------------------------------------------------------------------------
    def _down(self, t: float) -> WorkloadFault | None:
        return next((f for f in self.faults if f.kind == "restart" and f.active(t)), None)

    def advance_to(self, t_s: float) -> list[tuple[int, StepRecord]]:
        done: list[tuple[int, StepRecord]] = []
        while True:
            if self._pending is None:
                down = self._down(self.t)
                if down is not None:
                    self.t = down.start_s + down.duration_s
                    self._restore = True
                    if self.t > t_s:
                        return done
                self._pending = self._plan(self.t)
                if self._pending is None:  # a GPU of the job is gone: every rank hangs in its collective
                    self.hung = True
                    self.t = t_s
                    return done
                self.hung = False
            step = self._pending
            crash = next(
                (f for f in self.faults if f.kind == "restart" and step.start < f.start_s <= min(step.end, t_s)), None
            )
            if crash is not None:  # the step dies with the job; it is never recorded
                self._pending = None
                self.t = crash.start_s
                continue
            if step.end > t_s:
                return done
            for index, start, end, phases in step.records:
                done.append((index, self._record(self.number + 1, start, end, phases)))
            self.number += 1
            self.t = step.end
            self._pending = None

    def _record(self, number: int, start: float, end: float, phases: list) -> StepRecord:
        ns = int(start * NS)
        return StepRecord(
            number,
            ns,
            int(end * NS),
            self._epoch_ns + ns,
            SAMPLES_PER_STEP,
            SAMPLES_PER_STEP * TOKENS_PER_SAMPLE,
            [(name, int(a * NS), int(b * NS), attributes) for name, a, b, attributes in phases],
            None,
        )

    def _gpu_faults(self, info: RankInfo, kind: str) -> list:
        return self._host[info.host_index].faults_for(info.gpu.index, kind)

    def _plan(self, start: float) -> _PlannedStep | None:
        ranks = self.ranks
        if any(r.gpu.lost for r in ranks):
            return None
        n = len(ranks)
        jitter = dict(
            zip(_JITTER_KEYS, self._rng.lognormal(0.0, _JITTER_SIGMA, size=(n, len(_JITTER_KEYS))).T, strict=False)
        )
        shared = self._rng.lognormal(0.0, 0.05)  # the collective's own variation (one exchange for all)
        restore = self._restore
        self._restore = False
        checkpoint = start >= self._next_checkpoint
        if checkpoint:
            while self._next_checkpoint <= start:
                self._next_checkpoint += CHECKPOINT_EVERY_S
        intra = inter = 1.0
        per_rank = []
        for info in ranks:
            node = self._host[info.host_index].node
            speed = max(info.gpu.clock_factor, 0.05)
            loader = LOADER_S * (node.data_factor if node is not None else 1.0)
            for f in self.faults:
                if f.rank == info.rank and f.active(start):
                    if f.kind == "straggler":
                        speed /= f.factor
                    elif f.kind == "input_starvation":
                        loader *= f.factor
            pcie = 1.0
            for f in self._gpu_faults(info, "pcie_degradation"):
                pcie *= float(f.params["throughput_fraction"])
            for f in self._gpu_faults(info, "nvlink_degradation"):
                intra = max(intra, 1.0 / max(float(f.params["throughput_fraction"]), 0.01))
            pcie_gbytes = info.gpu.model.pcie_gbps_per_direction * pcie
            inter = max(inter, NIC_GBYTES_PER_GPU / max(pcie_gbytes, 1e-3))
            ckpt = node.checkpoint_factor() if node is not None else 1.0
            per_rank.append((speed, loader, 1.0 / max(pcie, 0.01), ckpt))
        inter = max(inter, self.cluster.job_collective_slowdown(self.job_id))
        collective = (COLLECTIVE_INTRA_S * intra + COLLECTIVE_INTER_S * inter) * shared

        t0 = start
        restores = []
        if restore:
            for i, (_, _, _, ckpt) in enumerate(per_rank):
                restores.append(CHECKPOINT_LOAD_S * ckpt * jitter["checkpoint"][i])
            t0 = start + max(restores)
        arrive, phases_by_rank = [], []
        for i, (speed, loader, pcie_slow, _) in enumerate(per_rank):
            phases: list[tuple[str, float, float, Any]] = []
            if restore:
                phases.append(
                    (
                        "checkpoint.load",
                        start,
                        start + restores[i],
                        {
                            "path": f"{CHECKPOINT_MOUNT}/{self.job_id}/latest/rank-{ranks[i].rank:03d}.distcp",
                            "bytes": CHECKPOINT_BYTES,
                        },
                    )
                )
            t = t0
            wait = DATA_S * jitter["data"][i] + max(0.0, loader * jitter["loader"][i] - HIDDEN_S)
            for name, seconds in (
                ("data", wait),
                ("h2d", H2D_S * pcie_slow * jitter["h2d"][i]),
                ("forward", FORWARD_S / speed * jitter["forward"][i]),
                ("backward", BACKWARD_S / speed * jitter["backward"][i]),
            ):
                phases.append((name, t, t + seconds, None))
                t += seconds
            arrive.append(t)
            phases_by_rank.append(phases)
        barrier = max(arrive)
        exchanged = barrier + collective
        records, ends = [], []
        for i, (speed, _, _, ckpt) in enumerate(per_rank):
            phases = phases_by_rank[i]
            phases.append(
                ("collective", arrive[i], exchanged, {"bytes": GRADIENT_BYTES, "world_size": n, "op": "all_reduce"})
            )
            end = exchanged + OPTIMIZER_S / speed * jitter["optimizer"][i]
            phases.append(("optimizer", exchanged, end, None))
            if checkpoint:
                saved = end + CHECKPOINT_SAVE_S * ckpt * jitter["checkpoint"][i]
                phases.append(
                    (
                        "checkpoint.save",
                        end,
                        saved,
                        {
                            "path": f"{CHECKPOINT_MOUNT}/{self.job_id}/step-{self.number + 1:07d}"
                            f"/rank-{ranks[i].rank:03d}.distcp",
                            "bytes": CHECKPOINT_BYTES,
                        },
                    )
                )
                end = saved
            ends.append(end)
            records.append([i, start, end, phases])
        step_end = max(ends)
        compute_end = (
            step_end if not checkpoint else min(p[1] for r in phases_by_rank for p in r if p[0] == "checkpoint.save")
        )
        if checkpoint or restore:  # a barrier after the save (and the restore): every rank ends together
            for record in records:
                record[2] = step_end
        computing = (compute_end if checkpoint else step_end) - t0
        return _PlannedStep(
            start,
            step_end,
            [tuple(r) for r in records],
            compute_end,
            t0 if restore else start,
            min(1.0, HEALTHY_STEP_S / max(computing, 1e-6)),
        )


class NeighbourWorkload:
    """A batch job on a spare GPU of one host: light (rate-limited) until it bursts.

    One instrumented process, steps of about a second; while it bursts it processes eight times the
    samples, keeps its GPU busy, and takes the host's CPUs and a fabric port (the node faults that
    come with the burst).
    """

    STEP_S = 1.0
    LIGHT_LOAD, BURST_LOAD = 0.15, 0.97
    LIGHT_SAMPLES, BURST_SAMPLES = 8, 64

    def __init__(self, faults: list[WorkloadFault], rng: np.random.Generator, epoch_ns: int) -> None:
        self.faults = [f for f in faults if f.kind == "neighbour_burst"]
        self._rng = rng
        self._epoch_ns = epoch_ns
        self.number = 0
        self._pending = self._plan(0.0)

    def bursting(self, elapsed: float) -> bool:
        return any(f.active(elapsed) for f in self.faults)

    def gpu_demand(self, elapsed: float) -> float:
        return self.BURST_LOAD if self.bursting(elapsed) else self.LIGHT_LOAD

    def _plan(self, start: float) -> tuple[float, float, float, int]:
        data, compute = self._rng.lognormal(0.0, (0.2, 0.03))
        samples = self.BURST_SAMPLES if self.bursting(start) else self.LIGHT_SAMPLES
        return start, start + 0.08 * data, start + 0.08 * data + 0.9 * self.STEP_S * compute, samples

    def advance_to(self, t_s: float) -> list[StepRecord]:
        done = []
        while self._pending[2] <= t_s:
            start, mid, end, samples = self._pending
            self.number += 1
            a, b, c = int(start * NS), int(mid * NS), int(end * NS)
            done.append(
                StepRecord(
                    self.number,
                    a,
                    c,
                    self._epoch_ns + a,
                    samples,
                    samples * 512,
                    [("data", a, b, None), ("forward", b, c, None)],
                    None,
                )
            )
            self._pending = self._plan(end)
        return done
