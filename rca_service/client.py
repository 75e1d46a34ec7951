"""A small client of the ``factorylens.rca.v1`` API, used by the ``factorylens rca`` commands."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from factorylens.rca_service.api.v1 import rca_pb2, rca_pb2_grpc


def connect(
    target: str,
    *,
    token: str | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> rca_pb2_grpc.RcaServiceStub:
    """A stub for ``target`` (HOST:PORT); TLS when ``tls_ca`` is given, mTLS with a client cert/key."""
    if (tls_cert or tls_key) and not tls_ca:
        raise ValueError("a client certificate needs --tls-ca (TLS); refusing to fall back to plaintext")
    if tls_ca:
        creds = grpc.ssl_channel_credentials(
            Path(tls_ca).read_bytes(),
            Path(tls_key).read_bytes() if tls_key else None,
            Path(tls_cert).read_bytes() if tls_cert else None,
        )
        if token:
            creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(token))
        channel = grpc.secure_channel(target, creds)
    else:
        channel = grpc.insecure_channel(target)
        if token:
            channel = grpc.intercept_channel(channel, _BearerToken(token))
    return rca_pb2_grpc.RcaServiceStub(channel)


class _BearerToken(grpc.UnaryUnaryClientInterceptor):
    """Bearer token over plaintext (localhost or a trusted network); gRPC call credentials need TLS."""

    def __init__(self, token: str) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),)

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Message], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Message,
    ) -> Any:
        return continuation(_Details(client_call_details, self._metadata), request)


class _Details(grpc.ClientCallDetails):
    def __init__(self, base: grpc.ClientCallDetails, extra: tuple) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = tuple(base.metadata or ()) + extra
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


def paged(
    call: Callable[..., Message],
    request: Message,
    field: str,
    *,
    limit: int = 0,
    page_size: int = 0,
    timeout: float | None = None,
) -> Iterator[Message]:
    """The items of a paged list call (``stub.ListSeries`` with ``field="series"``, ...), fetched one
    page at a time as the caller iterates, following ``next_page_token`` until the last page or until
    ``limit`` items (0 = all). ``page_size`` 0 leaves the page size to the server; ``timeout`` is per
    page. Paging starts at the request's own ``page_token`` (normally empty: the first page)."""
    if limit < 0 or page_size < 0:
        raise ValueError("limit and page_size must not be negative")
    page_request = type(request)()
    page_request.CopyFrom(request)
    seen_tokens: set[str] = set()
    returned = 0
    while True:
        size = min(page_size or limit, limit or page_size)  # the rest of limit on the last page
        if limit:
            size = min(size, limit - returned)
        page_request.page_size = size = min(size, 2**32 - 1)
        page_request.limit = size  # what a server from before paging reads instead
        response = call(page_request, timeout=timeout)
        for item in getattr(response, field):
            yield item
            returned += 1
            if limit and returned >= limit:
                return
        token = response.next_page_token
        if not token:
            return
        if token in seen_tokens:
            raise RuntimeError(f"the server repeated page token {token!r}; stopping instead of looping")
        seen_tokens.add(token)
        page_request.page_token = token


def list_series(
    stub: rca_pb2_grpc.RcaServiceStub,
    request: rca_pb2.ListSeriesRequest | None = None,
    *,
    limit: int = 0,
    page_size: int = 0,
    timeout: float | None = None,
) -> Iterator[rca_pb2.SeriesInfo]:
    """Every series matching ``request``'s filters (sorted by id), up to ``limit`` (0 = all), page by page."""
    return paged(
        stub.ListSeries,
        request or rca_pb2.ListSeriesRequest(),
        "series",
        limit=limit,
        page_size=page_size,
        timeout=timeout,
    )


def list_incidents(
    stub: rca_pb2_grpc.RcaServiceStub,
    request: rca_pb2.ListIncidentsRequest | None = None,
    *,
    limit: int = 0,
    page_size: int = 0,
    timeout: float | None = None,
) -> Iterator[rca_pb2.Incident]:
    """Incidents newest first, up to ``limit`` (0 = all), page by page."""
    return paged(
        stub.ListIncidents,
        request or rca_pb2.ListIncidentsRequest(),
        "incidents",
        limit=limit,
        page_size=page_size,
        timeout=timeout,
    )


def when(unix_nano: int) -> str:
    if not unix_nano:
        return "-"
    return datetime.fromtimestamp(unix_nano / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def format_incident(incident: rca_pb2.Incident) -> str:
    lines = [
        f"{incident.id}  [{incident.state}]  {incident.title}",
        f"  onset {when(incident.onset_time_unix_nano)} UTC, opened {when(incident.opened_time_unix_nano)}"
        + (f", resolved {when(incident.resolved_time_unix_nano)}" if incident.resolved_time_unix_nano else "")
        + f", score {incident.score:.2f}",
    ]
    for cause in incident.causes:
        lines.append(f"  #{cause.rank}  {cause.score:.2f}  {cause.domain:<8} {cause.entity}  {cause.signal}")
        lines.append(f"       {cause.explanation}")
    return "\n".join(lines)
