"""BARO, the reference baseline for root-cause ranking.

Pham, Ha, Zhang, "BARO: Robust Root Cause Analysis for Microservices via Multivariate Bayesian Online
Change Point Detection", FSE 2024 (authors' code: github.com/phamquiluan/baro; the same scorer ships in
RCAEval as ``baro``). It is the simple method most newer RCA methods fail to beat, so every accuracy
figure of our engine is reported next to it, computed by this module on the same frames.

What is reproduced, in two stages:

1. Anomaly time. Either the incident time ``t0`` is given (RCAEval's protocol: the injection time), or
   multivariate Bayesian online change-point detection (Adams & MacKay 2007) finds it on the latency-
   and error-like series (chosen by generic name keywords), min-max normalised as in the authors' code:
   Normal-inverse-Wishart prior with mean 0, kappa 1, dof = number of series and scale = identity x the
   mean per-series variance (the paper's choice), Student-t predictive, constant hazard 1/50 (the
   authors' ``constant_hazard(50)``). The anomaly starts where the first drop of the most probable run
   length says the new run begins (the paper's rule). Without a drop it falls back to ``t0``, else to the
   middle of the window.
2. RobustScorer: per series, median and IQR of the window before the anomaly time (sklearn's
   RobustScaler, an IQR of 0 counting as 1), score = max over the anomalous window of
   ``(x - median) / IQR``, signed as in the authors' and RCAEval's code (``absolute=True`` gives the
   paper's ``|x - median| / IQR``). Series constant before the anomaly carry no spread and are dropped,
   as the authors' ``drop_constant`` does. Missing samples are left out of the fit and the maximum
   (RobustScaler's own NaN handling), so a masked stretch of the window weighs nothing.
   An entity scores the maximum of its series, which is how the authors collapse a metric ranking
   into a service ranking.

Deviations, on purpose: the KPI series themselves (the symptom) are not ranked; the window is cut to
``lookback`` before the anomaly time and ``horizon`` after it (RCAEval: 10 minutes each), because an
earlier incident inside a long window would otherwise be taken for the change; rows with no value at
all (a masked earlier incident) are not observations for BOCPD; series constant only *after* the
anomaly are kept (the authors' code drops them too, which on windows of a few samples throws away
exactly the series that jumped to a new level and stayed there). BOCPD needs many samples per series:
on windows of a handful of 1- or 5-minute samples it seldom finds a change and falls back to ``t0``.

No usable reference (the authors' code raises, or scores nothing): when no series has a spread in the
lookback (it is empty, one sample long, or wholly masked by an earlier incident), all the rows before
the anomaly time serve; when none of those has one either, each series is scored by its change from
its level (its sample before, else its first one after) in units of its own IQR after the anomaly
time. Two samples already give an IQR and are scored as BARO does (PetShop's 10-minute lookback holds
about two). Every cause says which it was (:class:`~._base.Reference`), in its explanation too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import gammaln, logsumexp

from factorylens.rca_service.ranking._base import Column, RankedCause, Ranker, RankingResult, Reference
from factorylens.rca_service.ranking._signals import SignalDescriber, SignalInfo
from factorylens.rca_service.ranking._topology import Topology

_CHANGE_SIGNAL = re.compile(r"latenc|duration|response.?time|delay|error|fail|success|availab", re.IGNORECASE)


@dataclass(frozen=True)
class BaroConfig:
    """
    :param detect_change_point: find the anomaly time by BOCPD; when False it is the first sample
        after ``t0`` (RCAEval's protocol)
    :param lookback: reference window before the anomaly time (None: everything before it)
    :param horizon: anomalous window from the anomaly time on (None: everything after it)
    :param hazard: constant prior probability of a change point at each step
    :param absolute: score ``|x - median| / IQR`` (the paper's formula) instead of the signed one
    """

    detect_change_point: bool = False
    lookback: pd.Timedelta | None = pd.Timedelta(minutes=10)  # noqa: RUF009 - immutable
    horizon: pd.Timedelta | None = pd.Timedelta(minutes=10)  # noqa: RUF009 - immutable
    hazard: float = 1.0 / 50.0
    absolute: bool = False


class BaroRanker(Ranker):
    """Ranks the entities of a wide (entity, signal) frame by BARO's robust score, best first."""

    name = "baro"

    def __init__(self, config: BaroConfig | None = None) -> None:
        self.config = config or BaroConfig()

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
        """Entities best first: ``candidates`` (all of them, in that order on ties) or every entity of
        ``frame``. Rows ``<= t0`` are before the incident. ``t0`` is required unless the change point is
        detected. BARO reads neither the topology nor what signals mean; its score is its robust
        score (a multiple of the reference's interquartile range), not calibrated."""
        columns: list[Column] = [(str(k[0]), str(k[1])) for k in kpi]  # lists too
        ranked, reference = self._ranked(frame, columns, t0, None if candidates is None else list(candidates))
        note = _REFERENCE_NOTES[reference]
        causes = [
            RankedCause(n, entity, "", "", None, score, f"BARO robust score {score:.3g} {note}", reference=reference)
            for n, (entity, score) in enumerate(ranked, start=1)
        ]
        return RankingResult(causes, columns, t0, reference=reference)

    def _ranked(
        self, frame: pd.DataFrame, kpi: list, t0: pd.Timestamp | None, candidates: list[str] | None
    ) -> tuple[list[tuple[str, float]], Reference]:
        if t0 is None and not self.config.detect_change_point:
            raise ValueError("BARO needs t0 unless BaroConfig.detect_change_point is set")
        start = self._anomaly_start(frame, t0)
        scores, reference = self._scores(frame, start)
        scores = scores.drop(index=[k for k in kpi if k in scores.index])
        by_entity = scores.groupby(level=0, sort=True).max()
        entities = list(candidates) if candidates is not None else list(by_entity.index)
        values = by_entity.reindex(entities).fillna(-np.inf).to_numpy()
        order = np.argsort(-values, kind="stable")
        return [(entities[i], float(values[i])) for i in order], reference

    def _scores(self, frame: pd.DataFrame, start: pd.Timestamp) -> tuple[pd.Series, Reference]:
        """Robust score per series, and what it was measured against. When no series has a usable
        reference in the lookback (empty, one sample, wholly masked by an earlier incident), everything
        before the anomaly serves; when nothing before it is usable either, each series is scored
        without one (see :func:`_unreferenced_scores`) rather than not at all."""
        window = self._window(frame, start, self.config.lookback)
        scores = self._series_scores(window, start)
        if not scores.empty:
            return scores, Reference.RECENT
        if self.config.lookback is not None and (frame.index < start - self.config.lookback).any():
            window = self._window(frame, start, None)
            scores = self._series_scores(window, start)
            if not scores.empty:
                return scores, Reference.EARLIER
        return _unreferenced_scores(window, start, self.config.absolute)

    def _window(self, frame: pd.DataFrame, start: pd.Timestamp, lookback: pd.Timedelta | None) -> pd.DataFrame:
        keep = np.ones(len(frame), dtype=bool)
        if lookback is not None:
            keep &= frame.index >= start - lookback
        if self.config.horizon is not None:
            keep &= frame.index < start + self.config.horizon
        return frame.loc[keep]

    def _anomaly_start(self, frame: pd.DataFrame, t0: pd.Timestamp | None) -> pd.Timestamp:
        """First timestamp of the anomalous window."""
        after_t0 = frame.index[frame.index > t0] if t0 is not None else frame.index[:0]
        given = after_t0[0] if len(after_t0) else None
        if not self.config.detect_change_point:
            if given is None:
                raise ValueError(f"no sample after t0={t0}: nothing to score")
            return given
        window = frame.loc[frame.notna().any(axis=1)]  # a fully masked row is no observation
        if t0 is not None and self.config.lookback is not None:
            window = window.loc[window.index >= t0 - self.config.lookback]
        selected = [c for c in window.columns if _CHANGE_SIGNAL.search(str(c[1]))]
        index = _bocpd_change_index(_min_max(window[selected] if selected else window), self.config.hazard)
        if index is not None:
            return window.index[index]
        if given is None and not len(window):
            raise ValueError("no observed sample: nothing to score")
        return given if given is not None else window.index[len(window) // 2]

    def _series_scores(self, window: pd.DataFrame, start: pd.Timestamp) -> pd.Series:
        """BARO's score of every series with a spread before ``start`` and a value after it (none:
        an empty series)."""
        split = int((window.index < start).sum())
        values = window.to_numpy(float)
        normal, anomalous = values[:split], values[split:]
        seen = np.isfinite(normal).any(axis=0) & np.isfinite(anomalous).any(axis=0)
        if not seen.any():
            return pd.Series(dtype=float)
        normal, anomalous = normal[:, seen], anomalous[:, seen]
        median = np.nanmedian(normal, axis=0)
        q75, q25 = np.nanpercentile(normal, [75, 25], axis=0)
        iqr = np.where(q75 - q25 > 0, q75 - q25, 1.0)
        z = (anomalous - median) / iqr
        if self.config.absolute:
            z = np.abs(z)
        varying = np.nanmax(normal, axis=0) > np.nanmin(normal, axis=0)
        return pd.Series(np.nanmax(z, axis=0), index=window.columns[seen])[varying]


_REFERENCE_NOTES = {
    Reference.RECENT: "(x the normal IQR)",
    Reference.EARLIER: "(x the normal IQR; the lookback before the anomaly held no usable reference, so all "
    "the rows before it served)",
    Reference.SHORT: "(x its IQR after the anomaly: before it there was a level but no spread to compare with)",
    Reference.NONE: "(x its IQR after the anomaly, from its first sample after it: no reference before the "
    "anomaly, so this ranking is a guess)",
}


def _unreferenced_scores(window: pd.DataFrame, start: pd.Timestamp, absolute: bool) -> tuple[pd.Series, Reference]:
    """BARO's score without a spread before ``start``: the change from the series' level (the median of
    its samples before, else its first sample after) in units of its own IQR after ``start`` (0
    counting as 1, as BARO does). A step at ``start`` shows against a level of one sample; with no
    sample before, only a change that develops after ``start`` does. Series that never move are
    dropped, as BARO drops constant ones. ``SHORT`` when some series had a sample before, else ``NONE``."""
    split = int((window.index < start).sum())
    values = window.to_numpy(float)
    normal, anomalous = values[:split], values[split:]
    seen = np.isfinite(anomalous).any(axis=0)
    normal, anomalous = normal[:, seen], anomalous[:, seen]
    reference = Reference.SHORT if np.isfinite(normal).any() else Reference.NONE
    if not seen.any():
        return pd.Series(dtype=float), reference
    first = anomalous[np.argmax(np.isfinite(anomalous), axis=0), np.arange(anomalous.shape[1])]
    has_level = np.isfinite(normal).any(axis=0)
    level = first.copy()
    level[has_level] = np.nanmedian(normal[:, has_level], axis=0)
    q75, q25 = np.nanpercentile(anomalous, [75, 25], axis=0)
    iqr = np.where(q75 - q25 > 0, q75 - q25, 1.0)
    z = (anomalous - level) / iqr
    if absolute:
        z = np.abs(z)
    moved = np.nanmax(np.abs(anomalous - level), axis=0) > 0
    return pd.Series(np.nanmax(z, axis=0), index=window.columns[seen])[moved], reference


def _min_max(frame: pd.DataFrame) -> np.ndarray:
    """Each series onto [0, 1] over the window (the authors' normalisation); constant ones become 0."""
    values = frame.to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        scaled = (values - low) / (high - low)
    return pd.DataFrame(scaled).ffill().fillna(0.0).to_numpy()


def _bocpd_change_index(x: np.ndarray, hazard: float) -> int | None:
    """Row where the first new run begins, by multivariate BOCPD; None when the run never breaks.

    Run-length hypotheses are kept as stacked Normal-inverse-Wishart statistics so that each step is a
    handful of batched linear-algebra calls."""
    steps, dims = x.shape
    if steps < 3 or dims == 0:
        return None
    spread = float(np.mean(np.var(x, axis=0)))
    prior_scale = np.eye(dims) * (spread if spread > 0 else 1.0)
    mean = np.zeros((1, dims))
    kappa = np.ones(1)
    dof = np.full(1, float(dims))
    scale = prior_scale[None].copy()
    log_run = np.zeros(1)
    log_h, log_1h = np.log(hazard), np.log1p(-hazard)
    previous = 0
    for t in range(steps):
        point = x[t]
        t_dof = dof - dims + 1
        shape = scale * ((kappa + 1) / (kappa * t_dof))[:, None, None]
        chol = np.linalg.cholesky(shape)
        dev = np.linalg.solve(chol, (point - mean)[..., None])[..., 0]
        mahalanobis = np.sum(dev * dev, axis=1)
        log_det = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
        log_pred = (
            gammaln((t_dof + dims) / 2)
            - gammaln(t_dof / 2)
            - 0.5 * dims * np.log(t_dof * np.pi)
            - 0.5 * log_det
            - 0.5 * (t_dof + dims) * np.log1p(mahalanobis / t_dof)
        )
        joint = log_run + log_pred
        log_run = np.concatenate([[logsumexp(joint) + log_h], joint + log_1h])
        log_run -= logsumexp(log_run)
        diff = point - mean
        scale = np.concatenate(
            [prior_scale[None], scale + (kappa / (kappa + 1))[:, None, None] * diff[:, :, None] * diff[:, None, :]]
        )
        mean = np.concatenate([np.zeros((1, dims)), (kappa[:, None] * mean + point) / (kappa[:, None] + 1)])
        kappa = np.concatenate([[1.0], kappa + 1])
        dof = np.concatenate([[float(dims)], dof + 1])
        run = int(np.argmax(log_run))
        if t > 0 and run < previous:
            return int(np.clip(t + 1 - run, 1, steps - 1))
        previous = run
    return None
