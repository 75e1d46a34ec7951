"""Seasonal baselines and the streaming detector on synthetic series with known structure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from factorylens.rca_service.baselines import (
    ALARM_SCORE,
    DAY_S,
    BaselineConfig,
    SeasonalBaseline,
    StreamingDetector,
    StreamingDetectorConfig,
    find_seasons,
    fit_baseline,
)

STEP = 300.0  # 5-minute data
T0 = 1_700_006_400.0  # a midnight


def daily(
    n: int, *, noise: float = 0.5, seed: int = 0, step: float = STEP, level: float = 50.0, start: float = T0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = start + np.arange(n) * step
    return t, level + 10 * np.sin(2 * np.pi * t / DAY_S) + rng.normal(0, noise, n)


def test_finds_the_daily_season_on_irregular_data_with_gaps():
    t, v = daily(6 * 288)
    rng = np.random.default_rng(1)
    keep = rng.random(t.size) > 0.2  # a fifth of the points lost
    keep[1000:1100] = False  # an eight-hour outage
    jitter = rng.uniform(-40, 40, t.size)
    seasons = find_seasons(t[keep] + jitter[keep], v[keep])
    assert seasons and seasons[0].period_s == DAY_S and seasons[0].kind == "calendar"


def test_finds_a_step_periodic_cycle_no_calendar_knows():
    # a training job: step time 1.0 s, a 3 s checkpoint stall every 50 steps, sampled per step
    rng = np.random.default_rng(2)
    n = 2000
    step_time = 1.0 + rng.normal(0, 0.02, n)
    step_time[::50] += 3.0
    t = T0 + np.cumsum(step_time)
    seasons = find_seasons(t, step_time)
    assert seasons and seasons[0].kind == "cycle"
    assert seasons[0].period_s == pytest.approx(50 * step_time.mean(), rel=0.05)


def test_no_season_in_noise_or_a_random_walk():
    rng = np.random.default_rng(3)
    t = T0 + np.arange(3000) * STEP
    assert find_seasons(t, rng.normal(0, 1, t.size)) == []
    assert find_seasons(t, np.cumsum(rng.normal(0, 1, t.size))) == []


@pytest.mark.parametrize("days, method", [(2.5, "profile"), (14, "stl")])
def test_band_covers_normal_points_at_its_nominal_rate(days, method):
    t, v = daily(int(days * 288))
    baseline = fit_baseline(t, v)
    assert baseline.method == method and baseline.periods_s == [DAY_S]
    future_t, future_v = daily(7 * 288, seed=9, start=t[-1] + STEP)
    low, high = baseline.band(future_t)
    inside = np.mean((future_v >= low) & (future_v <= high))
    assert 0.90 <= inside <= 0.99  # nominal 95%
    expected = baseline.expected(future_t)
    assert np.median(np.abs(expected - (50 + 10 * np.sin(2 * np.pi * future_t / DAY_S)))) < 0.5


def test_weekly_and_daily_together_with_mstl():
    t = T0 + np.arange(4 * 7 * 96) * 900.0  # four weeks of 15-minute data
    rng = np.random.default_rng(4)
    weekend = (((t - T0) // DAY_S) % 7 >= 5) * -8.0
    v = 30 + 6 * np.sin(2 * np.pi * t / DAY_S) + weekend + rng.normal(0, 0.3, t.size)
    baseline = fit_baseline(t, v)
    assert baseline.method == "mstl" and sorted(baseline.periods_s) == [DAY_S, 7 * DAY_S]
    assert np.median(np.abs(v - baseline.expected(t))) < 1.0


def test_level_shift_is_followed_online_and_counters_rates_work():
    t, v = daily(4 * 288)
    baseline = fit_baseline(t, v)
    later = t[-1] + STEP * np.arange(1, 577)
    shifted = 50 + 20 + 10 * np.sin(2 * np.pi * later / DAY_S)
    baseline.update(later, shifted)
    assert baseline.expected(later[-1:])[0] == pytest.approx(shifted[-1], abs=1.5)
    # a counter is fitted on its rate (the store's rate view); a ratio in [0, 1] works the same way
    ratio = fit_baseline(t, (v - 30) / 40)
    assert ratio.periods_s == [DAY_S]


def test_baseline_round_trips_and_rejects_too_little_data():
    t, v = daily(3 * 288)
    baseline = fit_baseline(t, v)
    again = SeasonalBaseline.from_dict(baseline.to_dict())
    np.testing.assert_allclose(again.expected(t[:50]), baseline.expected(t[:50]))
    with pytest.raises(ValueError, match="at least"):
        fit_baseline(t[:3], v[:3])
    assert not math.isnan(baseline.predictability)


def test_predictability_orders_series_by_how_well_they_are_explained():
    t, clean = daily(5 * 288, noise=0.2)
    _, noisy = daily(5 * 288, noise=8.0)
    flat = np.full(t.size, 40.0) + np.random.default_rng(5).normal(0, 0.05, t.size)
    p_clean, p_noisy, p_flat = (fit_baseline(t, v).predictability for v in (clean, noisy, flat))
    assert p_clean > 0.9 and p_flat > 0.9 and p_noisy < 0.6


def stream(detector: StreamingDetector, t: np.ndarray, v: np.ndarray, chunk: int) -> np.ndarray:
    return np.concatenate([detector.score(t[i : i + chunk], v[i : i + chunk]) for i in range(0, t.size, chunk)])


def config(probation: int = 600) -> StreamingDetectorConfig:
    return StreamingDetectorConfig.for_probation(probation)


def with_anomaly(kind: str, onset: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    t, v = daily(10 * 288, seed=seed)
    if kind == "spike":
        v[onset] += 15
    elif kind == "dip":
        v[onset] -= 15
    elif kind == "level shift":
        v[onset:] -= 8
    elif kind == "drift":  # a leak: +0.3 per point off the rhythm
        v[onset:] += 0.3 * np.arange(v.size - onset)
    elif kind == "variance":
        v[onset:] += np.random.default_rng(seed).normal(0, 6, v.size - onset)
    return t, v


@pytest.mark.parametrize("kind", ["spike", "dip", "level shift", "drift", "variance"])
def test_injected_anomalies_score_high_and_normal_points_low(kind):
    for seed, onset in ((6, 1500), (7, 2100)):
        t, v = with_anomaly(kind, onset, seed)
        scores = stream(StreamingDetector(config()), t, v, 37)
        assert scores[:600].max() == 0.0  # probation
        alarms = np.flatnonzero(scores >= ALARM_SCORE)
        assert alarms.size and onset <= alarms[0] <= onset + 30, (seed, alarms)  # early, never before it
        assert scores[onset : onset + 30].max() > 0.5
        normal = scores[600:onset]
        assert normal.max() < ALARM_SCORE and np.quantile(normal, 0.99) < 0.3


def test_clean_seasonal_series_raises_no_alarm():
    for seed in range(3):
        t, v = daily(14 * 288, seed=seed)
        scores = StreamingDetector(config()).score(t, v)
        assert scores.max() < ALARM_SCORE, seed


def test_no_look_ahead_and_chunking_does_not_matter():
    t, v = daily(2000, seed=7)
    v[1200] += 30
    whole = StreamingDetector(config(400)).score(t, v)
    for chunk in (1, 7, 64, 999):
        np.testing.assert_array_equal(stream(StreamingDetector(config(400)), t, v, chunk), whole)
    # appending future points never changes a past score
    for cut in (450, 1201, 1600):
        np.testing.assert_array_equal(StreamingDetector(config(400)).score(t[:cut], v[:cut]), whole[:cut])


def test_gaps_nans_and_refits():
    t, v = daily(3000, seed=8)
    v[900:910] = np.nan
    cfg = StreamingDetectorConfig.for_probation(600, refit_every_points=288)
    detector = StreamingDetector(cfg)
    scores = detector.score(t, v)
    assert np.isfinite(scores).all() and scores.max() < ALARM_SCORE
    assert scores[900:910].max() == 0.0
    assert detector.baseline is not None and detector.baseline.fitted_points > 600


def test_warm_start_skips_probation():
    t, v = daily(3000, seed=10)
    v[2500] += 30
    cold = StreamingDetector(config())
    assert cold.score(t[2400:], v[2400:]).max() == 0.0  # still in probation: nothing learned yet
    warm = StreamingDetector(config())
    warm.warm_start(t[:2400], v[:2400])
    assert not warm.in_probation and warm.baseline.periods_s == [DAY_S]
    scores = warm.score(t[2400:], v[2400:])
    assert scores[100] >= ALARM_SCORE and np.delete(scores, 100).max() < ALARM_SCORE


def test_bad_config_is_refused():
    with pytest.raises(ValueError):
        StreamingDetectorConfig(probation_points=3).validate()
    with pytest.raises(ValueError):
        BaselineConfig(band_quantiles=(0.9, 0.1)).validate()
    with pytest.raises(ValueError, match="same length"):
        StreamingDetector(config()).score(np.arange(3.0), np.arange(4.0))
