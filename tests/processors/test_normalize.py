"""normalize: dcgm-exporter, node-exporter, hostmetrics and OpenLIT series under our names and units,
from the registry's tables; our own traffic untouched."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from factorylens.processors import normalize_metrics
from factorylens.processors._normalize import string_attributes
from factorylens.registry import (
    CLOCK_EVENT_REASONS,
    METRIC_TRANSLATIONS,
    REGISTRY,
    Instrument,
    Producer,
)

PROMETHEUS_SCOPE = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver"
HOSTMETRICS_SCOPE = (
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/hostmetricsreceiver/internal/scraper/"
    "filesystemscraper"
)
DCGM_LABELS = {
    "gpu": "3",
    "UUID": "GPU-5fa3c8a0",
    "pci_bus_id": "00000000:3B:00.0",
    "device": "nvidia3",
    "modelName": "NVIDIA H100 80GB HBM3",
    "Hostname": "gpu-node-7",
    "DCGM_FI_DRIVER_VERSION": "550.54.15",
}


def request_with(
    metrics: list[tuple[str, float, Mapping[str, str]]], *, scope: str = PROMETHEUS_SCOPE, kind: str = "gauge"
) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.add(key="service.name").value.string_value = "dcgm-exporter"
    scope_metrics = resource_metrics.scope_metrics.add()
    scope_metrics.scope.name = scope
    for name, value, labels in metrics:
        metric = scope_metrics.metrics.add(name=name)
        data = getattr(metric, kind)
        if kind == "sum":
            data.is_monotonic = True
            data.aggregation_temporality = 2
        point = data.data_points.add(time_unix_nano=1_700_000_000 * 10**9, as_double=value)
        for key, text in labels.items():
            point.attributes.add(key=key).value.string_value = text
    return request


def points(request: ExportMetricsServiceRequest) -> list[tuple[str, str, str, dict[str, str], float]]:
    out = []
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                for p in getattr(metric, kind).data_points:
                    value = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                    out.append((metric.name, metric.unit, kind, string_attributes(p.attributes), value))
    return out


def resource(request: ExportMetricsServiceRequest) -> dict[str, str]:
    return string_attributes(request.resource_metrics[0].resource.attributes)


@pytest.mark.parametrize(
    "translation",
    [t for t in METRIC_TRANSLATIONS if t.producer is Producer.DCGM_EXPORTER and not t.bits],
    ids=lambda t: t.source,
)
def test_every_dcgm_field_gets_our_name_unit_scale_and_identity(translation: Any) -> None:
    request = request_with([(translation.source, 50.0, DCGM_LABELS)])
    stats = normalize_metrics(request)
    [(name, unit, kind, attributes, value)] = points(request)
    spec = REGISTRY.metric(translation.target)
    assert (name, unit) == (spec.name, spec.unit)
    assert value == pytest.approx(50.0 * translation.scale)
    assert kind == ("gauge" if spec.instrument is Instrument.GAUGE else "sum")
    assert attributes["hw.id"] == "GPU-5fa3c8a0"
    assert attributes["gpu.pci_address"] == "00000000:3B:00.0"
    assert attributes["hw.model"] == "NVIDIA H100 80GB HBM3"
    assert attributes["hw.driver_version"] == "550.54.15"
    assert attributes["hw.vendor"] == "nvidia" and attributes["hw.type"] == "gpu"
    assert {"UUID", "gpu", "device", "Hostname", "modelName", "pci_bus_id"}.isdisjoint(attributes)
    assert dict(translation.attributes).items() <= attributes.items()
    assert set(attributes) - {"hw.model", "hw.driver_version"} <= set(REGISTRY.allowed_attributes(spec))
    assert resource(request)["host.name"] == "gpu-node-7"
    assert stats.translated == 1 and not stats.unmapped


def test_gpu_index_is_an_integer_and_units_convert() -> None:
    request = request_with(
        [
            ("DCGM_FI_DEV_GPU_UTIL", 87, DCGM_LABELS),
            ("DCGM_FI_DEV_FB_USED", 1024, DCGM_LABELS),
            ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 5_000, DCGM_LABELS),
            ("DCGM_FI_DEV_SM_CLOCK", 1980, DCGM_LABELS),
        ]
    )
    normalize_metrics(request)
    index = request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].attributes
    assert [kv.value.int_value for kv in index if kv.key == "gpu.index"] == [3]
    values = {name: value for name, _, _, _, value in points(request)}
    assert values == pytest.approx(
        {"hw.gpu.utilization": 0.87, "hw.gpu.memory.usage": 1024 * 2**20, "hw.energy": 5.0, "hw.gpu.speed": 1.98e9}
    )


def test_the_throttle_bitmask_becomes_one_series_per_reason() -> None:
    # 0x41: gpu_idle (bit 0) and hw_thermal (bit 6)
    request = request_with([("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", 0x41, DCGM_LABELS)])
    normalize_metrics(request)
    active = {a["hw.gpu.clock_event.reason"]: v for name, _, _, a, v in points(request)}
    assert set(active) == set(CLOCK_EVENT_REASONS)
    assert {reason for reason, on in active.items() if on} == {"gpu_idle", "hw_thermal"}
    assert {name for name, *_ in points(request)} == {"hw.gpu.clock_event.active"}


def test_an_unknown_dcgm_field_passes_through_untouched_and_is_counted() -> None:
    request = request_with(
        [("DCGM_FI_DEV_VGPU_LICENSE_STATUS", 1, DCGM_LABELS), ("DCGM_FI_DEV_GPU_UTIL", 50, DCGM_LABELS)]
    )
    stats = normalize_metrics(request)
    assert stats.unmapped == {("dcgm-exporter", "DCGM_FI_DEV_VGPU_LICENSE_STATUS"): 1}
    name, unit, _, attributes, value = points(request)[0]
    assert (name, unit, attributes, value) == ("DCGM_FI_DEV_VGPU_LICENSE_STATUS", "", DCGM_LABELS, 1)


def test_our_own_traffic_is_left_byte_for_byte() -> None:
    ours = request_with(
        [
            ("hw.gpu.utilization", 0.5, {"hw.id": "GPU-1", "hw.gpu.task": "general"}),
            ("system.filesystem.usage", 10, {"system.filesystem.mountpoint": "/", "system.filesystem.state": "used"}),
            ("factorylens.train.step.duration", 0.2, {}),
        ],
        scope="factorylens.receivers.gpu",
    )
    before = ours.SerializeToString()
    stats = normalize_metrics(ours)
    assert ours.SerializeToString() == before
    assert stats.translated == 0 and not stats.unmapped


def test_normalizing_twice_changes_nothing_more() -> None:
    request = request_with(
        [(t.source, 7, DCGM_LABELS) for t in METRIC_TRANSLATIONS if t.producer.value == "dcgm-exporter"]
    )
    normalize_metrics(request)
    once = request.SerializeToString()
    normalize_metrics(request)
    assert request.SerializeToString() == once


def test_points_of_several_hosts_keep_their_host_on_the_point() -> None:
    other = {**DCGM_LABELS, "Hostname": "gpu-node-8", "UUID": "GPU-other"}
    request = request_with([("DCGM_FI_DEV_GPU_UTIL", 1, DCGM_LABELS), ("DCGM_FI_DEV_GPU_UTIL", 2, other)])
    normalize_metrics(request)
    assert "host.name" not in resource(request)
    assert {a["host.name"] for *_, a, _ in points(request)} == {"gpu-node-7", "gpu-node-8"}


def test_kubernetes_labels_become_k8s_attributes() -> None:
    labels = {**DCGM_LABELS, "pod": "trainer-0", "namespace": "ml", "container": "main"}
    request = request_with([("DCGM_FI_DEV_GPU_UTIL", 1, labels)])
    normalize_metrics(request)
    [(*_, attributes, _)] = points(request)
    assert (attributes["k8s.pod.name"], attributes["k8s.namespace.name"], attributes["k8s.container.name"]) == (
        "trainer-0",
        "ml",
        "main",
    )


def test_node_exporter_series_become_the_node_agents() -> None:
    fs = {"device": "/dev/nvme0n1p1", "fstype": "ext4", "mountpoint": "/data"}
    request = request_with(
        [
            ("node_cpu_seconds_total", 12.5, {"cpu": "1", "mode": "user"}),
            ("node_memory_MemTotal_bytes", 100, {}),
            ("node_memory_MemAvailable_bytes", 30, {}),
            ("node_memory_MemFree_bytes", 10, {}),
            ("node_filesystem_size_bytes", 1000, fs),
            ("node_filesystem_free_bytes", 400, fs),
            ("node_filesystem_avail_bytes", 350, fs),
            ("node_network_receive_bytes", 9, {"device": "eth0"}),  # `_total` trimmed by the receiver
            ("node_load1", 0.5, {}),
        ]
    )
    normalize_metrics(request)
    got = {(name, frozenset(a.items())): v for name, _, _, a, v in points(request)}
    assert got[("system.cpu.time", frozenset({("cpu", "1"), ("state", "user")}))] == 12.5
    assert got[("system.memory.usage", frozenset({("state", "used")}))] == 70
    assert got[("system.memory.usage", frozenset({("state", "free")}))] == 10  # MemFree, as psutil counts it
    mount = {("system.filesystem.mountpoint", "/data"), ("system.filesystem.type", "ext4")}
    assert got[("system.filesystem.usage", frozenset({*mount, ("system.filesystem.state", "free")}))] == 350
    assert got[("system.filesystem.usage", frozenset({*mount, ("system.filesystem.state", "used")}))] == 600
    assert got[("system.network.io", frozenset({("device", "eth0"), ("direction", "receive")}))] == 9
    assert got[("node_load1", frozenset())] == 0.5  # no name of ours: left alone, and not counted as a DCGM field


def test_hostmetrics_attributes_become_ours_only_on_its_scope() -> None:
    labels = {"device": "/dev/sda1", "mode": "rw", "mountpoint": "/", "type": "ext4", "state": "used"}
    request = request_with([("system.filesystem.usage", 5, labels)], scope=HOSTMETRICS_SCOPE, kind="sum")
    normalize_metrics(request)
    [(name, _, kind, attributes, _)] = points(request)
    assert (name, kind) == ("system.filesystem.usage", "sum")
    assert attributes == {
        "system.filesystem.mountpoint": "/",
        "system.filesystem.type": "ext4",
        "system.filesystem.state": "used",
    }
    cpu = request_with(
        [("system.cpu.time", 5, {"cpu": "cpu2", "state": "idle"})],
        scope=HOSTMETRICS_SCOPE.replace("filesystem", "cpu"),
    )
    normalize_metrics(cpu)
    point = cpu.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
    assert [(kv.key, kv.value.int_value) for kv in point.attributes if kv.key == "cpu"] == [("cpu", 2)]


def test_lower_case_dcgm_names_from_an_sdk_bridge_match_too() -> None:
    request = request_with([("dcgm_fi_dev_gpu_util", 40, DCGM_LABELS)])
    normalize_metrics(request)
    assert points(request)[0][0] == "hw.gpu.utilization"


def test_reshape_off_keeps_every_point_in_place() -> None:
    """What the rotel adapter can write back: no points added, no data type changed."""
    request = request_with(
        [
            ("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", 0x41, DCGM_LABELS),
            ("DCGM_FI_DEV_FB_USED", 1, DCGM_LABELS),
            ("DCGM_FI_DEV_GPU_UTIL", 50, DCGM_LABELS),
        ]
    )
    normalize_metrics(request, reshape=False)
    assert [(name, kind, value) for name, _, kind, _, value in points(request)] == [
        ("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "gauge", 0x41),
        ("DCGM_FI_DEV_FB_USED", "gauge", 1),  # a gauge we declare an up-down counter: for the service's pass
        ("hw.gpu.utilization", "gauge", 0.5),
    ]


def test_reshape_off_leaves_derived_sources_for_the_services_pass() -> None:
    """rotel renames what it can; the service's pass must still find node-exporter's total and free."""
    request = request_with([("node_memory_MemTotal_bytes", 100, {}), ("node_memory_MemAvailable_bytes", 30, {})])
    normalize_metrics(request, reshape=False)
    assert [name for name, *_ in points(request)] == ["node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes"]
    normalize_metrics(request)
    got = {a["state"]: v for name, _, _, a, v in points(request) if name == "system.memory.usage"}
    assert got == {"used": 70}


def test_an_out_of_range_integer_label_stays_a_string() -> None:
    labels = {**DCGM_LABELS, "gpu": "99999999999999999999"}
    request = request_with([("DCGM_FI_DEV_GPU_UTIL", 1, labels)])
    normalize_metrics(request)
    [(*_, attributes, _)] = points(request)
    assert attributes["gpu.index"] == "99999999999999999999"


def test_unknown_field_names_are_counted_under_a_bounded_number_of_names() -> None:
    from factorylens.processors import NormalizeStats
    from factorylens.processors._normalize import MAX_UNMAPPED_NAMES

    totals = NormalizeStats()
    for batch in range(3):
        request = request_with([(f"DCGM_FI_X{batch}_{i}", 1, {}) for i in range(60)])
        totals.merge(normalize_metrics(request))
    assert len(totals.unmapped) == MAX_UNMAPPED_NAMES + 1
    assert totals.unmapped[("dcgm-exporter", "other")] == 180 - MAX_UNMAPPED_NAMES


def test_the_docs_show_the_tables_the_code_uses() -> None:
    import subprocess
    import sys
    from pathlib import Path

    printed = subprocess.run(
        [sys.executable, "-m", "factorylens", "metrics", "--translations"], capture_output=True, text=True, check=True
    ).stdout
    page = (Path(__file__).resolve().parents[2] / "docs" / "processors.md").read_text()
    shown = page.split("<!-- translations: begin -->\n", 1)[1].split("<!-- translations: end -->", 1)[0]
    assert shown == printed, "docs/processors.md is stale: paste `factorylens metrics --translations`"
    for translation in METRIC_TRANSLATIONS:
        assert f"`{translation.source}`" in shown


_NAMES = [*sorted({t.source for t in METRIC_TRANSLATIONS}), "DCGM_FI_UNKNOWN", "node_memory_MemTotal_bytes", "x"]
_LABELS = ["UUID", "gpu", "hostname", "Hostname", "device", "cpu", "mode", "fstype", "mountpoint", "pod", "other"]


def _hostile_requests():
    from hypothesis import strategies as st

    value = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
    )
    label_value = st.one_of(st.text(max_size=20), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.booleans())
    point = st.tuples(value, st.dictionaries(st.sampled_from(_LABELS), label_value, max_size=6), st.integers(0, 3))
    metric = st.tuples(
        st.sampled_from(_NAMES), st.sampled_from(["gauge", "sum", "histogram"]), st.lists(point, max_size=4)
    )
    return st.lists(
        st.tuples(st.sampled_from([PROMETHEUS_SCOPE, HOSTMETRICS_SCOPE, "ours"]), st.lists(metric, max_size=5)),
        max_size=3,
    )


def _build(spec: Any) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    for scope_name, metrics in spec:
        rm = request.resource_metrics.add()
        sm = rm.scope_metrics.add()
        sm.scope.name = scope_name
        for name, kind, points in metrics:
            metric = sm.metrics.add(name=name)
            for value, labels, time in points:
                if kind == "histogram":
                    p = metric.histogram.data_points.add(time_unix_nano=time, count=1)
                else:
                    p = getattr(metric, kind).data_points.add(time_unix_nano=time)
                    if isinstance(value, int):
                        p.as_int = value
                    else:
                        p.as_double = value
                for key, label in labels.items():
                    target = p.attributes.add(key=key).value
                    if isinstance(label, bool):
                        target.bool_value = label
                    elif isinstance(label, int):
                        target.int_value = label
                    else:
                        target.string_value = label
    return request


def test_hostile_requests_never_break_normalize_and_a_second_pass_changes_nothing() -> None:
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_hostile_requests())
    def check(spec: Any) -> None:
        request = _build(spec)
        normalize_metrics(request)
        once = request.SerializeToString()
        normalize_metrics(request)
        assert request.SerializeToString() == once

    check()
