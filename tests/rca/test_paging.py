"""The RCA API's list calls page (AIP-158: page_size, page_token, next_page_token) instead of running
into gRPC's 4 MiB receive limit: by count and by bytes, in a stable order while data arrives, and the
``factorylens rca series|incidents`` commands follow the pages."""

from __future__ import annotations

import base64
import subprocess
import sys
import time

import grpc
import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from factorylens.rca_service.analysis import Incident, IncidentState
from factorylens.rca_service.api import servicer
from factorylens.rca_service.api.v1 import rca_pb2
from factorylens.rca_service.client import list_incidents, list_series
from factorylens.rca_service.store import SeriesKind

from .conftest import api, raw_export
from .otlp_builders import key_values, metrics_request

GRPC_RECEIVE_LIMIT = 4 * 1024 * 1024  # a default gRPC client's


def factorylens(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "factorylens", *args], capture_output=True, text=True, timeout=120)


def export_series(service, metric: str, indices: range) -> None:
    """One gauge point for each of ``len(indices)`` series of ``metric`` (told apart by ``idx``), in one real
    OTLP export."""
    gauge = metrics_pb2.Metric(name=metric, unit="1")
    now = time.time_ns()
    for i in indices:
        point = gauge.gauge.data_points.add(time_unix_nano=now, as_double=float(i))
        point.attributes.extend(key_values({"idx": f"{i:05d}"}))
    response = raw_export(grpc.insecure_channel(service.address), "metrics")(
        metrics_request([gauge]).SerializeToString(), timeout=30
    )
    assert not response.partial_success.rejected_data_points, response.partial_success.error_message


def pages(stub, request) -> list:
    """Every response of a listing, following next_page_token by hand."""
    responses = []
    call = stub.ListSeries if isinstance(request, rca_pb2.ListSeriesRequest) else stub.ListIncidents
    while True:
        response = call(request, timeout=30)
        responses.append(response)
        if not response.next_page_token:
            return responses
        assert len(responses) < 1000, "paging does not end"
        request.page_token = response.next_page_token


def test_thousands_of_series_page_in_id_order_without_repeats_or_gaps(make_service):
    service = make_service()
    export_series(service, "paging.gauge", range(3000))
    stub = api(grpc.insecure_channel(service.address))
    expected = sorted(sid for sid, s in service.store.series.items() if s.info.metric == "paging.gauge")
    assert len(expected) == 3000

    responses = pages(stub, rca_pb2.ListSeriesRequest(metric="paging.*", page_size=700))
    assert [len(r.series) for r in responses] == [700, 700, 700, 700, 200]
    assert [r.truncated for r in responses] == [True] * 4 + [False]
    ids = [s.id for r in responses for s in r.series]
    assert ids == expected  # sorted by id across pages: no repeats, no gaps

    # the defaults: 1000 a page without page_size; an old client's limit still bounds one response
    first = stub.ListSeries(rca_pb2.ListSeriesRequest(metric="paging.*"))
    assert len(first.series) == servicer.DEFAULT_SERIES_PAGE and first.truncated and first.next_page_token
    old_client = stub.ListSeries(rca_pb2.ListSeriesRequest(metric="paging.*", limit=5000))
    assert len(old_client.series) == 3000 and not old_client.truncated and not old_client.next_page_token
    assert len(stub.ListSeries(rca_pb2.ListSeriesRequest(metric="paging.*", limit=10, page_size=50)).series) == 10
    huge = stub.ListSeries(rca_pb2.ListSeriesRequest(page_size=2**32 - 1))
    assert len(huge.series) <= servicer.MAX_SERIES_PAGE

    # series that arrive while a client pages: the ones that existed are listed once each, none twice
    request = rca_pb2.ListSeriesRequest(metric="paging.*", page_size=400)
    seen = []
    while True:
        response = stub.ListSeries(request)
        seen += [s.id for s in response.series]
        if not response.next_page_token:
            break
        if len(seen) == 800:
            export_series(service, "paging.gauge", range(3000, 3600))
        request.page_token = response.next_page_token
    assert len(seen) == len(set(seen)) and set(expected) <= set(seen)
    assert seen == sorted(seen)
    everything = sorted(sid for sid, s in service.store.series.items() if s.info.metric == "paging.gauge")
    assert len(everything) == 3600 and len(seen) < 3600  # new series before the position are not listed

    # the client's generator follows the pages, and stops at a limit
    assert [
        s.id for s in list_series(stub, rca_pb2.ListSeriesRequest(metric="paging.*"), limit=1234, page_size=500)
    ] == everything[:1234]
    assert [s.id for s in list_series(stub, rca_pb2.ListSeriesRequest(metric="paging.*"))] == everything

    # and so does the CLI, whatever the page size
    listed = factorylens(
        "rca", "series", "--target", service.address, "--metric", "paging.*", "--limit", "0", "--page-size", "300"
    )
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[-1] == "3600 series"
    assert [line.split()[0] for line in lines[:-1]] == everything
    limited = factorylens(
        "rca", "series", "--target", service.address, "--metric", "paging.*", "--limit", "1500", "--page-size", "400"
    )
    assert limited.returncode == 0, limited.stderr
    assert limited.stdout.splitlines()[-1] == "1500 series (more matched; raise --limit)"
    assert len(limited.stdout.splitlines()) == 1501


def test_series_with_huge_attributes_page_by_bytes_under_the_receive_limit(make_service):
    service = make_service()
    # five series with five 200 kB attribute values each: 5 MB in all, more than a client may receive at once.
    # Put in the store directly: ingest may bound attribute values.
    resource = {"service.name": "big", "host.name": "node-1"}
    for i in range(5):
        attributes = {f"blob{j}": f"{i}{j}" + "x" * 200_000 for j in range(5)}
        created = service.store.get_or_create("paging.big", SeriesKind.GAUGE, "1", resource, attributes)
        created.append(time.time_ns(), float(i))
    stub = api(grpc.insecure_channel(service.address))  # gRPC's default 4 MiB receive limit

    responses = pages(stub, rca_pb2.ListSeriesRequest(metric="paging.big"))
    assert len(responses) >= 3
    assert all(r.ByteSize() < GRPC_RECEIVE_LIMIT for r in responses)
    assert all(r.series for r in responses)
    ids = [s.id for r in responses for s in r.series]
    assert ids == sorted(sid for sid, s in service.store.series.items() if s.info.metric == "paging.big")
    assert all(len(a.value) == 200_002 for r in responses for s in r.series for a in s.attributes)

    listed = factorylens("rca", "series", "--target", service.address, "--metric", "paging.big")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[-1] == "5 series"
    as_json = factorylens("rca", "series", "--target", service.address, "--metric", "paging.big", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert as_json.stdout.count('"blob4"') == 5


def test_a_page_holds_at_least_one_item_however_small_the_byte_budget(make_service, monkeypatch):
    service = make_service()
    export_series(service, "paging.small", range(7))
    monkeypatch.setattr(servicer, "PAGE_BYTES", 1)  # the service runs in this process
    stub = api(grpc.insecure_channel(service.address))
    responses = pages(stub, rca_pb2.ListSeriesRequest(metric="paging.small", page_size=100))
    assert [len(r.series) for r in responses] == [1] * 7
    assert len({s.id for r in responses for s in r.series}) == 7


def test_a_bad_page_token_is_an_invalid_argument(make_service):
    service = make_service()
    export_series(service, "paging.tok", range(5))
    service.analyzer.load_incidents(make_incidents(5))
    stub = api(grpc.insecure_channel(service.address))
    series_token = stub.ListSeries(rca_pb2.ListSeriesRequest(metric="paging.tok", page_size=2)).next_page_token
    incidents_token = stub.ListIncidents(rca_pb2.ListIncidentsRequest(page_size=2)).next_page_token
    assert series_token and incidents_token
    # a good token works
    assert len(stub.ListSeries(rca_pb2.ListSeriesRequest(metric="paging.tok", page_token=series_token)).series) == 3

    def refused(call, request) -> str:
        with pytest.raises(grpc.RpcError) as caught:
            call(request, timeout=10)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value
        assert "page_token" in caught.value.details()
        return caught.value.details()

    for token in [
        "not a token!",
        "%%%",
        base64.urlsafe_b64encode(b"[1, 2").decode(),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b"[1]").decode(),
        series_token[:-3],
        incidents_token,
    ]:
        refused(stub.ListSeries, rca_pb2.ListSeriesRequest(metric="paging.tok", page_token=token))
    assert "other filters" in refused(
        stub.ListSeries, rca_pb2.ListSeriesRequest(metric="other.*", page_token=series_token)
    )
    refused(stub.ListIncidents, rca_pb2.ListIncidentsRequest(page_token=series_token))
    assert "other filters" in refused(
        stub.ListIncidents, rca_pb2.ListIncidentsRequest(open_only=True, page_token=incidents_token)
    )


def make_incidents(n: int, start: int = 0, summary: str = "") -> list[Incident]:
    """Incidents opened a second apart, three at a time at the same moment (ties broken by id); every
    other one resolved."""
    base = 1_800_000_000 * 10**9
    incidents = []
    for i in range(start, start + n):
        opened = base + (i // 3) * 10**9
        resolved = i % 2 == 1
        incidents.append(
            Incident(
                id=f"inc-{(i * 7919) % 100_000:05d}-{i}",
                state=IncidentState.RESOLVED if resolved else IncidentState.OPEN,
                title=f"incident {i}",
                opened_unix_nano=opened,
                onset_unix_nano=opened - 10**9,
                updated_unix_nano=opened,
                resolved_unix_nano=opened + 5 * 10**9 if resolved else 0,
                summary=summary,
            )
        )
    return incidents


def newest_first(incidents: list[Incident]) -> list[str]:
    return [i.id for i in sorted(incidents, key=lambda i: (-i.opened_unix_nano, i.id))]


def test_incidents_page_newest_first_without_repeats_or_gaps(make_service):
    service = make_service()
    incidents = make_incidents(250)
    service.analyzer.load_incidents(list(incidents))
    stub = api(grpc.insecure_channel(service.address))

    responses = pages(stub, rca_pb2.ListIncidentsRequest(page_size=40))
    assert [len(r.incidents) for r in responses] == [40] * 6 + [10]
    assert [i.id for r in responses for i in r.incidents] == newest_first(incidents)
    open_ids = [
        i.id for r in pages(stub, rca_pb2.ListIncidentsRequest(open_only=True, page_size=30)) for i in r.incidents
    ]
    assert open_ids == newest_first([i for i in incidents if i.state is IncidentState.OPEN])

    # defaults: 100 a page; an old client's limit bounds a response
    first = stub.ListIncidents(rca_pb2.ListIncidentsRequest())
    assert len(first.incidents) == servicer.DEFAULT_INCIDENTS_PAGE and first.next_page_token
    assert len(stub.ListIncidents(rca_pb2.ListIncidentsRequest(limit=7)).incidents) == 7
    assert len(stub.ListIncidents(rca_pb2.ListIncidentsRequest(page_size=5000)).incidents) == 250

    # incidents that open while a client pages come before its position: no repeats, no gaps
    request = rca_pb2.ListIncidentsRequest(page_size=60)
    seen = []
    while True:
        response = stub.ListIncidents(request)
        seen += [i.id for i in response.incidents]
        if not response.next_page_token:
            break
        if len(seen) == 120:
            service.analyzer.load_incidents(incidents + make_incidents(30, start=1000))
        request.page_token = response.next_page_token
    assert seen == newest_first(incidents)

    # the client's generator and the CLI follow the pages
    everything = newest_first(incidents + make_incidents(30, start=1000))
    assert [i.id for i in list_incidents(stub, page_size=33)] == everything
    assert [i.id for i in list_incidents(stub, limit=75, page_size=20)] == everything[:75]
    listed = factorylens("rca", "incidents", "--target", service.address, "--limit", "0", "--page-size", "25")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[-1] == "280 incident(s)"
    assert listed.stdout.count("[open]") == 140
    limited = factorylens("rca", "incidents", "--target", service.address, "--open", "--limit", "130")
    assert limited.returncode == 0, limited.stderr
    assert limited.stdout.splitlines()[-1] == "130 incident(s) (more matched; raise --limit)"


def test_incidents_page_by_bytes(make_service):
    service = make_service()
    incidents = make_incidents(6, summary="s" * 1_000_000)  # 6 MB of incidents
    service.analyzer.load_incidents(incidents)
    stub = api(grpc.insecure_channel(service.address))
    responses = pages(stub, rca_pb2.ListIncidentsRequest())
    assert len(responses) >= 3 and all(r.ByteSize() < GRPC_RECEIVE_LIMIT for r in responses)
    assert [i.id for r in responses for i in r.incidents] == newest_first(incidents)
    listed = factorylens("rca", "incidents", "--target", service.address, "--limit", "0")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[-1] == "6 incident(s)"
