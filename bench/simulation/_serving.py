"""The serving suite: a vLLM-style inference fleet on simulated GPUs under a daily load cycle, with
one injected serving fault (or none) and its true root cause.

The world: every GPU of the cluster runs one replica of the ``chat-serve`` service (an 8B model,
:mod:`._serving_model`); a router spreads the requests round robin over the replicas it routes to.
The last GPU of the first host is time-sliced between its replica and a batch job of another team
(``embed-batch``), light until it bursts. Each scrape, every host's node agent (the GPU receiver
and the node's layers), every replica's real serving instrumentation (``ServingTelemetry`` fed
:class:`RequestRecord` s and the engine's state) and the batch job's training instrumentation
export OTLP, stamped with simulated time, as in the training suite (:class:`ScenarioRun`).

Faults (``SERVING_CATALOG``): a traffic surge, prompts growing longer (KV-cache pressure,
preemptions), a throttled GPU and a lost GPU in the pool, the neighbour's burst on the shared GPU,
and a replica restarting while the file system it loads its weights from is slow. ``run.truths``
names each one's answer the way the RCA store names entities: ``gpu:<hw.id>``, ``fs:<host>/<mount>``,
``job:<id>``; the two load faults are the service's own load (``job:chat-serve`` or one of its
replicas, ``replica:chat-serve/<n>``), named through a load signal (requests, tokens, prompt sizes,
the KV cache they fill), not a symptom.

    from factorylens.simulation import ServingRun, ingest
    run = ServingRun("serving_gpu_throttle", seed=1)
    for time_unix_nano, requests in run:
        ingest(store, requests)
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from opentelemetry.sdk.metrics import Histogram
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID

from factorylens import __version__, telemetry
from factorylens.gpus import peak_tflops
from factorylens.instrumentation._serving_config import ServingConfig
from factorylens.instrumentation._serving_instrumentor import SCOPE as SERVING_SCOPE
from factorylens.instrumentation._serving_instrumentor import ServingInstrumentor
from factorylens.instrumentation._serving_telemetry import RequestRecord, ServingTelemetry
from factorylens.receivers.gpu.sim.cluster import Job, Process, SimulatedCluster
from factorylens.receivers.gpu.sim.faults import Scenario
from factorylens.receivers.gpu.sim.node import CHECKPOINT_MOUNT
from factorylens.registry import Attributes
from factorylens.simulation._catalog import FaultSpec, Injected, Targets, Truth
from factorylens.simulation._otlp import MetricExport
from factorylens.simulation._run import (
    Request,
    export_all,
    instrumented_rank,
    node_agents,
    scrape_node_agents,
    shut_down,
    training_config,
)
from factorylens.simulation._serving_model import NS, Replica, ServedModel, Traffic
from factorylens.simulation._workload import NeighbourWorkload, WorkloadFault

SERVING_JOB = "chat-serve"
SERVING_TEAM = "assistant"
NEIGHBOUR_JOB = "embed-batch"
NEIGHBOUR_TEAM = "search"
MODEL_MOUNT = CHECKPOINT_MOUNT  # the shared file system the replicas load their weights from
DAY_START = 1_699_920_000.0  # a midnight (UTC): runs start at an hour of this day
START_HOURS = (9.0, 20.0)  # a fault run starts at a time of day in this range (per seed)
ONSET_RANGE_S = (630.0, 750.0)
POST_ONSET_S = 420.0
HEALTH_CHECK_S = 30.0  # the router drops a replica this long after it stops answering
NEIGHBOUR_SHARE = 0.55  # how much of the shared GPU's time the neighbour takes while it bursts
# the load signals: a surge or a change of the prompts is named through one of these, not a symptom
LOAD_SIGNALS = (
    "factorylens.inference.requests.finished*",
    "factorylens.inference.tokens*",
    "gen_ai.client.token.usage*",
)


@dataclass(frozen=True)
class ServingFault:
    """A change of the serving workload itself: ``surge`` (the load to ``factor`` × the daily peak),
    ``prompts`` (prompts × ``factor`` in length), ``restart`` (replica ``replica`` restarts and reloads
    its weights)."""

    kind: str
    start_s: float
    duration_s: float = math.inf
    factor: float = 1.0
    replica: int | None = None
    ramp_s: float = 0.0

    def level(self, t_s: float) -> float:
        """How far the fault has come at ``t_s`` (0 before it, 1 once ramped up, 0 after it)."""
        if not self.start_s <= t_s < self.start_s + self.duration_s:
            return 0.0
        return 1.0 if self.ramp_s <= 0 else min(1.0, (t_s - self.start_s) / self.ramp_s)


def _load_truth() -> Truth:
    return Truth(f"job:{SERVING_JOB}", "load", (f"replica:{SERVING_JOB}/*",), signals=LOAD_SIGNALS)


def _gpu(t: Targets) -> Truth:
    return Truth(f"gpu:{t.gpu_id}", "gpu")


def _on_gpu(kind: str, t: Targets, onset: float, params: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "target": {"host": t.host_index, "gpu": t.gpu_index}, "start": onset, "params": params}


SERVING_CATALOG: dict[str, FaultSpec] = {
    spec.name: spec
    for spec in (
        FaultSpec(
            "serving_traffic_surge",
            "serving_traffic_surge",
            "load",
            "the request rate climbs over 30 s to three times the daily peak the fleet is sized for (a launch, a "
            "retry storm) and stays there for 6 minutes; nothing is broken",
            (
                "every replica's finished requests and tokens up",
                "running requests at the batch limit, then the queue grows",
                "TTFT p95 up by seconds, TPOT up",
            ),
            lambda t, on: Injected([], [ServingFault("surge", on, 360.0, 3.0, ramp_s=30.0)], (_load_truth(),)),
        ),
        FaultSpec(
            "serving_prompt_growth",
            "serving_prompt_growth",
            "load",
            "prompts grow six-fold over a minute (a client starts sending long documents); "
            "the request rate is unchanged",
            (
                "input tokens per request and per second up",
                "KV-cache usage to 100 %, preemptions",
                "prefill takes the engine's time: TTFT and TPOT up, the queue grows",
            ),
            lambda t, on: Injected([], [ServingFault("prompts", on, math.inf, 6.0, ramp_s=60.0)], (_load_truth(),)),
        ),
        FaultSpec(
            "serving_gpu_throttle",
            "serving_gpu_throttling",
            "gpu",
            "thermal_throttle (+30 °C: a cooling failure) on one serving GPU",
            ("hw.temperature up, clock events, hw.gpu.speed down", "its replica's TPOT and TTFT up, batch grows"),
            lambda t, on: Injected([_on_gpu("thermal_throttle", t, on, {"extra_celsius": 30.0})], [], (_gpu(t),)),
        ),
        FaultSpec(
            "serving_gpu_lost",
            "serving_gpu_lost",
            "gpu",
            "gpu_lost (fallen off the bus, XID 79) under one replica: it fails what it gets until the router drops it",
            (
                "hw.status failed, an XID 79 event, the GPU's series stop",
                "its replica's failed requests (EngineDeadError), then its series stop",
                "the other replicas' load up by their share of it",
            ),
            lambda t, on: Injected(
                [_on_gpu("gpu_lost", t, on, {}), _on_gpu("xid", t, on, {"code": 79})], [], (_gpu(t),)
            ),
        ),
        FaultSpec(
            "serving_noisy_neighbour",
            "serving_noisy_neighbour",
            "app",
            f"the {NEIGHBOUR_JOB} job time-sliced on the shared GPU bursts: it takes {NEIGHBOUR_SHARE:.0%} of the "
            "GPU's time from the replica there",
            (
                "the neighbour's samples/s and its process' GPU utilization up",
                "the shared replica's TPOT and TTFT up, its batch grows",
            ),
            lambda t, on: Injected(
                [],
                [WorkloadFault("neighbour_burst", on)],
                (Truth(f"job:{NEIGHBOUR_JOB}", "app", (f"rank:{NEIGHBOUR_JOB}/*",)),),
            ),
        ),
        FaultSpec(
            "serving_slow_weight_load",
            "serving_slow_weight_load",
            "storage",
            f"one replica restarts while {MODEL_MOUNT} on its host is slow (8x latency, 20 % throughput): loading "
            "its 16 GB of weights takes a minute instead of 28 s, and the requests routed to it wait; timed from when "
            "a healthy load would have been done (a restart alone is routine)",
            (
                "the mount's read latency up, read throughput capped",
                "the replica's waiting requests up, TTFT up by minutes",
                "its GPU idle while it loads",
            ),
            lambda t, on: Injected(
                [
                    {
                        "kind": "slow_storage",
                        "target": {"host": t.host_index},
                        "start": on - 20.0,
                        "params": {"mount": MODEL_MOUNT, "latency_factor": 8.0, "throughput_fraction": 0.2},
                    }
                ],
                [ServingFault("restart", on, replica=t.rank)],
                (Truth(f"fs:{t.host}/{MODEL_MOUNT}", "storage"),),
            ),
            gradual=True,
        ),
    )
}
SERVING_FAULT_TYPES: tuple[str, ...] = tuple(dict.fromkeys(spec.fault_type for spec in SERVING_CATALOG.values()))


class _ReplicaDriver:
    """What the replica's GPU is asked for (its engine's busy share, and the neighbour's on a shared
    GPU), for the simulated GPU's physics."""

    def __init__(self, run: ServingRun, replica: Replica, shared: bool) -> None:
        self.run, self.replica, self.shared = run, replica, shared

    def gpu_demand(self, elapsed: float) -> float:
        demand = self.replica.state.utilization
        if self.shared:
            demand = min(1.0, demand * (1.0 - self.run.neighbour_share(elapsed)) + self.run.neighbour_demand(elapsed))
        return demand


@dataclass(frozen=True)
class _DrivenServer(Job):
    driver: Any = None

    def load(self, t: float, elapsed: float, phase: float = 0.0) -> float:
        return float(self.driver.gpu_demand(elapsed))


class ServingRun:
    """A deterministic (per seed) simulated serving fleet with one serving fault, or none.

    Args:
        fault_type: a name of ``SERVING_CATALOG``, a :class:`FaultSpec`, or None (no fault).
        seed: everything random follows it (the same world and history before the onset whatever the fault).
        hosts, gpus_per_host: the fleet: one replica per GPU (at least 2 GPUs in all).
        scrape_interval_s: how often every component exports.
        start_hour: the time of day (UTC) the run starts at (default: drawn per seed, 9-20 h).
        onset_s: the fault's onset in simulated seconds (default 10.5-12.5 minutes in).
        duration_s: run length (default: onset + 7 minutes).
        traffic: the clients' load (per replica at the daily peak) and request sizes.
        logs: also yield the node agents' XID events as OTLP log requests.

    Iterate it once for ``(time_unix_nano, [request, ...])`` every scrape interval, like
    :class:`~factorylens.simulation.ScenarioRun` (same attributes: ``truths``, ``onset_unix_nano``, ...).
    """

    def __init__(
        self,
        fault_type: str | FaultSpec | None,
        seed: int = 0,
        hosts: int = 2,
        gpus_per_host: int = 4,
        *,
        scrape_interval_s: float = 10.0,
        start_hour: float | None = None,
        onset_s: float | None = None,
        duration_s: float | None = None,
        traffic: Traffic | None = None,
        model: ServedModel | None = None,
        gpu_model: str = "H100",
        logs: bool = False,
        reuse_encoding: bool = True,
    ) -> None:
        if hosts < 1 or gpus_per_host < 1 or hosts * gpus_per_host < 2:
            raise ValueError("a serving fleet needs at least two GPUs (two replicas)")
        if not scrape_interval_s > 0:
            raise ValueError("scrape_interval_s must be positive")
        if isinstance(fault_type, FaultSpec):
            self.spec: FaultSpec | None = fault_type
        elif fault_type is None:
            self.spec = None
        elif fault_type in SERVING_CATALOG:
            self.spec = SERVING_CATALOG[fault_type]
        else:
            raise ValueError(f"unknown serving fault {fault_type!r}; one of {', '.join(SERVING_CATALOG)}")
        self.fault_type = self.spec.name if self.spec is not None else None
        self.seed = seed
        self.hosts, self.gpus_per_host = hosts, gpus_per_host
        self.scrape_interval_s = float(scrape_interval_s)
        self._logs, self._reuse = logs, reuse_encoding
        self._started = False
        self.traffic = traffic or Traffic()
        self.model = model or ServedModel()

        choose = np.random.default_rng([seed, 100])
        victim = int(choose.integers(hosts))
        local_gpu = int(choose.integers(gpus_per_host))
        nominal_onset = float(choose.uniform(*ONSET_RANGE_S))
        hour = float(choose.uniform(*START_HOURS)) if start_hour is None else float(start_hour)
        if (victim, local_gpu) == (0, gpus_per_host - 1) and hosts * gpus_per_host > 2:
            local_gpu = (local_gpu + 1) % gpus_per_host if hosts == 1 else local_gpu
            victim = (victim + 1) % hosts if hosts > 1 else victim  # not the shared GPU: its own suite fault
        self.start_time = DAY_START + hour * 3600.0
        self.epoch_ns = int(self.start_time * NS)
        self.onset_s = float(nominal_onset if onset_s is None else onset_s)
        self.duration_s = float(duration_s) if duration_s is not None else self.onset_s + POST_ONSET_S
        if self.duration_s <= 0:
            raise ValueError("duration_s must be positive")
        self.onset_unix_nano = self.epoch_ns + int(self.onset_s * NS)
        self.end_unix_nano = self.epoch_ns + int(self.duration_s * NS)
        self.bite_s: float | None = None
        self.benign = None
        self.decoys: tuple = ()

        self._now = 0.0
        self.cluster = SimulatedCluster(
            hosts, gpus_per_host, gpu_model, None, seed=seed, clock=lambda: self._now, start_time=self.start_time
        )
        for host in self.cluster.hosts:
            assert host.node is not None
            host.node.noise = np.random.default_rng([seed, 10 + host.index])
            for gpu in host.gpus:
                gpu.process = None
        rng = np.random.default_rng([seed, 101])
        self.replicas: list[Replica] = []
        self.placement: list[tuple[int, int]] = []  # replica index → (host, GPU)
        pid = 5000
        for host in self.cluster.hosts:
            for gpu in host.gpus:
                replica = Replica(
                    len(self.replicas), self.model, self.traffic, np.random.default_rng(rng.integers(2**32))
                )
                shared = (host.index, gpu.index) == (0, gpus_per_host - 1)
                pid += 1 + int(rng.integers(40))
                gpu.process = Process(
                    pid,
                    "vllm",
                    _DrivenServer(
                        SERVING_JOB, SERVING_TEAM, "inference", 0.55, driver=_ReplicaDriver(self, replica, shared)
                    ),
                )
                self.replicas.append(replica)
                self.placement.append((host.index, gpu.index))
        self.shared_gpu = self.cluster.hosts[0].gpus[gpus_per_host - 1]
        self.neighbour_pid = 9100
        self.shared_gpu.guests = [
            Process(self.neighbour_pid, "python", Job(NEIGHBOUR_JOB, NEIGHBOUR_TEAM, "batch", 0.1))
        ]
        victim_host = self.cluster.hosts[victim]
        victim_gpu = victim_host.gpus[local_gpu]
        self.victim_replica = victim * gpus_per_host + local_gpu
        self.targets = Targets(
            victim,
            victim_host.name,
            local_gpu,
            victim_gpu.uuid,
            self.victim_replica,
            "",
            SERVING_JOB,
            NEIGHBOUR_JOB,
            hosts=tuple(h.name for h in self.cluster.hosts),
            gpu_ids=tuple(tuple(g.uuid for g in h.gpus) for h in self.cluster.hosts),
        )
        sim_faults: list[dict[str, Any]] = []
        self.faults: list[ServingFault] = []
        workload_faults: list[WorkloadFault] = []
        self.truths: tuple[Truth, ...] = ()
        if self.spec is not None:
            injected = Injected.of(self.spec.inject(self.targets, self.onset_s))
            sim_faults = list(injected.sim)
            self.faults = [f for f in injected.workload if isinstance(f, ServingFault)]
            workload_faults = [f for f in injected.workload if isinstance(f, WorkloadFault)]
            self.truths, self.decoys = injected.truths, injected.decoys
        self.truth: Truth | None = self.truths[0] if self.truths else None
        restart = next((f for f in self.faults if f.kind == "restart"), None)
        if restart is not None:  # a slow load is told from a routine restart once a healthy one would be done
            self.bite_s = restart.start_s + self.healthy_load_s()
        self.sim_faults = sim_faults
        self.cluster.scenario = Scenario.from_dict({"faults": sim_faults})
        self.neighbour = NeighbourWorkload(workload_faults, np.random.default_rng([seed, 2]), self.epoch_ns)
        self._routed_until: dict[int, float] = {}  # replica → when the router stops sending to it

    # ---- the workload --------------------------------------------------------------------------------
    def neighbour_demand(self, elapsed: float) -> float:
        return self.neighbour.gpu_demand(elapsed)

    def neighbour_share(self, elapsed: float) -> float:
        """The share of the shared GPU's time the neighbour takes (time slicing)."""
        return NEIGHBOUR_SHARE if self.neighbour.bursting(elapsed) else 0.04

    def _level(self, kind: str, t_s: float) -> float:
        return max((f.level(t_s) * (f.factor - 1.0) for f in self.faults if f.kind == kind), default=0.0)

    def rps(self, t_s: float) -> float:
        """Requests per second per replica (of the whole fleet's share) at simulated second ``t_s``; a
        surge climbs to ``factor`` times the daily peak the fleet is sized for, whatever the hour."""
        base = self.traffic.peak_rps * self.traffic.diurnal(self.start_time + t_s)
        surge = max((f.level(t_s) * f.factor for f in self.faults if f.kind == "surge"), default=0.0)
        return base + max(0.0, surge * self.traffic.peak_rps - base)

    def _speed(self, replica: int, t_s: float) -> float:
        host, gpu_index = self.placement[replica]
        gpu = self.cluster.hosts[host].gpus[gpu_index]
        speed = gpu.clock_factor
        if gpu is self.shared_gpu:
            speed *= 1.0 - self.neighbour_share(t_s)
        return speed

    def _routed(self, t_s: float) -> list[bool]:
        routed = []
        for i, replica in enumerate(self.replicas):
            if replica.lost:
                self._routed_until.setdefault(i, t_s + HEALTH_CHECK_S)
                routed.append(t_s < self._routed_until[i])
            else:
                routed.append(True)
        return routed

    def healthy_load_s(self) -> float:
        """How long a replica takes to load its weights and start with the model's file system healthy."""
        host = self.cluster.hosts[0].node
        assert host is not None
        return self.model.weight_bytes / (host.mounts[MODEL_MOUNT].max_bytes_per_s * 0.8) + self.model.weight_load_s

    def _restarts(self, t0: float, t1: float) -> None:
        for f in self.faults:
            if f.kind == "restart" and f.replica is not None and t0 <= f.start_s < t1:
                host, _ = self.placement[f.replica]
                node = self.cluster.hosts[host].node
                assert node is not None
                throughput = node.mounts[MODEL_MOUNT].max_bytes_per_s * 0.8
                for fault in self.cluster.hosts[host].faults_for(None, "slow_storage"):
                    if fault.params["mount"] == MODEL_MOUNT:
                        throughput *= float(fault.params["throughput_fraction"])
                load_s = self.model.weight_bytes / throughput + self.model.weight_load_s
                self.replicas[f.replica].restart(f.start_s, load_s)
                node.read_demand[MODEL_MOUNT] = node.mounts[MODEL_MOUNT].max_bytes_per_s
        for i, replica in enumerate(self.replicas):
            node = self.cluster.hosts[self.placement[i][0]].node
            if node is not None and MODEL_MOUNT in node.read_demand and not replica.loading(t1):
                node.read_demand.pop(MODEL_MOUNT, None)

    # ---- the components ------------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return self._now

    def _wall_ns(self) -> int:
        return self.epoch_ns + int(round(self._now * NS))

    def _instance_id(self, name: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"factorylens-serving/{self.seed}/{name}"))

    def _replica_telemetry(self, index: int) -> tuple[ServingTelemetry, Any, MetricExport]:
        host, gpu_index = self.placement[index]
        gpu = self.cluster.hosts[host].gpus[gpu_index]
        host_name = self.cluster.hosts[host].name
        config = ServingConfig(
            service_name=SERVING_JOB,
            model=self.model.name,
            provider="vllm",
            operation="chat",
            server_address=f"{host_name}",
            server_port=8000 + gpu_index,
            job_id=SERVING_JOB,
            team=SERVING_TEAM,
            replica=str(index),
            gpu_ids=(gpu.uuid,),
            host=host_name,
            export_interval_s=self.scrape_interval_s,
        )
        identity = ServingInstrumentor(config).identity()
        resource = telemetry.make_resource(
            {
                **identity,
                Attributes.FACTORYLENS_SIMULATED: True,
                SERVICE_INSTANCE_ID: self._instance_id(f"replica-{index}"),
            },
            SERVING_JOB,
        )
        # base-2 exponential histograms (OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION), as
        # ServingInstrumentor exports them: a p95 to a few per cent, not the engines' 0.1-0.25 s bucket
        reader = InMemoryMetricReader(preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()})
        provider = telemetry.make_meter_provider(resource, [reader])
        served = ServingTelemetry(config, provider.get_meter(SERVING_SCOPE, __version__))
        return served, provider, MetricExport(reader, self.epoch_ns, reuse=self._reuse)

    def _record(self, request: Any) -> RequestRecord:
        def ns(t_s: float | None) -> int | None:
            return None if t_s is None else int(round(t_s * NS))

        return RequestRecord(
            int(round(request.arrival_s * NS)),
            ns(request.scheduled_s),
            ns(request.first_token_s),
            int(round(request.end_s * NS)),
            request.prompt_tokens,
            request.output_tokens,
            request.preemptions,
            "error" if request.error_type else "stop",
            request.error_type,
        )

    # ---- the run ---------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[int, list[Request]]]:
        return self.ticks()

    def ticks(self) -> Iterator[tuple[int, list[Request]]]:
        if self._started:
            raise RuntimeError("a ServingRun runs once; make a new one (same seed, same run)")
        self._started = True
        receiver, host_exports, log_exports = node_agents(
            self.cluster,
            self.scrape_interval_s,
            self._elapsed,
            self._instance_id,
            self.epoch_ns,
            self._logs,
            self._reuse,
        )
        servers = [self._replica_telemetry(i) for i in range(len(self.replicas))]
        host = self.cluster.hosts[0]
        peak = (peak_tflops(self.cluster.model.name) or 0.0) * 1e12
        neighbour = instrumented_rank(
            training_config(
                NEIGHBOUR_JOB,
                NEIGHBOUR_TEAM,
                0,
                1,
                host.name,
                self.shared_gpu,
                0.3 * peak * NeighbourWorkload.STEP_S / NeighbourWorkload.BURST_SAMPLES,
                self.scrape_interval_s,
            ),
            self._instance_id(f"{NEIGHBOUR_JOB}/0"),
            self._elapsed,
            self._wall_ns,
            self.epoch_ns,
            self._reuse,
        )
        providers = [p.meter_provider for p in receiver.pipelines] + [s[1] for s in servers] + [neighbour[1]]
        try:
            ticks = math.ceil(self.duration_s / self.scrape_interval_s - 1e-9)
            for k in range(1, ticks + 1):
                t0, t1 = (k - 1) * self.scrape_interval_s, k * self.scrape_interval_s
                self._restarts(t0, t1)
                for record in self.neighbour.advance_to(t1):
                    neighbour[0].recorder.deliver(record)
                routed = self._routed(t0)
                count = sum(routed)
                fleet_rps = self.rps(t0) * len(self.replicas)
                prompt_scale = 1.0 + self._level("prompts", t0)
                for i, replica in enumerate(self.replicas):
                    share = fleet_rps / count if routed[i] and count else 0.0
                    finished = replica.step(t0, t1, share, prompt_scale, self._speed(i, t0))
                    served = servers[i][0]
                    served.record_many(self._record(r) for r in finished)
                    state = replica.state
                    if not replica.lost:
                        served.set_state(
                            int(round(state.running)),
                            int(round(state.waiting)),
                            state.kv_cache_usage,
                            int(round(state.running)),
                        )
                self._now = t1
                self._update_shares()
                self.cluster.advance()
                self._mark_lost()
                scrape_node_agents(receiver, self._logs)
                now_ns = self._wall_ns()
                neighbour[0].drain()
                exports = host_exports + [neighbour[2]] + [s[2] for i, s in enumerate(servers) if self._exports(i)]
                yield now_ns, export_all(exports, log_exports, now_ns)
        finally:
            shut_down(receiver, providers)

    def _update_shares(self) -> None:
        gpu = self.shared_gpu
        if gpu.process is None:
            return
        replica = self.replicas[self.placement.index((0, self.gpus_per_host - 1))]
        own = replica.state.utilization * (1.0 - self.neighbour_share(self._now))
        theirs = self.neighbour_demand(self._now)
        total = max(own + theirs, 1e-9)
        gpu.utilization_shares = {gpu.process.pid: own / total, self.neighbour_pid: theirs / total}

    def _mark_lost(self) -> None:
        for i, (host, gpu_index) in enumerate(self.placement):
            if self.cluster.hosts[host].gpus[gpu_index].lost:
                self.replicas[i].lost = True

    def _exports(self, index: int) -> bool:
        """A replica whose GPU is gone exports until the router drops it (its API server answers, its
        engine is dead), then its process is gone."""
        until = self._routed_until.get(index)
        return until is None or self._now <= until

    def truth_onset_s(self, truth: Any) -> float:
        return self.onset_s if truth.onset_s is None else float(truth.onset_s)

    def describe(self) -> dict[str, Any]:
        return {
            "fault": self.fault_type,
            "fault_type": self.spec.fault_type if self.spec else None,
            "seed": self.seed,
            "size": f"{self.hosts}x{self.gpus_per_host}",
            "start_hour": round((self.start_time - DAY_START) / 3600.0, 2),
            "onset_s": round(self.onset_s, 3),
            "duration_s": round(self.duration_s, 3),
            "truths": [{"entity": t.entity, "domain": t.domain} for t in self.truths],
            "sim_faults": self.sim_faults,
            "serving_faults": [
                replace(f, duration_s=-1.0 if math.isinf(f.duration_s) else f.duration_s).__dict__ for f in self.faults
            ],
        }
