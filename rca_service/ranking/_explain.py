"""One paragraph per cause that an SRE can act on: what moved on which entity (named for people,
``node-1/gpu3 (GPU-91078215…)``), from what to what in its unit, how unusual that is, when it began
relative to the KPI, how the KPI depends on it, what it explains, and — for a cause ranked below
the leading ones — why it is read as a consequence or a bystander."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from factorylens.rca_service.detection import calibrated, one_in
from factorylens.rca_service.ranking._base import Column, EvidenceSeries, RankedCause, Reference
from factorylens.rca_service.ranking._signals import SignalDescriber, SignalKind
from factorylens.rca_service.ranking._stages import Evidence, Inputs, Strength
from factorylens.rca_service.ranking._topology import Topology, kind_of

ENTITY_DOMAINS = {
    "gpu": "gpu",
    "host": "host",
    "nic": "network",
    "fs": "storage",
    "disk": "storage",
    "rank": "app",
    "replica": "app",
    "job": "app",
    "service": "app",
    "pod": "app",
}
MAX_EVIDENCE = 3
LOAD_KINDS = frozenset({SignalKind.TRAFFIC, SignalKind.THROUGHPUT})


def entity_domain(entity: str) -> str:
    return ENTITY_DOMAINS.get(kind_of(entity), "app")


@dataclass
class Explainer:
    """Everything the explanation of one cause draws on."""

    inputs: Inputs
    strength: Strength
    evidence: Evidence
    topology: Topology
    distance: dict[str, int]
    describe: SignalDescriber
    names: Mapping[str, str]
    threshold: float

    def name(self, entity: str) -> str:
        return self.names.get(entity) or entity

    def kpi_column(self) -> int:
        """The KPI the explanation talks about: the one that broke the most."""
        harm = self.strength.kpi_harm
        return int(np.argmax(harm.max(axis=0))) if harm.size else 0

    def cause(self, rank: int, entity: str, score: float) -> RankedCause:
        items = self._items(entity)
        if entity in self.inputs.silent:
            signal, domain, onset = "(stopped reporting)", entity_domain(entity), self._time(0)
        elif items:
            signal, onset = items[0].signal, items[0].onset
            domain = _domain_of(entity, self.describe(signal).domain)
        else:
            signal, domain, onset = "", entity_domain(entity), None
        effects = sorted(self.evidence.explained_by.get(entity, []))
        text = self._explain(entity, domain, signal, items, onset, effects, score)
        return RankedCause(rank, entity, domain, signal, onset, score, text, items, effects, self._reference_of(items))

    def _reference_of(self, items: list[EvidenceSeries]) -> Reference:
        """A cause's reference: its leading evidence's, or the frame's (without a reference at all, or
        without evidence)."""
        return self.inputs.reference if self.inputs.reference is Reference.NONE or not items else items[0].reference

    def _items(self, entity: str) -> list[EvidenceSeries]:
        consumer = entity in self.evidence.consumers
        strength = self.evidence.load if consumer else self.evidence.weighted
        columns = self.inputs.columns
        own = [
            i
            for i, c in enumerate(columns)
            if c[0] == entity and (self.evidence.load[i] > 0 if consumer else self.evidence.evidence[i])
        ]
        # what can slow the workload first (the link's errors, not the idle flag they cause), strongest
        # first, of equals the earliest (then by name: the frame's column order never decides)
        infos, anomalous = self.inputs.infos, self.evidence.anomalous
        onsets = self.evidence.load_onset if consumer else self.strength.onset_row
        if entity in self.evidence.own_load:  # its load leads: the requests or tokens that rose, then what filled up
            own.sort(key=lambda i: (infos[i].kind not in LOAD_KINDS, -strength[i], onsets[i], columns[i][1]))
        else:
            own.sort(key=lambda i: (not (infos[i].can_slow and anomalous[i]), -strength[i], onsets[i], columns[i][1]))
        # the ranking weighs a latency by its share of the KPI's growth; the reader is told how unusual it was
        shown = strength if consumer else self.strength.peak
        return [self._item(i, float(shown[i]), consumer) for i in own[:MAX_EVIDENCE]]

    def _item(self, i: int, z: float, consumer: bool = False) -> EvidenceSeries:
        s = self.strength
        center = float(s.scores.center[i])
        spread = float(s.scores.spread[i])
        half = self.threshold * spread if np.isfinite(spread) else 0.0
        observed = float("nan")
        if s.rows:
            start = int(s.onset_row[i]) if np.isfinite(s.onset_row[i]) else int(s.peak_row[i])
            run = s.scores.delta[start : int(s.peak_row[i]) + 1, i]
            observed = center + float(np.nanmedian(run)) if np.isfinite(run).any() else center
        column = self.inputs.columns[i]
        onset = self.evidence.load_onset[i] if consumer else s.onset_row[i]
        return EvidenceSeries(
            column[0],
            column[1],
            z,
            center,
            observed,
            self._time(onset),
            center - half,
            center + half,
            self.inputs.references[i],
        )

    def _time(self, row: float) -> pd.Timestamp | None:
        index = self.strength.after_index
        return index[int(row)] if np.isfinite(row) and row < len(index) else None

    def kpi_onset(self) -> pd.Timestamp | None:
        row = self.strength.kpi_onset_row
        return self._time(row) if np.isfinite(row) else None

    def _kpi_text(self) -> str:
        """The KPI before and after, by the same rule as the causes: the median of its broken run,
        so a routine checkpoint step at the worst moment does not stand for the whole break."""
        s, k = self.strength, self.kpi_column()
        entity, signal = self.inputs.kpi[k]
        before = float(s.kpi_scores.center[k])
        text = f"{self._signal_name(signal)} on {self.name(entity)}"
        if not s.kpi_rows:
            return f"{text} broke"
        start = int(s.kpi_onset_row - self.inputs.lead_rows) if np.isfinite(s.kpi_onset_row) else 0
        run = s.kpi_scores.delta[max(start, 0) : s.kpi_rows, k]
        after = before + float(np.nanmedian(run)) if np.isfinite(run).any() else before
        unit = self.describe(signal).unit
        return f"{text} went from {_num(before, unit)} to {_num(after, unit)}"

    def _signal_name(self, signal: str) -> str:
        name = self.describe(signal).name
        return f"{name} ({signal})" if name and name != signal else signal

    def _what(self, entity: str, domain: str, items: list[EvidenceSeries]) -> str:
        if entity in self.inputs.silent:
            return f"{self.name(entity)} ({domain}) stopped reporting altogether right after {_when(self.inputs.t0)}"
        if not items:
            return f"{self.name(entity)} ({domain}) showed no anomaly of its own; it ranks by its position only"
        e = items[0]
        unit = self.describe(e.signal).unit
        direction = "rose" if e.observed > e.expected else "fell"
        score = float(calibrated(e.z))
        what = (
            f"{self._signal_name(e.signal)} on {self.name(entity)} ({domain}) {direction} from "
            f"{_num(e.expected, unit)} to {_num(e.observed, unit)}: {e.z:.1f} robust standard deviations "
            f"from normal (anomaly score {_score(score)}: as unusual as {one_in(score)} normal samples)"
        )
        also = [i for i in items[1:] if i.z > self.threshold]
        if also:
            what += "; also " + ", ".join(
                f"{i.signal} {'rose' if i.observed > i.expected else 'fell'} ({i.z:.1f} robust standard deviations)"
                for i in also
            )
        return what

    def _when(self, onset: pd.Timestamp | None) -> str:
        kpi_onset = self.kpi_onset()
        if onset is None:
            return ""
        if kpi_onset is None:
            return f" It started at {_when(onset)}."
        lead = (kpi_onset - onset).total_seconds()
        relation = (
            f"{lead:.0f} s before the KPI broke"
            if lead > 0
            else "in the same sample as the KPI broke"
            if lead == 0
            else f"{-lead:.0f} s after the KPI broke"
        )
        return f" It started at {_when(onset)}, {relation}."

    def _path(self, entity: str) -> str:
        hops = self.distance.get(entity)
        kpi_entity = self.inputs.kpi[self.kpi_column()][0]
        if hops == 0:
            return " It is where a KPI is measured."
        if hops is not None:
            chain = next((c for c in (self.topology.path(k, entity) for k, _ in self.inputs.kpi) if c), [])
            if chain:
                return f" {self.name(chain[0])} depends on it ({' -> '.join(self.name(c) for c in chain)})."
            return f" It shares infrastructure with {self.name(kpi_entity)} ({hops} hop{'s' if hops > 1 else ''} away)."
        if self.distance:
            return f" The topology shows no dependency of {self.name(kpi_entity)} on it, so it ranks lower."
        return ""

    def _reference(self, items: list[EvidenceSeries]) -> str:
        """What the leading evidence was measured against, when it was not its own recent past."""
        reference, subject = self._reference_of(items), items[0].signal if items else "the frame"
        if self.inputs.reference is Reference.NONE:
            return (
                " No reference: nothing was observed before t0 (an empty or wholly masked window) and there is "
                "no history, so every series is measured against its first sample after t0; this ranking is a guess."
            )
        return {
            Reference.RECENT: "",
            Reference.EARLIER: " Nothing was observed before t0 (an empty or wholly masked window): the older "
            "normal history stood in for the reference.",
            Reference.SHORT: f" {subject} had only one or two samples before t0: a level to compare with but no "
            "spread of its own, so its strength is rough.",
            Reference.NONE: f" {subject} had no sample before t0: it is scored as new behaviour, as if it had been 0.",
        }[reference]

    def _standing(self, entity: str, onset: pd.Timestamp | None) -> str:
        """Why a cause sits below the leading ones, when it does."""
        pe = self.evidence.per_entity
        anomalous = entity in pe.index and bool(np.isfinite(pe["onset"][entity]))
        if anomalous and not bool(pe.at[entity, "can_slow"]) and entity not in self.evidence.consumers:
            return " It cannot slow the workload by itself, so it ranks below causes that can."
        kpi_onset = self.kpi_onset()
        if onset is not None and kpi_onset is not None and onset > kpi_onset + _row(self.strength):
            return " It began after the KPI broke: more likely a consequence than the cause."
        return ""

    def _explain(
        self,
        entity: str,
        domain: str,
        signal: str,
        items: list[EvidenceSeries],
        onset: pd.Timestamp | None,
        effects: list[str],
        score: float,
    ) -> str:
        consequences = ""
        if effects:
            shown = ", ".join(self.name(e) for e in effects[:4]) + (
                f" and {len(effects) - 4} more" if len(effects) > 4 else ""
            )
            consequences = f" The anomalies of {shown} are read as its effects."
        ranking = (
            f" Ranking score {score:.2f} of 1 (its strength, discounted for what explains it, distance, "
            "timing and the KPI's dependence on it)."
        )
        load = (
            " More load, not a fault: its own load rose before it saturated, and nothing it depends on explains it."
            if entity in self.evidence.own_load
            else ""
        )
        return (
            f"{self._kpi_text()}.{load} {self._what(entity, domain, items)}.{self._reference(items)}"
            f"{self._when(onset)}{self._path(entity)}{consequences}{self._standing(entity, onset)}{ranking}"
        )


def _row(strength: Strength) -> pd.Timedelta:
    index = strength.after_index
    return (index[1] - index[0]) if len(index) > 1 else pd.Timedelta(0)


def _domain_of(entity: str, signal_domain: str) -> str:
    """An entity's own kind says where it lives; a rank's or job's signal says which part of the
    factory it waits on (a phase: data, storage, network)."""
    kind = kind_of(entity)
    if kind in ENTITY_DOMAINS and ENTITY_DOMAINS[kind] != "app":
        return ENTITY_DOMAINS[kind]
    return signal_domain


def _score(score: float) -> str:
    return "> 0.9999" if score > 0.9999 else f"{score:.4f}"


def _num(value: float, unit: str = "") -> str:
    if not np.isfinite(value):
        return "n/a"
    if unit in ("", "1"):
        return f"{value:.4g}"
    return f"{value:.4g} {unit}"


def _when(timestamp: pd.Timestamp | datetime) -> str:
    ts = pd.Timestamp(timestamp)
    ts = ts.tz_localize(timezone.utc) if ts.tzinfo is None else ts.tz_convert(timezone.utc)
    return ts.strftime("%Y-%m-%d %H:%M:%S UTC")


__all__ = ["Column", "Explainer", "entity_domain"]
