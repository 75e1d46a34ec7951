"""Rank the entities that most likely caused a KPI to break, and say why in plain words.

Input: a wide frame (UTC time index, columns ``(entity, signal)``), the topology, the KPI columns
and the time ``t0`` the KPI broke; rows up to ``t0`` are the reference (NaN rows are masked, e.g. an
earlier incident), later rows the incident. The method, in the order it runs:

1. **Strength.** Each series' robust z after ``t0`` against its own recent past
   (:mod:`._scoring`), counting only the harmful direction of its kind. Rows are scored up to the
   moment the KPI is at its worst: a cause is present by then, later rows pile up side effects.
2. **Evidence per entity**: its strongest own series of the KPI's kind (the channel trouble
   travels along: latency for a slow step, errors for failures; latency too for a throughput KPI)
   or of saturation, errors and lost capacity (the USE method's direct cause indicators: a hot GPU,
   XID errors, a NIC's transmit waits, a lowered power limit). Traffic and outbound measurements
   (what an entity waits on: a client span, a collective, a checkpoint write) are not its own
   trouble, and outcomes (MFU, goodput) are the KPI's kin, not causes.
3. **Explain-away along the topology** (the propagation reasoning of MicroRCA/CausalRCA-style
   graph methods, reduced to what the data supports): an entity whose trouble is matched by an
   anomalous dependency that did not start later is a propagator. A dependency accounts for at
   most the part of the change it made itself in the same units (latencies add up along a call
   chain), and only a dependent that is not itself saturated is cleared by a saturated dependency;
   a saturated shared host is in turn explained by a tenant whose own consumption rose (a noisy
   neighbour, which then takes the blame). An entity that stopped reporting altogether after
   ``t0`` (a GPU off the bus) is strongly anomalous.
4. **Onset order, distance and dependence.** A candidate whose trouble began after the KPI broke
   is discounted (effects follow causes); one the KPI does not depend on is discounted; a farther
   one slightly; and the score is scaled by how strongly the KPI moved with it.

BARO (Pham et al., FSE 2024) is the reference baseline in the same harness (:mod:`._baro`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import cast

import numpy as np
import pandas as pd

from factorylens.rca_service.ranking._scoring import RobustScores, harmful, robust_scores
from factorylens.rca_service.ranking._signals import SignalInfo, SignalKind, SignalSide, describe_signal
from factorylens.rca_service.ranking._topology import INFRASTRUCTURE_KINDS, Topology, kind_of

Column = tuple[str, str]
FULLY_EXPLAINING_Z = 5  # a saturated dependency this many thresholds out clears a dependent entirely
MIN_REFERENCE_ROWS = 20  # the lead never leaves the reference shorter than this


@dataclass(frozen=True)
class RankingConfig:
    """
    :param threshold: robust z above which a series is anomalous
    :param relative_floor: a change smaller than this fraction of a series' level is never anomalous
    :param center_points: the last this many normal points give a series' expected level
    :param reach_factor: score multiplier for entities the KPI does not depend on (1 turns it off)
    :param late_onset_factor: multiplier for candidates whose trouble began after the KPI broke
    :param distance_decay: score lost per hop beyond the first from the KPI (tie-breaker)
    :param silence_z: strength given to an entity that stopped reporting altogether after ``t0``
        (a GPU fallen off the bus, a dead host)
    :param seen_range_points: a series with at least this many reference points is anomalous only
        beyond the range it already visited (periodic checkpoint or evaluation spikes); 0 turns it off
    :param min_latency_share: a latency that grew by less than this share of a latency KPI's growth
        is discounted in proportion (a 1 ms hiccup of a 0.1 ms phase does not explain a 100 ms slower step)
    :param onset_tolerance_rows: a dependency that turned anomalous this many rows after an entity may
        still explain it (independent exporters sample the same moment a scrape apart)
    :param new_behaviour_z: strength added when a series that was exactly 0 turns non-zero (the first
        errors, a throttle flag set): new behaviour is anomalous however small
    :param max_causes: causes returned
    """

    threshold: float = 3.0
    relative_floor: float = 0.05
    center_points: int = 10
    reach_factor: float = 0.3
    late_onset_factor: float = 0.7
    distance_decay: float = 0.02
    silence_z: float = 50.0
    seen_range_points: int = 0
    min_latency_share: float = 0.1
    onset_tolerance_rows: int = 1
    new_behaviour_z: float = 12.0
    max_causes: int = 10

    def __post_init__(self) -> None:
        if self.threshold <= 0 or not 0 <= self.relative_floor < 1 or self.center_points < 1:
            raise ValueError("threshold must be positive, relative_floor in [0, 1), center_points >= 1")
        for name in ("reach_factor", "late_onset_factor"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1]")


@dataclass
class EvidenceSeries:
    entity: str
    signal: str
    z: float
    expected: float
    observed: float
    onset: pd.Timestamp | None


@dataclass
class RankedCause:
    rank: int
    entity: str
    domain: str
    signal: str
    onset: pd.Timestamp | None
    score: float
    explanation: str
    evidence: list[EvidenceSeries] = field(default_factory=list)
    explains: list[str] = field(default_factory=list)  # related anomalous entities read as its effects


@dataclass
class RankingResult:
    causes: list[RankedCause]
    kpi: list[Column]
    t0: pd.Timestamp
    kpi_onset: pd.Timestamp | None

    @property
    def entities(self) -> list[str]:
        return [c.entity for c in self.causes]


SignalDescriber = Callable[[str], SignalInfo]


class RankingEngine:
    """One entry point, :meth:`rank`; stateless, so one engine serves every incident and thread."""

    def __init__(self, config: RankingConfig | None = None) -> None:
        self.config = config or RankingConfig()

    def rank(
        self,
        frame: pd.DataFrame,
        topology: Topology | None,
        kpi: Sequence[Column],
        t0: pd.Timestamp,
        *,
        history: pd.DataFrame | None = None,
        candidates: Iterable[str] | None = None,
        describe: SignalDescriber | Mapping[str, SignalInfo] | None = None,
        lead: pd.Timedelta | None = None,
    ) -> RankingResult:
        """Rank the entities of ``frame`` (or only ``candidates``) as causes of the ``kpi`` break at ``t0``.

        ``lead``: how long before ``t0`` a cause may have begun (the reference of the candidates ends
        that much earlier; the KPI's own reference still ends at ``t0``).
        """
        cfg = self.config
        topology = topology or Topology()
        kpi = cast("list[Column]", [tuple(k) for k in kpi])  # lists too; tuple()'s type drops the pair's length
        if not kpi:
            raise ValueError("rank() needs at least one KPI column")
        describe_fn = _describer(describe)
        t0 = pd.Timestamp(t0)
        silent = _silent_entities(frame, t0)
        frame = frame.loc[:, frame.notna().any(axis=0)]
        present_kpi = [k for k in kpi if k in frame.columns]
        if not present_kpi:
            raise ValueError(f"none of the KPI columns {kpi} has data in the frame")
        columns: list[Column] = list(_pairs(frame))
        entities = np.array([c[0] for c in columns], dtype=object)
        infos = [describe_fn(c[1]) for c in columns]
        kinds = np.array([i.kind.value for i in infos], dtype=object)
        directions = np.array([i.kind.bad_direction for i in infos])
        is_kpi = np.array([c in set(present_kpi) for c in columns])
        kpi_before = np.asarray(frame.index <= t0)
        before = np.asarray(frame.index <= t0 - (lead or pd.Timedelta(0)))
        if before.sum() < MIN_REFERENCE_ROWS <= kpi_before.sum():  # a short history keeps a reference
            before = kpi_before & (np.cumsum(kpi_before) <= MIN_REFERENCE_ROWS)
        lead_rows = int((before != kpi_before).sum())
        values = frame.to_numpy(dtype=float)
        reference, after = values[before], values[~before]
        history_values = None if history is None else history.reindex(columns=frame.columns).to_numpy(dtype=float)

        # 1. how long to look: up to the KPI's worst point
        kpi_index = np.flatnonzero(is_kpi)
        resolution = np.array([i.resolution for i in infos])
        kpi_scores = robust_scores(
            values[kpi_before][:, kpi_index],
            values[~kpi_before][:, kpi_index],
            None if history_values is None else history_values[:, kpi_index],
            relative_floor=cfg.relative_floor,
            center_points=cfg.center_points,
            resolution=resolution[kpi_index],
        )
        kpi_harm = harmful(kpi_scores.z, directions[kpi_index])
        kpi_rows = int(np.argmax(kpi_harm.max(axis=1))) + 1 if kpi_harm.size else 0
        rows = kpi_rows + lead_rows if kpi_rows else 0
        after_index = cast(pd.DatetimeIndex, frame.index[~before][:rows])  # the frame's UTC time index
        kpi_onset_row = (
            _first_above(kpi_harm[:kpi_rows].max(axis=1, keepdims=True), cfg.threshold)[0] + lead_rows
            if kpi_rows
            else np.inf
        )
        scores = robust_scores(
            reference,
            after[:rows],
            history_values,
            relative_floor=cfg.relative_floor,
            center_points=cfg.center_points,
            seen_range_points=cfg.seen_range_points,
            seen_range_cap=cfg.threshold,
            new_behaviour_z=cfg.new_behaviour_z,
            resolution=resolution,
        )
        strength = harmful(scores.z, directions)
        peak = strength.max(axis=0) if rows else np.zeros(len(columns))
        peak_row = strength.argmax(axis=0) if rows else np.zeros(len(columns), dtype=int)
        change = harmful(scores.delta, directions).max(axis=0) if rows else np.zeros(len(columns))
        onset_row = _run_start(strength, peak_row, cfg.threshold)

        # 2. evidence per entity
        kpi_kinds = {describe_fn(s).kind for _, s in present_kpi}
        if kpi_kinds & {SignalKind.ERRORS, SignalKind.GOOD}:
            kpi_kinds |= {SignalKind.ERRORS, SignalKind.GOOD}
        if SignalKind.THROUGHPUT in kpi_kinds:  # less work gets done when anything on its path is slower
            kpi_kinds |= {SignalKind.LATENCY}
        sides = np.array([i.side.value for i in infos], dtype=object)
        own = ~is_kpi & np.isin(sides, [SignalSide.OWN.value, SignalSide.CALLER_VIEW.value])
        channel = own & np.isin(kinds, [k.value for k in kpi_kinds])
        # the USE method's direct indicators: saturation and errors of a resource, and lost capacity
        # (clocks, success rate falling)
        saturation = own & np.isin(kinds, [SignalKind.SATURATION.value, SignalKind.ERRORS.value, SignalKind.GOOD.value])
        evidence = channel | saturation
        clears = evidence & (sides != SignalSide.CALLER_VIEW.value)  # what may clear a dependent
        anomalous = peak > cfg.threshold
        group = np.where(
            kinds == SignalKind.LATENCY.value,
            0,
            np.where(np.isin(kinds, [SignalKind.ERRORS.value, SignalKind.GOOD.value]), 1, -1),
        )
        weighted = peak
        if (
            kpi_kinds & {SignalKind.LATENCY}
            and any(describe_fn(k[1]).kind is SignalKind.LATENCY for k in present_kpi)
            and kpi_rows
        ):
            # latencies add up: a part that grew by a sliver of the KPI's growth cannot have caused it
            kpi_latency = [i for i, c in enumerate(kpi_index) if group[c] == 0]
            kpi_change = harmful(kpi_scores.delta[:kpi_rows, kpi_latency], 1).max() if kpi_latency else 0.0
            if kpi_change > 0:
                share = np.where(channel & (group == 0), change / kpi_change, np.inf)
                weighted = peak * np.clip(share / cfg.min_latency_share, 0.0, 1.0)
        # a tenant's own load: its saturation, or its traffic rising (a neighbour's burst of work)
        rising_rows = np.where(np.isfinite(scores.z), np.clip(scores.z, 0, None), 0.0)
        rising = rising_rows.max(axis=0) if rows else np.zeros(len(columns))
        is_traffic = own & (kinds == SignalKind.TRAFFIC.value)
        load_onset = np.where(
            is_traffic, _first_above(rising_rows, cfg.threshold), np.where(saturation & anomalous, onset_row, np.inf)
        )
        load = np.where(is_traffic, rising, np.where(saturation, weighted, 0.0))
        table = pd.DataFrame(
            {
                "entity": entities,
                "evidence": np.where(evidence, weighted, 0.0),
                "channel": np.where(channel, weighted, 0.0),
                "clearing": np.where(clears, weighted, 0.0),
                "saturation": np.where(saturation, weighted, 0.0),
                "load": load,
                "load_onset": load_onset,
                "change0": np.where(channel & anomalous & (group == 0), change, 0.0),
                "change1": np.where(channel & anomalous & (group == 1), change, 0.0),
                "clear0": np.where(clears & anomalous & (group == 0), change, 0.0),
                "clear1": np.where(clears & anomalous & (group == 1), change, 0.0),
                "onset": np.where(evidence & anomalous, onset_row, np.inf),
            }
        )
        per_entity = table.groupby("entity").agg(
            {
                "evidence": "max",
                "channel": "max",
                "clearing": "max",
                "saturation": "max",
                "load": "max",
                "load_onset": "min",
                "change0": "max",
                "change1": "max",
                "clear0": "max",
                "clear1": "max",
            }
        )
        # an entity's trouble began when its strongest anomaly did (not with a side series' blip)
        strongest = table[np.isfinite(table["onset"])].sort_values("evidence", ascending=False, kind="mergesort")
        per_entity["onset"] = strongest.groupby("entity")["onset"].first()
        all_entities = sorted(set(entities) | topology.entities | silent)
        per_entity = per_entity.reindex(all_entities)
        amounts = ["evidence", "channel", "clearing", "saturation", "load", "change0", "change1", "clear0", "clear1"]
        per_entity[amounts] = per_entity[amounts].fillna(0.0)
        per_entity[["onset", "load_onset"]] = per_entity[["onset", "load_onset"]].fillna(np.inf)
        for entity in silent:
            per_entity.loc[entity, ["evidence", "clearing", "saturation"]] = cfg.silence_z
            per_entity.loc[entity, "onset"] = 0
        strength_log = np.log1p(per_entity["evidence"].to_numpy())
        score = pd.Series(strength_log, index=all_entities)

        # 3. explain-away
        explained_by: dict[str, list[str]] = {}
        consumers: set[str] = set()
        fraction = self._explained(per_entity, topology, {e for e, _ in present_kpi}, explained_by, consumers)
        for consumer in consumers:  # a neighbour's burst of work is its trouble, however healthy it looks
            score[consumer] = max(score[consumer], np.log1p(_cell(per_entity, consumer, "load")))
        score = score * (1 - 0.999 * fraction)

        # 4. reach, distance, onset order, dependence
        in_trouble = per_entity.index[per_entity["saturation"] > cfg.threshold]
        distance = topology.related({e for e, _ in present_kpi}, shared=in_trouble) if topology.edges else {}
        if distance:
            hops = pd.Series([distance.get(e, np.nan) for e in all_entities], index=all_entities)
            factor = np.where(
                hops.isna(),
                cfg.reach_factor,
                np.clip(1 - cfg.distance_decay * (hops.fillna(1) - 1).clip(lower=0), 0.5, 1),
            )
            score = score * factor
        late = per_entity["onset"].to_numpy() > kpi_onset_row + 1
        score = score * np.where(np.isfinite(per_entity["onset"].to_numpy()) & late, cfg.late_onset_factor, 1.0)
        dependence = _kpi_dependence(values, kpi_index, entities, anomalous & own, all_entities)
        score = score * (0.5 + 0.5 * dependence)

        keep = score.index if candidates is None else [c for c in dict.fromkeys(candidates)]
        score = score.reindex(keep).fillna(0.0)
        if candidates is None:  # a KPI's own entity is a cause only through its other signals
            score = score.drop(
                index=[e for e, _ in present_kpi if e in score.index and per_entity.loc[e, "evidence"] == 0],
                errors="ignore",
            )
        order = score[score > 0].sort_values(ascending=False, kind="mergesort")  # no anomaly, no cause

        kpi_onset = after_index[int(kpi_onset_row)] if np.isfinite(kpi_onset_row) else None
        context = _Context(
            frame,
            columns,
            peak,
            weighted,
            peak_row,
            onset_row,
            scores,
            after_index,
            evidence,
            per_entity,
            present_kpi,
            kpi_scores,
            kpi_harm,
            rows,
            kpi_rows,
            distance,
            explained_by,
            topology,
            silent,
            describe_fn,
            t0,
            kpi_onset,
            load,
            consumers,
        )
        causes = [
            context.cause(rank, str(entity), float(value))
            for rank, (entity, value) in enumerate(order.iloc[: cfg.max_causes].items(), start=1)
        ]
        return RankingResult(causes, present_kpi, t0, kpi_onset)

    def _explained(
        self,
        per_entity: pd.DataFrame,
        topology: Topology,
        kpi_entities: set[str],
        explained_by: dict[str, list[str]],
        consumers: set[str],
    ) -> np.ndarray:
        """The fraction of each entity's evidence that an anomalous dependency (or tenant) accounts for."""
        cfg = self.config
        log_evidence = np.log1p(per_entity["evidence"])
        log_channel = np.log1p(per_entity["channel"])
        log_clearing = np.log1p(per_entity["clearing"])
        saturated = per_entity["saturation"] > cfg.threshold
        loaded = per_entity["load"] > cfg.threshold
        onset = per_entity["onset"]
        threshold = np.log1p(cfg.threshold)
        full_clearing = np.log1p(FULLY_EXPLAINING_Z * cfg.threshold)
        down, up = topology.dependencies(), topology.dependents()
        fraction = pd.Series(0.0, index=per_entity.index)
        for entity in per_entity.index[log_evidence > threshold]:
            explainers: dict[str, float] = {}
            for dependency in down.get(entity, ()):
                if dependency in kpi_entities or dependency not in per_entity.index:
                    continue
                if (
                    log_clearing[dependency] <= threshold
                    or onset[dependency] > onset[entity] + cfg.onset_tolerance_rows
                ):
                    continue
                shares = []
                if log_channel[dependency] > threshold and log_channel[entity] > threshold:
                    # same kind, same units: compare strengths and sizes (latencies add up along a chain)
                    shares.append(
                        min(
                            log_clearing[dependency] / log_evidence[entity],
                            self._magnitude_share(per_entity, dependency, entity),
                        )
                    )
                if saturated[dependency] and not saturated[entity]:
                    # a saturated resource slows what runs on it; a resource's z and a latency's are not
                    # comparable, so it clears as far as it is anomalous: nothing at the threshold, all at
                    # FULLY_EXPLAINING_Z thresholds. A saturated dependent is not cleared: it may be the
                    # consumer
                    shares.append(
                        (np.log1p(_cell(per_entity, dependency, "saturation")) - threshold)
                        / (full_clearing - threshold)
                    )
                if not shares:
                    continue
                share = max(shares)
                explainers[dependency] = min(share, 1.0)
            tenants: set[str] = set()
            if kind_of(entity) in INFRASTRUCTURE_KINDS and saturated[entity]:
                for tenant in up.get(entity, ()):  # a noisy neighbour saturating shared infrastructure
                    if (
                        tenant in per_entity.index
                        and loaded[tenant]
                        and tenant not in kpi_entities
                        and per_entity.at[tenant, "load_onset"] <= onset[entity] + cfg.onset_tolerance_rows
                        and topology.edges.get((tenant, entity)) in ("runs_on", "uses")
                    ):
                        explainers[tenant] = min(
                            np.log1p(_cell(per_entity, tenant, "load")) / log_evidence[entity], 1.0
                        )
                        tenants.add(tenant)
            if explainers:
                best = max(explainers, key=explainers.__getitem__)
                fraction[entity] = explainers[best]
                explained_by.setdefault(best, []).append(entity)
                if best in tenants:
                    consumers.add(best)
        return fraction.to_numpy()

    @staticmethod
    def _magnitude_share(per_entity: pd.DataFrame, dependency: str, entity: str) -> float:
        """A dependency explains at most the part of the change it made itself (same units)."""
        ratios = [
            _cell(per_entity, dependency, f"clear{g}") / _cell(per_entity, entity, f"change{g}")
            for g in ("0", "1")
            if _cell(per_entity, entity, f"change{g}") > 0
        ]
        return max(ratios) if ratios else 1.0


def _cell(frame: pd.DataFrame, row: str, column: str) -> float:
    """``frame.at[row, column]`` of a float column (the stubs type a cell as any scalar: a frame has no dtype)."""
    return cast(float, frame.at[row, column])


def _pairs(frame: pd.DataFrame) -> pd.MultiIndex:
    """The frame's ``(entity, signal)`` columns (the stubs type every frame's columns as ``Index[str]``)."""
    return cast(pd.MultiIndex, frame.columns)


def _describer(describe: SignalDescriber | Mapping[str, SignalInfo] | None) -> SignalDescriber:
    if describe is None:
        return describe_signal
    if callable(describe):
        return describe
    table = dict(describe)
    return lambda signal: table.get(signal) or describe_signal(signal)


def _first_above(strength: np.ndarray, threshold: float) -> np.ndarray:
    above = strength > threshold
    return np.where(above.any(axis=0), above.argmax(axis=0).astype(float), np.inf)


def _run_start(strength: np.ndarray, peak_row: np.ndarray, threshold: float) -> np.ndarray:
    """Per column: the first row of the anomalous run that leads to its peak (inf when not anomalous).

    A transient blip earlier in the window is not when the trouble began.
    """
    if not strength.size:
        return np.full(strength.shape[1], np.inf)
    rows = np.arange(strength.shape[0])[:, None]
    calm = (strength <= threshold) & (rows <= peak_row[None, :])
    start = np.where(calm, rows, -1).max(axis=0) + 1
    peaked = strength[peak_row, np.arange(strength.shape[1])] > threshold
    return np.where(peaked, start.astype(float), np.inf)


def _silent_entities(frame: pd.DataFrame, t0: pd.Timestamp, recent_rows: int = 3) -> set[str]:
    """Entities that reported right up to ``t0`` and then nothing at all, while others went on."""
    after = frame.index > t0
    if after.sum() < 2 or (~after).sum() < 1:
        return set()
    reported_before = frame.loc[~after].iloc[-recent_rows:].notna().any(axis=0)
    reported_after = frame.loc[after].notna().any(axis=0)
    by_entity = pd.DataFrame({"before": reported_before, "after": reported_after}).groupby(level=0).any()
    if not by_entity["after"].any():
        return set()
    return set(by_entity.index[by_entity["before"] & ~by_entity["after"]])


def _kpi_dependence(
    values: np.ndarray, kpi_index: np.ndarray, entities: np.ndarray, eligible: np.ndarray, all_entities: list[str]
) -> np.ndarray:
    """Per entity: the largest |correlation| between a KPI and one of its anomalous own series."""
    filled = pd.DataFrame(values).ffill().bfill().fillna(0.0).to_numpy()
    std = filled.std(axis=0)
    standardized = (filled - filled.mean(axis=0)) / np.where(std > 0, std, np.inf)
    kpis = standardized[:, kpi_index]
    correlation = np.abs(standardized.T @ kpis / max(len(filled), 1)).max(axis=1)
    per_entity = pd.Series(np.where(eligible, correlation, 0.0)).groupby(entities).max()
    return per_entity.reindex(all_entities).fillna(0.0).to_numpy()


@dataclass
class _Context:
    """Everything the explanation of one cause draws on."""

    frame: pd.DataFrame
    columns: list[Column]
    peak: np.ndarray
    weighted: np.ndarray  # peak as the ranking weighed it
    peak_row: np.ndarray
    onset_row: np.ndarray
    scores: RobustScores
    after_index: pd.DatetimeIndex
    evidence: np.ndarray
    per_entity: pd.DataFrame
    kpi: list[Column]
    kpi_scores: RobustScores
    kpi_harm: np.ndarray
    rows: int
    kpi_rows: int
    distance: dict[str, int]
    explained_by: dict[str, list[str]]
    topology: Topology
    silent: set[str]
    describe: SignalDescriber
    t0: pd.Timestamp
    kpi_onset: pd.Timestamp | None
    load: np.ndarray  # per column: how much more work it shows (traffic rising, saturation)
    consumers: set[str]  # entities blamed for what they consumed (noisy neighbours)

    def _time(self, row: float) -> pd.Timestamp | None:
        return self.after_index[int(row)] if np.isfinite(row) and row < len(self.after_index) else None

    def cause(self, rank: int, entity: str, score: float) -> RankedCause:
        strength = self.load if entity in self.consumers else self.weighted
        own = [
            i
            for i, c in enumerate(self.columns)
            if c[0] == entity and (self.load[i] > 0 if entity in self.consumers else self.evidence[i])
        ]
        own.sort(key=lambda i: -strength[i])
        items = [
            EvidenceSeries(
                entity,
                self.columns[i][1],
                float(strength[i]),
                float(self.scores.center[i]),
                float(self.scores.center[i] + self.scores.delta[int(self.peak_row[i]), i])
                if self.rows
                else float("nan"),
                self._time(self.onset_row[i]),
            )
            for i in own[:3]
        ]
        if entity in self.silent:
            signal, domain = "(stopped reporting)", _entity_domain(entity)
            onset = self._time(0)
        elif items:
            signal = items[0].signal
            domain = self.describe(signal).domain
            onset = items[0].onset
        else:
            signal, domain, onset = "", _entity_domain(entity), None
        effects = sorted(self.explained_by.get(entity, []))
        return RankedCause(
            rank,
            entity,
            domain,
            signal,
            onset,
            score,
            self._explain(entity, domain, signal, items, onset, effects),
            items,
            effects,
        )

    def _explain(
        self,
        entity: str,
        domain: str,
        signal: str,
        items: list[EvidenceSeries],
        onset: pd.Timestamp | None,
        effects: list[str],
    ) -> str:
        kpi_entity, _kpi_signal = self.kpi[0]
        k = int(np.argmax(self.kpi_harm.max(axis=0))) if self.kpi_harm.size else 0
        kpi_before = float(self.kpi_scores.center[k])
        kpi_worst = kpi_before + float(self.kpi_scores.delta[self.kpi_rows - 1, k]) if self.kpi_rows else float("nan")
        kpi_text = f"{self.kpi[k][1]} on {self.kpi[k][0]} went from {_num(kpi_before)} to {_num(kpi_worst)}"
        if entity in self.silent:
            what = f"{entity} ({domain}) stopped reporting altogether right after {_when(self.t0)}"
        elif items:
            e = items[0]
            direction = "rose" if e.observed > e.expected else "fell"
            what = (
                f"{signal} on {entity} ({domain}) {direction} from {_num(e.expected)} to {_num(e.observed)}, "
                f"{e.z:.0f} times its normal variation"
            )
            if len(items) > 1:
                what += "; " + ", ".join(f"{i.signal} moved too ({i.z:.0f}x)" for i in items[1:])
        else:
            what = f"{entity} ({domain}) showed no anomaly of its own; it ranks by its position only"
        when = ""
        if onset is not None and self.kpi_onset is not None:
            lead = (self.kpi_onset - onset).total_seconds()
            relation = (
                f"{lead:.0f} s before the KPI broke"
                if lead > 0
                else "in the same sample as the KPI broke"
                if lead == 0
                else f"{-lead:.0f} s after the KPI broke"
            )
            when = f" It started at {_when(onset)}, {relation}."
        elif onset is not None:
            when = f" It started at {_when(onset)}."
        path = ""
        hops = self.distance.get(entity)
        if hops == 0:
            path = " It is where a KPI is measured."
        elif hops is not None:
            chain = next((c for c in (self.topology.path(k, entity) for k, _ in self.kpi) if c), [])
            path = (
                f" {chain[0]} depends on it ({' -> '.join(chain)})."
                if chain
                else f" It shares infrastructure with {kpi_entity} ({hops} hop{'s' if hops > 1 else ''} away)."
            )
        elif self.distance:
            path = f" The topology shows no dependency of {kpi_entity} on it, so it ranks lower."
        consequences = ""
        if effects:
            shown = ", ".join(effects[:4]) + (f" and {len(effects) - 4} more" if len(effects) > 4 else "")
            consequences = f" The anomalies of {shown} are read as its effects."
        return f"{kpi_text}. {what}.{when}{path}{consequences}"


def _entity_domain(entity: str) -> str:
    return {
        "gpu": "gpu",
        "host": "host",
        "nic": "network",
        "fs": "storage",
        "disk": "storage",
        "rank": "app",
        "job": "app",
        "service": "app",
        "pod": "app",
    }.get(kind_of(entity), "app")


def _num(value: float) -> str:
    return f"{value:.4g}"


def _when(timestamp: pd.Timestamp | datetime) -> str:
    ts = pd.Timestamp(timestamp)
    ts = ts.tz_localize(timezone.utc) if ts.tzinfo is None else ts.tz_convert(timezone.utc)
    return ts.strftime("%Y-%m-%d %H:%M:%S UTC")
