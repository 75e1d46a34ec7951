"""The pipeline through a real collector, end to end (issue 15, items 3 and 4): real processes on 127.0.0.1 —
rotel (the collector binary of the ``rotel`` package, our metrics processor loaded), the RCA service,
Prometheus 2.42 — fed by the simulated node agent, the instrumented training loop, dcgm-exporter's output
in the form the collector's ``prometheus`` receiver produces, and deterministic senders; then the same
path with the service killed, the collector restarted and a malformed batch."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from prometheus_client.parser import text_string_to_metric_families

from factorylens.rca_service.analysis import KpiRankingConfig
from factorylens.rca_service.api.v1 import rca_pb2
from factorylens.rca_service.client import format_incident as client_format
from factorylens.rca_service.client import list_incidents, list_series
from factorylens.registry import CLOCK_EVENT_REASONS, REGISTRY
from tests.collector.prometheus_receiver import exposition_to_otlp, read_fixture
from tests.e2e.harness import (
    LANE,
    ProcessSet,
    Prometheus,
    RcaServer,
    Rotel,
    SequenceSender,
    attributes,
    sequence_request,
    stored_points,
)

NS = 1_000_000_000


def service_and_collector(processes: ProcessSet, tmp_path: Path) -> tuple[RcaServer, Rotel]:
    """``factorylens rca serve`` and rotel in front of it, both ready."""
    service = processes.add(RcaServer(tmp_path / "rca.log", tmp_path / "rca-data")).start()
    rotel = processes.add(Rotel(tmp_path / "rotel.log", service.address)).start()
    return service, rotel


def exported_counter(page: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples on a /metrics page whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# ---------------------------------------------------------------------------- dcgm-exporter through rotel


DCGM_FIXTURE = "dcgm/dcgm-exporter.prom"
DCGM_HOST = "gpu-node-a07"
DCGM_POD_GPU = "GPU-8b2281de-6d3c-22ed-0ec8-d3b864870b8b"  # the fixture's GPU 0, running a pod
UNMAPPED_FIELD = "DCGM_FI_DEV_VGPU_LICENSE_STATUS"  # a dcgm-exporter field the registry has no name for
SCRAPES = 3


def fixture_values(text: str) -> dict[tuple[str, str], float]:
    """``(DCGM field, UUID) -> value`` of the exposition, the expectations the normalized series are checked
    against (by family name: the parser appends ``_total`` to a counter's samples, dcgm-exporter does not)."""
    return {
        (family.name, sample.labels["UUID"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "UUID" in sample.labels
    }


def test_dcgm_exporter_series_reach_the_store_under_our_names_through_the_collector(processes, tmp_path):
    """dcgm-exporter's default counters, as a collector's ``prometheus`` receiver turns three 10-second scrapes
    into OTLP (rotel cannot scrape), sent through rotel to the service: read back through the RCA API under our
    names, units and attributes; the field we have no name for passes through and is counted on /metrics."""
    service, rotel = service_and_collector(processes, tmp_path)
    text = read_fixture(DCGM_FIXTURE)
    expected = fixture_values(text)
    gpus = sorted({uuid for _, uuid in expected})
    assert DCGM_POD_GPU in gpus and len(gpus) == 2
    stub = metrics_service_pb2_grpc.MetricsServiceStub(grpc.insecure_channel(rotel.endpoint))
    now = time.time_ns()
    for i in range(SCRAPES):
        request = exposition_to_otlp(
            text, job="dcgm-exporter", instance="10.0.7.3:9400", timestamp_ns=now - (SCRAPES - 1 - i) * 10 * NS
        )
        stub.Export(request, timeout=10)
    api = service.api

    def series(metric: str) -> list[rca_pb2.SeriesInfo]:
        return list(list_series(api, rca_pb2.ListSeriesRequest(metric=metric), timeout=10))

    def arrived() -> bool:
        temperatures = series("hw.temperature")
        return len(temperatures) == 2 * len(gpus) and all(s.points == SCRAPES for s in temperatures)

    processes.wait(arrived, 20, "the normalized DCGM series in the store")

    def last(info: rca_pb2.SeriesInfo) -> float:
        data = api.QuerySeries(rca_pb2.QuerySeriesRequest(series_ids=[info.id], view="raw"), timeout=10).series[0]
        assert len(data.values) == SCRAPES
        return data.values[-1]

    def by_gpu(metric: str, **match: str) -> dict[str, tuple[rca_pb2.SeriesInfo, float]]:
        out = {}
        for info in series(metric):
            attrs = attributes(info.attributes)
            if all(attrs.get(k) == v for k, v in match.items()):
                assert attrs["hw.id"] not in out, f"two {metric} series of one GPU: {info}"
                out[attrs["hw.id"]] = (info, last(info))
        assert sorted(out) == gpus, (metric, match, sorted(out))
        return out

    for metric, field, unit, scale, match in (
        ("hw.gpu.utilization", "DCGM_FI_DEV_GPU_UTIL", "1", 0.01, {"hw.gpu.task": "general"}),  # % -> ratio
        ("hw.gpu.memory.usage", "DCGM_FI_DEV_FB_USED", "By", 2**20, {}),  # MiB -> bytes
        ("hw.temperature", "DCGM_FI_DEV_GPU_TEMP", "Cel", 1.0, {"hw.sensor_location": "die"}),
        ("hw.energy", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "J", 1e-3, {}),  # mJ -> J
    ):
        for uuid, (info, value) in by_gpu(metric, **match).items():
            assert info.unit == unit, (metric, info.unit)
            assert value == pytest.approx(expected[(field, uuid)] * scale), (metric, uuid)
            assert attributes(info.resource)["host.name"] == DCGM_HOST
            assert info.entity == f"gpu:{uuid}"
            assert not {"UUID", "Hostname", "hostname", "modelName", "pci_bus_id"} & set(attributes(info.attributes))
    assert series("hw.energy")[0].kind == "cumulative_sum"
    # the throttle bitmask: one series per reason, 1 where the reason's bit is set
    for bit, reason in enumerate(CLOCK_EVENT_REASONS):
        for uuid, (_, value) in by_gpu("hw.gpu.clock_event.active", **{"hw.gpu.clock_event.reason": reason}).items():
            mask = int(expected[("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", uuid)])
            assert value == (mask >> bit) & 1, (uuid, reason, mask)
    assert expected[("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", DCGM_POD_GPU)] != 0  # the fixture exercises a set bit
    # the pod running on GPU 0 is on its series, and only there
    for uuid, (info, _) in by_gpu("hw.gpu.utilization", **{"hw.gpu.task": "general"}).items():
        k8s = {k: v for k, v in attributes(info.attributes).items() if k.startswith("k8s.")}
        if uuid == DCGM_POD_GPU:
            assert k8s["k8s.pod.name"] == "llama3-70b-pretrain-worker-0"
            assert k8s["k8s.namespace.name"] == "ml-training"
        else:
            assert "k8s.pod.name" not in k8s
    # an unknown field: stored under dcgm-exporter's own name with its value, and counted
    unknown = {attributes(i.attributes)["UUID"]: i for i in series(UNMAPPED_FIELD)}  # its labels as they came
    assert sorted(unknown) == gpus
    for uuid, info in unknown.items():
        assert last(info) == expected[(UNMAPPED_FIELD, uuid)]
        assert "hw.id" not in attributes(info.attributes)
    name = REGISTRY.metric("factorylens.processors.unmapped").prometheus_name
    counted = exported_counter(
        service.metrics_page(),
        name,
        factorylens_producer="dcgm-exporter",
        factorylens_source_metric=UNMAPPED_FIELD,
    )
    assert counted == len(gpus) * SCRAPES
    assert "Traceback" not in rotel.log_tail(100_000)  # the in-collector processor ran without errors


# ---------------------------------------------------------------------------- failure paths


def dropped_batches(rotel: Rotel) -> list[str]:
    """rotel's log lines for batches it gave up on."""
    return [line for line in rotel.log.read_text(errors="replace").splitlines() if "dropping data" in line]


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_service_restarted_on_its_port_gets_everything_the_collector_still_held(processes, tmp_path, how):
    """Stop the service (``factorylens rca serve``) under a steady stream — crash (SIGKILL) or clean stop
    (SIGTERM) — and restart it on the same port and data directory. rotel keeps acknowledging its senders
    while the service is down and retries until it is back: every point rotel acknowledged after the stop is
    stored, and so is everything before it that the service acknowledged (its WAL is replayed).

    The one gap is rotel's (0.0.1a15, ``src/exporters/http/retry.rs``): it retries connect errors, timeouts and
    UNAVAILABLE/INTERNAL/DEADLINE_EXCEEDED/RESOURCE_EXHAUSTED only. A request in flight when the service
    crashes fails with a broken pipe or a reset connection, and one caught by a clean stop may be answered
    CANCELLED (which the OTLP specification says to retry); rotel drops either, logging "dropping data". So
    the lost points, if any, are a batch rotel had acknowledged that was not yet stored at the stop.
    """
    service, rotel = service_and_collector(processes, tmp_path)
    sender = SequenceSender(rotel.endpoint).start()
    processes.cleanups.append(sender.stop)
    processes.wait(lambda: len(stored_points(service.api)) >= 200, 20, "points flowing")
    stored_before = set(stored_points(service.api))
    service.kill(how)
    acked_at_stop = sender.acknowledged()
    processes.wait(lambda: len(sender.acknowledged()) >= len(acked_at_stop) + 300, 20, "rotel accepting meanwhile")
    service.start()  # the WAL is replayed before the port answers
    acked_at_restart = len(sender.acknowledged())
    processes.wait(lambda: len(sender.acknowledged()) >= acked_at_restart + 200, 20, "points after the restart")
    sender.stop()
    acked = sender.acknowledged()
    after_stop = acked - acked_at_stop

    processes.wait(lambda: after_stop <= set(stored_points(service.api)), 30, "what rotel held", interval_s=0.5)
    stored = stored_points(service.api)
    lost = acked - set(stored)
    assert sender.failures == 0  # rotel stayed up: every export was acknowledged
    assert set(stored) <= acked  # nothing invented
    in_flight = acked_at_stop - stored_before
    assert lost <= in_flight, "only a batch in flight at the stop may be lost"
    if lost:
        assert dropped_batches(rotel), "rotel logs every batch it drops"
    duplicates = sum(n - 1 for n in Counter(stored).values())
    print(
        f"\nservice {signal.Signals(how).name}: {len(acked)} points acknowledged by rotel, "
        f"{acked_at_restart - len(acked_at_stop)} while the service was down (all stored); "
        f"lost {len(lost)} of {len(in_flight)} acknowledged but not yet stored at the stop "
        f"({len(dropped_batches(rotel))} batch(es) dropped by rotel); {duplicates} stored twice"
    )


MALFORMED = (
    # (metric, why the service rejects it: a substring of its partial-success reasons)
    ("e2e.bad.histogram", "not finite"),
    ("e2e.future", "in the future"),
)


def malformed_request(lanes: int) -> metrics_service_pb2.ExportMetricsServiceRequest:
    """Good points of ``e2e.sequence`` (value 1), a histogram with a NaN bucket bound and a gauge point two
    hours ahead, in one request."""
    request = sequence_request(1, lanes)
    metrics = request.resource_metrics[0].scope_metrics[0].metrics
    now = time.time_ns()
    histogram = metrics.add(name="e2e.bad.histogram", unit="s").histogram
    histogram.aggregation_temporality = 2
    histogram.data_points.add(
        start_time_unix_nano=now - NS,
        time_unix_nano=now,
        count=3,
        sum=3.0,
        explicit_bounds=[1.0, math.nan],
        bucket_counts=[1, 1, 1],
    )
    future = metrics.add(name="e2e.future", unit="1").gauge.data_points.add(
        time_unix_nano=now + 7200 * NS, as_double=1.0
    )
    future.attributes.add(key="e2e.lane", value=common_pb2.AnyValue(int_value=0))
    return request


def test_a_malformed_batch_through_the_collector_is_partly_rejected_and_the_rest_stored(processes, tmp_path):
    """rotel forwards the batch (it only logs a partial success), so the service's /metrics counters are where
    the rejection shows: two items rejected with their reasons, the good points stored."""
    service, rotel = service_and_collector(processes, tmp_path)
    lanes = 5
    stub = metrics_service_pb2_grpc.MetricsServiceStub(grpc.insecure_channel(rotel.endpoint))
    stub.Export(malformed_request(lanes), timeout=10)
    name = REGISTRY.metric("factorylens.rca.ingest.rejected").prometheus_name

    def rejected() -> float:
        return exported_counter(service.metrics_page(), name, otlp_signal="metrics")

    processes.wait(lambda: rejected() >= len(MALFORMED), 20, "the rejections")
    assert rejected() == len(MALFORMED)
    assert sorted(stored_points(service.api)) == [(lane, 1) for lane in range(lanes)]
    accepted = REGISTRY.metric("factorylens.rca.ingest.accepted").prometheus_name
    assert exported_counter(service.metrics_page(), accepted, otlp_signal="metrics") == lanes
    for metric, _ in MALFORMED:
        assert not list(list_series(service.api, rca_pb2.ListSeriesRequest(metric=metric), timeout=10))
    by_reason = {
        sample.labels["factorylens_rca_reason"]: sample.value
        for family in text_string_to_metric_families(service.metrics_page())
        for sample in family.samples
        if sample.name == name
    }
    for _, why in MALFORMED:  # one item each, counted under its reason
        assert [n for reason, n in by_reason.items() if why in reason] == [1.0], by_reason
    assert "Traceback" not in rotel.log_tail(100_000)


# ---------------------------------------------------------------------------- rotel restarted


SDK_METRIC = "e2e.sdk.sequence"


class SdkSender:
    """The OpenTelemetry SDK's own OTLP/gRPC exporter sending ``SDK_METRIC`` (one gauge point per lane, value
    ``seq``) every ``period_s``; ``export`` retries with backoff on UNAVAILABLE, as every SDK-instrumented sender
    does, and a point counts as acknowledged only when ``export`` returned SUCCESS."""

    def __init__(self, endpoint: str, lanes: int = 10, period_s: float = 0.02) -> None:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.resources import Resource

        self.lanes, self.period_s = lanes, period_s
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(
            metric_readers=[self.reader], resource=Resource.create({"service.name": "e2e-sdk-sender"})
        )
        self.gauge = self.provider.get_meter("e2e").create_gauge(SDK_METRIC)
        self.exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=30)
        self.acked: set[tuple[int, int]] = set()
        self.retried: list[tuple[float, float]] = []  # (began, returned) of exports that succeeded after retrying
        self.failed = 0
        self.exporting_since: float | None = None  # when the export under way began
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="e2e-sdk-sender", daemon=True)

    def start(self) -> SdkSender:
        self._thread.start()
        return self

    def _run(self) -> None:
        from opentelemetry.sdk.metrics.export import MetricExportResult

        seq = 0
        while not self._stop.is_set():
            for lane in range(self.lanes):
                self.gauge.set(seq, {LANE: lane})
            data = self.reader.get_metrics_data()
            assert data is not None
            with self._lock:
                self.exporting_since = began = time.monotonic()
            result = self.exporter.export(data)
            returned = time.monotonic()
            with self._lock:
                self.exporting_since = None
                if result is MetricExportResult.SUCCESS:
                    self.acked.update((lane, seq) for lane in range(self.lanes))
                    if returned - began > 0.5:  # the exporter's first retry waits about a second
                        self.retried.append((began, returned))
                else:
                    self.failed += 1
            seq += 1
            self._stop.wait(self.period_s)

    def acknowledged(self) -> set[tuple[int, int]]:
        with self._lock:
            return set(self.acked)

    def retrying(self, since: float) -> bool:
        """Whether the export under way has been waiting for more than 0.3 s since ``since`` (an export takes
        milliseconds; this one was refused and is in its retry backoff)."""
        with self._lock:
            began = self.exporting_since
        return began is not None and time.monotonic() - max(began, since) > 0.3

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(40)
        self.exporter.shutdown()
        self.provider.shutdown()


@pytest.mark.slow
def test_a_restarted_collector_loses_only_what_it_held_in_memory(processes, tmp_path):
    """rotel killed and restarted on its ports, twice, under the SDK's exporter. The SDK retries through each
    restart, and everything acknowledged after it arrives. What rotel held is lost (its retry buffer is in
    memory, by design; otelcol-contrib's ``sending_queue`` on ``file_storage`` keeps it across restarts, see
    ``otel-config/gateway.yaml``):

    1. with the service up, rotel holds at most a batch in flight: only points acknowledged but not yet stored
       at the kill may be lost;
    2. with the service down, rotel holds everything acknowledged since: all of it is lost, and nothing else.
    """
    service, rotel = service_and_collector(processes, tmp_path)
    sender = SdkSender(rotel.endpoint).start()
    processes.cleanups.append(sender.stop)

    def stored() -> set[tuple[int, int]]:
        return set(stored_points(service.api, SDK_METRIC))

    def acked_more(than: int, what: str) -> None:
        processes.wait(lambda: len(sender.acknowledged()) >= than + 200, 30, what)

    processes.wait(lambda: len(stored()) >= 200, 20, "points flowing")
    # 1. the service up: rotel crashes and comes back
    stored_at_kill = stored()
    rotel.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    acked_at_kill = sender.acknowledged()
    processes.wait(lambda: sender.retrying(since=killed_at), 10, "an export refused while rotel is down", 0.05)
    rotel.start()
    back_at = time.monotonic()
    acked_more(len(acked_at_kill), "the SDK exporting again after rotel's restart")
    # 2. the service down: rotel holds what it acknowledges, then crashes
    stored_at_service_kill = set(stored())
    service.kill(signal.SIGKILL)
    acked_at_service_kill = sender.acknowledged()
    acked_more(len(acked_at_service_kill), "rotel acknowledging while the service is down")
    rotel.kill(signal.SIGKILL)
    held = sender.acknowledged() - acked_at_service_kill  # acknowledged by rotel while nothing could leave it
    acked_at_second_kill = sender.acknowledged()
    service.start()
    rotel.start()
    acked_more(len(acked_at_second_kill), "the SDK exporting again after both restarts")
    sender.stop()
    acked = sender.acknowledged()
    after = acked - acked_at_second_kill
    processes.wait(lambda: after <= stored(), 30, "everything acknowledged after the restarts", interval_s=0.5)
    final = stored()
    lost = acked - final
    lost_1 = {p for p in lost if p in acked_at_kill}
    lost_2 = lost - lost_1
    assert sender.failed == 0, "the SDK exporter retried through every restart"
    # an export begun while rotel was down returned SUCCESS once it was back: the SDK retried it
    assert any(began < back_at < returned for began, returned in sender.retried), (back_at, sender.retried)
    assert lost_1 <= acked_at_kill - stored_at_kill
    assert held <= lost_2 <= acked_at_second_kill - stored_at_service_kill
    assert final <= acked
    print(
        f"\nrotel SIGKILL, service up: lost {len(lost_1)} points of {len(acked_at_kill - stored_at_kill)} "
        f"acknowledged but not yet stored; rotel SIGKILL, service down: lost {len(lost_2)} points "
        f"({len(held)} acknowledged while the service was down, "
        f"{len(acked_at_service_kill - stored_at_service_kill)} in flight when it went down); "
        f"{len(acked)} acknowledged in all; SDK exports that retried: {len(sender.retried)}"
    )


# ---------------------------------------------------------------------------- the simulated cluster, end to end


SPEED = 10.0  # simulated seconds per second, as `factorylens demo`
INTERVAL_S = 1.0  # scrape, export and analysis interval
FAULT_HOST, FAULT_GPU = "sim-node-1", 3
# simulated: 24 s into the run, between the training loop's checkpoints (every 200 steps, about 15 s apart):
# a KPI break that starts within a scrape of a checkpoint's end is taken for that checkpoint and held back
# for as long as it lasts (analysis._pauses), so a fault landing on a checkpoint opens nothing
FAULT_AT_S = 240.0
INCIDENT_WITHIN_S = 40.0  # wall seconds after the onset (about 5 measured)
SCENARIO = (
    "faults:\n"
    "  - kind: thermal_throttle\n"
    f"    target: {{host: {FAULT_HOST}, gpu: {FAULT_GPU}}}\n"
    f"    start: {int(FAULT_AT_S)}s\n"
    "    duration: 60m\n"
    "    params: {extra_celsius: 32}\n"
)
# what the catalog says a thermal fault shows on its GPU (bench/simulation/_catalog.py)
THERMAL_SIGNALS = ("hw.gpu.clock_event.active", "hw.temperature", "hw.gpu.speed", "hw.status")
RERANK_S = (
    KpiRankingConfig().incidents.rerank_interval_s / SPEED
)  # the scaled service re-ranks a young incident this often


class ClusterRun:
    """The demo's cluster with every hop real: the node agent (2 hosts × 8 simulated H100s, a thermal fault on
    ``FAULT_GPU`` of ``FAULT_HOST``) and the instrumented training loop export OTLP to rotel, rotel to the RCA
    service (a process, its windows scaled to the simulation speed); Prometheus scrapes the agent's two
    ``/metrics`` endpoints and the service's."""

    def __init__(self, processes: ProcessSet, tmp_path: Path) -> None:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        from factorylens.receivers.gpu import GpuReceiverConfig, create_receiver
        from factorylens.simulation.live_training import TrainingJob
        from factorylens.telemetry import periodic_reader

        self.processes = processes
        self.service = processes.add(
            RcaServer(tmp_path / "rca.log", tmp_path / "rca-data", scaled=(SPEED, INTERVAL_S))
        ).start()
        self.rotel = processes.add(Rotel(tmp_path / "rotel.log", self.service.address)).start()
        scenario = tmp_path / "thermal.yaml"
        scenario.write_text(SCENARIO)
        endpoint = self.rotel.endpoint
        self.receiver, cluster = create_receiver(
            GpuReceiverConfig(
                backend="sim",
                sim_hosts=2,
                sim_gpus_per_host=8,
                scenario=str(scenario),
                sim_speed=SPEED,
                collection_interval_s=INTERVAL_S,
                prometheus_port=0,
                otlp="off",
            ),
            metric_readers=lambda host: [
                periodic_reader(OTLPMetricExporter(endpoint=endpoint, insecure=True), INTERVAL_S)
            ],
            log_exporters=lambda host: [OTLPLogExporter(endpoint=endpoint, insecure=True)],
        )
        processes.cleanups.append(self.receiver.shutdown)
        assert cluster is not None
        self.cluster = cluster
        # the simulated clock started with the cluster: the fault begins FAULT_AT_S simulated seconds in
        self.fault_unix_s = time.time() + (FAULT_AT_S - cluster.sim_elapsed()) / SPEED
        self.faulty = next(
            g.uuid for h in cluster.hosts if h.name == FAULT_HOST for g in h.gpus if g.index == FAULT_GPU
        )
        self.others = [g.uuid for h in cluster.hosts for g in h.gpus if g.uuid != self.faulty]
        self.receiver.start()
        self.training = TrainingJob(cluster, endpoint, INTERVAL_S)
        self.training.start()  # at once: its checkpoints fall on the schedule FAULT_AT_S avoids
        processes.cleanups.append(self.training.stop)
        agents = [f"127.0.0.1:{p.metrics_server.port}" for p in self.receiver.pipelines if p.metrics_server]
        assert len(agents) == 2
        self.prometheus = processes.add(
            Prometheus(tmp_path, {"gpu": agents, "rca": [f"127.0.0.1:{self.service.metrics_port}"]})
        ).start()

    def incidents(self) -> list[rca_pb2.Incident]:
        try:
            return list(list_incidents(self.service.api, timeout=5))
        except grpc.RpcError:  # the service is restarting
            return []

    def first_incident(self) -> tuple[rca_pb2.Incident, rca_pb2.Incident]:
        """The first incident with ranked causes as the API first shows it, and as ranked once every source has
        reported past its opening.

        The training loop feels the throttled GPU at once (it reads the simulator), while the GPU's throttle
        flag reaches the service only with the agent's next scrape and export, up to two intervals later, so
        the ranking made when the KPI breaks may lack the cause's evidence. The service re-ranks a young
        incident every ``rerank_interval_s`` (3 s here); the ranking asserted is the first one made at least
        that long after the opening, when the GPU's samples are in.
        """
        deadline_s = self.fault_unix_s - time.time() + INCIDENT_WITHIN_S
        self.processes.wait(lambda: any(i.causes for i in self.incidents()), deadline_s, "an incident", 0.5)
        opened = min((i for i in self.incidents() if i.causes), key=lambda i: i.opened_time_unix_nano)

        latest: list[rca_pb2.Incident] = []

        def reranked_to_the_gpu() -> rca_pb2.Incident | None:
            same = [i for i in self.incidents() if i.id == opened.id]
            settled = same and same[0].updated_time_unix_nano - opened.opened_time_unix_nano >= RERANK_S * NS
            if not settled:
                return None
            latest[:] = same
            return same[0] if same[0].causes and same[0].causes[0].entity == f"gpu:{self.faulty}" else None

        # while the incident is young it is re-ranked as evidence arrives (a scrape late under load, a
        # pause of the loop): the assertion takes the ranking once it settles on the GPU, within a few
        # re-rankings, and otherwise fails on the last one shown
        try:
            settled = self.processes.wait(reranked_to_the_gpu, RERANK_S * 4 + 10, "the incident re-ranked", 0.5)
        except AssertionError:
            assert latest, "the incident was never re-ranked"
            settled = latest[0]
        return opened, settled

    def check_incident(self, incident: rca_pb2.Incident) -> None:
        """Opened after the fault, its first cause the faulty GPU on its host."""
        early = [i.title for i in self.incidents() if i.opened_time_unix_nano < self.fault_unix_s * NS]
        assert not early, f"incidents before the fault: {early}"
        top = incident.causes[0]
        assert top.entity == f"gpu:{self.faulty}", client_format(incident)
        [data] = self.service.api.QuerySeries(
            rca_pb2.QuerySeriesRequest(series_ids=[top.series_id], start_time_unix_nano=time.time_ns()), timeout=10
        ).series
        assert attributes(data.info.resource)["host.name"] == FAULT_HOST, client_format(incident)
        assert top.domain == "gpu" and top.signal.startswith(THERMAL_SIGNALS), client_format(incident)

    def check_prometheus(self) -> None:
        """The GPU's series under their translated names in Prometheus, on its host, its temperature risen; and
        the service's ranked cause scraped from its /metrics."""
        prom = self.prometheus
        temperature = REGISTRY.metric("hw.temperature").prometheus_name  # hw_temperature_celsius
        throttle = REGISTRY.metric("hw.gpu.clock_event.active").prometheus_name
        die = 'hw_sensor_location="die"'
        joined = prom.query(
            f'{temperature}{{hw_id="{self.faulty}",{die}}} * on (job, instance) group_left (host_name) target_info'
        )
        assert [r["metric"]["host_name"] for r in joined] == [FAULT_HOST], joined
        start, end = self.fault_unix_s - 15, time.time()
        curves = {
            r["metric"]["hw_id"]: [(float(t), float(v)) for t, v in r["values"]]
            for r in prom.query_range(f"{temperature}{{{die}}}", start, end)
        }
        assert set(curves) == {self.faulty, *self.others}

        def rise(uuid: str) -> float:
            before = [v for t, v in curves[uuid] if t < self.fault_unix_s]
            after = [v for t, v in curves[uuid] if t > self.fault_unix_s]
            assert before and after, (uuid, curves[uuid])
            return max(after) - sorted(before)[len(before) // 2]

        assert rise(self.faulty) > 15, curves[self.faulty]
        assert rise(self.faulty) > max(rise(u) for u in self.others) + 10
        throttled = prom.query(
            f'max_over_time({throttle}{{hw_id="{self.faulty}",'
            f'hw_gpu_clock_event_reason="sw_thermal"}}[{int(end - self.fault_unix_s)}s])'
        )
        assert [float(r["value"][1]) for r in throttled] == [1.0], throttled
        score = REGISTRY.metric("factorylens.incident.cause.score").prometheus_name
        ranked = self.processes.wait(
            lambda: prom.query(f'{score}{{job="rca",factorylens_cause_rank="1"}}'),
            10,
            "the service's ranked cause in Prometheus",
        )
        assert {r["metric"]["factorylens_entity"] for r in ranked} == {f"gpu:{self.faulty}"}, ranked


@pytest.mark.slow
def test_a_thermal_fault_through_the_collector_opens_an_incident_naming_the_gpu(processes, tmp_path):
    """Simulated GPUs and the training loop → rotel → RCA service, in real time: the incident the thermal fault
    opens, read through the RCA API, names the faulty GPU on its host first; Prometheus has the same GPU's
    series under the translated names, its temperature up."""
    run = ClusterRun(processes, tmp_path)
    opened, incident = run.first_incident()
    run.check_incident(incident)
    run.check_prometheus()
    print(
        f"\nincident {(incident.opened_time_unix_nano / NS - run.fault_unix_s):.1f} s after the fault "
        f"(onset {(incident.onset_time_unix_nano / NS - run.fault_unix_s):+.1f} s): {incident.title}; "
        f"first shown with {opened.causes[0].entity} {opened.causes[0].signal} first"
    )


@pytest.mark.slow
def test_the_incident_is_still_found_when_the_service_crashes_before_the_fault(processes, tmp_path):
    """The same run with the service SIGKILLed 12 s before the fault and restarted on its port: rotel holds the
    telemetry meanwhile and retries, the restarted service replays its WAL (the history the baselines need) and
    still opens the incident, naming the GPU first."""
    run = ClusterRun(processes, tmp_path)
    processes.wait(lambda: time.time() >= run.fault_unix_s - 12, FAULT_AT_S / SPEED, "the crash time", 0.1)
    run.service.kill(signal.SIGKILL)
    down = time.monotonic()
    run.service.start()
    print(
        f"\nservice down {time.monotonic() - down:.1f} s, back {run.fault_unix_s - time.time():.1f} s before the fault"
    )
    opened, incident = run.first_incident()
    run.check_incident(incident)
    print(
        f"incident {(incident.opened_time_unix_nano / NS - run.fault_unix_s):.1f} s after the fault: "
        f"{incident.title}; first shown with {opened.causes[0].entity} first; "
        f"rotel dropped {len(dropped_batches(run.rotel))} batch(es)"
    )
