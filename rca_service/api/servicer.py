"""The ``factorylens.rca.v1.RcaService`` servicer: the store and the analyzer, over gRPC."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import grpc
import numpy as np

from factorylens.rca_service.analysis import Analyzer, Incident, IncidentState
from factorylens.rca_service.api.v1 import rca_pb2, rca_pb2_grpc
from factorylens.rca_service.store import SeriesInfo, SeriesStore, View, ViewError

DEFAULT_LIST_LIMIT = 1000
MAX_QUERY_SERIES = 1000


def _attributes(values: Mapping[str, Any]) -> list[rca_pb2.Attribute]:
    return [rca_pb2.Attribute(key=k, value=str(v)) for k, v in sorted(values.items())]


def series_info_message(info: SeriesInfo, store: SeriesStore) -> rca_pb2.SeriesInfo:
    series = store.series.get(info.id)
    return rca_pb2.SeriesInfo(
        id=info.id, metric=info.metric, kind=info.kind.value, unit=info.unit, domain=info.domain,
        entity=info.entity, resource=_attributes(info.resource), attributes=_attributes(info.attributes),
        points=series.point_count if series else 0, first_time_unix_nano=series.first_ts if series else 0,
        last_time_unix_nano=series.last_ts if series else 0, default_view=info.default_view.value,
        description=info.description)


def incident_message(incident: Incident) -> rca_pb2.Incident:
    return rca_pb2.Incident(
        id=incident.id, state=incident.state.value, title=incident.title,
        opened_time_unix_nano=incident.opened_unix_nano, onset_time_unix_nano=incident.onset_unix_nano,
        updated_time_unix_nano=incident.updated_unix_nano, resolved_time_unix_nano=incident.resolved_unix_nano,
        kpi_series_id=incident.kpi_series_id, score=incident.score, summary=incident.summary,
        causes=[rca_pb2.Cause(
            rank=c.rank, entity=c.entity, domain=c.domain, signal=c.signal, series_id=c.series_id,
            onset_time_unix_nano=c.onset_unix_nano, score=c.score, explanation=c.explanation,
            evidence=[rca_pb2.Evidence(
                series_id=e.series_id, description=e.description, time_unix_nano=e.time_unix_nano,
                observed=e.observed, expected=e.expected, lower=e.lower, upper=e.upper, trace_ids=e.trace_ids)
                for e in c.evidence]) for c in incident.causes])


def _view(name: str, context: grpc.ServicerContext) -> View | None:
    if not name:
        return None
    try:
        return View(name)
    except ValueError:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      f"unknown view {name!r}; use one of {[v.value for v in View]}")
    return None


def _range(start: int, end: int, context: grpc.ServicerContext) -> tuple[int, int]:
    end = end or 2**63 - 1
    if start > end:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "start_time_unix_nano is after end_time_unix_nano")
    return start, end


class RcaApiServicer(rca_pb2_grpc.RcaServiceServicer):
    def __init__(self, store: SeriesStore, analyzer: Analyzer, health: Callable[[], rca_pb2.HealthResponse]) -> None:
        self._store = store
        self._analyzer = analyzer
        self._health = health

    def Health(self, request: rca_pb2.HealthRequest, context: grpc.ServicerContext) -> rca_pb2.HealthResponse:
        return self._health()

    def ListSeries(self, request: rca_pb2.ListSeriesRequest, context: grpc.ServicerContext) -> rca_pb2.ListSeriesResponse:
        limit = request.limit or DEFAULT_LIST_LIMIT
        found = self._store.list_series(request.metric or "*", {a.key: a.value for a in request.match},
                                        request.domain, request.entity, limit + 1)
        return rca_pb2.ListSeriesResponse(series=[series_info_message(i, self._store) for i in found[:limit]],
                                          truncated=len(found) > limit)

    def QuerySeries(self, request: rca_pb2.QuerySeriesRequest,
                    context: grpc.ServicerContext) -> rca_pb2.QuerySeriesResponse:
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
            data = response.series.add(info=series_info_message(info, self._store),
                                        view=(view or info.default_view).value)
            data.time_unix_nano.extend(ts.tolist())
            data.values.extend(values.tolist())
        return response

    def ListIncidents(self, request: rca_pb2.ListIncidentsRequest,
                      context: grpc.ServicerContext) -> rca_pb2.ListIncidentsResponse:
        incidents = [i for i in self._analyzer.incidents()
                     if not request.open_only or i.state is IncidentState.OPEN]
        if request.limit:
            incidents = incidents[:request.limit]
        return rca_pb2.ListIncidentsResponse(incidents=[incident_message(i) for i in incidents])

    def GetIncident(self, request: rca_pb2.GetIncidentRequest, context: grpc.ServicerContext) -> rca_pb2.Incident:
        incident = self._analyzer.incident(request.id)
        if incident is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no incident {request.id!r}")
        return incident_message(incident)

    def GetBaseline(self, request: rca_pb2.GetBaselineRequest, context: grpc.ServicerContext) -> rca_pb2.Baseline:
        view = _view(request.view, context)
        start, end = _range(request.start_time_unix_nano, request.end_time_unix_nano, context)
        try:
            baseline = self._analyzer.baseline(self._store, request.series_id, start, end, view)
            info = self._store.series[request.series_id].info
        except KeyError:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no series {request.series_id!r}")
        except ViewError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        clean = lambda a: np.where(np.isfinite(a), a, np.nan).tolist()  # noqa: E731
        return rca_pb2.Baseline(
            info=series_info_message(info, self._store), method=baseline.method, view=baseline.view.value,
            time_unix_nano=baseline.time_unix_nano.tolist(), observed=clean(baseline.observed),
            expected=clean(baseline.expected), lower=clean(baseline.lower), upper=clean(baseline.upper),
            score=clean(baseline.score), predictability=baseline.predictability,
            season_periods_s=baseline.periods_s)
