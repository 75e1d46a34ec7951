"""The analysis pipeline behind the API: detection, incident lifecycle, evidence, baselines."""

from __future__ import annotations

import numpy as np
import pytest

from factorylens.rca_service.analysis import (
    DetectionConfig,
    IncidentChange,
    IncidentState,
    KpiRankingAnalyzer,
    KpiRankingConfig,
)
from factorylens.rca_service.store import SeriesStore

from .otlp_builders import T0, S, gauge, metrics_request, trace_request


def feed(store: SeriesStore, metric: str, points, attributes=None) -> None:
    store.ingest_metrics(metrics_request([gauge(metric, points, attributes or {})]))


def analyzer_for(*kpis: str, resolve_after_s: float = 120.0) -> KpiRankingAnalyzer:
    return KpiRankingAnalyzer(
        KpiRankingConfig(kpi_metrics=kpis or ("*",), detection=DetectionConfig(resolve_after_s=resolve_after_s))
    )


def test_steady_noise_opens_nothing_and_calibrated_scores_stay_low():
    store, analyzer = SeriesStore(), analyzer_for()
    rng = np.random.default_rng(3)
    feed(store, "hw.power", [(T0 + i * S, 300.0 + rng.normal(0, 5)) for i in range(300)], {"hw.id": "GPU-1"})
    assert analyzer.analyze(store, T0) == []
    feed(store, "hw.power", [(T0 + i * S, 300.0 + rng.normal(0, 5)) for i in range(300, 330)], {"hw.id": "GPU-1"})
    assert analyzer.analyze(store, T0 + 330 * S) == []
    scores = analyzer.anomaly_scores()
    assert scores and max(scores.values()) < 0.9999  # within 4 robust deviations: no alarm


def test_a_kpi_break_opens_an_incident_with_its_cause_and_resolves_on_recovery():
    store = SeriesStore()
    analyzer = analyzer_for("step", resolve_after_s=5)
    feed(store, "step", [(T0 + i * S, 1.0 + 0.01 * (i % 3)) for i in range(100)])
    feed(store, "hw.temperature", [(T0 + i * S, 70.0 + (i % 3)) for i in range(100)], {"hw.id": "GPU-7"})
    analyzer.analyze(store, T0 + 100 * S)
    feed(store, "hw.temperature", [(T0 + (100 + i) * S, 95.0) for i in range(6)], {"hw.id": "GPU-7"})
    feed(store, "step", [(T0 + (101 + i) * S, 2.0) for i in range(5)])
    changes = analyzer.analyze(store, T0 + 106 * S)
    assert [c for c, _ in changes] == [IncidentChange.OPENED]
    incident = changes[0][1]
    assert incident.onset_unix_nano == T0 + 101 * S  # the first point beyond the band
    assert incident.causes[0].entity == "gpu:GPU-7" and 0 < incident.causes[0].score <= 1
    assert incident.title.startswith("step on service:test broke: likely hw.temperature on gpu:GPU-7")
    feed(store, "step", [(T0 + (106 + i) * S, 1.0) for i in range(10)])
    feed(store, "hw.temperature", [(T0 + (106 + i) * S, 70.0) for i in range(10)], {"hw.id": "GPU-7"})
    changes = analyzer.analyze(store, T0 + 116 * S)
    assert [c for c, _ in changes] == [IncidentChange.RESOLVED]
    resolved = changes[0][1]
    assert resolved.id == incident.id and incident.state is IncidentState.OPEN  # callers hold copies
    assert resolved.state is IncidentState.RESOLVED and resolved.resolved_unix_nano == T0 + 116 * S


def test_our_own_health_series_are_not_analyzed():
    store, analyzer = SeriesStore(), analyzer_for()
    feed(store, "factorylens.rca.queue.depth", [(T0 + i * S, 0.0) for i in range(100)])
    analyzer.analyze(store, T0 + 100 * S)
    feed(store, "factorylens.rca.queue.depth", [(T0 + (100 + i) * S, 50.0) for i in range(5)])
    assert analyzer.analyze(store, T0 + 105 * S) == [] and analyzer.anomaly_scores() == {}


def test_span_latency_cause_points_to_example_traces():
    store = SeriesStore()
    analyzer = KpiRankingAnalyzer(KpiRankingConfig(kpi_metrics=("step.duration",), server_spans_are_kpis=False))

    def spans(first: int, count: int, ms: int, trace: bytes | None = None):
        return [
            {
                "name": "all_reduce",
                "start": T0 + (first + i) * 10 * S,
                "end": T0 + (first + i) * 10 * S + ms * 1_000_000,
                **({"trace_id": trace} if trace else {}),
            }
            for i in range(count)
        ]

    feed(store, "step.duration", [(T0 + i * 10 * S, 1.0 + 0.01 * (i % 3)) for i in range(60)])
    store.ingest_spans(trace_request(spans(0, 60, 20), "trainer"))
    analyzer.analyze(store, T0 + 600 * S)
    slow = b"\x01" * 16
    store.ingest_spans(trace_request(spans(60, 4, 900, slow), "trainer"))
    feed(store, "step.duration", [(T0 + (60 + i) * 10 * S, 2.0) for i in range(4)])
    changes = analyzer.analyze(store, T0 + 640 * S)
    assert changes
    # the operation's own time is the cause (its whole duration is an outcome: callees included)
    duration = next(c for c in changes[0][1].causes if c.signal.startswith("factorylens.span.self_duration"))
    assert duration.entity == "service:trainer"
    assert duration.evidence[0].trace_ids[0] == slow.hex()


def test_baseline_bands_follow_the_history():
    store, analyzer = SeriesStore(), analyzer_for()
    feed(store, "util", [(T0 + i * S, 0.5 + 0.01 * (i % 5)) for i in range(200)])
    sid = store.list_series("util")[0].id
    baseline = analyzer.baseline(store, sid, T0 + 100 * S, T0 + 199 * S)
    assert baseline.method == "robust-z" and len(baseline.time_unix_nano) == 100
    assert np.all(baseline.lower < baseline.observed) and np.all(baseline.observed < baseline.upper)
    assert np.allclose(baseline.expected, 0.52, atol=0.011)
    assert np.all((baseline.score >= 0) & (baseline.score < 0.9999))


def test_an_incident_stays_open_while_any_of_its_kpis_is_broken():
    store = SeriesStore()
    analyzer = analyzer_for("a", "b", resolve_after_s=5)
    for name in ("a", "b"):
        feed(store, name, [(T0 + i * S, 10.0 + i % 3) for i in range(100)])
    analyzer.analyze(store, T0 + 100 * S)
    feed(store, "a", [(T0 + (100 + i) * S, 90.0) for i in range(4)])  # strong, then recovers
    feed(store, "b", [(T0 + (100 + i) * S, 30.0) for i in range(4)])  # weaker, stays
    opened = analyzer.analyze(store, T0 + 104 * S)
    assert [c for c, _ in opened] == [IncidentChange.OPENED]
    feed(store, "a", [(T0 + (104 + i) * S, 11.0) for i in range(20)])
    feed(store, "b", [(T0 + (104 + i) * S, 30.0) for i in range(20)])
    changes = analyzer.analyze(store, T0 + 124 * S)
    assert all(c is IncidentChange.UPDATED for c, _ in changes)  # never resolved, never a second incident
    assert [i.state for i in analyzer.incidents()] == [IncidentState.OPEN]


def test_a_future_dated_point_does_not_blind_the_series_and_vanished_series_end_their_anomalies():
    store = SeriesStore()
    analyzer = analyzer_for("temp", resolve_after_s=5)
    feed(store, "temp", [(T0 + i * S, 70.0 + i % 2) for i in range(100)], {"hw.id": "GPU-1"})
    feed(store, "temp", [(T0 + 86_400 * S, 70.0)], {"hw.id": "GPU-1"})  # a clock a day ahead
    analyzer.analyze(store, T0 + 100 * S)
    feed(store, "temp", [(T0 + (100 + i) * S, 95.0) for i in range(5)], {"hw.id": "GPU-1"})
    opened = analyzer.analyze(store, T0 + 105 * S)
    assert [c for c, _ in opened] == [IncidentChange.OPENED]
    store.series.clear()  # retention forgot the series
    resolved = analyzer.analyze(store, T0 + 200 * S)
    assert [c for c, _ in resolved] == [IncidentChange.RESOLVED]


def test_series_of_one_signal_on_one_entity_are_one_cause():
    store, analyzer = SeriesStore(), analyzer_for("step")
    feed(store, "step", [(T0 + i * S, 1.0 + 0.01 * (i % 3)) for i in range(100)])
    for cpu in range(8):
        feed(
            store,
            "system.cpu.utilization",
            [(T0 + i * S, 0.5 + 0.01 * (i % 3)) for i in range(100)],
            {"cpu": cpu, "state": "user"},
        )
    analyzer.analyze(store, T0 + 100 * S)
    for cpu in range(8):
        feed(
            store,
            "system.cpu.utilization",
            [(T0 + (100 + i) * S, 0.9 + cpu * 0.01) for i in range(4)],
            {"cpu": cpu, "state": "user"},
        )
    feed(store, "step", [(T0 + (100 + i) * S, 2.0) for i in range(4)])
    [(_, incident)] = analyzer.analyze(store, T0 + 104 * S)
    [cause] = [c for c in incident.causes if c.signal.startswith("system.cpu.utilization")]
    assert cause.entity == "service:test"
    assert cause.evidence[0].observed == pytest.approx(0.97)  # the strongest of the eight
    assert "cpu=7" in cause.signal
