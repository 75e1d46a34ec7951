"""Seasonal baselines, streaming anomaly detection and predictability for every series."""

from factorylens.rca_service.baselines._bank import BaselineBank, BaselineBankConfig, workload_predictability
from factorylens.rca_service.baselines._baseline import (
    BaselineConfig,
    SeasonalBaseline,
    SeasonalProfile,
    fit_baseline,
    predictability_of,
)
from factorylens.rca_service.baselines._detector import ALARM_SCORE, StreamingDetector, StreamingDetectorConfig
from factorylens.rca_service.baselines._history import History, query_prometheus_range, read_history_file
from factorylens.rca_service.baselines._season import DAY_S, WEEK_S, Season, find_seasons
from factorylens.rca_service.baselines._seasonal_detector import SeasonalDetector

__all__ = [
    "ALARM_SCORE",
    "DAY_S",
    "WEEK_S",
    "BaselineBank",
    "BaselineBankConfig",
    "BaselineConfig",
    "History",
    "Season",
    "SeasonalBaseline",
    "SeasonalDetector",
    "SeasonalProfile",
    "StreamingDetector",
    "StreamingDetectorConfig",
    "find_seasons",
    "fit_baseline",
    "predictability_of",
    "query_prometheus_range",
    "read_history_file",
    "workload_predictability",
]
