"""Anomaly detection: one :class:`Detector` interface, the robust-z detector for short histories
(and the ranking's vectorised scorer), calibrated scores. The seasonal detector, the default for
series with enough history, lives with the seasonal baselines
(:class:`factorylens.rca_service.baselines.SeasonalDetector`)."""

from factorylens.rca_service.detection._base import Anomaly, Detector, RunTracker, calibrated, one_in
from factorylens.rca_service.detection._robust import MAX_Z, RobustZConfig, RobustZDetector
from factorylens.rca_service.detection._robust_scores import RobustScores, harmful, nan_median, nan_quantiles

__all__ = [
    "MAX_Z",
    "Anomaly",
    "Detector",
    "RobustScores",
    "RobustZConfig",
    "RobustZDetector",
    "RunTracker",
    "calibrated",
    "harmful",
    "nan_median",
    "nan_quantiles",
    "one_in",
]
