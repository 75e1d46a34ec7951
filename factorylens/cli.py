"""The ``factorylens`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import Sequence

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
        "gpu", help="run the GPU receiver (NVML or simulated)",
        description="Scrape NVIDIA GPUs through NVML (or a simulated cluster) and export OpenTelemetry "
                    "hw.gpu.* metrics over OTLP, XID events as log records, and optionally a Prometheus "
                    "/metrics endpoint. Keeps running without a driver or GPU and retries.",
        epilog=_GPU_EPILOG + "\nfault kinds for --scenario: " + ", ".join(FAULT_KINDS),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("source")
    g.add_argument("--backend", choices=BACKENDS, default=d.backend,
                   help="nvml: this node's GPUs; sim: a simulated cluster (default %(default)s)")
    g.add_argument("--collection-interval", type=float, default=d.collection_interval_s, metavar="SECONDS",
                   dest="collection_interval_s", help="seconds between scrapes (default %(default)s)")
    g.add_argument("--no-process-metrics", action="store_false", dest="process_metrics",
                   help="skip per-process GPU memory/utilization and job attribution")
    g.add_argument("--max-processes-per-gpu", type=int, default=d.max_processes_per_gpu, metavar="N",
                   help="cardinality bound on per-process series per GPU (default %(default)s)")
    g.add_argument("--proc-root", default=d.proc_root, metavar="DIR",
                   help="procfs to read process environments/cgroups from for pid→job mapping "
                        "(/host/proc in a container; default %(default)s)")
    g.add_argument("--discovery-retry-interval", type=float, default=d.discovery_retry_interval_s,
                   metavar="SECONDS", dest="discovery_retry_interval_s",
                   help="retry period while the driver or a GPU is missing (default %(default)s)")
    g.add_argument("--event-wait", type=int, default=d.event_wait_ms, metavar="MS", dest="event_wait_ms",
                   help="how long one XID event wait blocks (default %(default)s)")
    o = p.add_argument_group("outputs")
    o.add_argument("--otlp", choices=OTLP_MODES, default=d.otlp,
                   help="OTLP export: auto = when OTEL_EXPORTER_OTLP_ENDPOINT is set (default %(default)s)")
    o.add_argument("--prometheus-port", type=int, default=None, metavar="PORT",
                   help="serve Prometheus /metrics on PORT (dcgm-exporter uses 9400); a simulated cluster "
                        "serves host i on PORT+i; 0 picks free ports")
    o.add_argument("--prometheus-host", default=d.prometheus_host, metavar="ADDR",
                   help="bind address for /metrics (default %(default)s; use 0.0.0.0 to expose it)")
    o.add_argument("--prometheus-bearer-token-file", metavar="FILE",
                   help="require 'Authorization: Bearer <token in FILE>' on /metrics")
    o.add_argument("--prometheus-tls-cert", metavar="PEM", help="serve /metrics over HTTPS with this certificate")
    o.add_argument("--prometheus-tls-key", metavar="PEM", help="private key for --prometheus-tls-cert")
    o.add_argument("--console", action="store_true", help="print a live table of the GPUs after each scrape")
    o.add_argument("--duration", type=float, default=None, metavar="SECONDS", dest="duration_s",
                   help="stop after SECONDS (default: run until Ctrl-C / SIGTERM)")
    s = p.add_argument_group("simulator (--backend sim)")
    s.add_argument("--sim-hosts", type=int, default=d.sim_hosts, metavar="N", help="hosts (default %(default)s)")
    s.add_argument("--sim-gpus-per-host", type=int, default=d.sim_gpus_per_host, metavar="M",
                   help="GPUs per host (default %(default)s)")
    s.add_argument("--sim-model", default=d.sim_model, choices=sorted(MODELS), type=str.upper,
                   help="GPU model preset with its real limits (default %(default)s)")
    s.add_argument("--sim-mig", action="store_true", help="put every GPU in MIG mode (smallest profile × 7)")
    s.add_argument("--sim-seed", type=int, default=d.sim_seed, metavar="N", help="random seed (default %(default)s)")
    s.add_argument("--sim-speed", type=float, default=d.sim_speed, metavar="X",
                   help="simulated seconds per real second, e.g. 60 (default %(default)s)")
    s.add_argument("--scenario", metavar="FILE", help="fault scenario (YAML/JSON): XIDs, ECC bursts, throttling, "
                                                      "NVLink/PCIe degradation, GPU lost, NVML errors, ...")
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
            logging.getLogger("factorylens").info("%s: Prometheus metrics at %s", pipeline.name,
                                                  pipeline.metrics_server.url)
    try:
        receiver.run(config.duration_s)
    finally:
        receiver.shutdown()
    return 0


def _run_metrics(args: argparse.Namespace) -> int:
    metrics = [m for m in REGISTRY.metrics if args.domain is None or m.domain.value == args.domain]
    if args.format == "json":
        print(json.dumps([{
            "name": m.name, "instrument": m.instrument.value, "unit": m.unit, "domain": m.domain.value,
            "source": m.source.value, "prometheus": m.prometheus_name,
            "attributes": list(REGISTRY.allowed_attributes(m)), "description": m.description,
        } for m in metrics], indent=2))
        return 0
    rows = [(m.name, m.instrument.value, m.unit, m.domain.value, m.source.value, m.prometheus_name,
             ", ".join(m.attributes) or "-", m.description) for m in metrics]
    header = ("name", "instrument", "unit", "domain", "source", "prometheus", "attributes", "description")
    if args.format == "markdown":
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            print("| " + " | ".join(f"`{c}`" if i in (0, 5) else c for i, c in enumerate(r)) + " |")
        return 0
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header) - 1)]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]  # noqa: E731
    print(line(header))
    for r in rows:
        print(line(r))
    print(f"\n{len(rows)} metrics. Every GPU metric also carries the identity attributes: "
          f"{', '.join(REGISTRY.attribute_groups['gpu'])}.")
    print(f"Resource attributes: {', '.join(REGISTRY.resource_attributes)}.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="factorylens",
        description="OpenTelemetry-native observability and root-cause analysis for GPU clusters.")
    parser.add_argument("--version", action="version", version=f"factorylens {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    m = sub.add_parser("metrics", help="print the metric registry (every metric we emit)",
                       description="Print every metric factorylens emits: name, instrument, unit, domain, "
                                   "origin of the name, Prometheus name, attributes and description.")
    m.add_argument("--format", choices=("table", "json", "markdown"), default="table")
    m.add_argument("--domain", choices=[d.value for d in Domain], help="only this domain")
    m.set_defaults(func=_run_metrics)
    _add_gpu_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return int(args.func(args))
