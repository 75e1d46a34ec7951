"""The dcgm-exporter / node-exporter fixtures and the prometheus-receiver emulation they go through."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client.parser import text_string_to_metric_families

from tests.collector.prometheus_receiver import (
    FIXTURES_DIR,
    RECEIVER_VERSION,
    SCOPE_NAME,
    SCRAPE_METRIC_NAMES,
    exposition_to_otlp,
    read_fixture,
    scrape_fixture,
)

T = 1_767_225_600_123_456_789  # scrape time, ns (the receiver keeps milliseconds)
T_MS_NS = T // 1_000_000 * 1_000_000
DCGM = "dcgm/dcgm-exporter.prom"
DCGM_LEGACY = "dcgm/dcgm-exporter-4.8.2-legacy.prom"
NODE = "node-exporter/node-exporter.prom"

DCGM_FIELDS = {
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS": "gauge",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": "counter",
    "DCGM_FI_DEV_DEC_UTIL": "gauge",
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL": "counter",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": "counter",
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL": "counter",
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": "counter",
    "DCGM_FI_DEV_ENC_UTIL": "gauge",
    "DCGM_FI_DEV_FB_FREE": "gauge",
    "DCGM_FI_DEV_FB_RESERVED": "gauge",
    "DCGM_FI_DEV_FB_USED": "gauge",
    "DCGM_FI_DEV_GPU_TEMP": "gauge",
    "DCGM_FI_DEV_GPU_UTIL": "gauge",
    "DCGM_FI_DEV_MEMORY_TEMP": "gauge",
    "DCGM_FI_DEV_MEM_CLOCK": "gauge",
    "DCGM_FI_DEV_MEM_COPY_UTIL": "gauge",
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": "gauge",
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL": "counter",
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL": "counter",
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL": "counter",
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL": "counter",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "counter",
    "DCGM_FI_DEV_POWER_USAGE": "gauge",
    "DCGM_FI_DEV_POWER_VIOLATION": "counter",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": "gauge",
    "DCGM_FI_DEV_SM_CLOCK": "gauge",
    "DCGM_FI_DEV_THERMAL_VIOLATION": "counter",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "counter",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": "counter",
    "DCGM_FI_DEV_VGPU_LICENSE_STATUS": "gauge",
    "DCGM_FI_DEV_XID_ERRORS": "gauge",
    "DCGM_FI_PROF_DRAM_ACTIVE": "gauge",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "gauge",
    "DCGM_FI_PROF_PCIE_RX_BYTES": "gauge",
    "DCGM_FI_PROF_PCIE_TX_BYTES": "gauge",
    "DCGM_FI_PROF_PIPE_FP16_ACTIVE": "gauge",
    "DCGM_FI_PROF_PIPE_FP32_ACTIVE": "gauge",
    "DCGM_FI_PROF_PIPE_FP64_ACTIVE": "gauge",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "gauge",
    "DCGM_FI_PROF_SM_ACTIVE": "gauge",
    "DCGM_FI_PROF_SM_OCCUPANCY": "gauge",
}
NODE_FAMILIES = {
    "node_cpu_seconds_total": "counter",
    "node_disk_read_bytes_total": "counter",
    "node_disk_read_time_seconds_total": "counter",
    "node_disk_reads_completed_total": "counter",
    "node_disk_write_time_seconds_total": "counter",
    "node_disk_writes_completed_total": "counter",
    "node_disk_written_bytes_total": "counter",
    "node_filesystem_avail_bytes": "gauge",
    "node_filesystem_free_bytes": "gauge",
    "node_filesystem_size_bytes": "gauge",
    "node_memory_Buffers_bytes": "gauge",
    "node_memory_Cached_bytes": "gauge",
    "node_memory_MemAvailable_bytes": "gauge",
    "node_memory_MemFree_bytes": "gauge",
    "node_memory_MemTotal_bytes": "gauge",
    "node_network_receive_bytes_total": "counter",
    "node_network_receive_drop_total": "counter",
    "node_network_receive_errs_total": "counter",
    "node_network_receive_packets_total": "counter",
    "node_network_transmit_bytes_total": "counter",
    "node_network_transmit_drop_total": "counter",
    "node_network_transmit_errs_total": "counter",
    "node_network_transmit_packets_total": "counter",
}
GPU_BASE = {
    "DCGM_FI_DRIVER_VERSION": "580.95.05",
    "hostname": "gpu-node-a07",
    "modelName": "NVIDIA H100 80GB HBM3",
}
GPU0 = GPU_BASE | {
    "gpu": "0",
    "UUID": "GPU-8b2281de-6d3c-22ed-0ec8-d3b864870b8b",
    "pci_bus_id": "00000000:8D:00.0",
    "device": "nvidia0",
    "container": "trainer",
    "namespace": "ml-training",
    "pod": "llama3-70b-pretrain-worker-0",
}
GPU1 = GPU_BASE | {
    "gpu": "1",
    "UUID": "GPU-15338f3e-5fd9-962d-921a-979b820520f0",
    "pci_bus_id": "00000000:91:00.0",
    "device": "nvidia1",
}


def _attrs(kvs: Iterable[KeyValue]) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in kvs}


def _metrics(request: ExportMetricsServiceRequest) -> dict[str, metrics_pb2.Metric]:
    (resource_metrics,) = request.resource_metrics
    (scope_metrics,) = resource_metrics.scope_metrics
    return {m.name: m for m in scope_metrics.metrics}


def _points(metric: metrics_pb2.Metric) -> list[metrics_pb2.NumberDataPoint]:
    kind = metric.WhichOneof("data")
    assert kind in ("gauge", "sum"), kind
    return list(getattr(metric, kind).data_points)


def _by_gpu(metric: metrics_pb2.Metric) -> dict[str, metrics_pb2.NumberDataPoint]:
    return {_attrs(p.attributes)["gpu"]: p for p in _points(metric)}


def _dcgm() -> ExportMetricsServiceRequest:
    return scrape_fixture(DCGM, job="dcgm-exporter", instance="gpu-node-a07:9400", timestamp_ns=T)


def _node() -> ExportMetricsServiceRequest:
    return scrape_fixture(NODE, job="node-exporter", instance="gpu-node-a07:9100", timestamp_ns=T)


def _type_lines(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M))


# --- the fixtures themselves ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "expected"), [(DCGM, DCGM_FIELDS), (NODE, NODE_FAMILIES)], ids=["dcgm", "node-exporter"]
)
def test_fixtures_parse_and_hold_the_documented_families(fixture: str, expected: dict[str, str]) -> None:
    text = read_fixture(fixture)
    families = list(text_string_to_metric_families(text))
    assert _type_lines(text) == expected
    assert len(families) == len(expected)
    assert all(len(f.samples) >= 2 or f.name.startswith("node_memory_") for f in families)
    assert all(f.documentation for f in families)


def test_fixtures_are_modest() -> None:
    for path in list((FIXTURES_DIR / "dcgm").iterdir()) + list((FIXTURES_DIR / "node-exporter").iterdir()):
        assert path.stat().st_size < 40_000, path


def test_dcgm_fixture_is_laid_out_like_the_4_8_3_renderer() -> None:
    """rendermetrics.Render @ 7ad58324: families sorted by name, label order gpu, UUID, pci_bus_id, device,
    modelName, hostname, then the label-type fields, then the pod attributes; one sample per GPU."""
    lines = read_fixture(DCGM).splitlines()
    helps = [line.split()[2] for line in lines if line.startswith("# HELP ")]
    assert helps == sorted(helps) == sorted(DCGM_FIELDS)
    sample = re.compile(
        r'^(?P<name>DCGM_FI_\w+)\{gpu="(?P<gpu>[01])",UUID="GPU-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}",'
        r'pci_bus_id="[0-9A-F]{8}:[0-9A-F]{2}:00\.0",device="nvidia(?P=gpu)",modelName="NVIDIA H100 80GB HBM3",'
        r'hostname="gpu-node-a07",DCGM_FI_DRIVER_VERSION="580\.95\.05"'
        r'(?P<k8s>,container="trainer",namespace="ml-training",pod="llama3-70b-pretrain-worker-0")?\} (?P<value>\S+)$'
    )
    seen: dict[str, list[tuple[str, bool]]] = {}
    for line in lines:
        if line.startswith("#"):
            continue
        match = sample.match(line)
        assert match, line
        seen.setdefault(match["name"], []).append((match["gpu"], match["k8s"] is not None))
        assert not match["value"].endswith(".000000"), "4.8.3 formats values with strconv 'g', not %f"
    assert set(seen) == set(DCGM_FIELDS)
    # the pod is attributed to GPU 0 only, and samples are ordered by label signature (UUID GPU-15… < GPU-8b…)
    assert all(rows == [("1", False), ("0", True)] for rows in seen.values())


def test_fixture_counters_csv_is_what_the_fixture_was_rendered_from() -> None:
    def rows(name: str) -> list[list[str]]:
        with (FIXTURES_DIR / "dcgm" / name).open(encoding="utf-8") as f:
            lines = [line for line in f if line.strip() and not line.startswith("#")]
        return [[cell.strip() for cell in row] for row in csv.reader(lines)]

    text = read_fixture(DCGM)
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, flags=re.M))
    fixture_rows = rows("fixture-counters.csv")
    metric_rows = {name: (typ, help_text) for name, typ, help_text in fixture_rows if typ != "label"}
    assert metric_rows == {name: (typ, helps[name]) for name, typ in _type_lines(text).items()}
    label_rows = [name for name, typ, _ in fixture_rows if typ == "label"]
    assert label_rows == ["DCGM_FI_DRIVER_VERSION"]
    # the upstream default set is a subset of what the fixture enables
    assert {r[0] for r in rows("default-counters.csv")} <= {r[0] for r in fixture_rows}


def test_legacy_fixture_uses_the_capitalised_hostname_and_raw_dcgm_values() -> None:
    request = scrape_fixture(DCGM_LEGACY, job="dcgm-exporter", instance="gpu-node-a07:9400", timestamp_ns=T)
    metrics = _metrics(request)
    power = _by_gpu(metrics["DCGM_FI_DEV_POWER_USAGE"])
    assert power["0"].as_double == pytest.approx(689.317)
    assert "689.317000" in read_fixture(DCGM_LEGACY)
    for name in metrics.keys() - SCRAPE_METRIC_NAMES:
        for point in _points(metrics[name]):
            attributes = _attrs(point.attributes)
            assert attributes["Hostname"] == "gpu-node-a07"
            assert "hostname" not in attributes


# --- the receiver emulation on the fixtures ---------------------------------------------------------------------


def test_resource_and_scope_are_the_receivers() -> None:
    (resource_metrics,) = _dcgm().resource_metrics
    assert [(kv.key, kv.value.string_value) for kv in resource_metrics.resource.attributes] == [
        ("service.name", "dcgm-exporter"),
        ("server.address", "gpu-node-a07"),
        ("service.instance.id", "gpu-node-a07:9400"),
        ("server.port", "9400"),
        ("url.scheme", "http"),
    ]
    (scope_metrics,) = resource_metrics.scope_metrics
    assert scope_metrics.scope.name == SCOPE_NAME
    assert scope_metrics.scope.name.endswith("/receiver/prometheusreceiver")
    assert scope_metrics.scope.version == RECEIVER_VERSION


def test_every_dcgm_sample_becomes_one_data_point_of_the_right_type() -> None:
    text = read_fixture(DCGM)
    n_samples = sum(len(f.samples) for f in text_string_to_metric_families(text))
    metrics = _metrics(_dcgm())
    assert set(metrics) == set(DCGM_FIELDS) | SCRAPE_METRIC_NAMES
    assert sum(len(_points(metrics[name])) for name in DCGM_FIELDS) == n_samples == 2 * len(DCGM_FIELDS)
    for name, prom_type in DCGM_FIELDS.items():
        metric = metrics[name]
        assert _attrs(metric.metadata) == {"prometheus.type": prom_type}
        assert metric.unit == ""
        assert metric.description
        if prom_type == "counter":
            assert metric.WhichOneof("data") == "sum", name
            assert metric.sum.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
            assert metric.sum.is_monotonic
        else:
            assert metric.WhichOneof("data") == "gauge", name
        for point in _points(metric):
            assert point.WhichOneof("value") == "as_double"
            assert point.time_unix_nano == T_MS_NS
            assert point.start_time_unix_nano == 0


def test_dcgm_names_and_descriptions_pass_through_unchanged() -> None:
    metrics = _metrics(_dcgm())
    # a counter exposed without _total keeps its name (prometheus_client alone would report ..._total)
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total" not in metrics
    energy = metrics["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"]
    assert energy.description == "Total energy consumption since boot (in mJ)."
    assert _by_gpu(energy)["0"].as_double == 103679425610.0
    # ..._TOTAL in capitals is not a suffix the receiver knows, and this one is a gauge in 4.8.3
    assert metrics["DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"].WhichOneof("data") == "gauge"


def test_dcgm_labels_become_attributes_and_only_gpu0_carries_the_pod() -> None:
    for name, metric in _metrics(_dcgm()).items():
        if name in SCRAPE_METRIC_NAMES:
            assert [_attrs(p.attributes) for p in _points(metric)] == [{}]
            continue
        by_gpu = _by_gpu(metric)
        assert _attrs(by_gpu["0"].attributes) == GPU0
        assert _attrs(by_gpu["1"].attributes) == GPU1
        keys = [kv.key for kv in by_gpu["0"].attributes]
        assert keys == sorted(keys)  # Prometheus label order (byte order: capitals first)


def test_dcgm_values_describe_one_busy_throttled_gpu_and_one_idle_gpu() -> None:
    metrics = _metrics(_dcgm())

    def value(name: str, gpu: str) -> float:
        return _by_gpu(metrics[name])[gpu].as_double

    assert value("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "0") == 4.0  # SW power cap
    assert value("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "1") == 0.0
    for gpu in "01":
        fb = sum(value(f"DCGM_FI_DEV_FB_{part}", gpu) for part in ("FREE", "USED", "RESERVED"))
        assert fb == 81559.0  # H100 80GB HBM3 framebuffer, MiB
    assert value("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "0") > 0
    assert value("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "0") == 0
    assert 0 < value("DCGM_FI_PROF_SM_ACTIVE", "0") <= 1
    assert value("DCGM_FI_PROF_SM_ACTIVE", "1") == 0
    assert value("DCGM_FI_DEV_POWER_VIOLATION", "0") > 0


def test_node_exporter_keeps_total_and_drops_empty_labels() -> None:
    metrics = _metrics(_node())
    assert set(metrics) == set(NODE_FAMILIES) | SCRAPE_METRIC_NAMES
    for name, prom_type in NODE_FAMILIES.items():
        assert metrics[name].WhichOneof("data") == ("sum" if prom_type == "counter" else "gauge"), name
    cpu = _points(metrics["node_cpu_seconds_total"])
    assert len(cpu) == 16
    assert {tuple(_attrs(p.attributes)) for p in cpu} == {("cpu", "mode")}
    idle0 = next(p for p in cpu if _attrs(p.attributes) == {"cpu": "0", "mode": "idle"})
    assert idle0.as_double == 10870.69
    # device_error="" is exposed by node_exporter and omitted by the receiver
    assert "device_error" in read_fixture(NODE)
    for point in _points(metrics["node_filesystem_avail_bytes"]):
        assert set(_attrs(point.attributes)) == {"device", "fstype", "mountpoint"}
    memory = {name: _points(metrics[name])[0].as_double for name in NODE_FAMILIES if name.startswith("node_memory_")}
    assert memory["node_memory_MemFree_bytes"] < memory["node_memory_MemAvailable_bytes"]
    assert memory["node_memory_MemAvailable_bytes"] < memory["node_memory_MemTotal_bytes"]
    assert {_attrs(p.attributes)["device"] for p in _points(metrics["node_network_receive_bytes_total"])} == {
        "eth0",
        "wlan0",
    }


def test_start_time_is_left_unset_unless_a_start_time_processor_is_emulated() -> None:
    start = T - 3_600 * 10**9
    metrics = _metrics(
        scrape_fixture(NODE, job="node-exporter", instance="gpu-node-a07:9100", timestamp_ns=T, start_time_ns=start)
    )
    for name, prom_type in NODE_FAMILIES.items():
        for point in _points(metrics[name]):
            assert point.start_time_unix_nano == (start if prom_type == "counter" else 0)
            assert point.time_unix_nano == T_MS_NS


def test_scrape_loop_series_close_the_scope() -> None:
    text = read_fixture(NODE)
    n_samples = sum(len(f.samples) for f in text_string_to_metric_families(text))
    request = exposition_to_otlp(
        text, job="node-exporter", instance="gpu-node-a07:9100", timestamp_ns=T, scrape_duration_s=0.125
    )
    scope_metrics = request.resource_metrics[0].scope_metrics[0].metrics
    tail = scope_metrics[-5:]
    assert [m.name for m in tail] == [
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    ]
    assert [m.gauge.data_points[0].as_double for m in tail] == [1.0, 0.125] + [float(n_samples)] * 3
    assert [m.unit for m in tail] == ["", "s", "", "", ""]
    assert all(_attrs(m.metadata) == {"prometheus.type": "gauge"} for m in tail)
    bare = exposition_to_otlp(
        text, job="n", instance="h:1", timestamp_ns=T, include_scrape_metrics=False
    ).resource_metrics[0]
    assert not {m.name for m in bare.scope_metrics[0].metrics} & SCRAPE_METRIC_NAMES


# --- receiver rules on hand-written expositions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("instance", "address", "port"),
    [
        ("10.1.2.3:9400", "10.1.2.3", "9400"),
        ("localhost:9400", None, "9400"),
        ("127.0.0.1:9400", None, "9400"),
        ("[::1]:9400", None, "9400"),
        ("[fd00::7]:9400", "fd00::7", "9400"),
        ("0.0.0.0:9400", None, "9400"),
        ("gpu-node-a07", "gpu-node-a07", ""),
    ],
)
def test_server_address_only_for_a_discernible_host(instance: str, address: str | None, port: str) -> None:
    request = exposition_to_otlp("x 1\n", job="j", instance=instance, timestamp_ns=T, include_scrape_metrics=False)
    resource = _attrs(request.resource_metrics[0].resource.attributes)
    assert resource.get("server.address") == address
    assert resource["server.port"] == port
    assert resource["service.instance.id"] == instance


def test_kubernetes_discovery_labels_become_resource_attributes() -> None:
    request = exposition_to_otlp(
        "x 1\n",
        job="dcgm-exporter",
        instance="10.1.2.3:9400",
        timestamp_ns=T,
        discovered_labels={
            "__scheme__": "https",
            "__meta_kubernetes_pod_name": "nvidia-dcgm-exporter-7xk2p",
            "__meta_kubernetes_namespace": "gpu-operator",
            "__meta_kubernetes_pod_node_name": "gpu-node-a07",
            "__meta_kubernetes_pod_controller_kind": "DaemonSet",
            "__meta_kubernetes_pod_controller_name": "nvidia-dcgm-exporter",
        },
    )
    resource = _attrs(request.resource_metrics[0].resource.attributes)
    assert resource == {
        "service.name": "dcgm-exporter",
        "server.address": "10.1.2.3",
        "service.instance.id": "10.1.2.3:9400",
        "server.port": "9400",
        "url.scheme": "https",
        "k8s.pod.name": "nvidia-dcgm-exporter-7xk2p",
        "k8s.namespace.name": "gpu-operator",
        "k8s.node.name": "gpu-node-a07",
        "k8s.daemonset.name": "nvidia-dcgm-exporter",
    }


def test_counter_names_are_kept_as_exposed() -> None:
    text = (
        "# HELP plain_counter without suffix\n# TYPE plain_counter counter\nplain_counter 3\n"
        "# HELP with_total_total with suffix\n# TYPE with_total_total counter\nwith_total_total 4\n"
    )
    # prometheus_client renames the first sample; the receiver does not
    parsed = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert parsed == {"plain_counter_total", "with_total_total"}
    metrics = _metrics(exposition_to_otlp(text, job="j", instance="h:1", timestamp_ns=T))
    assert {"plain_counter", "with_total_total"} <= set(metrics)
    assert metrics["plain_counter"].description == "without suffix"
    assert metrics["with_total_total"].sum.data_points[0].as_double == 4.0


def test_untyped_and_help_only_series_become_gauges_of_unknown_type() -> None:
    text = '# TYPE typed_untyped untyped\ntyped_untyped{a="1"} 3\nbare 2\n# HELP help_only some help\nhelp_only 1\n'
    metrics = _metrics(exposition_to_otlp(text, job="j", instance="h:1", timestamp_ns=T))
    for name in ("typed_untyped", "bare", "help_only"):
        assert metrics[name].WhichOneof("data") == "gauge"
        assert _attrs(metrics[name].metadata) == {"prometheus.type": "unknown"}
    assert metrics["help_only"].description == "some help"
    assert metrics["bare"].description == ""
    assert _attrs(metrics["typed_untyped"].gauge.data_points[0].attributes) == {"a": "1"}


def test_histogram_buckets_are_decumulated_and_inf_bound_dropped() -> None:
    text = (
        "# HELP req_seconds Request latency.\n# TYPE req_seconds histogram\n"
        'req_seconds_bucket{path="/a",le="0.1"} 1\n'
        'req_seconds_bucket{path="/a",le="0.5"} 3\n'
        'req_seconds_bucket{path="/a",le="+Inf"} 4\n'
        'req_seconds_sum{path="/a"} 1.7\n'
        'req_seconds_count{path="/a"} 4\n'
        'req_seconds_bucket{path="/b",le="0.1"} 0\n'
        'req_seconds_bucket{path="/b",le="0.5"} 0\n'
        'req_seconds_bucket{path="/b",le="+Inf"} 2\n'
        'req_seconds_sum{path="/b"} 3\n'
        'req_seconds_count{path="/b"} 2\n'
    )
    metrics = _metrics(exposition_to_otlp(text, job="j", instance="h:1", timestamp_ns=T, start_time_ns=5))
    histogram = metrics["req_seconds"]
    assert histogram.WhichOneof("data") == "histogram"
    assert histogram.histogram.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    assert _attrs(histogram.metadata) == {"prometheus.type": "histogram"}
    a, b = histogram.histogram.data_points
    assert _attrs(a.attributes) == {"path": "/a"}
    assert list(a.explicit_bounds) == [0.1, 0.5]
    assert list(a.bucket_counts) == [1, 2, 1]
    assert (a.count, a.sum, a.start_time_unix_nano, a.time_unix_nano) == (4, 1.7, 5, T_MS_NS)
    assert list(b.bucket_counts) == [0, 0, 2]
    assert not math.isinf(max(b.explicit_bounds))


def test_summary_keeps_sorted_quantiles_sum_and_count() -> None:
    text = (
        "# HELP rpc_seconds RPC latency.\n# TYPE rpc_seconds summary\n"
        'rpc_seconds{quantile="0.99"} 0.9\nrpc_seconds{quantile="0.5"} 0.2\n'
        "rpc_seconds_sum 12.5\nrpc_seconds_count 40\n"
    )
    summary = _metrics(exposition_to_otlp(text, job="j", instance="h:1", timestamp_ns=T))["rpc_seconds"]
    (point,) = summary.summary.data_points
    assert [(q.quantile, q.value) for q in point.quantile_values] == [(0.5, 0.2), (0.99, 0.9)]
    assert (point.sum, point.count, point.start_time_unix_nano) == (12.5, 40, 0)
    assert list(point.attributes) == []


def test_scrape_loop_label_and_timestamp_rules() -> None:
    text = 'm{job="trainer",instance="i-1",empty="",zone="a"} 1\nm{zone="b"} 2 1767225000000\n'
    (first, second) = _metrics(exposition_to_otlp(text, job="j", instance="h:1", timestamp_ns=T))["m"].gauge.data_points
    assert _attrs(first.attributes) == {"exported_instance": "i-1", "exported_job": "trainer", "zone": "a"}
    assert first.time_unix_nano == T_MS_NS  # milliseconds, as Prometheus stores them
    assert second.time_unix_nano == 1_767_225_000_000 * 1_000_000  # honor_timestamps
