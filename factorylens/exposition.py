"""Prometheus ``/metrics`` for any factorylens component, named by the registry.

Names follow the collector's OTel→Prometheus translation (``hw.gpu.utilization`` →
``hw_gpu_utilization_ratio``), so dashboards work the same whether Prometheus scrapes us directly
or receives our OTLP through a collector. Resource attributes go into ``target_info``.
The server binds to localhost by default and can require a bearer token and TLS.
"""

from __future__ import annotations

import hmac
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from socketserver import ThreadingMixIn
from typing import Any, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from factorylens.registry import REGISTRY, Instrument, Registry, prometheus_label

SeriesSource = Callable[[], Mapping[str, list[tuple[Mapping[str, Any], float]]]]


class SnapshotCollector:
    """A prometheus_client collector over a function returning ``{metric: [(attributes, value)]}``."""

    def __init__(self, source: SeriesSource, resource: Mapping[str, Any], registry: Registry = REGISTRY) -> None:
        self._source = source
        self._resource = {prometheus_label(k): _label_value(v) for k, v in resource.items()}
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        if self._resource:
            info = InfoMetricFamily("target", "Target metadata (the OTel resource)")
            info.add_metric(list(self._resource), self._resource)
            yield info
        series = self._source()
        for spec in self._registry.metrics:
            points = series.get(spec.name)
            if not points:
                continue
            name = spec.prometheus_name
            keys = sorted({k for attributes, _ in points for k in attributes})
            labels = [prometheus_label(k) for k in keys]
            family: CounterMetricFamily | GaugeMetricFamily
            if spec.instrument is Instrument.COUNTER:
                family = CounterMetricFamily(name.removesuffix("_total"), spec.description, labels=labels, unit="")
            else:
                family = GaugeMetricFamily(name, spec.description, labels=labels)
            for attributes, value in points:
                family.add_metric([_label_value(attributes.get(k, "")) for k in keys], value)
            yield family


def _label_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


MAX_CONNECTIONS = 64
IDLE_TIMEOUT_S = 10.0


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """A thread per connection, at most ``MAX_CONNECTIONS`` at once: more are closed at once, so a
    flood of idle connections cannot pile up threads."""

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _QuietHandler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT_S  # a connection that sends nothing for this long is closed

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _with_bearer_token(app: Callable, token: str) -> Callable:
    expected = f"Bearer {token}".encode()

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        given = environ.get("HTTP_AUTHORIZATION", "").encode()
        if not hmac.compare_digest(given, expected):
            start_response(
                "401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Bearer realm="factorylens"')]
            )
            return [b"missing or wrong bearer token\n"]
        return app(environ, start_response)

    return guarded


class MetricsServer:
    """``/metrics`` over HTTP(S) on a background thread; ``shutdown()`` stops it."""

    def __init__(
        self,
        collectors: Iterable[Any],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        bearer_token: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_client_ca: str | None = None,
    ) -> None:
        registry = CollectorRegistry(auto_describe=False)
        for collector in collectors:
            registry.register(collector)
        app = make_wsgi_app(registry)
        if bearer_token:
            app = _with_bearer_token(app, bearer_token)
        self._server = make_server(host, port, app, _ThreadingWSGIServer, handler_class=_QuietHandler)
        if tls_cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls_cert, tls_key)
            if tls_client_ca:  # mTLS: only clients with a certificate this CA signed
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(tls_client_ca)
            # handshake lazily in the request thread, so a stalled client cannot block accept()
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.scheme = "https" if tls_cert else "http"
        # bound: getsockname() gives the host as text (the stub's bytes are for addresses passed in)
        bound_host, self.port = self._server.server_address[:2]
        self.host = cast(str, bound_host)
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"metrics:{self.port}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/metrics"

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
