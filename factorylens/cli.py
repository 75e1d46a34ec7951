"""The ``factorylens`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from factorylens import __version__
from factorylens.registry import REGISTRY, Domain

_GPU_EPILOG = """\
environment (standard OpenTelemetry variables, read by the SDK):
  OTEL_EXPORTER_OTLP_ENDPOINT     OTLP endpoint (e.g. http://collector:4317); setting it turns export on
  OTEL_EXPORTER_OTLP_PROTOCOL     grpc (default) or http/protobuf
  OTEL_EXPORTER_OTLP_HEADERS      extra headers, e.g. authorization=Bearer%20TOKEN
  OTEL_RESOURCE_ATTRIBUTES        resource attributes, e.g. k8s.cluster.name=prod,k8s.node.name=$NODE
  OTEL_SERVICE_NAME               service.name (default factorylens-gpu-receiver)
  OTEL_METRIC_EXPORT_INTERVAL     OTLP export interval in ms (default: the collection interval)

examples:
  factorylens gpu --prometheus-port 9400                     # a GPU node, next to dcgm-exporter
  factorylens gpu --backend sim --sim-hosts 2 --sim-gpus-per-host 8 --console
  factorylens gpu --backend sim --scenario faults.yaml --sim-speed 30 --duration 60 --console
"""


def _add_gpu_parser(sub: argparse._SubParsersAction) -> None:
    from factorylens.receivers.gpu.config import BACKENDS, OTLP_MODES, GpuReceiverConfig
    from factorylens.receivers.gpu.sim import FAULT_KINDS, MODELS

    d = GpuReceiverConfig()
    p = sub.add_parser(
        "gpu",
        help="run the GPU receiver (NVML or simulated)",
        description="The node agent: scrape NVIDIA GPUs through NVML (or a simulated cluster), plus the "
        "node's host (system.*), storage (per mount) and InfiniBand/RoCE fabric layers, and "
        "export OpenTelemetry metrics over OTLP, XID events as log records, and optionally a "
        "Prometheus /metrics endpoint. Keeps running without a driver, GPU or fabric, and retries.",
        epilog=_GPU_EPILOG + "\nfault kinds for --scenario: " + ", ".join(FAULT_KINDS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("source")
    g.add_argument(
        "--backend",
        choices=BACKENDS,
        default=d.backend,
        help="nvml: this node's GPUs; sim: a simulated cluster (default %(default)s)",
    )
    g.add_argument(
        "--collection-interval",
        type=float,
        default=d.collection_interval_s,
        metavar="SECONDS",
        dest="collection_interval_s",
        help="seconds between scrapes (default %(default)s)",
    )
    g.add_argument(
        "--no-process-metrics",
        action="store_false",
        dest="process_metrics",
        help="skip per-process GPU memory/utilization and job attribution",
    )
    g.add_argument(
        "--max-processes-per-gpu",
        type=int,
        default=d.max_processes_per_gpu,
        metavar="N",
        help="cardinality bound on per-process series per GPU (default %(default)s)",
    )
    g.add_argument(
        "--proc-root",
        default=d.proc_root,
        metavar="DIR",
        help="procfs to read process environments/cgroups from for pid→job mapping "
        "(/host/proc in a container; default %(default)s)",
    )
    g.add_argument(
        "--sys-root",
        default=d.sys_root,
        metavar="DIR",
        help="sysfs to read InfiniBand/RoCE port counters from (/host/sys in a container; default %(default)s)",
    )
    g.add_argument(
        "--no-host-metrics",
        action="store_false",
        dest="host_metrics",
        help="skip the host layer (CPU, memory, swap, disks, interfaces)",
    )
    g.add_argument(
        "--no-storage-metrics",
        action="store_false",
        dest="storage_metrics",
        help="skip per-mount storage I/O, latency and space (NVMe, NFS, Lustre)",
    )
    g.add_argument(
        "--no-fabric-metrics", action="store_false", dest="fabric_metrics", help="skip InfiniBand/RoCE port counters"
    )
    g.add_argument(
        "--discovery-retry-interval",
        type=float,
        default=d.discovery_retry_interval_s,
        metavar="SECONDS",
        dest="discovery_retry_interval_s",
        help="retry period while the driver or a GPU is missing (default %(default)s)",
    )
    g.add_argument(
        "--event-wait",
        type=int,
        default=d.event_wait_ms,
        metavar="MS",
        dest="event_wait_ms",
        help="how long one XID event wait blocks (default %(default)s)",
    )
    o = p.add_argument_group("outputs")
    o.add_argument(
        "--otlp",
        choices=OTLP_MODES,
        default=d.otlp,
        help="OTLP export: auto = when OTEL_EXPORTER_OTLP_ENDPOINT is set (default %(default)s)",
    )
    o.add_argument(
        "--shard-by-job",
        action="store_true",
        default=d.shard_by_job,
        help="for a collector gateway that shards the RCA service by job: stamp each GPU's series with "
        "its job and send the host's own series once per job on the host (OTLP/gRPC; docs/scaling.md)",
    )
    o.add_argument(
        "--prometheus-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus /metrics on PORT (dcgm-exporter uses 9400); a simulated cluster "
        "serves host i on PORT+i; 0 picks free ports",
    )
    o.add_argument(
        "--prometheus-host",
        default=d.prometheus_host,
        metavar="ADDR",
        help="bind address for /metrics (default %(default)s; use 0.0.0.0 to expose it)",
    )
    o.add_argument(
        "--prometheus-bearer-token-file",
        metavar="FILE",
        help="require 'Authorization: Bearer <token in FILE>' on /metrics",
    )
    o.add_argument("--prometheus-tls-cert", metavar="PEM", help="serve /metrics over HTTPS with this certificate")
    o.add_argument("--prometheus-tls-key", metavar="PEM", help="private key for --prometheus-tls-cert")
    o.add_argument("--console", action="store_true", help="print a live table of the GPUs after each scrape")
    o.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        dest="duration_s",
        help="stop after SECONDS (default: run until Ctrl-C / SIGTERM)",
    )
    s = p.add_argument_group("simulator (--backend sim)")
    s.add_argument("--sim-hosts", type=int, default=d.sim_hosts, metavar="N", help="hosts (default %(default)s)")
    s.add_argument(
        "--sim-gpus-per-host",
        type=int,
        default=d.sim_gpus_per_host,
        metavar="M",
        help="GPUs per host (default %(default)s)",
    )
    s.add_argument(
        "--sim-model",
        default=d.sim_model,
        choices=sorted(MODELS),
        type=str.upper,
        help="GPU model preset with its real limits (default %(default)s)",
    )
    s.add_argument("--sim-mig", action="store_true", help="put every GPU in MIG mode (smallest profile × 7)")
    s.add_argument("--sim-seed", type=int, default=d.sim_seed, metavar="N", help="random seed (default %(default)s)")
    s.add_argument(
        "--sim-speed",
        type=float,
        default=d.sim_speed,
        metavar="X",
        help="simulated seconds per real second, e.g. 60 (default %(default)s)",
    )
    s.add_argument(
        "--scenario",
        metavar="FILE",
        help="fault scenario (YAML/JSON): XIDs, ECC bursts, throttling, "
        "NVLink/PCIe degradation, GPU lost, NVML errors, ...",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    p.set_defaults(func=_run_gpu)


def _run_gpu(args: argparse.Namespace) -> int:
    from factorylens.receivers.gpu import ConfigError, GpuReceiverConfig, create_receiver
    from factorylens.receivers.gpu.console import ConsoleTable
    from factorylens.receivers.gpu.receiver import tune_gc_for_agent

    values = {k: v for k, v in vars(args).items() if k in GpuReceiverConfig.option_names()}
    config = GpuReceiverConfig(**values)
    try:
        config.validate()
    except ConfigError as exc:
        print(f"factorylens gpu: {exc}", file=sys.stderr)
        return 2
    tune_gc_for_agent()
    receiver, cluster = create_receiver(config)
    if config.console:
        receiver.on_scrape = ConsoleTable(sys.stdout, cluster)
    signal.signal(signal.SIGTERM, lambda *_: receiver.stop())
    receiver.start()
    for pipeline in receiver.pipelines:
        if pipeline.metrics_server is not None:
            logging.getLogger("factorylens").info(
                "%s: Prometheus metrics at %s", pipeline.name, pipeline.metrics_server.url
            )
    try:
        receiver.run(config.duration_s)
    finally:
        receiver.shutdown()
    return 0


_RCA_EPILOG = """\
durability:
  Every accepted export is in the write-ahead log (DATA_DIR/wal) before it is acknowledged; on start
  the newest snapshot (DATA_DIR/snapshots) is loaded and the WAL after it replayed. --fsync always
  survives power loss; interval and never survive a killed process (the OS still has the bytes).

backpressure:
  Over --max-pending-requests / --max-pending-mb, or when the WAL cannot be written (disk full),
  exports get UNAVAILABLE with RetryInfo (--retry-after), so collectors and SDKs retry instead of
  dropping. Requests over --max-message-mb get RESOURCE_EXHAUSTED.

environment:
  FACTORYLENS_RCA_<OPTION>        default for any option, e.g. FACTORYLENS_RCA_LISTEN=0.0.0.0:4317
  FACTORYLENS_RCA_BEARER_TOKEN    the bearer token, when --bearer-token-file is not given
  FACTORYLENS_RCA_REMOTE_WRITE_TOKEN, FACTORYLENS_RCA_REMOTE_WRITE_PASSWORD
                                  remote-write credentials, when their files are not given

examples:
  factorylens rca serve                                   # 127.0.0.1:4317, /metrics on 127.0.0.1:9464
  factorylens rca serve --listen 0.0.0.0:4317 --tls-cert srv.pem --tls-key srv.key \\
      --bearer-token-file /etc/factorylens/token          # exposed: TLS + token
  factorylens rca serve --remote-write-url http://127.0.0.1:9090/api/v1/write   # into Prometheus
  factorylens rca incidents                               # ask a running service
"""


_PAGE_SIZE_HELP = (
    "fetch {what} from the service N per request, page after page until --limit; 0 = the "
    "service's default ({default}, at most {maximum}; a page also stops at about 2 MiB)"
)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _add_rca_parser(sub: argparse._SubParsersAction) -> None:
    from factorylens.rca_service.api.paging import (
        DEFAULT_INCIDENTS_PAGE,
        DEFAULT_SERIES_PAGE,
        MAX_INCIDENTS_PAGE,
        MAX_SERIES_PAGE,
    )
    from factorylens.rca_service.config import RcaServiceConfig

    d = RcaServiceConfig()
    rca = sub.add_parser(
        "rca",
        help="run or query the RCA service",
        description="The RCA service: an OTLP gRPC endpoint with a durable store, anomaly "
        "detection and ranked root causes, and the factorylens.rca.v1 API.",
    )
    rsub = rca.add_subparsers(dest="rca_command", metavar="COMMAND")
    p = rsub.add_parser(
        "serve",
        help="run the RCA service",
        description="Serve OTLP MetricsService/TraceService/LogsService Export and the factorylens.rca.v1 API "
        "on one gRPC port, and Prometheus /metrics on another.",
        epilog=_RCA_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("endpoints")
    g.add_argument(
        "--listen",
        default=d.listen,
        metavar="HOST:PORT",
        help="gRPC address for OTLP and the API (default %(default)s; 0.0.0.0 to expose it)",
    )
    g.add_argument(
        "--metrics-listen",
        default=d.metrics_listen,
        metavar="HOST:PORT",
        help="Prometheus /metrics address, or 'off' (default %(default)s)",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        metavar="N",
        help="gRPC threads beyond one per admitted export (--max-pending-requests): they serve "
        "the API and refuse over-limit exports promptly (default %(default)s)",
    )
    g = p.add_argument_group("durability")
    g.add_argument(
        "--data-dir", default=d.data_dir, metavar="DIR", help="WAL, snapshots and incidents (default %(default)s)"
    )
    g.add_argument(
        "--fsync",
        default=d.fsync,
        choices=("always", "interval", "never"),
        help="when the WAL is fsynced (default %(default)s)",
    )
    g.add_argument(
        "--fsync-interval",
        type=float,
        default=d.fsync_interval_s,
        metavar="SECONDS",
        dest="fsync_interval_s",
        help="fsync period for --fsync interval (default %(default)s)",
    )
    g.add_argument(
        "--wal-segment-mb",
        type=int,
        default=d.wal_segment_mb,
        metavar="MB",
        help="WAL segment size (default %(default)s)",
    )
    g.add_argument(
        "--snapshot-interval",
        type=float,
        default=d.snapshot_interval_s,
        metavar="SECONDS",
        dest="snapshot_interval_s",
        help="snapshot (and WAL truncation) period (default %(default)s)",
    )
    g.add_argument(
        "--snapshot-wal-mb",
        type=int,
        default=d.snapshot_wal_mb,
        metavar="MB",
        help="also snapshot when the WAL grows past this (default %(default)s)",
    )
    g = p.add_argument_group("limits")
    g.add_argument(
        "--max-message-mb",
        type=int,
        default=d.max_message_mb,
        metavar="MB",
        help="largest accepted request (default %(default)s)",
    )
    g.add_argument(
        "--max-pending-requests",
        type=int,
        default=d.max_pending_requests,
        metavar="N",
        help="exports in flight before refusing with RetryInfo (default %(default)s)",
    )
    g.add_argument(
        "--max-pending-mb",
        type=int,
        default=d.max_pending_mb,
        metavar="MB",
        help="request bytes in flight before refusing with RetryInfo (default %(default)s)",
    )
    g.add_argument(
        "--retry-after",
        type=float,
        default=d.retry_after_s,
        metavar="SECONDS",
        dest="retry_after_s",
        help="RetryInfo delay sent when refusing (default %(default)s)",
    )
    g.add_argument(
        "--max-memory",
        type=int,
        default=d.max_memory_mb,
        metavar="MB",
        dest="max_memory_mb",
        help="resident memory above which exports are refused with RESOURCE_EXHAUSTED + RetryInfo "
        "(0: 80%% of the machine's or cgroup's memory, -1: no bound; default %(default)s)",
    )
    g.add_argument(
        "--max-future",
        type=float,
        default=d.max_future_s,
        metavar="SECONDS",
        dest="max_future_s",
        help="points, spans and log records further ahead of this clock are refused, as are those "
        "older than --retention (default %(default)s)",
    )
    g.add_argument(
        "--retention",
        type=float,
        default=d.retention_s,
        metavar="SECONDS",
        dest="retention_s",
        help="how long points are kept (default %(default)s)",
    )
    g.add_argument(
        "--max-series",
        type=int,
        default=d.max_series,
        metavar="N",
        help="cardinality limit; points of new series beyond it are rejected (default %(default)s)",
    )
    g.add_argument(
        "--max-events",
        type=int,
        default=d.max_events,
        metavar="N",
        help="log records kept as events (default %(default)s)",
    )
    g.add_argument(
        "--span-settle",
        type=float,
        default=d.span_settle_s,
        metavar="SECONDS",
        dest="span_settle_s",
        help="how long a span waits for the rest of its trace before its own time, error origin and call "
        "edge are derived; the services' export delay must fit in it (default %(default)s)",
    )
    g.add_argument(
        "--clock-anchor",
        default=d.clock_anchor,
        metavar="SIM@WALL",
        help="run the service's clock (retention, --max-future, analysis) from SIM unix seconds at wall time "
        "WALL, --clock-speed times faster: for simulations that run faster than real time (default: the wall "
        "clock)",
    )
    g.add_argument(
        "--clock-speed",
        type=float,
        default=d.clock_speed,
        metavar="X",
        help="clock seconds per wall second with --clock-anchor (default %(default)s)",
    )
    g.add_argument(
        "--analysis-interval",
        type=float,
        default=d.analysis_interval_s,
        metavar="SECONDS",
        dest="analysis_interval_s",
        help="period of the anomaly/incident pass (default %(default)s)",
    )
    g.add_argument(
        "--analysis-budget",
        type=float,
        default=d.analysis_budget_s,
        metavar="SECONDS",
        dest="analysis_budget_s",
        help="time one analysis pass may take, and at most half of --analysis-interval; series it does "
        "not reach are analysed first in the next pass (default %(default)s)",
    )
    g.add_argument(
        "--analyzer",
        default=d.analyzer,
        choices=("kpi-ranking", "every-series"),
        help="kpi-ranking: an incident opens when a KPI (step time, throughput, server latency or "
        "errors, an alert) breaks, with causes ranked over the topology; every-series: any series "
        "that breaks its baseline opens one, ranked the same way (default %(default)s)",
    )
    g.add_argument(
        "--kpi-metrics",
        default=d.kpi_metrics,
        metavar="NAMES",
        help="comma-separated metric names or globs that are KPIs (default: the training KPIs "
        "factorylens.train.step.duration, samples/tokens rate and goodput)",
    )
    g.add_argument(
        "--max-baselines",
        type=int,
        default=d.max_baselines,
        metavar="N",
        help="series with a seasonal baseline at most, about 58 KiB each; beyond it new series wait for "
        "a stopped one's place and are scored without one (default %(default)s; docs/scaling.md)",
    )
    g = p.add_argument_group("processors (run on every metrics request)")
    g.add_argument(
        "--enrich-file",
        default=d.enrich_file,
        metavar="YAML",
        help="map GPUs (hw.id), pods (namespace/pod), job-id globs and namespaces to jobs and teams "
        "(see docs/processors.md); dcgm-exporter, node-exporter, hostmetrics and OpenLIT names are "
        "translated to ours always",
    )
    g.add_argument(
        "--gpu-jobs-from-processes",
        action="store_true",
        default=d.gpu_jobs_from_processes,
        help="stamp each GPU's series with the job of the process on it (a GPU's series split when its "
        "job changes; needed when a gateway shards by job)",
    )
    g = p.add_argument_group("cost (docs/cost.md)")
    g.add_argument(
        "--price-catalog",
        default=d.price_catalog,
        metavar="YAML",
        help="GPU-hour and energy prices per GPU model, cluster and team (factorylens cost catalog prints a "
        "labelled example); without one every GPU-hour is reported as unpriced, never as free",
    )
    g.add_argument(
        "--cost-interval",
        type=float,
        default=d.cost_interval_s,
        metavar="SECONDS",
        dest="cost_interval_s",
        help="recompute the live cost figures (/metrics, OTLP) and waste incidents at most this often "
        "(default %(default)s)",
    )
    g.add_argument(
        "--waste-idle-threshold",
        type=float,
        default=d.waste_idle_threshold,
        metavar="SHARE",
        help="open a low-severity waste incident when a job's held GPUs are idle this share of the time "
        "over --waste-duration; 0 turns waste incidents off (default %(default)s)",
    )
    g.add_argument(
        "--waste-duration",
        type=float,
        default=d.waste_duration_s,
        metavar="SECONDS",
        dest="waste_duration_s",
        help="the trailing window a job must hold its GPUs idle for (default %(default)s)",
    )
    g = p.add_argument_group("security")
    g.add_argument("--tls-cert", default=d.tls_cert, metavar="PEM", help="serve gRPC and /metrics over TLS")
    g.add_argument("--tls-key", default=d.tls_key, metavar="PEM", help="private key of --tls-cert")
    g.add_argument(
        "--tls-client-ca",
        default=d.tls_client_ca,
        metavar="PEM",
        help="require client certificates signed by this CA (mTLS)",
    )
    g.add_argument(
        "--bearer-token-file",
        default=d.bearer_token_file,
        metavar="FILE",
        help="require 'authorization: Bearer <token>' on every RPC and on /metrics",
    )
    g = p.add_argument_group("outputs")
    g.add_argument(
        "--incidents-otlp-endpoint",
        default=d.incidents_otlp_endpoint,
        metavar="URL",
        help="send incidents as OTLP log records here (gRPC, e.g. http://collector:4317)",
    )
    g = p.add_argument_group(
        "Prometheus remote-write (off unless --remote-write-url is given)",
        "Every ingested metric point (after the processors, with its own timestamp, under its\n"
        "Prometheus name) and the findings (baseline bands, anomaly scores, open incidents) are pushed\n"
        "to a remote-write endpoint: Prometheus started with --web.enable-remote-write-receiver, Mimir,\n"
        "VictoriaMetrics. Delta sums and histograms are not forwarded (counted). Ingest never waits:\n"
        "while the endpoint is down samples queue, the oldest dropped when the queue is full.",
    )
    g.add_argument(
        "--remote-write-url",
        default=d.remote_write_url,
        metavar="URL",
        help="the endpoint, e.g. http://127.0.0.1:9090/api/v1/write (https with --remote-write-ca-file)",
    )
    g.add_argument(
        "--remote-write-token-file",
        default=d.remote_write_token_file,
        metavar="FILE",
        help="send 'Authorization: Bearer <token>' (else FACTORYLENS_RCA_REMOTE_WRITE_TOKEN)",
    )
    g.add_argument(
        "--remote-write-username",
        default=d.remote_write_username,
        metavar="NAME",
        help="basic auth user; the password from --remote-write-password-file or FACTORYLENS_RCA_REMOTE_WRITE_PASSWORD",
    )
    g.add_argument(
        "--remote-write-password-file", default=d.remote_write_password_file, metavar="FILE", help="basic auth password"
    )
    g.add_argument(
        "--remote-write-headers",
        default=d.remote_write_headers,
        metavar="NAME=VALUE,...",
        help="extra headers, e.g. X-Scope-OrgID=team-a (Mimir's tenant)",
    )
    g.add_argument(
        "--remote-write-ca-file",
        default=d.remote_write_ca_file,
        metavar="PEM",
        help="trust this CA for an https endpoint (default: the system's CAs)",
    )
    g.add_argument(
        "--remote-write-interval",
        type=float,
        default=d.remote_write_interval_s,
        metavar="SECONDS",
        dest="remote_write_interval_s",
        help="longest a sample waits for its batch to fill before it is sent (default %(default)s)",
    )
    g.add_argument(
        "--remote-write-batch",
        type=int,
        default=d.remote_write_batch,
        metavar="SAMPLES",
        help="most samples per request (default %(default)s)",
    )
    g.add_argument(
        "--remote-write-queue",
        type=int,
        default=d.remote_write_queue,
        metavar="SAMPLES",
        help="samples held while the endpoint is slow or down; beyond it the oldest are dropped and "
        "counted (default %(default)s)",
    )
    g.add_argument(
        "--remote-write-timeout",
        type=float,
        default=d.remote_write_timeout_s,
        metavar="SECONDS",
        dest="remote_write_timeout_s",
        help="connect and response timeout of one request; failures are retried with capped "
        "exponential back-off (5xx, 429, connection errors; not other 4xx) (default %(default)s)",
    )
    g.add_argument(
        "--remote-write-max-age",
        type=float,
        default=d.remote_write_max_age_s,
        metavar="SECONDS",
        dest="remote_write_max_age_s",
        help="older points are not sent: Prometheus refuses samples over an hour behind its newest, "
        "and the whole request with them (default %(default)s)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    p.set_defaults(func=_run_rca_serve)

    def client(name: str, help_: str) -> argparse.ArgumentParser:
        c = rsub.add_parser(name, help=help_, description=help_)
        c.add_argument("--target", default=d.listen, metavar="HOST:PORT", help="the RCA service (default %(default)s)")
        c.add_argument("--bearer-token-file", metavar="FILE", help="bearer token (else FACTORYLENS_RCA_BEARER_TOKEN)")
        c.add_argument("--tls-ca", metavar="PEM", help="connect with TLS, trusting this CA")
        c.add_argument("--tls-cert", metavar="PEM", help="client certificate (mTLS)")
        c.add_argument("--tls-key", metavar="PEM", help="client key (mTLS)")
        c.add_argument("--json", action="store_true", help="print the API response as JSON")
        c.add_argument(
            "--timeout",
            type=float,
            default=10.0,
            metavar="SECONDS",
            dest="timeout_s",
            help="deadline of each request (of each page, when listing) (default %(default)s)",
        )
        return c

    client("health", "print the service's health and counters").set_defaults(func=_run_rca_client)
    c = client("series", "list stored series")
    c.add_argument("--metric", default="*", help="glob over metric names (default all)")
    c.add_argument("--domain", default="", help="only this domain")
    c.add_argument("--entity", default="", help="glob over entities, e.g. 'gpu:*'")
    c.add_argument(
        "--limit",
        type=_count,
        default=100,
        metavar="N",
        help="print at most N series, sorted by id; 0 = all (default %(default)s)",
    )
    c.add_argument(
        "--page-size",
        type=_count,
        default=0,
        metavar="N",
        help=_PAGE_SIZE_HELP.format(what="series", default=DEFAULT_SERIES_PAGE, maximum=MAX_SERIES_PAGE),
    )
    c.set_defaults(func=_run_rca_client)
    c = client("incidents", "list incidents (newest first) with ranked causes")
    c.add_argument("--open", action="store_true", dest="open_only", help="only open incidents")
    c.add_argument(
        "--limit", type=_count, default=20, metavar="N", help="print at most N incidents; 0 = all (default %(default)s)"
    )
    c.add_argument(
        "--page-size",
        type=_count,
        default=0,
        metavar="N",
        help=_PAGE_SIZE_HELP.format(what="incidents", default=DEFAULT_INCIDENTS_PAGE, maximum=MAX_INCIDENTS_PAGE),
    )
    c.set_defaults(func=_run_rca_client)
    c = client("incident", "show one incident with its ranked causes and evidence")
    c.add_argument("id")
    c.set_defaults(func=_run_rca_client)

    r = rsub.add_parser(
        "replay",
        help="find the incidents and ranked causes in historical telemetry (post-mortems)",
        description="Feed historical telemetry to the same analyzer the service runs, one interval at a time, "
        "and print the incidents it opens with their ranked, explained causes.",
        epilog=_REPLAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument(
        "telemetry",
        help="a long-format CSV/Parquet table (time, entity, signal or metric, value) or "
        "OTLP JSON lines (.json/.jsonl, as the collector's file exporter writes)",
    )
    r.add_argument(
        "--topology",
        metavar="FILE",
        help='extra dependency edges: JSON {"edges": [{"src", "dst", "relation"}]} or CSV '
        "src,dst[,relation]; src depends on dst; relations: contains, uses, runs_on, calls",
    )
    r.add_argument(
        "--kpi",
        action="append",
        default=[],
        metavar="METRIC",
        help="a KPI metric (or signal) name or glob; repeat for several (default: the training KPIs)",
    )
    r.add_argument(
        "--interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        dest="interval_s",
        help="analysis period, normally the scrape interval (default %(default)s)",
    )
    r.add_argument("--json", action="store_true", help="print the incidents as JSON")
    r.add_argument("--causes", type=int, default=5, metavar="N", help="causes shown per incident (default 5)")
    r.set_defaults(func=_run_rca_replay)


SHUTDOWN_BOUND_S = 30.0


def _run_rca_serve(args: argparse.Namespace) -> int:
    from factorylens.rca_service import ConfigError, RcaService, RcaServiceConfig, ServiceError

    values = {k: v for k, v in vars(args).items() if k in RcaServiceConfig.option_names()}
    try:
        service = RcaService(RcaServiceConfig(**values))
        service.start()
    except (ConfigError, ServiceError) as exc:
        print(f"factorylens rca serve: {exc}", file=sys.stderr)
        return 2
    terminate = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: terminate.set())
    try:
        while not terminate.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    # in-flight requests finish, a snapshot is cut, the WAL closed; past the bound the process exits
    # anyway: everything acknowledged is already in the WAL
    stopper = threading.Thread(target=service.stop, name="rca-stop", daemon=True)
    stopper.start()
    stopper.join(SHUTDOWN_BOUND_S)
    if stopper.is_alive():
        print(
            f"factorylens rca serve: shutdown took longer than {SHUTDOWN_BOUND_S:g} s; exiting without a final "
            "snapshot (the WAL holds every acknowledged request)",
            file=sys.stderr,
        )
        sys.stderr.flush()
        os._exit(3)
    return 0


_REPLAY_EPILOG = """\
examples:
  factorylens rca replay metrics.csv --kpi factorylens.train.step.duration
  factorylens rca replay otlp-export.jsonl --topology edges.csv --json > incidents.json

A long table's entity is used as given (e.g. gpu:GPU-1f2e..., host:node-3, service:checkout); OTLP
data get theirs from resource attributes (hw.id, host.name, factorylens.job.id, ...).
"""


def _run_rca_replay(args: argparse.Namespace) -> int:
    from factorylens._extras import require

    require("rca", "rca replay")
    from factorylens.rca_service.ranking import Topology
    from factorylens.rca_service.replay import incidents_as_json, replay

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 20) == 0:
            print(f"\rreplayed {done}/{total} batches", end="\n" if done == total else "", file=sys.stderr)

    try:
        topology = Topology.load(args.topology) if args.topology else None
        incidents = replay(
            args.telemetry,
            topology=topology,
            kpi_metrics=tuple(args.kpi),
            interval_s=args.interval_s,
            progress=progress,
        )
    except (OSError, ValueError) as exc:
        print(f"factorylens rca replay: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(incidents_as_json(incidents))
        return 0
    from factorylens.rca_service.client import when

    for incident in incidents:
        resolved = f", resolved {when(incident.resolved_unix_nano)}" if incident.resolved_unix_nano else ""
        print(f"{incident.id} [{incident.state.value}] {incident.title}")
        print(f"  onset {when(incident.onset_unix_nano)}, opened {when(incident.opened_unix_nano)}{resolved}")
        for cause in incident.causes[: args.causes]:
            print(f"  #{cause.rank} {cause.entity} ({cause.domain}) {cause.signal}  score {cause.score:.2f}")
            print(f"      {cause.explanation}")
    print(f"{len(incidents)} incident(s)")
    return 0


def _run_rca_client(args: argparse.Namespace) -> int:
    import os

    import grpc
    from google.protobuf.json_format import MessageToJson

    from factorylens.rca_service.api.v1 import rca_pb2
    from factorylens.rca_service.client import connect, format_incident

    token = (
        open(args.bearer_token_file).read().strip()
        if args.bearer_token_file
        else os.environ.get("FACTORYLENS_RCA_BEARER_TOKEN")
    )
    try:
        stub = connect(args.target, token=token, tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key)
    except (ValueError, OSError) as exc:
        print(f"factorylens rca {args.rca_command}: {exc}", file=sys.stderr)
        return 2
    if args.rca_command in ("series", "incidents"):
        return _print_rca_list(args, stub)
    try:
        if args.rca_command == "health":
            response = stub.Health(rca_pb2.HealthRequest(), timeout=args.timeout_s)
        else:
            response = stub.GetIncident(rca_pb2.GetIncidentRequest(id=args.id), timeout=args.timeout_s)
    except grpc.RpcError as exc:
        print(f"factorylens rca {args.rca_command}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    if args.json:
        print(MessageToJson(response, preserving_proto_field_name=True))
    elif args.rca_command == "health":
        print(str(response).strip())
    else:
        print(format_incident(response))
    return 0


def _print_rca_list(args: argparse.Namespace, stub: Any) -> int:
    """``rca series`` / ``rca incidents``: page through the listing, printing as pages arrive; one item
    past --limit tells whether more matched."""
    import grpc
    from google.protobuf.json_format import MessageToJson

    from factorylens.rca_service.api.v1 import rca_pb2
    from factorylens.rca_service.client import format_incident, list_incidents, list_series, when

    fetch = args.limit + 1 if args.limit else 0
    if args.rca_command == "series":
        items = list_series(
            stub,
            rca_pb2.ListSeriesRequest(metric=args.metric, domain=args.domain, entity=args.entity),
            limit=fetch,
            page_size=args.page_size,
            timeout=args.timeout_s,
        )
    else:
        items = list_incidents(
            stub,
            rca_pb2.ListIncidentsRequest(open_only=args.open_only),
            limit=fetch,
            page_size=args.page_size,
            timeout=args.timeout_s,
        )
    shown: list = []
    more = False
    try:
        for item in items:
            if args.limit and len(shown) >= args.limit:
                more = True
                break
            shown.append(item)
            if args.json:
                continue
            if args.rca_command == "series":
                print(
                    f"{item.id}  {item.metric:<40} {item.kind:<15} {item.domain:<8} {item.entity:<40} "
                    f"{item.points:>8} points  last {when(item.last_time_unix_nano)}"
                )
            else:
                print(format_incident(item) + "\n")
    except grpc.RpcError as exc:
        sys.stdout.flush()
        print(f"factorylens rca {args.rca_command}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    if args.json:
        response = (
            rca_pb2.ListSeriesResponse(series=shown, truncated=more)
            if args.rca_command == "series"
            else rca_pb2.ListIncidentsResponse(incidents=shown)
        )
        print(MessageToJson(response, preserving_proto_field_name=True))
    elif args.rca_command == "series":
        print(f"{len(shown)} series" + (" (more matched; raise --limit)" if more else ""))
    else:
        print(f"{len(shown)} incident(s)" + (" (more matched; raise --limit)" if more else ""))
    return 0


def _add_demo_parser(sub: argparse._SubParsersAction) -> None:
    from factorylens.demo import DemoOptions

    d = DemoOptions()
    p = sub.add_parser(
        "demo",
        help="a whole simulated AI factory through the real stack: faults explained and costed",
        description="Start the RCA service, rotel, simulated node agents and instrumented jobs as separate "
        "processes; inject faults of several domains minutes apart; show the cluster, the jobs and every "
        "incident live; summarise each incident (did it name the injected fault?) and the cost per team; "
        "write an HTML report. No GPU needed.",
        epilog="example: factorylens demo --plain --speed 20",
    )
    p.add_argument(
        "--scenario", default=d.scenario, metavar="FILE", help="a scored scenario file (default: five faults)"
    )
    p.add_argument("--hosts", type=int, default=d.hosts, help="simulated hosts (default %(default)s)")
    p.add_argument("--gpus-per-host", type=int, default=d.gpus_per_host, help="GPUs per host (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="noise and placement (default %(default)s)")
    p.add_argument("--speed", type=float, default=d.speed, help="simulated seconds per second (default %(default)s)")
    p.add_argument(
        "--duration",
        type=float,
        default=d.duration_s,
        metavar="SECONDS",
        dest="duration_s",
        help="simulated seconds to run (default: the scenario's length)",
    )
    p.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the stack up after the summary (until Ctrl-C) and print its endpoints",
    )
    p.add_argument("--plain", action="store_true", help="line-oriented output for logs and CI")
    p.add_argument(
        "--data-dir",
        default=d.data_dir,
        metavar="DIR",
        help="keep the service's data and every process's log here (default: a temporary directory)",
    )
    p.add_argument(
        "--report-dir",
        default=d.report_dir,
        metavar="DIR",
        help="write the HTML report here; '' for none (default %(default)s)",
    )
    p.add_argument(
        "--price-catalog",
        default=d.price_catalog,
        metavar="YAML",
        help="GPU prices for the cost summary (default: the shipped EXAMPLE catalog of list prices)",
    )
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from factorylens.demo import DemoError, DemoOptions, run_demo

    values = {k: v for k, v in vars(args).items() if k in DemoOptions.__dataclass_fields__}
    try:
        outcome = run_demo(DemoOptions(**values))
    except DemoError as exc:
        print(f"factorylens demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C during the summary: every process is already stopped
        return 130
    return 0 if outcome is not None else 130


def _print_translations() -> None:
    """The normalize processor's tables (other producers' names → ours) as markdown."""
    from factorylens.registry import ATTRIBUTE_TRANSLATIONS, DERIVED_TRANSLATIONS, METRIC_TRANSLATIONS

    print("| producer | their name | our name | unit | scale | added attributes |")
    print("|---|---|---|---|---|---|")
    for t in METRIC_TRANSLATIONS:
        added = ", ".join(f"{k}={v}" for k, v in t.attributes)
        if t.bits:
            added = ", ".join(filter(None, (added, f"{t.bit_attribute}=<bit name>: one series per bit")))
        unit = REGISTRY.metric(t.target).unit
        print(f"| {t.producer.value} | `{t.source}` | `{t.target}` | {unit} | {t.scale:g} | {added or '-'} |")
    for d in DERIVED_TRANSLATIONS:
        added = ", ".join(f"{k}={v}" for k, v in d.attributes)
        unit = REGISTRY.metric(d.target).unit
        print(f"| {d.producer.value} | `{d.minuend}` − `{d.subtrahend}` | `{d.target}` | {unit} | 1 | {added} |")
    print()
    print("| producer | their attribute | ours | on | note |")
    print("|---|---|---|---|---|")
    for a in ATTRIBUTE_TRANSLATIONS:
        note = ", ".join(
            filter(
                None,
                ("parsed as an integer" if a.integer else "", f"only on {', '.join(a.metrics)}*" if a.metrics else ""),
            )
        )
        target = f"`{a.target}`" if a.target else "(dropped)"
        where = "resource" if a.to_resource else "point"
        print(f"| {a.producer.value} | `{a.source}` | {target} | {where} | {note or '-'} |")


def _meaning_json(meaning: Any) -> dict[str, Any] | None:
    """A Meaning or ValueMeaning's fields as JSON (enum values; a ValueMeaning's unset fields left out)."""
    if meaning is None:
        return None
    fields = ("kind", "bad", "can_slow", "name", "side", "domain")
    values = {f: getattr(meaning, f) for f in fields if getattr(meaning, f) is not None}
    return {f: v.name.lower() if f == "bad" else getattr(v, "value", v) for f, v in values.items()}


def _print_meanings(metrics: list[Any]) -> None:
    """The second markdown table: what each signal means for ranking causes, a row per attribute value
    that means something else."""
    from factorylens.registry import ANY_VALUE

    print(
        "\nWhat each signal means for ranking causes (`REGISTRY.meaning(metric, attributes)`): its kind, "
        "the direction of change that is trouble, whether such a change can slow or fail a workload by "
        "itself, whose behaviour it measures (`outbound`: time waiting on others; `outcome`: how well the "
        "whole works; `caller_view`: how its callers see it) and where the trouble lives. A row per attribute "
        "value that means something else; "
        "`*` is any value.\n"
    )
    header = ("signal", "kind", "bad", "can slow", "side", "domain", "in plain words")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for m in metrics:
        labels: list[tuple[str, dict[str, object]]] = [(m.name, {})] + [
            (f"{m.name}{{{v.attribute}={v.value}}}", {v.attribute: "{value}" if v.value == ANY_VALUE else v.value})
            for v in m.value_meanings
        ]
        for label, attributes in labels:
            meaning = REGISTRY.meaning(m.name, attributes)
            if meaning is None:
                continue
            cells = (
                f"`{label}`",
                meaning.kind.value,
                meaning.bad.name.lower(),
                "yes" if meaning.can_slow else "no",
                meaning.side.value,
                meaning.domain.value if meaning.domain else "-",
                meaning.name,
            )
            print("| " + " | ".join(cells) + " |")


def _run_metrics(args: argparse.Namespace) -> int:
    if args.translations:
        _print_translations()
        return 0
    if args.format == "python":
        if args.domain is not None:
            raise SystemExit("factorylens metrics: --format python writes every name; leave out --domain")
        from factorylens.registry import python_names

        sys.stdout.write(python_names(REGISTRY))
        return 0
    metrics = [m for m in REGISTRY.metrics if args.domain is None or m.domain.value == args.domain]
    if args.format == "json":
        print(
            json.dumps(
                [
                    {
                        "name": m.name,
                        "instrument": m.instrument.value,
                        "unit": m.unit,
                        "domain": m.domain.value,
                        "source": m.source.value,
                        "component": m.component,
                        "prometheus": m.prometheus_name,
                        "attributes": list(REGISTRY.allowed_attributes(m)),
                        "description": m.description,
                        "meaning": _meaning_json(m.meaning),
                        "value_meanings": [
                            {"attribute": v.attribute, "value": v.value, **(_meaning_json(v) or {})}
                            for v in m.value_meanings
                        ],
                    }
                    for m in metrics
                ],
                indent=2,
            )
        )
        return 0
    rows = [
        (
            m.name,
            m.instrument.value,
            m.unit,
            m.domain.value,
            m.source.value,
            m.prometheus_name,
            ", ".join(m.attributes) or "-",
            m.description,
        )
        for m in metrics
    ]
    header = ("name", "instrument", "unit", "domain", "source", "prometheus", "attributes", "description")
    if args.format == "markdown":
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            print("| " + " | ".join(f"`{c}`" if i in (0, 5) else c for i, c in enumerate(r)) + " |")
        _print_meanings(metrics)
        return 0
    widths = [max(len(str(r[i])) for r in [*rows, header]) for i in range(len(header) - 1)]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1]  # noqa: E731
    print(line(header))
    for r in rows:
        print(line(r))
    print(
        f"\n{len(rows)} metrics. Every GPU metric also carries the identity attributes: "
        f"{', '.join(REGISTRY.attribute_groups['gpu'])}."
    )
    print(f"Resource attributes: {', '.join(REGISTRY.resource_attributes)}.")
    return 0


_DATASETS_EPILOG = """\
where the tests and benchmarks look for a dataset, in order:
  $FACTORYLENS_DATA               a folder with nab/ and rca/{petshop,nezha}/ (or nab/, petshop/, nezha/);
                                  when set, the only place looked at
  ../shared/data                  beside the checkout ($FACTORYLENS_SHARED/data, deprecated)
  the cache                       $XDG_CACHE_HOME/factorylens/datasets/<name> (~/.cache/...), once a fetch
                                  into it has completed

examples:
  factorylens datasets list
  factorylens datasets fetch nab
  factorylens datasets fetch --cache-dir /data/factorylens && export FACTORYLENS_DATA=/data/factorylens
"""


def _add_datasets_parser(sub: argparse._SubParsersAction) -> None:
    from factorylens.datasets import DATASETS

    ds = sub.add_parser(
        "datasets",
        help="list or download the labelled datasets the tests and benchmarks use",
        description="The labelled datasets (NAB; PetShop and Nezha for root-cause ranking): where a copy is "
        "found, and downloading their development split, file by file from the upstream "
        "repositories at pinned commits, verified against the packaged manifest's SHA-256.",
        epilog=_DATASETS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dsub = ds.add_subparsers(dest="datasets_command", metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--cache-dir",
            metavar="DIR",
            help="the cache folder holding <name>/ (default $XDG_CACHE_HOME/factorylens/datasets)",
        )
        p.add_argument("--manifest", metavar="FILE", help=argparse.SUPPRESS)  # another manifest (tests, mirrors)

    p = dsub.add_parser(
        "list",
        help="what is known, where each copy is, whether it is complete",
        description="For each dataset: its files and size, every place looked at, whether "
        "the copy there is complete, and which one is in use.",
        epilog=_DATASETS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(p)
    p.add_argument("--verify", action="store_true", help="also check every file's SHA-256 (slower)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_run_datasets_list)
    p = dsub.add_parser(
        "fetch",
        help="download datasets into the cache (resumable; verified files are not fetched again)",
        description="Download the development split of each NAME (all when none) into the cache, with "
        "progress on stderr. Each file goes to a .part file, is checked against its SHA-256 "
        "and renamed into place; a file already verified is skipped, an interrupted download "
        "resumes.",
        epilog=_DATASETS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("names", nargs="*", metavar="NAME", help=f"{', '.join(DATASETS)} (default: all)")
    common(p)
    p.add_argument("--jobs", type=int, default=4, metavar="N", help="parallel downloads (default %(default)s)")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="network timeout per request (default %(default)s)",
    )
    p.set_defaults(func=_run_datasets_fetch)


def _run_datasets_list(args: argparse.Namespace) -> int:
    from factorylens.datasets import DatasetNotFound, copy_status, find_dataset, load_manifest, locations

    manifest = load_manifest(args.manifest)
    report = []
    for name, info in manifest["datasets"].items():
        try:
            in_use = str(find_dataset(name, args.cache_dir, manifest))
        except DatasetNotFound as exc:
            in_use, reason = None, str(exc)
        places = []
        for loc in locations(name, args.cache_dir, manifest):
            complete, text = copy_status(loc, name, manifest, verify=args.verify)
            places.append({"source": loc.source, "path": str(loc.path), "complete": complete, "status": text})
        files = info["files"]
        report.append(
            {
                "name": name,
                "title": info["title"],
                "license": info["license"],
                "files": len(files),
                "bytes": sum(f.get("size") or 0 for f in files),
                "in_use": in_use,
                "places": places,
                **({} if in_use else {"missing": reason}),
            }
        )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for item in report:
        print(f"{item['name']}: {item['files']} files, {item['bytes'] / 1e6:.1f} MB, {item['license']}")
        print(f"  {item['title']}")
        for place in item["places"]:
            mark = "*" if place["path"] == item["in_use"] else " "
            print(f"  {mark} {place['source']:<16} {place['path']}: {place['status']}")
        print(f"  in use: {item['in_use']}" if item["in_use"] else f"  {item['missing']}")
    return 0


def _run_datasets_fetch(args: argparse.Namespace) -> int:
    from factorylens.datasets import ENV_DATA, cache_root, find_dataset, load_manifest
    from factorylens.datasets._fetch import FetchError, fetch

    manifest = load_manifest(args.manifest)
    try:
        folders = fetch(
            args.names or None,
            args.cache_dir,
            manifest=manifest,
            jobs=args.jobs,
            timeout=args.timeout,
            stream=sys.stderr,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write the cache: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return 130
    for name, folder in folders.items():
        print(f"{name}: {folder}")
    if args.cache_dir and Path(args.cache_dir).resolve() != cache_root().resolve():
        print(
            f"not the default cache: set {ENV_DATA}={args.cache_dir} for the tests and benchmarks to use it",
            file=sys.stderr,
        )
    elif os.environ.get(ENV_DATA):
        print(
            f"note: {ENV_DATA} is set, so the tests and benchmarks look only there, not in the cache", file=sys.stderr
        )
    else:
        for name in folders:
            used = find_dataset(name, manifest=manifest)
            if used != folders[name]:
                print(f"note: {name} is also at {used}, which comes first in the lookup", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="factorylens", description="OpenTelemetry-native observability and root-cause analysis for GPU clusters."
    )
    parser.add_argument("--version", action="version", version=f"factorylens {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    m = sub.add_parser(
        "metrics",
        help="print the metric registry (every metric we emit)",
        description="Print every metric factorylens emits: name, instrument, unit, domain, "
        "origin of the name, Prometheus name, attributes and description.",
    )
    m.add_argument(
        "--format",
        choices=("table", "json", "markdown", "python"),
        default="table",
        help="python: the typed name constants (factorylens/registry/names.py)",
    )
    m.add_argument("--domain", choices=[d.value for d in Domain], help="only this domain")
    m.add_argument(
        "--translations",
        action="store_true",
        help="print instead the tables that rename dcgm-exporter, node-exporter, hostmetrics and OpenLIT "
        "series to ours (markdown; docs/processors.md shows them)",
    )
    m.set_defaults(func=_run_metrics)
    _add_gpu_parser(sub)
    _add_rca_parser(sub)
    _add_demo_parser(sub)
    _add_datasets_parser(sub)
    from factorylens.collector import add_parsers as add_collector_parsers  # collector, otel-config

    add_collector_parsers(sub)
    from factorylens.cost_report import add_parser as add_cost_parser

    add_cost_parser(sub)
    from factorylens.dashboards._cli import add_parser as add_dashboards_parser

    add_dashboards_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from factorylens._extras import MissingExtra

    try:
        return _main(argv)
    except MissingExtra as exc:
        print(f"factorylens: {exc}", file=sys.stderr)
        return 2


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        if args.command == "rca":
            parser.parse_args(["rca", "--help"])
        if args.command == "datasets":
            parser.parse_args(["datasets", "--help"])
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.func(args))
