"""What a signal the registry does not know means, guessed from its name (and unit, when known).

Replayed files, the public RCA datasets and other producers' metrics carry no registry entry; for
them the words in the name are all there is, read the way an operator reads a dashboard: latencies
and errors are bad when they rise, success, availability and throughput when they fall, and
utilization, temperature or queueing are saturation. Signals the registry knows never come here
(:func:`~._meaning.describe_signal`).
"""

from __future__ import annotations

import re
from functools import lru_cache

from factorylens.rca_service.ranking._signals import SignalInfo, SignalKind, SignalSide
from factorylens.rca_service.store._entity import domain_of

# idleness rises and clocks fall when a GPU waits for work: symptoms of trouble elsewhere
_SYMPTOM = re.compile(r"\bidle\b|\.idle$|gpu_idle|\.speed\b|clocks?_?mhz", re.I)
_THROUGHPUT = re.compile(r"samples\.rate|tokens\.rate|throughput", re.I)
_GOOD = re.compile(
    r"success|availab|\bok\b|goodput|hit.?rate|\bmfu\b"
    r"|\.limit\b",
    re.I,
)  # a limit is capacity: a lower power limit is lost capacity
_OUTCOME = re.compile(r"goodput|\bmfu\b", re.I)
_ERRORS = re.compile(
    r"error|fail|fault|5xx|4xx|drop|timeout|retr|replay|crc|xid|ecc|clock_event|thrott|"
    r"swap|paging|xmit_wait|\bcnp\b|ecn|out.of.sequence|roce\.events",
    re.I,
)
_LATENCY = re.compile(r"latenc|wait\.ratio|duration|response.?time|delay|\brt\b|_rt$|operation\.time|\(s\)$", re.I)
# how much moved (bytes, operations, packets, requests): mostly a consequence of how fast work flows
_VOLUME = re.compile(r"\.io$|workload|bytes|packets|operations$|\.calls$|requests?$", re.I)
_SATURATION = re.compile(
    r"cpu|mem|util|gpu|disk|\bio\b|syscall|temp|power|\bload\b|saturat|queue|wait|pressure"
    r"|filesystem\.usage|full",
    re.I,
)
_TRAFFIC = re.compile(
    r"request|workload|\bops\b|qps|rps|count|\bsum\b|bytes|network|packets|calls|\.io\b"
    r"|receive|transmit|steps|samples|tokens",
    re.I,
)
# time spent waiting on others: callees, peers at a collective, a file system, anything unattributed
_OUTBOUND = re.compile(
    r"client|outbound|collective|checkpoint|span\.kind=client|phase=(?:collective|checkpoint|other)", re.I
)
_CALLER_VIEW = re.compile(r"seen.by.caller|caller.view|as.seen.by", re.I)


@lru_cache(maxsize=65_536)
def foreign_signal(name: str) -> SignalInfo:
    """Kind, side and domain of a signal from its name (``metric{attr=value,...}`` or a column label)."""
    metric = name.split("{", 1)[0]
    if _SYMPTOM.search(name):
        kind = SignalKind.OTHER
    elif _THROUGHPUT.search(name):
        kind = SignalKind.THROUGHPUT
    elif _GOOD.search(name):
        kind = SignalKind.GOOD
    elif _ERRORS.search(name):
        kind = SignalKind.ERRORS
    elif _LATENCY.search(name):
        kind = SignalKind.LATENCY
    elif _VOLUME.search(metric):
        kind = SignalKind.TRAFFIC
    elif _SATURATION.search(name):
        kind = SignalKind.SATURATION
    elif _TRAFFIC.search(name):
        kind = SignalKind.TRAFFIC
    else:
        kind = SignalKind.OTHER
    if _CALLER_VIEW.search(name):
        side = SignalSide.CALLER_VIEW
    elif _OUTCOME.search(name):
        side = SignalSide.OUTCOME
    elif _OUTBOUND.search(name):
        side = SignalSide.OUTBOUND
    else:
        side = SignalSide.OWN
    domain = domain_of(metric).value
    phase = re.search(r"phase=(\w+)", name)
    if phase and phase.group(1) in _PHASE_DOMAINS:
        domain = _PHASE_DOMAINS[phase.group(1)]
    return SignalInfo(kind, side, domain)


# a training step's phases and the part of the factory each one waits on
_PHASE_DOMAINS = {
    "data": "data",
    "h2d": "data",
    "forward": "gpu",
    "backward": "gpu",
    "optimizer": "gpu",
    "collective": "network",
    "checkpoint": "storage",
}
