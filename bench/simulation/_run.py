"""One scenario run: a simulated GPU cluster, its node agents and an instrumented training job, in
simulated time, with one fault of the catalog (or none), background noise and a benign anomaly.

Every scrape interval the run yields what the real components would have exported at that moment,
as OTLP requests: each host's node agent (the GPU receiver's scraper and the node's host, storage
and fabric layers, through the OTel SDK), each training rank's instrumentation (the real
``StepRecorder`` → ``TrainingTelemetry`` path, fed with steps planned from the cluster's state
instead of slept) and the neighbour job's. Nothing sleeps: twenty simulated minutes take a second
or two of CPU.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID
from opentelemetry.trace import NoOpTracer

from factorylens import __version__, telemetry
from factorylens.gpus import peak_tflops
from factorylens.instrumentation import TrainingConfig, TrainingInstrumentor
from factorylens.instrumentation._instrumentor import SCOPE as INSTRUMENTATION_SCOPE
from factorylens.instrumentation._recorder import StepRecorder
from factorylens.instrumentation._telemetry import TrainingTelemetry
from factorylens.receivers.gpu.config import GpuReceiverConfig
from factorylens.receivers.gpu.factory import SERVICE_NAME, node_sources
from factorylens.receivers.gpu.jobs import StaticJobResolver
from factorylens.receivers.gpu.nvml import NvmlBackend
from factorylens.receivers.gpu.receiver import GpuReceiver, HostPipeline
from factorylens.receivers.gpu.scraper import GpuScraper
from factorylens.receivers.gpu.sim.cluster import Job, Process, SimulatedCluster
from factorylens.receivers.gpu.sim.faults import Scenario
from factorylens.receivers.gpu.sim.node import PORTS
from factorylens.receivers.gpu.sim.nvml import SimulatedNvml
from factorylens.receivers.gpu.usage import UsageMeter
from factorylens.registry import Attributes
from factorylens.simulation._catalog import Decoy, FaultSpec, Injected, Targets, Truth, fault_spec
from factorylens.simulation._otlp import LogExport, MetricExport
from factorylens.simulation._workload import (
    CHECKPOINT_EVERY_S,
    CHECKPOINT_FIRST_S,
    HEALTHY_MFU,
    HEALTHY_STEP_S,
    SAMPLES_PER_STEP,
    DrivenJob,
    NeighbourWorkload,
    RankInfo,
    SurgingJob,
    TrainingWorkload,
    WorkloadFault,
    mountpoint_of,
)

START_TIME = 1_700_000_000.0  # simulated epoch seconds at the start of every run
TRAINING_JOB = "llm-pretrain-7b"
TRAINING_TEAM = "foundation-models"
NEIGHBOUR_TEAM = "search"
# at least 10.5 minutes of normal history with two checkpoints in it (90 s, 450 s), and the first minute
# after the onset clear of the next one (810 s)
ONSET_RANGE_S = (630.0, 750.0)
POST_ONSET_S = 420.0
BENIGN_OFFSET_S = (-90.0, 30.0)  # the benign anomaly starts this close to the fault
BENIGN_DURATION_S = (180.0, 300.0)
CHECKPOINT_LEAD_S = (5.0, 20.0)  # a checkpoint-storage fault starts this long before a checkpoint
# the fault bites when the job computes this much slower than healthy (pace: healthy step time over the
# step's, checkpoints left out), or stops: what a gradual fault's scoring counts from
BITE_PACE = 0.9
Request = ExportMetricsServiceRequest | ExportLogsServiceRequest


@dataclass(frozen=True)
class BenignAnomaly:
    """An anomaly that is not the cause of anything: an inference service on another host surges, or
    a GPU's cooling blips, near the fault."""

    kind: str  # "inference_surge" | "cooling_blip"
    entity: str
    host: str
    gpu_index: int
    onset_s: float
    duration_s: float


class ScenarioRun:
    """A deterministic (per seed) simulated run with one fault of the catalog, a case of several, or none.

    Args:
        fault_type: a catalog name (``factorylens.simulation.CATALOG``), a case name
            (``factorylens.simulation.CASES``), a :class:`FaultSpec` of one's own (e.g. from a scenario
            file), or None for a fault-free run.
        seed: everything random (noise, where the fault lands, onset, the benign anomaly) follows it;
            the same seed gives the same world and the same history before the onset whatever the fault.
        hosts, gpus_per_host: cluster size (at least 4 GPUs per host: training, inference, a spare).
        scrape_interval_s: how often every component exports.
        onset_s: fault onset in simulated seconds from the start (default: 10.5-12.5 minutes in; a
            checkpoint-storage fault starts 5-20 s before the job's next checkpoint).
        duration_s: run length (default: onset + 7 minutes).
        benign_anomaly: add an unrelated anomaly near the onset (on another host when there is one).
        logs: also yield the node agents' XID events as OTLP log requests.
        reuse_encoding: see :class:`factorylens.simulation._otlp.MetricExport`.
        start_time: the unix time the run starts at (a live demo starts it at real time).

    Iterate it (once) for ``(time_unix_nano, [request, ...])`` every scrape interval: one
    ``ExportMetricsServiceRequest`` per node agent, per training rank and for the neighbour job (and,
    with ``logs``, an ``ExportLogsServiceRequest`` per node agent that saw XID events; ``ingest`` feeds
    both kinds to a store). Everything is deterministic for a seed except the node agents' own
    ``factorylens.receiver.scrape.duration`` (real CPU time, as the receiver measures it).

    The world: the cluster's placement (most GPUs of every host train ``llm-pretrain-7b``, one rank
    per GPU; an inference service per host; a notebook), plus the neighbour batch job on the last GPU
    of the victim host (on 4-GPU hosts it takes the notebook's GPU) in every run, fault or not.
    """

    def __init__(
        self,
        fault_type: str | FaultSpec | None,
        seed: int = 0,
        hosts: int = 2,
        gpus_per_host: int = 4,
        *,
        scrape_interval_s: float = 10.0,
        onset_s: float | None = None,
        duration_s: float | None = None,
        benign_anomaly: bool = True,
        model: str = "H100",
        logs: bool = False,
        reuse_encoding: bool = True,
        start_time: float = START_TIME,
    ) -> None:
        if hosts < 1 or gpus_per_host < 4:
            raise ValueError("a scenario needs at least one host and 4 GPUs per host (training, serving, a spare)")
        if not scrape_interval_s > 0:
            raise ValueError("scrape_interval_s must be positive")
        if isinstance(fault_type, FaultSpec):
            self.spec: FaultSpec | None = fault_type
        else:
            self.spec = fault_spec(fault_type) if fault_type is not None else None
        self.fault_type = self.spec.name if self.spec is not None else None
        self.seed = seed
        self.hosts, self.gpus_per_host = hosts, gpus_per_host
        self.scrape_interval_s = float(scrape_interval_s)
        self._logs = logs
        self._reuse = reuse_encoding
        self._started = False
        self.epoch_ns = int(start_time * 1e9)

        choose = np.random.default_rng([seed, 0])  # the same draws, in the same order, for every fault
        victim = int(choose.integers(hosts))
        n_train = max(1, round(gpus_per_host * 0.625))  # the cluster's placement
        local_gpu = int(choose.integers(n_train))
        port = PORTS[int(choose.integers(len(PORTS)))]
        nominal_onset = float(choose.uniform(*ONSET_RANGE_S))
        lead = float(choose.uniform(*CHECKPOINT_LEAD_S))
        benign_kind = ("inference_surge", "cooling_blip")[int(choose.integers(2))]
        benign_offset = float(choose.uniform(*BENIGN_OFFSET_S))
        benign_duration = float(choose.uniform(*BENIGN_DURATION_S))
        benign_host = (victim + 1 + int(choose.integers(max(1, hosts - 1)))) % hosts if hosts > 1 else victim

        if onset_s is None:
            onset_s = nominal_onset
            k = max(0, math.ceil((nominal_onset - CHECKPOINT_FIRST_S) / CHECKPOINT_EVERY_S))
            if self.spec is not None and self.spec.align_to_checkpoint:
                onset_s = CHECKPOINT_FIRST_S + k * CHECKPOINT_EVERY_S - lead
            elif self.spec is not None and self.spec.checkpoint_offset_s is not None:
                onset_s = CHECKPOINT_FIRST_S + k * CHECKPOINT_EVERY_S + self.spec.checkpoint_offset_s
        self.onset_s = float(onset_s)
        post_onset_s = self.spec.post_onset_s if self.spec is not None else None
        self.duration_s = float(duration_s) if duration_s is not None else self.onset_s + (post_onset_s or POST_ONSET_S)
        if self.duration_s <= 0:
            raise ValueError("duration_s must be positive")
        self.onset_unix_nano = self.epoch_ns + int(self.onset_s * 1e9)
        self.end_unix_nano = self.epoch_ns + int(self.duration_s * 1e9)

        # the world: the cluster places its jobs; ours replace them where the workload drives them
        self._now = 0.0
        self.bite_s: float | None = None  # set while running: when the job first computed BITE_PACE slower
        self.cluster = SimulatedCluster(
            hosts, gpus_per_host, model, None, seed=seed, clock=lambda: self._now, start_time=start_time
        )
        for host in self.cluster.hosts:
            assert host.node is not None
            host.node.noise = np.random.default_rng([seed, 10 + host.index])
        self.job_id = TRAINING_JOB
        self.ranks = [
            RankInfo(host.index * n_train + gpu.index, host.index, host.name, gpu)
            for host in self.cluster.hosts
            for gpu in host.gpus
            if gpu.process is not None and gpu.process.job.job_id == TRAINING_JOB
        ]
        self.ranks.sort(key=lambda r: r.rank)
        victim_host = self.cluster.hosts[victim]
        victim_gpu = victim_host.gpus[local_gpu]
        self.neighbour_job = f"embed-batch-{victim}"
        # where a second fault lands: drawn from a stream of its own, so the draws above stay the same
        more = np.random.default_rng([seed, 3])
        other = (victim + 1 + int(more.integers(max(1, hosts - 1)))) % hosts if hosts > 1 else victim
        other_choices = [g for g in range(n_train) if other != victim or g != local_gpu] or [local_gpu]
        other_gpu = other_choices[int(more.integers(len(other_choices)))]
        other_port = PORTS[int(more.integers(len(PORTS)))]
        neighbour_gpu = (victim, gpus_per_host - 1)  # the neighbour job takes it (below)
        free = next(
            (
                (host.index, gpu.index, gpu.uuid)
                for host in sorted(self.cluster.hosts, key=lambda h: (h.index == victim, h.index))
                for gpu in host.gpus
                if gpu.process is None and (host.index, gpu.index) != neighbour_gpu
            ),
            None,
        )
        self.targets = Targets(
            victim,
            victim_host.name,
            local_gpu,
            victim_gpu.uuid,
            victim * n_train + local_gpu,
            port,
            TRAINING_JOB,
            self.neighbour_job,
            other,
            self.cluster.hosts[other].name,
            other_gpu,
            self.cluster.hosts[other].gpus[other_gpu].uuid,
            other * n_train + other_gpu,
            other_port,
            free,
            tuple(h.name for h in self.cluster.hosts),
            tuple(tuple(g.uuid for g in h.gpus) for h in self.cluster.hosts),
        )

        sim_faults: list[dict[str, Any]] = []
        workload_faults: list[WorkloadFault] = []
        self.truths: tuple[Truth, ...] = ()
        self.decoys: tuple[Decoy, ...] = ()
        if self.spec is not None:
            injected = Injected.of(self.spec.inject(self.targets, self.onset_s))
            sim_faults, workload_faults = list(injected.sim), list(injected.workload)
            self.truths, self.decoys = injected.truths, injected.decoys
        # the (first) true root cause; a case of several faults lists them all in ``truths``, and one
        # whose faults should open no incident has none
        self.truth: Truth | None = self.truths[0] if self.truths else None

        self.benign: BenignAnomaly | None = None
        if benign_anomaly:
            host = self.cluster.hosts[benign_host]
            gpu = host.gpus[n_train]  # the host's inference GPU
            start = max(self.scrape_interval_s, self.onset_s + benign_offset)
            self.benign = BenignAnomaly(benign_kind, f"gpu:{gpu.uuid}", host.name, gpu.index, start, benign_duration)
            if benign_kind == "cooling_blip":
                sim_faults.append(
                    {
                        "kind": "thermal_throttle",
                        "target": {"host": benign_host, "gpu": gpu.index},
                        "start": start,
                        "duration": benign_duration,
                        "params": {"extra_celsius": 12.0},
                    }
                )
            elif gpu.process is not None:
                gpu.process = Process(
                    gpu.process.pid,
                    gpu.process.name,
                    SurgingJob(
                        **_job_fields(gpu.process.job), surge_start_s=start, surge_end_s=start + benign_duration
                    ),
                )
        self.cluster.scenario = Scenario.from_dict({"faults": sim_faults})
        self.sim_faults = sim_faults
        self.workload_faults = workload_faults

        self.workload = TrainingWorkload(
            self.cluster, TRAINING_JOB, self.ranks, workload_faults, np.random.default_rng([seed, 1]), self.epoch_ns
        )
        self.neighbour = NeighbourWorkload(workload_faults, np.random.default_rng([seed, 2]), self.epoch_ns)
        for info in self.ranks:
            assert info.gpu.process is not None
            info.gpu.process = Process(
                info.gpu.process.pid,
                info.gpu.process.name,
                DrivenJob(**_job_fields(info.gpu.process.job), driver=self.workload),
            )
        spare = victim_host.gpus[gpus_per_host - 1]
        self.neighbour_gpu = spare
        spare.process = Process(
            9000 + victim, "python", DrivenJob(self.neighbour_job, NEIGHBOUR_TEAM, "batch", 0.4, driver=self.neighbour)
        )

    # ---- the components ----------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return self._now

    def _wall_ns(self) -> int:
        return self.epoch_ns + int(round(self._now * 1e9))

    def _node_agents(self) -> tuple[GpuReceiver, list[MetricExport], list[LogExport]]:
        return node_agents(
            self.cluster,
            self.scrape_interval_s,
            self._elapsed,
            self._instance_id,
            self.epoch_ns,
            self._logs,
            self._reuse,
        )

    def _instance_id(self, name: str) -> str:
        """The SDK draws a random ``service.instance.id`` per process; a seed's run keeps one (and with
        it the series' ids, which order ties downstream)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"factorylens-simulation/{self.seed}/{name}"))

    def _instrumented(self, config: TrainingConfig) -> tuple[TrainingTelemetry, Any, MetricExport]:
        return instrumented_rank(
            config,
            self._instance_id(f"{config.job_id}/{config.rank}"),
            self._elapsed,
            self._wall_ns,
            self.epoch_ns,
            self._reuse,
        )

    def _training_config(
        self, job_id: str, team: str, rank: int, world: int, host: str, gpu: Any, flops_per_sample: float
    ) -> TrainingConfig:
        return training_config(job_id, team, rank, world, host, gpu, flops_per_sample, self.scrape_interval_s)

    # ---- the run --------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[int, list[Request]]]:
        return self.ticks()

    def ticks(self) -> Iterator[tuple[int, list[Request]]]:
        """``(time_unix_nano, requests)`` at every scrape, from the first interval to the end."""
        if self._started:
            raise RuntimeError("a ScenarioRun runs once; make a new one (same seed, same run)")
        self._started = True
        receiver, host_exports, log_exports = self._node_agents()
        world = len(self.ranks)
        peak = (peak_tflops(self.cluster.model.name) or 0.0) * 1e12
        flops = HEALTHY_MFU * peak * HEALTHY_STEP_S / SAMPLES_PER_STEP
        ranks = [
            self._instrumented(
                self._training_config(TRAINING_JOB, TRAINING_TEAM, info.rank, world, info.host, info.gpu, flops)
            )
            for info in self.ranks
        ]
        victim = self.cluster.hosts[self.targets.host_index]
        neighbour = self._instrumented(
            self._training_config(
                self.neighbour_job,
                NEIGHBOUR_TEAM,
                0,
                1,
                victim.name,
                self.neighbour_gpu,
                0.3 * peak * NeighbourWorkload.STEP_S / NeighbourWorkload.BURST_SAMPLES,
            )
        )
        providers = [p.meter_provider for p in receiver.pipelines] + [r[1] for r in ranks] + [neighbour[1]]
        try:
            ticks = math.ceil(self.duration_s / self.scrape_interval_s - 1e-9)
            for k in range(1, ticks + 1):
                t = k * self.scrape_interval_s
                # steps that ended in the interval, planned from the cluster as the last scrape left it
                for index, record in self.workload.advance_to(t):
                    ranks[index][0].recorder.deliver(record)
                for record in self.neighbour.advance_to(t):
                    neighbour[0].recorder.deliver(record)
                self._now = t
                pace = self.workload.pace(t)
                self.cluster.job_pace[TRAINING_JOB] = pace
                if self.bite_s is None and t >= self.onset_s and pace < BITE_PACE:
                    self.bite_s = t
                self.cluster.advance()
                scrape_node_agents(receiver, self._logs)
                now_ns = self._wall_ns()
                for stepped, _, _ in ranks:
                    stepped.drain()
                neighbour[0].drain()
                yield now_ns, export_all(host_exports + [r[2] for r in ranks] + [neighbour[2]], log_exports, now_ns)
        finally:
            shut_down(receiver, providers)

    def truth_onset_s(self, truth: Truth | Decoy) -> float:
        """When a true cause (or a decoy) began, in simulated seconds from the start."""
        return self.onset_s if truth.onset_s is None else float(truth.onset_s)

    def describe(self) -> dict[str, Any]:
        """What was injected where, and the answer (for reports)."""
        return {
            "fault": self.fault_type,
            "fault_type": self.spec.fault_type if self.spec else None,
            "seed": self.seed,
            "size": f"{self.hosts}x{self.gpus_per_host}",
            "onset_s": round(self.onset_s, 3),
            "duration_s": round(self.duration_s, 3),
            "truth": {"entity": self.truth.entity, "domain": self.truth.domain} if self.truth else None,
            "truths": [{"entity": t.entity, "domain": t.domain, "onset_s": self.truth_onset_s(t)} for t in self.truths],
            "decoys": [{"entity": d.entity, "signal": d.signal, "why": d.why} for d in self.decoys],
            "benign": {"kind": self.benign.kind, "entity": self.benign.entity, "onset_s": round(self.benign.onset_s, 3)}
            if self.benign
            else None,
            "sim_faults": self.sim_faults,
            "workload_faults": [
                {
                    "kind": f.kind,
                    "start_s": f.start_s,
                    "rank": f.rank,
                    "factor": f.factor,
                    "duration_s": None if math.isinf(f.duration_s) else f.duration_s,
                }
                for f in self.workload_faults
            ],
        }


def _job_fields(job: Job) -> dict[str, Any]:
    return {f.name: getattr(job, f.name) for f in fields(Job)}


def ingest(store: Any, requests: list[Request]) -> None:
    """Feed one tick's requests to a store with ``ingest_metrics`` / ``ingest_logs`` (the RCA store)."""
    for request in requests:
        if isinstance(request, ExportLogsServiceRequest):
            store.ingest_logs(request)
        else:
            store.ingest_metrics(request)


def node_agents(
    cluster: SimulatedCluster,
    scrape_interval_s: float,
    elapsed: Callable[[], float],
    instance_id: Callable[[str], str],
    epoch_ns: int,
    logs: bool,
    reuse: bool,
) -> tuple[GpuReceiver, list[MetricExport], list[LogExport]]:
    """Every host's node agent over the simulated cluster: the GPU receiver's scraper and the node's
    layers, each host with its own SDK pipeline (and, with ``logs``, its XID events as log records)."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    config = GpuReceiverConfig(backend="sim", collection_interval_s=scrape_interval_s, prometheus_port=None, otlp="off")
    pipelines, exports, log_exports = [], [], []
    for host in cluster.hosts:
        backend = NvmlBackend(
            SimulatedNvml(host),
            StaticJobResolver(cluster.jobs_by_pid(host)),
            process_metrics=config.process_metrics,
            max_processes_per_gpu=config.max_processes_per_gpu,
            discovery_retry_interval_s=config.discovery_retry_interval_s,
            clock=elapsed,
        )
        resource = telemetry.make_resource(
            {
                Attributes.HOST_NAME: host.name,
                Attributes.FACTORYLENS_SIMULATED: True,
                SERVICE_INSTANCE_ID: instance_id(host.name),
            },
            SERVICE_NAME,
        )
        reader = InMemoryMetricReader()
        logger_provider = None
        if logs:
            exporter = InMemoryLogRecordExporter()
            logger_provider = LoggerProvider(resource=resource)
            logger_provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
            log_exports.append(LogExport(exporter))
        pipeline = HostPipeline(
            host.name,
            dict(resource.attributes),
            GpuScraper(backend, usage=UsageMeter(clock=elapsed)),
            telemetry.make_meter_provider(resource, [reader]),
            logger_provider=logger_provider,
        )
        pipeline.sources = node_sources(config, host.node, cluster.advance)
        pipelines.append(pipeline)
        exports.append(MetricExport(reader, epoch_ns, reuse=reuse))
    receiver = GpuReceiver(pipelines, scrape_interval_s)
    for pipeline in pipelines:
        pipeline.scraper.start()
        for source in pipeline.sources:
            source.start()
    return receiver, exports, log_exports


def instrumented_rank(
    config: TrainingConfig,
    instance_id: str,
    elapsed: Callable[[], float],
    wall_ns: Callable[[], int],
    epoch_ns: int,
    reuse: bool,
) -> tuple[TrainingTelemetry, Any, MetricExport]:
    """One training process's real instrumentation (``StepRecorder`` → ``TrainingTelemetry``) on
    simulated clocks, with its SDK pipeline and export."""
    identity = TrainingInstrumentor(config).identity()
    resource = telemetry.make_resource({**identity, SERVICE_INSTANCE_ID: instance_id}, "factorylens-training")
    reader = InMemoryMetricReader()
    provider = telemetry.make_meter_provider(resource, [reader])
    stepped = TrainingTelemetry(
        config,
        StepRecorder(config.max_pending_steps),
        provider.get_meter(INSTRUMENTATION_SCOPE, __version__),
        NoOpTracer(),
        identity,
        clock=elapsed,
        wall_clock_ns=wall_ns,
        mountpoint_of=mountpoint_of,
    )
    return stepped, provider, MetricExport(reader, epoch_ns, reuse=reuse)


def training_config(
    job_id: str,
    team: str,
    rank: int,
    world: int,
    host: str,
    gpu: Any,
    flops_per_sample: float,
    scrape_interval_s: float,
) -> TrainingConfig:
    peak = (peak_tflops(gpu.model.name) or 0.0) * 1e12
    # a hair under the scrape interval: the rate window holds exactly the steps of one interval
    return TrainingConfig(
        job_id=job_id,
        team=team,
        rank=rank,
        world_size=world,
        local_rank=gpu.index,
        host=host,
        gpu_ids=(gpu.uuid,),
        gpu_name=gpu.model.name,
        model_flops_per_sample=flops_per_sample,
        peak_flops=peak,
        span_every_steps=0,
        state_dir="",
        export_interval_s=scrape_interval_s * (1 - 1e-9),
    )


def scrape_node_agents(receiver: GpuReceiver, logs: bool) -> None:
    """One scrape of every node agent; the XID events since the last one become log records (with
    ``logs``) or are drained."""
    for pipeline in receiver.pipelines:
        while True:
            events = pipeline.scraper.wait_events(0)
            if not events:
                break
            if logs:
                for event in events:
                    pipeline.emit_event(event)
    receiver.scrape_once()


def export_all(exports: list[MetricExport], log_exports: list[LogExport], now_ns: int) -> list[Request]:
    """What every component puts on the wire at ``now_ns``, those with something to say."""
    requests: list[Request] = []
    for export in exports:
        request = export.export(now_ns)
        if request is not None:
            requests.append(request)
    for log_export in log_exports:
        log_request = log_export.export(now_ns)
        if log_request is not None:
            requests.append(log_request)
    return requests


def shut_down(receiver: GpuReceiver, providers: list[Any]) -> None:
    for pipeline in receiver.pipelines:
        pipeline.scraper.shutdown()
        if pipeline.logger_provider is not None:
            pipeline.logger_provider.shutdown()
    for provider in providers:
        provider.shutdown()
