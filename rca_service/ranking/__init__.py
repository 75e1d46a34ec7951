"""Cross-domain root-cause ranking: a library over a pandas frame and a topology.

The same engine serves the live service, ``factorylens rca replay`` and the benchmarks.
"""

from factorylens.rca_service.ranking._baro import BaroConfig, BaroRanker
from factorylens.rca_service.ranking._base import EvidenceSeries, RankedCause, Ranker, RankingResult, Reference
from factorylens.rca_service.ranking._engine import RankingConfig, RankingEngine
from factorylens.rca_service.ranking._foreign import foreign_signal
from factorylens.rca_service.ranking._meaning import describe_signal, from_meaning, parse_label
from factorylens.rca_service.ranking._signals import (
    SignalDescriber,
    SignalInfo,
    SignalKind,
    SignalSide,
)
from factorylens.rca_service.ranking._topology import RELATIONS, Topology, kind_of, topology_from_series

__all__ = [
    "RELATIONS",
    "BaroConfig",
    "BaroRanker",
    "EvidenceSeries",
    "RankedCause",
    "Ranker",
    "RankingConfig",
    "RankingEngine",
    "RankingResult",
    "Reference",
    "SignalDescriber",
    "SignalInfo",
    "SignalKind",
    "SignalSide",
    "Topology",
    "describe_signal",
    "foreign_signal",
    "from_meaning",
    "kind_of",
    "parse_label",
    "topology_from_series",
]
