"""Specificity on real data: the KPI analyzer replayed over normal operation opens (almost) no incident,
and still opens one for the injected faults that break the KPI.

One Nezha day (2022-08-23, 12 h at 60 s, 32 faults in its first 5 h) and PetShop's low-traffic
``noissue`` data (47 h at 300 s) are replayed through ``KpiRankingAnalyzer`` as the service runs it
(see ``factorylens.evaluation._specificity``); together about 45 s. ``bench/specificity.py``
reports both Nezha days and the PetShop run with every node's latency as a KPI.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factorylens.evaluation import (
    Specificity,
    nezha_day_specificity,
    petshop_scenario_specificity,
    petshop_specificity,
)
from factorylens.evaluation._specificity import kpi_breaks, long_table, replay_frame
from factorylens.rca_service.analysis import config_for_interval

pytestmark = pytest.mark.slow  # `make check` leaves these out; `make test` runs them


@pytest.fixture(scope="module")
def nezha_day(nezha_dir) -> Specificity:
    return nezha_day_specificity(nezha_dir / "rca_data" / "2022-08-23")


@pytest.fixture(scope="module")
def petshop_normal(petshop_dir) -> Specificity:
    return petshop_scenario_specificity(petshop_dir / "dataset" / "low_traffic")


# ---- the numbers ------------------------------------------------------------------------------------


def test_nezha_day_opens_few_incidents_outside_the_faults(nezha_day: Specificity) -> None:
    # 12 h of data: 20 min of warm-up, 32 fault windows of 9 min, about 7.3 normal hours (7.2 of them
    # after the campaign). Measured: 1 false incident (3.3 per normal day), 0 after the campaign. That
    # one (14:40, entry P95, ranked on productcatalogservice) sits in a 17.5-minute gap of the fault
    # list, one ~8.5-minute injection slot after the previous fault: most likely an unlisted injection.
    # Bounds with margin: at most 3 (about 10 per normal day), and at most 1 in the quiet hours.
    assert nezha_day.normal_hours > 6.5 and nezha_day.quiet_hours > 6.5, nezha_day.summary()
    assert nezha_day.false_incidents <= 3, nezha_day.false_onsets
    assert nezha_day.quiet_false <= 1, nezha_day.false_onsets
    assert nezha_day.false_per_day == pytest.approx(nezha_day.false_incidents / nezha_day.normal_hours * 24)


def test_nezha_day_detects_the_faults_that_break_the_kpi(nezha_day: Specificity) -> None:
    # Measured: 13 of 32 faults detected. Of the 32, 16 visibly break the entry SLI at all (judged
    # against the day's normal scrapes); 3 of those fall in the analyzer's 20-minute warm-up (the data
    # start 2 minutes before the first fault), so 13 could be seen, and all 13 were. The other 16
    # (email, payment, shipping and checkout faults, most exception/return faults) never move the
    # entry latency or success rate: a KPI-driven analyzer must not open an incident for them. Most
    # of the faults that do break the KPI must be found (>= 80 %; the other day measures 8 of 10).
    assert nezha_day.faults == 32
    assert nezha_day.visible is not None and nezha_day.visible >= 10, nezha_day.summary()
    assert nezha_day.detected_visible >= 0.8 * nezha_day.visible, nezha_day.missed
    assert nezha_day.detected >= 10, nezha_day.missed


def test_petshop_normal_operation_opens_few_incidents(petshop_normal: Specificity) -> None:
    # 47.4 normal hours with PetSite's latency and availability as the KPIs. Measured: 2 incidents
    # (1.0 per day), both in the first 5 hours while the 60-scrape history is still filling: a
    # 15-minute p99 excursion (0.42 s -> 0.81 s) and a 10-minute average-latency bump (+25 %).
    # Bound with margin: at most 5 (about 2.5 per day).
    assert petshop_normal.faults is None and petshop_normal.normal_hours > 45, petshop_normal.summary()
    assert petshop_normal.false_incidents <= 5, petshop_normal.false_onsets
    assert all(kpi.endswith("on PetSite") for _, kpi in petshop_normal.false_onsets)


# ---- the pieces ---------------------------------------------------------------------------------------


def test_config_for_interval_restates_the_defaults_in_scrapes() -> None:
    at_60 = config_for_interval(60.0, ("LatencyP99(s)",))
    assert at_60.kpi_metrics == ("LatencyP99(s)",)
    assert at_60.detection.window_s == 3600 and at_60.causes.lookback_s == 3600
    assert at_60.detection.resolve_after_s == 180 and at_60.detection.merge_window_s == 300
    assert at_60.causes.lead_s == 120 and at_60.incidents.rerank_for_s == 600
    assert at_60.incidents.rerank_interval_s == 60
    at_300 = config_for_interval(300.0)
    assert at_300.detection.window_s == 18000 and at_300.detection.resolve_after_s == 900
    assert at_300.detection.merge_window_s == 1500 and at_300.causes.lead_s == 600
    assert at_300.detection.window_s / 300 >= at_300.detection.min_points
    assert at_300.detection.threshold == at_60.detection.threshold  # thresholds are not scaled


def _synthetic(step_at: int | None) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    index = pd.date_range("2024-01-01", periods=120, freq="60s", tz="UTC")
    latency = 0.2 + rng.normal(0, 0.01, len(index))
    if step_at is not None:
        latency[step_at : step_at + 6] += 1.0
    frame = pd.DataFrame(
        {("entry", "LatencyP99(s)"): latency, ("api", "cpu.utilization"): rng.normal(0.5, 0.02, 120)}, index=index
    )
    frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["entity", "signal"])
    return frame


def test_long_table_holds_every_present_point() -> None:
    frame = _synthetic(None)
    frame.iloc[3, 0] = np.nan
    table = long_table(frame)
    assert list(table.columns) == ["time_unix_nano", "entity", "signal", "value"]
    assert len(table) == frame.notna().to_numpy().sum()
    assert table["time_unix_nano"].is_monotonic_increasing
    first = table[(table.entity == "api")].iloc[0]
    assert first.time_unix_nano == frame.index[0].value and first.value == frame.iloc[0, 1]


def test_replay_frame_opens_one_incident_for_a_kpi_step_and_none_without() -> None:
    assert replay_frame(_synthetic(None), kpi_metrics=("LatencyP99(s)",), interval_s=60.0) == []
    incidents = replay_frame(_synthetic(80), kpi_metrics=("LatencyP99(s)",), interval_s=60.0)
    assert len(incidents) == 1
    assert incidents[0].onset_unix_nano == _synthetic(80).index[80].value


def test_kpi_breaks_needs_a_run_in_the_bad_direction() -> None:
    frame = _synthetic(80)[[("entry", "LatencyP99(s)")]]
    normal = np.ones(len(frame), dtype=bool)
    normal[80:86] = False
    config = config_for_interval(60.0)
    minute = pd.Timedelta(seconds=60)
    assert kpi_breaks(frame, normal, [frame.index[79], frame.index[20]], config, minute) == [True, False]
    faster = frame.copy()
    faster.iloc[80:86, 0] = 0.01  # latency falling is not a break
    assert kpi_breaks(faster, normal, [frame.index[79]], config, minute) == [False]


def test_petshop_kpi_choice_is_checked(tmp_path) -> None:
    with pytest.raises(ValueError):
        petshop_specificity(tmp_path, kpi="some")  # checked before any data is read
