"""The ranker interface: one signature for every root-cause ranking method (PyRCA's
``BaseRCA.find_root_causes`` → ``RCAResults`` is the model)."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from factorylens.rca_service.ranking._signals import SignalDescriber, SignalInfo
from factorylens.rca_service.ranking._topology import Topology

Column = tuple[str, str]


@dataclass
class EvidenceSeries:
    """One series behind a cause: how far it moved (``z``, robust standard deviations), from what
    to what, the band it left, and when its trouble began."""

    entity: str
    signal: str
    z: float
    expected: float
    observed: float
    onset: pd.Timestamp | None
    lower: float = float("nan")
    upper: float = float("nan")


@dataclass
class RankedCause:
    rank: int
    entity: str
    domain: str
    signal: str
    onset: pd.Timestamp | None
    score: float  # in [0, 1]: how well the entity explains the KPI's break (see the ranker)
    explanation: str
    evidence: list[EvidenceSeries] = field(default_factory=list)
    explains: list[str] = field(default_factory=list)  # related anomalous entities read as its effects


@dataclass
class RankingResult:
    causes: list[RankedCause]
    kpi: list[Column]
    t0: pd.Timestamp | None
    kpi_onset: pd.Timestamp | None = None

    @property
    def entities(self) -> list[str]:
        return [c.entity for c in self.causes]


class Ranker(abc.ABC):
    """Ranks the entities of a wide frame (UTC time index, columns ``(entity, signal)``) as causes
    of the ``kpi`` columns' break at ``t0`` (rows up to it are the reference; NaN rows are masked)."""

    name: str = "ranker"

    @abc.abstractmethod
    def find_root_causes(
        self,
        frame: pd.DataFrame,
        kpi: Sequence[Column],
        t0: pd.Timestamp | None = None,
        *,
        topology: Topology | None = None,
        candidates: Iterable[str] | None = None,
        describe: SignalDescriber | Mapping[str, SignalInfo] | None = None,
        lead: pd.Timedelta | None = None,
        history: pd.DataFrame | None = None,
        names: Mapping[str, str] | None = None,
    ) -> RankingResult:
        """The causes, best first. ``candidates``: rank only these entities (in this order on ties);
        ``describe``: what each signal means; ``lead``: how long before ``t0`` a cause may have begun;
        ``history``: older normal rows (their spread only); ``names``: entities as people know them."""
