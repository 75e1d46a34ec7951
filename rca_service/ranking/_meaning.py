"""What a signal means for ranking, as the registry declares it (kind, bad direction, whether it can
slow a workload by itself, a plain-words name), for any ``metric{attr=value,...}`` label; signals
the registry does not know fall back to :func:`~._foreign.foreign_signal`."""

from __future__ import annotations

from functools import lru_cache

from factorylens.rca_service.ranking._foreign import foreign_signal
from factorylens.rca_service.ranking._signals import SignalInfo, SignalKind, SignalSide
from factorylens.registry import REGISTRY, Direction, Meaning, Side
from factorylens.registry import SignalKind as Kind

_KINDS = {
    Kind.LATENCY: SignalKind.LATENCY,
    Kind.ERROR: SignalKind.ERRORS,
    Kind.THROUGHPUT: SignalKind.THROUGHPUT,
    Kind.TRAFFIC: SignalKind.TRAFFIC,
    Kind.SATURATION: SignalKind.SATURATION,
    Kind.UTILIZATION: SignalKind.SATURATION,  # a busier shared resource leaves less for the workload
    Kind.CAPACITY: SignalKind.GOOD,  # lost capacity: bad when it falls
    Kind.INFO: SignalKind.OTHER,
}
_SIDES = {
    Side.OWN: SignalSide.OWN,
    Side.OUTBOUND: SignalSide.OUTBOUND,
    Side.OUTCOME: SignalSide.OUTCOME,
    Side.CALLER_VIEW: SignalSide.CALLER_VIEW,
}


def from_meaning(meaning: Meaning) -> SignalInfo:
    """The engine's reading of a registry meaning. A state is trouble when it rises (an error-like
    flag) or when it falls (a status leaving ``ok``); a kind whose bad direction the registry turns
    around (idle time: bad when it falls) keeps the registry's direction."""
    if meaning.kind is Kind.STATE:
        kind = {Direction.UP: SignalKind.ERRORS, Direction.DOWN: SignalKind.GOOD}.get(meaning.bad, SignalKind.OTHER)
    else:
        kind = _KINDS[meaning.kind]
        if kind.bad_direction and meaning.bad is not Direction.EITHER and kind.bad_direction != int(meaning.bad):
            kind = SignalKind.GOOD if meaning.bad is Direction.DOWN else SignalKind.SATURATION
    return SignalInfo(
        kind,
        _SIDES[meaning.side],
        meaning.domain.value if meaning.domain is not None else "app",
        can_slow=meaning.can_slow,
        name=meaning.name,
    )


def parse_label(label: str) -> tuple[str, dict[str, str]]:
    """``metric{a=b,c=d}`` (a series label, maybe with a suffix after the braces) → metric, attributes."""
    metric, brace, rest = label.partition("{")
    if not brace:
        return label.split(" ", 1)[0], {}
    body = rest.split("}", 1)[0]
    pairs = (item.partition("=") for item in body.split(",") if "=" in item)
    return metric, {k: v for k, _, v in pairs}


@lru_cache(maxsize=65_536)
def describe_signal(label: str) -> SignalInfo:
    """Kind, side, domain and plain name of a signal: the registry's, else the name's guess."""
    metric, attributes = parse_label(label)
    meaning = REGISTRY.meaning(metric, attributes)
    return from_meaning(meaning) if meaning is not None else foreign_signal(label)
