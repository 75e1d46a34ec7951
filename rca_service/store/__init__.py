"""The in-memory columnar time-series store the analysis layer reads (see ``SeriesStore``)."""

from factorylens.rca_service.store._attributes import AttributeDecoder
from factorylens.rca_service.store._entity import domain_of, entity_of
from factorylens.rca_service.store._series import (
    SERVING_LATENCY_METRICS,
    HistogramPoint,
    HistogramSeries,
    ScalarSeries,
    SeriesInfo,
    SeriesKind,
    View,
    ViewError,
)
from factorylens.rca_service.store._store import MAX_BUCKETS, MAX_QUANTILES, IngestResult, SeriesStore, StoreLimits

__all__ = [
    "MAX_BUCKETS",
    "MAX_QUANTILES",
    "SERVING_LATENCY_METRICS",
    "AttributeDecoder",
    "HistogramPoint",
    "HistogramSeries",
    "IngestResult",
    "ScalarSeries",
    "SeriesInfo",
    "SeriesKind",
    "SeriesStore",
    "StoreLimits",
    "View",
    "ViewError",
    "domain_of",
    "entity_of",
]
