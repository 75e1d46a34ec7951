"""The analysis interface the RCA service calls, and the shapes of what it returns.

An :class:`Analyzer` is fed the store on a schedule (``analyze``), keeps incidents with ranked
causes, and answers baseline queries. Implementations are config-dataclass + class pairs (PyRCA's
shape); the baselines, detectors and ranking engines of later stages plug in here.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from factorylens.rca_service.store import SeriesInfo, SeriesStore, View


@dataclass
class Evidence:
    series_id: str
    description: str
    time_unix_nano: int
    observed: float
    expected: float
    lower: float
    upper: float
    trace_ids: list[str] = field(default_factory=list)


@dataclass
class Cause:
    rank: int
    entity: str
    domain: str
    signal: str
    series_id: str
    onset_unix_nano: int
    score: float
    explanation: str
    evidence: list[Evidence] = field(default_factory=list)


class IncidentState(str, enum.Enum):
    OPEN = "open"
    RESOLVED = "resolved"


@dataclass
class Incident:
    id: str
    state: IncidentState
    title: str
    opened_unix_nano: int
    onset_unix_nano: int
    updated_unix_nano: int
    resolved_unix_nano: int = 0
    kpi_series_id: str = ""
    score: float = 0.0
    summary: str = ""
    causes: list[Cause] = field(default_factory=list)
    kind: str = "performance"  # performance: a KPI broke its baseline; waste: a job held GPUs idle
    severity: str = "high"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Incident:
        causes = [Cause(**{**c, "evidence": [Evidence(**e) for e in c["evidence"]]}) for c in data["causes"]]
        return cls(**{**data, "state": IncidentState(data["state"]), "causes": causes})


class IncidentChange(str, enum.Enum):
    OPENED = "opened"
    UPDATED = "updated"
    RESOLVED = "resolved"


@dataclass
class Baseline:
    series_id: str
    method: str
    view: View
    time_unix_nano: np.ndarray
    observed: np.ndarray
    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    score: np.ndarray
    predictability: float = float("nan")
    periods_s: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Band:
    """A series' baseline band at its latest analysed point: what /metrics and remote-write show
    beside the series, so a dashboard draws the band without asking the API."""

    time_unix_nano: int
    lower: float
    upper: float


class Analyzer(abc.ABC):
    """Turns the store into incidents, causes and baselines."""

    name: str = "analyzer"

    @abc.abstractmethod
    def analyze(
        self,
        store: SeriesStore,
        now_unix_nano: int,
        *,
        deadline: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[tuple[IncidentChange, Incident]]:
        """Look at what arrived since the last call; return the incidents that changed. With a
        ``deadline`` (``time.monotonic()``) or ``should_stop``, stop early and leave the series not
        reached for the next call."""

    def skipped(self) -> dict[str, int]:
        """Series left out of analysis so far, by reason (budget spent, too costly to model)."""
        return {}

    @abc.abstractmethod
    def incidents(self) -> list[Incident]:
        """All known incidents, newest first."""

    @abc.abstractmethod
    def baseline(
        self, store: SeriesStore, series_id: str, start_unix_nano: int, end_unix_nano: int, view: View | None = None
    ) -> Baseline:
        """What the series was expected to be over a time range, with its band and anomaly score."""

    @abc.abstractmethod
    def anomaly_scores(self) -> dict[str, float]:
        """The latest anomaly score in [0, 1] of every series analyzed."""

    def predictability(self) -> dict[str, float]:
        """How well each series' baseline explains it, in [0, 1] (series with a fitted baseline)."""
        return {}

    def is_kpi(self, info: SeriesInfo) -> bool:
        """Whether incidents open when this series breaks (False: every series counts alike)."""
        return False

    def kpi_series(self) -> set[str]:
        """The analysed series that are KPIs (see :meth:`is_kpi`)."""
        return set()

    def latest_bands(self, series_ids: Iterable[str]) -> dict[str, Band]:
        """The band at each of these series' latest analysed point, for those that have one."""
        return {}

    def incident(self, incident_id: str) -> Incident | None:
        return next((i for i in self.incidents() if i.id == incident_id), None)

    def load_incidents(self, incidents: list[Incident]) -> None:  # noqa: B027 - an optional hook
        """Restore incidents persisted by the service (after a restart)."""
