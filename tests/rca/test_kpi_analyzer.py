"""The KPI-driven analyzer: only a broken KPI opens an incident; onset, merge, recovery, alerts, calls."""

from __future__ import annotations

import json

import numpy as np

from factorylens.rca_service.analysis import (
    DetectionConfig,
    IncidentChange,
    IncidentState,
    KpiRankingAnalyzer,
    KpiRankingConfig,
    change_point,
)
from factorylens.rca_service.store import SeriesStore

from .otlp_builders import T0, S, gauge, logs_request, metrics_request, trace_request

STEP = "factorylens.train.step.duration"


def rank_resource(job: str, rank: int, gpu: str, host: str = "node-1") -> dict:
    return {
        "service.name": "factorylens-training",
        "factorylens.job.id": job,
        "factorylens.rank": rank,
        "host.name": host,
        "hw.id": gpu,
        "factorylens.gpu.ids": json.dumps([gpu]),
    }


class Cluster:
    """Two ranks of job ``llm`` on node-1 with their GPUs, a host CPU, and a second job on node-2."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.store = SeriesStore(clock=lambda: self.now / 1e9)
        self.analyzer = KpiRankingAnalyzer(KpiRankingConfig(detection=DetectionConfig(resolve_after_s=30)))
        self.now = T0
        self.step = {("llm", 0): 0.5, ("llm", 1): 0.5, ("other", 0): 0.3}
        self.temperature = {"GPU-a": 70.0, "GPU-b": 70.0, "GPU-x": 60.0}
        self.cpu = 0.3

    def tick(self, n: int = 1) -> list:
        changes = []
        for _ in range(n):
            self.now += 10 * S
            rng = self.rng
            for (job, rank), level in self.step.items():
                gpu = {("llm", 0): "GPU-a", ("llm", 1): "GPU-b", ("other", 0): "GPU-x"}[(job, rank)]
                host = "node-2" if job == "other" else "node-1"
                # a checkpoint every 12th interval: a regular spike that is not an incident
                value = level * (1.6 if (self.now // (10 * S)) % 12 == 0 else 1.0) + rng.normal(0, 0.005)
                self.store.ingest_metrics(
                    metrics_request([gauge(STEP, [(self.now, value)])], rank_resource(job, rank, gpu, host))
                )
            for gpu, level in self.temperature.items():
                host = "node-2" if gpu == "GPU-x" else "node-1"
                self.store.ingest_metrics(
                    metrics_request(
                        [gauge("hw.temperature", [(self.now, level + rng.normal(0, 0.3))], {"hw.id": gpu})],
                        {"host.name": host},
                    )
                )
            self.store.ingest_metrics(
                metrics_request(
                    [gauge("system.cpu.utilization", [(self.now, self.cpu + rng.normal(0, 0.01))])],
                    {"host.name": "node-1"},
                )
            )
            changes += self.analyzer.analyze(self.store, self.now)
        return changes


def test_normal_training_with_checkpoint_spikes_opens_nothing():
    cluster = Cluster(seed=1)
    assert cluster.tick(400) == []
    assert cluster.analyzer.incidents() == []


def test_a_hot_gpu_alone_is_no_incident_and_a_faster_step_neither():
    cluster = Cluster(seed=2)
    cluster.tick(60)
    cluster.temperature["GPU-a"] = 90.0
    assert cluster.tick(10) == []
    cluster.temperature["GPU-a"] = 70.0
    cluster.step[("llm", 0)] = cluster.step[("llm", 1)] = 0.3  # faster: good news
    assert cluster.tick(10) == []


def test_a_kpi_break_opens_one_ranked_incident_that_resolves_on_recovery():
    cluster = Cluster(seed=3)
    cluster.tick(300)
    onset = cluster.now + 10 * S
    cluster.temperature["GPU-a"] = 92.0
    cluster.step[("llm", 0)] = cluster.step[("llm", 1)] = 1.0
    changes = cluster.tick(6)
    opened = [i for c, i in changes if c is IncidentChange.OPENED]
    assert len(opened) == 1
    incident = cluster.analyzer.incidents()[0]
    assert onset - 10 * S <= incident.onset_unix_nano <= onset  # a checkpoint spike may be the first sign
    assert incident.opened_unix_nano - onset <= 30 * S
    top = incident.causes[0]
    assert (top.entity, top.domain, top.signal) == ("gpu:GPU-a", "gpu", "hw.temperature")
    assert "(hw.temperature) on gpu:GPU-a" in top.explanation and "llm rank 0 -> gpu:GPU-a" in top.explanation
    assert top.evidence[0].series_id and top.evidence[0].observed > 85
    assert "gpu:GPU-x" not in [c.entity for c in incident.causes[:2]]
    # both ranks' step times broke: one incident holds them
    assert len(cluster.analyzer.tracker.kpis_of(incident.id)) == 2
    assert cluster.tick(30) == [] or all(c is IncidentChange.UPDATED for c, _ in cluster.tick(0))
    cluster.temperature["GPU-a"] = 70.0
    cluster.step[("llm", 0)] = cluster.step[("llm", 1)] = 0.5
    changes = cluster.tick(8)
    assert [c for c, _ in changes if c is IncidentChange.RESOLVED] == [IncidentChange.RESOLVED]
    assert cluster.analyzer.incidents()[0].state is IncidentState.RESOLVED
    # a new break of the same KPI is a new incident
    cluster.step[("llm", 0)] = cluster.step[("llm", 1)] = 0.9
    cluster.cpu = 0.97
    changes = cluster.tick(5)
    assert [c for c, _ in changes if c is IncidentChange.OPENED] == [IncidentChange.OPENED]
    assert cluster.analyzer.incidents()[0].causes[0].entity == "host:node-1"


def test_an_unrelated_job_breaking_at_the_same_time_is_its_own_incident():
    cluster = Cluster(seed=4)
    cluster.tick(60)
    cluster.step[("llm", 0)] = cluster.step[("llm", 1)] = 0.8
    cluster.step[("other", 0)] = 0.6
    cluster.temperature["GPU-x"] = 85.0
    cluster.tick(6)
    incidents = cluster.analyzer.incidents()
    assert len(incidents) == 2
    other = next(i for i in incidents if "other rank 0" in i.title)
    assert other.causes[0].entity == "gpu:GPU-x"


def test_an_external_alert_opens_an_incident_until_it_stops_firing():
    cluster = Cluster(seed=5)
    cluster.tick(30)
    cluster.store.ingest_logs(
        logs_request(
            [{"time": cluster.now + 5 * S, "event_name": "alert", "attributes": {"alertname": "StepTimeHigh"}}],
            {"host.name": "node-1", "factorylens.job.id": "llm"},
        )
    )
    cluster.temperature["GPU-b"] = 95.0
    changes = cluster.tick(1)
    assert [c for c, _ in changes] == [IncidentChange.OPENED]
    assert "factorylens.events" in changes[0][1].title
    changes = cluster.tick(6)
    assert IncidentChange.RESOLVED in [c for c, _ in changes]


def test_server_span_latency_is_a_kpi_and_call_edges_explain_the_caller():
    store = SeriesStore(clock=lambda: (T0 + 3000 * S) / 1e9)
    analyzer = KpiRankingAnalyzer()
    rng = np.random.default_rng(6)
    trace, parent = b"t" * 16, b"p" * 8
    # a child in "payments" arrives before its parent in "checkout": the edge still forms
    store.ingest_spans(
        trace_request(
            [
                {
                    "name": "charge",
                    "start": T0,
                    "end": T0 + S // 10,
                    "trace_id": trace,
                    "span_id": b"c" * 8,
                    "parent_span_id": parent,
                }
            ],
            service="payments",
        )
    )
    store.ingest_spans(
        trace_request(
            [{"name": "pay", "start": T0, "end": T0 + S // 5, "trace_id": trace, "span_id": parent}], service="checkout"
        )
    )
    store.ingest_spans(
        trace_request(
            [{"name": "GET /", "start": T0, "end": T0 + S // 4, "kind": 3, "attributes": {"peer.service": "checkout"}}],
            service="frontend",
        )
    )
    assert not store.call_graph.edges  # the trace is still settling: its parts may yet arrive
    store.settle_spans(flush=True)
    assert {("checkout", "payments"), ("frontend", "checkout")} <= set(store.call_graph.edges)
    for i in range(1, 200):
        slow = i >= 180
        spans = {"checkout": 0.2 + (0.5 if slow else 0), "payments": 0.1 + (0.5 if slow else 0)}
        for service, seconds in spans.items():
            start = T0 + i * 10 * S
            store.ingest_spans(
                trace_request(
                    [
                        {"name": "op", "start": start, "end": start + int((seconds + rng.normal(0, 0.005)) * S)}
                        for _ in range(5)
                    ],
                    service=service,
                )
            )
        analyzer.analyze(store, T0 + i * 10 * S + 5 * S)
    incident = analyzer.incidents()[0]
    assert incident.causes[0].entity == "service:payments"
    assert "service:checkout" in [c.entity for c in incident.causes[1:]] or len(incident.causes) == 1
    assert "checkout -> service:payments" in incident.causes[0].explanation


def test_change_point_finds_the_level_shift():
    values = np.r_[np.full(20, 1.0), np.full(5, 3.0)] + np.random.default_rng(0).normal(0, 0.05, 25)
    assert change_point(values) == 20
    assert change_point(np.array([1.0])) == 0


def test_a_fault_that_starts_with_a_checkpoint_is_not_taken_for_the_checkpoint():
    """A checkpoint explains a break as long as itself: a KPI that stays broken after the checkpoint
    ended (a fault that began with it) opens an incident while it lasts, not only once it recovers."""
    cluster = Cluster(seed=5)

    def checkpoint(seconds: float) -> None:
        cluster.store.ingest_metrics(
            metrics_request(
                [gauge("factorylens.checkpoint.duration", [(cluster.now, seconds)])],
                rank_resource("llm", 0, "GPU-a"),
            )
        )

    for _ in range(25):  # a checkpoint of 8 s every 120 s, reported when it is done
        cluster.tick(12)
        checkpoint(8.0)
    assert cluster.analyzer.incidents() == []
    cluster.step[("llm", 0)] = cluster.step[("llm", 1)] = 1.2  # the fault begins with the next checkpoint
    cluster.temperature["GPU-a"] = 95.0
    cluster.tick(1)
    checkpoint(8.0)
    changes = cluster.tick(8)
    assert [c for c, _ in changes if c is IncidentChange.OPENED] == [IncidentChange.OPENED]


def test_slow_steps_before_the_break_do_not_pull_its_change_point_back_to_them():
    """Two scrapes of a checkpoint's slow steps open the window searched: plain CUSUM splits right after
    them; capped at the level the KPI broke to, the split is where the step time rose for good."""
    noise = np.random.default_rng(0).normal(0, 0.005, 14)
    values = np.r_[np.full(2, 1.5), np.full(8, 0.5), np.full(4, 0.7)] + noise
    assert change_point(values) == 2
    assert change_point(values, broken_at=10, direction=1) == 10
    throughput = -values  # a KPI that breaks by falling
    assert change_point(throughput, broken_at=10, direction=-1) == 10
    assert change_point(values, broken_at=10, direction=-1) == 2  # not its bad direction: nothing capped
