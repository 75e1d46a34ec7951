"""A Prometheus fed the way production feeds it, for the dashboards' live checks and their PNGs.

The demo's simulated cluster (2 hosts × 4 H100s, 10× real time, with a staggered set of GPU, host,
storage and fabric faults) and its instrumented training loop export OTLP to an RCA service in this
process; a short simulated serving fleet (``ServingRun``, its timestamps moved to end now) is sent to
the same service first. The service remote-writes every point it ingests, its findings (incidents,
ranked causes, anomaly scores, baseline bands) and its cost figures to a real Prometheus (Debian's
2.42, ``--web.enable-remote-write-receiver``), which the dashboards then query.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from factorylens.registry import Attributes
from tests.rca.test_remote_write import PrometheusServer

FIXTURE_SYS = Path(__file__).resolve().parents[1] / "fixtures" / "node" / "sys"
SPEED = 10.0  # simulated seconds per wall second, as `factorylens demo`
INTERVAL_S = 1.0  # scrape, export and analysis interval
CLUSTER = "sim-cluster"
NS = 1_000_000_000
FIT_BUDGET_S = 30.0
CHECKPOINT_EVERY_STEPS = 20  # the demo's 200 steps take longer than the run on a loaded machine
SERVING_INTERVAL_S = 1.0
SERVING_HISTORY_S = 720.0
SERVING_KV_CACHE_TOKENS = 12_000.0  # a fifteenth of the default: the running requests outgrow it
SERVING_BATCH_TICKS = 40
# every fault a GPU-health or node panel shows; the thermal fault (as in the end-to-end test) opens the
# incident, 24 wall seconds in; the link and fabric faults start after it and after the training
# loop's first checkpoint, which they would otherwise delay (they slow every step)
SCENARIO = """\
faults:
  - {kind: xid, target: {host: sim-node-0, gpu: 1}, start: 60s, params: {code: 13, count: 40, interval: 5}}
  - {kind: ecc_burst, target: {host: sim-node-0, gpu: 2}, start: 60s, duration: 30m, params: {uncorrected: 2}}
  - {kind: nvlink_degradation, target: {host: sim-node-0, gpu: 0}, start: 300s, duration: 30m}
  - {kind: pcie_degradation, target: {host: sim-node-1, gpu: 1}, start: 300s, duration: 30m}
  - {kind: ib_symbol_errors, target: {host: sim-node-0}, start: 300s, duration: 30m, params: {port: "*", per_s: 30}}
  - {kind: nic_down, target: {host: sim-node-1}, start: 300s, duration: 30m, params: {port: mlx5_0/1}}
  - {kind: thermal_throttle, target: {host: sim-node-1, gpu: 3}, start: 240s, duration: 60m,
     params: {extra_celsius: 32}}
"""


def query(prometheus: PrometheusServer, expr: str, at_s: float | None = None) -> list[dict[str, Any]]:
    params = {"query": expr, **({"time": f"{at_s:.3f}"} if at_s is not None else {})}
    return _get(prometheus, "/api/v1/query", params)


def query_range(prometheus: PrometheusServer, expr: str, start_s: float, end_s: float, step_s: float) -> list[dict]:
    params = {"query": expr, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}", "step": f"{step_s:g}"}
    return _get(prometheus, "/api/v1/query_range", params)


def series(prometheus: PrometheusServer, selector: str, start_s: float, end_s: float) -> list[dict[str, str]]:
    """The label sets of the series ``selector`` matches over a range (what Grafana's label_values reads)."""
    params = {"match[]": selector, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}"}
    return _get(prometheus, "/api/v1/series", params)


def _get(prometheus: PrometheusServer, path: str, params: dict[str, str]) -> list[Any]:
    url = f"{prometheus.url}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    data = body["data"]
    return data if isinstance(data, list) else data["result"]  # the series API answers a bare list


def _send_serving_history(address: str) -> None:
    """A short serving fleet's telemetry, timestamped to end now, into the RCA service over OTLP: the
    serving engines' and their neighbour training job's (its node agents' GPUs are the live cluster's
    namesakes, so they are left out)."""
    from factorylens.receivers.gpu.factory import SERVICE_NAME as NODE_AGENT
    from factorylens.simulation import ServedModel, ServingRun

    # at the daily peak with a small KV cache (preemptions); a point a second, for long enough that the
    # serving KPIs' seasonal baselines are fitted (their predictability exported)
    run = ServingRun(
        None,
        seed=3,
        hosts=1,
        gpus_per_host=2,
        scrape_interval_s=SERVING_INTERVAL_S,
        duration_s=SERVING_HISTORY_S,
        start_hour=15.0,
        model=ServedModel(kv_cache_tokens=SERVING_KV_CACHE_TOKENS),
    )
    run.epoch_ns = time.time_ns() - int(run.duration_s * NS)  # its clock ends now, not on its simulated day
    batch = ExportMetricsServiceRequest()
    with grpc.insecure_channel(address) as channel:
        metrics = metrics_service_pb2_grpc.MetricsServiceStub(channel)
        for tick, (_, requests) in enumerate(run, 1):
            for request in requests:
                if not isinstance(request, ExportLogsServiceRequest):
                    batch.resource_metrics.extend(
                        rm for rm in request.resource_metrics if _service(rm.resource) != NODE_AGENT
                    )
            if tick % SERVING_BATCH_TICKS == 0:  # fewer, larger requests: the history arrives sooner
                metrics.Export(batch, timeout=60)
                batch = ExportMetricsServiceRequest()
        if batch.resource_metrics:
            metrics.Export(batch, timeout=60)


def _service(resource: Any) -> str:
    return next((a.value.string_value for a in resource.attributes if a.key == Attributes.SERVICE_NAME), "")


ROCE_PORT = Path("class/infiniband/mlx5_0/ports/1")
ROCE_COUNTERS = ("hw_counters/np_ecn_marked_roce_packets", "hw_counters/np_cnp_sent", "hw_counters/rp_cnp_handled")


class RoceHost:
    """A GPU-less host with a RoCE NIC (a storage or login node): the real node agent (NVML backend, no
    driver here) reads a sysfs tree whose ECN/CNP and data counters a thread advances every interval."""

    def __init__(self, root: Path, endpoint: str) -> None:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        from factorylens.receivers.gpu import GpuReceiverConfig, create_receiver
        from factorylens.telemetry import periodic_reader

        shutil.copytree(FIXTURE_SYS, root)
        self.port = root / ROCE_PORT
        for name in ROCE_COUNTERS:
            (self.port / name).write_text("0\n")
        self.receiver, _ = create_receiver(
            GpuReceiverConfig(
                backend="nvml",
                sys_root=str(root),
                collection_interval_s=INTERVAL_S,
                host_metrics=False,
                storage_metrics=False,
                prometheus_port=None,
                otlp="off",
            ),
            metric_readers=lambda host: [
                periodic_reader(OTLPMetricExporter(endpoint=endpoint, insecure=True), INTERVAL_S)
            ],
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._advance, name="roce-counters", daemon=True)

    def _advance(self) -> None:
        step = 0
        while not self._stop.wait(INTERVAL_S):
            step += 1
            for i, name in enumerate(ROCE_COUNTERS):
                (self.port / name).write_text(f"{step * 100 * (i + 1)}\n")
            for name in ("counters/port_xmit_data", "counters/port_rcv_data"):
                (self.port / name).write_text(f"{step * 25_000_000}\n")

    def start(self) -> None:
        self.receiver.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.receiver.shutdown()


class FedPrometheus:
    """Prometheus, the RCA service, the simulated cluster and its training loop; ``stop()`` ends them all,
    ``stop_pipeline()`` all but Prometheus."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.stops: list[Callable[[], None]] = []
        self.prometheus = PrometheusServer(root / "prometheus")
        self.started_s = time.time()
        self.cluster_started_s = self.started_s

    def start(self) -> FedPrometheus:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        from factorylens.cost_report import example_catalog_path
        from factorylens.rca_service import RcaService, RcaServiceConfig
        from factorylens.rca_service.analysis import KpiRankingAnalyzer, scaled_config
        from factorylens.rca_service.baselines import BaselineBank, BaselineBankConfig
        from factorylens.receivers.gpu import GpuReceiverConfig, create_receiver
        from factorylens.telemetry import periodic_reader

        logging.getLogger("factorylens.receivers").setLevel(logging.ERROR)
        from factorylens.simulation import live_training

        checkpoint_every = live_training.CHECKPOINT_EVERY_STEPS
        before = os.environ.get("OTEL_RESOURCE_ATTRIBUTES")
        os.environ["OTEL_RESOURCE_ATTRIBUTES"] = f"{Attributes.FACTORYLENS_CLUSTER_NAME}={CLUSTER}"
        self.stops.append(
            lambda: (
                os.environ.__setitem__("OTEL_RESOURCE_ATTRIBUTES", before)
                if before is not None
                else os.environ.pop("OTEL_RESOURCE_ATTRIBUTES", None)
            )
        )
        self.prometheus.start()
        self.service = RcaService(
            RcaServiceConfig(
                listen="127.0.0.1:0",
                metrics_listen="off",
                data_dir=str(self.root / "rca"),
                analysis_interval_s=INTERVAL_S,
                fsync="interval",
                price_catalog=str(example_catalog_path()),
                cost_interval_s=INTERVAL_S,
                waste_duration_s=10 * INTERVAL_S,
                remote_write_url=self.prometheus.write_url,
                remote_write_interval_s=0.5,
                remote_write_queue=2_000_000,  # the serving history arrives at once
            ),
            # a fit may take seconds on a loaded test machine: keep modelling such series (default 2 s)
            analyzer=KpiRankingAnalyzer(
                scaled_config(SPEED, INTERVAL_S),
                BaselineBank(BaselineBankConfig(max_series_cost_s=FIT_BUDGET_S)),
            ),
        )
        self.service.start()
        self.stops.append(self.service.stop)
        endpoint = self.service.address
        scenario = self.root / "faults.yaml"
        scenario.write_text(SCENARIO)
        receiver, cluster = create_receiver(
            GpuReceiverConfig(
                backend="sim",
                sim_hosts=2,
                sim_gpus_per_host=4,
                scenario=str(scenario),
                sim_speed=SPEED,
                collection_interval_s=INTERVAL_S,
                prometheus_port=None,
                otlp="off",
            ),
            metric_readers=lambda host: [
                periodic_reader(OTLPMetricExporter(endpoint=endpoint, insecure=True), INTERVAL_S)
            ],
            log_exporters=lambda host: [OTLPLogExporter(endpoint=endpoint, insecure=True)],
        )
        self.stops.append(receiver.shutdown)
        assert cluster is not None
        receiver.start()
        live_training.CHECKPOINT_EVERY_STEPS = CHECKPOINT_EVERY_STEPS  # several checkpoints in a short run
        self.stops.append(lambda: setattr(live_training, "CHECKPOINT_EVERY_STEPS", checkpoint_every))
        training = live_training.TrainingJob(cluster, endpoint, INTERVAL_S)
        training.start()
        self.stops.append(training.stop)
        roce = RoceHost(self.root / "sys", endpoint)
        roce.start()
        self.stops.append(roce.stop)
        self.cluster_started_s = time.time()
        # the serving history goes in beside the live cluster (its series are the serving engines' own)
        self.serving = threading.Thread(target=_send_serving_history, args=(endpoint,), name="serving-history")
        self.serving.start()
        self.stops.append(lambda: self.serving.join(timeout=120))
        return self

    def stop_pipeline(self) -> None:
        """Stop everything that feeds Prometheus (Prometheus keeps serving what it holds)."""
        for stop in reversed(self.stops):
            try:
                stop()
            except Exception:  # teardown goes on: every process must end
                logging.getLogger(__name__).exception("stopping %s", stop)
        self.stops.clear()

    def stop(self) -> None:
        self.stop_pipeline()
        self.prometheus.stop()
