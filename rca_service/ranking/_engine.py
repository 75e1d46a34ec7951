"""Rank the entities that most likely caused a KPI to break, and say why in plain words.

Input: a wide frame (UTC time index, columns ``(entity, signal)``), the topology, the KPI columns
and the time ``t0`` the KPI broke; rows up to ``t0`` are the reference (NaN rows are masked, e.g. an
earlier incident), later rows the incident. The method, in the order it runs:

1. **Strength.** Each series' robust z after ``t0`` against its own recent past (the robust-z
   detector, :class:`~factorylens.rca_service.detection.RobustZDetector`),
   counting only the harmful direction of its kind. Rows are scored up to the
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
4. **Topology.** One the KPI does not depend on is discounted; a farther one slightly; and the
   score is scaled by how strongly the KPI moved with it.
5. **Order.** A candidate whose trouble can slow the workload by itself (the registry says which
   signals can: corrected ECC errors cannot) and began no later than the KPI broke always ranks
   above one that cannot or began after (effects follow causes); the others stay, below, marked.

Without a reference before ``t0`` (an empty window, or one wholly masked by an earlier incident)
the ``history`` stands in, else the first sample after ``t0``; a series with only a sample or two
before ``t0`` has a level but no spread. Each cause and its evidence say so (``reference``, see
:class:`~._base.Reference`), in words too, rather than pass a guess for a measurement.

Scores are in [0, 1]: ``1 - exp(-s)`` of the discounted log-strength ``s``, i.e. ``z/(1+z)`` of the
discounted strength in robust standard deviations. Each stage is a function of :mod:`._stages`;
the explanation is :mod:`._explain`.

BARO (Pham et al., FSE 2024) is the reference baseline in the same harness (:mod:`._baro`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from factorylens.rca_service.detection import RobustZConfig, RobustZDetector
from factorylens.rca_service.ranking import _stages as stages
from factorylens.rca_service.ranking._base import Column, Ranker, RankingResult
from factorylens.rca_service.ranking._explain import Explainer
from factorylens.rca_service.ranking._meaning import describe_signal
from factorylens.rca_service.ranking._signals import SignalDescriber, SignalInfo
from factorylens.rca_service.ranking._topology import Topology


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
        if not 0 < self.min_latency_share <= 1:
            raise ValueError("min_latency_share must be in (0, 1]: a share of the KPI's growth (0 divides by it)")


class RankingEngine(Ranker):
    """One entry point, :meth:`find_root_causes`; stateless, so one engine serves every incident and thread."""

    name = "engine"

    def __init__(self, config: RankingConfig | None = None) -> None:
        self.config = cfg = config or RankingConfig()
        # the KPI against its own past; every candidate likewise, where new behaviour (a first error)
        # and leaving the range already visited (beyond a periodic checkpoint spike) count
        kpi = RobustZConfig(threshold=cfg.threshold, relative_floor=cfg.relative_floor, center_points=cfg.center_points)
        self._kpi_detector = RobustZDetector(replace(kpi, new_behaviour_z=0.0))
        self._detector = RobustZDetector(
            replace(kpi, new_behaviour_z=cfg.new_behaviour_z, seen_range_points=cfg.seen_range_points)
        )

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
        """Rank the entities of ``frame`` (or only ``candidates``) as causes of the ``kpi`` break at ``t0``.

        ``lead``: how long before ``t0`` a cause may have begun (the reference of the candidates ends
        that much earlier; the KPI's own reference still ends at ``t0``).
        """
        if t0 is None:
            raise ValueError("the engine needs the time the KPI broke (t0)")
        cfg, topology, describe_fn = self.config, topology or Topology(), _describer(describe)
        inputs = stages.prepare(frame, kpi, pd.Timestamp(t0), lead, describe_fn, history)
        strength = stages.strength(inputs, self._kpi_detector, self._detector, cfg.threshold)
        evidence = stages.evidence(
            inputs, strength, stages.kpi_kinds(inputs, describe_fn), cfg.threshold, cfg.min_latency_share
        )
        stages.complete(
            evidence, set(inputs.entities) | topology.entities | inputs.silent, inputs.silent, cfg.silence_z
        )
        score, distance = self._score(inputs, strength, evidence, topology)
        ordered = stages.order(score, evidence, strength.kpi_onset_row, inputs.kpi, candidates)
        explainer = Explainer(inputs, strength, evidence, topology, distance, describe_fn, names or {}, cfg.threshold)
        causes = [
            explainer.cause(rank, str(entity), float(1.0 - np.exp(-value)))
            for rank, (entity, value) in enumerate(ordered.iloc[: cfg.max_causes].items(), start=1)
        ]
        explained = inputs.kpi[explainer.kpi_column()]
        kpis = [explained] + [k for k in inputs.kpi if k != explained]
        return RankingResult(causes, kpis, inputs.t0, explainer.kpi_onset(), inputs.reference)

    def _score(
        self, inputs: stages.Inputs, strength: stages.Strength, evidence: stages.Evidence, topology: Topology
    ) -> tuple[pd.Series, dict[str, int]]:
        """Log-strength per entity after explain-away, reach, onset and dependence."""
        cfg, pe = self.config, evidence.per_entity
        kpi_entities = {e for e, _ in inputs.kpi}
        score = pd.Series(np.log1p(pe["evidence"].to_numpy()), index=pe.index)
        fraction = stages.explain_away(evidence, topology, kpi_entities, cfg.threshold, cfg.onset_tolerance_rows)
        stages.own_load(evidence, kpi_entities, fraction, cfg.threshold, cfg.onset_tolerance_rows)
        for consumer in evidence.consumers:  # a neighbour's burst of work is its trouble, however healthy it looks
            score[consumer] = max(score[consumer], np.log1p(pe["load"][consumer]))
        score = score * (1 - 0.999 * fraction)
        factor, distance = stages.reach(pe, topology, kpi_entities, cfg.threshold, cfg.reach_factor, cfg.distance_decay)
        onset = pe["onset"].to_numpy()
        late = np.isfinite(onset) & (onset > strength.kpi_onset_row + 1)
        dependence = stages.kpi_dependence(inputs, evidence.anomalous & evidence.own, pe.index)
        score = score * factor * np.where(late, cfg.late_onset_factor, 1.0) * (0.5 + 0.5 * dependence)
        return score, distance


def _describer(describe: SignalDescriber | Mapping[str, SignalInfo] | None) -> SignalDescriber:
    if describe is None:
        return describe_signal
    if callable(describe):
        return describe
    table = dict(describe)
    return lambda signal: table.get(signal) or describe_signal(signal)
