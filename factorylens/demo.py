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
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


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


def run_demo(options: DemoOptions, stream: TextIO = sys.stdout) -> list:
    """Run until the duration passes (or Ctrl-C / SIGTERM); returns the incidents of the run."""
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    from factorylens.rca_service import RcaService, RcaServiceConfig
    from factorylens.rca_service.analysis import RobustZScoreAnalyzer, RobustZScoreConfig
    from factorylens.receivers.gpu import GpuReceiverConfig, create_receiver
    from factorylens.receivers.gpu.console import ConsoleTable
    from factorylens.receivers.gpu.receiver import tune_gc_for_agent
    from factorylens.telemetry import periodic_reader

    data_dir = options.data_dir or tempfile.mkdtemp(prefix="factorylens-demo-")
    printer = IncidentPrinter(stream)
    # the simulated cluster lives `speed` times faster than the wall clock stamping its points, so the
    # analysis windows shrink by the same factor (an hour of history is 6 minutes at speed 10)
    defaults = RobustZScoreConfig()
    analyzer = RobustZScoreAnalyzer(RobustZScoreConfig(
        window_s=defaults.window_s / options.speed, merge_window_s=defaults.merge_window_s / options.speed,
        resolve_after_s=max(defaults.resolve_after_s / options.speed, 3 * options.collection_interval_s)))
    service = RcaService(RcaServiceConfig(listen=options.rca_listen, metrics_listen=options.rca_metrics_listen,
                                          data_dir=data_dir, analysis_interval_s=options.collection_interval_s,
                                          fsync="interval"),
                         analyzer=analyzer, incident_listeners=[printer])
    service.start()
    endpoint = service.address
    config = GpuReceiverConfig(backend="sim", sim_hosts=options.hosts, sim_gpus_per_host=options.gpus_per_host,
                               sim_model=options.model, scenario=options.scenario or None, sim_speed=options.speed,
                               sim_seed=options.seed, collection_interval_s=options.collection_interval_s,
                               prometheus_port=options.prometheus_port, otlp="off", duration_s=options.duration_s,
                               console=options.console)
    receiver = None
    try:
        tune_gc_for_agent()
        receiver, cluster = create_receiver(
            config,
            metric_readers=lambda host: [periodic_reader(OTLPMetricExporter(endpoint=endpoint, insecure=True),
                                                         options.collection_interval_s)],
            log_exporters=lambda host: [OTLPLogExporter(endpoint=endpoint, insecure=True)])
        if options.console:
            receiver.on_scrape = ConsoleTable(stream, cluster)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: receiver.stop())
        stream.write(f"RCA service on {endpoint} (API: factorylens rca incidents --target {endpoint}); "
                     f"its /metrics at {service.metrics_server.url if service.metrics_server else 'off'}; "
                     f"data in {data_dir}\n\n")
        receiver.start()
        try:
            receiver.run(options.duration_s)
        except KeyboardInterrupt:
            pass
    finally:
        if receiver is not None:
            receiver.shutdown()
        service.analyze_now()
        incidents = service.analyzer.incidents()
        service.stop()
        stream.write(f"\n{len(incidents)} incident(s) in this run:\n")
        for incident in incidents:
            top = incident.causes[0] if incident.causes else None
            stream.write(f"  {incident.id} [{incident.state.value}] {incident.title}"
                         + (f" — top cause {top.entity} {top.signal}" if top else "") + "\n")
        if not options.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    return incidents
