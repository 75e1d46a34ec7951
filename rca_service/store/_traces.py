"""What whole traces say that single spans do not: a span's own (exclusive) time, where an error began,
and who called whom, with how many calls, errors and how long each call edge took.

A trace arrives in pieces: every service exports its own spans, a child usually before its parent. So
spans wait in a bounded table until the newest span end seen (data time, so that replayed files behave
like live traffic) is ``settle_s`` past their own end; by then their children and parent have most
likely arrived. When a span settles:

- its **exclusive time** is its duration less the union of its children's intervals (parallel children
  count once), so a slow callee raises the callee's own time, not its callers' (MicroRank and TraceRCA
  score services by the traces they sit on; the exclusive time is what separates a slow service from
  the services waiting on it); a call's own time (a client span's, or an undeclared span's whose
  every child ran elsewhere) is time on the wire, kept as a client span's;
- it is an **error origin** when it failed and none of its children did (TraceRCA's "deepest erroring
  span": a failure propagated upwards is counted once, where it started);
- when its parent ran in another service it is a **call** on the edge caller → callee: calls, errors and
  the time the caller waited on it (its parent's duration when the parent is the call, else its own),
  on the callee's resource with the caller as an attribute: how the callers see the callee;
- a client or producer span that reached no instrumented service but names its peer (``peer.service``,
  ``db.system``/``db.system.name``, ``messaging.system``, ``server.address``) is a call on the edge
  to that peer, which becomes an entity of its own (a database, a queue, an external API).

The series are deltas per ``span_bin_s`` bin of the span's end, like the per-operation RED series, and
feed the detector and the ranker as any other series. A child whose parent arrives after the child
settled still gets its edge then; a parent that settled before a late child keeps the child's time
as its own (the price of a bounded wait; see docs/rca-service.md, "Traces").
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from factorylens.rca_service.store._series import HistogramPoint, SeriesKind
from factorylens.registry import Attributes, Metrics

# seconds: 100 µs .. ~105 s, four buckets per doubling (an exponential histogram of scale 2: the p95 of a
# bin is within 19% of the exact one, where doubling buckets were off by up to 100%)
DURATION_BOUNDS = tuple(float(1e-4 * 2 ** (i / 4)) for i in range(81))
_BOUNDS = np.asarray(DURATION_BOUNDS)
SELF_DURATION = Metrics.FACTORYLENS_SPAN_SELF_DURATION
ERROR_ORIGINS = Metrics.FACTORYLENS_SPAN_ERROR_ORIGINS
EDGE_CALLS = Metrics.FACTORYLENS_SPAN_EDGE_CALLS
EDGE_ERRORS = Metrics.FACTORYLENS_SPAN_EDGE_ERRORS
EDGE_DURATION = Metrics.FACTORYLENS_SPAN_EDGE_DURATION
CLIENT_KIND = 3
CLIENT_KINDS = (CLIENT_KIND, 4)  # SPAN_KIND_CLIENT, SPAN_KIND_PRODUCER
UNDECLARED_KINDS = (0, 1)  # SPAN_KIND_UNSPECIFIED, SPAN_KIND_INTERNAL
# attributes that name what a client span reached, best first: (attribute, prefix of the peer's name)
PEER_ATTRIBUTES = (
    ("peer.service", ""),
    ("db.system.name", "db:"),
    ("db.system", "db:"),
    ("messaging.system", "messaging:"),
    (Attributes.SERVER_ADDRESS, "host:"),
)
_PEER_PREFIX = dict(PEER_ATTRIBUTES)
MAX_PEER_CHARS = 128
STATUS_ERROR = 2
SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")

# (metric, kind, unit, resource, point attributes, description) -> the series, or None at the limit
SeriesFactory = Callable[[str, SeriesKind, str, Mapping[str, Any], Mapping[str, Any], str], Any]


class CallGraph:
    """Service → service (or peer) call edges with their call counts and when each was last seen."""

    def __init__(self, max_edges: int = 10_000) -> None:
        self.edges: dict[tuple[str, str], list[int]] = {}  # (caller, callee) -> [calls, last seen ns]
        self._max_edges = max_edges

    def count(self, caller: str, callee: str, seen_unix_nano: int, calls: int = 1) -> None:
        if caller == callee:
            return
        edge = self.edges.get((caller, callee))
        if edge is None:
            if len(self.edges) >= self._max_edges:
                return
            edge = self.edges[(caller, callee)] = [0, 0]
        edge[0] += calls
        edge[1] = max(edge[1], seen_unix_nano)

    def drop_before(self, cutoff_ns: int) -> None:
        self.edges = {edge: seen for edge, seen in self.edges.items() if seen[1] >= cutoff_ns}

    def state(self) -> list[tuple[str, str, int, int]]:
        return [(a, b, seen, calls) for (a, b), (calls, seen) in self.edges.items()]

    def restore(self, edges: list) -> None:
        """Edges as saved by :meth:`state` (older snapshots have no call count: 1)."""
        self.edges = {(str(e[0]), str(e[1])): [int(e[3]) if len(e) > 3 else 1, int(e[2])] for e in edges}


class _Span:
    __slots__ = (
        "caller",
        "child_error",
        "children",
        "end",
        "error",
        "kind",
        "name",
        "parent",
        "peer",
        "resource",
        "service",
        "settled",
        "start",
    )

    def __init__(
        self, resource: dict[str, Any], service: str, name: str, kind: int, start: int, end: int, error: bool, peer: str
    ) -> None:
        self.resource, self.service, self.name, self.kind = resource, service, name, kind
        self.start, self.end, self.error, self.peer = start, end, error, peer
        self.children: list[tuple[int, int, str]] = []
        self.child_error = False
        self.caller = ""
        self.parent: _Span | None = None
        self.settled = False

    @property
    def is_call(self) -> bool:
        """A client or producer span, or one whose every child ran in another service (a call left
        undeclared, as in span tables without kinds): its own time is time on the wire."""
        if self.kind in CLIENT_KINDS:
            return True
        return (
            self.kind in UNDECLARED_KINDS
            and bool(self.children)
            and all(service != self.service for _, _, service in self.children)
        )


class TraceAssembler:
    """Joins parents and children across export requests and derives the per-trace series on settle.

    Memory is bounded by ``max_pending`` waiting spans (beyond it the oldest settle early) and
    ``max_remembered`` settled span ids kept for late children (their caller).
    """

    def __init__(
        self,
        series: SeriesFactory,
        call_graph: CallGraph,
        bin_s: float,
        settle_s: float,
        *,
        max_pending: int = 200_000,
        max_remembered: int = 200_000,
        max_peers: int = 1_000,
    ) -> None:
        self._series = series
        self._call_graph = call_graph
        self._bin_ns = max(1, int(bin_s * 1e9))
        self._settle_ns = int(settle_s * 1e9)
        self._max_pending = max_pending
        self._max_remembered = max_remembered
        self._max_peers = max_peers
        self._pending: dict[bytes, _Span] = {}
        self._by_end: list[tuple[int, int, bytes]] = []
        self._order = itertools.count()
        self._orphans: OrderedDict[bytes, list[_Span]] = OrderedDict()  # parent id -> children waiting for it
        self._settled: OrderedDict[bytes, str] = OrderedDict()  # span id -> its service, for late children
        self._peers: dict[str, dict[str, Any]] = {}
        self._watermark = 0
        # (resource id, metric, key) -> accumulated deltas of the current settle pass
        self._deltas: dict[tuple[int, str, str, int], list] = {}
        self._resources: dict[int, dict[str, Any]] = {}
        self.settled_early = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, resource: dict[str, Any], service: str, name: str, span: Any) -> None:
        """One span (the OTLP message, already validated by the caller) of ``service``."""
        if not service:
            return
        record = _Span(
            resource,
            service,
            name,
            span.kind,
            span.start_time_unix_nano,
            span.end_time_unix_nano,
            span.status.code == STATUS_ERROR,
            peer_of(span) if span.kind in CLIENT_KINDS else "",
        )
        span_id = span.span_id
        if span_id in self._pending or span_id in self._settled:
            return  # a duplicate (a retried export): counted once
        self._pending[span_id] = record
        heapq.heappush(self._by_end, (record.end, next(self._order), span_id))
        self._watermark = max(self._watermark, record.end)
        for child in self._orphans.pop(span_id, ()):
            self._adopt(record, child)
        parent_id = span.parent_span_id
        if parent_id:
            parent = self._pending.get(parent_id)
            if parent is not None:
                self._adopt(parent, record)
            elif parent_id in self._settled:
                record.caller = self._settled[parent_id]
            else:
                self._orphans.setdefault(parent_id, []).append(record)
                self._orphans.move_to_end(parent_id)
                while len(self._orphans) > self._max_pending:
                    self._orphans.popitem(last=False)
        while len(self._pending) > self._max_pending:
            self.settled_early += 1
            self._settle_first()

    def _adopt(self, parent: _Span, child: _Span) -> None:
        parent.children.append((child.start, child.end, child.service))
        parent.child_error |= child.error
        child.caller = parent.service
        child.parent = parent
        if child.settled:  # the parent came after the child settled: the edge is still owed
            self._call(child)

    def settle(self, now_unix_nano: int | None = None, *, flush: bool = False) -> None:
        """Settle every span that ended ``settle_s`` before the newest end seen, or before
        ``now_unix_nano`` when later (the analysis clock: traffic that stopped still settles); every
        pending span with ``flush``."""
        if flush:
            cutoff = 2**63
        else:
            cutoff = max(self._watermark, now_unix_nano or 0) - self._settle_ns
        while self._by_end and self._by_end[0][0] <= cutoff:
            self._settle_first()
        self._write()

    def _settle_first(self) -> None:
        _, _, span_id = heapq.heappop(self._by_end)
        record = self._pending.pop(span_id, None)
        if record is None:
            return
        record.settled = True
        self._settled[span_id] = record.service
        while len(self._settled) > self._max_remembered:
            self._settled.popitem(last=False)
        duration = record.end - record.start
        covered = _union_ns(record.children, record.start, record.end)
        kind = CLIENT_KIND if record.is_call else record.kind
        self._observe(record.resource, SELF_DURATION, record.name, kind, record.end, (duration - covered) / 1e9)
        # a point in every bin the operation ran (0 without errors), so a first error is new behaviour
        origins = self._acc(record.resource, ERROR_ORIGINS, record.name, record.kind, record.end)
        origins[0] += record.error and not record.child_error
        if record.caller:
            self._call(record)
        remote_child = any(service != record.service for _, _, service in record.children)
        if record.peer and not remote_child:
            peer = self._peer_resource(record.peer)
            if peer is not None:
                self._edge(peer, record.service, record.peer, record.end, duration / 1e9, record.error)

    def _call(self, record: _Span) -> None:
        """The edge's latency is what the caller waited when its side of the call is a span of its
        own (the wire included: a network delay shows on the callee's edge), else what the callee took."""
        if record.caller == record.service:
            return
        waited = record.parent if record.parent is not None and record.parent.is_call else record
        self._edge(
            record.resource, record.caller, record.service, record.end, (waited.end - waited.start) / 1e9, record.error
        )

    def _edge(
        self, resource: dict[str, Any], caller: str, callee: str, end: int, duration_s: float, error: bool
    ) -> None:
        self._call_graph.count(caller, callee, end)
        acc = self._acc(resource, EDGE_CALLS, caller, 0, end)
        acc[0] += 1
        acc[1] += error
        acc[2] += duration_s
        acc[3].append(duration_s)

    def _observe(self, resource: dict[str, Any], metric: str, name: str, kind: int, end: int, value_s: float) -> None:
        acc = self._acc(resource, metric, name, kind, end)
        acc[0] += 1
        acc[2] += value_s
        acc[3].append(value_s)

    def _acc(self, resource: dict[str, Any], metric: str, key: str, kind: int, end: int) -> list:
        self._resources[id(resource)] = resource
        slot = (id(resource), metric, f"{kind}\x00{key}", end - end % self._bin_ns)
        acc = self._deltas.get(slot)
        if acc is None:
            acc = self._deltas[slot] = [0, 0, 0.0, []]
        return acc

    def _peer_resource(self, peer: str) -> dict[str, Any] | None:
        found = self._peers.get(peer)
        if found is None and len(self._peers) < self._max_peers:
            found = self._peers[peer] = {Attributes.SERVICE_NAME: peer}
        return found

    def _write(self) -> None:
        for (resource_id, metric, key, bin_ts), (count, errors, total, values) in self._deltas.items():
            resource = self._resources[resource_id]
            kind_text, name = key.split("\x00", 1)
            kind = int(kind_text)
            start = bin_ts - self._bin_ns
            if metric == EDGE_CALLS:
                attributes = {Attributes.FACTORYLENS_SPAN_CALLER: name}
                calls = self._series(EDGE_CALLS, SeriesKind.DELTA, "{call}", resource, attributes, "Calls on an edge.")
                failed = self._series(EDGE_ERRORS, SeriesKind.DELTA, "{call}", resource, attributes, "Failed calls.")
                latency = self._series(EDGE_DURATION, SeriesKind.HISTOGRAM, "s", resource, attributes, "Call time.")
                if calls is not None:
                    calls.append(bin_ts, float(count))
                if failed is not None:
                    failed.append(bin_ts, float(errors))
                if latency is not None:
                    latency.append(duration_point(bin_ts, start, count, total, values))
                continue
            attributes = {
                Attributes.SPAN_NAME: name,
                Attributes.SPAN_KIND: SPAN_KINDS[kind] if kind < len(SPAN_KINDS) else str(kind),
            }
            if metric == ERROR_ORIGINS:
                series = self._series(metric, SeriesKind.DELTA, "{call}", resource, attributes, "Errors begun here.")
                if series is not None:
                    series.append(bin_ts, float(count))
            else:
                series = self._series(metric, SeriesKind.HISTOGRAM, "s", resource, attributes, "Exclusive span time.")
                if series is not None:
                    series.append(duration_point(bin_ts, start, count, total, values))
        self._deltas.clear()
        self._resources.clear()


def duration_point(bin_ts: int, start: int, count: int, total: float, values: list[float]) -> HistogramPoint:
    """One bin of span durations (seconds) as a delta histogram point on :data:`DURATION_BOUNDS`."""
    counts = np.bincount(np.searchsorted(_BOUNDS, values, side="left"), minlength=len(DURATION_BOUNDS) + 1)
    return HistogramPoint(bin_ts, start, float(count), total, DURATION_BOUNDS, counts.astype(float))


def peer_of(span: Any) -> str:
    """What a client span reached, by the best attribute it carries ('' when none)."""
    found: dict[str, str] = {}
    for attribute in span.attributes:
        if attribute.key in _PEER_PREFIX and attribute.value.string_value:
            found[attribute.key] = attribute.value.string_value
    for key, prefix in PEER_ATTRIBUTES:
        if key in found:
            return f"{prefix}{found[key]}"[:MAX_PEER_CHARS]
    return ""


def _union_ns(intervals: list[tuple[int, int, str]], start: int, end: int) -> int:
    """Length of the union of ``intervals`` clipped to [start, end]."""
    if not intervals:
        return 0
    covered, reach = 0, start
    for lo, hi, _ in sorted(intervals):
        lo, hi = max(lo, reach), min(hi, end)
        if hi > lo:
            covered += hi - lo
            reach = hi
    return covered
