"""The ranking engine's stages, each a function over small records (see :mod:`._engine` for the
method): inputs → strength → evidence per entity → explain-away → topology and timing → order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import cast

import numpy as np
import pandas as pd

from factorylens.rca_service.detection import RobustScores, RobustZDetector, harmful
from factorylens.rca_service.ranking._base import SHORT_REFERENCE_POINTS, Column, Reference
from factorylens.rca_service.ranking._signals import SignalDescriber, SignalInfo, SignalKind, SignalSide
from factorylens.rca_service.ranking._topology import INFRASTRUCTURE_KINDS, QUEUEING_KINDS, Topology, kind_of

FULLY_EXPLAINING_Z = 5  # a saturated dependency this many thresholds out clears a dependent entirely
MIN_REFERENCE_ROWS = 20  # the lead never leaves the reference shorter than this
STRONG_SHARE = 0.9  # of the strongest evidence (log scale): series this strong date an entity's trouble
AMOUNTS = [
    "evidence",
    "channel",
    "clearing",
    "clearing_peak",
    "saturation",
    "load",
    "change0",
    "change1",
    "clear0",
    "clear1",
]


@dataclass
class Inputs:
    """The frame as the stages read it: values, what each column means, which rows are normal."""

    frame: pd.DataFrame
    columns: list[Column]
    infos: list[SignalInfo]
    kpi: list[Column]
    values: np.ndarray
    before: np.ndarray  # reference rows of the candidates (they may lead the KPI)
    kpi_before: np.ndarray  # reference rows of the KPI
    history: np.ndarray | None
    silent: set[str]
    t0: pd.Timestamp
    reference: Reference  # the frame's as a whole (see :func:`prepare`)

    @cached_property
    def kpi_reference(self) -> np.ndarray:
        """The rows the KPI is measured against."""
        return self._reference_rows(self.kpi_before)

    @cached_property
    def candidate_reference(self) -> np.ndarray:
        """The rows the candidates are measured against."""
        return self._reference_rows(self.before)

    def _reference_rows(self, rows: np.ndarray) -> np.ndarray:
        if self.reference is Reference.EARLIER and self.history is not None:
            return self.history
        return self.values[rows]

    @cached_property
    def reference_points(self) -> np.ndarray:
        """Per column, its finite samples in the candidates' reference."""
        return np.isfinite(self.candidate_reference).sum(axis=0)

    @cached_property
    def short_reference(self) -> np.ndarray:
        """Per column: a sample or two of its own in a frame that has a reference (see :attr:`references`)."""
        if self.reference in (Reference.NONE, Reference.SHORT):
            return np.zeros(len(self.columns), dtype=bool)
        return (self.reference_points > 0) & (self.reference_points < SHORT_REFERENCE_POINTS)

    @cached_property
    def references(self) -> list[Reference]:
        """Per column, what it was measured against: a column without a sample of its own there has
        none (it is scored as new behaviour), one with a sample or two a level but no spread."""
        if self.reference is Reference.NONE:
            return [Reference.NONE] * len(self.columns)
        points = self.reference_points
        return [
            Reference.NONE if n == 0 else Reference.SHORT if n < SHORT_REFERENCE_POINTS else self.reference
            for n in points
        ]

    @cached_property
    def entities(self) -> np.ndarray:
        return np.array([c[0] for c in self.columns], dtype=object)

    @cached_property
    def kinds(self) -> np.ndarray:
        return np.array([i.kind.value for i in self.infos], dtype=object)

    @cached_property
    def directions(self) -> np.ndarray:
        return np.array([i.kind.bad_direction for i in self.infos])

    @cached_property
    def is_kpi(self) -> np.ndarray:
        kpi = set(self.kpi)
        return np.array([c in kpi for c in self.columns])

    @cached_property
    def kpi_index(self) -> np.ndarray:
        return np.flatnonzero(self.is_kpi)

    @cached_property
    def lead_rows(self) -> int:
        return int((self.before != self.kpi_before).sum())


@dataclass
class Strength:
    """How anomalous every column is after ``t0``, up to the KPI's worst point."""

    kpi_scores: RobustScores
    kpi_harm: np.ndarray  # rows × KPI columns, harmful side only
    kpi_rows: int  # scored rows up to the KPI's worst point
    kpi_onset_row: float
    rows: int
    after_index: pd.DatetimeIndex
    scores: RobustScores
    strength: np.ndarray  # rows × columns, harmful side only
    peak: np.ndarray
    peak_row: np.ndarray
    change: np.ndarray
    onset_row: np.ndarray


@dataclass
class Evidence:
    """Per column: which kind of evidence it is and how strong; per entity: the aggregate."""

    evidence: np.ndarray  # column counts as its entity's trouble
    own: np.ndarray
    weighted: np.ndarray  # peak strength as the ranking weighs it
    load: np.ndarray  # how much more work a column shows (traffic rising, saturation)
    load_onset: np.ndarray  # per column: the row its load first rose beyond the threshold
    anomalous: np.ndarray
    per_entity: pd.DataFrame
    explained_by: dict[str, list[str]] = field(default_factory=dict)
    consumers: set[str] = field(default_factory=set)  # entities blamed for what they consumed
    own_load: set[str] = field(default_factory=set)  # KPI entities whose trouble is their own rising load


def prepare(
    frame: pd.DataFrame,
    kpi: Iterable[Column],
    t0: pd.Timestamp,
    lead: pd.Timedelta | None,
    describe: SignalDescriber,
    history: pd.DataFrame | None,
) -> Inputs:
    """The frame as the stages read it, with its reference: rows up to ``t0`` (up to ``t0 - lead``
    for the candidates, never fewer than ``MIN_REFERENCE_ROWS``, nor none observed while rows up to
    ``t0`` were). When no row up to ``t0`` was observed at all (an empty window, or one wholly masked
    by an earlier incident), the ``history`` stands in (``EARLIER``); without one, the first observed
    row after ``t0`` does (``NONE``): only a change that develops after it shows, and the ranking says
    it is a guess rather than raising or mistaking every series for new behaviour."""
    kpi = [cast(Column, tuple(k)) for k in kpi]
    if not kpi:
        raise ValueError("rank() needs at least one KPI column")
    silent = silent_entities(frame, t0)
    frame = frame.loc[:, frame.notna().any(axis=0)]
    present = [k for k in kpi if k in frame.columns]
    if not present:
        raise ValueError(f"none of the KPI columns {kpi} has data in the frame")
    columns: list[Column] = list(cast(pd.MultiIndex, frame.columns))
    kpi_before = np.asarray(frame.index <= t0)
    before = np.asarray(frame.index <= t0 - (lead or pd.Timedelta(0)))
    if before.sum() < MIN_REFERENCE_ROWS <= kpi_before.sum():  # a short history keeps a reference
        before = kpi_before & (np.cumsum(kpi_before) <= MIN_REFERENCE_ROWS)
    observed = frame.notna().any(axis=1).to_numpy()
    if not observed[before].any():  # wholly masked before the lead: the first observed rows up to t0
        before = kpi_before & (np.cumsum(kpi_before & observed) <= MIN_REFERENCE_ROWS)
    older = None if history is None else history.reindex(columns=frame.columns).to_numpy(dtype=float)
    reference = Reference.RECENT if observed[before].sum() >= SHORT_REFERENCE_POINTS else Reference.SHORT
    if not observed[kpi_before].any():
        if older is not None and np.isfinite(older).any():
            reference = Reference.EARLIER
        else:
            reference = Reference.NONE  # the first observed row (after t0: none is before) stands in
            kpi_before = before = np.arange(len(frame)) <= np.flatnonzero(observed)[0]
    return Inputs(
        frame,
        columns,
        [describe(c[1]) for c in columns],
        present,
        frame.to_numpy(dtype=float),
        before,
        kpi_before,
        older,
        silent,
        t0,
        reference,
    )


def strength(inputs: Inputs, kpi_detector: RobustZDetector, detector: RobustZDetector, threshold: float) -> Strength:
    """Each column's robust z after ``t0`` (harmful side), scored up to the KPI's worst point: a
    cause is present by then, later rows pile up side effects."""
    values, k = inputs.values, inputs.kpi_index
    resolution = np.array([i.resolution for i in inputs.infos])
    kpi_scores = kpi_detector.scores(
        inputs.kpi_reference[:, k],
        values[~inputs.kpi_before][:, k],
        None if inputs.history is None else inputs.history[:, k],
        resolution=resolution[k],
    )
    kpi_harm = harmful(kpi_scores.z, inputs.directions[k])
    kpi_rows = int(np.argmax(kpi_harm.max(axis=1))) + 1 if kpi_harm.size else 0
    lead_rows = inputs.lead_rows
    rows = kpi_rows + lead_rows if kpi_rows else 0
    after_index = cast(pd.DatetimeIndex, inputs.frame.index[~inputs.before][:rows])
    kpi_onset_row = (
        first_above(kpi_harm[:kpi_rows].max(axis=1, keepdims=True), threshold)[0] + lead_rows if kpi_rows else np.inf
    )
    scores = detector.scores(
        inputs.candidate_reference, values[~inputs.before][:rows], inputs.history, resolution=resolution
    )
    harm = harmful(scores.z, inputs.directions)
    # a sample or two before t0 give a level but no spread: such a series' z measures nothing (spans
    # kept only around faults; a series begun just before), so it is shown, not weighed
    harm[:, inputs.short_reference] = 0.0
    n = len(inputs.columns)
    peak = harm.max(axis=0) if rows else np.zeros(n)
    peak_row = harm.argmax(axis=0) if rows else np.zeros(n, dtype=int)
    change = harmful(scores.delta, inputs.directions).max(axis=0) if rows else np.zeros(n)
    return Strength(
        kpi_scores,
        kpi_harm,
        kpi_rows,
        float(kpi_onset_row),
        rows,
        after_index,
        scores,
        harm,
        peak,
        peak_row,
        change,
        run_start(harm, peak_row, threshold),
    )


def kpi_kinds(inputs: Inputs, describe: SignalDescriber) -> set[SignalKind]:
    """The kinds of trouble that travel to the KPI: its own kind (errors with success rates;
    latency too for a throughput KPI: less work gets done when anything on its path is slower)."""
    kinds = {describe(s).kind for _, s in inputs.kpi}
    if kinds & {SignalKind.ERRORS, SignalKind.GOOD}:
        kinds |= {SignalKind.ERRORS, SignalKind.GOOD}
    if SignalKind.THROUGHPUT in kinds:
        kinds |= {SignalKind.LATENCY}
    return kinds


def evidence(
    inputs: Inputs, s: Strength, channel_kinds: set[SignalKind], threshold: float, min_latency_share: float
) -> Evidence:
    """Per entity: its strongest own series of the KPI's channel or of saturation, errors and lost
    capacity (the USE method's direct indicators); traffic and outbound measurements are not its
    own trouble, outcomes (MFU, goodput) are the KPI's kin."""
    kinds = inputs.kinds
    sides = np.array([i.side.value for i in inputs.infos], dtype=object)
    can_slow = np.array([i.can_slow for i in inputs.infos])
    own = ~inputs.is_kpi & np.isin(sides, [SignalSide.OWN.value, SignalSide.CALLER_VIEW.value])
    channel = own & np.isin(kinds, [k.value for k in channel_kinds])
    saturation = own & np.isin(kinds, [SignalKind.SATURATION.value, SignalKind.ERRORS.value, SignalKind.GOOD.value])
    is_evidence = channel | saturation
    clears = is_evidence & (sides != SignalSide.CALLER_VIEW.value) & can_slow  # what may clear a dependent
    anomalous = s.peak > threshold
    group = np.where(
        kinds == SignalKind.LATENCY.value,
        0,
        np.where(np.isin(kinds, [SignalKind.ERRORS.value, SignalKind.GOOD.value]), 1, -1),
    )
    weighted = _latency_weighted(inputs, s, channel, group, channel_kinds, min_latency_share)
    # a tenant's own load: its saturation, or its traffic or work rising (a neighbour's burst of work)
    rising_rows = np.where(np.isfinite(s.scores.z), np.clip(s.scores.z, 0, None), 0.0)
    rising = rising_rows.max(axis=0) if s.rows else np.zeros(len(inputs.columns))
    falling_rows = np.where(np.isfinite(s.scores.z), np.clip(-s.scores.z, 0, None), 0.0)
    is_traffic = own & np.isin(kinds, [SignalKind.TRAFFIC.value, SignalKind.THROUGHPUT.value])
    consuming = saturation & can_slow  # a symptom (an idle flag, clocks falling) is no load on what it shares
    load_onset = np.where(
        is_traffic, first_above(rising_rows, threshold), np.where(consuming & anomalous, s.onset_row, np.inf)
    )
    load = np.where(is_traffic, rising, np.where(consuming, weighted, 0.0))
    table = pd.DataFrame(
        {
            "entity": inputs.entities,
            "evidence": np.where(is_evidence, weighted, 0.0),
            "channel": np.where(channel, weighted, 0.0),
            "clearing": np.where(clears, weighted, 0.0),
            "clearing_peak": np.where(clears, s.peak, 0.0),
            "saturation": np.where(saturation, weighted, 0.0),
            "load": load,
            "load_onset": load_onset,
            "traffic_fall_onset": np.where(is_traffic, first_above(falling_rows, threshold), np.inf),
            "change0": np.where(channel & anomalous & (group == 0), s.change, 0.0),
            "change1": np.where(channel & anomalous & (group == 1), s.change, 0.0),
            "clear0": np.where(clears & anomalous & (group == 0), s.change, 0.0),
            "clear1": np.where(clears & anomalous & (group == 1), s.change, 0.0),
            "onset": np.where(is_evidence & anomalous, s.onset_row, np.inf),
            "can_slow": np.where(is_evidence & anomalous, can_slow, False),
        }
    )
    return Evidence(is_evidence, own, weighted, load, load_onset, anomalous, _per_entity(table))


def _latency_weighted(
    inputs: Inputs,
    s: Strength,
    channel: np.ndarray,
    group: np.ndarray,
    channel_kinds: set[SignalKind],
    min_share: float,
) -> np.ndarray:
    """Latencies add up: a part that grew by a sliver of a latency KPI's growth cannot have caused it."""
    kpi_latency = [i for i, c in enumerate(inputs.kpi_index) if group[c] == 0]
    if not (SignalKind.LATENCY in channel_kinds and kpi_latency and s.kpi_rows):
        return s.peak
    kpi_change = harmful(s.kpi_scores.delta[: s.kpi_rows, kpi_latency], 1).max()
    if kpi_change <= 0:
        return s.peak
    share = np.where(channel & (group == 0), s.change / kpi_change, np.inf)
    return s.peak * np.clip(share / min_share, 0.0, 1.0)


def _per_entity(table: pd.DataFrame) -> pd.DataFrame:
    """Per entity: the strongest of its evidence that can slow the workload (only when none can, the
    strongest of the rest: a GPU's idle flag is a symptom, its link errors the trouble), and when
    that trouble began: the earliest onset among its series at least ``STRONG_SHARE`` as strong as
    that (a throttle flag and the degraded status both at the cap: the first of them; not a side
    series' blip). Independent of the columns' order."""
    aggregate = {name: "max" for name in AMOUNTS} | {"load_onset": "min", "traffic_fall_onset": "min"}
    per_entity = table.groupby("entity").agg(aggregate)
    can = table[table["can_slow"]].groupby("entity")["evidence"].max().reindex(per_entity.index)
    per_entity["evidence"] = can.where(can > 0).fillna(per_entity["evidence"])
    anomalous = table[np.isfinite(table["onset"])]
    can_slow = anomalous.groupby("entity")["can_slow"].any()
    kept = anomalous[anomalous["can_slow"] == can_slow.reindex(anomalous["entity"]).to_numpy()]
    strongest = kept.groupby("entity")["evidence"].transform("max")
    strong = kept[np.log1p(kept["evidence"]) >= STRONG_SHARE * np.log1p(strongest)]
    per_entity["onset"] = strong.groupby("entity")["onset"].min()
    per_entity["first_onset"] = anomalous.groupby("entity")["onset"].min()
    per_entity["can_slow"] = can_slow
    return per_entity


def complete(ev: Evidence, entities: Iterable[str], silent: set[str], silence_z: float) -> None:
    """Every entity the topology knows gets a row; one that stopped reporting altogether after
    ``t0`` (a GPU off the bus) is strongly anomalous from the start."""
    per_entity = ev.per_entity.reindex(sorted(set(entities)))
    per_entity[AMOUNTS] = per_entity[AMOUNTS].fillna(0.0)
    per_entity[["onset", "first_onset", "load_onset"]] = per_entity[["onset", "first_onset", "load_onset"]].fillna(
        np.inf
    )
    per_entity["can_slow"] = per_entity["can_slow"].astype("boolean").fillna(False).astype(bool)
    for entity in silent:
        per_entity.loc[entity, ["evidence", "clearing", "saturation"]] = silence_z
        per_entity.loc[entity, ["onset", "can_slow"]] = [0, True]
    ev.per_entity = per_entity


def explain_away(
    ev: Evidence, topology: Topology, kpi_entities: set[str], threshold: float, onset_tolerance_rows: int
) -> np.ndarray:
    """The fraction of each entity's evidence that an anomalous dependency (or tenant) accounts for
    (the propagation reasoning of MicroRCA/CausalRCA-style graph methods, reduced to what the data
    supports); records who explains whom in ``ev``."""
    pe = ev.per_entity
    log_evidence = np.log1p(pe["evidence"])
    fraction = pd.Series(0.0, index=pe.index)
    down, up = topology.dependencies(), topology.dependents()
    for entity in pe.index[log_evidence > np.log1p(threshold)]:
        explainers = _dependency_shares(pe, entity, down.get(entity, ()), kpi_entities, threshold, onset_tolerance_rows)
        tenants = _tenant_shares(
            pe, entity, up.get(entity, ()), topology, kpi_entities, threshold, onset_tolerance_rows
        )
        explainers.update(tenants)
        if explainers:
            best = max(sorted(explainers), key=explainers.__getitem__)
            fraction[entity] = explainers[best]
            ev.explained_by.setdefault(best, []).append(entity)
            if best in tenants:
                ev.consumers.add(best)
    return fraction.to_numpy()


def _dependency_shares(
    pe: pd.DataFrame, entity: str, dependencies: Iterable[str], kpi_entities: set[str], threshold: float, tolerance: int
) -> dict[str, float]:
    """An anomalous dependency that did not start later accounts for at most the part of the change it
    made itself in the same units; a saturated one clears a dependent that is not itself saturated."""
    log_t, full = np.log1p(threshold), np.log1p(FULLY_EXPLAINING_Z * threshold)
    out: dict[str, float] = {}
    queueing = kind_of(entity) in QUEUEING_KINDS
    for dependency in dependencies:
        if dependency in kpi_entities or dependency not in pe.index:
            continue
        if (
            np.log1p(_cell(pe, dependency, "clearing_peak" if queueing else "clearing")) <= log_t
            or _cell(pe, dependency, "onset") > _cell(pe, entity, "onset") + tolerance
        ):
            continue
        shares = []
        if np.log1p(_cell(pe, dependency, "channel")) > log_t and np.log1p(_cell(pe, entity, "channel")) > log_t:
            strength_share = np.log1p(_cell(pe, dependency, "clearing")) / np.log1p(_cell(pe, entity, "evidence"))
            shares.append(min(strength_share, _magnitude_share(pe, dependency, entity)))
        if _cell(pe, dependency, "saturation") > threshold and not _cell(pe, entity, "saturation") > threshold:
            # a resource's z and a latency's are not comparable: it clears as far as it is anomalous,
            # nothing at the threshold, all at FULLY_EXPLAINING_Z thresholds
            shares.append((np.log1p(_cell(pe, dependency, "saturation")) - log_t) / (full - log_t))
        if queueing:
            # a server's queue and cache fill up whenever what it runs on serves it slower: any trouble
            # of its dependency that can slow it clears it, by the same measure, however small a part of
            # a request's latency one of its operations is (a weight load is a million reads)
            shares.append((np.log1p(_cell(pe, dependency, "clearing_peak")) - log_t) / (full - log_t))
        if shares:
            out[dependency] = min(max(shares), 1.0)
    return out


def own_load(ev: Evidence, kpi_entities: set[str], fraction: np.ndarray, threshold: float, tolerance: int) -> None:
    """A KPI entity saturated by its own rising load (a server whose requests or tokens rose before
    its queue grew), that nothing it depends on explains, is "more load", not a fault: it is blamed
    for its load, which its explanation shows. The load must lead its first trouble, not its worst,
    and a server whose traffic fell first was not serving (a restart, a load of its weights): what
    queued meanwhile, then the backlog it worked off, is no more load."""
    pe = ev.per_entity
    for row, entity in enumerate(pe.index):
        if (
            entity in kpi_entities
            and fraction[row] < 0.5
            and _cell(pe, entity, "saturation") > threshold
            and _cell(pe, entity, "load") > threshold
            and _cell(pe, entity, "load_onset") <= _cell(pe, entity, "first_onset") + tolerance
            and not _cell(pe, entity, "traffic_fall_onset") <= _cell(pe, entity, "first_onset") + tolerance
        ):
            ev.own_load.add(entity)
            ev.consumers.add(entity)


def _tenant_shares(
    pe: pd.DataFrame,
    entity: str,
    tenants: Iterable[str],
    topology: Topology,
    kpi_entities: set[str],
    threshold: float,
    tolerance: int,
) -> dict[str, float]:
    """A saturated shared host or port is explained by a tenant whose own consumption rose first (a
    noisy neighbour, which then takes the blame). Tenants are workloads (jobs, ranks, pods,
    services); a host's own devices (its GPUs, ports, disks) are not its neighbours."""
    if kind_of(entity) not in INFRASTRUCTURE_KINDS or not _cell(pe, entity, "saturation") > threshold:
        return {}
    out = {}
    for tenant in tenants:
        if (
            tenant in pe.index
            and kind_of(tenant) not in INFRASTRUCTURE_KINDS
            and _cell(pe, tenant, "load") > threshold
            and tenant not in kpi_entities
            and _cell(pe, tenant, "load_onset") <= _cell(pe, entity, "onset") + tolerance
            and topology.edges.get((tenant, entity)) in ("runs_on", "uses")
        ):
            out[tenant] = min(np.log1p(_cell(pe, tenant, "load")) / np.log1p(_cell(pe, entity, "evidence")), 1.0)
    return out


def _magnitude_share(pe: pd.DataFrame, dependency: str, entity: str) -> float:
    """A dependency explains at most the part of the change it made itself (same units)."""
    ratios = [
        _cell(pe, dependency, f"clear{g}") / _cell(pe, entity, f"change{g}")
        for g in ("0", "1")
        if _cell(pe, entity, f"change{g}") > 0
    ]
    return max(ratios) if ratios else 1.0


def reach(
    pe: pd.DataFrame,
    topology: Topology,
    kpi_entities: set[str],
    threshold: float,
    reach_factor: float,
    distance_decay: float,
) -> tuple[np.ndarray, dict[str, int]]:
    """Per entity: the factor for its place in the topology (one the KPI does not depend on is
    discounted; a farther one slightly), and the hop counts."""
    in_trouble = pe.index[pe["saturation"] > threshold]
    distance = topology.related(kpi_entities, shared=in_trouble) if topology.edges else {}
    if not distance:
        return np.ones(len(pe)), distance
    hops = pd.Series([distance.get(e, np.nan) for e in pe.index], index=pe.index)
    factor = np.where(
        hops.isna(), reach_factor, np.clip(1 - distance_decay * (hops.fillna(1) - 1).clip(lower=0), 0.5, 1)
    )
    return factor, distance


def kpi_dependence(inputs: Inputs, eligible: np.ndarray, all_entities: Iterable[str]) -> np.ndarray:
    """Per entity: the largest |correlation| between a KPI and one of its anomalous own series (only
    those are computed: a few hundred of thousands)."""
    columns = np.union1d(np.flatnonzero(eligible), inputs.kpi_index)
    filled = pd.DataFrame(inputs.values[:, columns]).ffill().bfill().fillna(0.0).to_numpy()
    std = filled.std(axis=0)
    standardized = (filled - filled.mean(axis=0)) / np.where(std > 0, std, np.inf)
    kpis = standardized[:, np.searchsorted(columns, inputs.kpi_index)]
    correlation = np.zeros(len(inputs.columns))
    correlation[columns] = np.abs(standardized.T @ kpis / max(len(filled), 1)).max(axis=1)
    per_entity = pd.Series(np.where(eligible, correlation, 0.0)).groupby(inputs.entities).max()
    return per_entity.reindex(list(all_entities)).fillna(0.0).to_numpy()


def order(
    score: pd.Series,
    ev: Evidence,
    kpi_onset_row: float,
    kpi: list[Column],
    candidates: Iterable[str] | None,
) -> pd.Series:
    """Causes best first. A candidate known to be harmless — its anomalies cannot slow the workload by
    themselves, or they began after the KPI broke (by more than a row: exporters sample a scrape
    apart) — never ranks above one that is not; it stays in the list, below, as a bystander or a
    consequence. A candidate with no anomaly past the threshold is not judged, only scored. A
    noisy neighbour's trouble is the load it put on what it shares, from when that load rose."""
    pe = ev.per_entity
    keep = score.index if candidates is None else list(dict.fromkeys(candidates))
    score = score.reindex(keep).fillna(0.0)
    if candidates is None:  # a KPI's own entity is a cause only through its other signals
        score = score.drop(
            index=[e for e, _ in kpi if e in score.index and pe.loc[e, "evidence"] == 0], errors="ignore"
        )
    score = score[score > 0]  # no anomaly, no cause
    consumer = score.index.isin(list(ev.consumers))
    onset = pe["onset"].reindex(score.index).fillna(np.inf).to_numpy()
    onset = np.where(consumer, pe["load_onset"].reindex(score.index).fillna(np.inf).to_numpy(), onset)
    can_slow = pe["can_slow"].reindex(score.index).fillna(False).astype(bool).to_numpy() | consumer
    harmless = np.isfinite(onset) & (~can_slow | (onset > kpi_onset_row + 1))
    ranked = pd.DataFrame({"score": score, "tier": np.where(harmless, 1, 0)})
    ranked = ranked.sort_values(["tier", "score"], ascending=[True, False], kind="mergesort")
    return ranked["score"]


def silent_entities(frame: pd.DataFrame, t0: pd.Timestamp, recent_rows: int = 3) -> set[str]:
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


def first_above(strength: np.ndarray, threshold: float) -> np.ndarray:
    """Per column: the first row above ``threshold`` (inf when none, or no row was scored)."""
    if not len(strength):
        return np.full(strength.shape[1], np.inf)
    above = strength > threshold
    return np.where(above.any(axis=0), above.argmax(axis=0).astype(float), np.inf)


def run_start(strength: np.ndarray, peak_row: np.ndarray, threshold: float) -> np.ndarray:
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


def _cell(frame: pd.DataFrame, row: str, column: str) -> float:
    """``frame.at[row, column]`` of a float column (the stubs type a cell as any scalar)."""
    return cast(float, frame.at[row, column])
