"""Robust, vectorised anomaly strength of many series against their own recent past.

For thousands of columns at once (one sort per quantile set, no per-column Python): the centre is
the median of the last few normal points; the spread is the largest of several robust estimates, so
that neither a flat series, a quantised one (histogram percentiles jumping by whole buckets) nor a
spiky one earns a huge score for an ordinary move:

- MAD and IQR/1.349 of the reference (Rousseeuw & Croux, JASA 1993);
- MAD of first differences / sqrt(2), which a level shift in the reference does not inflate;
- a tail sigma, (q90 - median) / 1.2816, for series that are flat with occasional spikes;
- half the typical significant step between consecutive samples (about one histogram bucket);
- a relative floor, a fraction of the level: a 2 % change is not a meaningful change.

A reference that is identically zero scores a new value ``x`` as ``sign(x)·(new_behaviour_z +
log1p(|x|))``: new behaviour (the first errors, a throttle flag set), measured in its own magnitude.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

MAD_TO_SIGMA = 1.4826
IQR_TO_SIGMA = 1.349
Q90_TO_SIGMA = 1.2816


def nan_quantiles(values: np.ndarray, quantiles: list[float]) -> list[np.ndarray]:
    """Per-column quantiles (linear interpolation) ignoring NaN, from one sort."""
    rows, cols = values.shape
    if rows == 0:
        return [np.full(cols, np.nan) for _ in quantiles]
    ordered = np.sort(values, axis=0)  # NaN last
    valid = np.isfinite(values).sum(axis=0)
    index = np.arange(cols)
    out = []
    for q in quantiles:
        position = (valid - 1) * q
        lower = np.clip(np.floor(position).astype(int), 0, rows - 1)
        upper = np.where(lower + 1 > valid - 1, lower, np.clip(lower + 1, 0, rows - 1))
        weight = position - np.floor(position)
        value = ordered[lower, index] * (1 - weight) + ordered[upper, index] * weight
        out.append(np.where(valid > 0, value, np.nan))
    return out


def nan_median(values: np.ndarray) -> np.ndarray:
    return nan_quantiles(values, [0.5])[0]


def nan_mad(values: np.ndarray, median: np.ndarray | None = None) -> np.ndarray:
    """Normal-consistent median absolute deviation per column (``median``: when already known)."""
    if values.shape[0] == 0:
        return np.full(values.shape[1], np.nan)
    return MAD_TO_SIGMA * nan_median(np.abs(values - (nan_median(values) if median is None else median)))


def typical_step(values: np.ndarray, tolerance: np.ndarray) -> np.ndarray:
    """Median size of the moves larger than ``tolerance`` between consecutive samples, per column.

    Only where such moves recur (at least 3, and 5 % of the moves): one jump is an event, maybe the
    very cause being looked for, not the series' resolution.
    """
    if values.shape[0] < 2:
        return np.full(values.shape[1], np.nan)
    steps = np.abs(np.diff(values, axis=0))
    significant = np.isfinite(steps) & (steps > tolerance[None, :])
    recurring = significant.sum(axis=0) >= np.maximum(3, 0.05 * np.isfinite(steps).sum(axis=0))
    return np.where(recurring, nan_median(np.where(significant, steps, np.nan)), np.nan)


@dataclass(frozen=True)
class RobustScores:
    z: np.ndarray  # signed robust z of the scored rows (rows × columns)
    delta: np.ndarray  # change from the centre, in the series' own units
    center: np.ndarray  # per column
    spread: np.ndarray  # per column: one robust standard deviation (NaN: the reference is flat)


def robust_scores(
    reference: np.ndarray,
    scored: np.ndarray,
    history: np.ndarray | None = None,
    *,
    relative_floor: float = 0.05,
    center_points: int = 10,
    tail_quantile: float = 0.9,
    seen_range_points: int = 0,
    seen_range_cap: float = 3.0,
    new_behaviour_z: float = 0.0,
    resolution: np.ndarray | None = None,
    composite: bool = True,
) -> RobustScores:
    """Score the ``scored`` rows against the ``reference`` rows (NaN = missing or masked).

    ``history`` (older normal operation, same columns) contributes only its spread, never its level;
    ``resolution`` (per column) is the least spread, the smallest change that means anything.
    ``composite=False`` keeps only IQR/1.349 and the relative floor: the sensitive spread for one
    series against its own history (a KPI), where the composite's tail estimate would count an
    earlier incident's level as normal variation. With ``seen_range_points``, a series with at
    least that many reference points scores a value inside the range its reference already visited
    at most ``seen_range_cap`` (plus how far it leaves that range): a checkpoint spike every ten
    minutes is normal, however far it is from the median.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        valid = np.isfinite(reference)
        if center_points and reference.shape[0] > center_points and valid[-center_points:].all():
            center = nan_median(reference[-center_points:])  # the usual case: no gap at the end
        elif center_points and reference.shape[0] > center_points:
            from_end = np.cumsum(valid[::-1], axis=0)[::-1]
            center = nan_median(np.where(valid & (from_end <= center_points), reference, np.nan))
        else:
            center = nan_median(reference)
        spread = _spread(reference, history, center, relative_floor, tail_quantile, composite)
        if resolution is not None:
            spread = np.fmax(spread, resolution)
        flat = ~(spread > 0)
        delta = scored - center
        z = delta / np.where(flat, np.nan, spread)
        if flat.any():
            new = scored[:, flat]
            z[:, flat] = np.sign(new) * (np.log1p(np.abs(new)) + np.where(new != 0, new_behaviour_z, 0.0))
        if seen_range_points:
            z = _within_seen_range(
                z, reference, scored, np.where(flat, np.nan, spread), seen_range_points, seen_range_cap
            )
    return RobustScores(z, delta, center, np.where(flat, np.nan, spread))


def _spread(
    reference: np.ndarray,
    history: np.ndarray | None,
    center: np.ndarray,
    relative_floor: float,
    tail_quantile: float,
    composite: bool,
) -> np.ndarray:
    """One robust standard deviation per column (see the module docstring); 0 where flat."""
    q25, median, q75, low, high = nan_quantiles(reference, [0.25, 0.5, 0.75, 1 - tail_quantile, tail_quantile])
    level = np.abs(_finite(center))
    if not composite:
        return np.fmax(_finite((q75 - q25) / IQR_TO_SIGMA), relative_floor * level)
    spread = _finite(np.fmax(nan_mad(reference, median), (q75 - q25) / IQR_TO_SIGMA))
    if reference.shape[0] >= 3:
        spread = np.fmax(spread, _finite(nan_mad(np.diff(reference, axis=0)) / np.sqrt(2)))
    if reference.shape[0] >= 5:
        spread = np.fmax(spread, _finite(np.fmax(high - median, median - low) / Q90_TO_SIGMA))
    steps_from = reference
    if history is not None and history.shape[0] >= 3:
        spread = np.fmax(spread, _finite(nan_mad(np.diff(history, axis=0)) / np.sqrt(2)))
        steps_from = np.vstack([reference, history])
    step = typical_step(steps_from, relative_floor * level)
    return np.fmax(spread, np.fmax(_finite(step) / 2, relative_floor * level))


def _within_seen_range(
    z: np.ndarray, reference: np.ndarray, scored: np.ndarray, unit: np.ndarray, points: int, cap: float
) -> np.ndarray:
    """A value inside the range the reference visited repeatedly (1 % of the time, not a one-off
    excursion) deviates at most ``cap``, plus how far it leaves that range."""
    known = np.isfinite(reference).sum(axis=0) >= points
    bottom, top = nan_quantiles(np.where(known, reference, np.nan), [0.01, 0.99])
    above = cap + np.clip((scored - top) / unit, 0, None)
    below = -cap - np.clip((bottom - scored) / unit, 0, None)
    return np.where(known & np.isfinite(unit), np.clip(z, below, above), z)


def _finite(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, 0.0)


def harmful(values: np.ndarray, directions: np.ndarray | int) -> np.ndarray:
    """Keep only the harmful side of each column's change (+1: rises, -1: falls, 0: both), >= 0."""
    out = np.abs(values)
    out = np.where(directions > 0, np.clip(values, 0, None), out)
    out = np.where(directions < 0, np.clip(-values, 0, None), out)
    return np.where(np.isfinite(out), out, 0.0)
