"""The analysis layer: what turns stored series into baselines, incidents and ranked causes."""

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
from factorylens.rca_service.analysis._ranked import (
    KpiRankingAnalyzer,
    KpiRankingConfig,
    change_point,
    config_for_interval,
)
from factorylens.rca_service.analysis._zscore import RobustZScoreAnalyzer, RobustZScoreConfig

__all__ = [
    "Analyzer",
    "Band",
    "Baseline",
    "Cause",
    "Evidence",
    "Incident",
    "IncidentChange",
    "IncidentState",
    "KpiRankingAnalyzer",
    "KpiRankingConfig",
    "RobustZScoreAnalyzer",
    "RobustZScoreConfig",
    "change_point",
    "config_for_interval",
]
