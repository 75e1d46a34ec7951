"""Finding a series' rhythm: which periods its autocorrelation says it repeats with.

Fleet signals follow the clock (time of day, day of week); training signals follow the step
counter (a checkpoint or an evaluation every N steps), which shows up as an autocorrelation peak at
a lag no calendar knows. Both are found the same way: resample onto a regular grid, remove the
trend, and read the autocorrelation function (computed with an FFT, Wiener–Khinchin) at the
calendar lags and at its strongest peak (the ACF-peak period test of Vlachos, Yu & Castelli, SDM
2005, without their periodogram pre-filter).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY_S = 86_400.0
WEEK_S = 7 * DAY_S
HARMONIC_GAIN = 0.05  # extra correlation a multiple of a found period needs to count too
MAX_GRID_POINTS = 1 << 20  # no grid is larger, whatever the data's spacing (callers choose steps below it)


@dataclass(frozen=True)
class Season:
    """One period a series repeats with; ``strength`` is the autocorrelation at that lag."""

    period_s: float
    strength: float
    kind: str  # "calendar" or "cycle"


@dataclass
class Grid:
    """A series averaged onto regular bins (``step_s`` wide from ``origin_s``); empty bins are NaN."""

    origin_s: float
    step_s: float
    values: np.ndarray

    @property
    def filled(self) -> np.ndarray:
        """Empty bins filled by linear interpolation (the ends by the nearest value)."""
        v = self.values
        ok = np.isfinite(v)
        if ok.all() or not ok.any():
            return np.nan_to_num(v)
        idx = np.arange(v.size)
        return np.interp(idx, idx[ok], v[ok])


def modal_step_s(times_s: np.ndarray) -> float:
    """The typical sampling step: the median positive gap (robust to jitter and outages)."""
    gaps = np.diff(np.asarray(times_s, dtype=float))
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) if gaps.size else 1.0


def to_grid(times_s: np.ndarray, values: np.ndarray, step_s: float, origin_s: float | None = None) -> Grid:
    """Average irregular samples onto ``step_s`` bins, in phase with ``origin_s`` (e.g. a midnight)
    but starting at the first sample's bin, so the grid's size depends on the data's span, not on
    how far the origin lies before it. Raises ``ValueError`` past ``MAX_GRID_POINTS``."""
    t = np.asarray(times_s, dtype=float)
    v = np.asarray(values, dtype=float)
    origin = float(t.min()) if origin_s is None else float(origin_s)
    origin += np.floor((float(t.min()) - origin) / step_s) * step_s
    span_bins = (float(t.max()) - origin) / step_s
    if not span_bins < MAX_GRID_POINTS:
        raise ValueError(f"a {span_bins:.3g}-bin grid (step {step_s:g} s) is larger than {MAX_GRID_POINTS}")
    bins = np.floor((t - origin) / step_s).astype(np.int64)
    bins -= min(int(bins.min()), 0)
    n = int(bins.max()) + 1
    sums = np.bincount(bins, weights=v, minlength=n)
    counts = np.bincount(bins, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return Grid(origin, step_s, grid)


def autocorrelation(values: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelation for lags 0..max_lag via the FFT (the series is de-meaned first)."""
    x = np.asarray(values, dtype=float) - float(np.mean(values))
    n = x.size
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(x, size)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), size)[: max_lag + 1]
    if acov[0] <= 0:
        return np.zeros(max_lag + 1)
    # unbiased per-lag normalisation, so long lags are not shrunk towards zero
    return acov / acov[0] * n / np.maximum(n - np.arange(max_lag + 1), 1)


def _detrend(values: np.ndarray) -> np.ndarray:
    idx = np.arange(values.size, dtype=float)
    slope, intercept = np.polyfit(idx, values, 1)
    return values - (slope * idx + intercept)


def _harmonic(a: float, b: float, tolerance: float = 0.05) -> bool:
    """Whether one period is (nearly) a whole multiple of the other."""
    short, long = min(a, b), max(a, b)
    remainder = long % short
    return min(remainder, short - remainder) <= tolerance * short


def _seasonal_strength(grid: np.ndarray, lag: float) -> float:
    """Correlation of the series with itself one period later, after removing a centred moving
    average one period long (classical decomposition): a trend or a random walk correlates with
    itself at every lag, a season only at its own."""
    lag_i = int(round(lag))
    kernel = np.ones(lag_i) / lag_i
    pad = lag_i // 2
    padded = np.concatenate([np.full(pad, grid[0]), grid, np.full(lag_i - 1 - pad, grid[-1])])
    detrended = grid - np.convolve(padded, kernel, mode="valid")
    a, b = detrended[:-lag_i], detrended[lag_i:]
    if a.size < 3 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def find_seasons(
    times_s: np.ndarray,
    values: np.ndarray,
    *,
    calendar_periods_s: tuple[float, ...] = (DAY_S, WEEK_S),
    find_cycles: bool = True,
    min_strength: float = 0.3,
    min_cycles: float = 2.0,
    max_grid_points: int = 8192,
) -> list[Season]:
    """The periods a series repeats with, strongest first.

    Candidates are the calendar periods the data covers ``min_cycles`` times and, with
    ``find_cycles``, the fundamental of the highest autocorrelation peak at another lag (at least 3
    grid steps). A candidate counts when the series, with its one-period moving average removed,
    correlates at least ``min_strength`` with itself one period later.
    """
    t = np.asarray(times_s, dtype=float)
    v = np.asarray(values, dtype=float)
    keep = np.isfinite(t) & np.isfinite(v)
    t, v = t[keep], v[keep]
    if t.size < 8:
        return []
    span = float(t[-1] - t[0])
    step = max(modal_step_s(t), span / max_grid_points)
    grid = to_grid(t, v, step).filled
    if grid.size < 8 or np.ptp(grid) == 0:
        return []
    x = _detrend(grid)
    max_lag = int(grid.size / min_cycles)
    if max_lag < 3:
        return []
    candidates: list[tuple[float, str]] = [(p, "calendar") for p in calendar_periods_s if 2 <= p / step <= max_lag]
    if find_cycles and max_lag >= 6:
        acf = autocorrelation(x, max_lag)
        peaks = np.flatnonzero((acf[1:-1] > acf[:-2]) & (acf[1:-1] >= acf[2:])) + 1
        peaks = peaks[(peaks >= 3) & (2 * peaks <= max_lag)]
        if peaks.size and acf[peaks].max() >= min_strength:
            # the fundamental: the shortest lag whose peak is nearly as high as the highest
            lag = int(peaks[np.flatnonzero(acf[peaks] >= 0.9 * acf[peaks].max())[0]])
            period = lag * step
            if not any(_harmonic(period, p) for p, _ in candidates):
                candidates.append((period, "cycle"))
    found: list[Season] = []
    for period, kind in sorted(candidates):
        strength = _seasonal_strength(grid, period / step)
        if strength < min_strength:
            continue
        # a whole multiple of a shorter season repeats anyway: keep it only when it explains more
        divisors = [s.strength for s in found if _harmonic(period, s.period_s)]
        if divisors and strength < max(divisors) + HARMONIC_GAIN:
            continue
        found.append(Season(period, strength, kind))
    found.sort(key=lambda s: -s.strength)
    return found
