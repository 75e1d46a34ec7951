"""The ranker interface: one signature for every root-cause ranking method (PyRCA's
``BaseRCA.find_root_causes`` → ``RCAResults`` is the model)."""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from factorylens.rca_service.ranking._signals import SignalDescriber, SignalInfo
from factorylens.rca_service.ranking._topology import Topology

Column = tuple[str, str]
SHORT_REFERENCE_POINTS = 3  # fewer samples before t0 give a series a level but no spread of its own


class Reference(str, enum.Enum):
    """What a series' normal behaviour was measured against. A ranking made without a proper
    reference carries it (and says so in words), so that a guess is never passed off as a measurement."""

    RECENT = "recent"  # its own samples in the reference window before t0: the usual case
    EARLIER = "earlier"  # that window held nothing usable; older rows stood in (BARO: the frame before
    # its lookback; the engine: the ``history``)
    SHORT = "short"  # fewer than SHORT_REFERENCE_POINTS samples before t0: a level, no spread of its own
    NONE = "none"  # no sample before t0 at all (the window empty, or wholly masked by an earlier incident)


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
    reference: Reference = Reference.RECENT


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
    reference: Reference = Reference.RECENT  # what its leading evidence was measured against


@dataclass
class RankingResult:
    causes: list[RankedCause]
    kpi: list[Column]
    t0: pd.Timestamp | None
    kpi_onset: pd.Timestamp | None = None
    reference: Reference = Reference.RECENT  # the frame's reference before t0 as a whole

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
