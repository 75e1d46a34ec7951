"""Spans as RED series per operation (rate, errors, duration) plus a bounded sample for evidence.

Each export request's spans are binned by end time (``span_bin_s``) per operation (resource +
span name + kind) and written as delta points: ``factorylens.span.calls``, ``factorylens.span.errors``
and the histogram ``factorylens.span.duration``. Deltas at the same bin from later requests add up, so
no open-bin state is kept. The sample keeps, per operation, the latest, the slowest and the failed
spans: what an explanation points to. Every span also goes to the :class:`TraceAssembler`
(``_traces``), which joins parents and children across requests for exclusive times, error origins
and call edges.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import TYPE_CHECKING, Any

from factorylens.rca_service.store._series import SeriesKind
from factorylens.rca_service.store._traces import SPAN_KINDS, STATUS_ERROR, duration_point
from factorylens.registry import Attributes, Metrics

if TYPE_CHECKING:
    from factorylens.rca_service.store._store import IngestResult, SeriesStore

SPAN_CALLS = Metrics.FACTORYLENS_SPAN_CALLS
SPAN_ERRORS = Metrics.FACTORYLENS_SPAN_ERRORS
SPAN_DURATION = Metrics.FACTORYLENS_SPAN_DURATION
MAX_SAMPLED_ATTRIBUTES = 16
MAX_ATTRIBUTE_CHARS = 256


class SpanAggregator:
    def __init__(self, store: SeriesStore, bin_s: float) -> None:
        self._store = store
        self._bin_ns = max(1, int(bin_s * 1e9))

    def ingest(self, request: Any) -> IngestResult:
        from factorylens.rca_service.store._store import IngestResult

        result = IngestResult()
        decoder = self._store.decoder
        lo, hi = self._store._lo_ns, self._store._hi_ns
        bins: dict[tuple[int, str, int, int], list] = {}
        resources: dict[int, Any] = {}
        sample = self._store.span_sample
        traces = self._store.traces
        bin_ns = self._bin_ns
        for index, rs in enumerate(request.resource_spans):
            resources[index] = self._store._resource(rs.resource)
            service = str(resources[index].attributes.get(Attributes.SERVICE_NAME, ""))
            for ss in rs.scope_spans:
                for span in ss.spans:
                    start, end = span.start_time_unix_nano, span.end_time_unix_nano
                    if (
                        not 0 < end < 2**63
                        or end < start
                        or not span.name
                        or len(span.trace_id) != 16
                        or len(span.span_id) != 8
                        or len(span.parent_span_id) not in (0, 8)
                    ):
                        result.reject("span without name, valid ids or end time")
                        continue
                    if not lo < end < hi:
                        self._store._reject_time(end, result, "span")
                        continue
                    duration_s = (end - start) / 1e9
                    error = span.status.code == STATUS_ERROR
                    name = decoder.text(span.name)
                    key = (index, name, span.kind, end - end % bin_ns)
                    acc = bins.get(key)
                    if acc is None:
                        acc = bins[key] = [0, 0, 0.0, []]
                    acc[0] += 1
                    acc[1] += error
                    acc[2] += duration_s
                    acc[3].append(duration_s)
                    sample.offer(service, name, span, duration_s, error, decoder.attributes)
                    traces.add(resources[index].attributes, service, name, span)
                    result.accepted += 1
        for (index, name, kind, bin_ts), (calls, errors, total, durations) in bins.items():
            made = self._red_series(resources[index], name, kind)
            if made is None:
                result.accepted -= calls
                result.reject("series limit reached", calls)
                continue
            made[0].append(bin_ts, float(calls))
            made[1].append(bin_ts, float(errors))
            made[2].append(duration_point(bin_ts, bin_ts - self._bin_ns, calls, total, durations))
        traces.settle()
        return result

    def _red_series(self, res: Any, name: str, kind: int) -> tuple | None:
        """The calls, errors and duration series of one operation (cached per resource)."""
        key = ("span", name, kind)
        made = res.caches.get(key)
        if made is not None:
            return made
        store, resource = self._store, res.attributes
        attributes = {
            Attributes.SPAN_NAME: name,
            Attributes.SPAN_KIND: SPAN_KINDS[kind] if kind < len(SPAN_KINDS) else str(kind),
        }
        made = (
            store.get_or_create(
                SPAN_CALLS, SeriesKind.DELTA, "{call}", resource, attributes, "Spans ended, per operation."
            ),
            store.get_or_create(
                SPAN_ERRORS,
                SeriesKind.DELTA,
                "{call}",
                resource,
                attributes,
                "Spans ended with status ERROR, per operation.",
            ),
            store.get_or_create(
                SPAN_DURATION,
                SeriesKind.HISTOGRAM,
                "s",
                resource,
                attributes,
                "Span durations, per operation.",
                cumulative=False,
            ),
        )
        if any(series is None for series in made):
            return None
        res.caches[key] = made
        return made


class SpanSample:
    """Per operation: the latest spans, the slowest ones, and the failed ones (all bounded)."""

    def __init__(self, per_operation: int, max_operations: int = 10_000) -> None:
        self.per_operation = per_operation
        self.max_operations = max_operations
        self._latest: dict[tuple[str, str], deque] = {}
        self._slowest: dict[tuple[str, str], list] = {}
        self._errors: dict[tuple[str, str], deque] = {}
        self._tiebreak = itertools.count()

    def offer(self, service: str, name: str, span: Any, duration_s: float, error: bool, decode: Any) -> None:
        key = (service, name)
        latest = self._latest.get(key)
        if latest is None:
            if len(self._latest) >= self.max_operations:
                return
            latest = self._latest[key] = deque(maxlen=self.per_operation)
            self._slowest[key] = []
            self._errors[key] = deque(maxlen=self.per_operation)
        slowest = self._slowest[key]
        keep_slow = len(slowest) < self.per_operation or duration_s > slowest[0][0]
        if not (keep_slow or error) and latest and latest[-1]["end_time_unix_nano"] > span.end_time_unix_nano:
            return
        record = _span_record(service, name, span, duration_s, error, decode)
        latest.append(record)
        if keep_slow:
            entry = (duration_s, next(self._tiebreak), record)
            if len(slowest) < self.per_operation:
                heapq.heappush(slowest, entry)
            else:
                heapq.heapreplace(slowest, entry)
        if error:
            self._errors[key].append(record)

    def spans(self, service: str = "", name: str = "") -> list[dict[str, Any]]:
        """Sampled spans (slowest and failed first), optionally for one service/operation."""
        found: dict[str, dict[str, Any]] = {}
        for key in self._latest:
            if (service and key[0] != service) or (name and key[1] != name):
                continue
            for record in (
                [e[2] for e in sorted(self._slowest[key], reverse=True)]
                + list(self._errors[key])
                + list(self._latest[key])
            ):
                found.setdefault(record["span_id"], record)
        return list(found.values())

    def drop_before(self, cutoff_ns: int) -> None:
        for key in list(self._latest):
            self._latest[key] = deque(
                (r for r in self._latest[key] if r["end_time_unix_nano"] >= cutoff_ns), maxlen=self.per_operation
            )
            self._errors[key] = deque(
                (r for r in self._errors[key] if r["end_time_unix_nano"] >= cutoff_ns), maxlen=self.per_operation
            )
            self._slowest[key] = [e for e in self._slowest[key] if e[2]["end_time_unix_nano"] >= cutoff_ns]
            heapq.heapify(self._slowest[key])
            if not self._latest[key] and not self._slowest[key] and not self._errors[key]:
                del self._latest[key], self._slowest[key], self._errors[key]

    def state(self) -> list[dict[str, Any]]:
        return self.spans()

    def restore(self, records: list[dict[str, Any]]) -> None:
        self._latest.clear()
        self._slowest.clear()
        self._errors.clear()
        for record in sorted(records, key=lambda r: r["end_time_unix_nano"]):
            key = (record["service"], record["name"])
            if key not in self._latest:
                self._latest[key] = deque(maxlen=self.per_operation)
                self._slowest[key] = []
                self._errors[key] = deque(maxlen=self.per_operation)
            self._latest[key].append(record)
            entry = (record["duration_s"], next(self._tiebreak), record)
            if len(self._slowest[key]) < self.per_operation:
                heapq.heappush(self._slowest[key], entry)
            elif entry[0] > self._slowest[key][0][0]:
                heapq.heapreplace(self._slowest[key], entry)
            if record["error"]:
                self._errors[key].append(record)


def _span_record(service: str, name: str, span: Any, duration_s: float, error: bool, decode: Any) -> dict[str, Any]:
    attributes = decode(span.attributes[:MAX_SAMPLED_ATTRIBUTES])
    return {
        "service": service,
        "name": name,
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "duration_s": duration_s,
        "error": error,
        "status_message": span.status.message[:MAX_ATTRIBUTE_CHARS],
        "attributes": {k: (v[:MAX_ATTRIBUTE_CHARS] if isinstance(v, str) else v) for k, v in attributes.items()},
    }
