"""The robust-z detector: each series against the median and robust spread of its recent past.

It serves series whose history is too short for a seasonal baseline, and it is the vectorised
scorer the ranking runs over thousands of columns at once (:meth:`RobustZDetector.scores`): one
estimator of "normal variation" (:mod:`._robust_scores`) for incidents, cause strength and the
specificity harness. Its deviations are robust z values; :func:`~._base.calibrated` turns them
into scores in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from factorylens.rca_service.detection._base import Anomaly, Detector, RunTracker
from factorylens.rca_service.detection._robust_scores import RobustScores, robust_scores

MAX_Z = 1000.0  # beyond this (a constant history that moved) the deviation no longer grows
BAND_ANCHORS = 200  # a band over a long range is estimated at most at this many points


@dataclass(frozen=True)
class RobustZConfig:
    """
    :param threshold: robust z beyond which a point is anomalous
    :param consecutive: anomalous points in a row that make an anomaly
    :param min_points: history points needed before a series is scored
    :param relative_floor: the spread is at least this fraction of the series' level (a 1 % change
        of a flat series is no anomaly)
    :param center_points: the expected level is the median of the last this many history points
        (0: of the whole history, so a slow drift still shows once it is large)
    :param new_behaviour_z: deviation added when a series that was exactly 0 turns non-zero (the
        first errors, a throttle flag set): new behaviour is anomalous however small
    :param seen_range_points: with at least this many history points, a value inside the range the
        history already visited deviates at most ``threshold`` (periodic checkpoint spikes); 0: off
    :param composite: the spread is the largest of several robust estimates (MAD, IQR, of first
        differences, of the upper tail, the typical step), for ranking thousands of unlike series;
        False: IQR/1.349 only, the sensitive choice for one series against its own history
    """

    threshold: float = 4.0
    consecutive: int = 2
    min_points: int = 20
    relative_floor: float = 0.01
    center_points: int = 0
    new_behaviour_z: float = 12.0
    seen_range_points: int = 0
    composite: bool = True

    def __post_init__(self) -> None:
        if self.threshold <= 0 or self.consecutive < 1 or self.min_points < 3 or not 0 <= self.relative_floor < 1:
            raise ValueError("threshold must be positive, consecutive >= 1, min_points >= 3, relative_floor in [0, 1)")


class RobustZDetector(Detector):
    """Matrix scoring (:meth:`scores`) for many series at once, and the :class:`Detector` interface
    for one series (``resolution``: the smallest change that means anything, e.g. 0.01 for a ratio)."""

    method = "robust-z"

    def __init__(self, config: RobustZConfig | None = None, *, resolution: float = 0.0) -> None:
        self.config = config or RobustZConfig()
        self.resolution = resolution
        self._history = np.zeros(0)
        self._center = float("nan")
        self._spread = float("nan")
        self._runs = RunTracker()
        self._latest = 0.0

    # ---- many series -------------------------------------------------------------------------
    def scores(
        self,
        reference: np.ndarray,
        scored: np.ndarray,
        history: np.ndarray | None = None,
        *,
        resolution: np.ndarray | None = None,
        seen_range_cap: float | None = None,
    ) -> RobustScores:
        """Signed robust z (and change, centre) of the ``scored`` rows against the ``reference`` rows,
        per column (NaN = missing). ``history``: older normal rows that widen the spread only."""
        cfg = self.config
        return robust_scores(
            reference,
            scored,
            history,
            relative_floor=cfg.relative_floor,
            center_points=cfg.center_points,
            seen_range_points=cfg.seen_range_points,
            seen_range_cap=cfg.threshold if seen_range_cap is None else seen_range_cap,
            new_behaviour_z=cfg.new_behaviour_z,
            resolution=resolution,
            composite=cfg.composite,
        )

    # ---- one series --------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return np.isfinite(self._history).sum() >= self.config.min_points

    def fit(self, times_ns: np.ndarray, values: np.ndarray) -> None:
        self._history = np.asarray(values, dtype=float)
        if not self.ready:
            return
        fitted = self.scores(self._history[:, None], np.zeros((0, 1)), resolution=np.array([self.resolution]))
        self._center = float(fitted.center[0])
        self._spread = float(fitted.spread[0])

    def update(self, times_ns: np.ndarray, values: np.ndarray) -> Anomaly | None:
        if not self.ready or not len(values):
            return self._runs.anomaly(self.config.consecutive, self.method)
        scores = self.scores(
            self._history[:, None], np.asarray(values, dtype=float)[:, None], resolution=np.array([self.resolution])
        )
        z = np.clip(np.nan_to_num(scores.z[:, 0], nan=0.0), -MAX_Z, MAX_Z)
        cfg = self.config
        half = cfg.threshold * self._spread
        self._latest = self._runs.feed(
            np.asarray(times_ns), np.asarray(values, dtype=float), z, self._center, half, cfg.threshold
        )
        return self._runs.anomaly(cfg.consecutive, self.method)

    def band(self, times_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        half = self.config.threshold * self._spread
        n = len(times_ns)
        return np.full(n, self._center), np.full(n, self._center - half), np.full(n, self._center + half)

    @property
    def latest_score(self) -> float:
        return self._latest

    def end(self) -> None:
        self._runs = RunTracker()

    def rolling_band(
        self, values: np.ndarray, first: int, window_points: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(expected, lower, upper)`` for ``values[first:]``, each point against the
        ``window_points`` before it (estimated at up to :data:`BAND_ANCHORS` points, held between)."""
        n = len(values) - first
        if n <= 0:
            empty = np.zeros(0)
            return empty, empty, empty
        anchors = np.unique(np.linspace(first, len(values) - 1, min(n, BAND_ANCHORS)).astype(int))
        rows = np.arange(window_points)[:, None] + (anchors - window_points)[None, :]
        matrix = np.where(rows >= 0, values[np.clip(rows, 0, None)], np.nan)
        enough = np.isfinite(matrix).sum(axis=0) >= self.config.min_points
        fitted = self.scores(matrix, np.zeros((0, len(anchors))), resolution=np.full(len(anchors), self.resolution))
        spread = np.where(enough, fitted.spread, np.nan)
        center = np.where(enough, fitted.center, np.nan)
        at = np.searchsorted(anchors, np.arange(first, len(values)), side="right") - 1
        at = np.clip(at, 0, len(anchors) - 1)
        half = self.config.threshold * spread[at]
        return center[at], center[at] - half, center[at] + half
