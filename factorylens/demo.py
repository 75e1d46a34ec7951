"""``factorylens demo``: the whole pipeline on one laptop, no GPU needed.

A simulated GPU cluster (the GPU receiver on its simulated backend, with a fault scenario) exports
OTLP to an RCA service started in the same process; the GPUs are printed live, and every incident
the RCA service opens, re-ranks or resolves is printed with its ranked, explained causes.
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

log = logging.getLogger(__name__)


@dataclass
class DemoOptions:
    hosts: int = 2
    gpus_per_host: int = 8
    model: str = "H100"
    scenario: str = ""
    speed: float = 10.0
    collection_interval_s: float = 2.0
    duration_s: float | None = 600.0
    prometheus_port: int | None = 9400
    rca_listen: str = "127.0.0.1:0"
    rca_metrics_listen: str = "127.0.0.1:9464"
    data_dir: str = ""
    console: bool = True
    training: bool = True
    seed: int = 0
    price_catalog: str = ""  # default: the EXAMPLE catalog (list prices, labelled as such in every report)
    extra: dict[str, Any] = field(default_factory=dict)


TRAINING_JOB = "llm-pretrain-7b"
DEVICE_TIME_S = 0.05
COLLECTIVE_TIME_S = 0.01
LOADER_DELAY_S = 0.002
CHECKPOINT_EVERY_STEPS = 200
CHECKPOINT_TIME_S = 0.5
BATCH_SIZE = 64
SEQUENCE_LENGTH = 2048  # tokens per sample of the 7B job the loop stands in for
HEALTHY_MFU = 0.45


class TrainingJob:
    """Rank 0 of the simulated cluster's training job as a real, instrumented training loop.

    The loop (``instrumentation/examples/train_numpy.py``) runs in a thread of this process and
    exports its steps over OTLP to the RCA service, with the ``hw.id`` of its GPU on the resource.
    Its phases follow the simulated cluster, as a synchronous job's would: compute follows the
    slowest GPU's clocks (a throttled or lost GPU anywhere), the all-reduce the slowest node's fabric,
    checkpoints the checkpoint mount, and the input pipeline the host's CPU and memory.
    """

    def __init__(self, cluster: Any, endpoint: str, options: DemoOptions) -> None:
        self._cluster = cluster
        self._endpoint = endpoint
        self._options = options
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-training", daemon=True)
        self.instrumentor: Any = None

    def start(self) -> None:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from factorylens.gpus import peak_tflops
        from factorylens.instrumentation import TrainingConfig, TrainingInstrumentor
        from factorylens.telemetry import make_meter_provider, make_resource, periodic_reader

        gpus = self._cluster.job_gpus(TRAINING_JOB)
        if not gpus:
            return
        host, gpu = gpus[0]
        ranks = len(gpus)
        config = TrainingConfig(
            job_id=TRAINING_JOB,
            team="foundation-models",
            rank=0,
            world_size=ranks,
            host=host,
            gpu_ids=(gpu.uuid,),
            gpu_name=gpu.model.name,
            model_flops_per_sample=self._flops_per_sample(peak_tflops(gpu.model.name) or 0.0),
            export_interval_s=self._options.collection_interval_s,
        )
        instrumentor = TrainingInstrumentor(config)
        resource = make_resource(instrumentor.identity(), "factorylens-demo-training")
        meters = make_meter_provider(
            resource,
            [
                periodic_reader(
                    OTLPMetricExporter(endpoint=self._endpoint, insecure=True), self._options.collection_interval_s
                )
            ],
        )
        tracers = TracerProvider(resource=resource)
        tracers.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=self._endpoint, insecure=True)))
        self._providers = (meters, tracers)
        self.instrumentor = TrainingInstrumentor(config, meter_provider=meters, tracer_provider=tracers).instrument()
        self._thread.start()

    @staticmethod
    def _flops_per_sample(peak_tflops: float) -> float:
        """The loop stands in for the 7B job: its FLOPs per sample are what makes a healthy step run at
        ``HEALTHY_MFU`` of the GPU's peak, so MFU falls when the job slows."""
        return HEALTHY_MFU * peak_tflops * 1e12 * (DEVICE_TIME_S + COLLECTIVE_TIME_S + LOADER_DELAY_S) / BATCH_SIZE

    def _run(self) -> None:
        from factorylens.instrumentation.examples.train_numpy import train

        cluster = self._cluster
        train(
            steps=10**9,
            batch_size=BATCH_SIZE,
            tokens_per_sample=SEQUENCE_LENGTH,
            device_time_s=DEVICE_TIME_S,
            slowdown=lambda: 1.0 / max(cluster.job_compute_speed(TRAINING_JOB), 0.05),
            collective_time_s=COLLECTIVE_TIME_S,
            collective_slowdown=lambda: cluster.job_collective_slowdown(TRAINING_JOB),
            checkpoint_every=CHECKPOINT_EVERY_STEPS,
            checkpoint_time_s=CHECKPOINT_TIME_S,
            checkpoint_slowdown=lambda: cluster.job_checkpoint_slowdown(TRAINING_JOB),
            loader_delay_s=LOADER_DELAY_S,
            data_slowdown=lambda: cluster.job_data_slowdown(TRAINING_JOB),
            stop=self._stop,
        )

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if self.instrumentor is not None:
            self.instrumentor.uninstrument()
            for provider in self._providers:
                provider.shutdown()


class IncidentPrinter:
    """Prints incidents as they open and resolve, with their top causes (what on-call would read);
    a re-ranking is printed when the top entity changes, at most every ``update_every_s``."""

    def __init__(self, stream: TextIO, update_every_s: float = 30.0) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._update_every_s = update_every_s
        self._shown: dict[str, tuple[str, float]] = {}

    def __call__(self, change: Any, incident: Any) -> None:
        top = incident.causes[0].entity if incident.causes else ""
        with self._lock:
            if change.value == "updated":
                entity, at = self._shown.get(incident.id, ("", 0.0))
                if entity == top or time.monotonic() - at < self._update_every_s:
                    return
            self._shown[incident.id] = (top, time.monotonic())
            lines = [f"*** incident {incident.id} {change.value}: {incident.title}"]
            for cause in incident.causes[:3]:
                lines.append(f"    #{cause.rank} ({cause.score:.2f}) {cause.explanation}")
            self._stream.write("\n".join(lines) + "\n\n")
            self._stream.flush()


def scaled_analyzer(speed: float, interval_s: float) -> Any:
    """The RCA service's analyzer for a simulated cluster that lives ``speed`` times faster than the
    wall clock stamping its points: every window shrinks by the same factor (an hour of history is 6
    minutes at speed 10), and an incident resolves after at least three scrapes."""
    from factorylens.rca_service.analysis import KpiRankingAnalyzer, scaled_config

    return KpiRankingAnalyzer(scaled_config(speed, interval_s))


def run_demo(options: DemoOptions, stream: TextIO = sys.stdout) -> list:
    """Run until the duration passes (or Ctrl-C / SIGTERM); returns the incidents of the run."""
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    from factorylens.cost_report import example_catalog_path, from_tracker, render_table
    from factorylens.rca_service import RcaService, RcaServiceConfig
    from factorylens.receivers.gpu import GpuReceiverConfig, create_receiver
    from factorylens.receivers.gpu.console import ConsoleTable
    from factorylens.receivers.gpu.receiver import tune_gc_for_agent
    from factorylens.telemetry import periodic_reader

    training = None
    started_s = time.time()
    data_dir = options.data_dir or tempfile.mkdtemp(prefix="factorylens-demo-")
    printer = IncidentPrinter(stream)
    analyzer = scaled_analyzer(options.speed, options.collection_interval_s)
    service = RcaService(
        RcaServiceConfig(
            listen=options.rca_listen,
            metrics_listen=options.rca_metrics_listen,
            data_dir=data_dir,
            analysis_interval_s=options.collection_interval_s,
            fsync="interval",
            price_catalog=options.price_catalog or str(example_catalog_path()),
            cost_interval_s=options.collection_interval_s,
            # waste: a job idle 80% of a simulated half hour (three minutes at speed 10)
            waste_duration_s=max(1800.0 / options.speed, 10 * options.collection_interval_s),
        ),
        analyzer=analyzer,
        incident_listeners=[printer],
    )
    service.start()
    endpoint = service.address
    config = GpuReceiverConfig(
        backend="sim",
        sim_hosts=options.hosts,
        sim_gpus_per_host=options.gpus_per_host,
        sim_model=options.model,
        scenario=options.scenario or None,
        sim_speed=options.speed,
        sim_seed=options.seed,
        collection_interval_s=options.collection_interval_s,
        prometheus_port=options.prometheus_port,
        otlp="off",
        duration_s=options.duration_s,
        console=options.console,
    )
    receiver = None
    try:
        tune_gc_for_agent()
        receiver, cluster = create_receiver(
            config,
            metric_readers=lambda host: [
                periodic_reader(OTLPMetricExporter(endpoint=endpoint, insecure=True), options.collection_interval_s)
            ],
            log_exporters=lambda host: [OTLPLogExporter(endpoint=endpoint, insecure=True)],
        )
        if options.console:
            receiver.on_scrape = ConsoleTable(stream, cluster)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: receiver.stop())
        stream.write(
            f"RCA service on {endpoint} (API: factorylens rca incidents --target {endpoint}); "
            f"its /metrics at {service.metrics_server.url if service.metrics_server else 'off'}; "
            f"data in {data_dir}\n\n"
        )
        receiver.start()
        if options.training and cluster is not None:
            training = TrainingJob(cluster, endpoint, options)
            training.start()
        try:
            receiver.run(options.duration_s)
        except KeyboardInterrupt:
            pass
    finally:
        if training is not None:
            training.stop()
        if receiver is not None:
            receiver.shutdown()
        service.analyze_now()
        incidents = service.analyzer.incidents()
        now_s = time.time()
        report = from_tracker(service.cost, service.store, started_s, now_s, "team", "RCA service (this run)")
        service.stop()
        stream.write(f"\n{len(incidents)} incident(s) in this run:\n")
        for incident in incidents:
            top = incident.causes[0] if incident.causes else None
            stream.write(
                f"  {incident.id} [{incident.state.value}] {incident.title}"
                + (f" — top cause {top.entity} {top.signal}" if top else "")
                + "\n"
            )
        stream.write("\n" + render_table(report))
        if not options.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    return incidents
