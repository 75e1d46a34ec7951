"""Scale-out on an existing engine (issue 15, item 6; docs/scaling.md): two RCA replicas, each fed the
share of the fleet's traffic that the otelcol-contrib gateway's ``load_balancing`` exporter would send
it, open the same incidents as one replica fed everything.

The fleet is two scenario runs side by side in one simulated clock: job A (``llm-pretrain-7b``) on
``sim-node-0/1`` with a cooling failure on one of its GPUs, and job B (``llm-finetune-7b``, the second
run renamed onto ``sim-node-2/3``) whose host swaps under memory pressure, plus each run's inference
services, notebooks and batch neighbours: ten jobs on four hosts. Every request goes through what
the node agent does before the gateway (``enrich_metrics`` stamping each GPU's series with the job of
the process on it; :class:`HostFanOut` sending each host's job-less series once per job on the host)
and is then split the way ``load_balancing`` (routing_key ``attributes``, ``routing_attributes:
[factorylens.job.id]``, otelcol-contrib 0.159) splits it: by the attribute on the resource, else on
the scope, else on each data point, a missing one hashing like any other value, over a consistent
hash ring of two endpoints built as the exporter builds it. (No ``groupbyattrs`` in front: the
exporter reads point attributes itself, so routing is the same, and it would fold the fan-out's
per-job copies of a host into one scope.)

The replicas are the service's default analyzer over its store, fed in simulated time. They start
analysing at ``ANALYSIS_FROM_S`` (their first pass warm-starts every baseline from the stored
history, as after a restart), which keeps the test under a minute; single and sharded runs follow
the same schedule.
"""

from __future__ import annotations

import bisect
import functools
import logging
import re
import zlib
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from factorylens.processors import EnrichConfig, GpuJobIndex, HostFanOut, enrich_metrics
from factorylens.rca_service.analysis import KpiRankingAnalyzer
from factorylens.rca_service.store import SeriesStore
from factorylens.simulation import TRAINING_JOB, ScenarioRun, ingest

NS = 1_000_000_000
JOB = "factorylens.job.id"
# a StatefulSet's stable pod names, as a static resolver lists them; on this ring job A and the
# missing-job key share a replica and job B has the other, so B depends on how host series travel
REPLICAS = ("rca-0.rca:4317", "rca-1.rca:4317")
JOB_A, JOB_B = TRAINING_JOB, "llm-finetune-7b"
FAULT_A = ("gpu_thermal_throttle", 0, 300.0)  # catalog name, seed, onset (simulated s)
FAULT_B = ("host_memory_pressure", 1, 330.0)
DURATION_S = 400.0
ANALYSIS_FROM_S = 300.0
HOSTS_B = {"sim-node-0": "sim-node-2", "sim-node-1": "sim-node-3"}


# ---- the gateway: load_balancing over a consistent hash ring ----------------------------------------


class HashRing:
    """The exporter's ring (``exporter/loadbalancingexporter/consistent_hashing.go``): 100 positions per
    endpoint at crc32(endpoint + one byte i) mod 36000, a taken position keeps its first endpoint; a key
    goes to the first position at or after crc32(key) mod 36000, wrapping around."""

    POSITIONS = 36_000
    WEIGHT = 100

    def __init__(self, endpoints: tuple[str, ...]) -> None:
        taken: dict[int, int] = {}
        for index, endpoint in enumerate(endpoints):
            for i in range(self.WEIGHT):
                taken.setdefault(zlib.crc32(endpoint.encode() + bytes([i])) % self.POSITIONS, index)
        self.size = len(endpoints)
        self._items = sorted(taken.items())
        self._positions = [position for position, _ in self._items]

    def replica(self, job: str | None) -> int:
        """The replica of a routing key built from ``factorylens.job.id`` (None: the attribute is missing)."""
        key = f"{JOB}={job}|" if job is not None else f"{JOB}|missing"
        i = bisect.bisect_left(self._positions, zlib.crc32(key.encode()) % self.POSITIONS)
        return self._items[i % len(self._items)][1]


def _value(attributes: Any, key: str) -> str | None:
    return next((kv.value.string_value for kv in attributes if kv.key == key), None)


def route(request: ExportMetricsServiceRequest, ring: HashRing) -> list[ExportMetricsServiceRequest]:
    """One request per replica, split as ``load_balancing``'s ``splitMetricsByAttributes`` splits it: a
    resource (or scope) carrying the job goes whole; otherwise each data point goes by its own job."""
    split = [ExportMetricsServiceRequest() for _ in range(ring.size)]
    for rm in request.resource_metrics:
        job = _value(rm.resource.attributes, JOB)
        if job is not None:
            split[ring.replica(job)].resource_metrics.add().CopyFrom(rm)
            continue
        for sm in rm.scope_metrics:
            job = _value(sm.scope.attributes, JOB)
            if job is not None:
                out = split[ring.replica(job)].resource_metrics.add()
                out.resource.CopyFrom(rm.resource)
                out.scope_metrics.add().CopyFrom(sm)
                continue
            scopes: dict[int, Any] = {}
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                by_replica: dict[int, list[Any]] = {}
                for point in getattr(metric, kind).data_points:
                    by_replica.setdefault(ring.replica(_value(point.attributes, JOB)), []).append(point)
                for replica, points in by_replica.items():
                    if replica not in scopes:
                        out = split[replica].resource_metrics.add()
                        out.resource.CopyFrom(rm.resource)
                        scopes[replica] = out.scope_metrics.add()
                        scopes[replica].scope.CopyFrom(sm.scope)
                    copy = scopes[replica].metrics.add()
                    copy.name, copy.description, copy.unit = metric.name, metric.description, metric.unit
                    data = getattr(copy, kind)
                    data.SetInParent()
                    if kind in ("sum", "histogram", "exponential_histogram"):
                        data.aggregation_temporality = getattr(metric, kind).aggregation_temporality
                    if kind == "sum":
                        data.is_monotonic = metric.sum.is_monotonic
                    data.data_points.extend(points)
    return split


# ---- the fleet --------------------------------------------------------------------------------------

_RENAMED = re.compile(r"\b(sim-node|chat-serve|notebook|embed-batch)-(\d+)\b")


def _to_fleet_b(text: str) -> str:
    """Run B's names in the fleet: hosts and per-host jobs shifted by two, the training job renamed."""
    return _RENAMED.sub(lambda m: f"{m[1]}-{int(m[2]) + 2}", text).replace(TRAINING_JOB, JOB_B)


def _rename_value(value: Any) -> None:
    which = value.WhichOneof("value")
    if which == "string_value":
        value.string_value = _to_fleet_b(value.string_value)
    elif which == "array_value":
        for item in value.array_value.values:
            _rename_value(item)
    elif which == "kvlist_value":
        for kv in value.kvlist_value.values:
            _rename_value(kv.value)


def _rename(request: ExportMetricsServiceRequest) -> ExportMetricsServiceRequest:
    for rm in request.resource_metrics:
        for kv in rm.resource.attributes:
            _rename_value(kv.value)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                for point in getattr(metric, kind).data_points if kind else ():
                    for kv in point.attributes:
                        _rename_value(kv.value)
    return request


@dataclass
class Fleet:
    run_a: ScenarioRun
    run_b: ScenarioRun
    ticks: list[tuple[int, list[ExportMetricsServiceRequest]]]  # the agents' output, enriched
    fan_out: HostFanOut  # after the run: the jobs it saw on each host


def _copy(request: Any) -> ExportMetricsServiceRequest:
    """A request we may change: the run keeps an encoding it yields as the template of later ticks."""
    assert isinstance(request, ExportMetricsServiceRequest)  # no log requests in these runs
    copy = ExportMetricsServiceRequest()
    copy.CopyFrom(request)
    return copy


@functools.cache
def fleet() -> Fleet:
    logging.getLogger("factorylens.receivers").setLevel(logging.ERROR)
    runs = [
        ScenarioRun(fault, seed=seed, hosts=2, gpus_per_host=4, onset_s=onset, duration_s=DURATION_S)
        for fault, seed, onset in (FAULT_A, FAULT_B)
    ]
    enrich, index = EnrichConfig(gpu_jobs_from_processes=True), GpuJobIndex()
    ticks = []
    for (ts, requests_a), (ts_b, requests_b) in zip(runs[0], runs[1], strict=True):
        assert ts == ts_b
        requests = [_copy(r) for r in requests_a] + [_rename(_copy(r)) for r in requests_b]
        for request in requests:
            enrich_metrics(request, enrich, index)
        ticks.append((ts, requests))
    return Fleet(runs[0], runs[1], ticks, HostFanOut())


RING = HashRing(REPLICAS)


@functools.cache
def shares(fan_out: bool) -> list[list[tuple[int, list[ExportMetricsServiceRequest]]]]:
    """Each replica's traffic, tick by tick, with or without the host fan-out."""
    fleet_ = fleet()
    replicas: list[list[tuple[int, list[ExportMetricsServiceRequest]]]] = [[] for _ in REPLICAS]
    for ts, requests in fleet_.ticks:
        routed: list[list[ExportMetricsServiceRequest]] = [[] for _ in REPLICAS]
        for request in requests:
            if fan_out:
                copy = ExportMetricsServiceRequest()
                copy.CopyFrom(request)
                fleet_.fan_out.metrics(copy)
                request = copy
            for replica, share in enumerate(route(request, RING)):
                if share.resource_metrics:
                    routed[replica].append(share)
        for replica, requests_of_replica in enumerate(routed):
            replicas[replica].append((ts, requests_of_replica))
    return replicas


# ---- the replicas -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """What an operator reads off an incident: the KPI that broke and where, when, and the first cause."""

    kpi_entity: str
    kpi: str
    onset_s: float
    opened_s: float
    cause_entity: str
    cause: str
    score: float


@dataclass
class Replica:
    store: SeriesStore
    findings: tuple[Finding, ...]


def replay(
    feed: list[tuple[int, list[ExportMetricsServiceRequest]]], epoch_ns: int, *, analyze: bool = True
) -> Replica:
    """A replica fed ``feed`` in simulated time: its store, and its findings when it analyses."""
    now = [epoch_ns / NS]
    store = SeriesStore(clock=lambda: now[0])
    analyzer = KpiRankingAnalyzer()
    start = epoch_ns + int(ANALYSIS_FROM_S * NS)
    for ts, requests in feed:
        now[0] = ts / NS
        ingest(store, requests)
        if analyze and ts >= start:
            analyzer.analyze(store, ts)
    findings = []
    for incident in analyzer.incidents():
        kpi = store.series[incident.kpi_series_id].info
        top = incident.causes[0] if incident.causes else None
        findings.append(
            Finding(
                kpi.entity,
                kpi.label,
                (incident.onset_unix_nano - epoch_ns) / NS,
                (incident.opened_unix_nano - epoch_ns) / NS,
                top.entity if top else "",
                top.signal if top else "",
                round(top.score, 6) if top else 0.0,
            )
        )
    return Replica(store, tuple(sorted(findings, key=lambda f: (f.kpi_entity, f.onset_s))))


@functools.cache
def single() -> Replica:
    return replay(fleet().ticks, fleet().run_a.epoch_ns)


@functools.cache
def sharded(fan_out: bool, replica: int) -> Replica:
    return replay(shares(fan_out)[replica], fleet().run_a.epoch_ns)


@functools.cache
def stored(fan_out: bool | None, replica: int = 0) -> SeriesStore:
    """A replica's store alone, without analysis (cheap); ``fan_out`` None: the unsharded one."""
    feed = fleet().ticks if fan_out is None else shares(fan_out)[replica]
    return replay(feed, fleet().run_a.epoch_ns, analyze=False).store


def _points(series: Any) -> tuple[bytes, bytes]:
    """A stored series' points as the store reads them back (one per time: copies collapse)."""
    ts, values = series.raw()
    return ts.tobytes(), values.tobytes()


def _job_of(finding: Finding) -> str:
    return finding.kpi_entity.removeprefix("rank:").rsplit("/", 1)[0]


# ---- tests ------------------------------------------------------------------------------------------


# the fleet's tests share one generated fleet and its replays: about 35 s together on two cores
@pytest.mark.slow
def test_the_gateway_keeps_each_job_on_one_replica_and_loses_no_point():
    f = fleet()
    assert RING.replica(JOB_A) == RING.replica(None) != RING.replica(JOB_B), "the layout this test is about"
    for fan_out in (False, True):
        stores = [stored(fan_out, r) for r in range(len(REPLICAS))]
        for replica, store in enumerate(stores):
            jobs = {s.info.resource.get(JOB) or s.info.attributes.get(JOB) for s in store.series.values()}
            assert all(RING.replica(job) == replica for job in jobs - {None}), (fan_out, replica, jobs)
        # every series of the unsharded store is on some replica, with the same points; none is invented
        everything = {sid: _points(s) for sid, s in stored(None).series.items()}
        found = {sid: _points(s) for store in stores for sid, s in store.series.items()}
        assert found == everything
        for store in stores:
            assert all(_points(s) == everything[sid] for sid, s in store.series.items())
    assert f.fan_out.jobs_on("sim-node-2") == ("chat-serve-2", "embed-batch-2", JOB_B)
    # without the fan-out, job B's replica has none of its hosts' own series; with it, it has all of them
    hosts_b = {f"host:{h}" for h in HOSTS_B.values()}
    naive_b = {s.info.entity for s in stored(False, RING.replica(JOB_B)).series.values()}
    fanned_b = {s.info.entity for s in stored(True, RING.replica(JOB_B)).series.values()}
    assert not naive_b & hosts_b and hosts_b <= fanned_b


@pytest.mark.slow
def test_two_replicas_open_the_same_incidents_as_one():
    f = fleet()
    one = single().findings
    two = tuple(
        sorted(
            (x for r in range(len(REPLICAS)) for x in sharded(True, r).findings),
            key=lambda x: (x.kpi_entity, x.onset_s),
        )
    )
    by_job = {_job_of(x): x for x in one}
    assert set(by_job) == {JOB_A, JOB_B}, one
    assert f.run_a.truth is not None and f.run_a.truth.matches(by_job[JOB_A].cause_entity)
    assert f.run_b.truth is not None and _to_fleet_b(f.run_b.truth.entity) == by_job[JOB_B].cause_entity
    assert two == one
    for finding in one:  # each incident opens on the replica that holds its job
        assert finding in sharded(True, RING.replica(_job_of(finding))).findings


@pytest.mark.slow
def test_without_the_fan_out_job_b_loses_its_host_cause():
    """The measurement behind the fan-out: routed as they come, a host's series all hash to the
    missing-job replica, and job B's replica blames something else for B's broken step time."""
    f = fleet()
    assert f.run_b.truth is not None
    naive = [x for x in sharded(False, RING.replica(JOB_B)).findings if _job_of(x) == JOB_B]
    assert [x.kpi_entity for x in naive] == [f"rank:{JOB_B}/0"]  # the same KPI breaks...
    assert naive[0].cause_entity != _to_fleet_b(f.run_b.truth.entity)  # ...and the host is not named
    assert not naive[0].cause_entity.startswith("host:")


# ---- the fan-out on its own (fast) ------------------------------------------------------------------


def _point(metric: Any, ts: int, value: float, **attributes: str) -> None:
    point = metric.gauge.data_points.add(time_unix_nano=ts, as_double=value)
    for key, text in attributes.items():
        point.attributes.add(key=key.replace("_", "."), value=AnyValue(string_value=text))


def _node_export(ts: int, jobs: dict[str, str]) -> ExportMetricsServiceRequest:
    """One node agent's export: GPUs (``jobs``: hw.id → job, "" for an idle GPU) and the host's CPU."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="host.name", value=AnyValue(string_value="node-1"))
    metrics = rm.scope_metrics.add()
    metrics.scope.name = "factorylens.receivers.gpu"
    utilization, process, cpu = (
        metrics.metrics.add(name=n) for n in ("hw.gpu.utilization", "process.gpu.utilization", "system.cpu.utilization")
    )
    for n, (gpu, job) in enumerate(sorted(jobs.items())):
        if job:
            _point(utilization, ts, 0.9, hw_id=gpu, factorylens_job_id=job)
            _point(process, ts, 0.9, hw_id=gpu, factorylens_job_id=job)
        else:
            _point(utilization, ts, 0.0, hw_id=gpu)
        _point(cpu, ts, 0.1 * n, cpu=str(n))
    return request


def _series_points(request: ExportMetricsServiceRequest) -> dict[str, tuple[str, str, bytes, bytes]]:
    store = SeriesStore(clock=lambda: 1_700_000_100.0)
    store.ingest_metrics(request)
    return {sid: (s.info.entity, s.info.label, *_points(s)) for sid, s in store.series.items()}


def test_the_fan_out_copies_a_hosts_jobless_series_once_per_job_and_the_store_cannot_tell():
    ts = 1_700_000_000 * NS
    original = _node_export(ts, {"GPU-1": "train", "GPU-2": "serve", "GPU-3": ""})
    fanned = ExportMetricsServiceRequest()
    fanned.CopyFrom(original)
    fan_out = HostFanOut()
    stats = fan_out.metrics(fanned)

    assert fan_out.jobs_on("node-1") == ("serve", "train")
    assert (stats.copies, stats.points_copied, stats.points_unrouted) == (2, 2 * 4, 0)  # idle GPU + 3 CPUs
    kept, *copies = fanned.resource_metrics
    assert all(_value(p.attributes, JOB) for m in kept.scope_metrics[0].metrics for p in m.gauge.data_points)
    scopes = [{kv.key: kv.value for kv in c.scope_metrics[0].scope.attributes} for c in copies]
    assert [s[JOB].string_value for s in scopes] == ["serve", "train"]
    assert [s.get("factorylens.route.primary", AnyValue()).bool_value for s in scopes] == [True, False]
    assert all(c.scope_metrics[0].scope.name == "factorylens.receivers.gpu" for c in copies)
    # routed by job, and stored as exactly the series the unsplit export makes (scope attributes are
    # not part of a series; each copy is the same points again)
    assert {RING.replica(s[JOB].string_value) for s in scopes} == {RING.replica("serve"), RING.replica("train")}
    assert _series_points(fanned) == _series_points(original)
    assert {e for e, *_ in _series_points(fanned).values()} == {"gpu:GPU-1", "gpu:GPU-2", "gpu:GPU-3", "host:node-1"}


def test_the_fan_out_leaves_jobs_and_jobless_hosts_alone_and_forgets_departed_jobs():
    ts = 1_700_000_000 * NS
    fan_out = HostFanOut(forget_after_s=300)
    idle = _node_export(ts, {"GPU-1": ""})
    before = idle.SerializeToString()
    assert fan_out.metrics(idle).points_unrouted == 2 and idle.SerializeToString() == before
    rank = ExportMetricsServiceRequest()
    rm = rank.resource_metrics.add()
    for key, text in (("host.name", "node-1"), (JOB, "train")):
        rm.resource.attributes.add(key=key, value=AnyValue(string_value=text))
    _point(rm.scope_metrics.add().metrics.add(name="factorylens.train.step.duration"), ts, 1.9)
    before = rank.SerializeToString()
    assert fan_out.metrics(rank).copies == 0 and rank.SerializeToString() == before  # a job's own resource
    assert fan_out.jobs_on("node-1") == ("train",)  # ...which also says the job runs on that host
    fan_out.metrics(_node_export(ts + 200 * NS, {"GPU-1": "serve"}))
    assert fan_out.jobs_on("node-1") == ("serve", "train")
    later = _node_export(ts + 400 * NS, {"GPU-1": "serve"})
    assert fan_out.metrics(later).copies == 1 and fan_out.jobs_on("node-1") == ("serve",)
