"""The ranking engine on small planted cases: strength, explain-away, saturation, noisy neighbours,
silence, onset order, reach, explanations, and bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from factorylens.rca_service.detection import RobustZConfig, RobustZDetector, calibrated, one_in
from factorylens.rca_service.ranking import (
    RankingConfig,
    RankingEngine,
    SignalKind,
    SignalSide,
    Topology,
    describe_signal,
)

STEP = "factorylens.train.step.duration"
N, FAULT = 120, 90


def frame_of(series: dict[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    index = pd.date_range("2026-01-01", periods=N, freq="10s", tz="UTC")
    return pd.DataFrame(series, index=index)


def noisy(rng: np.random.Generator, level: float, sigma: float) -> np.ndarray:
    return level + rng.normal(0, sigma, N)


def shifted(values: np.ndarray, by: float, at: int = FAULT) -> np.ndarray:
    out = values.copy()
    out[at:] += by
    return out


def training_topology(ranks: int = 2) -> Topology:
    t = Topology()
    for r in range(ranks):
        t.add_edge("job:j", f"rank:j/{r}", "contains")
        t.add_edge(f"rank:j/{r}", f"gpu:G{r}", "uses")
        t.add_edge(f"rank:j/{r}", "host:h", "runs_on")
        t.add_edge(f"rank:j/{r}", "nic:h/ib0", "uses")
        t.add_edge(f"gpu:G{r}", "host:h", "runs_on")
    t.add_edge("job:other", "host:h", "runs_on")
    return t


def base_series(rng: np.random.Generator) -> dict[tuple[str, str], np.ndarray]:
    return {
        ("rank:j/0", STEP): noisy(rng, 0.5, 0.01),
        ("rank:j/1", STEP): noisy(rng, 0.5, 0.01),
        ("rank:j/0", "factorylens.train.phase.duration{factorylens.train.phase=forward}"): noisy(rng, 0.2, 0.004),
        ("rank:j/1", "factorylens.train.phase.duration{factorylens.train.phase=forward}"): noisy(rng, 0.2, 0.004),
        ("rank:j/0", "factorylens.train.phase.duration{factorylens.train.phase=collective}"): noisy(rng, 0.05, 0.002),
        ("rank:j/1", "factorylens.train.phase.duration{factorylens.train.phase=collective}"): noisy(rng, 0.05, 0.002),
        ("gpu:G0", "hw.temperature"): noisy(rng, 70, 0.5),
        ("gpu:G1", "hw.temperature"): noisy(rng, 70, 0.5),
        ("host:h", "system.cpu.utilization"): noisy(rng, 0.3, 0.02),
        ("nic:h/ib0", "factorylens.network.xmit_wait"): noisy(rng, 1000, 50),
        ("job:other", "process.cpu.utilization"): noisy(rng, 0.1, 0.01),
        ("gpu:far", "hw.temperature"): noisy(rng, 60, 0.5),
    }


KPI = [("rank:j/0", STEP), ("rank:j/1", STEP)]


def rank(series, topology=None, **config):
    frame = frame_of(series)
    return RankingEngine(RankingConfig(**config)).find_root_causes(
        frame, KPI, frame.index[FAULT - 1], topology=topology or training_topology()
    )


def slow_steps(series, by=0.3):
    for k in KPI:
        series[k] = shifted(series[k], by)


def test_a_hot_gpu_explains_its_rank_and_the_rank_waiting_on_it():
    rng = np.random.default_rng(0)
    s = base_series(rng)
    slow_steps(s)
    s[("gpu:G0", "hw.temperature")] = shifted(s[("gpu:G0", "hw.temperature")], 25)
    s[("rank:j/0", "factorylens.train.phase.duration{factorylens.train.phase=forward}")] += np.r_[
        np.zeros(FAULT), np.full(N - FAULT, 0.3)
    ]
    s[("rank:j/1", "factorylens.train.phase.duration{factorylens.train.phase=collective}")] += np.r_[
        np.zeros(FAULT), np.full(N - FAULT, 0.3)
    ]
    result = rank(s)
    top = result.causes[0]
    assert (top.entity, top.domain, top.signal) == ("gpu:G0", "gpu", "hw.temperature")
    assert "rank:j/0" in top.explains
    # rank 1's collective wait is an outbound measurement: not its own trouble
    assert "rank:j/1" not in result.entities[:2]
    assert re.search(r"\(hw\.temperature\) on gpu:G0 \(gpu\) rose from (69|70)\.\d+ to 9\d", top.explanation)
    assert "rank:j/0 depends on it (rank:j/0 -> gpu:G0)" in top.explanation
    assert top.evidence[0].z > 5 and top.onset == result.kpi_onset


def test_host_pressure_explains_the_ranks_unless_a_neighbour_caused_it():
    rng = np.random.default_rng(1)
    s = base_series(rng)
    slow_steps(s)
    s[("host:h", "system.cpu.utilization")] = shifted(s[("host:h", "system.cpu.utilization")], 0.65)
    for r in (0, 1):
        s[(f"rank:j/{r}", "factorylens.train.phase.duration{factorylens.train.phase=data}")] = shifted(
            noisy(rng, 0.02, 0.002), 0.25
        )
    assert rank(dict(s)).causes[0].entity == "host:h"
    s[("job:other", "process.cpu.utilization")] = shifted(s[("job:other", "process.cpu.utilization")], 0.6)
    result = rank(s)
    assert result.causes[0].entity == "job:other"
    assert "host:h" in result.causes[0].explains


def test_a_congested_nic_beats_the_collectives_it_slows():
    rng = np.random.default_rng(2)
    s = base_series(rng)
    slow_steps(s)
    s[("nic:h/ib0", "factorylens.network.xmit_wait")] = shifted(
        s[("nic:h/ib0", "factorylens.network.xmit_wait")], 20_000
    )
    for r in (0, 1):
        key = (f"rank:j/{r}", "factorylens.train.phase.duration{factorylens.train.phase=collective}")
        s[key] = shifted(s[key], 0.3)
    top = rank(s).causes[0]
    assert (top.entity, top.domain) == ("nic:h/ib0", "network")


def test_an_entity_that_went_silent_is_a_cause():
    rng = np.random.default_rng(3)
    s = base_series(rng)
    slow_steps(s, by=1.0)
    s[("gpu:G1", "hw.temperature")][FAULT:] = np.nan
    top = rank(s).causes[0]
    assert top.entity == "gpu:G1" and "stopped reporting" in top.explanation


def test_unrelated_and_later_anomalies_rank_below_the_cause():
    rng = np.random.default_rng(4)
    s = base_series(rng)
    slow_steps(s)
    s[("gpu:G0", "hw.temperature")] = shifted(s[("gpu:G0", "hw.temperature")], 20)
    s[("gpu:far", "hw.temperature")] = shifted(s[("gpu:far", "hw.temperature")], 20)  # benign, elsewhere
    s[("gpu:G1", "hw.temperature")] = shifted(s[("gpu:G1", "hw.temperature")], 20, at=FAULT + 3)  # after the KPI
    result = rank(s)
    assert result.entities[0] == "gpu:G0"
    scores = {c.entity: c.score for c in result.causes}
    assert scores["gpu:far"] < scores["gpu:G0"] * 0.6
    assert scores["gpu:G1"] < scores["gpu:G0"]
    unrelated = next(c for c in result.causes if c.entity == "gpu:far")
    assert "no dependency" in unrelated.explanation


def test_normal_data_gives_no_strong_cause():
    rng = np.random.default_rng(5)
    result = rank(base_series(rng))
    assert all(c.evidence[0].z < 5 for c in result.causes if c.evidence)


def test_candidates_restrict_the_answer_and_bad_input_is_refused():
    rng = np.random.default_rng(6)
    s = base_series(rng)
    slow_steps(s)
    s[("gpu:G0", "hw.temperature")] = shifted(s[("gpu:G0", "hw.temperature")], 20)
    frame = frame_of(s)
    engine = RankingEngine()
    only = engine.find_root_causes(
        frame, KPI, frame.index[FAULT - 1], topology=training_topology(), candidates=["host:h", "gpu:G1"]
    )
    assert set(only.entities) <= {"host:h", "gpu:G1"}
    with pytest.raises(ValueError, match="at least one KPI"):
        engine.find_root_causes(frame, [], frame.index[0])
    with pytest.raises(ValueError, match="has data"):
        engine.find_root_causes(frame, [("nope", "x")], frame.index[0])
    with pytest.raises(ValueError):
        RankingConfig(threshold=0)
    with pytest.raises(ValueError, match="min_latency_share"):
        RankingConfig(min_latency_share=0)  # divided scores by zero, then crashed explaining a NaN


def test_signal_descriptions_follow_the_words_of_the_name():
    assert describe_signal("factorylens.train.step.duration").kind is SignalKind.LATENCY
    assert describe_signal("PodSuccessRate(%)").kind is SignalKind.GOOD
    assert describe_signal("hw.errors{error.type=xid}").kind is SignalKind.ERRORS
    assert describe_signal("hw.temperature").kind is SignalKind.SATURATION
    collective = describe_signal("factorylens.train.phase.duration{factorylens.train.phase=collective}")
    assert (collective.side, collective.domain) == (SignalSide.OUTBOUND, "network")
    assert describe_signal("latency_seen_by_caller_frontend(s)").side is SignalSide.CALLER_VIEW


def test_robust_scores_ignore_one_earlier_jump_and_score_flat_series_by_magnitude():
    detector = RobustZDetector(RobustZConfig(relative_floor=0.05, center_points=10, new_behaviour_z=0.0))
    reference = np.r_[np.full(50, 70.0), [95.0]][:, None]  # the cause began one sample before t0
    scores = detector.scores(reference, np.array([[95.0]]))
    assert scores.z[0, 0] > 5
    flat = detector.scores(np.zeros((20, 1)), np.array([[3.0]]))
    assert flat.z[0, 0] == pytest.approx(np.log1p(3.0)) and np.isnan(flat.spread[0])


def test_scores_are_calibrated_tail_probabilities_the_same_on_every_series():
    assert calibrated(0.0) == 0.0 and calibrated(1.0) == pytest.approx(0.6827, abs=1e-4)
    assert calibrated(4.0) == pytest.approx(1 - 6.334e-5, rel=1e-6)  # the alarm threshold
    assert calibrated(-4.0) == calibrated(4.0)
    assert one_in(float(calibrated(4.0))) == "1 in 16,000" and one_in(0.9) == "1 in 10"
    rng = np.random.default_rng(0)
    detector = RobustZDetector()
    for scale, level in ((0.01, 1.0), (50.0, 3000.0)):  # the same share of normal points scores above 0.9
        history, fresh = rng.normal(level, scale, (2000, 1)), rng.normal(level, scale, (20000, 1))
        share = float(np.mean(calibrated(detector.scores(history, fresh).z[:, 0]) > 0.9))
        assert share == pytest.approx(0.1, abs=0.03)


def test_topology_files_paths_and_tenants(tmp_path):
    t = training_topology()
    path = tmp_path / "t.json"
    path.write_text(json.dumps(t.to_dict()))
    loaded = Topology.load(path)
    assert loaded.edges == t.edges
    csv = tmp_path / "t.csv"
    csv.write_text("src,dst\nservice:a,service:b\n")
    assert Topology.load(csv).edges == {("service:a", "service:b"): "calls"}
    (tmp_path / "bad.csv").write_text("from,to\na,b\n")
    with pytest.raises(ValueError, match="src,dst"):
        Topology.load(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="unknown relation"):
        t.add_edge("a", "b", "likes")
    related = t.related({"rank:j/0"})
    assert related["gpu:G0"] == 1 and related["host:h"] == 1 and related["job:other"] == 2
    assert "gpu:G1" not in related  # a host's devices are not its tenants: only workloads are neighbours
    assert t.path("job:j", "gpu:G1") == ["job:j", "rank:j/1", "gpu:G1"]


def test_an_entitys_trouble_dates_from_its_first_strongest_series_whatever_the_column_order():
    """A throttle flag and the degraded status both jump to their cap, a scrape apart: the GPU's
    trouble began with the first. Before, the first of the tied columns in the frame's order dated it,
    and a rank whose work on that GPU rose in between took the blame in one order and not the other."""
    rng = np.random.default_rng(11)
    flag = np.zeros(N)
    series = {
        ("rank:j/0", STEP): shifted(noisy(rng, 2.0, 0.01), 1.0, FAULT + 1),
        ("gpu:A", "hw.gpu.clock_event.active{hw.gpu.clock_event.reason=sw_thermal}"): shifted(flag, 1.0, FAULT),
        ("gpu:A", "hw.status{hw.state=degraded}"): shifted(flag, 1.0, FAULT + 2),
        ("rank:j/1", "factorylens.train.phase.duration{factorylens.train.phase=backward}"): shifted(
            noisy(rng, 0.5, 0.01), 0.5, FAULT + 1
        ),
    }
    frame = frame_of(series)
    topology = Topology()
    topology.add_edge("rank:j/0", "gpu:A", "uses")
    topology.add_edge("rank:j/1", "gpu:A", "runs_on")
    kpi = [("rank:j/0", STEP)]
    t0 = frame.index[FAULT - 1]
    results = [
        RankingEngine().find_root_causes(frame[columns], kpi, t0, topology=topology)
        for columns in (list(frame.columns), list(reversed(frame.columns)))
    ]
    ranked = [[(c.entity, round(c.score, 6), c.onset) for c in r.causes] for r in results]
    assert ranked[0] == ranked[1]
    top = results[0].causes[0]
    assert top.entity == "gpu:A" and top.onset == frame.index[FAULT]
