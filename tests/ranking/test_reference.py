"""Rankings whose reference before t0 is empty, one or two samples short, or wholly masked by an
earlier incident: BARO and the engine fall back to a longer window where there is one, otherwise
rank without a reference and say so, and never raise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factorylens.rca_service.ranking import BaroConfig, BaroRanker, RankingEngine, RankingResult, Reference

KPI = [("frontend", "latency_p99")]
ROWS, FAULT = 40, 30  # t0 is the row before FAULT; db's latency, and the KPI with it, rise two rows later
ENTITIES = ["api", "cache", "db"]


def planted(seed: int = 7) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Three services' latency, CPU and errors around 10, one sample a minute; ``db``'s latency rises
    by 40 from two rows after the first row past ``t0`` on (so even the first sample after ``t0`` is
    normal), the KPI by 45."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2024-05-01", periods=ROWS, freq="60s", tz="UTC")
    columns = pd.MultiIndex.from_tuples(
        [(e, s) for e in ENTITIES for s in ("latency_p99", "cpu_util", "error_rate")] + KPI
    )
    frame = pd.DataFrame(rng.normal(10.0, 1.0, size=(ROWS, len(columns))), index=index, columns=columns)
    frame.loc[frame.index[FAULT + 2 :], ("db", "latency_p99")] += 40.0
    frame.loc[frame.index[FAULT + 2 :], KPI[0]] += 45.0
    return frame, index[FAULT - 1]


def older_normal(frame: pd.DataFrame) -> pd.DataFrame:
    """An hour of normal operation the day before, the same series."""
    rng = np.random.default_rng(1)
    index = frame.index[0] - pd.Timedelta(days=1) + pd.Timedelta(minutes=1) * np.arange(60)
    return pd.DataFrame(rng.normal(10.0, 1.0, size=(60, frame.shape[1])), index=index, columns=frame.columns)


def assert_reference(result: RankingResult, reference: Reference) -> None:
    assert result.reference is reference
    assert result.causes and all(c.reference is reference for c in result.causes)


# ---- BARO ----------------------------------------------------------------------------------------


def test_baro_without_any_sample_before_t0_ranks_by_the_change_after_it_and_says_so():
    frame, t0 = planted()
    result = BaroRanker().find_root_causes(frame.iloc[FAULT:], KPI, t0)  # nothing before t0 (raised before)
    assert result.entities[0] == "db" and sorted(result.entities) == ENTITIES
    assert_reference(result, Reference.NONE)
    assert "no reference before the anomaly" in result.causes[0].explanation


def test_baro_with_one_sample_before_t0_ranks_against_its_level():
    """One sample has no spread, so BARO's own score drops every series (every entity scored -inf);
    its level still shows the step, in units of the spread after t0."""
    frame, t0 = planted()
    result = BaroRanker().find_root_causes(frame.iloc[FAULT - 1 :], KPI, t0)
    assert result.entities[0] == "db" and np.isfinite(result.causes[0].score)
    assert_reference(result, Reference.SHORT)
    assert "a level but no spread" in result.causes[0].explanation


def test_baro_with_a_wholly_masked_reference_and_nothing_earlier_ranks_without_one():
    frame, t0 = planted()
    frame.iloc[:FAULT] = np.nan  # a previous fault's rows, masked (raised "not enough values to unpack")
    result = BaroRanker().find_root_causes(frame, KPI, t0, candidates=["cache", "db", "nowhere"])
    assert result.entities == ["db", "cache", "nowhere"] and result.causes[-1].score == -np.inf
    assert_reference(result, Reference.NONE)


def test_baro_with_a_wholly_masked_lookback_falls_back_to_the_earlier_rows():
    frame, t0 = planted()
    frame.iloc[FAULT - 10 : FAULT] = np.nan  # exactly BARO's 10-minute lookback
    result = BaroRanker().find_root_causes(frame, KPI, t0)
    everything_before = BaroRanker(BaroConfig(lookback=None)).find_root_causes(frame, KPI, t0)
    assert result.entities[0] == "db"
    assert [(c.entity, c.score) for c in result.causes] == [(c.entity, c.score) for c in everything_before.causes]
    assert_reference(result, Reference.EARLIER)
    assert "all the rows before it served" in result.causes[0].explanation


# ---- the engine ----------------------------------------------------------------------------------


def test_engine_without_any_sample_before_t0_measures_against_the_first_after_and_says_so():
    frame, t0 = planted()
    result = RankingEngine().find_root_causes(frame.iloc[FAULT:], KPI, t0)
    top = result.causes[0]
    assert top.entity == "db" and top.evidence[0].reference is Reference.NONE
    assert top.evidence[0].expected == pytest.approx(frame.iloc[FAULT][("db", "latency_p99")])
    assert_reference(result, Reference.NONE)
    assert "No reference" in top.explanation and "this ranking is a guess" in top.explanation


@pytest.mark.parametrize("points", [1, 2])
def test_engine_with_one_or_two_samples_before_t0_marks_its_evidence_short(points):
    frame, t0 = planted()
    result = RankingEngine().find_root_causes(frame.iloc[FAULT - points :], KPI, t0)
    top = result.causes[0]
    assert top.entity == "db" and top.reference is Reference.SHORT is top.evidence[0].reference
    assert result.reference is Reference.SHORT
    assert "latency_p99 had only one or two samples before t0" in top.explanation


def test_a_series_with_a_sample_or_two_before_t0_among_measured_ones_is_shown_not_weighed():
    """Spans kept only around faults: a series whose reference is a lone sample has no spread, and a
    modest wobble of it must not outrank a measured series that clearly broke."""
    frame, t0 = planted()
    frame[("api", "span_self_p95")] = np.nan
    frame.loc[frame.index[FAULT - 1], ("api", "span_self_p95")] = 10.0
    frame.loc[frame.index[FAULT:], ("api", "span_self_p95")] = 14.0  # +40% over one sample: no spread known
    result = RankingEngine().find_root_causes(frame, KPI, t0)
    assert result.reference is Reference.RECENT and result.entities[0] == "db"
    api = next(c for c in result.causes if c.entity == "api")
    assert api.score < 0.5 * result.causes[0].score


def test_engine_with_a_wholly_masked_reference_and_no_history_says_it_has_none():
    """Before, every series counted as new behaviour (as if it had been 0): expected values NaN, no word of it."""
    frame, t0 = planted()
    frame.iloc[:FAULT] = np.nan
    result = RankingEngine().find_root_causes(frame, KPI, t0)
    top = result.causes[0]
    assert top.entity == "db" and np.isfinite(top.evidence[0].expected)
    assert_reference(result, Reference.NONE)
    assert "nothing was observed before t0" in top.explanation


@pytest.mark.parametrize("fallback", ["history", "lead"])
def test_engine_with_a_wholly_masked_reference_falls_back_to_a_longer_window(fallback):
    """With a history, it stands in for the masked rows; with a lead whose reference is masked, the
    observed rows up to t0 do (as for a lead longer than the frame)."""
    frame, t0 = planted()
    if fallback == "history":
        frame.iloc[:FAULT] = np.nan
        result = RankingEngine().find_root_causes(frame, KPI, t0, history=older_normal(frame))
        assert_reference(result, Reference.EARLIER)
        assert "history stood in" in result.causes[0].explanation
    else:
        frame.iloc[: FAULT - 5] = np.nan
        result = RankingEngine().find_root_causes(frame, KPI, t0, lead=pd.Timedelta(minutes=5))
        assert result.reference is Reference.RECENT
    top = result.causes[0]
    assert top.entity == "db" and top.evidence[0].expected == pytest.approx(10.0, abs=1.5)
    assert top.evidence[0].observed == pytest.approx(50.0, abs=3.0)


def test_engine_with_nothing_after_t0_finds_no_cause():
    frame, _ = planted()
    assert RankingEngine().find_root_causes(frame, KPI, frame.index[-1]).causes == []
