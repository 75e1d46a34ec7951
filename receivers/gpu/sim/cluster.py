"""A simulated GPU cluster: hosts, GPUs, jobs and the physics that ties their readings together.

Utilization is driven by the job on each GPU (training: steady with checkpoint and eval dips every
N seconds; inference: a diurnal curve; notebooks: allocated but idle). Power follows utilization up
to the power limit, temperature follows power with a thermal lag, clocks drop when power or heat
throttle, and a throttled or lost GPU slows every other GPU of its (synchronous) training job.
Faults from a :class:`Scenario` bend these values the way the real failures do.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from factorylens.receivers.gpu.sim.faults import NODE_FAULTS, Fault, Scenario
from factorylens.receivers.gpu.sim.models import GpuModel
from factorylens.receivers.gpu.sim.models import model as lookup_model
from factorylens.receivers.gpu.sim.node import SimulatedNode, fabric_speed
from factorylens.registry import Attributes

AMBIENT_C = 28.0
THERMAL_TAU_S = 45.0
DAY_S = 86400.0

# clock-event reason bits (NVML values)
GPU_IDLE, POWER_CAP, HW_SLOWDOWN, SW_THERMAL, HW_THERMAL = 0x1, 0x4, 0x8, 0x20, 0x40


@dataclass(frozen=True)
class Job:
    job_id: str
    team: str
    kind: str  # "training" | "inference" | "idle"
    memory_fraction: float
    checkpoint_every_s: float = 600.0
    checkpoint_s: float = 40.0
    eval_every_s: float = 1800.0
    eval_s: float = 60.0

    def load(self, t: float, elapsed: float, phase: float = 0.0) -> float:
        """Utilization the job asks of a GPU (before throttling and noise).

        Training is step-periodic from its start (``elapsed``): a checkpoint closes every
        ``checkpoint_every_s`` and an evaluation every ``eval_every_s``; inference follows the time
        of day (``t``, epoch seconds).
        """
        if self.kind == "training":
            if (elapsed + phase) % self.checkpoint_every_s >= self.checkpoint_every_s - self.checkpoint_s:
                return 0.08  # checkpoint: GPUs wait on storage
            if (elapsed + phase) % self.eval_every_s >= self.eval_every_s - self.eval_s:
                return 0.55
            return 0.93
        if self.kind == "inference":
            hour = (t % DAY_S) / 3600.0
            return 0.12 + 0.7 * (0.5 + 0.5 * math.cos((hour - 14.0) / 24.0 * 2 * math.pi))
        return 0.0


@dataclass
class Process:
    pid: int
    name: str
    job: Job


@dataclass
class XidEvent:
    gpu_index: int
    code: int


@dataclass
class SimulatedGpu:
    index: int
    model: GpuModel
    uuid: str
    serial: str
    pci_bus_id: str
    rng: np.random.Generator
    process: Process | None = None
    # processes time-sliced onto the GPU beside ``process`` (a shared GPU), and each one's share of its
    # utilization by pid (unset: ``process`` has it all)
    guests: list[Process] = field(default_factory=list)
    utilization_shares: dict[int, float] = field(default_factory=dict)
    mig_enabled: bool = False
    phase_s: float = 0.0
    # physical state
    t: float | None = None
    temperature_c: float = AMBIENT_C + 5.0
    utilization: float = 0.0
    memory_utilization: float = 0.0
    power_w: float = 0.0
    power_limit_w: float = 0.0
    sm_mhz: int = 0
    reasons: int = GPU_IDLE
    clock_factor: float = 1.0
    energy_mj: float = 0.0
    memory_used: int = 0
    leaked_bytes: float = 0.0
    pcie_tx_kbps: float = 0.0
    pcie_rx_kbps: float = 0.0
    pcie_replays: float = 0.0
    nvlink_tx_kib: float = 0.0
    nvlink_rx_kib: float = 0.0
    nvlink_crc: float = 0.0
    ecc_corrected: float = 0.0
    ecc_uncorrected: int = 0
    reported_utilization: float = 0.0
    sm_activity: float = 0.0
    tensor_activity: float = 0.0
    dram_activity: float = 0.0
    lost: bool = False

    def __post_init__(self) -> None:
        self.power_limit_w = self.model.tdp_w

    def processes(self) -> list[Process]:
        return ([self.process] if self.process is not None else []) + self.guests

    def utilization_of(self, pid: int) -> float:
        if not self.utilization_shares:
            return self.utilization if self.process is not None and pid == self.process.pid else 0.0
        return self.utilization * self.utilization_shares.get(pid, 0.0)


@dataclass
class SimulatedHost:
    index: int
    name: str
    gpus: list[SimulatedGpu]
    cluster: SimulatedCluster
    events: deque = field(default_factory=lambda: deque(maxlen=10_000))
    fired: set = field(default_factory=set)
    driver_error: str | None = None
    node: SimulatedNode | None = None  # CPUs, memory, storage and fabric of the host

    def faults_for(self, gpu_index: int | None, kind: str) -> list[Fault]:
        t = self.cluster.sim_elapsed()
        return [
            f.at(t)
            for f in self.cluster.scenario.faults
            if f.kind == kind and f.active(t) and f.targets(self.index, self.name, gpu_index)
        ]

    def advance(self) -> None:
        self.cluster.advance()


class SimulatedCluster:
    """N hosts × M GPUs of one model, with jobs placed on them and a fault scenario.

    Args:
        hosts: number of hosts (nodes).
        gpus_per_host: GPUs per host.
        model: GPU model preset key (H100, H200, A100, L40S).
        scenario: faults to inject.
        mig: put every GPU in MIG mode with the model's smallest profile.
        seed: random seed (noise, serial numbers, UUIDs).
        speed: simulated seconds per real second (e.g. 60 to watch an hour in a minute).
        clock: real monotonic clock (injectable so tests drive time by hand).
        start_time: simulated wall-clock epoch seconds at start (drives the diurnal pattern).
    """

    def __init__(
        self,
        hosts: int = 1,
        gpus_per_host: int = 8,
        model: str = "H100",
        scenario: Scenario | None = None,
        *,
        mig: bool = False,
        seed: int = 0,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        start_time: float | None = None,
        host_prefix: str = "sim-node",
    ) -> None:
        if hosts < 1 or gpus_per_host < 1:
            raise ValueError("a simulated cluster needs at least one host and one GPU per host")
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.model = lookup_model(model)
        if mig and self.model.mig is None:
            raise ValueError(f"{self.model.key} does not support MIG")
        self.scenario = scenario or Scenario()
        self.speed = speed
        self._clock = clock
        self._clock0 = clock()
        self.start_time = time.time() if start_time is None else start_time
        self._rng = np.random.default_rng(seed)
        self.hosts = [self._make_host(h, f"{host_prefix}-{h}", gpus_per_host, mig) for h in range(hosts)]
        self._place_jobs(gpus_per_host)
        self._last_t: float | None = None
        # a training job's pace measured by a workload model of its steps (healthy step time / current
        # step time); when set it replaces the compute × fabric estimate below (e.g. the scenario suite's
        # instrumented ranks, whose input pipeline, stragglers and restarts the GPUs cannot know about)
        self.job_pace: dict[str, float] = {}

    # time ------------------------------------------------------------------------------------

    def sim_elapsed(self) -> float:
        return (self._clock() - self._clock0) * self.speed

    def sim_time(self) -> float:
        return self.start_time + self.sim_elapsed()

    # construction ----------------------------------------------------------------------------

    def _make_host(self, h: int, name: str, m: int, mig: bool) -> SimulatedHost:
        gpus = []
        for i in range(m):
            raw = self._rng.bytes(16)
            uuid = f"GPU-{raw[:4].hex()}-{raw[4:6].hex()}-{raw[6:8].hex()}-{raw[8:10].hex()}-{raw[10:].hex()}"
            gpus.append(
                SimulatedGpu(
                    index=i,
                    model=self.model,
                    uuid=uuid,
                    serial=f"165{int(self._rng.integers(10**9, 10**10))}",
                    pci_bus_id=f"00000000:{0x18 + 0x10 * i:02X}:00.0",
                    rng=np.random.default_rng(self._rng.integers(2**32)),
                    mig_enabled=mig,
                    phase_s=float(self._rng.uniform(0, 3)),
                )
            )
        return SimulatedHost(h, name, gpus, self, node=SimulatedNode(h, name))

    def _place_jobs(self, m: int) -> None:
        """Deterministic placement: most GPUs train one multi-node job, some serve, one notebook idles."""
        n_train = max(1, round(m * 0.625))
        rest = m - n_train
        n_infer = math.ceil(rest / 3)
        n_idle = min(1, rest - n_infer)
        train = Job("llm-pretrain-7b", "foundation-models", "training", 0.86)
        next_pid = 4000
        for host in self.hosts:
            infer = Job(f"chat-serve-{host.index}", "serving", "inference", 0.62)
            idle = Job(f"notebook-{host.index}", "research", "idle", 0.31)
            for gpu in host.gpus:
                if gpu.index < n_train:
                    job, name = train, "python"
                elif gpu.index < n_train + n_infer:
                    job, name = infer, "vllm"
                elif gpu.index < n_train + n_infer + n_idle:
                    job, name = idle, "jupyter-kernel"
                else:
                    continue
                next_pid += int(self._rng.integers(1, 50))
                gpu.process = Process(next_pid, name, job)

    def jobs_by_pid(self, host: SimulatedHost) -> dict[int, dict[str, str]]:
        return {
            process.pid: {
                Attributes.PROCESS_EXECUTABLE_NAME: process.name,
                Attributes.FACTORYLENS_JOB_ID: process.job.job_id,
                Attributes.FACTORYLENS_TEAM: process.job.team,
            }
            for g in host.gpus
            for process in g.processes()
        }

    # physics ---------------------------------------------------------------------------------

    def advance(self) -> None:
        """Bring every GPU to the current simulated time."""
        elapsed = self.sim_elapsed()
        if self._last_t is not None and elapsed <= self._last_t:
            return
        t = self.start_time + elapsed
        job_speed = self._job_speeds()
        dt = 0.0 if self._last_t is None else elapsed - self._last_t
        for host in self.hosts:
            self._fire_events(host, elapsed)
            host.driver_error = next((f.params["error"] for f in host.faults_for(None, "driver_missing")), None)
            for gpu in host.gpus:
                self._step(host, gpu, t, elapsed, job_speed)
            self._step_node(host, dt, elapsed)
        self._last_t = elapsed

    def _step_node(self, host: SimulatedHost, dt: float, elapsed: float) -> None:
        training = [g for g in host.gpus if g.process is not None and g.process.job.kind == "training"]
        util = sum(g.utilization for g in training) / len(training) if training else 0.0
        checkpointing = any(g.process is not None and g.process.job.load(0.0, elapsed) < 0.1 for g in training)
        faults = {kind: host.faults_for(None, kind) for kind in NODE_FAULTS}
        assert host.node is not None
        host.node.step(dt, elapsed, util, checkpointing, faults)

    def _job_nodes(self, job_id: str) -> list[SimulatedNode]:
        return [
            h.node
            for h in self.hosts
            if h.node is not None and any(g.process is not None and g.process.job.job_id == job_id for g in h.gpus)
        ]

    def job_collective_slowdown(self, job_id: str) -> float:
        """How many times longer the job's collectives take now (fabric congestion, a down port)."""
        return 1.0 / fabric_speed(self._job_nodes(job_id))

    def job_checkpoint_slowdown(self, job_id: str) -> float:
        """How many times longer the job's checkpoint writes take now (a slow checkpoint mount)."""
        return max((n.checkpoint_factor() for n in self._job_nodes(job_id)), default=1.0)

    def job_data_slowdown(self, job_id: str) -> float:
        """How many times longer the job waits for its input pipeline (starved host CPU or memory)."""
        return max((n.data_factor for n in self._job_nodes(job_id)), default=1.0)

    def job_speed(self, job_id: str) -> float:
        """How fast a training job runs now, relative to healthy GPUs (0 when one is lost)."""
        return self._job_speeds().get(job_id, 1.0)

    def job_gpus(self, job_id: str) -> list[tuple[str, SimulatedGpu]]:
        """``(host name, GPU)`` of every GPU the job's processes run on."""
        return [
            (host.name, gpu)
            for host in self.hosts
            for gpu in host.gpus
            if gpu.process is not None and gpu.process.job.job_id == job_id
        ]

    def job_compute_speed(self, job_id: str) -> float:
        """How fast the job's GPUs compute now (its slowest GPU's clocks; 0 when one is lost)."""
        return self._compute_speeds().get(job_id, 1.0)

    def _job_speeds(self) -> dict[str, float]:
        """A synchronous job runs at the pace of its slowest GPU and waits on its slowest fabric (unless
        its workload's measured pace is given in ``job_pace``)."""
        return {
            jid: self.job_pace.get(jid, speed * fabric_speed(self._job_nodes(jid)))
            for jid, speed in self._compute_speeds().items()
        }

    def _compute_speeds(self) -> dict[str, float]:
        """A synchronous training job computes at the pace of its slowest GPU; a lost GPU stalls it."""
        speeds: dict[str, float] = {}
        for host in self.hosts:
            for gpu in host.gpus:
                if gpu.process and gpu.process.job.kind == "training":
                    own = 0.0 if gpu.lost else gpu.clock_factor
                    jid = gpu.process.job.job_id
                    speeds[jid] = min(speeds.get(jid, 1.0), own)
        return speeds

    def _fire_events(self, host: SimulatedHost, elapsed: float) -> None:
        for n, fault in enumerate(self.scenario.faults):
            if fault.kind != "xid" or not fault.targets(host.index, host.name, None):
                continue
            for k in range(int(fault.params["count"])):
                at = fault.start_s + k * float(fault.params["interval"])
                if at > elapsed or (n, k, host.index) in host.fired or at >= fault.start_s + fault.duration_s:
                    continue
                host.fired.add((n, k, host.index))
                for gpu in host.gpus:
                    if fault.gpu is None or fault.gpu == gpu.index:
                        host.events.append(XidEvent(gpu.index, int(fault.params["code"])))

    def _step(
        self, host: SimulatedHost, g: SimulatedGpu, t: float, elapsed: float, job_speed: dict[str, float]
    ) -> None:
        dt = 0.0 if g.t is None else max(0.0, elapsed - g.t)
        g.t = elapsed
        m = g.model
        active = {
            kind: host.faults_for(g.index, kind)
            for kind in (
                "thermal_throttle",
                "power_cap",
                "nvlink_degradation",
                "pcie_degradation",
                "gpu_lost",
                "stuck_utilization",
                "memory_leak",
                "ecc_burst",
                "ecc_corrected",
            )
        }
        g.lost = bool(active["gpu_lost"])

        job = g.process.job if g.process else None
        phase = g.phase_s if job and job.kind == "inference" else 0.0  # a synchronous job checkpoints as one
        asked = demand = job.load(t, elapsed, phase) if job else 0.0
        if job and job.kind == "training":
            demand *= min(1.0, job_speed.get(job.job_id, 1.0) / max(g.clock_factor, 1e-3))
        noise = float(g.rng.normal(0.0, 0.02)) if demand > 0.05 else abs(float(g.rng.normal(0.0, 0.004)))
        util = min(1.0, max(0.0, demand + noise))

        g.power_limit_w = m.tdp_w
        for f in active["power_cap"]:
            g.power_limit_w = max(m.min_power_limit_w, m.tdp_w * float(f.params["limit_fraction"]))
        want_w = m.idle_w + (m.tdp_w - m.idle_w) * util**0.8
        reasons = 0
        factor = 1.0
        if want_w > g.power_limit_w:
            reasons |= POWER_CAP
            factor = max(0.3, (g.power_limit_w - m.idle_w) / max(want_w - m.idle_w, 1e-6))
        power = min(want_w, g.power_limit_w)

        extra_c = sum(float(f.params["extra_celsius"]) for f in active["thermal_throttle"])
        target_c = AMBIENT_C + extra_c + 52.0 * power / m.tdp_w
        alpha = 1.0 - math.exp(-dt / THERMAL_TAU_S) if dt else 1.0
        g.temperature_c += (target_c - g.temperature_c) * alpha
        g.temperature_c = min(g.temperature_c, m.hw_slowdown_c + 3.0)  # hardware slowdown holds it there
        thermal = 1.0
        if g.temperature_c >= m.slowdown_c:
            reasons |= SW_THERMAL
            thermal = max(0.4, 1.0 - 0.06 * (g.temperature_c - m.slowdown_c + 1.0))
        if g.temperature_c >= m.hw_slowdown_c:
            reasons |= HW_THERMAL | HW_SLOWDOWN
            thermal *= 0.6
        if thermal < 1.0:  # slower clocks draw less power
            power = m.idle_w + (power - m.idle_w) * (0.5 + 0.5 * thermal)
        factor *= thermal
        if util < 0.05:
            reasons |= GPU_IDLE
        g.reasons = reasons
        g.clock_factor = factor
        g.sm_mhz = m.idle_sm_mhz if util < 0.05 else int(m.max_sm_mhz * factor)
        g.power_w = power
        g.energy_mj += power * dt * 1000.0
        g.utilization = util
        g.reported_utilization = util
        for f in active["stuck_utilization"]:
            g.reported_utilization = float(f.params["value"])

        kind = job.kind if job else "none"
        g.memory_utilization = util * (0.55 if kind == "training" else 0.35)
        g.sm_activity = util * 0.88
        g.tensor_activity = util * (0.62 if kind == "training" else 0.35)
        g.dram_activity = util * (0.48 if kind == "training" else 0.6)

        base_mem = int(m.memory_bytes * job.memory_fraction) if job else 0
        for f in active["memory_leak"]:
            g.leaked_bytes += float(f.params["bytes_per_s"]) * dt
        g.memory_used = min(m.memory_bytes - 512 * 2**20, base_mem + int(g.leaked_bytes)) if job else 0

        pcie_frac = 1.0
        for f in active["pcie_degradation"]:
            pcie_frac *= float(f.params["throughput_fraction"])
            g.pcie_replays += float(f.params["replays_per_s"]) * dt
        checkpointing = kind == "training" and asked < 0.1  # what the job does, not a stalled job's idle GPUs
        rx_share = 0.05 * util if kind == "training" else 0.02 * util
        tx_share = 0.35 if checkpointing else 0.01 * util
        g.pcie_rx_kbps = m.pcie_gbps_per_direction * 1e6 * rx_share * pcie_frac
        g.pcie_tx_kbps = m.pcie_gbps_per_direction * 1e6 * tx_share * pcie_frac

        nv_frac = 1.0
        for f in active["nvlink_degradation"]:
            nv_frac *= float(f.params["throughput_fraction"])
            g.nvlink_crc += float(f.params["crc_errors_per_s"]) * dt
        if m.nvlink_links and kind == "training":
            kib_per_s = m.nvlink_gbps_per_direction * 1e9 / 1024 * 0.4 * util * nv_frac
            g.nvlink_tx_kib += kib_per_s * dt
            g.nvlink_rx_kib += kib_per_s * dt

        for f in active["ecc_burst"]:
            g.ecc_corrected += float(f.params["corrected_per_s"]) * dt
            key = ("ecc_uncorrected", id(f), g.index)
            if key not in host.fired:
                host.fired.add(key)
                g.ecc_uncorrected += int(f.params["uncorrected"])
        for f in active["ecc_corrected"]:  # corrected in place: nothing else notices
            g.ecc_corrected += float(f.params["corrected_per_s"]) * dt
