"""The detector interface every part of the RCA core scores series through.

A :class:`Detector` learns what one series normally does (``fit`` on history), scores the points
that arrive after it (``update``) and reports the anomaly in progress as an interval with its onset,
direction and a calibrated score. Incidents (a KPI breaking), cause strength (the ranking) and the
specificity harness all read anomalies through it, so "anomalous" means one thing everywhere.

**Calibration.** A detector measures a point's deviation ``z`` in robust standard deviations of the
series' normal variation (its median/MAD-type spread, after the seasonal shape where there is one).
The score is ``1 - p`` with ``p`` the two-sided tail probability of ``|z|`` under a normal
distribution: 0.9 means "as far out as 1 normal point in 10", 0.9999 "1 in 10,000", on every
series. The default alarm threshold, 4 robust standard deviations, is a score of 0.99994.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

SQRT2 = math.sqrt(2.0)


def calibrated(z: np.ndarray | float) -> np.ndarray | float:
    """``|z|`` in robust standard deviations → ``1 - p``, ``p`` its two-sided normal tail probability."""
    with np.errstate(invalid="ignore"):
        out = erf(np.abs(z) / SQRT2)
    return float(out) if np.ndim(out) == 0 else np.asarray(out, dtype=float)


def one_in(score: float) -> str:
    """How rare a calibrated score is, in words: ``"1 in 16,000"`` normal points."""
    tail = 1.0 - score
    if tail <= 1e-9:
        return "less than 1 in a billion"
    n = 1.0 / tail
    if n >= 1e6:
        return f"1 in {n / 1e6:.0f} million"
    return f"1 in {_round(n):,}"


def _round(n: float) -> int:
    digits = max(0, int(math.log10(max(n, 1.0))) - 1)
    return int(round(n, -digits))


@dataclass(frozen=True)
class Anomaly:
    """An anomaly in progress (or just ended) on one series.

    ``z`` is the signed peak deviation in robust standard deviations (positive: above normal),
    ``score`` its calibration (see the module docstring); ``observed``/``expected``/``lower``/``upper``
    are the value, the baseline and the band at the peak.
    """

    onset_unix_nano: int
    last_unix_nano: int
    z: float
    score: float
    observed: float
    expected: float
    lower: float
    upper: float
    method: str

    @property
    def direction(self) -> int:
        return 1 if self.z > 0 else -1 if self.z < 0 else 0


class Detector(abc.ABC):
    """Scores one series. ``fit`` learns normal behaviour from history (raising nothing);
    ``update`` scores points after it and returns the anomaly in progress, if any."""

    method: str = "detector"

    @property
    @abc.abstractmethod
    def ready(self) -> bool:
        """Whether enough history was seen to score new points."""

    @abc.abstractmethod
    def fit(self, times_ns: np.ndarray, values: np.ndarray) -> None:
        """Learn what the series normally does from these points (ascending times)."""

    @abc.abstractmethod
    def update(self, times_ns: np.ndarray, values: np.ndarray) -> Anomaly | None:
        """Score new points (after everything seen so far); the anomaly they continue or start."""

    @abc.abstractmethod
    def band(self, times_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(expected, lower, upper)`` at these times: the alarm band."""

    @property
    @abc.abstractmethod
    def latest_score(self) -> float:
        """The calibrated score of the latest point scored (0 before any)."""

    def end(self) -> None:  # noqa: B027 - an optional hook
        """Forget the anomaly in progress: the next one starts afresh (an incident resolved)."""


class RunTracker:
    """The run of anomalous points a detector is in: its onset, its peak, how long it is."""

    def __init__(self) -> None:
        self.length = 0
        self.onset = 0
        self.last = 0
        self.peak: tuple[float, float, float, float, float] | None = None  # z, score, observed, expected, half band

    def step(
        self, t: int, anomalous: bool, z: float, score: float, observed: float, expected: float, half: float
    ) -> None:
        if not anomalous:
            self.length, self.peak = 0, None
            return
        if self.length == 0:
            self.onset = t
        self.length += 1
        self.last = t
        if self.peak is None or abs(z) >= abs(self.peak[0]):
            self.peak = (z, score, observed, expected, half)

    def feed(
        self, times_ns: np.ndarray, values: np.ndarray, z: np.ndarray, expected: float, half: float, threshold: float
    ) -> float:
        """Points with their deviations against one band (``expected`` ± ``half``, ``threshold``
        deviations wide); the calibrated score of the last."""
        score = 0.0
        for t, x, deviation in zip(times_ns, values, z, strict=True):
            score = float(calibrated(deviation))
            self.step(int(t), abs(deviation) > threshold, float(deviation), score, float(x), expected, half)
        return score

    def anomaly(self, consecutive: int, method: str) -> Anomaly | None:
        if self.length < consecutive or self.peak is None:
            return None
        z, score, observed, expected, half = self.peak
        if not np.isfinite(half):  # a flat history: the band is the value it held
            half = 0.0
        return Anomaly(self.onset, self.last, z, score, observed, expected, expected - half, expected + half, method)
