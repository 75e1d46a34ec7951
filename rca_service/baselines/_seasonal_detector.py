"""The seasonal detector: the NAB-scored :class:`StreamingDetector` behind the :class:`Detector`
interface, the default for every series with enough history for a seasonal baseline.

An anomaly starts at a point the streaming detector alarms on (its deviation from the seasonal
baseline beats both its threshold and the largest recent deviation of its kind, before the
refractory period that keeps NAB's one-alarm-per-window rule) and lasts while the point stays
more than ``hold_z`` robust standard deviations from the baseline: the alarm says "new", the hold
says "still broken".
"""

from __future__ import annotations

import numpy as np

from factorylens.rca_service.baselines._baseline import SeasonalBaseline
from factorylens.rca_service.baselines._detector import StreamingDetector, StreamingDetectorConfig
from factorylens.rca_service.detection import Anomaly, Detector, RunTracker, calibrated

NS = 1_000_000_000


class SeasonalDetector(Detector):
    method = "seasonal"

    def __init__(
        self, config: StreamingDetectorConfig | None = None, *, hold_z: float = 4.0, consecutive: int = 2
    ) -> None:
        self.streaming = StreamingDetector(config)
        self.hold_z = hold_z
        self.consecutive = consecutive
        self._runs = RunTracker()
        self._latest = 0.0

    @property
    def baseline(self) -> SeasonalBaseline | None:
        return self.streaming.baseline

    @property
    def ready(self) -> bool:
        return self.streaming.baseline is not None

    def fit(self, times_ns: np.ndarray, values: np.ndarray) -> None:
        self.streaming.warm_start(np.asarray(times_ns, dtype=float) / NS, np.asarray(values, dtype=float))

    def update(self, times_ns: np.ndarray, values: np.ndarray) -> Anomaly | None:
        self.observe(np.asarray(times_ns, dtype=float) / NS, np.asarray(values, dtype=float))
        return self.anomaly()

    def observe(self, times_s: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Score new points (seconds): the streaming detector's per-point scores (NAB's)."""
        scores = self.streaming.score(times_s, values)
        if self.streaming.baseline is not None:
            self.streaming.baseline.update(times_s, values)
        ratio, signed, expected = self.streaming.last_deviations()
        if not len(ratio):
            return scores
        times, observed = times_s[-len(ratio) :], values[-len(ratio) :]
        half = self.hold_z * self._spread()
        for t, q, z, x, e in zip(times, ratio, signed, observed, expected, strict=True):
            self._latest = float(calibrated(z))
            anomalous = q >= 1.0 or (self._runs.length > 0 and abs(z) > self.hold_z)
            self._runs.step(int(t * NS), bool(anomalous), float(z), self._latest, float(x), float(e), half)
        return scores

    def anomaly(self) -> Anomaly | None:
        return self._runs.anomaly(self.consecutive, self.method)

    def band(self, times_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        baseline = self.streaming.baseline
        if baseline is None:
            nan = np.full(len(times_ns), np.nan)
            return nan, nan, nan
        times_s = np.asarray(times_ns, dtype=float) / NS
        lower, upper = baseline.band(times_s)
        return baseline.expected(times_s), lower, upper

    @property
    def latest_score(self) -> float:
        return self._latest

    def end(self) -> None:
        self._runs = RunTracker()

    def _spread(self) -> float:
        stats = self.streaming.stats
        return stats[1] if stats is not None else float("nan")
