"""A per-series seasonal baseline: expected value, a band of what is normal, and how predictable.

The shape is fitted on history and refitted on a schedule; between fits the expected value is the
seasonal profile at the point's phase plus the level, and the level follows the data online. Two
fitting paths: with at least ``stl_min_cycles`` cycles, statsmodels STL/MSTL (Cleveland et al.
1990; Bandara, Hyndman & Bergmeir 2021) on a grid of at most ``max_slots`` bins per period, after
winsorising outliers so one burst cannot bend the shape; with less, a robust per-slot median profile
(what Datadog and Grafana's "robust" strategies do). Bands are quantiles of the fit residuals.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from factorylens.rca_service.baselines._season import DAY_S, WEEK_S, Season, find_seasons, modal_step_s, to_grid

log = logging.getLogger(__name__)

MAD_TO_SIGMA = 1.4826
STL_MAX_GRID_POINTS = 16_384  # STL/MSTL cost grows with the grid: two weeks of 15-minute bins is 1,344


@dataclass(frozen=True)
class BaselineConfig:
    """
    :param calendar_periods_s: clock periods tried on every series (time of day, week)
    :param find_cycles: also look for a non-calendar period (checkpoints every N steps)
    :param min_strength: autocorrelation a period needs to count
    :param min_cycles: cycles of a period the history must cover before it is used
    :param max_periods: periods fitted at most (strongest first)
    :param max_slots: profile bins per period at most (finer data is averaged)
    :param stl_min_cycles: cycles needed to fit with STL/MSTL instead of per-slot medians
    :param smooth_slots: half-width of the circular smoothing of a per-slot profile
    :param band_quantiles: residual quantiles that make the band
    :param min_points: points needed for any baseline
    :param level_alpha: weight of a new residual in the online level (follows level shifts)
    :param level_window_s: span of the running median that separates level from residual in a fit
    """

    calendar_periods_s: tuple[float, ...] = (DAY_S, WEEK_S)
    find_cycles: bool = True
    min_strength: float = 0.3
    min_cycles: float = 2.0
    max_periods: int = 2
    max_slots: int = 288
    stl_min_cycles: float = 3.0
    stl_max_slots: int = 96
    smooth_slots: int = 3
    band_quantiles: tuple[float, float] = (0.025, 0.975)
    min_points: int = 10
    level_alpha: float = 0.02
    level_window_s: float = 6 * 3600.0

    def validate(self) -> None:
        lo, hi = self.band_quantiles
        if not 0 < lo < hi < 1:
            raise ValueError("band_quantiles must satisfy 0 < low < high < 1")
        if self.min_cycles < 1.5 or self.stl_min_cycles < self.min_cycles:
            raise ValueError("min_cycles must be >= 1.5 and stl_min_cycles >= min_cycles")
        if self.max_slots < 4 or self.stl_max_slots < 4 or self.max_periods < 0 or self.min_points < 3:
            raise ValueError("max_slots/stl_max_slots >= 4, max_periods >= 0, min_points >= 3")
        if not 0 < self.level_alpha <= 1:
            raise ValueError("level_alpha must be in (0, 1]")


@dataclass
class SeasonalProfile:
    """The repeating shape of one period, zero-median, as ``slots`` bins from ``origin_s``."""

    period_s: float
    origin_s: float
    values: np.ndarray
    strength: float
    kind: str

    @property
    def slot_s(self) -> float:
        return self.period_s / self.values.size

    def at(self, times_s: np.ndarray) -> np.ndarray:
        """The profile at each time, linearly interpolated between slot centres (circularly)."""
        phase = np.mod(np.asarray(times_s, dtype=float) - self.origin_s, self.period_s) / self.slot_s - 0.5
        lower = np.floor(phase).astype(np.int64)
        frac = phase - lower
        n = self.values.size
        return self.values[lower % n] * (1 - frac) + self.values[(lower + 1) % n] * frac


@dataclass
class SeasonalBaseline:
    """A fitted baseline. ``expected(t)`` = level + the profiles at t; the band adds residual
    quantiles; ``update`` moves the level online between fits."""

    method: str
    profiles: list[SeasonalProfile]
    level: float
    scale: float
    band_low: float
    band_high: float
    predictability: float
    fitted_points: int
    fitted_until_s: float
    step_s: float
    level_alpha: float = 0.02
    coverage_hits: int = 0
    coverage_total: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def periods_s(self) -> list[float]:
        return [p.period_s for p in self.profiles]

    def seasonal(self, times_s: np.ndarray) -> np.ndarray:
        out = np.zeros(np.shape(times_s), dtype=float)
        for profile in self.profiles:
            out += profile.at(times_s)
        return out

    def expected(self, times_s: np.ndarray) -> np.ndarray:
        return self.level + self.seasonal(times_s)

    def band(self, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mid = self.expected(times_s)
        return mid + self.band_low, mid + self.band_high

    def update(self, times_s: np.ndarray, values: np.ndarray) -> None:
        """Follow the level online and count how often new points fell inside the band."""
        t = np.asarray(times_s, dtype=float)
        v = np.asarray(values, dtype=float)
        ok = np.isfinite(v) & np.isfinite(t)
        if not ok.any():
            return
        deseasonalised = v[ok] - self.seasonal(t[ok])
        residual = deseasonalised - self.level
        inside = (residual >= self.band_low) & (residual <= self.band_high)
        self.coverage_hits += int(inside.sum())
        self.coverage_total += int(inside.size)
        # a clipped residual moves the level: level shifts are followed, single spikes barely count
        clip = 4.0 * self.scale if self.scale > 0 else math.inf
        level = self.level
        a = self.level_alpha
        for x in deseasonalised.tolist():
            level += a * min(max(x - level, -clip), clip)
        self.level = float(level)
        self.fitted_until_s = max(self.fitted_until_s, float(t[ok].max()))

    @property
    def coverage(self) -> float:
        """Share of points since the fit that fell inside the band (nominal: the band's width)."""
        return self.coverage_hits / self.coverage_total if self.coverage_total else math.nan

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for profile in data["profiles"]:
            profile["values"] = np.asarray(profile["values"]).tolist()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeasonalBaseline:
        profiles = [SeasonalProfile(**{**p, "values": np.asarray(p["values"], dtype=float)}) for p in data["profiles"]]
        return cls(**{**data, "profiles": profiles})


def _winsorise(values: np.ndarray, width: float = 5.0) -> np.ndarray:
    median = np.median(values)
    mad = np.median(np.abs(values - median)) * MAD_TO_SIGMA
    if mad <= 0:
        return values
    return np.clip(values, median - width * mad, median + width * mad)


def _slot_profile(
    times_s: np.ndarray, values: np.ndarray, period_s: float, origin_s: float, slots: int, smooth: int
) -> np.ndarray:
    """Per-slot medians of ``values`` by phase, gaps filled circularly, smoothed, zero-median."""
    slot = np.floor(np.mod(times_s - origin_s, period_s) / (period_s / slots)).astype(np.int64) % slots
    order = np.argsort(slot, kind="stable")
    sorted_slot, sorted_values = slot[order], values[order]
    starts = np.searchsorted(sorted_slot, np.arange(slots), side="left")
    ends = np.searchsorted(sorted_slot, np.arange(slots), side="right")
    profile = np.full(slots, np.nan)
    for s in np.flatnonzero(ends > starts):
        profile[s] = np.median(sorted_values[starts[s] : ends[s]])
    ok = np.isfinite(profile)
    if not ok.any():
        return np.zeros(slots)
    if not ok.all():
        idx = np.arange(slots)
        profile = np.interp(idx, idx[ok], profile[ok], period=slots)
    if smooth > 0 and slots > 2 * smooth + 1:
        padded = np.concatenate([profile[-smooth:], profile, profile[:smooth]])
        profile = np.convolve(padded, np.ones(2 * smooth + 1) / (2 * smooth + 1), mode="valid")
    return profile - np.median(profile)


def _stl_profiles(
    times_s: np.ndarray, values: np.ndarray, seasons: list[Season], origin_s: float, config: BaselineConfig
) -> list[SeasonalProfile] | None:
    """STL (one period) or MSTL (several) on a grid of at most ``stl_max_slots`` bins per period."""
    from statsmodels.tsa.seasonal import MSTL, STL

    seasons = sorted(seasons, key=lambda s: s.period_s)  # MSTL returns components by period
    shortest = seasons[0].period_s
    span = float(times_s[-1] - times_s[0])
    # the grid's size is bounded by the span, never by the data's spacing
    step = max(modal_step_s(times_s), shortest / config.stl_max_slots, span / STL_MAX_GRID_POINTS)
    if step > shortest / 4:
        return None  # too many cycles for a bounded grid: the per-slot profile serves
    grid = to_grid(times_s, values, step, origin_s)
    series = _winsorise(grid.filled)
    lags = [max(int(round(s.period_s / step)), 2) for s in seasons]
    if any(series.size < 2 * lag for lag in lags):
        return None
    # LOESS evaluated every ~10% of each smoother's span and interpolated between (the "jump"
    # speed-up of Cleveland et al. 1990, section 3.3): ten times faster, the same shape
    jumps = {"seasonal_jump": 2, "trend_jump": max(1, int(1.5 * lags[0] / 10)), "low_pass_jump": max(1, lags[0] // 10)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if len(lags) == 1:
            components = [STL(series, period=lags[0], **jumps).fit().seasonal]
        else:
            fitted = MSTL(series, periods=lags, stl_kwargs=jumps).fit().seasonal
            components = [fitted[:, i] for i in range(fitted.shape[1])]
    grid_times = grid.origin_s + (np.arange(series.size) + 0.5) * step
    profiles = []
    for season, lag, component in zip(seasons, lags, components, strict=False):
        last = component[-min(component.size, 4 * lag) :]
        slots = _slot_profile(grid_times[-last.size :], last, season.period_s, origin_s, lag, 0)
        profiles.append(SeasonalProfile(season.period_s, origin_s, slots, season.strength, season.kind))
    return profiles


def predictability_of(values: np.ndarray, residuals: np.ndarray) -> float:
    """How well a baseline explains a series, in [0, 1]: 1 - residual spread / the series' own
    spread around its median, with the spread taken relative to the level for flat series (a
    steady series is predictable even when no season explains anything)."""
    values = values[np.isfinite(values)]
    residuals = residuals[np.isfinite(residuals)]
    if values.size < 3 or residuals.size < 3:
        return math.nan
    median = float(np.median(values))
    total = float(np.median(np.abs(values - median)))
    noise = float(np.median(np.abs(residuals - np.median(residuals))))
    reference = max(total, 0.05 * abs(median))
    if reference <= 0:
        return 1.0 if noise <= 0 else 0.0
    return float(np.clip(1.0 - noise / reference, 0.0, 1.0))


def _seasonal_profiles(
    t: np.ndarray, v: np.ndarray, seasons: list[Season], step: float, config: BaselineConfig
) -> tuple[str, list[SeasonalProfile]]:
    """The seasonal shapes: STL/MSTL where the history holds enough cycles, else robust per-slot
    profiles, fitted one season after another on what the previous ones left."""
    origin = float(np.floor(t[0] / DAY_S) * DAY_S)
    span = float(t[-1] - t[0])
    if seasons and all(span >= config.stl_min_cycles * s.period_s for s in seasons):
        try:
            stl = _stl_profiles(t, v, seasons, origin, config)
        except (ValueError, np.linalg.LinAlgError) as exc:
            log.debug("STL fit failed, using per-slot profiles: %s", exc)
            stl = None
        if stl is not None:
            return ("mstl" if len(seasons) > 1 else "stl"), stl
    if not seasons:
        return "level", []
    profiles = []
    rest = v.copy()
    for season in seasons:
        slots = int(min(config.max_slots, max(4, round(season.period_s / step))))
        shape = _slot_profile(t, rest, season.period_s, origin, slots, config.smooth_slots)
        profile = SeasonalProfile(season.period_s, origin, shape, season.strength, season.kind)
        rest = rest - profile.at(t)
        profiles.append(profile)
    return "profile", profiles


def fit_baseline(times_s: np.ndarray, values: np.ndarray, config: BaselineConfig | None = None) -> SeasonalBaseline:
    """Fit a baseline on a history of (time in seconds, value); NaNs and unsorted input are fine."""
    config = config or BaselineConfig()
    t = np.asarray(times_s, dtype=float)
    v = np.asarray(values, dtype=float)
    keep = np.isfinite(t) & np.isfinite(v)
    t, v = t[keep], v[keep]
    if t.size < config.min_points:
        raise ValueError(f"{t.size} usable points; a baseline needs at least {config.min_points}")
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    step = modal_step_s(t)
    seasons = find_seasons(
        t,
        v,
        calendar_periods_s=config.calendar_periods_s,
        find_cycles=config.find_cycles,
        min_strength=config.min_strength,
        min_cycles=config.min_cycles,
    )[: config.max_periods]
    method, profiles = _seasonal_profiles(t, v, seasons, step, config)
    seasonal = np.zeros_like(v)
    for profile in profiles:
        seasonal += profile.at(t)
    deseasonalised = v - seasonal
    # the local level (a centred running median) takes trends and level shifts out of the residuals
    window = max(5, min(deseasonalised.size // 4, int(config.level_window_s / step)))
    local = pd.Series(deseasonalised).rolling(window, center=True, min_periods=1).median().to_numpy()
    level = float(np.median(deseasonalised[-max(config.min_points, window // 2) :]))
    residuals = deseasonalised - local
    scale = float(np.median(np.abs(residuals - np.median(residuals))) * MAD_TO_SIGMA)
    lo, hi = np.quantile(residuals, config.band_quantiles)
    return SeasonalBaseline(
        method=method,
        profiles=profiles,
        level=level,
        scale=scale,
        band_low=float(lo),
        band_high=float(hi),
        predictability=predictability_of(v, residuals),
        fitted_points=int(v.size),
        fitted_until_s=float(t[-1]),
        step_s=step,
        level_alpha=config.level_alpha,
    )
