"""normalize over real exporters' output: the dcgm-exporter and node-exporter fixtures (transcribed
from upstream, see their SOURCE.md), as the collector's prometheus receiver turns a scrape into OTLP."""

from __future__ import annotations

import pytest

from factorylens.processors import normalize_metrics
from factorylens.registry import CLOCK_EVENT_REASONS, REGISTRY
from tests.collector.prometheus_receiver import SCRAPE_METRIC_NAMES, scrape_fixture
from tests.processors.test_normalize import points, resource

T = 1_700_000_000 * 10**9
H100_MIB = 81559  # DCGM_FI_DEV_FB_USED + FB_FREE + FB_RESERVED of one fixture GPU are in this range
GPU0 = "GPU-8b2281de-6d3c-22ed-0ec8-d3b864870b8b"


@pytest.fixture(params=["dcgm/dcgm-exporter.prom", "dcgm/dcgm-exporter-4.8.2-legacy.prom"])
def dcgm(request: pytest.FixtureRequest):
    scrape = scrape_fixture(request.param, job="dcgm-exporter", instance="10.0.7.3:9400", timestamp_ns=T)
    return scrape, normalize_metrics(scrape)


def test_every_series_of_a_scrape_is_ours_counted_or_the_receivers_own(dcgm) -> None:
    scrape, stats = dcgm
    names = {name for name, *_ in points(scrape)}
    ours = {n for n in names if n in {m.name for m in REGISTRY.metrics}}
    foreign = names - ours - SCRAPE_METRIC_NAMES
    assert all(n.startswith("DCGM_") for n in foreign)
    assert {name for _, name in stats.unmapped} == foreign
    assert {"hw.gpu.utilization", "hw.gpu.memory.usage", "hw.temperature", "hw.power", "hw.energy"} <= ours


def test_the_host_moves_to_the_resource_and_gpus_keep_their_identity(dcgm) -> None:
    scrape, _ = dcgm
    assert resource(scrape)["host.name"] == "gpu-node-a07"
    assert resource(scrape)["service.name"] == "dcgm-exporter"
    ids = {a["hw.id"] for name, _, _, a, _ in points(scrape) if name == "hw.gpu.utilization"}
    assert len(ids) == 2 and GPU0 in ids
    for name, _, _, attributes, _ in points(scrape):
        if name.startswith("hw."):
            assert {"hostname", "Hostname", "UUID", "device"}.isdisjoint(attributes)
            assert attributes["hw.vendor"] == "nvidia" and "gpu.index" in attributes


def test_values_are_in_our_units(dcgm) -> None:
    scrape, _ = dcgm
    for name, unit, kind, _, value in points(scrape):
        if name == "hw.gpu.utilization" or name.endswith(".utilization"):
            assert unit == "1" and 0.0 <= value <= 1.0, (name, value)
        if name == "hw.gpu.memory.usage":
            assert unit == "By" and kind == "sum" and 0 <= value <= H100_MIB * 2**20
        if name == "hw.temperature":
            assert unit == "Cel" and 10 < value < 120
        if name == "hw.energy":
            assert unit == "J" and kind == "sum"


def test_the_throttle_bitmask_of_the_current_release() -> None:
    scrape = scrape_fixture("dcgm/dcgm-exporter.prom", job="dcgm-exporter", instance="10.0.7.3:9400", timestamp_ns=T)
    normalize_metrics(scrape)
    active = {
        (a["hw.id"], a["hw.gpu.clock_event.reason"]): v
        for name, _, _, a, v in points(scrape)
        if name == "hw.gpu.clock_event.active"
    }
    assert {reason for (_, reason) in active} == set(CLOCK_EVENT_REASONS)
    # GPU 0 reports 4: the software power cap (bit 2), nothing else
    assert {reason for (gpu, reason), on in active.items() if on} == {"power_cap"}
    assert all(not on for (gpu, _), on in active.items() if gpu != GPU0)


def test_pod_labels_of_a_kubernetes_scrape_become_k8s_attributes() -> None:
    scrape = scrape_fixture("dcgm/dcgm-exporter.prom", job="dcgm-exporter", instance="10.0.7.3:9400", timestamp_ns=T)
    stats = normalize_metrics(scrape)
    assert {name for _, name in stats.unmapped} >= {"DCGM_FI_DEV_VGPU_LICENSE_STATUS", "DCGM_FI_DEV_ROW_REMAP_FAILURE"}
    gpu0 = [a for name, _, _, a, _ in points(scrape) if name == "hw.gpu.utilization" and a["hw.id"] == GPU0]
    assert gpu0[0]["k8s.pod.name"] == "llama3-70b-pretrain-worker-0"
    assert gpu0[0]["k8s.namespace.name"] == "ml-training"


def test_node_exporter_output_becomes_the_host_layer() -> None:
    scrape = scrape_fixture("node-exporter/node-exporter.prom", job="node", instance="10.0.7.3:9100", timestamp_ns=T)
    normalize_metrics(scrape)
    got = points(scrape)
    names = {name for name, *_ in got}
    assert {"system.cpu.time", "system.memory.usage", "system.disk.io", "system.network.io"} <= names
    assert "system.filesystem.usage" in names
    memory = {a["state"]: v for name, _, _, a, v in got if name == "system.memory.usage"}
    assert set(memory) == {"used", "free"} and memory["used"] > 0 and memory["free"] > 0
    filesystems = [a for name, _, _, a, _ in got if name == "system.filesystem.usage"]
    assert {a["system.filesystem.state"] for a in filesystems} == {"used", "free"}
    assert all("device" not in a and "mountpoint" not in a for a in filesystems)
    cpus = {a["cpu"] for name, _, _, a, _ in got if name == "system.cpu.time"}
    assert cpus == {"0", "1"}
