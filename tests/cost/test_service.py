"""Cost in the RCA service: the live rollup and report against hand computations (the hour of
cost_rules_test.yaml, through real OTLP ingest, a counter reset included), /metrics, the
GetCostReport RPC, `factorylens cost`, OTLP export, and waste incidents."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from factorylens.processors.cost import UNALLOCATED, PriceCatalog
from factorylens.rca_service.api.v1 import rca_pb2, rca_pb2_grpc
from factorylens.rca_service.cost import CostTracker, WasteConfig
from factorylens.rca_service.store import SeriesStore
from tests.conftest import wait_until
from tests.otlp_sink import OtlpSink
from tests.rca.otlp_builders import T0, counter, gauge, histogram, metrics_request

HERE = Path(__file__).parent
CATALOG = HERE / "test-catalog.yaml"
MIN = 60 * 10**9
H100, A100, GB200 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA GB200"


def usage(metric: str, gpu: str, name: str, values: list[float], cluster: str, **attributes: str) -> object:
    """A receiver usage counter sampled every minute from T0; a drop starts a new epoch (agent restart)."""
    points, start = [], T0 - MIN
    for i, value in enumerate(values):
        if i and value < values[i - 1]:
            start = T0 + i * MIN - 1
        points.append((start, T0 + i * MIN, value))
    return counter(metric, points, {"hw.id": gpu, "hw.name": name, "factorylens.cluster.name": cluster, **attributes})


def ramp(step: float, minutes: int = 60, until: int | None = None) -> list[float]:
    """0, step, 2 step, ... flat after ``until`` minutes."""
    return [step * min(i, until if until is not None else i) for i in range(minutes + 1)]


ALLOC, ACTIVE, ENERGY = (
    "factorylens.gpu.allocation.time",
    "factorylens.gpu.active.time",
    "factorylens.gpu.allocation.energy",
)
HELD = {"factorylens.allocation.state": "allocated"}
FREE = {"factorylens.allocation.state": "unallocated"}
UTIL = {"factorylens.cost.basis": "utilization"}


def the_hour() -> list:
    """The hour of cost_rules_test.yaml as OTLP requests (one per host, plus the instrumentation)."""
    j = lambda job, team: {"factorylens.job.id": job, "factorylens.team": team}  # noqa: E731
    j2_alloc = [60.0 * i for i in range(16)] + [60.0 * i for i in range(1, 16)] + [900.0] * 30
    node1 = [
        usage(ALLOC, "g1", H100, ramp(60), "c1", **j("j1", "research"), **HELD),
        usage(ACTIVE, "g1", H100, ramp(45), "c1", **j("j1", "research"), **UTIL),
        usage(ENERGY, "g1", H100, ramp(42000), "c1", **j("j1", "research"), **HELD),
        usage(ALLOC, "g2", A100, j2_alloc, "c1", **j("j2", "vision"), **HELD),
        usage(ACTIVE, "g2", A100, ramp(30, until=30), "c1", **j("j2", "vision"), **UTIL),
        usage(ENERGY, "g2", A100, ramp(24000, until=30), "c1", **j("j2", "vision"), **HELD),
        usage(ALLOC, "g2", A100, [0.0] * 31 + [60.0 * i for i in range(1, 31)], "c1", **FREE),
        usage(ENERGY, "g2", A100, [0.0] * 31 + [6000.0 * i for i in range(1, 31)], "c1", **FREE),
        usage(ALLOC, "g5", GB200, ramp(60), "c1", **j("j5", "vision"), **HELD),
    ]
    node2 = [
        usage(ALLOC, "g3", H100, ramp(60), "c2", **j("j3", "research"), **HELD),
        usage(ALLOC, "g4", H100, ramp(60), "c2", **j("j4", "vision"), **HELD),
    ]
    minutes = [T0 + i * MIN for i in range(61)]
    requests = [
        metrics_request(node1, {"host.name": "node-1"}),
        metrics_request(node2, {"host.name": "node-2"}),
    ]
    for rank in (0, 1):
        tokens = counter("factorylens.train.tokens", [(T0 - MIN, t, 500_000.0 * i) for i, t in enumerate(minutes)])
        mfu = gauge("factorylens.train.mfu", [(t, 0.4) for t in minutes])
        resource = {"service.name": "trainer", "factorylens.job.id": "j1", "factorylens.rank": rank}
        requests.append(metrics_request([tokens, mfu], resource))
    samples = counter("factorylens.train.samples", [(T0 - MIN, t, 100.0 * i) for i, t in enumerate(minutes)])
    mfu = gauge("factorylens.train.mfu", [(t, 0.5) for t in minutes])
    requests.append(metrics_request([samples, mfu], {"service.name": "trainer", "factorylens.job.id": "j3"}))
    return requests


def test_the_live_report_matches_the_hand_computation_within_a_thousandth() -> None:
    store = SeriesStore()
    for request in the_hour():
        assert store.ingest_metrics(request).rejected == 0
    tracker = CostTracker(PriceCatalog.from_file(CATALOG))
    by_gpu = tracker.report(store, T0, T0 + 60 * MIN, "gpu").groups
    expected_cost = {"g1": 3.0, "g2": 1.0, "g3": 2.5, "g4": 5.0, "g5": 0.0}
    assert {g: t.gpu_time_cost for g, t in by_gpu.items()} == pytest.approx(expected_cost, rel=1e-3)
    g1, g2 = by_gpu["g1"], by_gpu["g2"]
    assert (g1.allocated_h, g1.idle_h, g1.idle_cost, g1.useful_cost) == pytest.approx((1, 0.25, 0.75, 1.2), rel=1e-3)
    assert g2.allocated_h == pytest.approx(0.5, rel=1e-3)  # across the counter reset at minute 16
    assert (g2.unallocated_h, g2.unallocated_cost) == pytest.approx((0.5, 1.0075), rel=1e-3)
    assert g2.energy_cost == pytest.approx(0.03, rel=1e-3)
    assert by_gpu["g5"].unpriced_h == pytest.approx(1.0, rel=1e-3)
    teams = tracker.report(store, T0, T0 + 60 * MIN, "team")
    assert teams.groups["research"].gpu_time_cost == pytest.approx(5.5, rel=1e-3)
    assert teams.groups["vision"].gpu_time_cost == pytest.approx(6.0, rel=1e-3)
    assert teams.groups[UNALLOCATED].unallocated_cost == pytest.approx(1.0075, rel=1e-3)
    assert teams.unpriced_models == [GB200]
    jobs = tracker.report(store, T0, T0 + 60 * MIN, "job").groups
    assert jobs["j1"].tokens == pytest.approx(6e7, rel=1e-3)
    assert jobs["j1"].cost_per_1m_tokens == pytest.approx(0.05, rel=1e-3)
    assert jobs["j3"].cost_per_1k_samples == pytest.approx(2.5 / 6, rel=1e-3)
    hosts = tracker.report(store, T0, T0 + 60 * MIN, "host").groups
    assert hosts["node-2"].gpu_time_cost == pytest.approx(7.5, rel=1e-3)
    half = tracker.report(store, T0, T0 + 30 * MIN, "gpu").groups  # any range: the first half hour
    assert half["g1"].allocated_h == pytest.approx(0.5, rel=1e-3)


def test_the_service_serves_prices_figures_and_reports(make_service, tmp_path: Path) -> None:
    sink = OtlpSink()
    try:
        service = make_service(
            price_catalog=str(CATALOG),
            retention_s=7 * 24 * 3600.0,
            cost_interval_s=0.01,
            incidents_otlp_endpoint=sink.endpoint,
        )
        stub = metrics_service_pb2_grpc.MetricsServiceStub(grpc.insecure_channel(service.address))
        for request in the_hour():
            response = stub.Export(request, timeout=30)
            assert not response.partial_success.rejected_data_points, response.partial_success.error_message
        service.analyze_now()
        text = urllib.request.urlopen(service.metrics_server.url, timeout=10).read().decode()
        samples = {
            (sample.name, frozenset((k, v) for k, v in sample.labels.items() if v)): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

        def value(name: str, **labels: str) -> float:
            return samples[(name, frozenset(labels.items()))]

        assert (
            value(
                "factorylens_gpu_price_per_hour",
                hw_model="H100",
                factorylens_cluster_name="c2",
                factorylens_price_basis="on_demand",
            )
            == 5.0
        )
        assert value("factorylens_gpu_energy_price_per_kilowatt_hour", hw_model="A100") == pytest.approx(0.15)
        j4 = {
            "factorylens_job_id": "j4",
            "factorylens_team": "vision",
            "factorylens_cluster_name": "c2",
            "hw_model": "H100",
        }
        assert value("factorylens_cost_spend", **j4, factorylens_cost_component="gpu_time") == pytest.approx(
            5.0, rel=1e-3
        )
        assert value("factorylens_cost_gpu_time_hours", **j4, factorylens_cost_usage="allocated") == pytest.approx(
            1.0, rel=1e-3
        )
        j5 = {"factorylens_job_id": "j5", "factorylens_team": "vision", "factorylens_cluster_name": "c1"}
        assert value("factorylens_cost_gpu_time_hours", **j5, factorylens_cost_usage="unpriced") == pytest.approx(
            1.0, rel=1e-3
        )
        assert value(
            "factorylens_cost_efficiency_ratio",
            factorylens_job_id="j1",
            factorylens_team="research",
            factorylens_cluster_name="c1",
        ) == pytest.approx(0.4)

        api = rca_pb2_grpc.RcaServiceStub(grpc.insecure_channel(service.address))
        report = api.GetCostReport(
            rca_pb2.GetCostReportRequest(start_time_unix_nano=T0, end_time_unix_nano=T0 + 60 * MIN, group_by="team"),
            timeout=30,
        )
        groups = {g.group: g for g in report.groups}
        assert groups["vision"].gpu_time_cost == pytest.approx(6.0, rel=1e-3)
        assert report.currency == "USD" and not report.example_prices and report.unpriced_models == [GB200]
        with pytest.raises(grpc.RpcError) as error:
            api.GetCostReport(rca_pb2.GetCostReportRequest(group_by="rack"), timeout=10)
        assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT

        end = str((T0 + 60 * MIN) / 1e9)
        cli = [sys.executable, "-m", "factorylens", "cost", "--service", service.address, "--range", "1h", "--end", end]
        table = subprocess.run([*cli, "--group-by", "job"], capture_output=True, text=True, timeout=60)
        assert table.returncode == 0, table.stderr
        assert "GPU cost by job" in table.stdout and "Top " in table.stdout and "idle-but-allocated" in table.stdout
        assert "j4" in table.stdout and "5.00" in table.stdout
        as_json = subprocess.run([*cli, "--format", "json"], capture_output=True, text=True, timeout=60)
        document = json.loads(as_json.stdout)
        by_team = {g["team"]: g for g in document["groups"]}
        assert by_team["research"]["gpu_time_cost"] == pytest.approx(5.5, rel=1e-3)
        assert by_team["TOTAL"]["total_cost"] == pytest.approx(3 + 1.03 + 1.0075 + 2.5 + 5, rel=1e-3)
        assert "spent USD" in document["summary"]
        as_csv = subprocess.run(
            [*cli, "--format", "csv", "--group-by", "cluster"], capture_output=True, text=True, timeout=60
        )
        header, *lines = as_csv.stdout.splitlines()
        assert header.startswith("cluster,allocated_h,") and any(line.startswith("c2,") for line in lines)

        # the same figures leave as OTLP metrics (to the incidents' OTLP endpoint)
        service.findings_meter.force_flush()
        wait_until(lambda: sink.metric_points("factorylens.cost.spend"), what="cost figures over OTLP")
        prices = sink.metric_points("factorylens.gpu.price")
        assert {(p.get("hw.model"), p.get("factorylens.cluster.name"), v) for _, p, v in prices} >= {
            ("H100", "c2", 5.0)
        }
    finally:
        sink.stop()


def test_a_service_without_a_catalog_reports_hours_as_unpriced_not_free(make_service) -> None:
    service = make_service(retention_s=7 * 24 * 3600.0)
    stub = metrics_service_pb2_grpc.MetricsServiceStub(grpc.insecure_channel(service.address))
    for request in the_hour():
        stub.Export(request, timeout=30)
    report = service.cost.report(service.store, T0, T0 + 60 * MIN, "team")
    assert report.groups["vision"].total_cost == 0
    assert report.groups["vision"].unpriced_h == pytest.approx(2.5, rel=1e-3)  # j2 0.5 h, j4 1 h, j5 1 h


def idle_job(
    store: SeriesStore, job: str, start: int, minutes: int, busy: float, *, steps: bool, data_share: float = 0.0
) -> None:
    """A job holding two GPUs, ``busy`` of the time, for ``minutes`` from ``start``."""
    times = [start + i * MIN for i in range(minutes + 1)]
    metrics = []
    for gpu in ("ga", "gb"):
        attributes = {"hw.id": gpu, "hw.name": H100, "factorylens.job.id": job, "factorylens.team": "research"}
        metrics.append(
            counter(ALLOC, [(start - MIN, t, 60.0 * i) for i, t in enumerate(times)], {**attributes, **HELD})
        )
        metrics.append(
            counter(ACTIVE, [(start - MIN, t, 60.0 * busy * i) for i, t in enumerate(times)], {**attributes, **UTIL})
        )
    store.ingest_metrics(metrics_request(metrics, {"host.name": "node-1"}))
    if steps:
        resource = {"service.name": "trainer", "factorylens.job.id": job}
        step_counter = counter("factorylens.train.steps", [(start - MIN, t, 10.0 * i) for i, t in enumerate(times)])
        phases = []
        for phase, share in (("data", data_share), ("forward", 1 - data_share)):
            m = histogram(
                "factorylens.train.phase.duration",
                [(start - MIN, t, [1.0], [10 * i, 0], 60.0 * share * i) for i, t in enumerate(times)],
            )
            for p in m.histogram.data_points:
                p.attributes.add(key="factorylens.train.phase").value.string_value = phase
            phases.append(m)
        store.ingest_metrics(metrics_request([step_counter, *phases], resource))


def test_a_job_holding_idle_gpus_opens_a_low_severity_waste_incident_with_its_cost_and_reason() -> None:
    store = SeriesStore()
    idle_job(store, "notebook-7", T0, 60, busy=0.05, steps=False)
    tracker = CostTracker(PriceCatalog.from_file(CATALOG), waste=WasteConfig(idle_threshold=0.8, duration_s=1800))
    changes = tracker.update(store, T0 + 60 * MIN, force=True)
    assert [c.value for c, _ in changes] == ["opened"]
    incident = changes[0][1]
    assert (incident.kind, incident.severity) == ("waste", "low")
    assert incident.title == "Job notebook-7 holds 2 GPUs 95% idle"
    # idle since the window began: 2 GPUs x 0.5 h x 95% idle x $3 (team research's H100 price)
    assert "2.85 USD of idle GPU time so far" in incident.summary
    assert "nothing running that reports progress" in incident.summary
    assert incident.causes[0].entity == "job:notebook-7"
    assert tracker.update(store, T0 + 60 * MIN, force=True) == []  # the same story: nothing to publish
    idle_job(store, "notebook-7", T0 + 60 * MIN, 10, busy=0.15, steps=False)
    ((change, updated),) = tracker.update(store, T0 + 70 * MIN, force=True)
    assert change.value == "updated" and updated.title == "Job notebook-7 holds 2 GPUs 90% idle"
    assert "idle GPU time so far" in updated.summary
    # the job gets to work: the incident resolves
    idle_job(store, "notebook-7", T0 + 60 * MIN, 40, busy=0.9, steps=False)
    changes = tracker.update(store, T0 + 100 * MIN, force=True)
    assert [c.value for c, _ in changes] == ["resolved"]


def test_the_waste_reason_names_the_phase_the_steps_wait_in() -> None:
    store = SeriesStore()
    idle_job(store, "train-3", T0, 60, busy=0.1, steps=True, data_share=0.7)
    tracker = CostTracker(PriceCatalog.from_file(CATALOG))
    ((_, incident),) = tracker.update(store, T0 + 60 * MIN, force=True)
    assert incident.causes[0].domain == "data"
    assert "waiting for data" in incident.summary and "70% of the step time" in incident.summary


def test_a_busy_or_briefly_idle_job_opens_nothing() -> None:
    store = SeriesStore()
    idle_job(store, "busy", T0, 60, busy=0.7, steps=False)
    idle_job(store, "brief", T0 + 45 * MIN, 15, busy=0.0, steps=False)  # idle, but for 15 of 30 minutes
    tracker = CostTracker(PriceCatalog.from_file(CATALOG))
    assert tracker.update(store, T0 + 60 * MIN, force=True) == []
    assert tracker.incidents() == []


def test_waste_incidents_come_back_after_a_restart(make_service) -> None:
    service = make_service(cost_interval_s=0.01, waste_duration_s=600.0)
    now = time.time_ns()
    idle_job(service.store, "nb", now - 20 * MIN, 20, busy=0.0, steps=False)
    service.analyze_now()
    (incident,) = [i for i in service.analyzer.incidents() if i.kind == "waste"]
    assert incident.state.value == "open" and "cost unknown" in incident.summary  # no catalog: unpriced
    api = rca_pb2_grpc.RcaServiceStub(grpc.insecure_channel(service.address))
    listed = api.ListIncidents(rca_pb2.ListIncidentsRequest(), timeout=10).incidents
    assert [(i.kind, i.severity) for i in listed] == [("waste", "low")]
    data_dir = service.config.data_dir
    service.stop()
    again = make_service(data_dir=data_dir)
    assert [i.id for i in again.analyzer.incidents()] == [incident.id]
    assert again.cost.incidents()[0].state.value == "open"
    assert not math.isnan(incident.score)


def test_the_incremental_ledger_agrees_with_the_exact_report() -> None:
    """The live figures come from running bucket sums read a few points at a time; over whole buckets
    they equal the exact report, resets included, whether read at once (numpy) or point by point."""
    from factorylens.rca_service._ledger import UsageLedger

    requests = the_hour()
    at_once, bit_by_bit = SeriesStore(), SeriesStore()
    for request in requests:
        at_once.ingest_metrics(request)
    bulk = UsageLedger(window_s=24 * 3600, short_window_s=3600)
    bulk.advance(at_once, T0 + 60 * MIN)
    stepped = UsageLedger(window_s=24 * 3600, short_window_s=3600)
    for minute in range(61):  # the same points, one minute at a time
        for request in requests:
            one = type(request)()
            one.CopyFrom(request)
            for rm in one.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        data = getattr(metric, metric.WhichOneof("data"))
                        kept = [p for p in data.data_points if p.time_unix_nano == T0 + minute * MIN]
                        del data.data_points[:]
                        data.data_points.extend(kept)
            bit_by_bit.ingest_metrics(one)
        stepped.advance(bit_by_bit, T0 + minute * MIN)
    catalog = PriceCatalog.from_file(CATALOG)
    from factorylens.processors.cost import cost_totals

    exact = CostTracker(catalog).report(at_once, T0, T0 + 60 * MIN, "gpu").groups
    for ledger in (bulk, stepped):
        rows, outputs = ledger.rows(T0, T0 + 60 * MIN)
        live = cost_totals(rows, catalog, "gpu", outputs)
        for gpu, totals in exact.items():
            for name, value in totals.as_dict().items():
                got = live[gpu].as_dict()[name]
                assert got == pytest.approx(value, rel=1e-6, nan_ok=True), (gpu, name)
        assert outputs["j1"].tokens == pytest.approx(6e7) and outputs["j1"].mfu == pytest.approx(0.4)


def test_delta_counters_count_in_the_report_and_the_live_figures() -> None:
    """A gateway may pass delta sums on unchanged: each point is then an increase."""
    from tests.rca.otlp_builders import DELTA

    store = SeriesStore()
    times = [T0 + i * MIN for i in range(1, 61)]
    alloc = counter(
        ALLOC,
        [(t - MIN, t, 60.0) for t in times],
        {"hw.id": "g1", "hw.name": H100, "factorylens.job.id": "j1", **HELD},
        temporality=DELTA,
    )
    samples = counter("factorylens.train.samples", [(t - MIN, t, 100.0) for t in times], temporality=DELTA)
    store.ingest_metrics(metrics_request([alloc], {"host.name": "node-1"}))
    store.ingest_metrics(metrics_request([samples], {"service.name": "trainer", "factorylens.job.id": "j1"}))
    tracker = CostTracker(PriceCatalog.from_file(CATALOG))
    exact = tracker.report(store, T0, T0 + 60 * MIN, "job").groups["j1"]
    assert (exact.allocated_h, exact.samples) == pytest.approx((1.0, 6000.0))
    tracker.update(store, T0 + 60 * MIN, force=True)
    live = tracker.figure_points()
    allocated = [v for a, v in live["factorylens.cost.gpu.time"] if a.get("factorylens.cost.usage") == "allocated"]
    assert allocated == pytest.approx([1.0])
    per_1k = [v for a, v in live["factorylens.cost.unit"] if a["factorylens.cost.output"] == "1k_samples"]
    assert per_1k == pytest.approx([4.0 / 6])  # $4 for 6k samples


def test_a_gpu_held_by_an_unknown_process_then_free_keeps_both_apart() -> None:
    store = SeriesStore()
    held = [60.0 * min(i, 30) for i in range(61)]
    free = [0.0] * 31 + [60.0 * i for i in range(1, 31)]
    store.ingest_metrics(
        metrics_request(
            [usage(ALLOC, "g1", H100, held, "c1", **HELD), usage(ALLOC, "g1", H100, free, "c1", **FREE)],
            {"host.name": "node-1"},
        )
    )
    groups = CostTracker(PriceCatalog.from_file(CATALOG)).report(store, T0, T0 + 60 * MIN, "team").groups
    assert groups["(no team)"].allocated_h == pytest.approx(0.5) and groups["(no team)"].unallocated_h == 0
    assert groups[UNALLOCATED].unallocated_cost == pytest.approx(2.0)  # half an hour of a $4 H100
