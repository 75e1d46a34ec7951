"""Span tables (Nezha's ``trace/*.csv[.gz]``, or any CSV with the same columns) replayed as OTLP spans
through the RCA service's own ingest, then read back as the series and call graph the service keeps.

Nothing here computes trace evidence: the rows become ``ExportTraceServiceRequest`` messages, go to
:meth:`SeriesStore.ingest_spans` (what the gRPC TraceService handler calls) in end-time order, and
the frame is whatever series the store derived (RED per operation, exclusive time, error origins,
call edges), so a replayed file and live OTLP take the same path.

Columns: ``TraceID, SpanID, ParentID`` (hex; ``root`` or empty for a root span), ``PodName`` or
``ServiceName``, ``OperationName``, ``StartTimeUnixNano, EndTimeUnixNano``; optional ``StatusCode``
(OTLP's 0/1/2 or UNSET/OK/ERROR) and ``SpanKind`` (OTLP's 0-5 or its names).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from factorylens.rca_service.store import SeriesStore, StoreLimits, View
from factorylens.registry import Attributes, Metrics

SPANS_PER_REQUEST = 5_000
_KINDS = {"unspecified": 0, "internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
_STATUS = {"unset": 0, "ok": 1, "error": 2}
# the series a ranking reads from spans, and through which view: latencies as p95 (not the mean)
SPAN_VIEWS = (
    (Metrics.FACTORYLENS_SPAN_SELF_DURATION, View.P95),
    (Metrics.FACTORYLENS_SPAN_DURATION, View.P95),
    (Metrics.FACTORYLENS_SPAN_CALLS, View.RATE),
    (Metrics.FACTORYLENS_SPAN_ERROR_ORIGINS, View.RATE),
    (Metrics.FACTORYLENS_SPAN_EDGE_DURATION, View.P95),
    (Metrics.FACTORYLENS_SPAN_EDGE_ERRORS, View.RATE),
)


def read_span_table(path: Path) -> pd.DataFrame:
    """One span CSV as a frame with the columns above; a ValueError names the file."""
    try:
        table = pd.read_csv(path, dtype=str)
        service = table["ServiceName"] if "ServiceName" in table else table["PodName"]
        frame = pd.DataFrame(
            {
                "trace": table["TraceID"],
                "span": table["SpanID"],
                "parent": table["ParentID"].fillna("").replace("root", ""),
                "pod": table["PodName"] if "PodName" in table else service,
                "service": service,
                "name": table["OperationName"].fillna(""),
                "start": table["StartTimeUnixNano"].astype(np.int64),
                "end": table["EndTimeUnixNano"].astype(np.int64),
                "status": _codes(table.get("StatusCode"), _STATUS, len(table)),
                "kind": _codes(table.get("SpanKind"), _KINDS, len(table)),
            }
        )
    except (KeyError, ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: not a span table with TraceID, SpanID, ParentID, ... columns ({exc!r})") from exc
    return frame


def _codes(column: pd.Series | None, names: dict[str, int], rows: int) -> np.ndarray:
    if column is None:
        return np.zeros(rows, dtype=np.int64)
    text = column.fillna("0").str.lower().str.removeprefix("status_code_").str.removeprefix("span_kind_")
    return text.map(lambda v: names.get(v, int(v) if v.isdigit() else 0)).to_numpy(np.int64)


def span_requests(
    spans: pd.DataFrame, service_of: Callable[[str], str], per_request: int = SPANS_PER_REQUEST
) -> Iterator[ExportTraceServiceRequest]:
    """The rows in end-time order as OTLP export requests, one resource per pod (``service.name`` from
    ``service_of(pod)``, the pod as ``service.instance.id``): what each pod's exporter would send."""
    spans = spans.sort_values("end", kind="stable")
    for start in range(0, len(spans), per_request):
        chunk = spans.iloc[start : start + per_request]
        request = ExportTraceServiceRequest()
        for pod, rows in chunk.groupby("pod", sort=False):
            rs = request.resource_spans.add()
            for key, value in ((Attributes.SERVICE_NAME, service_of(str(pod))), ("service.instance.id", str(pod))):
                attribute = rs.resource.attributes.add(key=key)
                attribute.value.string_value = value
            out = rs.scope_spans.add().spans
            for trace, span, parent, name, begin, end, status, kind in zip(
                rows["trace"],
                rows["span"],
                rows["parent"],
                rows["name"],
                rows["start"],
                rows["end"],
                rows["status"],
                rows["kind"],
                strict=True,
            ):
                made = out.add(
                    trace_id=_id(trace, 16),
                    span_id=_id(span, 8),
                    parent_span_id=_id(parent, 8) if parent else b"",
                    name=name,
                    start_time_unix_nano=int(begin),
                    end_time_unix_nano=int(end),
                    kind=int(kind),
                )
                if status:
                    made.status.code = int(status)
        yield request


def _id(text: str, size: int) -> bytes:
    """A hex id as OTLP bytes (left-padded or cut to ``size``; non-hex ids are hashed)."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = hashlib.blake2b(text.encode(), digest_size=size).digest()
    return raw[-size:].rjust(size, b"\0")


def replay_spans(
    files: Iterable[Path], service_of: Callable[[str], str], bin_s: float = 10.0
) -> tuple[SeriesStore, int]:
    """Every span of ``files`` through a fresh store's ingest; (the store, spans accepted)."""
    store = SeriesStore(StoreLimits(span_bin_s=bin_s))
    accepted = 0
    for path in sorted(files):
        for request in span_requests(read_span_table(path), service_of):
            result = store.ingest_spans(request)
            accepted += result.accepted
    store.settle_spans(flush=True)
    return store, accepted


def span_frame(store: SeriesStore, grid: pd.DatetimeIndex) -> pd.DataFrame:
    """The store's span series on ``grid`` (each grid row the mean of the bins in the step ending at
    it), columns ``(service, "<series label> <view>")``: the label the service itself ranks by, so
    each signal's meaning (own time, a callee's latency, errors begun here) comes from the registry."""
    parts: dict[tuple[str, str], pd.Series] = {}
    step = grid[1] - grid[0] if len(grid) > 1 else pd.Timedelta(seconds=60)
    for metric, view in SPAN_VIEWS:
        for info in store.of_metric(metric):
            service = str(info.resource.get(Attributes.SERVICE_NAME, ""))
            if not service:
                continue
            _, ts, values = store.query(info.id, view)
            if not len(ts):
                continue
            series = pd.Series(values, index=pd.to_datetime(ts, unit="ns", utc=True))
            binned = series.resample(step, origin=grid[0], label="right", closed="right").mean()
            parts[(service, f"{info.label} {view.value}")] = binned
    if not parts:
        return pd.DataFrame(index=grid)
    frame = pd.DataFrame(parts).reindex(grid)
    frame.columns = pd.MultiIndex.from_tuples(list(parts), names=["entity", "signal"])
    return frame
