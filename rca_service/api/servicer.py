"""The ``factorylens.rca.v1.RcaService`` servicer: the store and the analyzer, over gRPC."""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import Message

from factorylens.processors.cost import GROUPS, CostTotals
from factorylens.rca_service.analysis import Analyzer, Incident, IncidentState
from factorylens.rca_service.api.paging import (
    DEFAULT_INCIDENTS_PAGE,
    DEFAULT_SERIES_PAGE,
    MAX_INCIDENTS_PAGE,
    MAX_SERIES_PAGE,
    PAGE_BYTES,
)
from factorylens.rca_service.api.v1 import rca_pb2, rca_pb2_grpc
from factorylens.rca_service.cost import CostReportData, CostTracker
from factorylens.rca_service.outputs import workload_predictability_points
from factorylens.rca_service.store import SeriesInfo, SeriesStore, View, ViewError
from factorylens.registry import Attributes

MAX_QUERY_SERIES = 1000
_TOKEN_VERSION = 1


class PageTokenError(ValueError):
    """A page_token that this server did not hand out for this query."""


def _query_digest(*parts: Any) -> str:
    """Ties a page token to the filters it was made for."""
    return hashlib.blake2b(json.dumps(parts, separators=(",", ":")).encode(), digest_size=6).hexdigest()


def encode_page_token(kind: str, digest: str, position: Sequence[Any]) -> str:
    """An opaque token: the list it pages, its filters' digest and the sort key of the last item sent."""
    raw = json.dumps([_TOKEN_VERSION, kind, digest, list(position)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, kind: str, digest: str) -> list[Any]:
    """The position a token continues after; PageTokenError when it is not ours, or for other filters."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        version, token_kind, token_digest, position = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise PageTokenError("page_token is malformed; pass next_page_token of the previous response as is") from exc
    if version != _TOKEN_VERSION or token_kind != kind or not isinstance(position, list):
        raise PageTokenError(f"page_token is not a {kind} page token of this server")
    if token_digest != digest:
        raise PageTokenError(
            f"page_token belongs to a {kind} listing with other filters; "
            "keep the filters the same while paging, or start again without a token"
        )
    return position


def _page_size(page_size: int, limit: int, default: int, maximum: int) -> int:
    size = page_size or limit or default
    if limit:
        size = min(size, limit)
    return min(size, maximum)


def _varint_size(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def _fill_page(
    items: Iterable[Any], to_message: Callable[[Any], Message], size: int, budget: int | None = None
) -> tuple[list[Message], Any, bool]:
    """Messages of up to ``size`` items and ``budget`` (PAGE_BYTES) serialized bytes, at least one
    item; also the last item taken and whether any item was left over."""
    budget = PAGE_BYTES if budget is None else budget
    page: list[Message] = []
    used = 0
    last = None
    for item in items:
        if len(page) >= size:
            return page, last, True
        message = to_message(item)
        n = message.ByteSize()
        n += 1 + _varint_size(n)  # the repeated field's tag and length
        if page and used + n > budget:
            return page, last, True
        page.append(message)
        used += n
        last = item
    return page, last, False


def _attributes(values: Mapping[str, Any]) -> list[rca_pb2.Attribute]:
    return [rca_pb2.Attribute(key=k, value=str(v)) for k, v in sorted(values.items())]


def series_info_message(info: SeriesInfo, store: SeriesStore) -> rca_pb2.SeriesInfo:
    points, first, last = store.extent(info.id)
    return rca_pb2.SeriesInfo(
        id=info.id,
        metric=info.metric,
        kind=info.kind.value,
        unit=info.unit,
        domain=info.domain,
        entity=info.entity,
        resource=_attributes(info.resource),
        attributes=_attributes(info.attributes),
        points=points,
        first_time_unix_nano=first,
        last_time_unix_nano=last,
        default_view=info.default_view.value,
        description=info.description,
    )


def incident_message(incident: Incident) -> rca_pb2.Incident:
    return rca_pb2.Incident(
        id=incident.id,
        state=incident.state.value,
        title=incident.title,
        opened_time_unix_nano=incident.opened_unix_nano,
        onset_time_unix_nano=incident.onset_unix_nano,
        updated_time_unix_nano=incident.updated_unix_nano,
        resolved_time_unix_nano=incident.resolved_unix_nano,
        kpi_series_id=incident.kpi_series_id,
        score=incident.score,
        summary=incident.summary,
        kind=incident.kind,
        severity=incident.severity,
        causes=[
            rca_pb2.Cause(
                rank=c.rank,
                entity=c.entity,
                domain=c.domain,
                signal=c.signal,
                series_id=c.series_id,
                onset_time_unix_nano=c.onset_unix_nano,
                score=c.score,
                explanation=c.explanation,
                evidence=[
                    rca_pb2.Evidence(
                        series_id=e.series_id,
                        description=e.description,
                        time_unix_nano=e.time_unix_nano,
                        observed=e.observed,
                        expected=e.expected,
                        lower=e.lower,
                        upper=e.upper,
                        trace_ids=e.trace_ids,
                    )
                    for e in c.evidence
                ],
            )
            for c in incident.causes
        ],
    )


def _view(name: str, context: grpc.ServicerContext) -> View | None:
    if not name:
        return None
    try:
        return View(name)
    except ValueError:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown view {name!r}; use one of {[v.value for v in View]}")
    return None


def _range(start: int, end: int, context: grpc.ServicerContext) -> tuple[int, int]:
    end = end or 2**63 - 1
    if start > end:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "start_time_unix_nano is after end_time_unix_nano")
    return start, end


class RcaApiServicer(rca_pb2_grpc.RcaServiceServicer):
    def __init__(
        self,
        store: SeriesStore,
        analyzer: Analyzer,
        health: Callable[[], rca_pb2.HealthResponse],
        *,
        cost: CostTracker | None = None,
    ) -> None:
        self._store = store
        self._analyzer = analyzer
        self._health = health
        self._cost = cost or CostTracker()

    def Health(self, request: rca_pb2.HealthRequest, context: grpc.ServicerContext) -> rca_pb2.HealthResponse:
        return self._health()

    def ListSeries(
        self, request: rca_pb2.ListSeriesRequest, context: grpc.ServicerContext
    ) -> rca_pb2.ListSeriesResponse:
        match = {a.key: a.value for a in request.match}
        digest = _query_digest(request.metric or "*", sorted(match.items()), request.domain, request.entity)
        after = ""
        if request.page_token:
            try:
                position = decode_page_token(request.page_token, "series", digest)
                if len(position) != 1 or not isinstance(position[0], str) or not position[0]:
                    raise PageTokenError("page_token is not a series page token of this server")
            except PageTokenError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            after = position[0]
        size = _page_size(request.page_size, request.limit, DEFAULT_SERIES_PAGE, MAX_SERIES_PAGE)
        found = self._store.list_series(request.metric or "*", match, request.domain, request.entity)
        # by id: a stable order, so series that arrive while a client pages land on either side of
        # its position and existing ones are neither repeated nor skipped
        candidates = heapq.nsmallest(size + 1, (i for i in found if i.id > after), key=lambda i: i.id)
        page, last, more = _fill_page(candidates, lambda i: series_info_message(i, self._store), size)
        return rca_pb2.ListSeriesResponse(
            series=page, truncated=more, next_page_token=encode_page_token("series", digest, [last.id]) if more else ""
        )

    def QuerySeries(
        self, request: rca_pb2.QuerySeriesRequest, context: grpc.ServicerContext
    ) -> rca_pb2.QuerySeriesResponse:
        if len(request.series_ids) > MAX_QUERY_SERIES:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_QUERY_SERIES} series per query")
        view = _view(request.view, context)
        start, end = _range(request.start_time_unix_nano, request.end_time_unix_nano, context)
        response = rca_pb2.QuerySeriesResponse()
        for sid in request.series_ids:
            try:
                info, ts, values = self._store.query(sid, view, start, end)
            except KeyError:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no series {sid!r}")
            except ViewError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            data = response.series.add(
                info=series_info_message(info, self._store), view=(view or info.default_view).value
            )
            data.time_unix_nano.extend(ts.tolist())
            data.values.extend(values.tolist())
        return response

    def ListIncidents(
        self, request: rca_pb2.ListIncidentsRequest, context: grpc.ServicerContext
    ) -> rca_pb2.ListIncidentsResponse:
        digest = _query_digest(bool(request.open_only))
        after: tuple[int, str] | None = None
        if request.page_token:
            try:
                position = decode_page_token(request.page_token, "incidents", digest)
                if (
                    len(position) != 2
                    or not isinstance(position[0], int)
                    or isinstance(position[0], bool)
                    or not isinstance(position[1], str)
                ):
                    raise PageTokenError("page_token is not an incidents page token of this server")
            except PageTokenError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            after = (-position[0], position[1])
        size = _page_size(request.page_size, request.limit, DEFAULT_INCIDENTS_PAGE, MAX_INCIDENTS_PAGE)

        def key(incident: Incident) -> tuple[int, str]:  # newest first, then by id
            return -incident.opened_unix_nano, incident.id

        candidates = heapq.nsmallest(
            size + 1,
            (
                i
                for i in self._analyzer.incidents()
                if (not request.open_only or i.state is IncidentState.OPEN) and (after is None or key(i) > after)
            ),
            key=key,
        )
        page, last, more = _fill_page(candidates, incident_message, size)
        return rca_pb2.ListIncidentsResponse(
            incidents=page,
            next_page_token=encode_page_token("incidents", digest, [last.opened_unix_nano, last.id]) if more else "",
        )

    def GetIncident(self, request: rca_pb2.GetIncidentRequest, context: grpc.ServicerContext) -> rca_pb2.Incident:
        incident = self._analyzer.incident(request.id)
        if incident is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no incident {request.id!r}")
            raise AssertionError("unreachable: ServicerContext.abort raises")  # grpc is untyped here
        return incident_message(incident)

    def GetBaseline(self, request: rca_pb2.GetBaselineRequest, context: grpc.ServicerContext) -> rca_pb2.Baseline:
        view = _view(request.view, context)
        start, end = _range(request.start_time_unix_nano, request.end_time_unix_nano, context)
        try:
            baseline = self._analyzer.baseline(self._store, request.series_id, start, end, view)
            info = self._store.require_info(request.series_id)
        except KeyError:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no series {request.series_id!r}")
        except ViewError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        clean = lambda a: np.where(np.isfinite(a), a, np.nan).tolist()  # noqa: E731
        return rca_pb2.Baseline(
            info=series_info_message(info, self._store),
            method=baseline.method,
            view=baseline.view.value,
            time_unix_nano=baseline.time_unix_nano.tolist(),
            observed=clean(baseline.observed),
            expected=clean(baseline.expected),
            lower=clean(baseline.lower),
            upper=clean(baseline.upper),
            score=clean(baseline.score),
            predictability=baseline.predictability,
            season_periods_s=baseline.periods_s,
        )

    def GetCostReport(self, request: rca_pb2.GetCostReportRequest, context: grpc.ServicerContext) -> rca_pb2.CostReport:
        group_by = request.group_by or "team"
        if group_by not in GROUPS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"group_by must be one of {', '.join(GROUPS)}")
        end = request.end_time_unix_nano or time.time_ns()
        start, end = _range(request.start_time_unix_nano, end, context)
        report = self._cost.report(self._store, start, end, group_by)
        return cost_report_message(report, _workload_predictability(self._store, self._analyzer))


def cost_report_message(report: CostReportData, predictability: Mapping[str, float]) -> rca_pb2.CostReport:
    return rca_pb2.CostReport(
        start_time_unix_nano=report.start_ns,
        end_time_unix_nano=report.end_ns,
        group_by=report.group_by,
        currency=report.catalog.currency,
        example_prices=report.catalog.example,
        catalog=report.catalog.origin if report.catalog.models else "",
        groups=[
            cost_figures_message(group, totals, report.teams.get(group, "") if report.group_by == "job" else "")
            for group, totals in sorted(report.groups.items())
        ],
        unpriced_models=report.unpriced_models,
        predictability=dict(predictability),
    )


# the additive CostTotals fields and their names in the CostFigures message (both ways)
COST_FIELDS = {
    "allocated_h": "allocated_gpu_hours",
    "active_h": "active_gpu_hours",
    "active_sm_h": "active_sm_gpu_hours",
    "measured_h": "measured_gpu_hours",
    "idle_h": "idle_gpu_hours",
    "unallocated_h": "unallocated_gpu_hours",
    "unpriced_h": "unpriced_gpu_hours",
    "useful_h": "useful_gpu_hours",
    "useful_basis_h": "useful_basis_gpu_hours",
    "energy_kwh": "energy_kwh",
    "unallocated_energy_kwh": "unallocated_energy_kwh",
    "gpu_time_cost": "gpu_time_cost",
    "energy_cost": "energy_cost",
    "idle_cost": "idle_cost",
    "unallocated_cost": "unallocated_cost",
    "useful_cost": "useful_cost",
    "samples": "samples",
    "tokens": "tokens",
    "sample_jobs_cost": "sample_jobs_cost",
    "token_jobs_cost": "token_jobs_cost",
}
# ratios and totals derived from them, sent for clients that do not recompute them
COST_DERIVED = ("total_cost", "cost_per_1k_samples", "cost_per_1m_tokens", "efficiency", "idle_ratio")


def cost_figures_message(group: str, t: CostTotals, team: str = "") -> rca_pb2.CostFigures:
    values = {field: getattr(t, name) for name, field in COST_FIELDS.items()}
    return rca_pb2.CostFigures(group=group, team=team, **values, **{name: getattr(t, name) for name in COST_DERIVED})


def cost_totals_of(message: rca_pb2.CostFigures) -> CostTotals:
    """The additive sums a CostFigures message carries (the ratios follow from them)."""
    return CostTotals(**{name: getattr(message, field) for name, field in COST_FIELDS.items()})


def _workload_predictability(store: SeriesStore, analyzer: Analyzer) -> dict[str, float]:
    return {
        str(attributes[Attributes.FACTORYLENS_WORKLOAD]): value
        for attributes, value in workload_predictability_points(store, analyzer.predictability())
    }
