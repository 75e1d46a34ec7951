"""The fault catalog of the GPU-cluster scenario suite: what each fault is, how it is injected into
the simulator, and its one true root cause.

Thirteen faults cover the eleven fault types of the suite (GPU throttling and host pressure have a
thermal/power and a CPU/memory variant). The true root cause is named the way the RCA store names
entities (``rca_service/store/_entity.py``): ``gpu:<hw.id>``, ``host:<host.name>``,
``nic:<host>/<port>``, ``fs:<host>/<mountpoint>``, ``rank:<job>/<rank>``, ``job:<job>``.

Choices a user would make, written down:

- a noisy neighbour is the *neighbour job* (``job:<id>``): it is what an operator moves or throttles;
  its ranks' series (``rank:<id>/*``) name the same job and count as naming it. The host's saturated
  CPU and congested port it causes are symptoms on the way, not the answer;
- data-loader starvation is the starved *rank* (``rank:<job>/<n>``, domain data): its input pipeline
  is slow while its host is healthy (unlike host pressure, where the host is the answer);
- a straggler is the slow *rank* (domain app): its GPU is healthy, it computes slower for a reason
  of its own; the other ranks only wait for it;
- congestion is the congested *port* (``nic:<host>/<port>``), slow checkpoints the *mount*
  (``fs:<host>//mnt/ckpt``), XID/ECC, lost, throttled, NVLink and PCIe faults the *GPU*.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from factorylens.simulation._workload import WorkloadFault


@dataclass(frozen=True)
class Truth:
    """A true root cause: its entity and domain; ``also`` lists other names of the same cause (globs).
    ``onset_s``: when this cause began, where a run's faults begin at different times (None: the
    run's onset). ``signals``: globs over the cause's signal, when the entity alone does not tell the
    answer (a service's own load names the service: the load signals do, not its queue as a symptom
    of a slow GPU); empty: any signal."""

    entity: str
    domain: str
    also: tuple[str, ...] = ()
    onset_s: float | None = None
    signals: tuple[str, ...] = ()

    def matches(self, entity: str) -> bool:
        return (
            entity == self.entity
            or (_GLOB.search(self.entity) is not None and fnmatch.fnmatchcase(entity, self.entity))
            or any(fnmatch.fnmatchcase(entity, pattern) for pattern in self.also)
        )

    def matches_cause(self, entity: str, signal: str) -> bool:
        """The entity, and (where ``signals`` says) a signal that names this cause."""
        return self.matches(entity) and (
            not self.signals or any(fnmatch.fnmatchcase(signal, pattern) for pattern in self.signals)
        )


@dataclass(frozen=True)
class Decoy:
    """Something that moves in a run but causes nothing: a harmless signal, a fault on a GPU no job
    uses. It may be listed among an incident's causes (as a consequence, or unrelated) but must never
    outrank a true cause; with no true cause in the run, nothing may open an incident at all.

    ``entity`` and ``signal`` are globs over a cause's entity and signal (``signal="*"``: any signal
    of the entity; ``entity="*"``: that signal wherever it is, e.g. free memory rising on any host)."""

    entity: str
    why: str
    signal: str = "*"
    onset_s: float | None = None

    def matches(self, entity: str, signal: str = "") -> bool:
        return fnmatch.fnmatchcase(entity, self.entity) and fnmatch.fnmatchcase(signal, self.signal)


_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Targets:
    """Where a run's faults can land (chosen per seed): the victim host, one of its training GPUs and
    that GPU's rank, one of its fabric ports, the training job and the neighbour job; then (for runs
    with more than one fault) a training GPU of the same job on another host (``other_*``; the
    victim's host when there is one host) with its rank and a port of that host, and a GPU that no
    process uses (``free_gpu``: host index, GPU index, hw.id; None when every GPU is taken). ``hosts``
    and ``gpu_ids`` (per host, by index) name every host and GPU of the cluster."""

    host_index: int
    host: str
    gpu_index: int
    gpu_id: str
    rank: int
    port: str
    job_id: str
    neighbour_job: str
    other_host_index: int = 0
    other_host: str = ""
    other_gpu_index: int = 0
    other_gpu_id: str = ""
    other_rank: int = 0
    other_port: str = ""
    free_gpu: tuple[int, int, str] | None = None
    hosts: tuple[str, ...] = ()
    gpu_ids: tuple[tuple[str, ...], ...] = ()


Injection = tuple[list[dict[str, Any]], list[WorkloadFault], Truth]


@dataclass(frozen=True)
class Injected:
    """What a run injects: the simulator's faults, the workload's (``WorkloadFault`` s of a training
    run, ``ServingFault`` s of a serving one), the true causes (none: nothing should open an
    incident) and the decoys (what must not outrank them)."""

    sim: list[dict[str, Any]]
    workload: list[Any]
    truths: tuple[Truth, ...]
    decoys: tuple[Decoy, ...] = ()

    @classmethod
    def of(cls, injection: Injection | Injected) -> Injected:
        if isinstance(injection, Injected):
            return injection
        sim, workload, truth = injection
        return cls(sim, workload, (truth,))


@dataclass(frozen=True)
class FaultSpec:
    """One fault of the catalog (or one case of several faults).

    ``inject(targets, onset_s)`` gives the simulator's faults (scenario dicts, ``FAULT_KINDS``), the
    workload's own faults and the true root cause (an :data:`Injection`), or an :class:`Injected`
    with several true causes and decoys.
    """

    name: str
    fault_type: str
    domain: str
    injected: str
    signals: tuple[str, ...]
    inject: Callable[[Targets, float], Injection | Injected]
    align_to_checkpoint: bool = False  # the onset falls shortly before the job's next checkpoint
    # the onset is this long after a checkpoint falls due (its save starts at the end of the step
    # running then, about 2 s later), the first one due at or after the nominal onset
    checkpoint_offset_s: float | None = None
    post_onset_s: float | None = None  # how long the run goes on after the onset (None: the suite's default)
    # the fault grows: it is scored from when it bites (the job computes 10 % slower; ScenarioRun.bite_s),
    # not from its onset
    gradual: bool = False


def _sim(
    kind: str, t: Targets, onset: float, params: dict[str, Any], *, gpu: bool = False, duration: float | None = None
) -> dict[str, Any]:
    fault: dict[str, Any] = {
        "kind": kind,
        "target": {"host": t.host_index, **({"gpu": t.gpu_index} if gpu else {})},
        "start": onset,
        "params": params,
    }
    if duration is not None:
        fault["duration"] = duration
    return fault


def _gpu(t: Targets) -> Truth:
    return Truth(f"gpu:{t.gpu_id}", "gpu")


def _rank(t: Targets, domain: str) -> Truth:
    return Truth(f"rank:{t.job_id}/{t.rank}", domain)


XID_RESTART_S = 150.0  # watchdog, teardown, relaunch: the job is down this long after the XID


CATALOG: dict[str, FaultSpec] = {
    spec.name: spec
    for spec in (
        FaultSpec(
            "gpu_thermal_throttle",
            "gpu_throttling",
            "gpu",
            "thermal_throttle (+30 °C: cooling failure) on one training GPU",
            (
                "hw.temperature up",
                "hw.gpu.clock_event.active{sw_thermal,hw_thermal} 1",
                "hw.gpu.speed{sm} down",
                "hw.status degraded",
                "every rank's step time up (the others wait in the collective)",
            ),
            lambda t, on: ([_sim("thermal_throttle", t, on, {"extra_celsius": 30.0}, gpu=True)], [], _gpu(t)),
        ),
        FaultSpec(
            "gpu_power_cap",
            "gpu_throttling",
            "gpu",
            "power_cap (limit 45 % of TDP) on one training GPU",
            (
                "hw.power.limit down",
                "hw.gpu.clock_event.active{power_cap} 1",
                "hw.gpu.speed{sm} down",
                "its rank's forward/backward up, the other ranks' collective up",
            ),
            lambda t, on: ([_sim("power_cap", t, on, {"limit_fraction": 0.45}, gpu=True)], [], _gpu(t)),
        ),
        FaultSpec(
            "gpu_xid_ecc",
            "gpu_xid_ecc",
            "gpu",
            "XID 94 (contained uncorrectable ECC error) + an ECC burst on one training GPU; the rank's process "
            f"is killed and the job is down {XID_RESTART_S:.0f} s, then restarts from its last checkpoint",
            (
                "hw.errors{xid, hw.gpu.xid.code=94} (a new series) and a hw.gpu.xid event",
                "hw.errors{uncorrected,corrected} up",
                "hw.status predicted_failure (a row remap pending)",
                "samples/s to 0 on every rank, then a checkpoint.load",
            ),
            lambda t, on: (
                [
                    _sim("xid", t, on, {"code": 94}, gpu=True),
                    _sim("ecc_burst", t, on, {"corrected_per_s": 40.0, "uncorrected": 1}, gpu=True, duration=120.0),
                ],
                [WorkloadFault("restart", on, XID_RESTART_S)],
                _gpu(t),
            ),
        ),
        FaultSpec(
            "gpu_lost",
            "gpu_lost",
            "gpu",
            "gpu_lost (fallen off the bus, with XID 79) on one training GPU; the job hangs in its collectives",
            (
                "hw.status failed",
                "a hw.gpu.xid event with code 79 (a log record: the lost GPU's counters stop)",
                "the GPU's other series stop",
                "samples/s to 0 on every rank, the job's other GPUs idle",
            ),
            lambda t, on: (
                [_sim("gpu_lost", t, on, {}, gpu=True), _sim("xid", t, on, {"code": 79}, gpu=True)],
                [],
                _gpu(t),
            ),
        ),
        FaultSpec(
            "nvlink_degradation",
            "nvlink_degradation",
            "gpu",
            "nvlink_degradation (15 % throughput, 40 CRC errors/s) on one training GPU",
            ("hw.gpu.interconnect.io rate down", "hw.errors{nvlink_crc_*} up", "every rank's collective duration up"),
            lambda t, on: (
                [_sim("nvlink_degradation", t, on, {"throughput_fraction": 0.15, "crc_errors_per_s": 40.0}, gpu=True)],
                [],
                _gpu(t),
            ),
        ),
        FaultSpec(
            "pcie_degradation",
            "pcie_degradation",
            "gpu",
            "pcie_degradation (12.5 % throughput: a down-trained link, 20 replays/s) on one training GPU",
            (
                "hw.gpu.io rate down",
                "hw.errors{pcie_replay} up",
                "its rank's h2d up",
                "every rank's collective up (GPUDirect RDMA crosses the link)",
            ),
            lambda t, on: (
                [_sim("pcie_degradation", t, on, {"throughput_fraction": 0.125, "replays_per_s": 20.0}, gpu=True)],
                [],
                _gpu(t),
            ),
        ),
        FaultSpec(
            "slow_checkpoint_storage",
            "slow_checkpoint_storage",
            "storage",
            "slow_storage on /mnt/ckpt of one host (8× latency, 12.5 % throughput), shortly before a checkpoint",
            (
                "factorylens.storage.operation.time / .operations (latency) up",
                "factorylens.storage.io{write} rate down",
                "the job's checkpoint.duration up, checkpoint.throughput down",
                "samples/s to 0 while it saves",
            ),
            lambda t, on: (
                [
                    _sim(
                        "slow_storage",
                        t,
                        on,
                        {"mount": "/mnt/ckpt", "latency_factor": 8.0, "throughput_fraction": 0.125},
                    )
                ],
                [],
                Truth(f"fs:{t.host}//mnt/ckpt", "storage"),
            ),
            align_to_checkpoint=True,
        ),
        FaultSpec(
            "dataloader_starvation",
            "dataloader_starvation",
            "data",
            "one rank's input pipeline needs 3.5× longer per batch (a slow shard, too few workers); host healthy",
            (
                "its factorylens.data.wait.ratio up",
                "its phase.duration{data} up",
                "the other ranks' collective up",
                "host CPU and memory not under pressure",
            ),
            lambda t, on: ([], [WorkloadFault("input_starvation", on, rank=t.rank, factor=3.5)], _rank(t, "data")),
        ),
        FaultSpec(
            "collective_network_congestion",
            "collective_network_congestion",
            "network",
            "ib_congestion on one fabric port of one host (25 % throughput, 5M xmit_wait ticks/s)",
            ("factorylens.network.xmit_wait rate up", "hw.network.io rate down", "every rank's collective up"),
            lambda t, on: (
                [_sim("ib_congestion", t, on, {"port": t.port, "throughput_fraction": 0.25, "xmit_wait_per_s": 5.0e6})],
                [],
                Truth(f"nic:{t.host}/{t.port}", "network"),
            ),
        ),
        FaultSpec(
            "straggler_rank",
            "straggler_rank",
            "app",
            "one rank computes 1.6× slower (CPU-bound launches, a bad core binding); its GPU is healthy",
            (
                "its phase.duration{forward,backward,optimizer} up",
                "its collective wait down, the others' up",
                "its GPU's clocks and temperature unchanged",
            ),
            lambda t, on: ([], [WorkloadFault("straggler", on, rank=t.rank, factor=1.6)], _rank(t, "app")),
        ),
        FaultSpec(
            "noisy_neighbour_job",
            "noisy_neighbour_job",
            "app",
            "the neighbour batch job on a spare GPU of the host bursts: its GPU busy, 8× its samples, the host's "
            "CPUs near saturation (cpu_saturation 0.93) and one port shared (ib_congestion 50 %)",
            (
                "the neighbour's samples/s and its GPU's utilization up",
                "the host's system.cpu.utilization up",
                "one port's xmit_wait up",
                "the host's ranks' data wait up, every rank's collective up",
            ),
            lambda t, on: (
                [
                    _sim("cpu_saturation", t, on, {"utilization": 0.93}),
                    _sim(
                        "ib_congestion", t, on, {"port": t.port, "throughput_fraction": 0.5, "xmit_wait_per_s": 1.5e6}
                    ),
                ],
                [WorkloadFault("neighbour_burst", on)],
                Truth(f"job:{t.neighbour_job}", "app", (f"rank:{t.neighbour_job}/*",)),
            ),
        ),
        FaultSpec(
            "host_cpu_pressure",
            "host_pressure",
            "host",
            "cpu_saturation (98 %: a runaway process outside any job) on one host",
            ("system.cpu.utilization up", "the host's ranks' data wait up", "the other ranks' collective up"),
            lambda t, on: ([_sim("cpu_saturation", t, on, {"utilization": 0.98})], [], Truth(f"host:{t.host}", "host")),
        ),
        FaultSpec(
            "host_memory_pressure",
            "host_pressure",
            "host",
            "memory_pressure (97 % used, swapping 20k pages/s) on one host",
            ("system.memory.utilization up", "system.swap.usage{used} up", "the host's ranks' data wait up"),
            lambda t, on: (
                [_sim("memory_pressure", t, on, {"used_fraction": 0.97, "swap_pages_per_s": 20000.0})],
                [],
                Truth(f"host:{t.host}", "host"),
            ),
        ),
    )
}

FAULT_TYPES: tuple[str, ...] = tuple(dict.fromkeys(spec.fault_type for spec in CATALOG.values()))


def fault_spec(name: str) -> FaultSpec:
    """A catalog fault or a case (``factorylens.simulation.CASES``) by name."""
    from factorylens.simulation._cases import CASES

    spec = CATALOG.get(name) or CASES.get(name)
    if spec is None:
        raise ValueError(f"unknown fault {name!r}; one of {', '.join([*CATALOG, *CASES])}")
    return spec
