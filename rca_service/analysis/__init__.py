"""The analysis layer: what turns stored series into baselines, incidents and ranked causes."""

from factorylens.rca_service.analysis._base import (
    Analyzer,
    Baseline,
    Cause,
    Evidence,
    Incident,
    IncidentChange,
    IncidentState,
)
from factorylens.rca_service.analysis._zscore import RobustZScoreAnalyzer, RobustZScoreConfig

__all__ = [
    "Analyzer", "Baseline", "Cause", "Evidence", "Incident", "IncidentChange", "IncidentState",
    "RobustZScoreAnalyzer", "RobustZScoreConfig",
]
