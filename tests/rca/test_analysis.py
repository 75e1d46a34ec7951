"""The robust z-score analyzer behind the API: detection, incident lifecycle, evidence."""

from __future__ import annotations

import numpy as np
import pytest

from factorylens.rca_service.analysis import IncidentChange, IncidentState, RobustZScoreAnalyzer, RobustZScoreConfig
from factorylens.rca_service.store import SeriesStore

from .otlp_builders import T0, S, gauge, metrics_request, trace_request


def feed(store: SeriesStore, metric: str, points, attributes=None) -> None:
    store.ingest_metrics(metrics_request([gauge(metric, points, attributes or {})]))


def test_steady_noise_opens_nothing_and_scores_stay_low():
    store, analyzer = SeriesStore(), RobustZScoreAnalyzer()
    rng = np.random.default_rng(3)
    feed(store, "hw.power", [(T0 + i * S, 300.0 + rng.normal(0, 5)) for i in range(300)], {"hw.id": "GPU-1"})
    assert analyzer.analyze(store, T0) == []
    feed(store, "hw.power", [(T0 + i * S, 300.0 + rng.normal(0, 5)) for i in range(300, 330)], {"hw.id": "GPU-1"})
    assert analyzer.analyze(store, T0 + 330 * S) == []
    assert max(analyzer.anomaly_scores().values()) < 0.5


def test_incident_opens_on_a_sustained_break_and_resolves_on_recovery():
    store = SeriesStore()
    analyzer = RobustZScoreAnalyzer(RobustZScoreConfig(resolve_after_s=5))
    history = [(T0 + i * S, 70.0 + (i % 3)) for i in range(100)]
    feed(store, "hw.temperature", history, {"hw.id": "GPU-7"})
    analyzer.analyze(store, T0 + 100 * S)
    feed(
        store, "hw.temperature", [(T0 + (100 + i) * S, 71.0 if i == 0 else 90.0) for i in range(5)], {"hw.id": "GPU-7"}
    )
    changes = analyzer.analyze(store, T0 + 105 * S)
    assert [c for c, _ in changes] == [IncidentChange.OPENED]
    incident = changes[0][1]
    assert incident.causes[0].onset_unix_nano == T0 + 101 * S  # the first point beyond the band
    assert incident.title == "hw.temperature anomaly on gpu:GPU-7"
    feed(store, "hw.temperature", [(T0 + (105 + i) * S, 71.0) for i in range(10)], {"hw.id": "GPU-7"})
    changes = analyzer.analyze(store, T0 + 115 * S)
    assert [c for c, _ in changes] == [IncidentChange.RESOLVED]
    resolved = changes[0][1]
    assert resolved.id == incident.id and incident.state is IncidentState.OPEN  # callers hold copies
    assert resolved.state is IncidentState.RESOLVED and resolved.resolved_unix_nano == T0 + 115 * S


def test_our_own_health_series_are_not_analyzed():
    store, analyzer = SeriesStore(), RobustZScoreAnalyzer()
    feed(store, "factorylens.rca.queue.depth", [(T0 + i * S, 0.0) for i in range(100)])
    analyzer.analyze(store, T0 + 100 * S)
    feed(store, "factorylens.rca.queue.depth", [(T0 + (100 + i) * S, 50.0) for i in range(5)])
    assert analyzer.analyze(store, T0 + 105 * S) == [] and analyzer.anomaly_scores() == {}


def test_span_latency_cause_points_to_example_traces():
    store, analyzer = SeriesStore(), RobustZScoreAnalyzer()

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

    store.ingest_spans(trace_request(spans(0, 60, 20 + 0), "trainer"))
    analyzer.analyze(store, T0 + 600 * S)
    slow = b"\x01" * 16
    store.ingest_spans(trace_request(spans(60, 3, 900, slow), "trainer"))
    changes = analyzer.analyze(store, T0 + 640 * S)
    assert changes
    causes = changes[0][1].causes
    duration = next(c for c in causes if c.signal == "factorylens.span.duration")
    assert duration.entity == "service:trainer"
    assert duration.evidence[0].trace_ids[0] == slow.hex()


def test_baseline_bands_follow_the_history():
    store, analyzer = SeriesStore(), RobustZScoreAnalyzer()
    feed(store, "util", [(T0 + i * S, 0.5 + 0.01 * (i % 5)) for i in range(200)])
    sid = store.list_series("util")[0].id
    baseline = analyzer.baseline(store, sid, T0 + 100 * S, T0 + 199 * S)
    assert len(baseline.time_unix_nano) == 100
    assert np.all(baseline.lower < baseline.observed) and np.all(baseline.observed < baseline.upper)
    assert np.allclose(baseline.expected, 0.52, atol=0.011)


def test_an_incident_stays_open_while_any_member_is_anomalous_even_beyond_max_causes():
    store = SeriesStore()
    analyzer = RobustZScoreAnalyzer(RobustZScoreConfig(max_causes=1, resolve_after_s=5))
    for name in ("a", "b"):
        feed(store, name, [(T0 + i * S, 10.0 + i % 3) for i in range(100)])
    analyzer.analyze(store, T0 + 100 * S)
    feed(store, "a", [(T0 + (100 + i) * S, 90.0) for i in range(3)])  # strong, then recovers
    feed(store, "b", [(T0 + (100 + i) * S, 30.0) for i in range(3)])  # weaker, stays
    opened = analyzer.analyze(store, T0 + 103 * S)
    assert [c for c, _ in opened] == [IncidentChange.OPENED] and len(opened[0][1].causes) == 1
    feed(store, "a", [(T0 + (103 + i) * S, 11.0) for i in range(20)])
    feed(store, "b", [(T0 + (103 + i) * S, 30.0) for i in range(20)])
    changes = analyzer.analyze(store, T0 + 123 * S)
    assert all(c is IncidentChange.UPDATED for c, _ in changes)  # never resolved, never a second incident
    assert [i.state for i in analyzer.incidents()] == [IncidentState.OPEN]


def test_a_future_dated_point_does_not_blind_the_series_and_vanished_series_end_their_anomalies():
    store = SeriesStore()
    analyzer = RobustZScoreAnalyzer(RobustZScoreConfig(resolve_after_s=5))
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
    store, analyzer = SeriesStore(), RobustZScoreAnalyzer()
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
            [(T0 + (100 + i) * S, 0.9 + cpu * 0.01) for i in range(3)],
            {"cpu": cpu, "state": "user"},
        )
    [(_, incident)] = analyzer.analyze(store, T0 + 103 * S)
    [cause] = incident.causes
    assert cause.entity == "service:test" and cause.signal == "system.cpu.utilization"
    assert cause.evidence[0].observed == pytest.approx(0.97)  # the strongest of the eight
    assert "cpu=7" in cause.explanation
