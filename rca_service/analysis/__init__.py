"""The analysis layer, one pipeline of small parts: detectors → incident tracker → ranker."""

from factorylens.rca_service.analysis._analyzer import (
    KpiRankingAnalyzer,
    KpiRankingConfig,
    config_for_interval,
    scaled_config,
)
from factorylens.rca_service.analysis._base import (
    Analyzer,
    Band,
    Baseline,
    Cause,
    Evidence,
    Incident,
    IncidentChange,
    IncidentState,
)
from factorylens.rca_service.analysis._causes import CauseConfig, IncidentRanker
from factorylens.rca_service.analysis._detecting import DetectionConfig, SeriesDetection
from factorylens.rca_service.analysis._tracker import IncidentTracker, TrackerConfig, change_point

__all__ = [
    "Analyzer",
    "Band",
    "Baseline",
    "Cause",
    "CauseConfig",
    "DetectionConfig",
    "Evidence",
    "Incident",
    "IncidentChange",
    "IncidentRanker",
    "IncidentState",
    "IncidentTracker",
    "KpiRankingAnalyzer",
    "KpiRankingConfig",
    "SeriesDetection",
    "TrackerConfig",
    "change_point",
    "config_for_interval",
    "scaled_config",
]
