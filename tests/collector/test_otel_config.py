"""The collector configs in otel-config/, checked without a collector (the otelcol-contrib binary is not in the
package registries the tests install from): the generated agent.yaml is what the registry gives now; every YAML is
wired (components defined, used, of a type the otelcol-contrib release has), takes endpoints from the environment,
compresses with gzip or nothing toward the RCA service, keeps TLS files commented, escapes ``$``; rotel.env names
only real rotel flags. The agent's OTTL statements are run by a small interpreter (tests/collector/ottl.py) on
dcgm-exporter, node-exporter, hostmetrics and scraped series, and compared with the RCA service's processor.
Each check is a function over a config, so the tests at the bottom also prove each one fails on a broken config.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from factorylens.collector.otel_config import (
    arriving_names,
    edge_translations,
    generated_files,
    stale_files,
)
from factorylens.collector.rotel import find_agent, read_env_file
from factorylens.datasets import ENV_DATA, shared_data_dir
from factorylens.registry import (
    CLOCK_EVENT_REASONS,
    METRIC_TRANSLATIONS,
    REGISTRY,
    Instrument,
    Producer,
)

from .ottl import Batch, Metric, Point, run

ROOT = Path(__file__).resolve().parents[2]
OTEL_CONFIG = ROOT / "otel-config"
CONFIGS = sorted(OTEL_CONFIG.glob("*.yaml"))
SECTIONS = {"receivers": "receiver", "processors": "processor", "exporters": "exporter", "connectors": "connector"}
# exporters that open connections: they need TLS settings (commented where they need files)
NETWORK_EXPORTERS = {"otlp", "otlp_grpc", "otlphttp", "otlp_http", "loadbalancing", "load_balancing",
                     "prometheusremotewrite"}  # fmt: skip
# exporters toward the RCA service (or a gateway in front of it): compression must be said, gzip or none
OTLP_EXPORTERS = {"otlp", "otlp_grpc", "loadbalancing", "load_balancing"}
LISTEN = re.compile(r"(0\.0\.0\.0|127\.0\.0\.1):\d+")
HOST_PORT = re.compile(r"[\w.-]+:\d+|\w+://\S+")


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- the release manifest


@cache
def manifest() -> tuple[frozenset[tuple[str, str]], dict[str, str]] | None:
    """(kind, Go module folder) of every component of the otelcol-contrib release, and the renamed types (new →
    old); from shared data, looked up like the datasets (FACTORYLENS_DATA, else ../shared/data); None if absent."""
    env = os.environ.get(ENV_DATA)
    roots = [Path(env)] if env else [d for d in [shared_data_dir()] if d is not None]
    for root in roots:
        path = root / "otelcol" / "otelcol-contrib-components.txt"
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            rows = frozenset(
                (line.split("\t")[0], line.split("\t")[1])
                for line in text.splitlines()
                if line.strip() and not line.startswith("#")
            )
            header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
            renamed = {new: old for old, new in re.findall(r"(\w+) -> (\w+)", header)}
            return rows, renamed
    return None


def component_type_exists(kind: str, type_: str, release: tuple[frozenset[tuple[str, str]], dict[str, str]]) -> bool:
    """A config type name (``memory_limiter``, ``otlp_grpc``) against the release's module folders
    (``memorylimiterprocessor``, ``otlpexporter``, ``filestorage``)."""
    rows, renamed = release
    base = renamed.get(type_, type_).replace("_", "")
    return (kind, base + kind) in rows or (kind, base) in rows


# ---------------------------------------------------------------------------- the checks


def _strings(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Every (key, string value) in a parsed config, list items under their list's key."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, str(k))
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item, key)
    elif isinstance(node, str):
        yield key, node


def _keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from _keys(v)
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item)


def wiring_problems(config: dict[str, Any]) -> list[str]:
    """Every pipeline has receivers and exporters; every component it names is defined; every defined one is used;
    every extension referenced (a queue's ``storage``) is defined and enabled."""
    problems = []
    service = config.get("service") or {}
    used: dict[str, set[str]] = {section: set() for section in SECTIONS}
    for name, pipeline in (service.get("pipelines") or {}).items():
        for part in ("receivers", "exporters"):
            if not pipeline.get(part):
                problems.append(f"pipeline {name} has no {part}")
        for section in SECTIONS:
            for component in pipeline.get(section) or []:
                used[section].add(component)
                if component not in (config.get(section) or {}):
                    problems.append(f"pipeline {name}: {section[:-1]} {component} is not defined")
    for section in SECTIONS:
        for component in config.get(section) or {}:
            if component not in used[section]:
                problems.append(f"{section[:-1]} {component} is defined but in no pipeline")
    extensions = set(config.get("extensions") or {})
    enabled = set(service.get("extensions") or [])
    for ext in enabled - extensions:
        problems.append(f"service extension {ext} is not defined")
    for ext in extensions - enabled:
        problems.append(f"extension {ext} is defined but not enabled in service.extensions")
    for key, value in _strings(config):
        if key == "storage" and value not in enabled:
            problems.append(f"storage {value} is not an enabled extension")
    return problems


def release_problems(config: dict[str, Any], release: tuple[frozenset[tuple[str, str]], dict[str, str]]) -> list[str]:
    problems = []
    for section, kind in {**SECTIONS, "extensions": "extension"}.items():
        for component in config.get(section) or {}:
            type_ = component.split("/")[0]
            if not component_type_exists(kind, type_, release):
                problems.append(f"{kind} type {type_} is not in the otelcol-contrib release")
    return problems


def endpoint_problems(config: dict[str, Any]) -> list[str]:
    """Addresses come from ``${env:…}``, except listen addresses on 0.0.0.0 or 127.0.0.1."""
    return [
        f"{key}: {value!r} is hard-coded (use ${{env:...}})"
        for key, value in _strings(config)
        if (key in ("endpoint", "hostname", "hostnames", "targets") or HOST_PORT.fullmatch(value))
        and "${env:" not in value
        and not LISTEN.fullmatch(value)
    ]


def _exporters(config: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name, settings in (config.get("exporters") or {}).items():
        yield name, name.split("/")[0], settings or {}


def compression_problems(config: dict[str, Any]) -> list[str]:
    problems = [
        f"compression {value!r}: the RCA service takes gzip or none"
        for key, value in _strings(config)
        if key == "compression" and value not in ("gzip", "none")
    ]
    for name, type_, settings in _exporters(config):
        if type_ in OTLP_EXPORTERS:
            otlp = (settings.get("protocol") or {}).get("otlp", settings)
            if "compression" not in otlp:
                problems.append(f"exporter {name} does not say its compression")
    return problems


def tls_problems(config: dict[str, Any], text: str) -> list[str]:
    """Network exporters carry ``tls`` settings; no certificate file is active (a fresh install has none), and the
    file settings are there, commented, to uncomment."""
    problems = [f"{key} is set: keep file settings commented" for key in _keys(config) if key.endswith("_file")]
    networked = False
    for name, type_, settings in _exporters(config):
        if type_ in NETWORK_EXPORTERS:
            networked = True
            otlp = (settings.get("protocol") or {}).get("otlp", settings)
            if not isinstance(otlp.get("tls"), dict):
                problems.append(f"exporter {name} has no tls settings")
    if networked and not re.search(r"^\s*#\s*ca_file:", text, re.M):
        problems.append("no commented ca_file to uncomment for TLS")
    return problems


def dollar_problems(config: dict[str, Any]) -> list[str]:
    """The collector expands ``$``: a literal one (a regex group, an anchor) must be written ``$$``."""
    return [
        f"{key}: {value!r} has a bare $"
        for key, value in _strings(config)
        if "$" in re.sub(r"\$\{env:[^}]*\}|\$\$", "", value)
    ]


def all_problems(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    problems = wiring_problems(config) + endpoint_problems(config) + compression_problems(config)
    problems += tls_problems(config, text) + dollar_problems(config)
    return [f"{path.name}: {p}" for p in problems]


# ---------------------------------------------------------------------------- the committed configs


def test_the_committed_agent_yaml_is_what_the_registry_generates():
    assert stale_files(OTEL_CONFIG) == [], "otel-config/agent.yaml is stale: run `factorylens otel-config`"


def test_otel_config_check_fails_on_a_stale_file(tmp_path):
    def check(directory: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "factorylens", "otel-config", "--output", str(directory), "--check"]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    written = subprocess.run(
        [sys.executable, "-m", "factorylens", "otel-config", "--output", str(tmp_path)],
        capture_output=True,
        timeout=120,
    )
    assert written.returncode == 0 and (tmp_path / "agent.yaml").read_text() == generated_files()["agent.yaml"]
    assert check(tmp_path).returncode == 0
    (tmp_path / "agent.yaml").write_text(generated_files()["agent.yaml"].replace("0.01", "0.1", 1))
    stale = check(tmp_path)
    assert stale.returncode == 1 and "agent.yaml is stale" in stale.stderr


def test_there_are_the_three_configs():
    assert {p.name for p in CONFIGS} >= {"agent.yaml", "gateway.yaml", "minimal.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_is_wired_addressed_compressed_and_escaped(path):
    config = load(path)
    assert set(config) >= {"receivers", "exporters", "service"}
    assert not all_problems(path), "\n".join(all_problems(path))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_component_type_is_in_the_otelcol_contrib_release(path):
    release = manifest()
    if release is None:
        pytest.skip("../shared/data/otelcol/otelcol-contrib-components.txt (the release manifest) is not here")
    problems = release_problems(load(path), release)
    assert not problems, "\n".join(problems)


def test_the_gateway_routes_by_job_with_one_resolver_for_every_signal():
    config = load(OTEL_CONFIG / "gateway.yaml")
    balancer = config["exporters"]["load_balancing/rca"]
    assert balancer["routing_key"] == "attributes" and balancer["routing_attributes"] == ["factorylens.job.id"]
    assert "dns" in balancer["resolver"]
    pipelines = config["service"]["pipelines"]
    for signal in ("traces", "metrics", "logs"):  # the same exporter instance, so the same resolver and ring
        assert "load_balancing/rca" in pipelines[signal]["exporters"]
        # groupbyattrs would fold a host's per-job copies (--shard-by-job) into one scope: never before the router
        assert not any(p.startswith("groupbyattrs") for p in pipelines[signal]["processors"])
    prometheus = pipelines["metrics/prometheus"]
    assert prometheus["exporters"] == ["prometheusremotewrite"] and "deltatocumulative" in prometheus["processors"]
    # Prometheus sees each host series once: the copies without the primary flag are filtered out first
    assert prometheus["processors"].index("filter/one-copy") < prometheus["processors"].index("transform/one-copy")
    [condition] = config["processors"]["filter/one-copy"]["metrics"]["metric"]
    assert 'attributes["factorylens.route.primary"] == nil' in condition
    assert config["exporters"]["prometheusremotewrite"]["resource_to_telemetry_conversion"] == {"enabled": False}


def test_queues_that_must_survive_a_restart_are_on_disk():
    for path in CONFIGS:
        for name, type_, settings in _exporters(load(path)):
            otlp = (settings.get("protocol") or {}).get("otlp", settings)
            if type_ in OTLP_EXPORTERS:
                assert otlp["sending_queue"]["storage"] == "file_storage", f"{path.name}: {name}"
                assert otlp["retry_on_failure"]["enabled"] is True


def test_the_dcgm_scrape_finds_the_exporter_on_this_node_and_not_our_agent():
    scrape = load(OTEL_CONFIG / "agent.yaml")["receivers"]["prometheus/dcgm"]["config"]["scrape_configs"][0]
    assert scrape["kubernetes_sd_configs"][0]["selectors"][0]["field"] == "spec.nodeName=${env:K8S_NODE_NAME}"
    keep, drop, address = scrape["relabel_configs"]
    regex = re.compile(keep["regex"])  # Prometheus anchors relabel regexes
    assert regex.fullmatch("nvidia-dcgm-exporter;;") and regex.fullmatch(";dcgm-exporter;9400")
    assert regex.fullmatch(";;9400") and not regex.fullmatch("node-exporter;;9100")
    assert drop["action"] == "drop" and re.fullmatch(drop["regex"], "factorylens-gpu-receiver")
    # after the collector's expansion ($$ → $), the replacement is the regex group
    replacement = address["replacement"].replace("$$", "$")
    assert re.sub(address["regex"], replacement.replace("$1", r"\1"), "10.0.0.7;") == "10.0.0.7:9400"


def test_rotel_env_names_only_real_rotel_flags():
    help_text = subprocess.run([str(find_agent()), "start", "--help"], capture_output=True, text=True, timeout=60)
    known = set(re.findall(r"\[env: (ROTEL_\w+)=", help_text.stdout))
    assert len(known) > 50, "cannot read rotel's flags from its --help"
    text = (OTEL_CONFIG / "rotel.env").read_text()
    named = set(re.findall(r"^#?\s*(ROTEL_\w+)=", text, re.M))  # commented ones too
    assert named and not named - known, f"not rotel flags: {sorted(named - known)}"
    settings = read_env_file(OTEL_CONFIG / "rotel.env")
    assert settings["ROTEL_OTLP_EXPORTER_COMPRESSION"] in ("gzip", "none")
    import factorylens.processors.rotel

    # a module name, found wherever factorylens is installed (a wheel has no otel-config/)
    assert settings["ROTEL_OTLP_WITH_METRICS_PROCESSOR"] == factorylens.processors.rotel.__file__
    assert all(LISTEN.fullmatch(settings[k]) for k in ("ROTEL_OTLP_GRPC_ENDPOINT", "ROTEL_OTLP_HTTP_ENDPOINT"))


# ---------------------------------------------------------------------------- the checks can fail

MINIMAL = """
extensions: {file_storage: {directory: /q}}
receivers: {otlp: {protocols: {grpc: {endpoint: 127.0.0.1:4317}}}}
processors: {batch: {}}
exporters:
  otlp_grpc/rca:
    endpoint: ${env:RCA}
    compression: gzip
    tls: {insecure: true}
    sending_queue: {storage: file_storage}
service:
  extensions: [file_storage]
  pipelines: {metrics: {receivers: [otlp], processors: [batch], exporters: [otlp_grpc/rca]}}
"""
COMMENT = "\n# ca_file: /x\n"


def _broken(change) -> dict[str, Any]:
    config = yaml.safe_load(MINIMAL)
    change(config)
    return config


def test_a_good_config_has_no_problems():
    config = yaml.safe_load(MINIMAL)
    problems = wiring_problems(config) + endpoint_problems(config) + compression_problems(config)
    assert problems + tls_problems(config, MINIMAL + COMMENT) + dollar_problems(config) == []
    assert tls_problems(config, MINIMAL), "a missing commented ca_file must be reported"


@pytest.mark.parametrize(
    "check, change",
    [
        (wiring_problems, lambda c: c["service"]["pipelines"]["metrics"]["processors"].append("transform")),
        (wiring_problems, lambda c: c["processors"].update({"memory_limiter": {}})),
        (wiring_problems, lambda c: c["service"]["pipelines"]["metrics"].update({"exporters": []})),
        (wiring_problems, lambda c: c["service"].update({"extensions": []})),
        (endpoint_problems, lambda c: c["exporters"]["otlp_grpc/rca"].update({"endpoint": "rca.example:4317"})),
        (endpoint_problems, lambda c: c["receivers"]["otlp"]["protocols"]["grpc"].update({"endpoint": "10.0.0.1:1"})),
        (compression_problems, lambda c: c["exporters"]["otlp_grpc/rca"].update({"compression": "snappy"})),
        (compression_problems, lambda c: c["exporters"]["otlp_grpc/rca"].pop("compression")),
        (lambda c: tls_problems(c, COMMENT), lambda c: c["exporters"]["otlp_grpc/rca"].pop("tls")),
        (lambda c: tls_problems(c, COMMENT), lambda c: c["exporters"]["otlp_grpc/rca"]["tls"].update(ca_file="/x")),
        (dollar_problems, lambda c: c["processors"].update({"batch": {"x": "regex ^a$"}})),
    ],
)
def test_each_check_catches_its_fault(check, change):
    assert check(_broken(change))


def test_the_release_check_catches_an_unknown_component():
    release = manifest()
    if release is None:
        pytest.skip("the otelcol-contrib release manifest is not here")
    config = yaml.safe_load(MINIMAL)
    assert release_problems(config, release) == []
    config["processors"]["nosuchprocessor"] = {}
    config["exporters"]["loadbalancing"] = {}  # the old name of load_balancing: still known
    assert release_problems(config, release) == ["processor type nosuchprocessor is not in the otelcol-contrib release"]


# ---------------------------------------------------------------------------- the OTTL, run


@cache
def _statements(processor: str) -> list[Any]:
    groups = load(OTEL_CONFIG / "agent.yaml")["processors"][processor]["metric_statements"]
    return yaml.safe_load(yaml.safe_dump(groups).replace("$$", "$"))  # as the collector expands them


def normalize(*metrics: Metric, scope: str = "prometheusreceiver", resource: dict | None = None) -> Batch:
    return run(_statements("transform/normalize"), Batch(list(metrics), dict(resource or {}), scope))


DCGM_LABELS = {
    "gpu": "3",
    "UUID": "GPU-8f3c",
    "device": "nvidia3",
    "modelName": "NVIDIA H100 80GB HBM3",
    "Hostname": "gpu-node-7",
    "pci_bus_id": "00000000:3B:00.0",
    "DCGM_FI_DRIVER_VERSION": "550.54.15",
    "pod": "trainer-0",
    "namespace": "ml",
    "container": "pytorch",
}


def dcgm(name: str, value: float | int, kind: str = "gauge", **extra: str) -> Metric:
    return Metric(name, [Point({**DCGM_LABELS, **extra}, value)], kind, monotonic=kind == "sum")


def test_dcgm_utilization_becomes_a_ratio_under_our_names_and_the_host_moves_to_the_resource():
    batch = normalize(dcgm("DCGM_FI_DEV_GPU_UTIL", 55.0))
    (metric,) = batch.metrics
    assert (metric.name, metric.unit, metric.kind) == ("hw.gpu.utilization", "1", "gauge")
    assert metric.description == REGISTRY.metric("hw.gpu.utilization").description
    assert metric.points[0].value == pytest.approx(0.55)
    assert metric.points[0].attributes == {
        "hw.id": "GPU-8f3c",
        "gpu.index": 3,
        "hw.model": "NVIDIA H100 80GB HBM3",
        "gpu.pci_address": "00000000:3B:00.0",
        "hw.driver_version": "550.54.15",
        "k8s.pod.name": "trainer-0",
        "k8s.namespace.name": "ml",
        "k8s.container.name": "pytorch",
        "hw.type": "gpu",
        "hw.vendor": "nvidia",
        "hw.gpu.task": "general",
    }
    assert batch.resource == {"host.name": "gpu-node-7"}
    kept = normalize(dcgm("DCGM_FI_DEV_GPU_UTIL", 55.0), resource={"host.name": "from-sdk"})
    assert kept.resource == {"host.name": "from-sdk"}


def test_integer_points_are_scaled_without_truncation():
    (metric,) = normalize(dcgm("DCGM_FI_DEV_FB_USED", 1024)).metrics  # an OTLP sender's int, in MiB
    assert (metric.name, metric.unit, metric.kind) == ("hw.gpu.memory.usage", "By", "sum")
    assert metric.points[0].value == 1024.0 * 1024 * 1024


def test_the_energy_counter_stays_a_monotonic_sum_in_joules():
    (metric,) = normalize(dcgm("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 123456.0, "sum")).metrics
    assert (metric.name, metric.unit, metric.kind, metric.monotonic) == ("hw.energy", "J", "sum", True)
    assert metric.points[0].value == pytest.approx(123.456)


@pytest.mark.parametrize("field", ["DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"])
def test_the_throttle_bitmask_becomes_one_series_per_reason(field):
    mask = (1 << CLOCK_EVENT_REASONS.index("power_cap")) | (1 << CLOCK_EVENT_REASONS.index("hw_thermal"))
    batch = normalize(dcgm(field, float(mask)))
    assert {m.name for m in batch.metrics} == {"hw.gpu.clock_event.active"}
    active = {m.points[0].attributes["hw.gpu.clock_event.reason"]: m.points[0].value for m in batch.metrics}
    assert active == {reason: int(reason in ("power_cap", "hw_thermal")) for reason in CLOCK_EVENT_REASONS}
    assert all(m.points[0].attributes["hw.id"] == "GPU-8f3c" for m in batch.metrics)


def test_unknown_dcgm_fields_and_our_own_series_pass_untouched():
    unknown = dcgm("DCGM_FI_DEV_NEW_FIELD_FROM_A_LATER_RELEASE", 7.0)
    ours = Metric("hw.gpu.utilization", [Point({"hw.id": "GPU-1", "gpu": "keep"}, 0.5)])
    batch = normalize(unknown, ours)
    assert batch.metrics[0] == dcgm("DCGM_FI_DEV_NEW_FIELD_FROM_A_LATER_RELEASE", 7.0)
    assert batch.metrics[1] == Metric("hw.gpu.utilization", [Point({"hw.id": "GPU-1", "gpu": "keep"}, 0.5)])
    assert batch.resource == {}


def test_node_exporter_cpu_and_the_sources_of_derived_series():
    cpu = Metric("node_cpu_seconds_total", [Point({"cpu": "3", "mode": "user"}, 12.5)], "sum", True)
    available = Metric("node_memory_MemAvailable_bytes", [Point({}, 5e9)])  # used = total - available: service's
    batch = normalize(cpu, available, scope="prometheusreceiver")
    assert batch.metrics[0].name == "system.cpu.time"
    assert batch.metrics[0].points[0].attributes == {"cpu": 3, "state": "user"}
    assert batch.metrics[1] == Metric("node_memory_MemAvailable_bytes", [Point({}, 5e9)])


def test_hostmetrics_attributes_only_where_their_scope_says_hostmetrics():
    attrs = {"device": "/dev/nvme0n1p1", "mode": "rw", "mountpoint": "/", "type": "ext4", "state": "used"}
    usage = Metric("system.filesystem.usage", [Point(dict(attrs), 1e9)], "sum")
    scope = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/hostmetricsreceiver/internal/fs"
    (metric,) = normalize(usage, scope=scope).metrics
    assert metric.points[0].attributes == {
        "system.filesystem.mountpoint": "/",
        "system.filesystem.type": "ext4",
        "system.filesystem.state": "used",
    }
    (ours,) = normalize(Metric("system.filesystem.usage", [Point(dict(attrs), 1e9)], "sum"), scope="ours").metrics
    assert ours.points[0].attributes == attrs


def _to_request(batch: Batch):
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

    request = metrics_service_pb2.ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    for key, value in batch.resource.items():
        rm.resource.attributes.add(key=key).value.string_value = value
    sm = rm.scope_metrics.add()
    sm.scope.name = batch.scope
    for metric in batch.metrics:
        m = sm.metrics.add(name=metric.name, unit=metric.unit)
        data = m.sum if metric.kind == "sum" else m.gauge
        if metric.kind == "sum":
            m.sum.is_monotonic, m.sum.aggregation_temporality = metric.monotonic, 2
        for point in metric.points:
            p = data.data_points.add(time_unix_nano=1)
            for key, value in point.attributes.items():
                p.attributes.add(key=key).value.string_value = value
            if isinstance(point.value, int):
                p.as_int = point.value
            else:
                p.as_double = point.value
    return request


def _from_request(request) -> tuple[dict[str, Any], list[tuple]]:
    def plain(kvs) -> tuple:
        return tuple(sorted((kv.key, getattr(kv.value, kv.value.WhichOneof("value"))) for kv in kvs))

    rows = []
    (rm,) = request.resource_metrics
    for sm in rm.scope_metrics:
        for m in sm.metrics:
            kind = m.WhichOneof("data")
            for p in getattr(m, kind).data_points:
                value = p.as_int if p.WhichOneof("value") == "as_int" else round(p.as_double, 9)
                rows.append((m.name, m.unit, kind, plain(p.attributes), value))
    return dict(plain(rm.resource.attributes)), sorted(rows)


def _rows(batch: Batch) -> tuple[dict[str, Any], list[tuple]]:
    rows = [
        (
            m.name,
            m.unit,
            m.kind,
            tuple(sorted(p.attributes.items())),
            p.value if isinstance(p.value, int) else round(p.value, 9),
        )
        for m in batch.metrics
        for p in m.points
    ]
    return batch.resource, sorted(rows)


def _sample(producer: Producer) -> Batch:
    """One series of every edge translation of a producer, as its exporter labels it."""
    labels = {
        Producer.DCGM_EXPORTER: DCGM_LABELS,
        Producer.NODE_EXPORTER: {
            "cpu": "2",
            "mode": "iowait",
            "device": "eth0",
            "mountpoint": "/data",
            "fstype": "xfs",
        },
        Producer.OPENLIT: {"gpu.parent.uuid": "GPU-parent", "gpu_index": "0"},
    }[producer]
    metrics = []
    for t in edge_translations():
        if t.producer is producer:
            counter = REGISTRY.metric(t.target).instrument is Instrument.COUNTER
            for name in arriving_names(t):
                metrics.append(Metric(name, [Point(dict(labels), 68.0)], "sum" if counter else "gauge", counter))
    return Batch(metrics, {}, {Producer.OPENLIT: "openlit.otel-gpu-collector"}.get(producer, "prometheusreceiver"))


@pytest.mark.parametrize("producer", [Producer.DCGM_EXPORTER, Producer.NODE_EXPORTER, Producer.OPENLIT])
def test_the_edge_gives_what_the_rca_services_processor_gives(producer):
    """Every translation the agent does, against factorylens.processors.normalize_metrics on the same series."""
    from factorylens.processors import normalize_metrics

    request = _to_request(_sample(producer))
    normalize_metrics(request)
    edge = run(_statements("transform/normalize"), _sample(producer))
    assert _rows(edge) == _from_request(request)
    assert {t.source for t in METRIC_TRANSLATIONS if t.producer is producer} - {
        t.source for t in edge_translations()
    } <= {"node_memory_MemAvailable_bytes", "node_filesystem_free_bytes"}  # left to the service: derived


def test_our_scraped_metrics_come_back_under_our_names():
    spec = REGISTRY.metric("hw.gpu.utilization")
    memory = REGISTRY.metric("hw.gpu.memory.usage")
    scraped = Batch(
        [
            Metric(spec.prometheus_name, [Point({"hw_id": "GPU-1", "gpu_index": "0", "hw_gpu_task": "general"}, 0.5)]),
            Metric(memory.prometheus_name, [Point({"hw_id": "GPU-1"}, 1e9)]),
        ],
        {"service.name": "factorylens-gpu-receiver", "host_name": "gpu-node-7", "factorylens_simulated": "true"},
        "prometheusreceiver",
    )
    batch = run(_statements("transform/prometheus_names"), scraped)
    util, mem = batch.metrics
    assert (util.name, util.unit, util.kind) == ("hw.gpu.utilization", "1", "gauge")
    assert util.points[0].attributes == {"hw.id": "GPU-1", "gpu.index": 0, "hw.gpu.task": "general"}
    assert (mem.name, mem.unit, mem.kind, mem.monotonic) == ("hw.gpu.memory.usage", "By", "sum", False)
    assert batch.resource == {
        "service.name": "factorylens-gpu-receiver",
        "host.name": "gpu-node-7",
        "factorylens.simulated": True,
    }


@pytest.mark.parametrize(
    ("resource", "want"),
    [
        ({"server.address": "10.0.8.2", "server.port": "8000"}, {"server.address": "10.0.8.2", "server.port": 8000}),
        ({"server.port": "8000"}, {}),  # a loopback target: the receiver sets no address, so no port either
        ({"server.address": "10.0.8.2", "server.port": ""}, {"server.address": "10.0.8.2"}),  # no port in the target
    ],
)
def test_genai_metrics_get_the_targets_address_at_the_edge_as_in_the_service(resource, want):
    """The agent adds server.address and server.port to the GenAI metrics as the service's processor does, and only
    to them."""
    from factorylens.processors import normalize_metrics

    labels = {"model_name": "m", "engine": "0"}
    metrics = [
        Metric("vllm:time_to_first_token_seconds", [Point(dict(labels), 1.0)]),
        Metric("vllm:num_requests_running", [Point(dict(labels), 3.0)]),
    ]
    edge = normalize(*metrics, resource=resource)
    ttft, running = edge.metrics
    assert ttft.name == "gen_ai.server.time_to_first_token" and running.name == "factorylens.inference.requests.running"
    assert {k: v for k, v in ttft.points[0].attributes.items() if k.startswith("server.")} == want
    assert not any(k.startswith("server.") for k in running.points[0].attributes)
    # the service, on the same series (the histogram as a histogram)
    request = _to_request(Batch([Metric("vllm:num_requests_running", [Point(dict(labels), 3.0)])], resource, "x"))
    sm = request.resource_metrics[0].scope_metrics[0]
    point = sm.metrics.add(name="vllm:time_to_first_token_seconds").histogram.data_points.add(time_unix_nano=1)
    for key, value in labels.items():
        point.attributes.add(key=key).value.string_value = value
    normalize_metrics(request)
    [served] = [m for m in sm.metrics if m.name == "gen_ai.server.time_to_first_token"]
    got = {
        kv.key: getattr(kv.value, kv.value.WhichOneof("value"))
        for kv in served.histogram.data_points[0].attributes
        if kv.key.startswith("server.")
    }
    assert got == want


def test_the_agent_scrapes_annotated_llm_servers_into_the_normalized_pipeline():
    """A vLLM/SGLang/TGI/Triton pod annotated with its metrics port is scraped on its node and its series go
    through transform/normalize (the GenAI names), like dcgm-exporter's."""
    config = load(OTEL_CONFIG / "agent.yaml")
    job = config["receivers"]["prometheus/serving"]["config"]["scrape_configs"][0]
    keep, address = job["relabel_configs"][:2]
    assert keep["action"] == "keep" and keep["regex"] == ".+"
    assert keep["source_labels"] == ["__meta_kubernetes_pod_annotation_factorylens_io_serving_metrics_port"]
    assert address["target_label"] == "__address__" and address["replacement"] == "$$1:$$2"
    assert job["kubernetes_sd_configs"][0]["selectors"][0]["field"] == "spec.nodeName=${env:K8S_NODE_NAME}"
    pipeline = config["service"]["pipelines"]["metrics"]
    assert "prometheus/serving" in pipeline["receivers"] and "transform/normalize" in pipeline["processors"]
