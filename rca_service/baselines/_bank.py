"""Baselines for every series the service stores: one streaming detector per series, bounded."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from factorylens.rca_service.baselines._baseline import SeasonalBaseline
from factorylens.rca_service.baselines._detector import StreamingDetectorConfig
from factorylens.rca_service.baselines._seasonal_detector import SeasonalDetector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineBankConfig:
    """
    :param detector: how each series is scored (probation, refits, history kept)
    :param max_series: detectors kept at most. A new series takes the place of the least recently
        fed one only when that one has not been fed for ``idle_s`` (it stopped); while every kept
        series is alive the newcomer waits, scored without a seasonal baseline. Dropping a live
        series instead would recreate detectors in a cycle once a pass feeds more series than
        ``max_series``, and no seasonal model would ever form.
    :param idle_s: how long unfed a detector must be before a new series may take its place
    :param max_series_cost_s: a series whose detector takes longer than this for one call (a fit
        and its scoring) is not modelled any more: it is dropped, counted, and skipped from then on
    """

    detector: StreamingDetectorConfig = field(
        default_factory=lambda: StreamingDetectorConfig(
            probation_points=360, refit_every_points=1440, fit_history_points=2880
        )
    )
    max_series: int = 5000
    max_series_cost_s: float = 2.0
    idle_s: float = 600.0

    def validate(self) -> None:
        if self.max_series < 1 or self.max_series_cost_s <= 0 or self.idle_s < 0:
            raise ValueError("max_series must be at least 1, max_series_cost_s positive and idle_s >= 0")
        self.detector.validate()


class BaselineBank:
    """Feeds each series' new points to its detector (the first call with a series' stored history
    is its warm start) and answers what its baseline, latest score and predictability are."""

    def __init__(self, config: BaselineBankConfig | None = None) -> None:
        self.config = config or BaselineBankConfig()
        self.config.validate()
        self._lock = threading.Lock()
        self._detectors: OrderedDict[str, SeasonalDetector] = OrderedDict()
        self._scores: dict[str, float] = {}
        self._unmodelled: set[str] = set()  # series too costly to model (bounded by the store's series)
        self._fed: dict[str, float] = {}  # series → when its detector was last fed (monotonic s)
        self.waiting = 0  # calls whose series found the bank full of live series (not modelled then)

    @property
    def unmodelled_count(self) -> int:
        return len(self._unmodelled)

    def observe(self, series_id: str, times_s: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Score new points of one series (ascending times, seconds); a series too costly to model,
        or waiting for room in the bank, scores nothing."""
        if series_id in self._unmodelled:
            return np.zeros(0)
        began = time.monotonic()
        detector = self._detector_for(series_id)
        if detector is None:
            return np.zeros(0)
        try:
            scores = detector.observe(np.asarray(times_s, dtype=float), np.asarray(values, dtype=float))
        except MemoryError:
            self._give_up(series_id, "its model does not fit in memory")
            return np.zeros(0)
        self._check_cost(series_id, began)
        if scores.size:
            with self._lock:
                self._scores[series_id] = float(scores[-1])
        return scores

    def warm_start(self, series_id: str, times_s: np.ndarray, values: np.ndarray) -> None:
        """Learn a series' history (a file, a Prometheus range) before its live points arrive."""
        if series_id in self._unmodelled:
            return
        began = time.monotonic()
        detector = self._detector_for(series_id)
        if detector is None:
            return
        try:
            detector.streaming.warm_start(np.asarray(times_s, dtype=float), np.asarray(values, dtype=float))
        except MemoryError:
            self._give_up(series_id, "its model does not fit in memory")
            return
        self._check_cost(series_id, began)

    def _check_cost(self, series_id: str, began: float) -> None:
        took = time.monotonic() - began
        if took > self.config.max_series_cost_s:
            self._give_up(series_id, f"one update took {took:.1f} s (limit {self.config.max_series_cost_s:g} s)")

    def _give_up(self, series_id: str, why: str) -> None:
        with self._lock:
            self._detectors.pop(series_id, None)
            self._scores.pop(series_id, None)
            self._fed.pop(series_id, None)
            self._unmodelled.add(series_id)
        log.warning("series %s is no longer modelled with a seasonal baseline: %s", series_id, why)

    def _detector_for(self, series_id: str) -> SeasonalDetector | None:
        """The series' detector (created on first use), marked most recently fed; None while the
        bank is full of series fed within ``idle_s`` (see :class:`BaselineBankConfig`)."""
        now = time.monotonic()
        with self._lock:
            detector = self._detectors.pop(series_id, None)
            if detector is None and len(self._detectors) >= self.config.max_series:
                oldest = next(iter(self._detectors))
                if now - self._fed.get(oldest, 0.0) < self.config.idle_s:
                    self.waiting += 1
                    return None
                self._detectors.pop(oldest)
                self._scores.pop(oldest, None)
                self._fed.pop(oldest, None)
            detector = detector or SeasonalDetector(self.config.detector)
            self._detectors[series_id] = detector
            self._fed[series_id] = now
            return detector

    def forget(self, live: set[str]) -> None:
        with self._lock:
            self._unmodelled &= live
            for series_id in [s for s in self._detectors if s not in live]:
                del self._detectors[series_id]
                self._scores.pop(series_id, None)
                self._fed.pop(series_id, None)

    def detector(self, series_id: str) -> SeasonalDetector | None:
        """The series' seasonal detector once its baseline is fitted (None before)."""
        with self._lock:
            detector = self._detectors.get(series_id)
        return detector if detector is not None and detector.ready else None

    def baseline(self, series_id: str) -> SeasonalBaseline | None:
        with self._lock:
            detector = self._detectors.get(series_id)
        return detector.baseline if detector else None

    def scores(self) -> dict[str, float]:
        with self._lock:
            return dict(self._scores)

    def predictability(self) -> dict[str, float]:
        """Per series with a fitted baseline: how well it explains the series, in [0, 1], lowered
        when recent points fell inside its 95% band less often than they should."""
        with self._lock:
            baselines = {s: d.baseline for s, d in self._detectors.items() if d.baseline is not None}
        out = {}
        for series_id, baseline in baselines.items():
            value = baseline.predictability
            if math.isnan(value):
                continue
            if baseline.coverage_total >= 20:
                value *= min(1.0, baseline.coverage / NOMINAL_COVERAGE)
            out[series_id] = float(value)
        return out

    def __len__(self) -> int:
        return len(self._detectors)


NOMINAL_COVERAGE = 0.95


def workload_predictability(per_series: dict[str, float], workload_of: dict[str, str]) -> dict[str, float]:
    """The median predictability of each workload's series (series without a workload are left out)."""
    groups: dict[str, list[float]] = {}
    for series_id, value in per_series.items():
        workload = workload_of.get(series_id)
        if workload:
            groups.setdefault(workload, []).append(value)
    return {w: float(np.median(v)) for w, v in groups.items()}
