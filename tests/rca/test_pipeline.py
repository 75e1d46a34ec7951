"""The RCA core's parts alone: detectors behind one interface, the incident tracker's planned
pauses, the ranker interface, the order stage, and explanations an SRE can act on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factorylens.rca_service.analysis import (
    DetectionConfig,
    IncidentChange,
    KpiRankingAnalyzer,
    KpiRankingConfig,
)
from factorylens.rca_service.analysis._pauses import judge, save_windows
from factorylens.rca_service.baselines import (
    BaselineBank,
    BaselineBankConfig,
    SeasonalDetector,
    StreamingDetectorConfig,
)
from factorylens.rca_service.detection import Detector, RobustZConfig, RobustZDetector, calibrated
from factorylens.rca_service.ranking import BaroRanker, Ranker, RankingEngine, Topology, describe_signal
from factorylens.rca_service.store import SeriesStore

from .otlp_builders import T0, S, gauge, metrics_request

NS = 1_000_000_000
DAY = 86_400


def test_both_detectors_report_an_anomaly_interval_with_onset_direction_and_calibrated_score():
    rng = np.random.default_rng(1)
    t = np.arange(600) * 60 * NS
    values = 50 + rng.normal(0, 1, 600)
    values[500:] -= 20  # a drop at point 500
    robust = RobustZDetector(RobustZConfig(consecutive=2))
    robust.fit(t[:400], values[:400])
    assert robust.ready and robust.update(t[400:500], values[400:500]) is None
    anomaly = robust.update(t[500:510], values[500:510])
    assert anomaly is not None and anomaly.onset_unix_nano == t[500] and anomaly.direction == -1
    assert anomaly.score == pytest.approx(float(calibrated(anomaly.z))) and anomaly.score > 0.9999
    assert anomaly.lower < anomaly.observed < anomaly.expected or anomaly.observed < anomaly.lower
    seasonal = SeasonalDetector(StreamingDetectorConfig(probation_points=300))
    seasonal.fit(t[:400], values[:400])
    assert seasonal.ready and seasonal.update(t[400:500], values[400:500]) is None
    found = seasonal.update(t[500:510], values[500:510])
    assert found is not None and found.onset_unix_nano == t[500] and found.direction == -1
    assert 0.0 <= found.score <= 1.0 and found.method == "seasonal"
    assert isinstance(robust, Detector) and isinstance(seasonal, Detector)


def _daily(days: int, step_s: int = 600) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(0, days * DAY, step_s)
    rng = np.random.default_rng(2)
    return t, 100 + 60 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 2, t.size)


def test_the_seasonal_detector_drives_incidents_once_fitted_and_ignores_the_daily_cycle():
    """A KPI with a strong daily cycle: robust-z against the last hour would call every morning
    ramp a break; with a week of history the seasonal detector takes over, stays quiet through the
    cycle, and still opens the incident for a real step."""
    t, values = _daily(8)
    store = SeriesStore(clock=lambda: T0 / NS + float(t[-1] + 2 * DAY))
    # no cost limit: on a loaded machine the week's fit may take longer than the bank's default 2 s
    bank = BaselineBank(
        BaselineBankConfig(detector=StreamingDetectorConfig(probation_points=700), max_series_cost_s=600.0)
    )
    analyzer = KpiRankingAnalyzer(KpiRankingConfig(kpi_metrics=("latency",)), bank)
    history = [(T0 + int(ts) * NS, float(v)) for ts, v in zip(t, values, strict=True)]
    store.ingest_metrics(metrics_request([gauge("latency", history, unit="s")]))
    end = T0 + int(t[-1]) * NS
    assert analyzer.analyze(store, end) == []
    sid = store.list_series("latency")[0].id
    assert bank.detector(sid) is not None  # fitted from the stored history: the seasonal detector scores it
    later = np.arange(t[-1] + 600, t[-1] + DAY, 600)  # a normal day: the cycle alone
    normal = 100 + 60 * np.sin(2 * np.pi * later / DAY)
    changes = []
    for ts, v in zip(later, normal, strict=True):
        store.ingest_metrics(metrics_request([gauge("latency", [(T0 + int(ts) * NS, float(v))], unit="s")]))
        changes += analyzer.analyze(store, T0 + int(ts) * NS)
    assert changes == []
    assert analyzer.baseline(store, sid, end, T0 + int(later[-1]) * NS).method.startswith("seasonal")
    step = later[-1] + 600 * np.arange(1, 8)
    for ts in step:
        v = 100 + 60 * np.sin(2 * np.pi * ts / DAY) + 200
        store.ingest_metrics(metrics_request([gauge("latency", [(T0 + int(ts) * NS, float(v))], unit="s")]))
        changes += analyzer.analyze(store, T0 + int(ts) * NS)
    assert [c for c, _ in changes].count(IncidentChange.OPENED) == 1


def test_a_break_that_outlasts_its_planned_pause_opens_from_where_the_pause_ended():
    interval = 10 * NS
    ends = np.array([100, 460, 820]) * NS  # checkpoints end every 6 minutes, 20 s each
    pauses = [(ends, np.full(3, 20.0))]
    # a power cap starts 6 s into the third checkpoint: the KPI breaks at 800 s and stays broken
    short = judge(pauses, 800 * NS, 830 * NS, interval, 3, 1.5)
    assert short.held  # no longer than the checkpoint: it may be just the checkpoint
    long = judge(pauses, 800 * NS, 1200 * NS, interval, 40, 1.5)
    assert not long.held and long.onset == 820 * NS  # the fault's own onset: where the pause ended
    # still broken two scrapes after the save was reported: no longer the save, though within its length
    after = judge(pauses, 810 * NS, 840 * NS, interval, 4, 1.5)
    assert not after.held and after.onset == 820 * NS


def test_a_break_when_a_checkpoint_is_due_is_held_only_until_the_longest_save_could_end():
    interval = 10 * NS
    pauses = [(np.array([100, 460]) * NS, np.full(2, 20.0))]
    # the next save falls due at about 800 s and none is reported yet
    early = judge(pauses, 800 * NS, 820 * NS, interval, 3, 1.5)
    assert early.held and early.unreported  # the tracker may still open it: the mount was slow before
    assert not judge(pauses, 800 * NS, 840 * NS, interval, 5, 1.5).held
    off_rhythm = judge(pauses, 600 * NS, 620 * NS, interval, 3, 1.5)
    assert not off_rhythm.held  # no save is due at 600 s


def test_earlier_saves_span_once_each_with_the_scrapes_around_them():
    # two ranks report the same saves (ranks differ a little); the one still running is not earlier
    pauses = [
        (np.array([100, 460]) * NS, np.array([20.0, 22.0])),
        (np.array([100, 460, 820]) * NS, np.array([21.0, 20.0, 30.0])),
    ]
    windows = sorted(save_windows(pauses, 800 * NS, 10 * NS))
    assert windows == [(69 * NS, 110 * NS), (428 * NS, 470 * NS)]


def test_engine_and_baro_share_one_ranker_signature():
    index = pd.date_range("2026-01-01", periods=80, freq="10s", tz="UTC")
    rng = np.random.default_rng(3)
    columns = {
        ("rank:j/0", "factorylens.train.step.duration"): 1 + rng.normal(0, 0.01, 80),
        ("gpu:A", "hw.temperature"): 70 + rng.normal(0, 0.5, 80),
        ("gpu:B", "hw.temperature"): 70 + rng.normal(0, 0.5, 80),
    }
    frame = pd.DataFrame(columns, index=index)
    frame.columns = pd.MultiIndex.from_tuples(list(columns), names=["entity", "signal"])
    frame.iloc[60:, 0] += 1.0
    frame.iloc[58:, 1] += 25.0
    topology = Topology()
    topology.add_edge("rank:j/0", "gpu:A", "uses")
    kpi = [("rank:j/0", "factorylens.train.step.duration")]
    rankers: list[Ranker] = [RankingEngine(), BaroRanker()]
    for ranker in rankers:
        result = ranker.find_root_causes(frame, kpi, index[59], topology=topology)
        assert result.entities[0] == "gpu:A", ranker.name
        assert all(0 <= c.score for c in result.causes)
    assert all(0 < c.score <= 1 for c in RankingEngine().find_root_causes(frame, kpi, index[59]).causes)


def _frame(columns: dict[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    index = pd.date_range("2026-01-01", periods=len(next(iter(columns.values()))), freq="10s", tz="UTC")
    frame = pd.DataFrame(columns, index=index)
    frame.columns = pd.MultiIndex.from_tuples(list(columns), names=["entity", "signal"])
    return frame


def test_a_signal_that_cannot_slow_the_workload_or_began_late_never_outranks_one_that_can_and_came_first():
    rng = np.random.default_rng(4)
    n, t0 = 120, 89
    step = 1 + rng.normal(0, 0.01, n)
    step[90:] += 0.8
    pcie = np.zeros(n)
    pcie[88:] = 20.0  # a degraded PCIe link replaying 20 times a second: came first, can slow the job
    ecc = np.zeros(n)
    ecc[88:] = 500.0  # corrected ECC errors on another GPU: huge, cannot slow the job by itself
    free = 20e9 + rng.normal(0, 1e7, n)
    free[88:] += 5e9  # free memory rising: its harmless direction
    late = 40 + rng.normal(0, 0.5, n)
    late[100:] += 40  # a CPU that got busy 10 rows after the KPI broke
    frame = _frame(
        {
            ("rank:j/0", "factorylens.train.step.duration"): step,
            ("gpu:A", "hw.errors{error.type=pcie_replay}"): pcie,
            ("gpu:B", "hw.errors{error.type=corrected}"): ecc,
            ("gpu:C", "hw.gpu.memory.free"): free,
            ("host:h", "system.cpu.utilization{system.cpu.state=user}"): late / 100,
        }
    )
    topology = Topology()
    for entity in ("gpu:A", "gpu:B", "gpu:C", "host:h"):
        topology.add_edge("rank:j/0", entity, "uses")
    kpi = [("rank:j/0", "factorylens.train.step.duration")]
    result = RankingEngine().find_root_causes(frame, kpi, frame.index[t0], topology=topology)
    ranked = result.entities
    assert describe_signal("hw.errors{error.type=corrected}").can_slow is False
    assert ranked[0] == "gpu:A", [(c.entity, c.signal, round(c.score, 2)) for c in result.causes]
    assert "gpu:C" not in ranked  # free memory rising is not trouble
    for entity in ("gpu:B", "host:h"):
        if entity in ranked:
            assert ranked.index(entity) > 0
    by_entity = {c.entity: c for c in result.causes}
    if "gpu:B" in by_entity:
        assert "cannot slow the workload by itself" in by_entity["gpu:B"].explanation
    if "host:h" in by_entity:
        assert "began after the KPI broke" in by_entity["host:h"].explanation


def test_explanations_name_entities_for_people_with_units_and_the_score_in_words():
    store = SeriesStore()
    analyzer = KpiRankingAnalyzer(KpiRankingConfig(detection=DetectionConfig(resolve_after_s=30)))
    rank = {"service.name": "trainer", "factorylens.job.id": "llm", "factorylens.rank": 0, "host.name": "node-1"}
    rank["hw.id"] = "GPU-91078215-aaaa"
    gpu = {"hw.id": "GPU-91078215-aaaa", "gpu.index": 3}
    for i in range(120):
        broken = i >= 100
        store.ingest_metrics(
            metrics_request(
                [
                    gauge(
                        "factorylens.train.step.duration",
                        [(T0 + i * 10 * S, 2.0 + 0.01 * (i % 3) + broken * 2)],
                        unit="s",
                    )
                ],
                rank,
            )
        )
        temperature = 70.0 + (i % 2) + (25.0 if i >= 99 else 0.0)
        store.ingest_metrics(
            metrics_request(
                [gauge("hw.temperature", [(T0 + i * 10 * S, temperature)], gpu, unit="Cel")], {"host.name": "node-1"}
            )
        )
        analyzer.analyze(store, T0 + i * 10 * S)
    [incident] = analyzer.incidents()
    top = incident.causes[0]
    assert top.entity == "gpu:GPU-91078215-aaaa"
    text = top.explanation
    assert "node-1/gpu3 (GPU-91078215…)" in text and "node-1/gpu3 (GPU-91078215…)" in incident.title
    assert "from 2.01 s to 4.01 s" in text or "s to 4." in text  # the KPI with its unit
    assert "Cel" in text and "robust standard deviations" in text and "as unusual as" in text
    assert "Ranking score" in text and " of 1 " in text
    assert "(0x)" not in text and "1 times" not in text
    assert incident.title.startswith("factorylens.train.step.duration on llm rank 0 broke")


def test_the_service_analyzer_keeps_the_baseline_bank_it_is_given(tmp_path):
    """An empty bank is falsy (it has a length): ``bank or BaselineBank()`` silently dropped the
    configured one, and with it ``--max-baselines``."""
    from factorylens.rca_service.config import RcaServiceConfig
    from factorylens.rca_service.service import make_analyzer

    analyzer = make_analyzer(RcaServiceConfig(data_dir=str(tmp_path), max_baselines=7))
    assert analyzer.cost is not None and analyzer.inner.baselines.config.max_series == 7
