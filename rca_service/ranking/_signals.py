"""What a signal means for ranking: which way is bad, whose behaviour it measures, and its domain.

The engine never looks at dataset or product names; it reads a :class:`SignalInfo` per signal,
which :func:`~._meaning.describe_signal` takes from the registry (:mod:`._foreign` guesses for
signals the registry does not know: replayed files, public datasets, other producers).

The *side* matters as much as the kind. A client span's duration, a collective's duration or a
checkpoint write's time measure what the entity waits on (a callee, its peers, the network, a file
system), not the entity itself; they are ``OUTBOUND`` and never count as the entity's own trouble.
A caller's measurement of the entity (``CALLER_VIEW``) counts as its trouble but cannot clear the
caller, which may have inflated it (a CPU-starved caller sees every callee as slow).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass


class SignalKind(str, enum.Enum):
    LATENCY = "latency"  # bad when it rises
    ERRORS = "errors"  # bad when it rises
    GOOD = "good"  # success, availability, capacity (a limit): bad when it falls
    THROUGHPUT = "throughput"  # useful work per second (samples, tokens): bad when it falls
    SATURATION = "saturation"  # utilization, temperature, pressure: bad when it rises (a drop is starvation,
    # a symptom of trouble elsewhere)
    TRAFFIC = "traffic"  # request and byte counts: mostly consequences
    OTHER = "other"

    @property
    def bad_direction(self) -> int:
        """+1 when only rises are harmful, -1 when only falls are, 0 when both are."""
        return {
            SignalKind.LATENCY: 1,
            SignalKind.ERRORS: 1,
            SignalKind.SATURATION: 1,
            SignalKind.GOOD: -1,
            SignalKind.THROUGHPUT: -1,
        }.get(self, 0)


class SignalSide(str, enum.Enum):
    OWN = "own"
    OUTBOUND = "outbound"
    CALLER_VIEW = "caller_view"
    OUTCOME = "outcome"  # how well the whole works (MFU, goodput): the KPI's kin, not a cause


@dataclass(frozen=True)
class SignalInfo:
    """``resolution``: the smallest change that means anything in the signal's unit (0.01 for a
    utilization ratio: one percentage point), when the caller knows the unit. ``can_slow``: whether a
    change in the bad direction can slow or fail a workload by itself (corrected ECC errors cannot).
    ``name`` and ``unit``: how to say it to people."""

    kind: SignalKind
    side: SignalSide = SignalSide.OWN
    domain: str = "app"
    resolution: float = 0.0
    can_slow: bool = True
    name: str = ""
    unit: str = ""


SignalDescriber = Callable[[str], "SignalInfo"]
