"""The RCA service: recovery, the gRPC server (OTLP + ``factorylens.rca.v1``), ``/metrics``, and the
background work (analysis, snapshots, retention).

Start-up order matters for durability: the newest snapshot is loaded, the WAL after it is replayed,
and only then does the server accept data. A snapshot is cut with ingest paused for the moment it
takes to rotate the WAL and reference the store's arrays; it is written to disk with ingest running,
and the WAL segments it covers are deleted only after it is durable.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import grpc

from factorylens import __version__
from factorylens.exposition import MetricsServer, SnapshotCollector
from factorylens.processors import MetricsProcessors
from factorylens.rca_service._memory import MemoryGuard
from factorylens.rca_service._security import BearerTokenInterceptor, server_credentials
from factorylens.rca_service.analysis import (
    Analyzer,
    Incident,
    IncidentChange,
    KpiRankingAnalyzer,
    KpiRankingConfig,
)
from factorylens.rca_service.api.servicer import RcaApiServicer
from factorylens.rca_service.api.v1 import rca_pb2, rca_pb2_grpc
from factorylens.rca_service.baselines import BaselineBank, BaselineBankConfig
from factorylens.rca_service.config import RcaServiceConfig, memory_limit_bytes, split_host_port
from factorylens.rca_service.cost import CostAwareAnalyzer, CostTracker
from factorylens.rca_service.ingest import SIGNALS, IngestGate, IngestStats, OtlpIngest
from factorylens.rca_service.outputs import (
    FindingsMeter,
    IncidentLog,
    IncidentPublisher,
    finding_points,
    health_series,
)
from factorylens.rca_service.remote_write import RemoteWriteExporter, resource_labels
from factorylens.rca_service.snapshot import load_latest, write_snapshot
from factorylens.rca_service.store import SeriesStore, StoreLimits
from factorylens.rca_service.wal import FsyncPolicy, WriteAheadLog
from factorylens.registry import Attributes, Metrics

log = logging.getLogger(__name__)

RETENTION_SWEEP_S = 60.0
STORE_COUNTS_MAX_AGE_S = 1.0  # Health and /metrics report store counts about this old
PROGRESS_EVERY_S = 5.0
SNAPSHOT_BACKOFF_MAX_S = 600.0
REPLAY_MARKER = "replay.inprogress"  # the WAL position being replayed: a crash there quarantines it
_SIGNAL_OF_SERVICE = {s.service: s.name for s in SIGNALS}


def make_analyzer(config: RcaServiceConfig) -> Analyzer:
    baselines = BaselineBank(BaselineBankConfig(max_series=config.max_baselines))
    kpis = tuple(k.strip() for k in config.kpi_metrics.split(",") if k.strip())
    if config.analyzer == "every-series":
        kpis = ("*",)
    settings = KpiRankingConfig(kpi_metrics=kpis) if kpis else KpiRankingConfig()
    return with_cost(KpiRankingAnalyzer(settings, baselines), config)


def with_cost(analyzer: Analyzer, config: RcaServiceConfig) -> Analyzer:
    """The analyzer plus cost tracking (live figures, the cost report, waste incidents)."""
    if isinstance(analyzer, CostAwareAnalyzer):
        return analyzer
    tracker = CostTracker(
        config.price_catalog_config(),
        waste=config.waste_config(),
        window_s=config.retention_s,
        interval_s=config.cost_interval_s,
    )
    return CostAwareAnalyzer(analyzer, tracker)


class ServiceError(RuntimeError):
    """The service cannot start (e.g. the port is taken or the data directory is not writable)."""


class RcaService:
    def __init__(
        self,
        config: RcaServiceConfig,
        *,
        analyzer: Analyzer | None = None,
        log_exporters: list | None = None,
        incident_listeners: list[Callable[[IncidentChange, Incident], None]] | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.clock = config.clock()
        self.store = SeriesStore(
            StoreLimits(
                max_series=config.max_series,
                retention_s=config.retention_s,
                max_events=config.max_events,
                span_settle_s=config.span_settle_s,
                max_future_s=config.max_future_s,
            ),
            clock=self.clock,
        )
        self.memory = MemoryGuard(memory_limit_bytes(config.max_memory_mb))
        self.analyzer = with_cost(analyzer, config) if analyzer is not None else make_analyzer(config)
        self.cost = cast(CostAwareAnalyzer, self.analyzer).cost
        self.stats = IngestStats()
        self.gate = IngestGate()
        self.wal = WriteAheadLog(
            self.data_dir / "wal", FsyncPolicy(config.fsync), config.fsync_interval_s, config.wal_segment_mb << 20
        )
        self.ingest = OtlpIngest(
            self.store,
            self.wal,
            self.gate,
            self.stats,
            max_pending_requests=config.max_pending_requests,
            max_pending_bytes=config.max_pending_mb << 20,
            retry_after_s=config.retry_after_s,
            memory=self.memory,
            processors=MetricsProcessors(config.enrich_config()),
        )
        self.incident_log = IncidentLog(self.data_dir / "incidents.json")
        remote_write = config.remote_write_config()
        self.remote_write = RemoteWriteExporter(remote_write) if remote_write else None
        if self.remote_write is not None:
            self.ingest.metrics_listeners.append(self.remote_write.export_metrics)
        self._log_exporters = list(log_exporters or [])
        self.incident_listeners = list(incident_listeners or [])
        self.publisher: IncidentPublisher | None = None
        self.findings_meter: FindingsMeter | None = None
        self.server: grpc.Server | None = None
        self.metrics_server: MetricsServer | None = None
        self.port = 0
        self._init_bookkeeping()

    def _init_bookkeeping(self) -> None:
        self.snapshot_lsn = 0
        self._last_snapshot = time.monotonic()
        self._snapshot_lock = threading.Lock()
        self._started = time.monotonic()
        self._snapshot_failures = 0
        self._counts: dict[str, int] | None = None
        self._next_snapshot_try = 0.0
        # recovery findings, exported on /metrics
        self.records_quarantined = 0
        self.recovery_data_loss = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ServiceError(f"cannot create data directory {self.data_dir}: {exc}") from exc
        self._recover()
        token = self.config.bearer_token()
        self._warn_if_exposed(token)
        self._start_grpc(token)
        if self.config.metrics_listen not in ("", "off", "none"):
            self._start_metrics(token)
        self._start_outputs()
        for target, name in ((self._housekeeping_loop, "rca-housekeeping"), (self._analysis_loop, "rca-analysis")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info(
            "RCA service listening on %s (OTLP gRPC + factorylens.rca.v1%s%s); data in %s",
            self.address,
            ", TLS" if self.config.tls_cert else "",
            ", bearer token" if token else "",
            self.data_dir,
        )
        if self.metrics_server:
            log.info("RCA service metrics at %s", self.metrics_server.url)

    def _start_grpc(self, token: str | None) -> None:
        interceptors = [BearerTokenInterceptor(token, self._count_unauthenticated)] if token else []
        max_message = self.config.max_message_mb << 20
        # every admitted export holds a thread while it waits for the WAL; the extra workers keep the
        # API answering and over-limit exports refused promptly (UNAVAILABLE + RetryInfo), not queued
        self.server = grpc.server(
            ThreadPoolExecutor(
                max_workers=self.config.max_pending_requests + self.config.workers, thread_name_prefix="rca-grpc"
            ),
            handlers=self.ingest.handlers(),
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", max_message),
                ("grpc.max_send_message_length", max_message),
                # gRPC shares ports by default; a second service on the same port must fail instead
                ("grpc.so_reuseport", 0),
            ],
        )
        rca_pb2_grpc.add_RcaServiceServicer_to_server(
            RcaApiServicer(self.store, self.analyzer, self.health, cost=self.cost), self.server
        )
        bind_error: Exception | None = None
        try:
            if self.config.tls_cert:
                creds = server_credentials(self.config.tls_cert, self.config.tls_key, self.config.tls_client_ca)
                self.port = self.server.add_secure_port(self.config.listen, creds)
            else:
                self.port = self.server.add_insecure_port(self.config.listen)
        except RuntimeError as exc:
            self.port, bind_error = 0, exc
        if not self.port:
            self.wal.close()
            raise ServiceError(
                f"cannot listen on {self.config.listen} (port in use or address not local?)"
                + (f": {bind_error}" if bind_error else "")
            )
        self.server.start()

    def _metrics_source(self) -> dict:
        return {
            **health_series(self.stats, self.store, self.wal, self.analyzer, self.snapshot_age_s, self.store_counts()),
            **self._robustness_series(),
            **(self.remote_write.health_series() if self.remote_write else {}),
            **self.cost.price_points(),
            **self.cost.figure_points(),
        }

    def _start_metrics(self, token: str | None) -> None:
        host, port = split_host_port(self.config.metrics_listen)
        try:
            self.metrics_server = MetricsServer(
                [SnapshotCollector(self._metrics_source, {Attributes.SERVICE_NAME: "factorylens-rca"})],
                host,
                port,
                bearer_token=token,
                tls_cert=self.config.tls_cert or None,
                tls_key=self.config.tls_key or None,
                tls_client_ca=self.config.tls_client_ca or None,
            )
        except OSError as exc:
            if self.server is not None:
                self.server.stop(0)
            self.wal.close()
            raise ServiceError(f"cannot serve /metrics on {self.config.metrics_listen}: {exc}") from exc

    def _start_outputs(self) -> None:
        """Incidents as OTLP logs and metrics, findings by remote-write."""
        self.publisher = IncidentPublisher(self._incident_exporters()) if self._incident_exporters() else None
        if self.config.incidents_otlp_endpoint and self.findings_meter is None:
            self.findings_meter = FindingsMeter.otlp(
                self.config.incidents_otlp_endpoint,
                self.config.incidents_otlp_insecure,
                lambda: {**self.cost.price_points(), **self.cost.figure_points()},
            )
        if self.remote_write is not None:
            # the findings' own series are this service's: job factorylens-rca, instance its address
            self.remote_write.findings_resource = resource_labels(
                {Attributes.SERVICE_NAME: "factorylens-rca", "service.instance.id": self.address}
            )
            self.remote_write.start()

    def _incident_exporters(self) -> list:
        if self.config.incidents_otlp_endpoint and not self._log_exporters:
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

            self._log_exporters = [
                OTLPLogExporter(
                    endpoint=self.config.incidents_otlp_endpoint, insecure=self.config.incidents_otlp_insecure
                )
            ]
        return self._log_exporters

    def _warn_if_exposed(self, token: str | None) -> None:
        host, _ = split_host_port(self.config.listen)
        tls = bool(self.config.tls_cert)
        if token and not tls:
            log.warning(
                "a bearer token is required but TLS is off: the token crosses the network in clear text "
                "(set --tls-cert/--tls-key)"
            )
        if not _is_loopback(host) and not tls and not token:
            log.warning(
                "listening on %s with neither TLS nor a bearer token: anyone who reaches this address can "
                "write data and read incidents (set --tls-cert/--tls-key and --bearer-token-file)",
                self.config.listen,
            )

    def _recover(self) -> None:
        began = time.monotonic()
        lsn, state = load_latest(self.data_dir / "snapshots")
        if state is not None:
            self.store.restore(state["store"])
            log.info("loaded snapshot at WAL position %d (%d series)", lsn, len(self.store))
        self.snapshot_lsn = lsn
        segments = self.wal.segments()
        first_wal_lsn = int(segments[0].stem) if segments else lsn + 1
        if first_wal_lsn > lsn + 1:
            self.recovery_data_loss += first_wal_lsn - lsn - 1
            log.error(
                "DATA LOSS: no usable snapshot covers WAL records %d to %d (their segments were deleted "
                "after a snapshot that is now unreadable); the store starts from record %d",
                lsn + 1,
                first_wal_lsn - 1,
                first_wal_lsn,
            )
        marker = self.data_dir / REPLAY_MARKER
        suspect = _read_marker(marker)
        replayed, replayed_bytes, last_report = 0, 0, time.monotonic()
        with open(marker, "wb") as progress:
            for record_lsn, kind, payload in self.wal.replay(lsn):
                if record_lsn == suspect:
                    self._quarantine(record_lsn, kind, payload, "the service died while replaying it last time")
                    continue
                _note_progress(progress, record_lsn)
                try:
                    self.ingest.replay(kind, payload)
                except ValueError as exc:
                    self._quarantine(record_lsn, kind, payload, str(exc))
                    continue
                replayed += 1
                replayed_bytes += len(payload)
                if time.monotonic() - last_report > PROGRESS_EVERY_S:
                    last_report = time.monotonic()
                    log.info("replaying the WAL: %d requests (%.1f MB) so far", replayed, replayed_bytes / 1e6)
        marker.unlink()
        if replayed:
            log.info(
                "replayed %d WAL requests (%.1f MB) in %.1fs", replayed, replayed_bytes / 1e6, time.monotonic() - began
            )
        self.analyzer.load_incidents(self.incident_log.load())

    def _quarantine(self, lsn: int, kind: int, payload: bytes, why: str) -> None:
        """Set a WAL record that cannot be replayed aside (it stays inspectable) and carry on."""
        self.records_quarantined += 1
        directory = self.data_dir / "quarantine"
        path = directory / f"wal-{lsn:020d}-kind{kind}.bin"
        try:
            directory.mkdir(exist_ok=True)
            path.write_bytes(payload)
        except OSError as exc:
            log.error("WAL record %d cannot be replayed (%s) and could not be set aside (%s); skipped", lsn, why, exc)
            return
        log.error(
            "WAL record %d (%d bytes) cannot be replayed (%s); set aside as %s and skipped",
            lsn,
            len(payload),
            why,
            path,
        )

    def _robustness_series(self) -> dict[str, list]:
        return {
            Metrics.FACTORYLENS_RCA_WAL_QUARANTINED: [({}, self.records_quarantined)],
            Metrics.FACTORYLENS_RCA_RECOVERY_LOST_RECORDS: [({}, self.recovery_data_loss)],
            Metrics.FACTORYLENS_RCA_SNAPSHOT_FAILURES: [({}, self._snapshot_failures)],
            Metrics.FACTORYLENS_RCA_ATTRIBUTES_TRUNCATED: [({}, self.store.decoder.truncated)],
            Metrics.FACTORYLENS_RCA_ANALYSIS_SKIPPED: [
                ({Attributes.FACTORYLENS_RCA_REASON: reason}, n)
                for reason, n in sorted(self.analyzer.skipped().items())
            ],
            Metrics.FACTORYLENS_RCA_MEMORY_RESIDENT: [({}, self.memory.rss_bytes())],
            Metrics.FACTORYLENS_RCA_MEMORY_LIMIT: [({}, self.memory.limit_bytes)],
            Metrics.FACTORYLENS_PROCESSORS_UNMAPPED: [
                ({Attributes.FACTORYLENS_PRODUCER: producer, Attributes.FACTORYLENS_SOURCE_METRIC: name}, n)
                for (producer, name), n in sorted(self.ingest.processors.unmapped().items())
            ],
        }

    @property
    def address(self) -> str:
        host, _ = split_host_port(self.config.listen)
        return f"{host}:{self.port}"

    def snapshot_age_s(self) -> float:
        return time.monotonic() - self._last_snapshot

    def snapshot(self) -> Path | None:
        """Cut a snapshot now and drop the WAL segments that even the previous snapshot covers.

        Two snapshots are kept; the WAL goes back to the older one, so if the newest is ever
        unreadable, the older one plus the WAL still hold every acknowledged record.
        """
        with self._snapshot_lock:
            with self.gate.exclusive():
                lsn = self.wal.rotate()
                state = {"store": self.store.state()}
            if lsn == self.snapshot_lsn:
                self._last_snapshot = time.monotonic()
                return None
            try:
                path = write_snapshot(self.data_dir / "snapshots", lsn, state)
            except OSError as exc:
                self._snapshot_failures += 1
                delay = min(SNAPSHOT_BACKOFF_MAX_S, self.config.snapshot_interval_s / 10 * 2**self._snapshot_failures)
                self._next_snapshot_try = time.monotonic() + delay
                log.error("snapshot failed (%s); the WAL is kept and the snapshot retried in %.0f s", exc, delay)
                return None
            self._next_snapshot_try = 0.0
            previous, self.snapshot_lsn = self.snapshot_lsn, lsn
            self._last_snapshot = time.monotonic()
            freed = self.wal.truncate_through(previous)
            log.debug("snapshot at WAL position %d: %s; %d WAL bytes freed", lsn, path.name, freed)
            return path

    def _housekeeping_loop(self) -> None:
        last_sweep = time.monotonic()
        while not self._stop.wait(1.0):
            try:
                self._counts = self.store.stats(max_age_s=STORE_COUNTS_MAX_AGE_S)
                if time.monotonic() - last_sweep > RETENTION_SWEEP_S:
                    last_sweep = time.monotonic()
                    self.store.enforce_retention()
                due = (
                    self.snapshot_age_s() > self.config.snapshot_interval_s
                    or self.wal.size_bytes() > self.config.snapshot_wal_mb << 20
                )
                if due and time.monotonic() >= self._next_snapshot_try:
                    self.snapshot()
            except Exception:
                log.exception("housekeeping failed")

    def _analysis_loop(self) -> None:
        while not self._stop.wait(self.config.analysis_interval_s):
            # at most half of each interval, so that ingest and the API always get the other half
            self.analyze_now(min(self.config.analysis_budget_s, self.config.analysis_interval_s / 2))

    def analyze_now(self, budget_s: float | None = None) -> None:
        """One analysis pass; with a budget it stops early (and when the service stops), and the series
        it did not reach go first next time."""
        deadline = time.monotonic() + budget_s if budget_s else None
        try:
            changes = self.analyzer.analyze(
                self.store, int(self.clock() * 1e9), deadline=deadline, should_stop=self._stop.is_set
            )
        except Exception:
            log.exception("analysis pass failed")
            return
        if self.remote_write is not None:
            try:
                now = int(self.clock() * 1e9)
                cost = {**self.cost.price_points(), **self.cost.figure_points()}
                timed = {metric: [(a, v, now) for a, v in points] for metric, points in cost.items()}
                self.remote_write.export_findings({**finding_points(self.store, self.analyzer, now), **timed})
            except Exception:
                log.exception("queueing the findings for remote-write failed")
        if not changes:
            return
        self.incident_log.save(self.analyzer.incidents())
        for change, incident in changes:
            log.info("incident %s %s: %s", incident.id, change.value, incident.title)
            if self.publisher is not None:
                self.publisher.publish(change, incident)
            for listener in self.incident_listeners:
                listener(change, incident)

    def store_counts(self) -> dict[str, int]:
        """The store's series, points, bytes and events as the housekeeping thread last counted them:
        Health and /metrics never walk every series themselves."""
        counts = self._counts
        if counts is None:
            counts = self._counts = self.store.stats()
        return counts

    def _count_unauthenticated(self, method: str) -> None:
        service = method.rsplit("/", 2)[-2] if method.count("/") >= 2 else ""
        self.stats.refuse(_SIGNAL_OF_SERVICE.get(service, "api"), "unauthenticated")

    def health(self) -> rca_pb2.HealthResponse:
        store = self.store_counts()
        stats = self.stats
        accepted = stats.copy()[0]
        degraded = (
            stats.pending_requests >= self.config.max_pending_requests or self.ingest.writes_failing or self.memory.over
        )
        return rca_pb2.HealthResponse(
            status=rca_pb2.HealthResponse.DEGRADED if degraded else rca_pb2.HealthResponse.SERVING,
            version=__version__,
            analyzer=self.analyzer.name,
            uptime_seconds=time.monotonic() - self._started,
            series=store["series"],
            points=store["points"],
            store_bytes=store["bytes"],
            events=store["events"],
            points_accepted=accepted.get("metrics", 0),
            points_rejected=stats.rejected_total("metrics"),
            spans_accepted=accepted.get("traces", 0),
            spans_rejected=stats.rejected_total("traces"),
            log_records_accepted=accepted.get("logs", 0),
            log_records_rejected=stats.rejected_total("logs"),
            requests_refused=stats.refused_total(),
            wal_bytes=self.wal.size_bytes(),
            wal_last_lsn=self.wal.last_lsn,
            snapshot_lsn=self.snapshot_lsn,
            queue_depth=stats.pending_requests,
            open_incidents=sum(1 for i in self.analyzer.incidents() if i.state.value == "open"),
        )

    def stop(self, grace_s: float = 5.0) -> None:
        """Finish in-flight requests, snapshot, close the WAL; safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self.server is not None:
            self.server.stop(grace_s).wait(grace_s + 1)
        for thread in self._threads:
            thread.join(timeout=grace_s)
        try:
            if self.server is not None:
                self.snapshot()
        finally:
            self.wal.close()
            if self.metrics_server is not None:
                self.metrics_server.shutdown()
            if self.publisher is not None:
                self.publisher.shutdown()
            if self.findings_meter is not None:
                self.findings_meter.shutdown()
            if self.remote_write is not None:  # what is queued gets a bounded last chance
                self.remote_write.shutdown(int(min(grace_s, 5.0) * 1000))

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until :meth:`stop` is called (or the timeout passes); True if stopped."""
        return self._stop.wait(timeout_s)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_marker(path: Path) -> int:
    """The WAL position a previous replay was at when it died (0: it finished or never ran)."""
    try:
        data = path.read_bytes()
    except OSError:
        return 0
    return int.from_bytes(data[:8], "little") if len(data) >= 8 else 0


def _note_progress(progress: Any, lsn: int) -> None:
    """Remember which record is being replayed (no fsync: only a crash of this process must see it)."""
    try:
        os.pwrite(progress.fileno(), lsn.to_bytes(8, "little"), 0)
    except OSError:
        pass  # a full disk: replay goes on without crash-loop protection for this record
